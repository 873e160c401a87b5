//! Data keys wrapped for age recipients (`sops.age[].enc`: an ASCII-armored age file
//! holding the 32-byte data key), opened with the identities Drover is given — from a
//! file or an environment variable, never from the repo.

use std::io::Read;
use std::path::{Path, PathBuf};

use age::secrecy::ExposeSecret as _;
use zeroize::Zeroizing;

use crate::metadata::AgeStanza;

/// Why no data key could be unwrapped.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("`{0}…` is not an age identity (expected `AGE-SECRET-KEY-1…`)")]
    Identity(String),
    #[error("no age identity Drover holds opens this file's data key: {0}")]
    NoIdentity(String),
    #[error("cannot read the age key file {path}: {message}")]
    Read { path: String, message: String },
}

/// The environment variable naming an age key file (SOPS's name, so one setup serves
/// `sops -d` and Drover).
pub const KEY_FILE_VAR: &str = "SOPS_AGE_KEY_FILE";
/// The environment variable holding age identities themselves.
pub const KEY_VAR: &str = "SOPS_AGE_KEY";

/// The age identities the control plane decrypts with, and where they came from.
pub struct Keys {
    identities: Vec<age::x25519::Identity>,
    from: String,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keys({} from {})", self.identities.len(), self.from)
    }
}

impl Keys {
    /// No identities: encrypted secrets cannot be opened.
    pub fn none() -> Keys {
        Keys {
            identities: Vec::new(),
            from: "nowhere (no key configured)".into(),
        }
    }

    /// The identities in a key file's text.
    pub fn from_text(text: &str) -> Result<Keys, KeyError> {
        Ok(Keys {
            identities: identities(text)?,
            from: "the given text".into(),
        })
    }

    /// The identities of a key file (`age-keygen -o FILE`).
    pub fn from_file(path: &Path) -> Result<Keys, KeyError> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| KeyError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        })?);
        Ok(Keys {
            identities: identities(&text)?,
            from: path.display().to_string(),
        })
    }

    /// As SOPS looks for them: `$SOPS_AGE_KEY_FILE`, then `$SOPS_AGE_KEY`, then
    /// `$XDG_CONFIG_HOME/sops/age/keys.txt` (`~/.config/…`) if it exists; none if
    /// nothing is set.
    pub fn from_env() -> Result<Keys, KeyError> {
        if let Some(path) = std::env::var_os(KEY_FILE_VAR).filter(|p| !p.is_empty()) {
            return Keys::from_file(Path::new(&path));
        }
        if let Ok(text) = std::env::var(KEY_VAR).map(Zeroizing::new)
            && !text.trim().is_empty()
        {
            return Ok(Keys {
                identities: identities(&text)?,
                from: format!("${KEY_VAR}"),
            });
        }
        let config = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
        match config.map(|c| c.join("sops/age/keys.txt")) {
            Some(path) if path.is_file() => Keys::from_file(&path),
            _ => Ok(Keys::none()),
        }
    }

    /// Where the identities came from (a path or a variable's name), for messages.
    pub fn from(&self) -> &str {
        &self.from
    }

    pub fn is_empty(&self) -> bool {
        self.identities.is_empty()
    }

    /// The public keys (`age1…`) of the identities: what to encrypt to.
    pub fn recipients(&self) -> Vec<String> {
        self.identities
            .iter()
            .map(|i| i.to_public().to_string())
            .collect()
    }

    /// The file's data key, from the first stanza one of our identities opens.
    pub fn data_key(&self, stanzas: &[AgeStanza]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let ours = self.recipients();
        // Stanzas for our own recipients first: each failed try costs an X25519.
        let mut ordered: Vec<&AgeStanza> = stanzas.iter().collect();
        ordered.sort_by_key(|s| !ours.contains(&s.recipient));
        let mut last = KeyError::NoIdentity(format!(
            "the file is encrypted for {}; Drover holds {}",
            list(stanzas.iter().map(|s| s.recipient.as_str())),
            if ours.is_empty() {
                "no age key".to_owned()
            } else {
                format!("the key of {}", list(ours.iter().map(String::as_str)))
            }
        ));
        for stanza in ordered {
            match unwrap(&stanza.enc, &self.identities) {
                Ok(key) if key.len() == 32 => return Ok(Zeroizing::new(key)),
                Ok(_) => last = KeyError::NoIdentity("the wrapped data key is not 32 bytes".into()),
                Err(_) => {}
            }
        }
        Err(last)
    }
}

fn list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

/// A new identity, as `age-keygen` writes it: a comment with the public key, then the
/// secret key.
pub fn generate() -> Zeroizing<String> {
    let identity = age::x25519::Identity::generate();
    Zeroizing::new(format!(
        "# created: by drover secret keygen\n# public key: {}\n{}\n",
        identity.to_public(),
        identity.to_string().expose_secret()
    ))
}

/// Wraps a data key for each recipient (`age1…`), armored as SOPS writes it.
pub fn wrap(data_key: &[u8], recipient: &str) -> Result<String, KeyError> {
    use std::io::Write;
    let parsed: age::x25519::Recipient = recipient
        .parse()
        .map_err(|_| KeyError::Identity(recipient.chars().take(14).collect()))?;
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(&parsed as &dyn age::Recipient))
            .map_err(|e| KeyError::NoIdentity(e.to_string()))?;
    let mut out = Vec::new();
    let armor = age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
        .map_err(|e| KeyError::NoIdentity(e.to_string()))?;
    let mut writer = encryptor
        .wrap_output(armor)
        .map_err(|e| KeyError::NoIdentity(e.to_string()))?;
    writer
        .write_all(data_key)
        .and_then(|_| writer.finish())
        .and_then(|armor| armor.finish())
        .map_err(|e| KeyError::NoIdentity(e.to_string()))?;
    Ok(String::from_utf8(out).expect("armor is ASCII"))
}

/// Parses the identities of an age key file (one `AGE-SECRET-KEY-1…` per line;
/// comments and blank lines skipped).
pub fn identities(text: &str) -> Result<Vec<age::x25519::Identity>, KeyError> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            l.parse::<age::x25519::Identity>()
                // Only the start: the rest of the line is a secret.
                .map_err(|_| KeyError::Identity(l.chars().take(14).collect()))
        })
        .collect()
}

/// The plaintext of an armored age file, opened with any of `identities`.
pub fn unwrap(armored: &str, identities: &[age::x25519::Identity]) -> Result<Vec<u8>, KeyError> {
    let reader = age::armor::ArmoredReader::new(armored.trim().as_bytes());
    let decryptor = age::Decryptor::new(reader).map_err(|e| KeyError::NoIdentity(e.to_string()))?;
    let mut plain = Vec::new();
    decryptor
        .decrypt(identities.iter().map(|i| i as &dyn age::Identity))
        .map_err(|e| KeyError::NoIdentity(e.to_string()))?
        .read_to_end(&mut plain)
        .map_err(|e| KeyError::NoIdentity(e.to_string()))?;
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    // age's own key pair and file from SOPS's tests (age/keysource_test.go): the
    // armored file holds the four bytes `data`.
    const IDENTITY: &str =
        "AGE-SECRET-KEY-1G0Q5K9TV4REQ3ZSQRMTMG8NSWQGYT0T7TZ33RAZEE0GZYVZN0APSU24RK7";
    const OTHER: &str =
        "AGE-SECRET-KEY-1432K5YRNSC44GC4986NXMX6GVZ52WTMT9C79CLUVWYY4DKDHD5JSNDP4MC";
    const WRAPPED: &str = "-----BEGIN AGE ENCRYPTED FILE-----
YWdlLWVuY3J5cHRpb24ub3JnL3YxCi0+IFgyNTUxOSBvY2t2NkdLUGRvY3l2OGNy
MVJWcUhCOEZrUG8yeCtnRnhxL0I5NFk4YjJFCmE4SVQ3MEdyZkFqRWpSa2F0NVhF
VDUybzBxdS9nSGpHSVRVMUI0UEVqZkkKLS0tIGJjeGhNQ0Y5L2VZRVVYSm90djFF
bzdnQ3UwTGljMmtrbWNMV1MxYkFzUFUK4xjOZOTGdcbzuwUY/zeBXhcF+Md3e5PQ
EylloI7MNGbadPGb
-----END AGE ENCRYPTED FILE-----";

    #[test]
    fn a_key_wrapped_for_our_identity_opens_and_one_for_another_does_not() {
        let ours = identities(&format!("# created: by sops' tests\n{IDENTITY}\n")).unwrap();
        assert_eq!(unwrap(WRAPPED, &ours).unwrap(), b"data");
        let theirs = identities(OTHER).unwrap();
        assert!(matches!(
            unwrap(WRAPPED, &theirs),
            Err(KeyError::NoIdentity(_))
        ));
    }

    #[test]
    fn a_data_key_the_age_cli_wraps_is_unwrapped() {
        // The real `age` (Debian's package), as people and SOPS's users run it.
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("key.txt");
        let keygen = std::process::Command::new("age-keygen")
            .arg("-o")
            .arg(&key_file)
            .output()
            .expect("age-keygen runs (Debian's age package; .ci/install-deps installs it)");
        assert!(keygen.status.success());
        let text = std::fs::read_to_string(&key_file).unwrap();
        let recipient = text
            .lines()
            .find_map(|l| l.strip_prefix("# public key: "))
            .expect("age-keygen writes the public key")
            .to_owned();
        let data_key = [42u8; 32];
        let plain = dir.path().join("data-key");
        std::fs::write(&plain, data_key).unwrap();
        let wrapped = std::process::Command::new("age")
            .args(["--encrypt", "--armor", "--recipient", &recipient])
            .arg(&plain)
            .output()
            .expect("age runs");
        assert!(wrapped.status.success());
        let armored = String::from_utf8(wrapped.stdout).unwrap();
        assert!(armored.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
        assert_eq!(
            unwrap(&armored, &identities(&text).unwrap()).unwrap(),
            data_key
        );
    }

    #[test]
    fn a_bad_identity_line_is_named_by_its_start_only() {
        let Err(error) = identities("AGE-SECRET-KEY-1NOTAKEYATALLBUTSECRETLOOKING") else {
            panic!("a line that is no key is refused");
        };
        assert_eq!(
            error.to_string(),
            "`AGE-SECRET-KEY…` is not an age identity (expected `AGE-SECRET-KEY-1…`)"
        );
    }
}
