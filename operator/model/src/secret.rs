//! `Secret`: named encrypted values, delivered to instances as files and never printed.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The desired state of one secret. Values stay encrypted in Git; Drover decrypts them
/// only to deliver them to instances.
#[derive(
    CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default,
)]
#[kube(
    group = "drover.dev",
    version = "v1alpha1",
    kind = "Secret",
    plural = "secrets",
    shortname = "dsec",
    namespaced,
    doc = "Named encrypted values, delivered to Drover service instances as files."
)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretSpec {
    /// Key → encrypted value (age, ASCII-armored). Each key becomes one file.
    /// Keys: letters, digits, `.`, `_`, `-`.
    #[cfg_attr(feature = "proptest", proptest(strategy = "crate::arb::small_map()"))]
    pub encrypted_data: BTreeMap<String, String>,
    /// age public keys (`age1…`) the values are encrypted to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "proptest", proptest(strategy = "crate::arb::few()"))]
    pub recipients: Vec<String>,
}
