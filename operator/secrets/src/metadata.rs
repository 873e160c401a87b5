//! The `sops:` block of an encrypted file, read from the positioned tree: the data key
//! wrapped per age recipient, `lastmodified` and the encrypted MAC, and the rules that
//! say which values are encrypted (SOPS's `*_suffix` / `*_regex` settings).

use drover_load::{YamlNode, YamlValue};
use regex::Regex;

/// One recipient's copy of the data key (`sops.age[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgeStanza {
    /// `age1…`.
    pub recipient: String,
    /// The 32-byte data key, age-encrypted and armored.
    pub enc: String,
}

/// Which values a file keeps encrypted (SOPS's settings; at most one is set).
#[derive(Debug, Clone)]
pub enum Rule {
    /// Keys ending in this suffix, and what is under them, stay in clear
    /// (`unencrypted_suffix`, SOPS's default `_unencrypted`).
    UnencryptedSuffix(String),
    /// Only keys ending in this suffix, and what is under them, are encrypted.
    EncryptedSuffix(String),
    /// Keys matching this stay in clear.
    UnencryptedRegex(Regex),
    /// Only keys matching this are encrypted (`^(data|stringData)$` as Flux advises).
    EncryptedRegex(Regex),
}

impl Rule {
    /// Whether the value at `path` (its keys from the top) is to be encrypted: SOPS's
    /// `shouldBeEncrypted`, a key anywhere on the path decides.
    pub fn encrypts(&self, path: &[String]) -> bool {
        match self {
            Rule::UnencryptedSuffix(s) => !path.iter().any(|k| k.ends_with(s.as_str())),
            Rule::EncryptedSuffix(s) => path.iter().any(|k| k.ends_with(s.as_str())),
            Rule::UnencryptedRegex(r) => !path.iter().any(|k| r.is_match(k)),
            Rule::EncryptedRegex(r) => path.iter().any(|k| r.is_match(k)),
        }
    }

    /// The rule and value as SOPS writes them in the block.
    pub fn entry(&self) -> (&'static str, String) {
        match self {
            Rule::UnencryptedSuffix(s) => ("unencrypted_suffix", s.clone()),
            Rule::EncryptedSuffix(s) => ("encrypted_suffix", s.clone()),
            Rule::UnencryptedRegex(r) => ("unencrypted_regex", r.as_str().to_owned()),
            Rule::EncryptedRegex(r) => ("encrypted_regex", r.as_str().to_owned()),
        }
    }
}

/// The parsed `sops:` block.
#[derive(Debug, Clone)]
pub struct Metadata {
    pub age: Vec<AgeStanza>,
    /// RFC 3339, as written: it is the MAC's associated data.
    pub lastmodified: String,
    /// `ENC[…]` of the MAC.
    pub mac: String,
    pub rule: Rule,
    /// `mac_only_encrypted: true`: the MAC covers encrypted values only.
    pub mac_only_encrypted: bool,
    pub version: Option<String>,
}

/// What is wrong with a `sops:` block: the field (under `sops.`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockError {
    pub field: String,
    pub message: String,
    pub hint: String,
}

fn problem(field: &str, message: impl Into<String>, hint: impl Into<String>) -> BlockError {
    BlockError {
        field: field.to_owned(),
        message: message.into(),
        hint: hint.into(),
    }
}

/// Key groups SOPS knows that Drover does not open.
const OTHER_KEY_TYPES: [&str; 6] = ["pgp", "kms", "gcp_kms", "azure_kv", "hc_vault", "hckms"];

fn text<'a>(node: &'a YamlNode, key: &str) -> Option<&'a str> {
    node.get(key).and_then(YamlNode::as_str)
}

/// Reads the block; every problem, not just the first.
pub fn parse(block: &YamlNode) -> Result<Metadata, Vec<BlockError>> {
    let mut errors = Vec::new();
    if !matches!(block.value, YamlValue::Map(_)) {
        return Err(vec![problem(
            "",
            "`sops` must be a mapping (SOPS's metadata)",
            "write the file with `drover secret encrypt` or `sops --encrypt`",
        )]);
    }
    let age = age_stanzas(block, &mut errors);
    for other in OTHER_KEY_TYPES {
        let used = match block.get(other).map(|n| &n.value) {
            Some(YamlValue::Seq(items)) => !items.is_empty(),
            Some(YamlValue::Scalar { text, plain }) => {
                !(*plain && text.is_empty() || text == "null")
            }
            Some(_) => true,
            None => false,
        };
        if used && age.is_empty() {
            errors.push(problem(
                other,
                format!("the data key is wrapped with `{other}`, which Drover cannot open: Drover opens age only"),
                "add an age recipient: `sops updatekeys` with an `age:` creation rule, or `drover secret rotate FILE --age age1…`",
            ));
        }
    }
    if age.is_empty() && errors.is_empty() {
        errors.push(problem(
            "age",
            "no age recipient holds the data key",
            "encrypt for the control plane's age recipient: `drover secret encrypt FILE --age age1…`",
        ));
    }
    let required = |errors: &mut Vec<BlockError>, key: &str| -> String {
        match text(block, key) {
            Some(t) if !t.is_empty() => t.to_owned(),
            _ => {
                errors.push(problem(
                    key,
                    format!("`sops.{key}` is missing"),
                    "the file was not written by SOPS or Drover, or was cut short: encrypt it again",
                ));
                String::new()
            }
        }
    };
    let lastmodified = required(&mut errors, "lastmodified");
    let mac = required(&mut errors, "mac");
    if !mac.is_empty() && crate::sops::Encrypted::parse(&mac).is_err() {
        errors.push(problem(
            "mac",
            "`sops.mac` is not a SOPS value",
            "the file was changed by hand: encrypt it again",
        ));
    }
    let rule = rule(block, &mut errors);
    for unsupported in ["encrypted_comment_regex", "unencrypted_comment_regex"] {
        if block.get(unsupported).is_some() {
            errors.push(problem(
                unsupported,
                format!(
                    "`{unsupported}` is not supported by Drover (comments are not part of a Secret)"
                ),
                "use `encrypted_regex: ^(data|stringData)$`",
            ));
        }
    }
    let mac_only_encrypted = text(block, "mac_only_encrypted") == Some("true");
    if errors.is_empty() {
        Ok(Metadata {
            age,
            lastmodified,
            mac,
            rule,
            mac_only_encrypted,
            version: text(block, "version").map(str::to_owned),
        })
    } else {
        Err(errors)
    }
}

fn age_stanzas(block: &YamlNode, errors: &mut Vec<BlockError>) -> Vec<AgeStanza> {
    let Some(node) = block.get("age") else {
        return Vec::new();
    };
    let YamlValue::Seq(items) = &node.value else {
        errors.push(problem(
            "age",
            "`sops.age` must be a list of `{recipient, enc}`",
            "encrypt the file again",
        ));
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match (text(item, "recipient"), text(item, "enc")) {
            (Some(recipient), Some(enc)) if recipient.starts_with("age1") => {
                out.push(AgeStanza {
                    recipient: recipient.to_owned(),
                    enc: enc.to_owned(),
                });
            }
            _ => errors.push(problem(
                &format!("age[{i}]"),
                "an age entry needs `recipient: age1…` and `enc: <armored age file>`",
                "encrypt the file again",
            )),
        }
    }
    out
}

fn rule(block: &YamlNode, errors: &mut Vec<BlockError>) -> Rule {
    let regex = |key: &str, errors: &mut Vec<BlockError>| {
        let pattern = text(block, key)?;
        match Regex::new(pattern) {
            Ok(r) => Some(r),
            Err(e) => {
                errors.push(problem(
                    key,
                    format!("`sops.{key}` is not a regular expression: {e}"),
                    "fix the pattern, e.g. `^(data|stringData)$`",
                ));
                None
            }
        }
    };
    let set: Vec<&str> = [
        "unencrypted_suffix",
        "encrypted_suffix",
        "unencrypted_regex",
        "encrypted_regex",
    ]
    .into_iter()
    .filter(|k| text(block, k).is_some_and(|t| !t.is_empty()))
    .collect();
    if set.len() > 1 {
        errors.push(problem(
            set[1],
            format!(
                "`sops.{}` and `sops.{}` are both set; SOPS allows one",
                set[0], set[1]
            ),
            "keep one rule",
        ));
    }
    match set.first().copied() {
        Some("encrypted_suffix") => Rule::EncryptedSuffix(
            text(block, "encrypted_suffix")
                .unwrap_or_default()
                .to_owned(),
        ),
        Some("unencrypted_regex") => {
            regex("unencrypted_regex", errors).map_or_else(default_rule, Rule::UnencryptedRegex)
        }
        Some("encrypted_regex") => {
            regex("encrypted_regex", errors).map_or_else(default_rule, Rule::EncryptedRegex)
        }
        Some(_) => Rule::UnencryptedSuffix(
            text(block, "unencrypted_suffix")
                .unwrap_or_default()
                .to_owned(),
        ),
        None => default_rule(),
    }
}

/// SOPS's default when the block names no rule.
fn default_rule() -> Rule {
    Rule::UnencryptedSuffix("_unencrypted".into())
}

/// The rule `drover secret encrypt` writes: what Flux's guide advises for Kubernetes
/// Secrets, so `apiVersion`, `kind` and `metadata` stay readable without a key.
pub fn drover_rule() -> Rule {
    Rule::EncryptedRegex(Regex::new("^(data|stringData)$").expect("a valid pattern"))
}
