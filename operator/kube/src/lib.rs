//! The Kubernetes engine: an environment rendered to Kubernetes objects, applied by
//! server-side apply, pruned by the inventory Drover recorded, judged from live status.

pub mod cluster;
mod discovery;
pub mod drift;
mod engine;
pub mod health;
pub mod nodes;
pub mod plan;
pub mod render;
pub mod secrets;

pub use cluster::{Cluster, ClusterError};
pub use engine::KubeEngine;
