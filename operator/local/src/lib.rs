//! The local engine: Drover's embedded default, the whole GitOps loop on one machine.
//!
//! Layering, from pure to effectful:
//! - [`run_spec`] turns a service into what an agent runs (argv, env, probes) and its
//!   hash; [`instances`] decides, from the applied objects, the nodes and the current
//!   instances, which instance runs where (through `drover-scheduler`). Both are pure.
//! - [`control`] is the control plane: it follows Git, applies revisions to the store,
//!   reverts drift, keeps instance records and node liveness, and feeds the proxy.
//! - [`server`] is its HTTP API; agents talk to it through [`protocol`].
//! - [`agent`] is a node agent: it runs what its node is assigned and reports back.
//! - [`promotion`] decides what a promotion carries (pure); [`notify`] posts release
//!   and promotion events to webhooks.
//! - [`files`] is the layout of the state directory both sides share.

pub mod agent;
pub mod client;
pub mod control;
pub mod files;
pub mod git_writer;
pub mod instances;
pub mod notify;
pub mod promoter;
pub mod protocol;
pub mod rollout;
pub mod run_spec;
pub mod server;
pub mod view;
