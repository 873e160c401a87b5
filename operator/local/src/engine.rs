//! The local engine: Drover's embedded default, everything on one machine. It keeps
//! the objects the controller applies in its own state ([`LocalState`]), runs one agent
//! process per node (heartbeats tell which nodes are up), places every instance with
//! the scheduler, moves them through rolling updates batch by batch, and feeds each
//! proxy listener its routes and ready instances. The controller
//! (`drover_control::Controller`) drives it through [`Engine`]; its agents talk to it
//! through [`LocalEngine::report`] and [`LocalEngine::assignments`].
//!
//! A pass ([`Engine::converge`]) is recomputed from scratch each time
//! (level-triggered): nodes, placement and updates ([`place`]), routes ([`route`]),
//! then each node's assignments. A restarted engine picks up where its state says
//! things are.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use drover_control::engine::{
    Capabilities, Engine, EngineError, EngineStatus, Orders, ServiceKey, Usage,
};
use drover_model::cluster::{AddressPool, Availability, Engine as EngineKind};
use drover_plan::{Action, Observed};
use drover_proxy::Table;
use drover_release::{OpenRelease, ServiceProgress};
use drover_store::{Database, LocalState, StoreError};
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, watch};

use crate::files::{LocalPaths, StateDir};
use crate::instances::{Blocked, Live, LocalClusters, PortRange};
use crate::protocol::{Assignment, Assignments, InstanceReport, Report};
use crate::rollout;

mod place;
mod progress;
mod route;
mod status;
#[cfg(test)]
mod tests;

/// How often the engine looks again while something moves on with time (an update's
/// monitor period, a drain, a pool draining).
const TICK: Duration = Duration::from_millis(250);
/// The longest a removed instance keeps running to finish requests in flight.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an agent's request is held when there is no news for it.
pub const LONG_POLL: Duration = Duration::from_secs(1);

/// Why the local engine failed.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {address} for proxy listener {listener}: {source}")]
    Listen {
        address: String,
        listener: String,
        source: std::io::Error,
    },
}

impl From<LocalError> for EngineError {
    fn from(e: LocalError) -> EngineError {
        EngineError::Failed(e.to_string())
    }
}

/// What the local engine needs to know about its surroundings.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    pub state: StateDir,
    /// This binary: what `drover` means in a service's command.
    pub drover: PathBuf,
    /// Where the proxies run.
    pub proxies: ProxyHost,
    /// The secret values the control plane decrypted, handed to agents with their
    /// assignments.
    pub vault: Arc<drover_secrets::Vault>,
}

/// Where each proxy listener runs: its own `drover proxy` process (what `drover up`
/// does: traffic outlives the control plane), or a thread of this process (the same
/// proxy and the same file link, for tests of the engine that have no `drover`
/// binary at hand; it dies with the process).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProxyHost {
    #[default]
    Processes,
    Threads,
}

#[derive(Debug, Default)]
struct NodeLive {
    last_seen: Option<Instant>,
    /// The cluster's heartbeat timeout.
    timeout: Duration,
    agent: Option<u32>,
    /// The newest report's sequence number from `agent`.
    seq: u64,
    machine: crate::protocol::Usage,
    /// By (instance id, spec hash).
    reports: BTreeMap<(String, String), InstanceReport>,
    up: bool,
}

/// What the control plane remembers of an address pool between passes.
#[derive(Debug)]
struct PoolLive {
    was_active: bool,
    /// Set while a demoted pool's connections drain.
    draining_until: Option<Instant>,
    spec: AddressPool,
}

/// An instance that left its node's assignments while the proxy still had requests
/// in flight to it.
#[derive(Debug)]
struct Draining {
    assignment: Assignment,
    ports: Vec<u16>,
    since: Instant,
}

#[derive(Debug)]
struct Listening {
    link: crate::proxies::ProxyLink,
    addr: SocketAddr,
    /// The table last written to it.
    table: Table,
}

#[derive(Debug)]
struct Inner {
    state: LocalState,
    nodes: BTreeMap<String, NodeLive>,
    assignments: BTreeMap<String, (u64, Vec<Assignment>)>,
    generation: u64,
    proxies: BTreeMap<(String, String), Listening>,
    blocked: Vec<Blocked>,
    /// By (node, `ID@HASH`).
    draining: BTreeMap<(String, String), Draining>,
    /// By (cluster, pool name).
    pools: BTreeMap<(String, String), PoolLive>,
    /// What was last said about each instance's readiness, to say only changes.
    said_ready: BTreeMap<String, bool>,
    /// Instances (id, spec hash) whose failing has been recorded.
    said_failing: BTreeSet<(String, String)>,
    /// Since when each (instance, spec hash) has been ready.
    ready_since: BTreeMap<(String, String), Instant>,
    /// When each service's last update batch started.
    last_batch: BTreeMap<ServiceKey, Instant>,
    /// The open releases, as the controller's last orders said.
    releases: BTreeMap<String, OpenRelease>,
    /// Services rolling back (they update with their `rollback` settings).
    rolling_back: BTreeSet<ServiceKey>,
    /// Services of an open release that wait for another to finish first (its
    /// `dependsOn` wave).
    waiting: BTreeMap<ServiceKey, String>,
    /// Each service's update as of the last pass, and whether slots still wait for it.
    rollouts: BTreeMap<ServiceKey, (rollout::Step, bool)>,
}

/// The local engine. Shared by the controller, the API (agents' reports) and `up`.
pub struct LocalEngine {
    config: LocalConfig,
    ports: PortRange,
    inner: Mutex<Inner>,
    wake: Arc<Notify>,
    generation: watch::Sender<u64>,
    started: Instant,
}

impl std::fmt::Debug for LocalEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEngine")
            .field("state", &self.config.state)
            .finish()
    }
}

/// The range instance ports come from: below the kernel's ephemeral range
/// (`net.ipv4.ip_local_port_range`, usually from 32768), like Nomad's 20000–32000.
fn instance_ports(state: &StateDir) -> PortRange {
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (first, last) = if ephemeral_start > 21000 {
        (20000, ephemeral_start - 1)
    } else {
        (61000, 65000)
    };
    // A stable place in the range per state directory.
    let digest = Sha256::digest(state.root().to_string_lossy().as_bytes());
    let offset = u16::from_be_bytes([digest[0], digest[1]]) % (last - first);
    PortRange {
        first,
        last,
        start: first + offset,
    }
}

impl LocalEngine {
    /// Opens the engine's state. `wake` is the controller's: a report that changes
    /// anything asks it for a pass.
    pub fn open(config: LocalConfig, wake: Arc<Notify>) -> Result<Arc<LocalEngine>, LocalError> {
        let state = LocalState::open(&config.state.database())?;
        Ok(Arc::new(LocalEngine {
            ports: instance_ports(&config.state),
            config,
            inner: Mutex::new(Inner {
                state,
                nodes: BTreeMap::new(),
                assignments: BTreeMap::new(),
                generation: 0,
                proxies: BTreeMap::new(),
                blocked: Vec::new(),
                draining: BTreeMap::new(),
                pools: BTreeMap::new(),
                said_ready: BTreeMap::new(),
                said_failing: BTreeSet::new(),
                ready_since: BTreeMap::new(),
                last_batch: BTreeMap::new(),
                releases: BTreeMap::new(),
                rolling_back: BTreeSet::new(),
                waiting: BTreeMap::new(),
                rollouts: BTreeMap::new(),
            }),
            wake,
            generation: watch::channel(0).0,
            started: Instant::now(),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks the controller for a pass soon.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// An agent's heartbeat. Returns whether the node is known.
    pub fn report(&self, node: &str, report: Report) -> bool {
        let mut inner = self.lock();
        let Some(seen) = inner.nodes.get_mut(node) else {
            return false;
        };
        seen.last_seen = Some(Instant::now());
        if seen.agent == Some(report.pid) && report.seq <= seen.seq {
            // Overtaken by a newer report of the same agent: old news.
            return true;
        }
        seen.agent = Some(report.pid);
        seen.seq = report.seq;
        let reports: BTreeMap<(String, String), InstanceReport> = report
            .instances
            .into_iter()
            .map(|r| ((r.id.clone(), r.spec_hash.clone()), r))
            .collect();
        // Usage changes with every report; only a change of state is news.
        let state = |r: &BTreeMap<(String, String), InstanceReport>| -> Vec<InstanceReport> {
            r.values()
                .map(|i| InstanceReport {
                    usage: Default::default(),
                    ..i.clone()
                })
                .collect()
        };
        let changed = !seen.up || state(&seen.reports) != state(&reports);
        seen.reports = reports;
        seen.machine = report.machine;
        drop(inner);
        if changed {
            self.wake();
        }
        true
    }

    /// A node's assignments; held up to [`LONG_POLL`] while they are the ones the agent
    /// already has.
    pub async fn assignments(&self, node: &str, known: u64, hold: bool) -> Assignments {
        let mut changes = self.generation.subscribe();
        let current = || {
            let inner = self.lock();
            let (generation, instances) = inner.assignments.get(node).cloned().unwrap_or_default();
            drop(inner);
            let values = self.values_for(&instances);
            Assignments {
                generation,
                instances,
                values,
            }
        };
        let now = current();
        if !hold || now.generation != known || now.generation == 0 {
            return now;
        }
        let deadline = tokio::time::Instant::now() + LONG_POLL;
        loop {
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { break },
                _ = tokio::time::sleep_until(deadline) => break,
            }
            let next = current();
            if next.generation != known {
                return next;
            }
        }
        current()
    }

    /// The secret values `instances` need that the vault holds (an agent waits to start
    /// an instance whose values are not there yet).
    fn values_for(
        &self,
        instances: &[Assignment],
    ) -> Vec<(drover_secrets::ValueId, drover_secrets::Plain)> {
        let ids: BTreeSet<&drover_secrets::ValueId> =
            instances.iter().flat_map(|a| a.spec.values()).collect();
        ids.into_iter()
            .filter_map(|id| {
                let value =
                    self.config
                        .vault
                        .get(&id.environment, &id.secret, &id.key, &id.fingerprint)?;
                Some((id.clone(), value))
            })
            .collect()
    }

    /// The nodes the local engine runs, by cluster: `up` keeps an agent on each.
    pub fn nodes_wanted(&self) -> Vec<(String, String, Duration)> {
        let inner = self.lock();
        let Ok(observed) = inner.state.observed() else {
            return Vec::new();
        };
        let live = Live::from_state(&observed.objects);
        live.local_clusters()
            .flat_map(|(cluster, spec)| {
                let local = spec.local.as_ref().expect("local clusters have nodes");
                local.nodes.iter().map(move |n| {
                    (
                        n.name.clone(),
                        cluster.clone(),
                        local.heartbeat_timeout.to_std(),
                    )
                })
            })
            .collect()
    }

    /// One pass: nodes, placement and updates, routes, assignments.
    fn pass(&self, orders: &Orders) -> Result<BTreeMap<ServiceKey, ServiceProgress>, LocalError> {
        let inner = &mut *self.lock();
        inner.releases = orders.releases.clone();
        inner.rolling_back = orders.rolling_back.clone();
        let applied = inner.state.observed()?.objects;
        let mut live = Live::from_state(&applied);
        live.redeploys = inner.state.redeploys()?;
        let nodes = self.node_states(inner, &live)?;
        let by_node = self.place(inner, &live, &nodes)?;
        let progress = progress::of_services(inner, &live)?;
        // Routes first: an instance leaves the proxy before its agent hears it is to stop.
        self.route(inner, &live)?;
        self.publish(inner, by_node);
        Ok(progress)
    }

    /// When a node's up/down state changes next, or — while an update, a drain or a
    /// pool's drain moves on with time — one [`TICK`] from now.
    fn next_due(&self) -> Option<Instant> {
        let inner = self.lock();
        let now = Instant::now();
        let moving = !inner.draining.is_empty()
            || inner
                .rollouts
                .values()
                .any(|(step, updating)| *updating || !step.done)
            || inner.pools.values().any(|p| p.draining_until.is_some());
        let liveness = inner.nodes.values().filter_map(|n| {
            let since = n.last_seen.unwrap_or(self.started);
            // Down nodes come back with their next heartbeat, which wakes us.
            n.up.then_some(since + n.timeout)
        });
        moving
            .then_some(now + TICK)
            .into_iter()
            .chain(liveness)
            .min()
    }
}

impl Engine for LocalEngine {
    fn kinds(&self) -> &[EngineKind] {
        &[EngineKind::Local]
    }

    fn capabilities(&self, _: EngineKind) -> Capabilities {
        Capabilities {
            own_rolling_update: false,
            node_availability: true,
            // Applies change its own state, one at a time.
            concurrent_applies: 1,
        }
    }

    async fn observe(&self) -> Result<Observed, EngineError> {
        Ok(self.lock().state.observed().map_err(LocalError::from)?)
    }

    async fn apply(&self, _: EngineKind, action: &Action) -> Result<(), EngineError> {
        Ok(self.lock().state.record(action).map_err(LocalError::from)?)
    }

    async fn converge(
        &self,
        _: EngineKind,
        orders: &Orders,
    ) -> Result<BTreeMap<ServiceKey, ServiceProgress>, EngineError> {
        Ok(self.pass(orders)?)
    }

    async fn status(&self) -> Result<EngineStatus, EngineError> {
        Ok(self.engine_status()?)
    }

    async fn usage(&self, env: &str, service: &str) -> Option<Usage> {
        Some(self.usage_of(env, service))
    }

    async fn redeploy(&self, env: &str, service: &str) -> Result<String, EngineError> {
        let key = drover_diff::ObjectKey {
            environment: env.to_owned(),
            kind: drover_model::Kind::Service,
            name: service.to_owned(),
        };
        let inner = self.lock();
        let observed = inner.state.observed().map_err(LocalError::from)?;
        if !observed.objects.contains_key(&key) {
            return Err(EngineError::NotFound(format!(
                "environment `{env}` has no service `{service}`"
            )));
        }
        let generation = inner
            .state
            .redeploy(env, service)
            .map_err(LocalError::from)?;
        Ok(format!(
            "{env}/{service} redeployed (generation {generation}): every instance is replaced"
        ))
    }

    async fn set_availability(
        &self,
        node: &str,
        availability: Option<Availability>,
    ) -> Result<String, EngineError> {
        let inner = self.lock();
        if !inner.nodes.contains_key(node) {
            return Err(EngineError::NotFound(format!("no node `{node}`")));
        }
        let text = availability.map(|a| format!("{a:?}").to_lowercase());
        inner
            .state
            .set_availability_override(node, text.as_deref())
            .map_err(LocalError::from)?;
        Ok(match text {
            Some(a) => format!("node {node} availability set to {a}"),
            None => format!("node {node} availability follows Git again"),
        })
    }

    fn due(&self) -> Option<Instant> {
        self.next_due()
    }
}
