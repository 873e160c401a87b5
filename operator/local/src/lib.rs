//! The local engine: Drover's embedded default, services on one machine.
//!
//! Layering, from pure to effectful:
//! - [`run_spec`] turns a service into what an agent runs (argv, env, probes) and its
//!   hash; [`instances`] decides, from the applied objects, the nodes and the current
//!   instances, which instance runs where (through `drover-scheduler`); [`rollout`]
//!   which instances move to a new spec now. All three are pure.
//! - [`engine`] is the engine (`impl drover_control::Engine for LocalEngine`): its
//!   state, node liveness, instance records, rolling updates, routing tables, address
//!   pools and each node's assignments.
//! - [`agents`] is the API route agents report to; they exchange [`protocol`].
//! - [`agent`] is a node agent: it runs what its node is assigned and reports back.
//! - [`files`] is the engine's part of the state directory (process marks, instance
//!   files).
//! - `proxies` starts, adopts and feeds the proxy processes, one per listener.

pub mod agent;
pub mod agents;
pub mod engine;
pub mod files;
pub mod instances;
pub mod mounts;
pub mod protocol;
mod proxies;
pub mod rollout;
pub mod run_spec;

pub use engine::{LocalConfig, LocalEngine, ProxyHost};
