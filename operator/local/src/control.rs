//! The control plane of the local engine.
//!
//! One reconcile pass, run on every change and at least every few seconds, is a
//! function of what Git wants, what the store says is applied, and what the agents
//! report:
//! 1. objects: each environment's plan (desired vs applied) is applied to the store
//!    when a new revision arrives, and drift (a change made through the API, such as
//!    `drover scale`) is reverted when self-heal is on or reported when it is off;
//!    replicas owned by an autoscaler are never drift;
//! 2. nodes: a node is up while its agent's heartbeats arrive within the cluster's
//!    heartbeat timeout; an operator's availability override beats Git's;
//! 3. instances: the scheduler places every slot; the records are stored, and each
//!    node's share becomes its assignments;
//! 4. the proxy of each listener gets routes and the ready instances.
//!
//! All of it is recomputed from scratch each time (level-triggered), so a control plane
//! that restarts after a crash picks up where the store says things are.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use drover_diff::{ObjectKey, State};
use drover_model::Kind;
use drover_model::cluster::{AddressPool, Availability, PoolRole};
use drover_model::service::UpdateOrder;
use drover_plan::{Observed, plan};
use drover_proxy::{Backend, Proxy, Route, Table};
use drover_release::{OpenRelease, ReleaseResult, SyncStatus, Trigger};
use drover_scheduler::NodeState;
use drover_source::Revision;
use drover_store::{EnvironmentStatus, InstanceRecord, Store, StoreError};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, mpsc, watch};

use self::objects::{sync_policy, write_replicas};
use crate::files::StateDir;
use crate::instances::{Blocked, Live, PortRange, instances};
use crate::protocol::{Assignment, Assignments, InstanceReport, Report};
use crate::rollout;
use crate::view::{
    EnvironmentView, InstanceView, NodeView, PoolView, ProxyView, ServiceView, Status,
};

/// How often heartbeats are checked.
const TICK: Duration = Duration::from_millis(250);
/// How often a full reconcile pass runs when nothing wakes the loop.
const RESYNC: Duration = Duration::from_secs(10);
/// The longest a removed instance keeps running to finish requests in flight.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an agent's request is held when there is no news for it.
pub const LONG_POLL: Duration = Duration::from_secs(1);

/// Why the control plane failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {address} for proxy listener {listener}: {source}")]
    Listen {
        address: String,
        listener: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    NotFound(String),
    /// The request cannot be done in the current state.
    #[error("{0}")]
    Conflict(String),
    /// A promotion's gate is closed now.
    #[error("gate not met: {0}")]
    Gate(drover_release::gate::Closed),
}

/// What the control plane needs to know about its surroundings.
#[derive(Debug, Clone)]
pub struct Config {
    pub state: StateDir,
    /// This binary: what `drover` means in a service's command.
    pub drover: PathBuf,
    /// Where release and promotion events go.
    pub notifier: crate::notify::Notifier,
}

/// A revision that passed validation, normalized.
#[derive(Debug, Clone)]
pub struct DesiredRevision {
    pub revision: Revision,
    pub state: State,
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
    proxy: Arc<Proxy>,
    addr: SocketAddr,
    table: Table,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    desired: Option<DesiredRevision>,
    rejected: Option<String>,
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
    last_batch: BTreeMap<(String, String), Instant>,
    /// The release each environment is judging now.
    releases: BTreeMap<String, OpenRelease>,
    /// Environments whose open release, if any, has been read back from the store.
    restored: BTreeSet<String>,
    /// Why a revert could not be written to Git, by environment (shown in status).
    revert_failures: BTreeMap<String, String>,
    /// Commits written for manual rollbacks, by environment: their release is `manual`.
    manual_commits: BTreeMap<String, String>,
    /// Services rolling back (they update with their `rollback` settings).
    rolling_back: BTreeSet<(String, String)>,
    /// Services of an open release that wait for another to finish first (its
    /// `dependsOn` wave), by (environment, service).
    waiting: BTreeMap<(String, String), String>,
    /// Each service's update as of the last pass, and whether slots still wait for it.
    rollouts: BTreeMap<(String, String), (rollout::Step, bool)>,
    /// Environments another environment promotes from (their health is tracked).
    promotion_sources: BTreeSet<String>,
    /// Services with `autoscaling`, as applied.
    autoscaled: Vec<(String, String, drover_model::service::Autoscaling)>,
    /// Per autoscaled service: when it was last evaluated, and the proxies' request
    /// count then.
    scaled_at: BTreeMap<(String, String), (Instant, usize)>,
}

/// A rolled-back release whose revision should be reverted in Git; whoever follows Git
/// (`drover up`) writes the commit and reports back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevertRequest {
    pub release: i64,
    pub environment: String,
    pub revision: String,
    pub reason: String,
}

/// A manual rollback of an environment to an earlier revision; whoever follows Git
/// writes a commit restoring the environment's directory as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackRequest {
    pub environment: String,
    /// A revision as the user named it, or the last healthy one before the current.
    pub to: String,
}

/// A commit Drover asks of whoever follows Git (`drover up`), which writes it and
/// reports back through [`ControlPlane::reverted`] or [`ControlPlane::rolled_back`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitWrite {
    Revert(RevertRequest),
    Restore(RollbackRequest),
}

/// The control plane. Shared by the reconcile loop and the API.
pub struct ControlPlane {
    health: Mutex<promote::Health>,
    git_writes: mpsc::UnboundedSender<GitWrite>,
    git_writes_rx: Mutex<Option<mpsc::UnboundedReceiver<GitWrite>>>,
    config: Config,
    ports: PortRange,
    inner: Mutex<Inner>,
    wake: Notify,
    generation: watch::Sender<u64>,
    started: Instant,
    say: Box<dyn Fn(&str) + Send + Sync>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
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

impl ControlPlane {
    /// Opens the store and starts with what it holds.
    pub fn open(
        config: Config,
        say: impl Fn(&str) + Send + Sync + 'static,
    ) -> Result<Arc<ControlPlane>, ControlError> {
        let store = Store::open(&config.state.database())?;
        let (git_writes, git_writes_rx) = mpsc::unbounded_channel();
        Ok(Arc::new(ControlPlane {
            git_writes,
            git_writes_rx: Mutex::new(Some(git_writes_rx)),
            ports: instance_ports(&config.state),
            config,
            inner: Mutex::new(Inner {
                store,
                desired: None,
                rejected: None,
                nodes: BTreeMap::new(),
                assignments: BTreeMap::new(),
                generation: 0,
                proxies: BTreeMap::new(),
                blocked: Vec::new(),
                draining: BTreeMap::new(),
                pools: BTreeMap::new(),
                said_ready: BTreeMap::new(),
                ready_since: BTreeMap::new(),
                said_failing: BTreeSet::new(),
                last_batch: BTreeMap::new(),
                releases: BTreeMap::new(),
                restored: BTreeSet::new(),
                manual_commits: BTreeMap::new(),
                revert_failures: BTreeMap::new(),
                rolling_back: BTreeSet::new(),
                rollouts: BTreeMap::new(),
                waiting: BTreeMap::new(),
                promotion_sources: BTreeSet::new(),
                autoscaled: Vec::new(),
                scaled_at: BTreeMap::new(),
            }),
            health: Mutex::new(promote::Health::default()),
            wake: Notify::new(),
            generation: watch::channel(0).0,
            started: Instant::now(),
            say: Box::new(say),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks for a reconcile pass soon.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// A new valid revision.
    pub fn set_desired(&self, desired: DesiredRevision) {
        let mut inner = self.lock();
        inner.rejected = None;
        inner.desired = Some(desired);
        drop(inner);
        self.wake();
    }

    /// A revision that failed validation: recorded, nothing applied.
    pub fn reject(&self, revision: &Revision, message: &str) {
        let inner = &mut *self.lock();
        inner.rejected = Some(format!("revision {} rejected: {message}", revision.short()));
        let _ = inner.store.event(
            "",
            &format!("revision/{}", revision.short()),
            "RevisionRejected",
            message,
        );
    }

    /// Runs reconcile passes until `shutdown` completes: on every change (a revision,
    /// a report that differs, an API write, a node missing its heartbeats), and a full
    /// resync every [`RESYNC`] whatever happens, which repairs anything missed.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut last = Instant::now();
        let mut due = true;
        loop {
            if due {
                if let Err(error) = self.reconcile().and_then(|()| self.after_pass()) {
                    (self.say)(&format!("reconcile failed: {error}"));
                }
                last = Instant::now();
            }
            tokio::select! {
                _ = self.wake.notified() => due = true,
                _ = tokio::time::sleep(TICK) => {
                    due = last.elapsed() >= RESYNC || self.liveness_changed();
                }
                _ = &mut shutdown => break,
            }
        }
    }

    /// Would a node's up/down state change now? (Cheap: no store access.)
    fn liveness_changed(&self) -> bool {
        let inner = self.lock();
        // Updates and releases move on with time (monitor periods, delays, deadlines).
        !inner.draining.is_empty()
            || !inner.releases.is_empty()
            || inner
                .rollouts
                .values()
                .any(|(step, updating)| *updating || !step.done)
            || inner.pools.values().any(|p| p.draining_until.is_some())
            // An autoscaled service is due for evaluation.
            || inner.autoscaled.iter().any(|(env, name, spec)| {
                inner
                    .scaled_at
                    .get(&(env.clone(), name.clone()))
                    .is_none_or(|(at, _)| at.elapsed() >= spec.evaluation_period.to_std())
            })
            || inner.nodes.values().any(|n| {
                let up = match n.last_seen {
                    Some(at) => at.elapsed() < n.timeout,
                    None => self.started.elapsed() < n.timeout,
                };
                up != n.up
            })
    }

    /// One reconcile pass.
    pub fn reconcile(&self) -> Result<(), ControlError> {
        let inner = &mut *self.lock();
        if let Some(desired) = inner.desired.clone() {
            self.sync_objects(inner, &desired)?;
        }
        let applied = inner.store.observed()?.objects;
        let mut live = Live::from_state(&applied);
        live.redeploys = inner.store.redeploys()?;
        inner.promotion_sources = live
            .environments
            .values()
            .filter_map(|e| e.promotion.as_ref().map(|p| p.from.clone()))
            .collect();
        inner.autoscaled = live
            .services
            .iter()
            .filter(|((env, _), _)| live.local_cluster_of(env).is_some())
            .filter_map(|((env, name), spec)| {
                Some((env.clone(), name.clone(), spec.autoscaling.clone()?))
            })
            .collect();
        let nodes = self.node_states(inner, &live)?;
        let by_node = self.place(inner, &live, &nodes)?;
        self.judge(inner, &live)?;
        // Routes first: an instance leaves the proxy before its agent hears it is to stop.
        self.route(inner, &live)?;
        self.publish(inner, by_node);
        Ok(())
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
            Assignments {
                generation,
                instances,
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

    /// The nodes the local engine runs, by cluster: `up` keeps an agent on each.
    pub fn nodes_wanted(&self) -> Vec<(String, String, Duration)> {
        let inner = self.lock();
        let Ok(observed) = inner.store.observed() else {
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

    /// `drover scale`: an out-of-band change of the applied replicas, which self-heal
    /// reverts unless an autoscaler owns the count.
    pub fn scale(&self, env: &str, service: &str, replicas: u32) -> Result<String, ControlError> {
        let key = ObjectKey {
            environment: env.to_owned(),
            kind: Kind::Service,
            name: service.to_owned(),
        };
        let inner = self.lock();
        let observed = inner.store.observed()?;
        let Some(value) = observed.objects.get(&key) else {
            return Err(ControlError::NotFound(format!(
                "environment `{env}` has no service `{service}`"
            )));
        };
        let mut value = value.clone();
        let scaling = value["spec"].get("autoscaling").cloned();
        if let Some(s) = &scaling {
            let (min, max) = (
                s["minReplicas"].as_u64().unwrap_or(1),
                s["maxReplicas"].as_u64().unwrap_or(u64::MAX),
            );
            if !(min..=max).contains(&u64::from(replicas)) {
                return Err(ControlError::Refused(format!(
                    "{env}/{service} is autoscaled between {min} and {max} replicas; {replicas} is outside"
                )));
            }
        }
        let before = value["spec"]["replicas"].as_u64().unwrap_or(1);
        value["spec"]["replicas"] = Value::from(replicas);
        write_replicas(
            &inner.store,
            &key,
            value,
            "Scaled",
            &format!("replicas {before} → {replicas} (through the API)"),
        )?;
        drop(inner);
        self.wake();
        let policy = sync_policy(&observed.objects, env);
        Ok(if scaling.is_some() {
            format!("{env}/{service} scaled to {replicas} (within its autoscaling bounds)")
        } else if policy.self_heal {
            format!(
                "{env}/{service} scaled to {replicas}; this differs from Git, and self-heal will revert it"
            )
        } else {
            format!("{env}/{service} scaled to {replicas}; reported as drift (self-heal is off)")
        })
    }

    /// `drover redeploy`: replace every instance of a service, same spec, with its
    /// update settings (like `docker service update --force`).
    pub fn redeploy(&self, env: &str, service: &str) -> Result<String, ControlError> {
        let key = ObjectKey {
            environment: env.to_owned(),
            kind: Kind::Service,
            name: service.to_owned(),
        };
        let inner = self.lock();
        if !inner.store.observed()?.objects.contains_key(&key) {
            return Err(ControlError::NotFound(format!(
                "environment `{env}` has no service `{service}`"
            )));
        }
        let generation = inner.store.redeploy(env, service)?;
        let text = format!(
            "{env}/{service} redeployed (generation {generation}): every instance is replaced"
        );
        inner.store.event(env, service, "Redeploy", &text)?;
        drop(inner);
        self.wake();
        Ok(text)
    }

    /// `drover node update --availability`.
    pub fn set_availability(
        &self,
        node: &str,
        availability: Option<&str>,
    ) -> Result<String, ControlError> {
        if let Some(a) = availability
            && !["active", "pause", "drain"].contains(&a)
        {
            return Err(ControlError::Refused(format!(
                "unknown availability `{a}`: expected active, pause or drain"
            )));
        }
        let inner = self.lock();
        if !inner.nodes.contains_key(node) {
            return Err(ControlError::NotFound(format!("no node `{node}`")));
        }
        inner.store.set_availability_override(node, availability)?;
        let text = match availability {
            Some(a) => format!("node {node} availability set to {a}"),
            None => format!("node {node} availability follows Git again"),
        };
        inner
            .store
            .event("", &format!("node/{node}"), "Availability", &text)?;
        drop(inner);
        self.wake();
        Ok(text)
    }

    /// Where each proxy listener listens.
    pub fn proxies(&self) -> Vec<ProxyView> {
        self.lock()
            .proxies
            .iter()
            .map(|((cluster, listener), l)| ProxyView {
                cluster: cluster.clone(),
                listener: listener.clone(),
                address: format!("http://{}", l.addr),
            })
            .collect()
    }

    /// `drover rollback ENV [--to REV]`: asks for a commit that restores the
    /// environment as it was at REV (default: the last healthy release before the one
    /// in force). It is applied as any commit is, and recorded as a manual release.
    pub fn rollback(&self, env: &str, to: Option<&str>) -> Result<String, ControlError> {
        let inner = self.lock();
        let current = inner
            .store
            .environments()?
            .into_iter()
            .find(|e| e.name == env)
            .ok_or_else(|| ControlError::NotFound(format!("no environment `{env}`")))?
            .revision;
        let target = match to {
            Some(to) => to.to_owned(),
            None => inner
                .store
                .releases(env, 100)?
                .into_iter()
                .find(|r| {
                    r.result == ReleaseResult::Healthy
                        && Some(&r.revision) != current.as_ref()
                        && r.trigger != Trigger::Rollback
                })
                .map(|r| r.revision)
                .ok_or_else(|| {
                    ControlError::Refused(format!(
                        "`{env}` has no earlier healthy release to go back to; name a revision with --to"
                    ))
                })?,
        };
        let short = &target[..target.len().min(7)];
        let text =
            format!("rolling {env} back to {short}: a commit restoring environments/{env} follows");
        inner.store.event(env, env, "RollbackRequested", &text)?;
        drop(inner);
        self.write_to_git(GitWrite::Restore(RollbackRequest {
            environment: env.to_owned(),
            to: target,
        }));
        Ok(text)
    }

    /// The commits Drover asks for (reverts, restores), in order: taken once, by
    /// whoever writes to Git.
    pub fn git_writes(&self) -> Option<mpsc::UnboundedReceiver<GitWrite>> {
        self.git_writes_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Asks for a commit.
    fn write_to_git(&self, write: GitWrite) {
        // The receiver lives as long as `up`; a write asked for after it stopped is
        // asked again by the next control plane's judgement.
        let _ = self.git_writes.send(write);
    }

    /// Records a release's transition: its event (a stable reason), its notification
    /// and its line on `up`'s output, in one call.
    fn announce(
        &self,
        store: &Store,
        env: &str,
        result: ReleaseResult,
        revision: &str,
        text: &str,
    ) -> Result<(), ControlError> {
        store.event(env, env, result.event_reason(), text)?;
        self.tell(env, result, revision, text);
        Ok(())
    }

    /// A transition's notification and line, its event already written.
    fn tell(&self, env: &str, result: ReleaseResult, revision: &str, text: &str) {
        self.config
            .notifier
            .send(result.notification(), env, Some(revision), None, text);
        (self.say)(&format!("{env}: {text}"));
    }

    /// The commit of a manual rollback was written (`Ok(commit)`) or not (`Err(why)`).
    pub fn rolled_back(&self, request: &RollbackRequest, result: Result<String, String>) {
        let env = &request.environment;
        let short = &request.to[..request.to.len().min(7)];
        let mut inner = self.lock();
        let (reason, text) = match &result {
            Ok(commit) => {
                inner.manual_commits.insert(env.clone(), commit.clone());
                (
                    "RollbackCommitted",
                    format!(
                        "rollback to {short} committed as {}",
                        &commit[..commit.len().min(7)]
                    ),
                )
            }
            Err(why) => (
                "RollbackFailed",
                format!("could not roll back to {short}: {why}"),
            ),
        };
        let _ = inner.store.event(env, env, reason, &text);
        (self.say)(&format!("{env}: {text}"));
    }

    /// A revert commit was written (`Ok(commit)`) or could not be (`Err(why)`).
    pub fn reverted(&self, request: &RevertRequest, result: Result<String, String>) {
        let mut inner = self.lock();
        let short = &request.revision[..request.revision.len().min(7)];
        match &result {
            Ok(_) => inner.revert_failures.remove(&request.environment),
            Err(why) => inner.revert_failures.insert(
                request.environment.clone(),
                format!("revert of {short} not written to Git: {why}"),
            ),
        };
        let text = match &result {
            Ok(commit) => {
                let _ = inner.store.set_revert(request.release, commit);
                format!(
                    "revision {short} reverted in Git by {}",
                    &commit[..commit.len().min(7)]
                )
            }
            Err(why) => {
                format!("could not revert {short} in Git: {why}; the environment stays held")
            }
        };
        let reason = if result.is_ok() {
            "Reverted"
        } else {
            "RevertFailed"
        };
        let _ = inner
            .store
            .event(&request.environment, &request.environment, reason, &text);
        (self.say)(&format!("{}: {text}", request.environment));
    }

    /// An environment's releases, newest first.
    pub fn history(&self, env: &str) -> Result<Vec<drover_store::Release>, ControlError> {
        let inner = self.lock();
        let applied = inner.store.observed()?.objects;
        let keep = Live::from_state(&applied)
            .environments
            .get(env)
            .map_or(20, |e| e.rollback.history_limit as usize);
        Ok(inner.store.releases(env, keep)?)
    }

    /// The last events, newest first.
    pub fn events(&self, limit: usize) -> Result<Vec<drover_store::Event>, ControlError> {
        Ok(self.lock().store.events(limit)?)
    }
}

mod autoscaling;
mod objects;
mod place;
mod promote;
mod releases;
mod route;
mod status;
pub use promote::Verified;

#[cfg(test)]
mod tests;
