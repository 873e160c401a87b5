//! Decrypted values and where the control plane keeps them: [`Plain`] (bytes that never
//! print), [`Values`] (what one revision's secrets hold, by key and fingerprint) and
//! [`Vault`] (what the engines read when they deliver a secret; memory only, never the
//! state database).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

/// A secret's plaintext. `Debug` and `Display` print a placeholder; the bytes are wiped
/// when the last copy is dropped. Serialized (base64) only to hand it to a node agent.
#[derive(Clone, PartialEq, Eq)]
pub struct Plain(Arc<Zeroizing<Vec<u8>>>);

impl Plain {
    pub fn new(bytes: Vec<u8>) -> Plain {
        Plain(Arc::new(Zeroizing::new(bytes)))
    }

    /// The bytes, for the one place that delivers them (a file, an environment variable,
    /// an engine's secret object).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Plain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Plain(<redacted>)")
    }
}

impl Serialize for Plain {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(self.expose()))
    }
}

impl<'de> Deserialize<'de> for Plain {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Plain, D::Error> {
        let text = Zeroizing::new(String::deserialize(d)?);
        STANDARD
            .decode(text.as_bytes())
            .map(Plain::new)
            .map_err(|_| serde::de::Error::custom("a secret value is not base64"))
    }
}

/// Which value: the secret (environment and name), its key, and the fingerprint the
/// normalized object shows for it (so two versions of one key never mix).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ValueId {
    pub environment: String,
    pub secret: String,
    pub key: String,
    pub fingerprint: String,
}

/// The values of one revision's secrets.
#[derive(Debug, Clone, Default)]
pub struct Values(BTreeMap<ValueId, Plain>);

impl Values {
    pub fn insert(&mut self, id: ValueId, value: Plain) {
        self.0.insert(id, value);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&ValueId, &Plain)> {
        self.0.iter()
    }
}

/// How many revisions a value outlives the last one that held it: enough for a
/// release's rollback to find the values it returns to.
const KEPT_REVISIONS: u64 = 16;

/// The values the control plane has decrypted, shared by the follower (which adds each
/// accepted revision's) and the engines (which deliver them). Memory only: after a
/// restart it is filled again from the revision in force.
#[derive(Debug, Default)]
pub struct Vault {
    inner: Mutex<VaultInner>,
}

#[derive(Debug, Default)]
struct VaultInner {
    revision: u64,
    /// Each value and the last revision that held it.
    values: BTreeMap<ValueId, (Plain, u64)>,
}

impl Vault {
    pub fn new() -> Arc<Vault> {
        Arc::new(Vault::default())
    }

    /// Adds one revision's values; forgets values no revision held for a while.
    pub fn add(&self, values: &Values) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.revision += 1;
        let now = inner.revision;
        for (id, value) in values.iter() {
            inner.values.insert(id.clone(), (value.clone(), now));
        }
        inner
            .values
            .retain(|_, (_, seen)| now - *seen <= KEPT_REVISIONS);
    }

    /// The value of `key` of a secret at `fingerprint`, when a revision held it.
    pub fn get(
        &self,
        environment: &str,
        secret: &str,
        key: &str,
        fingerprint: &str,
    ) -> Option<Plain> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let id = ValueId {
            environment: environment.to_owned(),
            secret: secret.to_owned(),
            key: key.to_owned(),
            fingerprint: fingerprint.to_owned(),
        };
        inner.values.get(&id).map(|(v, _)| v.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(fp: &str) -> ValueId {
        ValueId {
            environment: "staging".into(),
            secret: "db".into(),
            key: "password".into(),
            fingerprint: fp.into(),
        }
    }

    #[test]
    fn a_plain_value_never_prints() {
        let value = Plain::new(b"hunter2".to_vec());
        assert_eq!(format!("{value:?}"), "Plain(<redacted>)");
        let mut values = Values::default();
        values.insert(id("sha256:1"), value);
        assert!(!format!("{values:?}").contains("hunter2"));
    }

    #[test]
    fn the_vault_keeps_values_of_recent_revisions_only() {
        let vault = Vault::default();
        let mut first = Values::default();
        first.insert(id("sha256:1"), Plain::new(b"one".to_vec()));
        vault.add(&first);
        assert_eq!(
            vault
                .get("staging", "db", "password", "sha256:1")
                .unwrap()
                .expose(),
            b"one"
        );
        assert!(vault.get("staging", "db", "password", "sha256:2").is_none());
        for _ in 0..KEPT_REVISIONS {
            vault.add(&Values::default());
        }
        assert!(vault.get("staging", "db", "password", "sha256:1").is_some());
        vault.add(&Values::default());
        assert!(vault.get("staging", "db", "password", "sha256:1").is_none());
    }
}
