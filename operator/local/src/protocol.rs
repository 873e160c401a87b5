//! What agents and the control plane say to each other. An agent posts a [`Report`]
//! (its heartbeat: what runs on its node and how it is doing) and gets back the node's
//! [`Assignments`] — the complete set of instances it should run. Both directions
//! carry whole states, never deltas, so a lost message is repaired by the next one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::run_spec::RunSpec;

/// One instance a node should run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    /// `ENV.SERVICE.SLOT`, stable across restarts of anything.
    pub id: String,
    /// Hash of `spec`: a running instance with another hash is replaced.
    pub spec_hash: String,
    pub spec: RunSpec,
    /// The ports the control plane allocated, by name (an agent picks free ones itself
    /// when this is empty).
    #[serde(default)]
    pub ports: BTreeMap<String, u16>,
}

/// The answer to a report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Assignments {
    /// Changes whenever the set changes; an agent sends back the one it has so that
    /// the control plane can hold the request until there is news (long poll).
    pub generation: u64,
    pub instances: Vec<Assignment>,
    /// The secret values the instances need, from the control plane's memory: only in
    /// this answer, never in the assignments it stores.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<(drover_secrets::ValueId, drover_secrets::Plain)>,
}

/// How one instance is doing, as its agent sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceReport {
    pub id: String,
    pub spec_hash: String,
    /// `starting`, `running`, `backing-off`, `exited`, `failed`, `stopped`.
    pub phase: String,
    pub ready: bool,
    pub pid: Option<u32>,
    /// Ports by name, as assigned on this node.
    pub ports: BTreeMap<String, u16>,
    pub restarts: u32,
    pub last_failure: Option<String>,
    /// Its readiness probe fails beyond its threshold.
    #[serde(default)]
    pub failing: bool,
    /// Since when (Unix milliseconds, the agent's clock) it has been failing.
    #[serde(default)]
    pub failing_since_ms: Option<i64>,
    /// What the instance's process uses now.
    #[serde(default)]
    pub usage: Usage,
}

/// Resources in use: CPU in millicores (averaged since the previous report) and
/// resident memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
}

/// An agent's heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The generation of the assignments the agent has applied.
    pub generation: u64,
    /// The agent's process id (the control plane stops it by pid after its own crash).
    pub pid: u32,
    /// Counts up with each report of this agent process: a report overtaken by a later
    /// one (an abandoned long poll still on its way) is recognised and ignored.
    #[serde(default)]
    pub seq: u64,
    pub instances: Vec<InstanceReport>,
    /// The machine the agent runs on (the scheduler uses the capacity declared in Git:
    /// several local nodes may share one machine).
    #[serde(default)]
    pub machine: Usage,
    /// When true, answer at once even if nothing changed (the agent has news, or has
    /// just started).
    #[serde(default)]
    pub urgent: bool,
}
