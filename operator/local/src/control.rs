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
use drover_scheduler::NodeState;
use drover_source::Revision;
use drover_store::{EnvironmentStatus, InstanceRecord, Store, StoreError};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, watch};

use crate::files::StateDir;
use crate::instances::{Blocked, Live, PortRange, instances};
use crate::protocol::{Assignment, Assignments, InstanceReport, Report};
use crate::rollout;
use crate::view::{
    EnvironmentView, InstanceView, Lifecycle, NodeView, PoolView, ProxyView, ServiceView, Status,
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
    /// The request cannot be done in the current state (a promotion's gate).
    #[error("{0}")]
    Conflict(String),
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

/// A release being judged: revision R applied to an environment.
#[derive(Debug, Clone)]
struct OpenRelease {
    id: i64,
    revision: String,
    services: Vec<String>,
    snapshot: String,
    started: Instant,
    deadline: Duration,
    automatic_rollback: bool,
    /// Write a revert commit to Git after a rollback.
    revert_commit: bool,
    /// A rollback is itself a release; it is not rolled back again.
    rollback: bool,
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

/// The control plane. Shared by the reconcile loop and the API.
pub struct ControlPlane {
    health: Mutex<promote::Health>,
    reverts: Mutex<Vec<RevertRequest>>,
    rollbacks: Mutex<Vec<RollbackRequest>>,
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

/// The service of the same open release that `service` must wait for: one it
/// depends on (one that depends on it, in a rollback) whose update is not done.
fn waits_for(
    inner: &Inner,
    live: &Live,
    unsettled: &BTreeSet<(String, String)>,
    env: &str,
    service: &str,
) -> Option<String> {
    let release = inner.releases.get(env)?;
    if !release.services.iter().any(|s| s == service) {
        return None;
    }
    let depends = |a: &str, b: &str| {
        live.services
            .get(&(env.to_owned(), a.to_owned()))
            .is_some_and(|s| s.depends_on.iter().any(|d| d == b))
    };
    release
        .services
        .iter()
        .filter(|other| *other != service)
        .filter(|other| {
            if release.rollback {
                depends(other, service)
            } else {
                depends(service, other)
            }
        })
        .find(|other| unsettled.contains(&(env.to_owned(), (*other).clone())))
        .cloned()
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

fn sync_policy(state: &State, env: &str) -> drover_model::environment::SyncPolicy {
    state
        .iter()
        .find(|(k, _)| k.environment == env && k.kind == Kind::Environment)
        .and_then(|(_, v)| serde_json::from_value(v["spec"]["sync"].clone()).ok())
        .unwrap_or_default()
}

/// An environment's objects as JSON, for a release's snapshot.
fn snapshot(state: &State) -> String {
    let items: Vec<Value> = state
        .iter()
        .map(|(k, v)| {
            serde_json::json!({
                "environment": k.environment,
                "kind": k.kind.as_str(),
                "name": k.name,
                "value": v,
            })
        })
        .collect();
    Value::Array(items).to_string()
}

/// Reads a [`snapshot`] back.
fn from_snapshot(text: &str) -> State {
    let items: Vec<Value> = serde_json::from_str(text).unwrap_or_default();
    items
        .into_iter()
        .filter_map(|item| {
            let kind = Kind::ALL
                .into_iter()
                .find(|k| item["kind"].as_str() == Some(k.as_str()))?;
            let key = ObjectKey {
                environment: item["environment"].as_str()?.to_owned(),
                kind,
                name: item["name"].as_str()?.to_owned(),
            };
            Some((key, item["value"].clone()))
        })
        .collect()
}

/// Records a service's new replica count (outside Git: the API or the autoscaler) and
/// its event, as one write.
fn write_replicas(
    store: &Store,
    key: &ObjectKey,
    value: Value,
    reason: &str,
    message: &str,
) -> Result<(), StoreError> {
    store.batch(|store| {
        store.record(&drover_plan::Action::Update {
            key: key.clone(),
            value,
            patch: json_patch::Patch(Vec::new()),
        })?;
        store.event(&key.environment, &key.name, reason, message)
    })
}

fn subset(state: &State, env: &str) -> State {
    state
        .iter()
        .filter(|(k, _)| k.environment == env)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The lines of a change set, for events: `service web: replicas 5 → 2`.
fn describe(from: &State, to: &State) -> String {
    let set = drover_diff::diff(from, to, drover_diff::Options::default());
    let lines: Vec<String> = set
        .changes
        .iter()
        .flat_map(|c| c.summary.iter().cloned())
        .collect();
    lines.join("; ")
}

impl ControlPlane {
    /// Opens the store and starts with what it holds.
    pub fn open(
        config: Config,
        say: impl Fn(&str) + Send + Sync + 'static,
    ) -> Result<Arc<ControlPlane>, ControlError> {
        let store = Store::open(&config.state.database())?;
        Ok(Arc::new(ControlPlane {
            reverts: Mutex::new(Vec::new()),
            rollbacks: Mutex::new(Vec::new()),
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

    /// Step 5: each node's assignments — what it should run, plus instances that left
    /// and still finish requests the proxy sent them (drained, up to [`DRAIN_TIMEOUT`]).
    fn publish(&self, inner: &mut Inner, mut by_node: BTreeMap<String, Vec<Assignment>>) {
        // Instances that were assigned and are no longer (same id on the same node with
        // another spec is a replacement, which the agent does in place).
        for (node, (_, old)) in &inner.assignments {
            let new = by_node.get(node);
            for assignment in old {
                let same =
                    |a: &Assignment| a.id == assignment.id && a.spec_hash == assignment.spec_hash;
                let still = new.is_some_and(|list| list.iter().any(same));
                let key = (
                    node.clone(),
                    format!("{}@{}", assignment.id, assignment.spec_hash),
                );
                if !still && !inner.draining.contains_key(&key) {
                    let ports: Vec<u16> = inner
                        .nodes
                        .get(node)
                        .filter(|n| n.up)
                        .and_then(|n| {
                            n.reports
                                .get(&(assignment.id.clone(), assignment.spec_hash.clone()))
                        })
                        .filter(|r| r.ready)
                        .map(|r| r.ports.values().copied().collect())
                        .unwrap_or_default();
                    if !ports.is_empty() {
                        inner.draining.insert(
                            key,
                            Draining {
                                assignment: assignment.clone(),
                                ports,
                                since: Instant::now(),
                            },
                        );
                    }
                }
            }
        }
        let proxies: Vec<Arc<Proxy>> = inner.proxies.values().map(|l| l.proxy.clone()).collect();
        inner.draining.retain(|(node, _), d| {
            let back = by_node.get(node).is_some_and(|list| {
                list.iter()
                    .any(|a| a.id == d.assignment.id && a.spec_hash == d.assignment.spec_hash)
            });
            let busy = d.ports.iter().any(|port| {
                let addr = SocketAddr::from(([127, 0, 0, 1], *port));
                proxies.iter().any(|p| p.in_flight(addr) > 0)
            });
            !back && busy && d.since.elapsed() < DRAIN_TIMEOUT
        });
        for ((node, _), d) in &inner.draining {
            by_node
                .entry(node.clone())
                .or_default()
                .push(d.assignment.clone());
        }
        let mut changed = false;
        for (node, list) in by_node {
            let entry = inner.assignments.entry(node).or_default();
            if entry.1 != list || entry.0 == 0 {
                inner.generation += 1;
                *entry = (inner.generation, list);
                changed = true;
            }
        }
        if changed {
            self.generation.send_replace(inner.generation);
        }
    }

    /// Step 1: apply new revisions, revert (or report) drift.
    fn sync_objects(
        &self,
        inner: &mut Inner,
        desired: &DesiredRevision,
    ) -> Result<(), ControlError> {
        let observed = inner.store.observed()?;
        let desired_live = Live::from_state(&desired.state);
        // Only what the local engine runs: its clusters and their environments.
        let mut want: State = desired
            .state
            .iter()
            .filter(|(k, _)| match k.kind {
                Kind::Cluster => desired_live
                    .clusters
                    .get(&k.name)
                    .is_some_and(|c| c.engine == drover_model::cluster::Engine::Local),
                _ => desired_live.local_cluster_of(&k.environment).is_some(),
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // Replicas an autoscaler owns stay as they are live (within its bounds).
        for (key, value) in want.iter_mut() {
            if key.kind != Kind::Service {
                continue;
            }
            let Some(scaling) = value["spec"].get("autoscaling").cloned() else {
                continue;
            };
            let live_replicas = observed
                .objects
                .get(key)
                .and_then(|v| v["spec"]["replicas"].as_u64());
            let (min, max) = (
                scaling["minReplicas"].as_u64().unwrap_or(1),
                scaling["maxReplicas"].as_u64().unwrap_or(u64::MAX),
            );
            if let Some(n) = live_replicas {
                value["spec"]["replicas"] = Value::from(n.clamp(min, max));
            }
        }
        let environments: BTreeSet<String> = want
            .keys()
            .chain(observed.objects.keys())
            .map(|k| k.environment.clone())
            .collect();
        let statuses: BTreeMap<String, EnvironmentStatus> = inner
            .store
            .environments()?
            .into_iter()
            .map(|s| (s.name.clone(), s))
            .collect();
        let revision = &desired.revision;
        let desired_envs = Live::from_state(&want).environments;
        let mut started: Vec<(String, OpenRelease)> = Vec::new();
        let open_releases = inner.releases.clone();
        let manual = inner.manual_commits.clone();
        inner.store.batch(|store| {
            for env in &environments {
                // A revision whose release was rolled back is never applied again by
                // itself: the environment stays held at what it returned to.
                if !env.is_empty()
                    && let Some(failed) = store
                        .releases(env, 50)?
                        .into_iter()
                        .find(|r| r.revision == revision.id && r.result == "rolled-back")
                {
                    let held = failed
                        .previous
                        .as_deref()
                        .map_or("-", |p| &p[..p.len().min(7)]);
                    let next = EnvironmentStatus {
                        name: env.clone(),
                        revision: failed.previous.clone(),
                        summary: None,
                        status: "Held".into(),
                        message: format!(
                            "held at {held}: release {} failed — {}",
                            revision.short(),
                            failed.reason
                        ),
                    };
                    if statuses.get(env) != Some(&next) {
                        store.set_environment(&next)?;
                    }
                    continue;
                }
                let wanted = subset(&want, env);
                let applied = Observed {
                    objects: subset(&observed.objects, env),
                    inventory: observed
                        .inventory
                        .iter()
                        .filter(|k| &k.environment == env)
                        .cloned()
                        .collect(),
                };
                let plan = plan(&wanted, &applied);
                let before = statuses.get(env);
                let new_revision = before.and_then(|s| s.revision.as_deref()) != Some(&revision.id);
                let policy = sync_policy(
                    if wanted.is_empty() {
                        &applied.objects
                    } else {
                        &wanted
                    },
                    env,
                );
                let label = if env.is_empty() {
                    "clusters"
                } else {
                    env.as_str()
                };
                let (status, message) = if plan.is_empty() {
                    ("Synced", String::new())
                } else if env.is_empty()
                    || (policy.mode == drover_model::environment::SyncMode::Automatic
                        && (new_revision || policy.self_heal))
                {
                    let changes = describe(&applied.objects, &wanted);
                    let services: Vec<String> = plan
                        .actions
                        .iter()
                        .filter(|a| a.key().kind == Kind::Service)
                        .map(|a| a.key().name.clone())
                        .collect();
                    if new_revision && !env.is_empty() && !services.is_empty() {
                        if let Some(open) = open_releases.get(env) {
                            store.end_release(
                                open.id,
                                "superseded",
                                &format!("revision {} arrived", revision.short()),
                            )?;
                        }
                        let policy = desired_envs
                            .get(env)
                            .map(|e| e.rollback.clone())
                            .unwrap_or_default();
                        let snapshot = snapshot(&applied.objects);
                        let id = store.start_release(
                            &drover_store::NewRelease {
                                environment: env.clone(),
                                revision: revision.id.clone(),
                                summary: revision.summary.clone(),
                                previous: before.and_then(|s| s.revision.clone()),
                                trigger: if manual.get(env) == Some(&revision.id) {
                                    "manual".into()
                                } else {
                                    "git".into()
                                },
                                services: services.clone(),
                                snapshot: snapshot.clone(),
                            },
                            policy.history_limit as usize,
                        )?;
                        started.push((
                            env.clone(),
                            OpenRelease {
                                id,
                                revision: revision.id.clone(),
                                services: services.clone(),
                                snapshot,
                                started: Instant::now(),
                                deadline: policy.progress_deadline.to_std(),
                                automatic_rollback: policy.automatic,
                                revert_commit: policy.revert_commit,
                                rollback: false,
                            },
                        ));
                        self.config.notifier.send(
                            "release.started",
                            env,
                            Some(&revision.id),
                            None,
                            &format!(
                                "release {} started: {} ({})",
                                revision.short(),
                                revision.summary,
                                services.join(", ")
                            ),
                        );
                    }
                    for action in &plan.actions {
                        store.record(action)?;
                    }
                    let (reason, text) = if new_revision {
                        (
                            "Synced",
                            format!("revision {} applied: {changes}", revision.short()),
                        )
                    } else {
                        ("DriftReverted", format!("drift reverted to Git: {changes}"))
                    };
                    if !plan.actions.is_empty() {
                        store.event(env, label, reason, &text)?;
                        (self.say)(&format!("{label}: {text}"));
                    }
                    match plan.holds.first() {
                        Some(hold) => ("Held", hold.reason.clone()),
                        None => ("Synced", String::new()),
                    }
                } else {
                    let changes = describe(&applied.objects, &wanted);
                    let why = if policy.mode == drover_model::environment::SyncMode::Manual {
                        "manual sync"
                    } else {
                        "self-heal is off"
                    };
                    ("OutOfSync", format!("{why}: {changes}"))
                };
                if wanted.is_empty() && applied.objects.is_empty() {
                    continue;
                }
                let next = EnvironmentStatus {
                    name: env.clone(),
                    revision: Some(revision.id.clone()),
                    summary: Some(revision.summary.clone()),
                    status: status.to_owned(),
                    message,
                };
                if before != Some(&next) {
                    if status == "OutOfSync" {
                        store.event(env, label, "OutOfSync", &next.message)?;
                        (self.say)(&format!("{label}: out of sync ({})", next.message));
                    }
                    store.set_environment(&next)?;
                }
            }
            Ok(())
        })?;
        for (env, release) in started {
            for service in &release.services {
                inner.rolling_back.remove(&(env.clone(), service.clone()));
            }
            inner.releases.insert(env, release);
        }
        Ok(())
    }

    /// Step 3b: judge each open release from its services' updates: healthy when every
    /// service it changed is updated, ready and past its monitor period; failed when an
    /// update stopped on failures or the progress deadline passed. A failed release is
    /// rolled back as a whole, and its revision is not applied again.
    fn judge(&self, inner: &mut Inner, live: &Live) -> Result<(), ControlError> {
        // A release left open by a control plane that stopped is judged again, from now.
        // Checked once per environment: afterwards this control plane knows its releases.
        for (env, spec) in &live.environments {
            if live.local_cluster_of(env).is_none()
                || !inner.restored.insert(env.clone())
                || inner.releases.contains_key(env)
            {
                continue;
            }
            if let Some(r) = inner.store.releases(env, 1)?.into_iter().next()
                && r.result == "progressing"
            {
                inner.releases.insert(
                    env.clone(),
                    OpenRelease {
                        id: r.id,
                        revision: r.revision,
                        services: r.services.clone(),
                        snapshot: r.snapshot,
                        started: Instant::now(),
                        deadline: spec.rollback.progress_deadline.to_std(),
                        automatic_rollback: spec.rollback.automatic,
                        revert_commit: spec.rollback.revert_commit,
                        rollback: r.trigger == "rollback",
                    },
                );
                if r.trigger == "rollback" {
                    for service in r.services {
                        inner.rolling_back.insert((env.clone(), service));
                    }
                }
            }
        }
        let open: Vec<(String, OpenRelease)> = inner
            .releases
            .iter()
            .map(|(e, r)| (e.clone(), r.clone()))
            .collect();
        for (env, release) in open {
            let mut failure = None;
            let mut healthy = true;
            for service in &release.services {
                if !live.services.contains_key(&(env.clone(), service.clone())) {
                    continue;
                }
                match inner.rollouts.get(&(env.clone(), service.clone())) {
                    Some((step, updating)) => {
                        if let Some(paused) = &step.paused {
                            failure.get_or_insert(format!(
                                "{service}: {paused}{}",
                                self.why(inner, &env, service)
                            ));
                        }
                        healthy &= step.done && !updating;
                    }
                    None => healthy = false,
                }
            }
            if failure.is_none() && !healthy && release.started.elapsed() > release.deadline {
                let slow = release
                    .services
                    .iter()
                    .find(|s| {
                        inner
                            .rollouts
                            .get(&(env.clone(), (*s).clone()))
                            .is_none_or(|(step, updating)| !step.done || *updating)
                    })
                    .cloned()
                    .unwrap_or_default();
                failure = Some(format!(
                    "{slow}: not healthy within the progress deadline ({}s){}",
                    release.deadline.as_secs(),
                    self.why(inner, &env, &slow)
                ));
            }
            let short = &release.revision[..release.revision.len().min(7)];
            if failure.is_none() && healthy {
                inner.store.end_release(release.id, "healthy", "")?;
                let text = format!("release {short} is healthy");
                inner.store.event(&env, &env, "ReleaseHealthy", &text)?;
                self.config.notifier.send(
                    "release.succeeded",
                    &env,
                    Some(&release.revision),
                    None,
                    &text,
                );
                (self.say)(&format!("{env}: {text}"));
                inner.releases.remove(&env);
                for service in &release.services {
                    inner.rolling_back.remove(&(env.clone(), service.clone()));
                }
                continue;
            }
            let Some(reason) = failure else { continue };
            inner.releases.remove(&env);
            if release.rollback || !release.automatic_rollback {
                inner.store.end_release(release.id, "failed", &reason)?;
                let text = format!("release {short} failed — {reason}");
                inner.store.event(&env, &env, "ReleaseFailed", &text)?;
                self.config.notifier.send(
                    "release.failed",
                    &env,
                    Some(&release.revision),
                    None,
                    &text,
                );
                (self.say)(&format!("{env}: {text}"));
                continue;
            }
            // Roll back the whole release: every object of the environment returns to
            // what it was before, in the planner's (reverse dependency) order.
            let before = from_snapshot(&release.snapshot);
            let observed = inner.store.observed()?;
            let applied = Observed {
                objects: subset(&observed.objects, &env),
                inventory: observed
                    .inventory
                    .iter()
                    .filter(|k| k.environment == env)
                    .cloned()
                    .collect(),
            };
            let back = plan(&before, &applied);
            let keep = live
                .environments
                .get(&env)
                .map_or(20, |e| e.rollback.history_limit as usize);
            let text = format!("release {short} failed — {reason}; rolling back");
            let rollback_id = inner.store.batch(|store| {
                for action in &back.actions {
                    store.record(action)?;
                }
                store.end_release(release.id, "rolled-back", &reason)?;
                store.event(&env, &env, "RollingBack", &text)?;
                store.start_release(
                    &drover_store::NewRelease {
                        environment: env.clone(),
                        revision: release.revision.clone(),
                        summary: format!("rollback of {short}"),
                        previous: Some(release.revision.clone()),
                        trigger: "rollback".into(),
                        services: release.services.clone(),
                        snapshot: snapshot(&applied.objects),
                    },
                    keep,
                )
            })?;
            (self.say)(&format!("{env}: {text}"));
            self.config.notifier.send(
                "release.rolled-back",
                &env,
                Some(&release.revision),
                None,
                &text,
            );
            if release.revert_commit {
                self.reverts
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(RevertRequest {
                        release: release.id,
                        environment: env.clone(),
                        revision: release.revision.clone(),
                        reason: reason.clone(),
                    });
            }
            for service in &release.services {
                inner.rolling_back.insert((env.clone(), service.clone()));
            }
            inner.releases.insert(
                env.clone(),
                OpenRelease {
                    id: rollback_id,
                    started: Instant::now(),
                    rollback: true,
                    ..release
                },
            );
            self.wake();
        }
        Ok(())
    }

    /// `, 0/3 ready, readiness GET /ready returned 503 (3 times)`: the state of a
    /// service's instances, for a release's failure reason.
    fn why(&self, inner: &Inner, env: &str, service: &str) -> String {
        let Ok(records) = inner.store.instances() else {
            return String::new();
        };
        let mine: Vec<&InstanceRecord> = records
            .iter()
            .filter(|r| r.environment == env && r.service == service)
            .collect();
        let ready = mine.iter().filter(|r| r.ready).count();
        let failure = mine.iter().find_map(|r| {
            inner
                .nodes
                .get(&r.node)?
                .reports
                .get(&(r.id.clone(), r.spec_hash.clone()))?
                .last_failure
                .clone()
        });
        match failure {
            Some(f) => format!(", {ready}/{} ready, {f}", mine.len()),
            None => format!(", {ready}/{} ready", mine.len()),
        }
    }

    /// Step 2: the nodes as the scheduler should see them, per cluster.
    fn node_states(
        &self,
        inner: &mut Inner,
        live: &Live,
    ) -> Result<BTreeMap<String, Vec<NodeState>>, ControlError> {
        let overrides = inner.store.availability_overrides()?;
        let mut out = BTreeMap::new();
        for (cluster, spec) in live.local_clusters() {
            let local = spec.local.as_ref().expect("local clusters have nodes");
            let timeout = local.heartbeat_timeout.to_std();
            let mut states = Vec::new();
            for node in &local.nodes {
                let seen = inner.nodes.entry(node.name.clone()).or_default();
                seen.timeout = timeout;
                // Until a node is first heard from, it gets one timeout from our start.
                let up = match seen.last_seen {
                    Some(at) => at.elapsed() < timeout,
                    None => self.started.elapsed() < timeout,
                };
                if up != seen.up && (seen.last_seen.is_some() || !up) {
                    let (reason, text) = if up {
                        ("NodeReady", format!("node {} is ready", node.name))
                    } else {
                        (
                            "NodeDown",
                            format!(
                                "node {} is down: no heartbeat for {}; its instances move",
                                node.name, local.heartbeat_timeout
                            ),
                        )
                    };
                    inner
                        .store
                        .event("", &format!("node/{}", node.name), reason, &text)?;
                    (self.say)(&text);
                }
                seen.up = up;
                if !up {
                    seen.reports.clear();
                }
                let availability = match overrides.get(&node.name).map(String::as_str) {
                    Some("active") => Availability::Active,
                    Some("pause") => Availability::Pause,
                    Some("drain") => Availability::Drain,
                    _ => node.availability,
                };
                states.push(NodeState {
                    name: node.name.clone(),
                    role: node.role,
                    availability,
                    labels: node.labels.clone(),
                    cpu: node.capacity.cpu,
                    memory: node.capacity.memory,
                    up,
                });
            }
            out.insert(cluster.clone(), states);
        }
        Ok(out)
    }

    /// Step 3: instance records and assignments.
    fn place(
        &self,
        inner: &mut Inner,
        live: &Live,
        nodes: &BTreeMap<String, Vec<NodeState>>,
    ) -> Result<BTreeMap<String, Vec<Assignment>>, ControlError> {
        let current = inner.store.instances()?;
        let free = |port: u16| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
        let placed = instances(
            live,
            nodes,
            &current,
            &self.config.drover,
            self.ports,
            &free,
        );
        let mut by_node: BTreeMap<String, Vec<Assignment>> = nodes
            .values()
            .flatten()
            .map(|n| (n.name.clone(), Vec::new()))
            .collect();
        let now = Instant::now();
        let by_id: BTreeMap<&str, &InstanceRecord> =
            current.iter().map(|r| (r.id.as_str(), r)).collect();
        let report_of = |inner: &Inner, node: &str, id: &str, hash: &str| {
            inner
                .nodes
                .get(node)
                .and_then(|n| n.reports.get(&(id.to_owned(), hash.to_owned())))
                .cloned()
        };
        // Group the wanted instances by service: each service rolls on its own.
        let mut services: BTreeMap<(String, String), Vec<&crate::instances::Wanted>> =
            BTreeMap::new();
        for wanted in &placed.wanted {
            services
                .entry((
                    wanted.record.environment.clone(),
                    wanted.record.service.clone(),
                ))
                .or_default()
                .push(wanted);
        }
        // Services whose update is not finished: a slot still to move to the new spec, a
        // previous instance still kept, or one not yet ready through its monitor period.
        let unsettled: BTreeSet<(String, String)> = services
            .iter()
            .filter(|((env, name), wanted)| {
                let monitor = live
                    .services
                    .get(&(env.clone(), name.clone()))
                    .map_or(Duration::ZERO, |s| s.update.monitor.to_std());
                wanted.iter().any(|w| {
                    let current = by_id
                        .get(w.record.id.as_str())
                        .filter(|c| c.node == w.record.node);
                    current
                        .is_none_or(|c| c.spec_hash != w.record.spec_hash || c.previous.is_some())
                        || inner
                            .ready_since
                            .get(&(w.record.id.clone(), w.record.spec_hash.clone()))
                            .is_none_or(|at| now < *at + monitor)
                })
            })
            .map(|(key, _)| key.clone())
            .collect();
        let mut records = Vec::new();
        let mut rollouts = BTreeMap::new();
        for ((env, name), wanted) in services {
            let service = live.services.get(&(env.clone(), name.clone()));
            // A slot still running an older spec on the same node is to be updated; a
            // new slot, or one that moves, starts on the new spec at once.
            let old_of = |w: &crate::instances::Wanted| {
                by_id
                    .get(w.record.id.as_str())
                    .filter(|o| o.node == w.record.node && o.assignment.is_some())
                    .filter(|o| o.spec_hash != w.record.spec_hash)
                    .copied()
            };
            let slots: Vec<rollout::Slot> = wanted
                .iter()
                .map(|w| {
                    let report =
                        report_of(inner, &w.record.node, &w.record.id, &w.record.spec_hash);
                    let key = (w.record.id.clone(), w.record.spec_hash.clone());
                    let ready = report.as_ref().is_some_and(|r| r.ready);
                    if ready {
                        inner.ready_since.entry(key).or_insert(now);
                    } else {
                        inner.ready_since.remove(&key);
                    }
                    rollout::Slot {
                        id: w.record.id.clone(),
                        updated: old_of(w).is_none(),
                        ready_since: inner
                            .ready_since
                            .get(&(w.record.id.clone(), w.record.spec_hash.clone()))
                            .copied(),
                        failed: report.is_some_and(|r| {
                            r.failing
                                || matches!(r.phase.as_str(), "backing-off" | "failed" | "exited")
                        }),
                    }
                })
                .collect();
            let rolling_back = inner.rolling_back.contains(&(env.clone(), name.clone()));
            let (strategy, update, order) = service.map_or(
                (Default::default(), Default::default(), Default::default()),
                |s| {
                    let config = if rolling_back { &s.rollback } else { &s.update };
                    (s.strategy, config.clone(), config.order)
                },
            );
            let mut step = rollout::next(
                strategy,
                &update,
                &slots,
                inner.last_batch.get(&(env.clone(), name.clone())).copied(),
                now,
            );
            // Within a release, services roll in `dependsOn` order (a rollback in the
            // reverse order): a service waits until those it follows are done.
            if waits_for(inner, live, &unsettled, &env, &name).is_some() {
                step.advance.clear();
                step.done = false;
            }
            if !step.advance.is_empty() {
                inner.last_batch.insert((env.clone(), name.clone()), now);
            }
            let updating = slots.iter().any(|s| !s.updated) || !step.advance.is_empty();
            rollouts.insert((env.clone(), name.clone()), (step.clone(), updating));
            for w in wanted {
                let old = old_of(w);
                let advancing = step.advance.contains(&w.record.id);
                let mut record = match old {
                    // Not its turn yet: the slot keeps what it runs.
                    Some(old) if !advancing => old.clone(),
                    // Back to what still runs beside it (a start-first update rolled
                    // back): that instance simply stays, and the new one goes.
                    Some(old)
                        if old
                            .previous
                            .as_deref()
                            .and_then(|p| serde_json::from_str::<Assignment>(p).ok())
                            .is_some_and(|p| p.spec_hash == w.record.spec_hash) =>
                    {
                        let previous: Assignment =
                            serde_json::from_str(old.previous.as_deref().unwrap_or_default())
                                .expect("checked above");
                        let mut record = w.record.clone();
                        record.ports = previous.ports.clone();
                        record.assignment = old.previous.clone();
                        record.previous = None;
                        record
                    }
                    _ => {
                        let mut record = w.record.clone();
                        let target = Assignment {
                            id: record.id.clone(),
                            spec_hash: record.spec_hash.clone(),
                            spec: w.spec.clone(),
                            ports: record.ports.clone(),
                        };
                        record.assignment =
                            Some(serde_json::to_string(&target).expect("serializes"));
                        record.previous = match (old, order) {
                            (Some(old), UpdateOrder::StartFirst) => old.assignment.clone(),
                            (Some(_), UpdateOrder::StopFirst) => None,
                            (None, _) => by_id
                                .get(record.id.as_str())
                                .filter(|o| o.node == record.node)
                                .and_then(|o| o.previous.clone()),
                        };
                        record
                    }
                };
                let report = report_of(inner, &record.node, &record.id, &record.spec_hash);
                // Record when an instance started failing (the agent's time), once.
                let failing_key = (record.id.clone(), record.spec_hash.clone());
                match report
                    .as_ref()
                    .and_then(|r| r.failing_since_ms.map(|at| (at, r)))
                {
                    Some((at, r)) if inner.said_failing.insert(failing_key.clone()) => {
                        inner.store.event_at(
                            at,
                            &record.environment,
                            &record.id,
                            "InstanceFailing",
                            r.last_failure.as_deref().unwrap_or("failing"),
                        )?;
                    }
                    Some(_) => {}
                    None => {
                        inner.said_failing.remove(&failing_key);
                    }
                }
                match &report {
                    Some(r) => {
                        record.pid = r.pid;
                        record.state = r.phase.clone();
                        record.ready = r.ready;
                        record.restarts = r.restarts;
                        record.port = r.ports.values().next().copied();
                    }
                    None if by_id.get(record.id.as_str()).is_none_or(|o| {
                        o.node != record.node || o.spec_hash != record.spec_hash
                    }) =>
                    {
                        record.state = "pending".into();
                        record.ready = false;
                        record.pid = None;
                    }
                    // Nothing heard from its node since this control plane started: what
                    // the store says is from before, and nobody vouches for it now.
                    None if inner
                        .nodes
                        .get(&record.node)
                        .is_none_or(|n| n.last_seen.is_none()) =>
                    {
                        record.state = "unknown".into();
                        record.ready = false;
                    }
                    None => {}
                }
                // The new spec has been ready through its monitor period: what it
                // replaces may go (drained first). Until then the old one serves.
                let settled = inner
                    .ready_since
                    .get(&(record.id.clone(), record.spec_hash.clone()))
                    .is_some_and(|at| now >= *at + Duration::from_millis(update.monitor.millis()));
                if record.ready && settled {
                    record.previous = None;
                }
                let list = by_node.entry(record.node.clone()).or_default();
                for json in [&record.assignment, &record.previous].into_iter().flatten() {
                    if let Ok(assignment) = serde_json::from_str::<Assignment>(json) {
                        list.push(assignment);
                    }
                }
                records.push(record);
            }
        }
        inner.rollouts = rollouts;
        inner
            .ready_since
            .retain(|(id, hash), _| records.iter().any(|r| r.id == *id && r.spec_hash == *hash));
        let wanted_ids: BTreeSet<&str> = records.iter().map(|r| r.id.as_str()).collect();
        let old: BTreeMap<&str, &InstanceRecord> =
            current.iter().map(|r| (r.id.as_str(), r)).collect();
        inner.store.batch(|store| {
            for record in &records {
                if old.get(record.id.as_str()) != Some(&record) {
                    store.put_instance(record)?;
                }
            }
            for gone in current
                .iter()
                .filter(|r| !wanted_ids.contains(r.id.as_str()))
            {
                store.remove_instance(&gone.id)?;
            }
            Ok(())
        })?;
        for record in &records {
            let said = inner.said_ready.insert(record.id.clone(), record.ready);
            if said != Some(record.ready) && (record.ready || said == Some(true)) {
                let text = if record.ready {
                    format!(
                        "instance {} ready on {} (127.0.0.1:{})",
                        record.id,
                        record.node,
                        record.port.unwrap_or_default()
                    )
                } else {
                    format!("instance {} on {} is not ready", record.id, record.node)
                };
                (self.say)(&text);
            }
        }
        inner
            .said_ready
            .retain(|id, _| wanted_ids.contains(id.as_str()));
        inner.blocked = placed.blocked;
        Ok(by_node)
    }

    /// Step 4: listeners and routing tables.
    fn route(&self, inner: &mut Inner, live: &Live) -> Result<(), ControlError> {
        let records = inner.store.instances()?;
        for (cluster, spec) in live.local_clusters() {
            let local = spec.local.as_ref().expect("local clusters have nodes");
            let (active, draining) = self.pools(inner, cluster, &local.proxy.address_pools)?;
            for (index, listener) in local.proxy.listeners.iter().enumerate() {
                let key = (cluster.clone(), listener.name.clone());
                // Each listener takes one address of the pool, in order.
                let n = index as u32 + 1;
                if !inner.proxies.contains_key(&key) {
                    let listening = self.listen(cluster, listener)?;
                    (self.say)(&format!(
                        "proxy {cluster}/{}: http://{}",
                        listener.name, listening.addr
                    ));
                    inner.proxies.insert(key.clone(), listening);
                }
                let mut table = Table::default();
                for env in live.environments_on(cluster) {
                    for ((e, name), service) in &live.services {
                        if e != env {
                            continue;
                        }
                        for route in &service.routes {
                            if route.listener.as_ref().is_some_and(|l| *l != listener.name) {
                                continue;
                            }
                            let port = route
                                .port
                                .clone()
                                .or_else(|| service.ports.first().map(|p| p.name.clone()))
                                .unwrap_or_else(|| "default".into());
                            let backend_key = format!("{env}/{name}:{port}");
                            table.routes.push(Route {
                                host: route.host.clone(),
                                path: route.path.clone(),
                                service: backend_key.clone(),
                                balancing: route.balancing,
                                affinity: route.session_affinity,
                            });
                            let backends = records
                                .iter()
                                .filter(|r| r.environment == *env && r.service == *name)
                                .flat_map(|r| {
                                    // The instance on its assigned spec and, during a
                                    // start-first update, the one it replaces.
                                    let previous = r
                                        .previous
                                        .as_deref()
                                        .and_then(|p| serde_json::from_str::<Assignment>(p).ok())
                                        .map(|a| a.spec_hash);
                                    let node = inner.nodes.get(&r.node);
                                    // During a start-first update the old instance takes
                                    // the traffic while it is ready: the new one gets it
                                    // only once proven (then the old one goes), so a bad
                                    // release never serves a request.
                                    let old_ready = previous.as_ref().is_some_and(|hash| {
                                        node.and_then(|n| {
                                            n.reports.get(&(r.id.clone(), hash.clone()))
                                        })
                                        .is_some_and(|rep| rep.ready)
                                    });
                                    let current = (!old_ready).then(|| r.spec_hash.clone());
                                    [current, previous]
                                        .into_iter()
                                        .flatten()
                                        .filter_map(|hash| {
                                            let node = node?;
                                            let report =
                                                node.reports.get(&(r.id.clone(), hash.clone()))?;
                                            let port = *report.ports.get(&port)?;
                                            Some(Backend {
                                                id: if hash == r.spec_hash {
                                                    r.id.clone()
                                                } else {
                                                    format!("{}@{hash}", r.id)
                                                },
                                                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                                                ready: report.ready && node.up,
                                            })
                                        })
                                        .collect::<Vec<_>>()
                                })
                                .collect();
                            table.backends.insert(backend_key, backends);
                        }
                    }
                }
                table.source = active.as_ref().and_then(|p| p.address(n));
                table.draining_source = draining
                    .as_ref()
                    .and_then(|(p, until)| Some((p.address(n)?, *until)));
                let listening = inner.proxies.get_mut(&key).expect("inserted above");
                if listening.table != table {
                    listening.proxy.update(table.clone());
                    listening.table = table;
                }
            }
        }
        Ok(())
    }

    /// Tracks a cluster's proxy address pools (domain notes §7): the active one gives
    /// proxies their addresses; when a backup is promoted, the demoted pool drains —
    /// its open connections live on for its drain timeout — then is ready again.
    /// Returns the active pool and, while one drains, the draining pool and its end.
    #[allow(clippy::type_complexity)]
    fn pools(
        &self,
        inner: &mut Inner,
        cluster: &str,
        pools: &[AddressPool],
    ) -> Result<(Option<AddressPool>, Option<(AddressPool, Instant)>), ControlError> {
        let mut draining = None;
        inner
            .pools
            .retain(|(c, name), _| c != cluster || pools.iter().any(|p| p.name == *name));
        for pool in pools {
            let key = (cluster.to_owned(), pool.name.clone());
            let active = pool.role == PoolRole::Active;
            let live = inner.pools.entry(key).or_insert_with(|| PoolLive {
                was_active: active,
                draining_until: None,
                spec: pool.clone(),
            });
            if live.was_active && !active {
                let until = Instant::now() + pool.drain_timeout.to_std();
                live.draining_until = Some(until);
                let text = format!(
                    "address pool {} of cluster {cluster} is no longer active: its connections drain for {}",
                    pool.name, pool.drain_timeout
                );
                inner
                    .store
                    .event("", &format!("cluster/{cluster}"), "PoolDemoted", &text)?;
                (self.say)(&text);
            }
            if active {
                live.draining_until = None;
            }
            if let Some(until) = live.draining_until {
                if Instant::now() < until {
                    draining = Some((live.spec.clone(), until));
                } else {
                    live.draining_until = None;
                }
            }
            live.was_active = active;
            live.spec = pool.clone();
        }
        let active = pools.iter().find(|p| p.role == PoolRole::Active).cloned();
        Ok((active, draining))
    }

    /// Binds a listener, on the address it had before when it asked for any port.
    fn listen(
        &self,
        cluster: &str,
        listener: &drover_model::cluster::Listener,
    ) -> Result<Listening, ControlError> {
        let file = self.config.state.proxy_addr_file(cluster, &listener.name);
        let wanted = format!("{}:{}", listener.address, listener.port);
        let previous = (listener.port == 0)
            .then(|| std::fs::read_to_string(&file).ok())
            .flatten()
            .and_then(|t| t.trim().parse::<SocketAddr>().ok())
            .filter(|a| a.ip().to_string() == listener.address);
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
        let listen_error = |source| ControlError::Listen {
            address: wanted.clone(),
            listener: format!("{cluster}/{}", listener.name),
            source,
        };
        let wanted_addr: SocketAddr = wanted.parse().map_err(|_| {
            listen_error(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not an IP address and port",
            ))
        })?;
        let listeners = previous
            .and_then(|a| Proxy::bind(a, threads).ok())
            .map_or_else(|| Proxy::bind(wanted_addr, threads), Ok)
            .map_err(listen_error)?;
        let addr = listeners[0].local_addr().map_err(listen_error)?;
        let _ = crate::files::write_atomic(&file, addr.to_string().as_bytes());
        let proxy = Proxy::new();
        proxy
            .clone()
            .serve_on_threads(listeners)
            .map_err(listen_error)?;
        Ok(Listening {
            proxy,
            addr,
            table: Table::default(),
        })
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
                .find(|r| r.result == "healthy" && Some(&r.revision) != current.as_ref() && r.trigger != "rollback")
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
        self.rollbacks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(RollbackRequest {
                environment: env.to_owned(),
                to: target,
            });
        Ok(text)
    }

    /// Manual rollbacks to write to Git, taken once.
    pub fn take_rollbacks(&self) -> Vec<RollbackRequest> {
        std::mem::take(&mut *self.rollbacks.lock().unwrap_or_else(|e| e.into_inner()))
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

    /// Reverts to write to Git, taken once.
    pub fn take_reverts(&self) -> Vec<RevertRequest> {
        std::mem::take(&mut *self.reverts.lock().unwrap_or_else(|e| e.into_inner()))
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

    /// Everything `drover status` shows.
    pub fn status(&self) -> Result<Status, ControlError> {
        let (mut status, live) = self.observe()?;
        status.promotions = self.gates(&status, &live);
        Ok(status)
    }

    /// Everything [`ControlPlane::status`] shows but the promotion gates (which are
    /// judged from it), and the applied objects it was read from.
    fn observe(&self) -> Result<(Status, Live), ControlError> {
        let inner = self.lock();
        let applied = inner.store.observed()?.objects;
        let live = Live::from_state(&applied);
        let records = inner.store.instances()?;
        let overrides = inner.store.availability_overrides()?;
        let mut status = Status::default();
        for env in inner.store.environments()? {
            if env.name.is_empty() {
                continue;
            }
            let mut message = env.message.clone();
            if let Some(failure) = inner.revert_failures.get(&env.name) {
                message = format!("{message}; {failure}");
            }
            if let Some(rejected) = &inner.rejected {
                message = if message.is_empty() {
                    rejected.clone()
                } else {
                    format!("{message}; {rejected}")
                };
            }
            status.environments.push(EnvironmentView {
                cluster: live
                    .environments
                    .get(&env.name)
                    .map(|e| e.cluster.clone())
                    .unwrap_or_default(),
                name: env.name,
                revision: env.revision.map(|r| r[..r.len().min(7)].to_owned()),
                summary: env.summary,
                sync: env.status,
                message,
            });
        }
        for record in &records {
            let report = inner.nodes.get(&record.node).and_then(|n| {
                n.reports
                    .get(&(record.id.clone(), record.spec_hash.clone()))
            });
            status.instances.push(InstanceView {
                id: record.id.clone(),
                environment: record.environment.clone(),
                service: record.service.clone(),
                node: record.node.clone(),
                state: record.state.clone(),
                ready: record.ready,
                pid: record.pid,
                port: record.port,
                restarts: record.restarts,
                cpu_millis: report.map_or(0, |r| r.usage.cpu_millis),
                memory_bytes: report.map_or(0, |r| r.usage.memory_bytes),
                current: record.previous.is_none(),
                last_failure: report.and_then(|r| r.last_failure.clone()),
            });
        }
        for ((env, name), service) in &live.services {
            if live.local_cluster_of(env).is_none() {
                continue;
            }
            let mine: Vec<&InstanceView> = status
                .instances
                .iter()
                .filter(|i| i.environment == *env && i.service == *name)
                .collect();
            let blocked: Vec<&Blocked> = inner
                .blocked
                .iter()
                .filter(|b| b.environment == *env && b.service == *name)
                .collect();
            let desired = match service.mode {
                drover_model::service::Mode::Replicated => service.replicas.unwrap_or(1),
                drover_model::service::Mode::Global => (mine.len() + blocked.len()) as u32,
            };
            let ready = mine.iter().filter(|i| i.ready).count() as u32;
            let failing: Vec<String> = mine
                .iter()
                .filter(|i| matches!(i.state.as_str(), "backing-off" | "failed" | "exited"))
                .map(|i| {
                    format!(
                        "{}: {}",
                        i.id,
                        i.last_failure.clone().unwrap_or_else(|| i.state.clone())
                    )
                })
                .chain(blocked.iter().map(|b| match &b.slot {
                    Some(slot) => format!("slot {slot}: {}", b.reason),
                    None => b.reason.clone(),
                }))
                .collect();
            let rollout = inner.rollouts.get(&(env.clone(), name.clone()));
            let paused = rollout.and_then(|(step, _)| step.paused.clone());
            let failing: Vec<String> = paused.into_iter().chain(failing).collect();
            let state = if !failing.is_empty() {
                Lifecycle::Abnormal
            } else if mine.iter().any(|i| !i.current)
                || rollout.is_some_and(|(_, updating)| *updating)
            {
                Lifecycle::Updating
            } else if ready >= desired && mine.len() as u32 == desired {
                Lifecycle::Running
            } else if mine.iter().any(|i| i.restarts > 0) || ready > 0 {
                Lifecycle::Updating
            } else {
                Lifecycle::Starting
            };
            status.services.push(ServiceView {
                environment: env.clone(),
                name: name.clone(),
                version: service.version.clone(),
                state,
                ready,
                desired,
                message: failing.join("; "),
            });
        }
        for (cluster, spec) in live.local_clusters() {
            let local = spec.local.as_ref().expect("local clusters have nodes");
            for node in &local.nodes {
                let seen = inner.nodes.get(&node.name);
                let o = overrides.get(&node.name).cloned();
                let git = format!("{:?}", node.availability).to_lowercase();
                let used = seen.map(|s| {
                    s.reports.values().fold((0, 0), |(c, m), r| {
                        (c + r.usage.cpu_millis, m + r.usage.memory_bytes)
                    })
                });
                status.nodes.push(NodeView {
                    name: node.name.clone(),
                    cluster: cluster.clone(),
                    role: format!("{:?}", node.role).to_lowercase(),
                    availability: o.clone().unwrap_or(git),
                    availability_override: o,
                    status: if seen.is_some_and(|s| s.up && s.last_seen.is_some()) {
                        "ready".into()
                    } else {
                        "down".into()
                    },
                    instances: records.iter().filter(|r| r.node == node.name).count() as u32,
                    agent_pid: seen.and_then(|s| s.agent),
                    cpu: node.capacity.cpu.to_string(),
                    memory: node.capacity.memory.to_string(),
                    cpu_used_millis: used.map_or(0, |u| u.0),
                    memory_used_bytes: used.map_or(0, |u| u.1),
                });
            }
        }
        for ((cluster, name), pool) in &inner.pools {
            let active = pool.spec.role == PoolRole::Active;
            let listeners = live
                .clusters
                .get(cluster)
                .and_then(|c| c.local.as_ref())
                .map_or(0, |l| l.proxy.listeners.len() as u64);
            status.pools.push(PoolView {
                cluster: cluster.clone(),
                name: name.clone(),
                cidr: pool.spec.cidr.clone(),
                role: if active { "active" } else { "backup" }.into(),
                status: if active {
                    "ACTIVE"
                } else if pool.draining_until.is_some() {
                    "DRAINING"
                } else {
                    "READY"
                }
                .into(),
                used: if active || pool.draining_until.is_some() {
                    listeners
                } else {
                    0
                },
                capacity: pool.spec.capacity(),
            });
        }
        drop(inner);
        status.proxies = self.proxies();
        Ok((status, live))
    }
}

mod autoscaling;
mod promote;
pub use promote::Verified;

#[cfg(test)]
mod tests;
