//! Rendering, pure: each of Drover's objects as the Kubernetes objects that run it. The
//! same applied object always renders the same manifests, so the engine can compare
//! live objects with a rendering and know what is drift.
//!
//! | Drover | Kubernetes |
//! |---|---|
//! | `Environment` | `Namespace` |
//! | `Service` | `Deployment` (`DaemonSet` in global mode), `Service` (by access mode), `HorizontalPodAutoscaler`, `Ingress` (routes) |
//! | `Quota` | `ResourceQuota` + `LimitRange` |
//! | `Secret` | `Secret` |
//! | a plain Kubernetes object (`Manifest`) | itself, in the environment's namespace |
//! | `Cluster` | nothing: it says where to connect |

use std::collections::{BTreeMap, BTreeSet};

use drover_diff::ObjectKey;
use drover_model::Kind;
use drover_model::cluster::KubernetesCluster;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

mod network;
mod quota;
mod workload;

#[cfg(test)]
mod tests;

/// The field manager of every apply Drover makes: one, fixed, so Kubernetes knows
/// which fields are Drover's.
pub const FIELD_MANAGER: &str = "drover";
/// Set on everything Drover creates; the inventory, not this label, decides what is
/// pruned.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "drover");
/// Which Drover object a Kubernetes object renders: `ENV/KIND/NAME`.
pub const OWNER: &str = "drover.dev/owner";
/// The label selecting a service's Pods.
pub const SERVICE_LABEL: &str = "drover.dev/service";
/// The label naming an object's environment.
pub const ENVIRONMENT_LABEL: &str = "drover.dev/environment";

/// What discovery found that rendering depends on: API versions where Drover has a
/// choice, and which kinds are cluster-scoped (they get no namespace).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Apis {
    /// `autoscaling/v2` where served (1.23+), else `autoscaling/v2beta2`.
    pub autoscaling: String,
    /// Cluster-scoped kinds as `group/Kind` (`/Namespace`,
    /// `rbac.authorization.k8s.io/ClusterRole`).
    pub cluster_scoped: BTreeSet<String>,
}

impl Apis {
    /// Whether objects of this kind live outside namespaces. A kind discovery did not
    /// list (a CRD applied after Drover connected) counts as namespaced.
    pub fn is_cluster_scoped(&self, api_version: &str, kind: &str) -> bool {
        self.cluster_scoped
            .contains(&ObjectRef::key_of(api_version, kind))
    }
}

impl Default for Apis {
    /// What every cluster serves, for rendering without one (previews, goldens).
    fn default() -> Self {
        let cluster_scoped = [
            "/Namespace",
            "/Node",
            "/PersistentVolume",
            "rbac.authorization.k8s.io/ClusterRole",
            "rbac.authorization.k8s.io/ClusterRoleBinding",
            "apiextensions.k8s.io/CustomResourceDefinition",
            "storage.k8s.io/StorageClass",
            "scheduling.k8s.io/PriorityClass",
            "networking.k8s.io/IngressClass",
            "admissionregistration.k8s.io/ValidatingWebhookConfiguration",
            "admissionregistration.k8s.io/MutatingWebhookConfiguration",
        ];
        Apis {
            autoscaling: "autoscaling/v2".to_owned(),
            cluster_scoped: cluster_scoped.iter().map(|k| (*k).to_owned()).collect(),
        }
    }
}

/// Where an environment's objects go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub namespace: String,
    pub apis: Apis,
    /// The environment's progress deadline in seconds (a Deployment's
    /// `progressDeadlineSeconds`).
    pub progress_deadline: u64,
}

/// The API group of an `apiVersion` (`apps` of `apps/v1`; empty for the core group's
/// `v1`).
pub fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(group, _)| group)
}

/// A Kubernetes object by identity: the API group (not its version, which discovery
/// may change), kind, namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    pub name: String,
}

impl ObjectRef {
    /// The reference of a rendered or live manifest.
    pub fn of(manifest: &Value) -> ObjectRef {
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        ObjectRef {
            api_version: text(&manifest["apiVersion"]),
            kind: text(&manifest["kind"]),
            namespace: text(&manifest["metadata"]["namespace"]),
            name: text(&manifest["metadata"]["name"]),
        }
    }

    /// The API group (`apps`, `` for the core group).
    pub fn group(&self) -> &str {
        group_of(&self.api_version)
    }

    /// Its kind with its group, `apps/Deployment` (`/ConfigMap` for the core group):
    /// what a watch is for.
    pub fn kind_key(&self) -> String {
        format!("{}/{}", self.group(), self.kind)
    }

    /// [`ObjectRef::kind_key`] of a kind.
    pub fn key_of(api_version: &str, kind: &str) -> String {
        format!("{}/{kind}", group_of(api_version))
    }

    /// Same object, whatever its API version.
    pub fn same_object(&self, other: &ObjectRef) -> bool {
        self.group() == other.group()
            && self.kind == other.kind
            && self.namespace == other.namespace
            && self.name == other.name
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{}/{}", self.kind, self.name)
        } else {
            write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// What one Drover object renders to, and what could not be carried over (said
/// loudly, never dropped in silence).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rendered {
    pub objects: Vec<Value>,
    pub warnings: Vec<String>,
}

/// Why an object cannot run on Kubernetes as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{object}: {message}")]
pub struct RenderError {
    /// `service web`, `quota staging-quota`.
    pub object: String,
    pub message: String,
}

impl RenderError {
    fn new(key: &ObjectKey, message: impl Into<String>) -> RenderError {
        RenderError {
            object: format!("{} {}", key.kind.as_str().to_lowercase(), key.name),
            message: message.into(),
        }
    }
}

/// Where an environment's objects go, read from its Environment and Cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The cluster's name in the repo.
    pub cluster: String,
    pub spec: KubernetesCluster,
    pub namespace: String,
    /// The environment's progress deadline, in seconds.
    pub progress_deadline: u64,
}

impl Placement {
    /// Where `env`'s objects go, from its Environment and Cluster as `lookup` finds them
    /// (applied, about to be, or desired); the error says which is missing.
    pub fn of(
        env: &str,
        lookup: impl Fn(&ObjectKey) -> Option<Value>,
    ) -> Result<Placement, String> {
        let find = |kind: Kind, environment: &str, name: &str| {
            lookup(&ObjectKey {
                environment: environment.to_owned(),
                kind,
                name: name.to_owned(),
            })
        };
        let environment = find(Kind::Environment, env, env)
            .ok_or_else(|| format!("environment {env} is not applied yet"))?;
        let cluster = environment["spec"]["cluster"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let cluster_value = find(Kind::Cluster, "", &cluster)
            .ok_or_else(|| format!("cluster {cluster} is not applied yet"))?;
        let spec: KubernetesCluster =
            serde_json::from_value(cluster_value["spec"]["kubernetes"].clone()).unwrap_or_default();
        let deadline: drover_model::Duration =
            serde_json::from_value(environment["spec"]["rollback"]["progressDeadline"].clone())
                .unwrap_or(drover_model::Duration::secs(600));
        Ok(Placement {
            namespace: namespace_of(
                env,
                environment["spec"]["namespace"].as_str(),
                &spec.namespace_prefix,
            ),
            cluster,
            spec,
            progress_deadline: deadline.0 / 1000,
        })
    }

    /// The rendering target on a cluster serving `apis`.
    pub fn target(&self, apis: Apis) -> Target {
        Target {
            namespace: self.namespace.clone(),
            apis,
            progress_deadline: self.progress_deadline,
        }
    }
}

/// The namespace of an environment: its `namespace`, else the cluster's prefix and its
/// name.
pub fn namespace_of(environment: &str, spec_namespace: Option<&str>, prefix: &str) -> String {
    spec_namespace.map_or_else(|| format!("{prefix}{environment}"), str::to_owned)
}

/// One Drover object (normalized, as planned and applied) as Kubernetes objects.
pub fn render(key: &ObjectKey, value: &Value, target: &Target) -> Result<Rendered, RenderError> {
    let mut rendered = match key.kind {
        Kind::Cluster => Rendered::default(),
        Kind::Environment => Rendered {
            objects: vec![namespace(key, target)],
            warnings: Vec::new(),
        },
        Kind::Service => workload::service(key, value, target)?,
        Kind::Quota => quota::quota(key, value, target)?,
        Kind::Secret => quota::secret(key, value, target),
        Kind::Manifest => Rendered {
            objects: vec![plain(value, target)],
            warnings: Vec::new(),
        },
    };
    for object in &mut rendered.objects {
        stamp(object, key);
    }
    Ok(rendered)
}

/// Every object of one environment rendered, in the order they are applied; what
/// cannot render is reported with the rest.
pub fn render_environment(
    objects: &BTreeMap<ObjectKey, Value>,
    target: &Target,
) -> (Rendered, Vec<RenderError>) {
    let mut all = Rendered::default();
    let mut errors = Vec::new();
    for kind in Kind::ALL.into_iter().filter(|k| *k != Kind::Cluster) {
        for (key, value) in objects.iter().filter(|(k, _)| k.kind == kind) {
            match render(key, value, target) {
                Ok(r) => {
                    all.objects.extend(r.objects);
                    all.warnings.extend(r.warnings);
                }
                Err(e) => errors.push(e),
            }
        }
    }
    (all, errors)
}

fn namespace(key: &ObjectKey, target: &Target) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": target.namespace,
            "labels": {ENVIRONMENT_LABEL: key.environment},
        },
    })
}

/// A plain Kubernetes object as written, placed in the environment's namespace unless
/// its kind is cluster-scoped.
fn plain(value: &Value, target: &Target) -> Value {
    let mut object = value.clone();
    let (api_version, kind) = (
        value["apiVersion"].as_str().unwrap_or_default(),
        value["kind"].as_str().unwrap_or_default(),
    );
    if !target.apis.is_cluster_scoped(api_version, kind) {
        object["metadata"]["namespace"] = Value::from(target.namespace.clone());
    }
    object
}

/// Labels and the owner annotation every rendered object carries.
fn stamp(object: &mut Value, key: &ObjectKey) {
    let metadata = &mut object["metadata"];
    metadata["labels"][MANAGED_BY.0] = Value::from(MANAGED_BY.1);
    metadata["labels"][ENVIRONMENT_LABEL] = Value::from(key.environment.clone());
    metadata["annotations"][OWNER] = Value::from(owner(key));
}

/// The owner annotation's value for a Drover object.
pub fn owner(key: &ObjectKey) -> String {
    format!("{}/{}/{}", key.environment, key.kind.as_str(), key.name)
}

/// Reads an object's spec into its model type.
fn spec<T: serde::de::DeserializeOwned>(key: &ObjectKey, value: &Value) -> Result<T, RenderError> {
    serde_json::from_value(value["spec"].clone())
        .map_err(|e| RenderError::new(key, format!("cannot be read: {e}")))
}

/// An object's `metadata.labels`, as the model holds them.
fn labels_of(value: &Value) -> BTreeMap<String, String> {
    serde_json::from_value(value["metadata"]["labels"].clone()).unwrap_or_default()
}

/// The standard metadata of a namespaced object.
fn metadata(name: &str, target: &Target, labels: &BTreeMap<String, String>) -> Value {
    json!({"name": name, "namespace": target.namespace, "labels": labels})
}
