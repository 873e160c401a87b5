//! `Quota`: the most an environment may hold (counts and total resources) and the
//! defaults and bounds per instance (a limit range).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::service::ResourceList;

/// The desired state of one quota.
#[derive(
    CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default,
)]
#[kube(
    group = "drover.dev",
    version = "v1alpha1",
    kind = "Quota",
    plural = "quotas",
    namespaced,
    doc = "The most a Drover environment may hold, and the defaults and bounds per instance."
)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QuotaSpec {
    /// Totals over the whole environment; a change that would exceed one is rejected
    /// before anything is created. Unset = no bound.
    #[serde(default)]
    pub hard: QuotaHard,
    /// Defaults and bounds per instance.
    #[serde(default, skip_serializing_if = "LimitRange::is_empty")]
    pub limit_range: LimitRange,
}

/// Upper bounds over a whole environment.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QuotaHard {
    /// Instances, summed over services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<u32>,
    /// Services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<u32>,
    /// Secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<u32>,
    /// Volumes, summed over services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<u32>,
    /// Quota objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quotas: Option<u32>,
    /// Total requests (instances × request).
    #[serde(default, skip_serializing_if = "ResourceList::is_empty")]
    pub requests: ResourceList,
    /// Total limits (instances × limit).
    #[serde(default, skip_serializing_if = "ResourceList::is_empty")]
    pub limits: ResourceList,
}

/// Defaults and bounds per instance.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LimitRange {
    /// Request given to instances that set none.
    #[serde(default, skip_serializing_if = "ResourceList::is_empty")]
    pub default_request: ResourceList,
    /// Limit given to instances that set none.
    #[serde(default, skip_serializing_if = "ResourceList::is_empty")]
    pub default_limit: ResourceList,
    /// Smallest request allowed.
    #[serde(default, skip_serializing_if = "ResourceList::is_empty")]
    pub min: ResourceList,
    /// Largest limit allowed.
    #[serde(default, skip_serializing_if = "ResourceList::is_empty")]
    pub max: ResourceList,
}

impl LimitRange {
    /// Nothing set.
    pub fn is_empty(&self) -> bool {
        self.default_request.is_empty()
            && self.default_limit.is_empty()
            && self.min.is_empty()
            && self.max.is_empty()
    }
}
