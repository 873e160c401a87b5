//! `Environment`: a named stage (staging, production, …) that runs on a cluster, with
//! its sync, rollback and promotion policies.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::defaults;
pub use crate::environment_status::EnvironmentStatus;
use crate::quantity::Duration;

/// The desired state of one environment.
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "drover.dev",
    version = "v1alpha1",
    kind = "Environment",
    plural = "environments",
    status = "EnvironmentStatus",
    printcolumn = r#"{"name":"Revision","type":"string","jsonPath":".status.lastAppliedRevision"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    doc = "A named stage (staging, production, ...) that runs on a cluster, with its sync, rollback and promotion policies."
)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvironmentSpec {
    /// Name of the `Cluster` this environment runs on.
    pub cluster: String,
    /// Namespace its objects live in (default: the environment's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// How Git changes are applied.
    #[serde(default)]
    pub sync: SyncPolicy,
    /// What happens when a release fails its health checks.
    #[serde(default)]
    pub rollback: RollbackPolicy,
    /// Where verified releases come from (production promotes from staging).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<Promotion>,
    /// Who may change this environment: commits that touch its folder (or what every
    /// environment shares, `clusters/` and `policies/`) must be allowed by these rules,
    /// as they stand in the revision in force. Unset: anyone with push access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<ChangeRules>,
}

/// Which commits may change an environment, like a protected branch: Drover's own
/// commits of the kinds named, and people's commits by the listed authors and/or
/// signed by the listed keys. Drover's revert commits are always allowed (they put
/// back what ran before).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChangeRules {
    /// Drover's promotion commits (`drover promote`) may change it.
    #[serde(default, skip_serializing_if = "defaults::is_false")]
    pub promotions: bool,
    /// Drover's deploy commits (`drover deploy`) may change it.
    #[serde(default, skip_serializing_if = "defaults::is_false")]
    pub deploys: bool,
    /// People's commits whose author e-mail is one of these may change it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "proptest", proptest(strategy = "crate::arb::few()"))]
    pub authors: Vec<String>,
    /// People's commits must carry a verified signature by one of these keys: SSH
    /// public keys (`ssh-ed25519 AAAA…`, as `gpg.format ssh` signs) or ASCII-armored
    /// OpenPGP public keys. With `authors` empty, anyone these keys sign for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "proptest", proptest(strategy = "crate::arb::few()"))]
    pub signers: Vec<String>,
}

/// How Git changes reach the environment.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyncPolicy {
    /// `automatic` (default: every new revision is applied) or `manual`.
    #[serde(default)]
    pub mode: SyncMode,
    /// Delete objects Drover created that Git no longer has (default true).
    #[serde(default = "defaults::yes")]
    pub prune: bool,
    /// Revert changes made outside Git (default true).
    #[serde(default = "defaults::yes")]
    pub self_heal: bool,
    /// Allow a revision that would prune every object (default false: such a revision
    /// is held, because an empty folder is more often a mistake than an intent).
    #[serde(default, skip_serializing_if = "defaults::is_false")]
    pub allow_empty: bool,
}

impl Default for SyncPolicy {
    fn default() -> Self {
        SyncPolicy {
            mode: SyncMode::Automatic,
            prune: true,
            self_heal: true,
            allow_empty: false,
        }
    }
}

/// Whether new revisions apply by themselves.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "kebab-case")]
pub enum SyncMode {
    #[default]
    Automatic,
    Manual,
}

/// What happens when a release fails its health checks.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RollbackPolicy {
    /// Return the whole release to the last healthy revision (default true).
    #[serde(default = "defaults::yes")]
    pub automatic: bool,
    /// Commit a revert of the failed revision to the config repo, so Git says what
    /// runs (default true).
    #[serde(default = "defaults::yes")]
    pub revert_commit: bool,
    /// A release not healthy within this time has failed (default 120s).
    #[serde(default = "defaults::progress_deadline")]
    pub progress_deadline: Duration,
    /// Releases kept in history (default 20).
    #[serde(default = "defaults::history_limit")]
    pub history_limit: u32,
}

impl Default for RollbackPolicy {
    fn default() -> Self {
        RollbackPolicy {
            automatic: true,
            revert_commit: true,
            progress_deadline: defaults::progress_deadline(),
            history_limit: defaults::history_limit(),
        }
    }
}

/// Where verified releases come from.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Promotion {
    /// The environment releases are promoted from.
    pub from: String,
    /// How long the source must have been healthy at the revision (default 5m).
    #[serde(default = "defaults::soak")]
    pub soak: Duration,
    /// `commit` (default: commit to the tracked branch) or `pull-request` (a branch and
    /// a preview to review).
    #[serde(default)]
    pub mode: PromotionMode,
}

/// How a promotion lands in Git.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "kebab-case")]
pub enum PromotionMode {
    #[default]
    Commit,
    PullRequest,
}
