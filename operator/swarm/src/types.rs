//! The Engine API's objects as the engine reads them, parsed once here: the fields
//! Drover decides on are typed (task and update states are enums), and specs stay the
//! JSON the engine returned, so comparing them with a rendering loses nothing.

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct Version {
    #[serde(rename = "Index", default)]
    pub index: u64,
}

/// A service: its spec as the engine keeps it, and where its update is.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Service {
    #[serde(rename = "ID", default)]
    pub id: String,
    #[serde(default)]
    pub version: Version,
    #[serde(default)]
    pub spec: Value,
    /// What `docker service rollback` returns to.
    #[serde(default)]
    pub previous_spec: Option<Value>,
    #[serde(default)]
    pub update_status: Option<UpdateStatus>,
    /// Counts of its tasks (asked for with `?status=true`).
    #[serde(default)]
    pub service_status: Option<ServiceStatus>,
}

impl Service {
    pub fn name(&self) -> &str {
        self.spec["Name"].as_str().unwrap_or_default()
    }

    pub fn labels(&self) -> &Value {
        &self.spec["Labels"]
    }
}

/// Where a service's update (or rollback) is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateState {
    #[default]
    #[serde(rename = "")]
    None,
    Updating,
    Paused,
    Completed,
    RollbackStarted,
    RollbackPaused,
    RollbackCompleted,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateStatus {
    #[serde(default)]
    pub state: UpdateState,
    #[serde(default)]
    pub message: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceStatus {
    #[serde(default)]
    pub running_tasks: u64,
    #[serde(default)]
    pub desired_tasks: u64,
}

/// A task's state (swarmkit's lifecycle, in order).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    #[default]
    New,
    Allocated,
    Pending,
    Assigned,
    Accepted,
    Preparing,
    Ready,
    Starting,
    Running,
    Complete,
    Shutdown,
    Failed,
    Rejected,
    Remove,
    Orphaned,
    /// A state a newer engine added.
    #[serde(other)]
    Unknown,
}

impl TaskState {
    pub fn as_str(self) -> &'static str {
        use TaskState::*;
        match self {
            New => "new",
            Allocated => "allocated",
            Pending => "pending",
            Assigned => "assigned",
            Accepted => "accepted",
            Preparing => "preparing",
            Ready => "ready",
            Starting => "starting",
            Running => "running",
            Complete => "complete",
            Shutdown => "shutdown",
            Failed => "failed",
            Rejected => "rejected",
            Remove => "remove",
            Orphaned => "orphaned",
            Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TaskStatus {
    #[serde(default)]
    pub timestamp: String,
    #[serde(default)]
    pub state: TaskState,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub err: Option<String>,
    #[serde(default)]
    pub port_status: Value,
}

/// One task: an instance of a service on a node.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Task {
    #[serde(rename = "ID", default)]
    pub id: String,
    #[serde(rename = "ServiceID", default)]
    pub service_id: String,
    #[serde(rename = "NodeID", default)]
    pub node_id: Option<String>,
    #[serde(default)]
    pub desired_state: TaskState,
    #[serde(default)]
    pub status: TaskStatus,
    /// The service's task template when the task was made.
    #[serde(default)]
    pub spec: Value,
}

impl Task {
    /// The host port its first published port got (host mode).
    pub fn published_port(&self) -> Option<u16> {
        self.status.port_status["Ports"][0]["PublishedPort"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
    }
}

/// A node; its spec is kept whole, as an update must send it back.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Node {
    #[serde(rename = "ID", default)]
    pub id: String,
    #[serde(default)]
    pub version: Version,
    #[serde(default)]
    pub spec: Value,
    #[serde(default)]
    pub description: Value,
    #[serde(default)]
    pub status: Value,
}

impl Node {
    pub fn hostname(&self) -> &str {
        self.description["Hostname"].as_str().unwrap_or_default()
    }
}

/// A network or a secret: what the engine needs to find and prune them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Named {
    pub id: String,
    pub name: String,
    pub labels: Value,
}

/// Drover's label on an object's labels.
pub fn is_ours(labels: &Value) -> bool {
    labels[crate::render::MANAGED_BY.0] == crate::render::MANAGED_BY.1
}
