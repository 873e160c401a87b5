//! The Kubernetes engine: an environment rendered to Kubernetes objects, applied by
//! server-side apply, pruned by the inventory Drover recorded, judged from live status.

pub mod render;
