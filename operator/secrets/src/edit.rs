//! Writing encrypted Secret files, for `drover secret encrypt|edit|rotate`: values
//! sealed with a data key wrapped for each age recipient, the `sops:` block SOPS writes
//! (so `sops -d` reads the file), and — when a file is written again with its old data
//! key — the old nonce for every unchanged value, as SOPS does, so only changed values
//! change in Git and only their services roll.

use std::collections::HashMap;

use drover_load::{SOPS_BLOCK, YamlNode, YamlValue};
use zeroize::Zeroizing;

use crate::document::Scalar;
use crate::emit;
use crate::keys::{KeyError, Keys, wrap};
use crate::metadata::{self, Rule};
use crate::sops::{Encrypted, SopsError, ValueType, is_encrypted, path_aad};

/// The SOPS release whose file format Drover writes (and was checked against).
pub const SOPS_FORMAT_VERSION: &str = "3.13.2";

/// Why a file could not be encrypted or decrypted. Never holds a value.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("{0}")]
    Yaml(String),
    #[error("the file holds no document")]
    Empty,
    #[error(
        "the file is already encrypted (it has a `sops:` block): use `drover secret edit` or `drover secret rotate`"
    )]
    AlreadyEncrypted,
    #[error("the file is not encrypted (it has no `sops:` block): use `drover secret encrypt`")]
    NotEncrypted,
    #[error("`sops.{field}`: {message}")]
    Block { field: String, message: String },
    #[error("no recipient: name one with `--age age1…` (or set SOPS_AGE_RECIPIENTS)")]
    NoRecipients,
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("`{path}`: {source}")]
    Value { path: String, source: SopsError },
}

/// A decrypted file and what re-encrypting it needs.
pub struct Opened {
    /// The document with every value in clear, without its `sops:` block.
    pub tree: YamlNode,
    /// The comment lines the file starts with.
    pub header: String,
    pub data_key: Zeroizing<Vec<u8>>,
    /// The recipients it was encrypted for.
    pub recipients: Vec<String>,
    pub rule: Rule,
    /// Nonce of each (path, plaintext) as it was: SOPS's stash.
    stash: HashMap<(String, Vec<u8>), Vec<u8>>,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Opened(for {:?})", self.recipients)
    }
}

fn parse(text: &str) -> Result<YamlNode, EditError> {
    drover_load::parse_document(text)
        .map_err(EditError::Yaml)?
        .ok_or(EditError::Empty)
}

/// What [`leaves_mut`] calls for each leaf.
type OnLeaf<'a> = dyn FnMut(&[String], &mut YamlNode) -> Result<(), EditError> + 'a;

/// Calls `f` with the path and node of every leaf outside the `sops:` block, in order.
fn leaves_mut(root: &mut YamlNode, f: &mut OnLeaf<'_>) -> Result<(), EditError> {
    fn walk(
        node: &mut YamlNode,
        path: &mut Vec<String>,
        f: &mut OnLeaf<'_>,
    ) -> Result<(), EditError> {
        match &mut node.value {
            YamlValue::Scalar { text, plain } => {
                if Scalar::of(text, *plain).is_some() {
                    f(path, node)?;
                }
            }
            YamlValue::Seq(items) => {
                for item in items {
                    walk(item, path, f)?;
                }
            }
            YamlValue::Map(entries) => {
                for (key, value) in entries {
                    let key = key.as_str().unwrap_or_default().to_owned();
                    if path.is_empty() && key == SOPS_BLOCK {
                        continue;
                    }
                    path.push(key);
                    walk(value, path, f)?;
                    path.pop();
                }
            }
        }
        Ok(())
    }
    walk(root, &mut Vec::new(), f)
}

/// What the stash knows a plaintext by.
fn digest(plain: &[u8]) -> Vec<u8> {
    use sha2::Digest as _;
    sha2::Sha512::digest(plain).to_vec()
}

fn aad(path: &[String]) -> String {
    path_aad(&path.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Encrypts a file written in clear for `recipients`, with a new data key.
pub fn encrypt(text: &str, recipients: &[String]) -> Result<String, EditError> {
    let tree = parse(text)?;
    if tree.get(SOPS_BLOCK).is_some() {
        return Err(EditError::AlreadyEncrypted);
    }
    let mut key = Zeroizing::new(vec![0u8; 32]);
    getrandom::fill(&mut key).expect("the operating system's randomness");
    let opened = Opened {
        tree,
        header: emit::header(text),
        data_key: key,
        recipients: recipients.to_vec(),
        rule: metadata::drover_rule(),
        stash: HashMap::new(),
    };
    seal(&opened, &opened.tree, recipients)
}

/// Decrypts an encrypted file with `keys`.
pub fn decrypt(text: &str, keys: &Keys) -> Result<Opened, EditError> {
    let mut tree = parse(text)?;
    let block = tree.get(SOPS_BLOCK).ok_or(EditError::NotEncrypted)?;
    let meta = metadata::parse(block).map_err(|errors| {
        let e = errors.into_iter().next().expect("at least one problem");
        EditError::Block {
            field: e.field,
            message: e.message,
        }
    })?;
    let data_key = keys.data_key(&meta.age)?;
    let mut stash = HashMap::new();
    leaves_mut(&mut tree, &mut |path, node| {
        if !meta.rule.encrypts(path) {
            return Ok(());
        }
        let Some(text) = node.as_str().filter(|t| is_encrypted(t)) else {
            return Ok(());
        };
        let at = aad(path);
        let value = Encrypted::parse(text).map_err(|source| EditError::Value {
            path: path.join("."),
            source,
        })?;
        let plain =
            Zeroizing::new(
                value
                    .open(&data_key, &at)
                    .map_err(|source| EditError::Value {
                        path: path.join("."),
                        source,
                    })?,
            );
        node.value = typed(&plain, value.kind);
        stash.insert((at, digest(&plain)), value.iv.clone());
        Ok(())
    })?;
    if let YamlValue::Map(entries) = &mut tree.value {
        entries.retain(|(k, _)| k.as_str() != Some(SOPS_BLOCK));
    }
    Ok(Opened {
        tree,
        header: emit::header(text),
        data_key,
        recipients: meta.age.iter().map(|s| s.recipient.clone()).collect(),
        rule: meta.rule,
        stash,
    })
}

/// A decrypted value as the YAML scalar it was.
fn typed(plain: &[u8], kind: ValueType) -> YamlValue {
    let text = String::from_utf8_lossy(plain).into_owned();
    match kind {
        ValueType::Int | ValueType::Float => YamlValue::Scalar { text, plain: true },
        ValueType::Bool => YamlValue::Scalar {
            text: text.to_lowercase(),
            plain: true,
        },
        _ => YamlValue::Scalar { text, plain: false },
    }
}

impl Opened {
    /// The document in clear, for a person to edit.
    pub fn plain_text(&self) -> Zeroizing<String> {
        Zeroizing::new(emit::document(&self.tree, &self.header))
    }

    /// Encrypts `edited` (the plain text after editing) with the same data key and
    /// recipients; unchanged values keep their ciphertext.
    pub fn reseal(&self, edited: &str) -> Result<String, EditError> {
        let tree = parse(edited)?;
        seal(self, &tree, &self.recipients)
    }

    /// Encrypts the document with a new data key for `recipients`: every value's
    /// ciphertext changes (and every service using it rolls).
    pub fn rotate(mut self, recipients: &[String]) -> Result<String, EditError> {
        getrandom::fill(&mut self.data_key).expect("the operating system's randomness");
        self.stash.clear();
        seal(&self, &self.tree, recipients)
    }
}

/// Encrypts `tree`'s values under `opened`'s key and rule and writes the file.
fn seal(opened: &Opened, tree: &YamlNode, recipients: &[String]) -> Result<String, EditError> {
    if recipients.is_empty() {
        return Err(EditError::NoRecipients);
    }
    let mut tree = tree.clone();
    let mut mac_leaves: Vec<Zeroizing<Vec<u8>>> = Vec::new();
    leaves_mut(&mut tree, &mut |path, node| {
        let YamlValue::Scalar { text, plain } = &node.value else {
            return Ok(());
        };
        let value = Scalar::of(text, *plain).expect("nulls are not visited");
        let bytes = Zeroizing::new(value.bytes());
        if opened.rule.encrypts(path) {
            let at = aad(path);
            let sealed = match opened.stash.get(&(at.clone(), digest(&bytes))) {
                Some(iv) => {
                    Encrypted::seal_with_nonce(&bytes, value.kind(), &opened.data_key, &at, iv)
                }
                None => Encrypted::seal(&bytes, value.kind(), &opened.data_key, &at),
            }
            .map_err(|source| EditError::Value {
                path: path.join("."),
                source,
            })?;
            node.value = YamlValue::Scalar {
                text: sealed.to_text(),
                plain: true,
            };
        }
        mac_leaves.push(bytes);
        Ok(())
    })?;
    let mac = crate::sops::mac(mac_leaves.iter().map(|l| l.as_slice()));
    let lastmodified = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let sealed_mac = Encrypted::seal(
        mac.as_bytes(),
        ValueType::Str,
        &opened.data_key,
        &lastmodified,
    )
    .map_err(|source| EditError::Value {
        path: "sops.mac".into(),
        source,
    })?;
    let block = block(opened, recipients, &lastmodified, &sealed_mac.to_text())?;
    if let YamlValue::Map(entries) = &mut tree.value {
        entries.retain(|(k, _)| k.as_str() != Some(SOPS_BLOCK));
        entries.push((scalar(SOPS_BLOCK, true), block));
    }
    Ok(emit::document(&tree, &opened.header))
}

fn scalar(text: &str, plain: bool) -> YamlNode {
    YamlNode {
        value: YamlValue::Scalar {
            text: text.to_owned(),
            plain,
        },
        line: 0,
        column: 0,
    }
}

fn map(entries: Vec<(&str, YamlNode)>) -> YamlNode {
    YamlNode {
        value: YamlValue::Map(
            entries
                .into_iter()
                .map(|(k, v)| (scalar(k, true), v))
                .collect(),
        ),
        line: 0,
        column: 0,
    }
}

/// The `sops:` block, keys in the order SOPS writes them.
fn block(
    opened: &Opened,
    recipients: &[String],
    lastmodified: &str,
    mac: &str,
) -> Result<YamlNode, EditError> {
    let age = recipients
        .iter()
        .map(|r| {
            Ok(map(vec![
                ("recipient", scalar(r, true)),
                ("enc", scalar(&wrap(&opened.data_key, r)?, false)),
            ]))
        })
        .collect::<Result<Vec<_>, EditError>>()?;
    let (rule, pattern) = opened.rule.entry();
    Ok(map(vec![
        (
            "age",
            YamlNode {
                value: YamlValue::Seq(age),
                line: 0,
                column: 0,
            },
        ),
        ("lastmodified", scalar(lastmodified, false)),
        ("mac", scalar(mac, true)),
        (rule, scalar(&pattern, false)),
        ("version", scalar(SOPS_FORMAT_VERSION, true)),
    ]))
}
