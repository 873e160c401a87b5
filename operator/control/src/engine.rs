//! The trait an engine implements: what the controller asks of the place services run
//! (the local machine, a Kubernetes cluster, a swarm). An engine observes its live
//! objects, applies one action at a time idempotently, does its own work towards what
//! is applied (placing and updating instances), and reports each service's progress
//! in the release core's vocabulary. Everything else — releases, rollbacks, reverts,
//! promotions, the autoscaler, notifications, the API — is the controller's, the same
//! for every engine.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Instant;

use drover_model::cluster::{Availability, Engine as EngineKind};
use drover_plan::{Action, Observed};
use drover_release::{OpenRelease, ServiceProgress};

use crate::view::{InstanceView, NodeView, PoolView, ProxyView, ServiceView};

/// A service, by (environment, name).
pub type ServiceKey = (String, String);

/// Why an engine could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// What was asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// What was asked for is not allowed, or not possible here.
    #[error("{0}")]
    Refused(String),
    /// The engine failed (its store, its API server, a listener).
    #[error("{0}")]
    Failed(String),
}

/// An engine's own records in the state database could not be read or written.
impl From<drover_store::StoreError> for EngineError {
    fn from(e: drover_store::StoreError) -> EngineError {
        EngineError::Failed(e.to_string())
    }
}

/// What an engine can do by itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// It rolls a changed service out itself (Kubernetes Deployments, Swarm services):
    /// the controller only judges. Without it, the engine's `converge` moves instances
    /// batch by batch.
    pub own_rolling_update: bool,
    /// Nodes' availability (active / pause / drain) can be set outside Git.
    pub node_availability: bool,
    /// How many actions of one kind it applies at once (0 and 1: one at a time), for
    /// engines whose applies wait on a remote API.
    pub concurrent_applies: usize,
}

/// What the controller tells an engine for one pass: the open releases (so a service
/// rolls in its release's `dependsOn` wave, see `drover_release::waves`) and the
/// services rolling back (they update with their `rollback` settings).
#[derive(Debug, Clone, Default)]
pub struct Orders {
    /// By environment.
    pub releases: BTreeMap<String, OpenRelease>,
    pub rolling_back: BTreeSet<ServiceKey>,
}

/// What an engine shows in `drover status` beside the controller's environments.
#[derive(Debug, Clone, Default)]
pub struct EngineStatus {
    pub services: Vec<ServiceView>,
    pub instances: Vec<InstanceView>,
    pub nodes: Vec<NodeView>,
    pub proxies: Vec<ProxyView>,
    pub pools: Vec<PoolView>,
    /// What the engine's own proxies counted (the local engine's; other engines'
    /// traffic goes through proxies with metrics of their own).
    pub traffic: Vec<drover_telemetry::snapshot::ProxyNow>,
}

/// What a service's ready instances use now, for the autoscaler.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    /// Per ready instance: CPU in millicores and memory in bytes.
    pub instances: Vec<(u64, u64)>,
    /// Requests served so far (a counter: the controller takes differences).
    pub requests: usize,
}

/// An engine. Every method must be idempotent: after a crash, the controller asks
/// again from what it observes.
pub trait Engine: Send + Sync + 'static {
    /// The `engine:` values of the clusters it runs (one, or several for [`Both`]);
    /// the controller gives it only those clusters and their environments.
    ///
    /// [`Both`]: crate::both::Both
    fn kinds(&self) -> &[EngineKind];

    /// What it can do on clusters of `kind`.
    fn capabilities(&self, kind: EngineKind) -> Capabilities;

    /// The live objects and which of them Drover created (the inventory), on every
    /// cluster it runs.
    fn observe(&self) -> impl Future<Output = Result<Observed, EngineError>> + Send;

    /// What it runs on clusters of `kind` alone: the side of the plan for that kind
    /// (an environment moving from one engine to another is deleted from the one it
    /// leaves and created on the other, not "updated" in place).
    fn observe_kind(
        &self,
        kind: EngineKind,
    ) -> impl Future<Output = Result<Observed, EngineError>> + Send {
        let _ = kind;
        self.observe()
    }

    /// Carries out one action of a plan for clusters of `kind`.
    fn apply(
        &self,
        kind: EngineKind,
        action: &Action,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;

    /// Carries out an update that returns a service to where it was before a failed
    /// release, with its `rollback` settings where the engine has its own rollback
    /// (`docker service rollback`). Default: [`Engine::apply`].
    fn roll_back(
        &self,
        kind: EngineKind,
        action: &Action,
    ) -> impl Future<Output = Result<(), EngineError>> + Send {
        self.apply(kind, action)
    }

    /// One pass of the engine's own work towards what is applied on clusters of
    /// `kind` (placing, updating, routing), steered by `orders`; returns the progress
    /// of every service there.
    fn converge(
        &self,
        kind: EngineKind,
        orders: &Orders,
    ) -> impl Future<Output = Result<BTreeMap<ServiceKey, ServiceProgress>, EngineError>> + Send;

    /// Services, instances, nodes, proxies and pools as `drover status` shows them.
    fn status(&self) -> impl Future<Output = Result<EngineStatus, EngineError>> + Send;

    /// What a service's ready instances use now (`None`: not measured here).
    fn usage(&self, env: &str, service: &str) -> impl Future<Output = Option<Usage>> + Send;

    /// Replaces every instance of a service with the same spec (`docker service
    /// update --force`, `kubectl rollout restart`); says what it did.
    fn redeploy(
        &self,
        env: &str,
        service: &str,
    ) -> impl Future<Output = Result<String, EngineError>> + Send;

    /// Sets a node's availability outside Git (`None`: follow Git again).
    fn set_availability(
        &self,
        node: &str,
        availability: Option<Availability>,
    ) -> impl Future<Output = Result<String, EngineError>> + Send;

    /// When the engine next needs a pass for time-driven work (heartbeats due,
    /// connections draining, an update's monitor period), if ever.
    fn due(&self) -> Option<Instant>;
}
