//! Normalization: every object as sorted JSON with its defaults filled in and its
//! secret values replaced by fingerprints, so that two spellings of the same object
//! compare equal and no diff can ever show a secret.

use std::collections::BTreeMap;

use std::sync::Arc;

use drover_load::{Object, Repo, Source};
use drover_model::service::Mode;
use drover_model::{Kind, Manifest};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Identifies an object across revisions and in live state.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ObjectKey {
    /// The environment, or empty for clusters.
    pub environment: String,
    /// The kind (ordered as objects are applied).
    #[serde(serialize_with = "kind_name")]
    pub kind: Kind,
    /// The object's name.
    pub name: String,
}

fn kind_name<S: serde::Serializer>(kind: &Kind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(kind.as_str())
}

/// Normalized objects by key: the form desired and live state are compared in.
pub type State = BTreeMap<ObjectKey, Value>;

/// `sha256:` and the first 8 hex digits of a value's SHA-256: enough to tell values
/// apart in a review, useless for recovering them.
pub fn fingerprint(value: &str) -> String {
    format!(
        "sha256:{}",
        hex::encode(&Sha256::digest(value.as_bytes())[..4])
    )
}

fn to_value<S: Serialize>(manifest: &Manifest<S>) -> Value {
    sorted(serde_json::to_value(manifest).expect("a model serializes to JSON"))
}

/// Rebuilds maps with sorted keys, whatever map type serde_json was built with.
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let entries: BTreeMap<String, Value> =
                map.into_iter().map(|(k, v)| (k, sorted(v))).collect();
            Value::Object(entries.into_iter().collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// A visitor of a repo's objects: their key, their source, and a way to normalize them
/// that costs nothing unless called.
type Visit<'v> = dyn FnMut(ObjectKey, &Arc<Source>, &dyn Fn() -> Value) + 'v;

fn visit<S: Serialize>(
    visitor: &mut Visit<'_>,
    environment: &str,
    kind: Kind,
    object: &Object<S>,
    fill: impl Fn(&mut Value),
) {
    let key = ObjectKey {
        environment: environment.to_owned(),
        kind,
        name: object.name().to_owned(),
    };
    visitor(key, &object.source, &|| {
        let mut value = to_value(&object.manifest);
        fill(&mut value);
        value
    });
}

/// Walks every object of a repo, with the normalization rules of each kind.
pub(crate) fn walk(repo: &Repo, visitor: &mut Visit<'_>) {
    for cluster in &repo.clusters {
        visit(visitor, "", Kind::Cluster, cluster, |_| {});
    }
    for dir in &repo.environments {
        let env = dir.name.as_str();
        if let Some(environment) = &dir.environment {
            visit(visitor, env, Kind::Environment, environment, |v| {
                // The namespace defaults to the environment's name.
                if v["spec"].get("namespace").is_none() {
                    v["spec"]["namespace"] = Value::String(environment.name().to_owned());
                }
            });
        }
        for quota in &dir.quotas {
            visit(visitor, env, Kind::Quota, quota, |_| {});
        }
        for secret in &dir.secrets {
            visit(visitor, env, Kind::Secret, secret, |v| {
                if let Some(Value::Object(data)) = v["spec"].get_mut("data") {
                    for value in data.values_mut() {
                        let fp = fingerprint(value.as_str().unwrap_or_default());
                        *value = Value::String(fp);
                    }
                }
            });
        }
        for raw in &dir.manifests {
            let key = ObjectKey {
                environment: env.to_owned(),
                kind: Kind::Manifest,
                name: raw.name.clone(),
            };
            visitor(key, &raw.source, &|| raw_value(&raw.value));
        }
        for service in &dir.services {
            let spec = service.spec();
            visit(visitor, env, Kind::Service, service, |v| {
                // A replicated service without `replicas` runs one instance, or the
                // autoscaler's minimum.
                if spec.mode == Mode::Replicated && spec.replicas.is_none() {
                    let start = spec.autoscaling.as_ref().map_or(1, |a| a.min_replicas);
                    v["spec"]["replicas"] = Value::from(start);
                }
                if let Some(Value::Array(mounts)) = v["spec"].get_mut("secrets") {
                    for mount in mounts {
                        if mount.get("target").is_none() {
                            let name = mount["name"].as_str().unwrap_or_default().to_owned();
                            mount["target"] = Value::String(format!("/run/secrets/{name}"));
                        }
                    }
                }
            });
        }
    }
}

/// A plain Kubernetes object as written, keys sorted. A Kubernetes Secret's values
/// are fingerprinted like a Drover Secret's (validation refuses such an object, but a
/// diff of an invalid repo must not show them either).
fn raw_value(value: &Value) -> Value {
    let mut value = sorted(value.clone());
    if value["apiVersion"] == "v1" && value["kind"] == "Secret" {
        for field in ["data", "stringData"] {
            if let Some(Value::Object(data)) = value.get_mut(field) {
                for v in data.values_mut() {
                    *v = Value::String(fingerprint(&v.to_string()));
                }
            }
        }
    }
    value
}

/// Hands every object a repo declares to `f`, normalized, with where it was written,
/// one at a time (nothing is kept): for rules that report at one of its fields
/// (policies).
pub fn for_each_normalized(repo: &Repo, mut f: impl FnMut(ObjectKey, &Arc<Source>, Value)) {
    walk(repo, &mut |key, source, normalized| {
        f(key, source, normalized())
    });
}

/// The normalized state a repo declares.
pub fn normalize(repo: &Repo) -> State {
    let mut state = State::new();
    walk(repo, &mut |key, _, normalized| {
        state.insert(key, normalized());
    });
    state
}
