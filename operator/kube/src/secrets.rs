//! Secret values on Kubernetes. Rendering stays pure and value-free (a Secret's keys
//! and an annotation with their fingerprints); just before a Secret is applied its
//! `data` is filled from the control plane's memory, and a Deployment's pod template
//! carries the fingerprints of the secrets it mounts, so a new value rolls it — which
//! Kubernetes itself does not do.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use drover_control::engine::EngineError;
use drover_diff::{ObjectKey, State};
use drover_model::Kind;
use drover_secrets::Vault;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The annotation on a pod template: the fingerprints of the secrets it mounts.
pub const SECRETS_ANNOTATION: &str = "drover.dev/secrets";

/// Each key of the Secret `value` with the fingerprint its value has.
fn fingerprints(value: &Value) -> impl Iterator<Item = (&String, &str)> {
    value["spec"]["data"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k, v.as_str().unwrap_or_default()))
}

/// Fills a rendered Secret's `data` with the values `key` (a Drover Secret whose
/// normalized object is `value`) holds; an error names a key whose value is missing.
pub fn fill(
    vault: &Vault,
    key: &ObjectKey,
    value: &Value,
    object: &mut Value,
) -> Result<(), EngineError> {
    let mut data = serde_json::Map::new();
    for (k, fingerprint) in fingerprints(value) {
        let plain = vault
            .get(&key.environment, &key.name, k, fingerprint)
            .ok_or_else(|| {
                EngineError::Failed(format!(
                    "secret {}: the value of key `{k}` is not decrypted (the control plane holds no key that opens it)",
                    key.name
                ))
            })?;
        data.insert(k.clone(), Value::from(STANDARD.encode(plain.expose())));
    }
    object["data"] = Value::Object(data);
    Ok(())
}

/// Which key of a live Secret no longer holds the value Drover gave it (changed by
/// hand); `None` when all do, or when the values are not at hand to compare.
pub fn changed_key(vault: &Vault, key: &ObjectKey, value: &Value, live: &Value) -> Option<String> {
    fingerprints(value).find_map(|(k, fingerprint)| {
        let plain = vault.get(&key.environment, &key.name, k, fingerprint)?;
        let expected = STANDARD.encode(plain.expose());
        (live["data"][k].as_str() != Some(expected.as_str())).then(|| k.clone())
    })
}

/// The fingerprints of the secrets a service mounts (each found with `lookup`), as one
/// short hash; `None` when it mounts none.
pub fn checksum(
    lookup: &dyn Fn(&ObjectKey) -> Option<Value>,
    environment: &str,
    service: &Value,
) -> Option<String> {
    let mounts = service["spec"]["secrets"].as_array()?;
    if mounts.is_empty() {
        return None;
    }
    let mut hash = Sha256::new();
    for mount in mounts {
        let name = mount["name"].as_str().unwrap_or_default();
        let secret = lookup(&ObjectKey {
            environment: environment.to_owned(),
            kind: Kind::Secret,
            name: name.to_owned(),
        });
        hash.update(name.as_bytes());
        for (k, fingerprint) in secret.iter().flat_map(fingerprints) {
            hash.update(k.as_bytes());
            hash.update(fingerprint.as_bytes());
        }
    }
    Some(format!("sha256:{}", hex::encode(&hash.finalize()[..8])))
}

/// Puts `checksum` on the pod template of a rendered workload.
pub fn annotate(object: &mut Value, checksum: &str) {
    if object["spec"]["template"].is_object() {
        object["spec"]["template"]["metadata"]["annotations"][SECRETS_ANNOTATION] =
            Value::from(checksum);
    }
}

/// The services of `environment` in `state` that mount the secret `name`.
pub fn users<'a>(
    state: &'a State,
    environment: &'a str,
    name: &'a str,
) -> impl Iterator<Item = (&'a ObjectKey, &'a Value)> {
    state.iter().filter(move |(k, v)| {
        k.environment == environment
            && k.kind == Kind::Service
            && v["spec"]["secrets"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["name"] == name))
    })
}
