//! Drover's declarative model: the kinds a config repo holds (`Cluster`, `Environment`,
//! `Service`, `Quota`, `Secret`), their defaults, and the CRDs and JSON Schemas
//! generated from them.
//!
//! The spec structs are the single source of truth: serde reads and writes them,
//! schemars describes them, and kube's `CustomResource` derive turns them into CRDs.

pub mod cluster;
mod defaults;
pub mod environment;
pub mod environment_status;
pub mod meta;
pub mod placement;
mod port_ref;
pub mod quantity;
pub mod quota;
pub mod reference;
pub mod schema;
pub mod secret;
pub mod service;

#[cfg(feature = "proptest")]
pub mod arb;

/// A commit id as people write it: its first 7 characters (all of it when shorter).
pub fn short_id(id: &str) -> &str {
    id.get(..7).unwrap_or(id)
}

pub use cluster::ClusterSpec;
pub use environment::EnvironmentSpec;
pub use meta::{API_VERSION, GROUP, Kind, Manifest, Metadata, is_manifest_name, manifest_name};
pub use quantity::{Amount, Cpu, Duration, Memory};
pub use quota::QuotaSpec;
pub use secret::SecretSpec;
pub use service::ServiceSpec;
