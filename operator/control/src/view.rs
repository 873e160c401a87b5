//! What the API shows: environments, services, instances, nodes and proxies, shaped
//! for `drover status` and for scripts (`--output json`).

use serde::{Deserialize, Serialize};

pub use drover_release::{Health, Lifecycle, SyncStatus};

/// Everything `drover status` shows.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Status {
    pub environments: Vec<EnvironmentView>,
    pub services: Vec<ServiceView>,
    pub instances: Vec<InstanceView>,
    pub nodes: Vec<NodeView>,
    pub proxies: Vec<ProxyView>,
    #[serde(default)]
    pub pools: Vec<PoolView>,
    /// Each environment that promotes from another, and whether its gate is open now.
    #[serde(default)]
    pub promotions: Vec<GateView>,
}

/// A promotion path and its gate now.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GateView {
    pub from: String,
    pub to: String,
    /// Whether a promotion would pass the gate now.
    pub open: bool,
    /// `staging healthy for 6m2s`, or why the gate is closed.
    pub message: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EnvironmentView {
    pub name: String,
    pub cluster: String,
    pub revision: Option<String>,
    pub summary: Option<String>,
    pub sync: SyncStatus,
    pub message: String,
    /// A release of it is being judged now.
    #[serde(default)]
    pub release_open: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceView {
    pub environment: String,
    pub name: String,
    pub version: Option<String>,
    pub state: Lifecycle,
    pub health: Health,
    pub ready: u32,
    pub desired: u32,
    /// Why it is abnormal, when it is.
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceView {
    pub id: String,
    pub environment: String,
    pub service: String,
    pub node: String,
    /// The agent's phase (`running`, `backing-off`, …), or `pending` before it reports.
    pub state: String,
    pub ready: bool,
    pub pid: Option<u32>,
    pub port: Option<u16>,
    pub restarts: u32,
    #[serde(default)]
    pub cpu_millis: u64,
    #[serde(default)]
    pub memory_bytes: u64,
    /// Runs the spec it is assigned (false while being replaced).
    pub current: bool,
    pub last_failure: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeView {
    pub name: String,
    pub cluster: String,
    pub role: String,
    /// The availability in force: the override when there is one, else Git's.
    pub availability: String,
    /// Set with `drover node update --availability`.
    pub availability_override: Option<String>,
    /// `ready` while heartbeats arrive, else `down`.
    pub status: String,
    pub instances: u32,
    pub agent_pid: Option<u32>,
    /// Declared capacity (what the scheduler reserves against).
    pub cpu: String,
    pub memory: String,
    /// What its instances use now, as its agent measures it.
    #[serde(default)]
    pub cpu_used_millis: u64,
    #[serde(default)]
    pub memory_used_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProxyView {
    pub cluster: String,
    pub listener: String,
    pub address: String,
}

/// A proxy address pool and how much of it is used (nothing warns when a pool runs
/// out, so its usage is shown).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PoolView {
    pub cluster: String,
    pub name: String,
    pub cidr: String,
    /// `active` or `backup`, as Git says.
    pub role: String,
    /// `ACTIVE`, `DRAINING` (demoted, its connections finishing) or `READY`.
    pub status: String,
    /// Addresses in use by proxies.
    pub used: u64,
    pub capacity: u64,
}

/// `POST /api/v1/services/{env}/{service}/scale`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScaleRequest {
    pub replicas: u32,
}

/// `POST /api/v1/nodes/{node}/availability`; `None` clears the override.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AvailabilityRequest {
    pub availability: Option<String>,
}

/// The answer to a write: what happened, in a sentence.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Done {
    pub message: String,
}

/// One release in `drover history`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReleaseView {
    pub revision: String,
    pub summary: String,
    pub previous: Option<String>,
    pub trigger: drover_release::Trigger,
    pub services: Vec<String>,
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
    pub result: drover_release::ReleaseResult,
    pub reason: String,
    pub revert: Option<String>,
}

/// `POST /api/v1/environments/{env}/rollback`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RollbackRequest {
    /// A revision (commit, tag, branch); default: the last healthy release before the
    /// one in force.
    pub to: Option<String>,
}

/// One entry of `drover audit`.
pub use drover_store::AuditEntry as AuditView;

/// A promotion, as `GET /api/v1/promotions/{id}` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PromotionView {
    pub id: i64,
    pub from: String,
    pub to: String,
    pub services: Vec<String>,
    pub state: drover_release::PromotionState,
    pub reason: String,
    pub source_revision: Option<String>,
    pub changes: Vec<drover_release::promotion::Change>,
    pub commit: Option<String>,
    pub branch: Option<String>,
    pub preview: Option<String>,
    pub requested_by: String,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// `POST /api/v1/tokens`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRequest {
    pub name: String,
    pub scopes: Vec<String>,
}

/// A named token; `token` is shown once, when it is made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenView {
    pub name: String,
    pub scopes: Vec<String>,
    pub created_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}
