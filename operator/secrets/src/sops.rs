//! SOPS's encrypted values and MAC, as SOPS 3 writes them (getsops/sops, `aes/` and
//! `sops.go`): AES-256-GCM with a **32-byte** nonce (not GCM's usual 12), the tag kept
//! apart from the data, and the value's path in the document as associated data
//! (each key followed by `:`, as `app:db:password:`). The MAC is SHA-512 over the
//! plaintext leaves in document order, written in upper-case hex and itself encrypted
//! under the data key with the file's `lastmodified` as associated data.

use aes_gcm::aead::consts::U32;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::Aes256;
use aes_gcm::{AesGcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha512};

/// AES-256-GCM with SOPS's nonce size.
type Cipher = AesGcm<Aes256, U32>;

/// The nonce SOPS uses, in bytes.
pub const NONCE_BYTES: usize = 32;

/// The tag GCM appends, in bytes.
const TAG_BYTES: usize = 16;

/// Why a value could not be read or opened. Never holds the plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SopsError {
    #[error("not a SOPS value: {0} (expected `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]`)")]
    Format(String),
    #[error("the data key is not 32 bytes")]
    KeySize,
    #[error(
        "the value does not open with this data key at `{0}`: wrong key, or the value or its place was changed"
    )]
    Open(String),
    #[error("the file's MAC does not match its values: it was changed without its key")]
    Mac,
}

/// What a value was before encryption (`type:` in the envelope).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    Str,
    Int,
    Float,
    Bool,
    Bytes,
    Time,
    Comment,
}

impl ValueType {
    pub fn as_str(self) -> &'static str {
        match self {
            ValueType::Str => "str",
            ValueType::Int => "int",
            ValueType::Float => "float",
            ValueType::Bool => "bool",
            ValueType::Bytes => "bytes",
            ValueType::Time => "time",
            ValueType::Comment => "comment",
        }
    }

    fn parse(text: &str) -> Option<ValueType> {
        use ValueType::*;
        [Str, Int, Float, Bool, Bytes, Time, Comment]
            .into_iter()
            .find(|t| t.as_str() == text)
    }
}

/// One encrypted value, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encrypted {
    pub data: Vec<u8>,
    pub iv: Vec<u8>,
    pub tag: Vec<u8>,
    pub kind: ValueType,
}

/// Whether `text` is a SOPS value (rather than a value left in clear).
pub fn is_encrypted(text: &str) -> bool {
    text.starts_with("ENC[AES256_GCM,") && text.ends_with(']')
}

impl Encrypted {
    /// Reads `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]`.
    pub fn parse(text: &str) -> Result<Encrypted, SopsError> {
        let inner = text
            .strip_prefix("ENC[AES256_GCM,")
            .and_then(|t| t.strip_suffix(']'))
            .ok_or_else(|| SopsError::Format("it does not start with `ENC[AES256_GCM,`".into()))?;
        let (mut data, mut iv, mut tag, mut kind) = (None, None, None, None);
        for field in inner.split(',') {
            let (name, value) = field
                .split_once(':')
                .ok_or_else(|| SopsError::Format(format!("field `{field}` has no `:`")))?;
            let bytes = || {
                STANDARD
                    .decode(value)
                    .map_err(|_| SopsError::Format(format!("`{name}` is not base64")))
            };
            match name {
                "data" => data = Some(bytes()?),
                "iv" => iv = Some(bytes()?),
                "tag" => tag = Some(bytes()?),
                "type" => {
                    kind = Some(
                        ValueType::parse(value)
                            .ok_or_else(|| SopsError::Format(format!("unknown type `{value}`")))?,
                    )
                }
                other => return Err(SopsError::Format(format!("unknown field `{other}`"))),
            }
        }
        let missing = |what: &str| SopsError::Format(format!("`{what}` is missing"));
        let iv = iv.ok_or_else(|| missing("iv"))?;
        if iv.len() != NONCE_BYTES {
            return Err(SopsError::Format(format!(
                "`iv` is {} bytes, SOPS writes {NONCE_BYTES}",
                iv.len()
            )));
        }
        let tag = tag.ok_or_else(|| missing("tag"))?;
        if tag.len() != TAG_BYTES {
            return Err(SopsError::Format(format!(
                "`tag` is {} bytes, not {TAG_BYTES}",
                tag.len()
            )));
        }
        Ok(Encrypted {
            data: data.ok_or_else(|| missing("data"))?,
            iv,
            tag,
            kind: kind.ok_or_else(|| missing("type"))?,
        })
    }

    /// The envelope as SOPS writes it.
    pub fn to_text(&self) -> String {
        format!(
            "ENC[AES256_GCM,data:{},iv:{},tag:{},type:{}]",
            STANDARD.encode(&self.data),
            STANDARD.encode(&self.iv),
            STANDARD.encode(&self.tag),
            self.kind.as_str()
        )
    }

    /// The plaintext bytes, opened with `key` at `path` (the associated data).
    pub fn open(&self, key: &[u8], path: &str) -> Result<Vec<u8>, SopsError> {
        let cipher = Cipher::new_from_slice(key).map_err(|_| SopsError::KeySize)?;
        let mut sealed = self.data.clone();
        sealed.extend_from_slice(&self.tag);
        cipher
            .decrypt(
                Nonce::<U32>::from_slice(&self.iv),
                Payload {
                    msg: &sealed,
                    aad: path.as_bytes(),
                },
            )
            .map_err(|_| SopsError::Open(path.to_owned()))
    }

    /// Seals `plain` with `key` at `path`, under a fresh random nonce.
    pub fn seal(
        plain: &[u8],
        kind: ValueType,
        key: &[u8],
        path: &str,
    ) -> Result<Encrypted, SopsError> {
        let mut iv = vec![0u8; NONCE_BYTES];
        getrandom::fill(&mut iv).expect("the operating system's randomness");
        Encrypted::seal_with_nonce(plain, kind, key, path, &iv)
    }

    /// Seals under a given nonce: only to write an unchanged value again as it was
    /// (SOPS's stash); a nonce is never reused for another plaintext.
    pub fn seal_with_nonce(
        plain: &[u8],
        kind: ValueType,
        key: &[u8],
        path: &str,
        iv: &[u8],
    ) -> Result<Encrypted, SopsError> {
        if iv.len() != NONCE_BYTES {
            return Err(SopsError::Format(format!(
                "`iv` is {} bytes, SOPS writes {NONCE_BYTES}",
                iv.len()
            )));
        }
        let cipher = Cipher::new_from_slice(key).map_err(|_| SopsError::KeySize)?;
        let mut sealed = cipher
            .encrypt(
                Nonce::<U32>::from_slice(iv),
                Payload {
                    msg: plain,
                    aad: path.as_bytes(),
                },
            )
            .map_err(|_| SopsError::Open(path.to_owned()))?;
        let tag = sealed.split_off(sealed.len() - TAG_BYTES);
        Ok(Encrypted {
            data: sealed,
            iv: iv.to_vec(),
            tag,
            kind,
        })
    }
}

/// The associated data of the value at `keys` (`["app", "db", "password"]` →
/// `app:db:password:`).
pub fn path_aad(keys: &[&str]) -> String {
    keys.iter().map(|k| format!("{k}:")).collect()
}

/// The MAC of a document whose plaintext leaves, in document order and comments left
/// out, are `leaves`: upper-case hex of their SHA-512.
pub fn mac<'a>(leaves: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut hash = Sha512::new();
    for leaf in leaves {
        hash.update(leaf);
    }
    hash.finalize().iter().map(|b| format!("{b:02X}")).collect()
}

/// Checks the file's encrypted MAC (`sops.mac`) against `computed`.
pub fn verify_mac(
    stored: &str,
    key: &[u8],
    lastmodified: &str,
    computed: &str,
) -> Result<(), SopsError> {
    let opened = Encrypted::parse(stored)?
        .open(key, lastmodified)
        .map_err(|_| SopsError::Mac)?;
    if opened == computed.as_bytes() {
        Ok(())
    } else {
        Err(SopsError::Mac)
    }
}

#[cfg(test)]
mod tests;
