//! A `Secret` document as SOPS encrypts it: its leaves walked in written order (what
//! the MAC covers, as SOPS's `walkBranch` does: list items add nothing to the path,
//! nulls are skipped), each checked against the file's rule, and — with a key — the
//! values opened and the MAC verified. Problems are located at the field; none of them
//! holds a value.

use std::collections::BTreeMap;

use drover_load::{Object, SOPS_BLOCK, YamlNode, YamlValue};
use drover_model::SecretSpec;
use sha2::{Digest, Sha512};

use crate::keys::Keys;
use crate::metadata::{self, Metadata};
use crate::sops::{Encrypted, ValueType, is_encrypted, path_aad, verify_mac};
use crate::values::Plain;

/// SOPS's first bytes of the MAC when it covers encrypted values only
/// (`MACOnlyEncryptedInitialization` in sops.go).
const MAC_ONLY_ENCRYPTED_INIT: [u8; 32] = [
    0x8a, 0x3f, 0xd2, 0xad, 0x54, 0xce, 0x66, 0x52, 0x7b, 0x10, 0x34, 0xf3, 0xd1, 0x47, 0xbe, 0x0b,
    0x0b, 0x97, 0x5b, 0x3b, 0xf4, 0x4f, 0x72, 0xc6, 0xfd, 0xad, 0xec, 0x81, 0x76, 0xf2, 0x7d, 0x69,
];

/// A scalar as SOPS's YAML store types it (YAML 1.2's core schema).
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    /// A node's scalar; `None` for null (which SOPS neither encrypts nor hashes).
    pub(crate) fn of(text: &str, plain: bool) -> Option<Scalar> {
        if !plain {
            return Some(Scalar::Str(text.to_owned()));
        }
        Some(match text {
            "" | "~" | "null" | "Null" | "NULL" => return None,
            "true" | "True" | "TRUE" => Scalar::Bool(true),
            "false" | "False" | "FALSE" => Scalar::Bool(false),
            _ => int(text)
                .map(Scalar::Int)
                .or_else(|| float(text).map(Scalar::Float))
                .unwrap_or_else(|| Scalar::Str(text.to_owned())),
        })
    }

    /// SOPS's `ToBytes`: what the MAC hashes and what an encrypted value holds.
    pub(crate) fn bytes(&self) -> Vec<u8> {
        match self {
            Scalar::Str(s) => s.as_bytes().to_vec(),
            Scalar::Int(i) => i.to_string().into_bytes(),
            Scalar::Float(f) if f.is_infinite() => if *f > 0.0 { "+Inf" } else { "-Inf" }.into(),
            Scalar::Float(f) if f.is_nan() => b"NaN".to_vec(),
            // Go's FormatFloat(f, 'f', -1, 64) and Rust's Display agree: shortest digits,
            // never an exponent.
            Scalar::Float(f) => f.to_string().into_bytes(),
            Scalar::Bool(true) => b"True".to_vec(),
            Scalar::Bool(false) => b"False".to_vec(),
        }
    }

    pub(crate) fn kind(&self) -> ValueType {
        match self {
            Scalar::Str(_) => ValueType::Str,
            Scalar::Int(_) => ValueType::Int,
            Scalar::Float(_) => ValueType::Float,
            Scalar::Bool(_) => ValueType::Bool,
        }
    }
}

fn int(text: &str) -> Option<i64> {
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, text.strip_prefix('+').unwrap_or(text)),
    };
    let value = if let Some(hex) = digits.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()?
    } else if let Some(oct) = digits.strip_prefix("0o") {
        i64::from_str_radix(oct, 8).ok()?
    } else if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()?
    } else {
        return None;
    };
    Some(sign * value)
}

fn float(text: &str) -> Option<f64> {
    match text {
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => Some(f64::NAN),
        // Digits, one dot, an exponent: what YAML 1.2 calls a float.
        _ if text.bytes().any(|b| b.is_ascii_digit())
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-')) =>
        {
            text.parse().ok()
        }
        _ => None,
    }
}

/// A leaf of the document: its keys from the top, its node and its value.
#[derive(Debug)]
pub struct Leaf {
    pub path: Vec<String>,
    pub(crate) value: Scalar,
}

/// Every non-null leaf outside the `sops:` block, in written order.
pub fn leaves(root: &YamlNode) -> Vec<Leaf> {
    fn walk(node: &YamlNode, path: &mut Vec<String>, out: &mut Vec<Leaf>) {
        match &node.value {
            YamlValue::Scalar { text, plain } => {
                if let Some(value) = Scalar::of(text, *plain) {
                    out.push(Leaf {
                        path: path.clone(),
                        value,
                    });
                }
            }
            YamlValue::Seq(items) => items.iter().for_each(|i| walk(i, path, out)),
            YamlValue::Map(entries) => {
                for (key, value) in entries {
                    let key = key.as_str().unwrap_or_default();
                    if path.is_empty() && key == SOPS_BLOCK {
                        continue;
                    }
                    path.push(key.to_owned());
                    walk(value, path, out);
                    path.pop();
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(root, &mut Vec::new(), &mut out);
    out
}

/// Why a Secret could not be read or opened: where (a field path such as
/// `spec.data.password` or `sops.mac`), what, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub kind: ProblemKind,
    pub message: String,
    pub hint: String,
}

/// Whether the file breaks SOPS's format (known without a key) or cannot be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    Format,
    Undecryptable,
}

fn problem(
    path: impl Into<String>,
    kind: ProblemKind,
    message: impl Into<String>,
    hint: impl Into<String>,
) -> Problem {
    Problem {
        path: path.into(),
        kind,
        message: message.into(),
        hint: hint.into(),
    }
}

fn dotted(path: &[String]) -> String {
    path.join(".")
}

/// What a Secret holds: key → value. Without keys (`None`) only its format is
/// checked and nothing is returned for encrypted values.
pub fn open(
    secret: &Object<SecretSpec>,
    keys: Option<&Keys>,
) -> Result<BTreeMap<String, Plain>, Vec<Problem>> {
    let spec = secret.spec();
    let tree = secret.source.tree();
    let block = tree.and_then(|t| t.get(SOPS_BLOCK));
    let Some(block) = block else {
        return in_clear(spec);
    };
    let metadata = metadata::parse(block).map_err(|errors| {
        errors
            .into_iter()
            .map(|e| {
                let path = if e.field.is_empty() {
                    SOPS_BLOCK.to_owned()
                } else {
                    format!("{SOPS_BLOCK}.{}", e.field)
                };
                problem(path, ProblemKind::Format, e.message, e.hint)
            })
            .collect::<Vec<_>>()
    })?;
    let leaves = leaves(tree.expect("a block was found in it"));
    check_rule(&metadata, &leaves)?;
    let Some(keys) = keys else {
        return Ok(BTreeMap::new());
    };
    opened(spec, &metadata, &leaves, keys)
}

/// A Secret without a `sops:` block: every value is in clear.
fn in_clear(spec: &SecretSpec) -> Result<BTreeMap<String, Plain>, Vec<Problem>> {
    let encrypted: Vec<Problem> = spec
        .data
        .iter()
        .filter(|(_, v)| is_encrypted(v))
        .map(|(k, _)| {
            problem(
                format!("spec.data.{k}"),
                ProblemKind::Format,
                "this value is encrypted but the file has no `sops:` block holding its key",
                "keep the `sops:` block SOPS wrote at the end of the file, or write the value in clear and run `drover secret encrypt FILE`",
            )
        })
        .collect();
    if !encrypted.is_empty() {
        return Err(encrypted);
    }
    Ok(spec
        .data
        .iter()
        .map(|(k, v)| (k.clone(), Plain::new(v.as_bytes().to_vec())))
        .collect())
}

/// Each leaf is encrypted exactly where the file's rule says.
fn check_rule(metadata: &Metadata, leaves: &[Leaf]) -> Result<(), Vec<Problem>> {
    let mut problems = Vec::new();
    let (rule, pattern) = metadata.rule.entry();
    for leaf in leaves {
        let should = metadata.rule.encrypts(&leaf.path);
        let text = match &leaf.value {
            Scalar::Str(s) => Some(s.as_str()),
            _ => None,
        };
        let is = text.is_some_and(is_encrypted);
        let at = dotted(&leaf.path);
        if should && !is {
            problems.push(problem(&at, ProblemKind::Format, format!("this value is in clear, but the file's rule (`{rule}: {pattern}`) encrypts it"), "encrypt the file again: `drover secret encrypt FILE` (or `sops --encrypt --in-place FILE`)"));
        } else if !should && is {
            problems.push(problem(&at, ProblemKind::Format, format!("this value is encrypted, but the file's rule (`{rule}: {pattern}`) keeps it in clear, so SOPS would not decrypt it"), "encrypt the file again with one rule"));
        } else if is && let Err(e) = Encrypted::parse(text.unwrap_or_default()) {
            problems.push(problem(
                &at,
                ProblemKind::Format,
                e.to_string(),
                "the value was changed by hand: set it again with `drover secret edit FILE`",
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Opens every encrypted value, checks the MAC, and returns `spec.data`'s values.
fn opened(
    spec: &SecretSpec,
    metadata: &Metadata,
    leaves: &[Leaf],
    keys: &Keys,
) -> Result<BTreeMap<String, Plain>, Vec<Problem>> {
    let data_key = keys.data_key(&metadata.age).map_err(|e| {
        vec![problem(
            "sops.age",
            ProblemKind::Undecryptable,
            e.to_string(),
            "give the control plane a key the file is encrypted for (SOPS_AGE_KEY_FILE), or re-encrypt the file for its recipient: `drover secret rotate FILE --age age1…`",
        )]
    })?;
    let mut out = BTreeMap::new();
    for (path, plain) in open_leaves(metadata, leaves, &data_key)? {
        if let [spec_key, data, key] = path.as_slice()
            && spec_key == "spec"
            && data == "data"
            && spec.data.contains_key(key)
        {
            out.insert(key.clone(), plain);
        }
    }
    Ok(out)
}

/// Every leaf's value (opened where encrypted) by path, once the MAC over them all
/// matches: the heart of `sops -d`, for any document.
pub fn open_leaves(
    metadata: &Metadata,
    leaves: &[Leaf],
    data_key: &[u8],
) -> Result<Vec<(Vec<String>, Plain)>, Vec<Problem>> {
    let undecryptable = |path: &str, message: String, hint: &str| {
        problem(path, ProblemKind::Undecryptable, message, hint)
    };
    let mut hash = Sha512::new();
    if metadata.mac_only_encrypted {
        hash.update(MAC_ONLY_ENCRYPTED_INIT);
    }
    let mut problems = Vec::new();
    let mut out = Vec::new();
    for leaf in leaves {
        let encrypted = metadata.rule.encrypts(&leaf.path);
        let (bytes, kind) = if encrypted {
            let Scalar::Str(text) = &leaf.value else {
                continue;
            };
            let keys: Vec<&str> = leaf.path.iter().map(String::as_str).collect();
            let Ok(value) = Encrypted::parse(text) else {
                continue;
            };
            match value.open(data_key, &path_aad(&keys)) {
                Ok(plain) => (plain, value.kind),
                Err(_) => {
                    problems.push(undecryptable(&dotted(&leaf.path), "this value does not open with the file's data key: it was copied from another file, moved, or changed".into(), "set it again with `drover secret edit FILE`"));
                    continue;
                }
            }
        } else {
            (leaf.value.bytes(), leaf.value.kind())
        };
        if !metadata.mac_only_encrypted || encrypted {
            hash.update(&bytes);
        }
        out.push((leaf.path.clone(), Plain::new(delivered(bytes, kind))));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let computed: String = hash.finalize().iter().map(|b| format!("{b:02X}")).collect();
    verify_mac(&metadata.mac, data_key, &metadata.lastmodified, &computed).map_err(|_| {
        vec![undecryptable(
            "sops.mac",
            "the file's MAC does not match its values: it was changed without its key (a value added, removed, reordered or edited by hand)".into(),
            "change secrets with `drover secret edit FILE` (or `sops edit`), which writes a new MAC",
        )]
    })?;
    Ok(out)
}

/// The plaintext as it was before encryption: SOPS stores a bool as `True`/`False`,
/// which a file receives as `true`/`false`, as `sops -d` prints it.
fn delivered(plain: Vec<u8>, kind: ValueType) -> Vec<u8> {
    match (kind, plain.as_slice()) {
        (ValueType::Bool, b"True") => b"true".to_vec(),
        (ValueType::Bool, b"False") => b"false".to_vec(),
        _ => plain,
    }
}

#[cfg(test)]
mod tests;
