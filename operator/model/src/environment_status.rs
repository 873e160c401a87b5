//! The status `drover operator` writes on each `Environment` resource, in Flux's
//! contract (kstatus): `Ready` / `Reconciling` / `Stalled` / `Healthy` conditions with
//! stable reasons, `observedGeneration`, the last applied and attempted revisions, the
//! inventory of what Drover made, the open release and a bounded history.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What the operator last saw and did for one environment.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Healthy`, and `Reconciling` / `Stalled` while they are true.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The commit whose objects are in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_revision: Option<String>,
    /// The last commit Drover tried to apply (rejected revisions included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempted_revision: Option<String>,
    /// The value of the `reconcile.fluxcd.io/requestedAt` annotation last handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
    /// The cluster the environment runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Every Kubernetes object Drover made for the environment: only these are pruned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<Inventory>,
    /// The release being judged, if one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<ReleaseRecord>,
    /// The last releases, newest first (at most `rollback.historyLimit`, at most 10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<ReleaseRecord>,
}

/// One condition, as `metav1.Condition` has it.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`, `Reconciling`, `Stalled` or `Healthy`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// A stable CamelCase reason.
    pub reason: String,
    /// What people read.
    pub message: String,
    /// When `status` last changed (RFC 3339).
    pub last_transition_time: String,
    /// The generation it was set for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A condition's status.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

/// What Drover made, as Flux's inventory lists it.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
pub struct Inventory {
    pub entries: Vec<InventoryEntry>,
}

/// One object Drover made: `id` is `namespace_name_group_Kind` (Flux's form), `v`
/// its API version.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct InventoryEntry {
    pub id: String,
    pub v: String,
}

/// One release of the environment.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseRecord {
    /// The commit released.
    pub revision: String,
    /// Its subject line.
    pub summary: String,
    /// The commit in force before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    /// `git`, `rollback` or `manual`.
    pub trigger: String,
    /// `progressing`, `healthy`, `failed`, `rolled-back` or `superseded`.
    pub result: String,
    /// The Drover objects it changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// When it was judged (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    /// Why it ended as it did.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// The revert commit written after a rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revert: Option<String>,
}
