//! `Secret`: named values, encrypted in Git with SOPS and age, delivered to instances
//! as files (and, where a service asks, environment variables) and never printed.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The desired state of one secret. Values stay encrypted in Git; Drover decrypts them
/// only in the control plane, to deliver them to instances.
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
    /// Key → value. Each key becomes one file. In Git a value is encrypted with SOPS
    /// (`ENC[AES256_GCM,data:…,iv:…,tag:…,type:str]`, the file's data key wrapped for
    /// age recipients in its top-level `sops:` block; `drover secret encrypt` writes
    /// it); a value in clear is allowed only where no policy requires encryption.
    /// Keys: letters, digits, `.`, `_`, `-`.
    #[cfg_attr(feature = "proptest", proptest(strategy = "crate::arb::small_map()"))]
    pub data: BTreeMap<String, String>,
}
