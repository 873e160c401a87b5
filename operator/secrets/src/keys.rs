//! Data keys wrapped for age recipients (`sops.age[].enc`: an ASCII-armored age file
//! holding the 32-byte data key), opened with the identities Drover is given — from a
//! file or an environment variable, never from the repo.

use std::io::Read;

/// Why no data key could be unwrapped.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("`{0}…` is not an age identity (expected `AGE-SECRET-KEY-1…`)")]
    Identity(String),
    #[error("no age identity Drover holds opens this file's data key: {0}")]
    NoIdentity(String),
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
