//! The controller loop. One pass, run on every change and at the earliest deadline any
//! decision asked for, is a function of what Git wants, what the engine observes and
//! what the store holds:
//! 1. objects ([`objects`]): each environment's plan (desired vs observed) is applied
//!    through the engine when a new revision arrives, and drift is reverted when
//!    self-heal is on or reported when it is off; a revision that changes services
//!    opens a release;
//! 2. the engine converges (places, updates, routes), steered by the open releases;
//! 3. releases ([`releases`]): each open release is judged from its services'
//!    progress; a failed one is rolled back as a whole and its revert asked for;
//! 4. afterwards ([`promote`], [`autoscaling`]): promotion sources' health, committed
//!    promotions following their release, and the autoscaler.
//!
//! Everything is recomputed from scratch (level-triggered), so a controller restarted
//! after a crash picks up where the store and the engine say things are.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use drover_diff::{ObjectKey, State};
use drover_model::cluster::Engine as EngineKind;
use drover_model::{Kind, short_id};
use drover_plan::{Live, Observed};
use drover_release::{OpenRelease, ReleaseResult, ServiceProgress, Trigger, WriteKind, WriteState};
use drover_source::Revision;
use drover_store::{Database, GitWriteRecord, Store, StoreError};
use serde_json::Value;
use tokio::sync::{Notify, mpsc};

use crate::engine::{Engine, EngineError, Orders, ServiceKey};
use crate::files::StateDir;

mod autoscaling;
mod objects;
mod promote;
mod recorder;
mod releases;
mod rules;
mod status;
mod telemetry;

pub use objects::Placements;
pub use promote::Verified;
pub use recorder::{Recorder, Transition};

#[cfg(test)]
mod tests;

/// How often a full pass runs when nothing wakes the loop: a safety net.
const RESYNC: Duration = Duration::from_secs(10);
/// The shortest wait between two passes asked for by a deadline.
const MIN_WAIT: Duration = Duration::from_millis(20);
/// The first and the longest wait before a failed pass is tried again.
const RETRY_MIN: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(10);

/// Why the controller failed, or refused a request.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Engine(EngineError),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    NotFound(String),
    /// The request breaks a rule of the model (what `drover validate` checks).
    #[error("{0}")]
    Invalid(String),
    /// A promotion's gate is closed now.
    #[error("gate not met: {0}")]
    Gate(drover_release::gate::Closed),
    /// Clusters of these engines failed in a pass; the others' work went on.
    #[error("{error}")]
    Clusters {
        kinds: Vec<EngineKind>,
        error: Box<ControlError>,
    },
}

impl From<EngineError> for ControlError {
    fn from(e: EngineError) -> ControlError {
        match e {
            EngineError::NotFound(m) => ControlError::NotFound(m),
            EngineError::Refused(m) => ControlError::Refused(m),
            other => ControlError::Engine(other),
        }
    }
}

/// What the controller needs to know about its surroundings.
#[derive(Debug, Clone)]
pub struct Config {
    pub state: StateDir,
    /// Where release and promotion events go.
    pub notifier: crate::notify::Notifier,
    /// What is counted as it happens (passes, releases, rollbacks, API requests).
    pub metrics: drover_telemetry::Metrics,
}

/// A revision that passed validation, normalized.
#[derive(Debug, Clone)]
pub struct DesiredRevision {
    pub revision: Revision,
    pub state: State,
    /// Its trace: applying and judging it are added to it.
    pub trace: drover_telemetry::trace::RevisionTrace,
}

/// A rolled-back release whose revision should be reverted in Git.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RevertRequest {
    pub release: i64,
    pub environment: String,
    pub revision: String,
    pub reason: String,
}

/// A manual rollback of an environment to an earlier revision: a commit restoring the
/// environment's directory as it was.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RollbackRequest {
    pub environment: String,
    /// A revision as the user named it, or the last healthy one before the current.
    pub to: String,
}

/// A commit Drover asks of the Git writer, which writes it and reports back through
/// [`Controller::reverted`] or [`Controller::rolled_back`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitWrite {
    Revert(RevertRequest),
    Restore(RollbackRequest),
}

impl GitWrite {
    fn kind(&self) -> WriteKind {
        match self {
            GitWrite::Revert(_) => WriteKind::Revert,
            GitWrite::Restore(_) => WriteKind::Restore,
        }
    }

    fn request(&self) -> String {
        match self {
            GitWrite::Revert(r) => serde_json::to_string(r),
            GitWrite::Restore(r) => serde_json::to_string(r),
        }
        .expect("requests serialize")
    }

    /// The write a queued record holds, if it is one of these kinds.
    fn of(record: &GitWriteRecord) -> Option<GitWrite> {
        match record.kind {
            WriteKind::Revert => serde_json::from_str(&record.request)
                .ok()
                .map(GitWrite::Revert),
            WriteKind::Restore => serde_json::from_str(&record.request)
                .ok()
                .map(GitWrite::Restore),
            WriteKind::Promotion | WriteKind::Deploy => None,
        }
    }
}

/// A write recorded in the Git outbox, with what it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedWrite {
    pub record: GitWriteRecord,
    pub write: GitWrite,
}

/// What the controller keeps between passes.
#[derive(Debug, Default)]
struct Inner {
    /// Shared, not copied, by each pass: with a thousand services it is megabytes.
    desired: Option<Arc<DesiredRevision>>,
    rejected: Option<String>,
    /// The newest revision followed, accepted or rejected.
    attempted: Option<String>,
    /// The release each environment is judging now.
    releases: BTreeMap<String, OpenRelease>,
    /// Environments whose open release, if any, has been read back from the store.
    restored: BTreeSet<String>,
    /// Why a revert could not be written to Git, by environment (shown in status).
    revert_failures: BTreeMap<String, String>,
    /// Commits written for manual rollbacks, by environment: their release is `manual`.
    manual_commits: BTreeMap<String, String>,
    /// Services rolling back (they update with their `rollback` settings).
    rolling_back: BTreeSet<ServiceKey>,
    /// Every service's progress as of the last pass.
    progress: BTreeMap<ServiceKey, ServiceProgress>,
    /// Environments another environment promotes from (their health is tracked).
    promotion_sources: BTreeSet<String>,
    /// Services with `autoscaling`, as applied.
    autoscaled: Vec<(String, String, drover_model::service::Autoscaling)>,
    /// Per autoscaled service: when it was last evaluated, and its request count then.
    scaled_at: BTreeMap<ServiceKey, (Instant, usize)>,
    /// Passes that had a desired revision to sync to.
    synced_passes: u64,
}

/// The controller, generic over the engine it drives. Shared by its loop and the API.
pub struct Controller<E: Engine> {
    engine: Arc<E>,
    config: Config,
    store: Mutex<Store>,
    recorder: Recorder,
    inner: tokio::sync::Mutex<Inner>,
    health: Mutex<promote::Health>,
    git_writes: mpsc::UnboundedSender<QueuedWrite>,
    git_writes_rx: Mutex<Option<mpsc::UnboundedReceiver<QueuedWrite>>>,
    wake: Arc<Notify>,
    /// Counts finished passes (good or failed), for whoever reports on them.
    passes: tokio::sync::watch::Sender<u64>,
    /// The trace of the desired revision (by its id): a release's verdict is added to
    /// it.
    traced: Mutex<Option<(String, drover_telemetry::trace::RevisionTrace)>>,
}

/// The revision a controller follows, as its status reports it.
#[derive(Debug, Clone, Default)]
pub struct Followed {
    /// The valid revision in force (its desired state).
    pub desired: Option<Arc<DesiredRevision>>,
    /// The newest revision followed, accepted or rejected (full id).
    pub attempted: Option<String>,
    /// Why the newest revision was rejected, if it was.
    pub rejected: Option<String>,
}

impl<E: Engine> std::fmt::Debug for Controller<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("state", &self.config.state)
            .finish()
    }
}

/// How a release's snapshot (the objects before it) is kept in the store.
pub fn snapshot_of(state: &State) -> String {
    objects::snapshot(state.iter())
}

/// The objects of one environment.
pub fn subset(state: &State, env: &str) -> State {
    state
        .iter()
        .filter(|(k, _)| k.environment == env)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// What an engine observes of one environment.
fn observed_in(observed: &Observed, env: &str) -> Observed {
    Observed {
        objects: subset(&observed.objects, env),
        inventory: observed
            .inventory
            .iter()
            .filter(|k| k.environment == env)
            .cloned()
            .collect(),
    }
}

impl<E: Engine> Controller<E> {
    /// Opens the store and starts with what it holds. `wake` is the loop's: the engine
    /// notifies it when something it observes changes. What happens is logged through
    /// `tracing`.
    pub fn open(
        engine: Arc<E>,
        config: Config,
        wake: Arc<Notify>,
    ) -> Result<Arc<Controller<E>>, ControlError> {
        let store = Store::open(&config.state.database())?;
        let (git_writes, git_writes_rx) = mpsc::unbounded_channel();
        let recorder = Recorder::new(config.notifier.clone(), config.metrics.clone());
        Ok(Arc::new(Controller {
            engine,
            config,
            store: Mutex::new(store),
            recorder,
            inner: tokio::sync::Mutex::new(Inner::default()),
            health: Mutex::new(promote::Health::default()),
            git_writes,
            git_writes_rx: Mutex::new(Some(git_writes_rx)),
            wake,
            passes: tokio::sync::watch::Sender::new(0),
            traced: Mutex::new(None),
        }))
    }

    /// The engine this controller drives.
    pub fn engine(&self) -> &Arc<E> {
        &self.engine
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the store (one short critical section, never across an await).
    pub fn with_store<T>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError>,
    ) -> Result<T, ControlError> {
        Ok(f(&self.store())?)
    }

    /// Asks for a pass soon.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Ticks after every pass, good or failed.
    pub fn passes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.passes.subscribe()
    }

    /// The revision followed now.
    pub async fn followed(&self) -> Followed {
        let inner = self.inner.lock().await;
        Followed {
            desired: inner.desired.clone(),
            attempted: inner.attempted.clone(),
            rejected: inner.rejected.clone(),
        }
    }

    /// A new valid revision.
    pub async fn set_desired(&self, desired: DesiredRevision) {
        let mut inner = self.inner.lock().await;
        inner.rejected = None;
        inner.attempted = Some(desired.revision.id.clone());
        *self.traced.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((desired.revision.id.clone(), desired.trace.clone()));
        inner.desired = Some(Arc::new(desired));
        drop(inner);
        self.wake();
    }

    /// A revision that failed validation: recorded, nothing applied.
    pub async fn reject(&self, revision: &Revision, message: &str) {
        let mut inner = self.inner.lock().await;
        inner.rejected = Some(format!("revision {} rejected: {message}", revision.short()));
        inner.attempted = Some(revision.id.clone());
        drop(inner);
        self.passes.send_modify(|n| *n += 1);
        let _ = self.store().event(
            "",
            &format!("revision/{}", revision.short()),
            "RevisionRejected",
            message,
        );
    }

    /// Runs passes until `shutdown` completes: on every change (a revision, an API
    /// write, the engine's news), at the earliest deadline a decision or the engine
    /// asked for, and a full resync every [`RESYNC`] whatever happens.
    ///
    /// A failed pass is retried with exponential back-off (jittered, up to
    /// [`RETRY_MAX`]), not at every wake-up: a cluster that refuses what Drover asks
    /// while its watches report a stream of changes is not asked again each time. Its
    /// error is logged when it first appears or changes, not at every retry.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        use backon::BackoffBuilder;
        tokio::pin!(shutdown);
        let retry = backon::ExponentialBuilder::new()
            .with_min_delay(RETRY_MIN)
            .with_max_delay(RETRY_MAX)
            .with_jitter()
            .without_max_times();
        let mut backoff = retry.build();
        let mut failing: Option<(String, usize)> = None;
        loop {
            let started = Instant::now();
            let result = self.pass().await;
            self.config.metrics.pass(result.is_ok(), started.elapsed());
            self.passes.send_modify(|n| *n += 1);
            let next = match result {
                Ok(next) => {
                    if let Some((_, failures)) = failing.take() {
                        tracing::info!("reconcile recovered after {failures} failed passes");
                        backoff = retry.build();
                    }
                    next
                }
                Err(error) => {
                    let text = error.to_string();
                    match &mut failing {
                        Some((last, failures)) if *last == text => *failures += 1,
                        _ => {
                            tracing::error!("reconcile failed: {text}");
                            failing = Some((text, 1));
                        }
                    }
                    self.record_failure(&error).await;
                    let delay = backoff.next().unwrap_or(RETRY_MAX);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => continue,
                        _ = &mut shutdown => break,
                    }
                }
            };
            let now = Instant::now();
            let wait = next
                .map_or(RESYNC, |at| at.saturating_duration_since(now))
                .clamp(MIN_WAIT, RESYNC);
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = &mut shutdown => break,
            }
        }
    }

    /// A failed pass shows in the status of every environment on the clusters that
    /// failed (all of them, unless the error names which), so `drover status` says
    /// why nothing moves; the next good pass sets it right.
    async fn record_failure(&self, error: &ControlError) {
        let inner = self.inner.lock().await;
        let Some(desired) = &inner.desired else {
            return;
        };
        let failed = match error {
            ControlError::Clusters { kinds, .. } => kinds.as_slice(),
            _ => self.engine.kinds(),
        };
        let placed = objects::Placements::of(&desired.state);
        let message = crate::one_line(&error.to_string());
        let store = self.store();
        for env in placed.environments.keys() {
            if !placed.engine_of(env).is_some_and(|k| failed.contains(&k)) {
                continue;
            }
            let before = store
                .environments()
                .ok()
                .and_then(|all| all.into_iter().find(|s| &s.name == env));
            // The revision stays the one applied: the next good pass applies the new
            // one as a revision (its release goes on), not as drift.
            let next = drover_store::EnvironmentStatus {
                name: env.clone(),
                revision: before.as_ref().and_then(|b| b.revision.clone()),
                summary: before.as_ref().and_then(|b| b.summary.clone()),
                status: drover_release::SyncStatus::Failed,
                message: message.clone(),
            };
            if before.as_ref() != Some(&next) {
                let _ = store.set_environment(&next);
                let _ = store.event(env, env, "Failed", &next.message);
            }
        }
    }

    /// Whether this controller's engine runs `env` (as `live` places it).
    fn runs(&self, live: &Live, env: &str) -> bool {
        live.engine_of(env)
            .is_some_and(|k| self.engine.kinds().contains(&k))
    }

    /// Whether a pass has synced the engine to a desired revision yet (after a start,
    /// what depends on live state, such as a gate, waits for it).
    pub async fn has_synced(&self) -> bool {
        self.inner.lock().await.synced_passes > 0
    }

    /// One pass; returns when the next one is due at the latest. Each kind of
    /// cluster is synced and converged on its own: one failing (an API server down)
    /// stops neither the others' work nor the judging of their releases, and the
    /// pass then fails naming it.
    pub async fn pass(&self) -> Result<Option<Instant>, ControlError> {
        let mut inner = self.inner.lock().await;
        // What each kind of cluster runs, observed once: with several kinds, each is
        // its own (an environment moving between them is on both for a pass).
        let kinds = self.engine.kinds().to_vec();
        let mut failed: Vec<(EngineKind, ControlError)> = Vec::new();
        let mut observed = Vec::with_capacity(kinds.len());
        for &kind in &kinds {
            match self.engine.observe_kind(kind).await {
                Ok(o) => observed.push((kind, o)),
                Err(error) => failed.push((kind, error.into())),
            }
        }
        let observed_live = observed
            .iter()
            .map(|(_, o)| Live::from_state(&o.objects))
            .reduce(Live::merge)
            .unwrap_or_default();
        self.resume_releases(&mut inner, &observed_live)?;
        let mut applied_any = false;
        if let Some(desired) = inner.desired.clone() {
            for (kind, observed) in &observed {
                let kind = *kind;
                match self
                    .sync_objects(&mut inner, &desired, kind, observed)
                    .await
                {
                    Ok(applied) => applied_any |= applied,
                    Err(error) => failed.push((kind, error)),
                }
            }
            inner.synced_passes += 1;
        }
        // What the engine runs now: read again only when the objects step changed it.
        drop(observed);
        let live = if applied_any {
            let mut live = Live::default();
            for &kind in &kinds {
                if failed.iter().any(|(f, _)| *f == kind) {
                    continue;
                }
                match self.engine.observe_kind(kind).await {
                    Ok(o) => live = live.merge(Live::from_state(&o.objects)),
                    Err(error) => failed.push((kind, error.into())),
                }
            }
            live
        } else {
            observed_live
        };
        inner.promotion_sources = live
            .environments
            .values()
            .filter_map(|e| e.promotion.as_ref().map(|p| p.from.clone()))
            .collect();
        inner.autoscaled = live
            .services
            .iter()
            .filter(|((env, _), _)| self.runs(&live, env))
            .filter_map(|((env, name), spec)| {
                Some((env.clone(), name.clone(), spec.autoscaling.clone()?))
            })
            .collect();
        let orders = Orders {
            releases: inner.releases.clone(),
            rolling_back: inner.rolling_back.clone(),
        };
        let mut progress = BTreeMap::new();
        for &kind in &kinds {
            if failed.iter().any(|(k, _)| *k == kind) {
                continue;
            }
            match self.engine.converge(kind, &orders).await {
                Ok(more) => progress.extend(more),
                Err(error) => failed.push((kind, error.into())),
            }
        }
        inner.progress = progress;
        // A failing cluster's releases wait: its progress is not known this pass.
        // (Where Git puts it, or where it runs: a failing kind may not be observed.)
        let placed = inner
            .desired
            .as_ref()
            .map(|d| objects::Placements::of(&d.state))
            .unwrap_or_default();
        let unknown: BTreeSet<String> = inner
            .releases
            .keys()
            .filter(|env| {
                [placed.engine_of(env), live.engine_of(env)]
                    .into_iter()
                    .flatten()
                    .any(|k| failed.iter().any(|(f, _)| *f == k))
            })
            .cloned()
            .collect();
        let release_due = self.judge(&mut inner, &live, &unknown).await?;
        let autoscale_due = self.autoscale(&mut inner).await?;
        drop(inner);
        self.after_pass().await?;
        if !failed.is_empty() {
            let kinds = failed.iter().map(|(k, _)| *k).collect();
            let (_, error) = failed.swap_remove(0);
            return Err(ControlError::Clusters {
                kinds,
                error: Box::new(error),
            });
        }
        Ok([self.engine.due(), release_due, autoscale_due]
            .into_iter()
            .flatten()
            .min())
    }

    /// Records a commit to write in the Git outbox (part of the caller's batch, when
    /// it has one): from here on it survives a crash.
    fn queue_git_write(store: &Store, write: GitWrite) -> Result<QueuedWrite, StoreError> {
        let token = crate::write_token();
        let record = store.queue_write(write.kind(), &write.request(), None, &token)?;
        Ok(QueuedWrite { record, write })
    }

    /// Hands a queued write to the Git writer.
    fn send_git_write(&self, queued: QueuedWrite) {
        // The receiver lives as long as `up`; a write it never took stays in the outbox
        // and is carried out when `up` starts again.
        let _ = self.git_writes.send(queued);
    }

    /// The commits Drover asks for (reverts, restores), in order: taken once, by the
    /// Git writer.
    pub fn git_writes(&self) -> Option<mpsc::UnboundedReceiver<QueuedWrite>> {
        self.git_writes_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// The reverts and restores still pending in the outbox, oldest first: what a
    /// crash interrupted, for the Git writer to carry out when it starts.
    pub fn pending_git_writes(&self) -> Result<Vec<QueuedWrite>, ControlError> {
        let records = self
            .store()
            .pending_writes(&[WriteKind::Revert, WriteKind::Restore])?;
        Ok(records
            .into_iter()
            .filter_map(|record| {
                let write = GitWrite::of(&record)?;
                Some(QueuedWrite { record, write })
            })
            .collect())
    }

    /// Whether the outbox still holds this write as pending.
    pub fn still_pending(&self, id: i64) -> bool {
        self.store()
            .pending_writes(&[WriteKind::Revert, WriteKind::Restore])
            .is_ok_and(|p| p.iter().any(|r| r.id == id))
    }

    /// Records a service's new replica count outside Git (the API or the autoscaler)
    /// through the engine, with its event.
    async fn write_replicas(
        &self,
        key: &ObjectKey,
        value: Value,
        reason: &str,
        message: &str,
    ) -> Result<(), ControlError> {
        let kind = self.kind_of(&key.environment).await?;
        self.engine
            .apply(
                kind,
                &drover_plan::Action::Update {
                    key: key.clone(),
                    value,
                    patch: json_patch::Patch(Vec::new()),
                },
            )
            .await?;
        self.store()
            .event(&key.environment, &key.name, reason, message)?;
        Ok(())
    }

    /// The kind of cluster `env` runs on, as the engine runs it now.
    async fn kind_of(&self, env: &str) -> Result<EngineKind, ControlError> {
        if let [only] = self.engine.kinds() {
            return Ok(*only);
        }
        let observed = self.engine.observe().await?;
        objects::Placements::of(&observed.objects)
            .engine_of(env)
            .ok_or_else(|| ControlError::NotFound(format!("no environment `{env}` runs here")))
    }

    /// `drover scale`: an out-of-band change of the applied replicas, which self-heal
    /// reverts unless an autoscaler owns the count.
    pub async fn scale(
        &self,
        env: &str,
        service: &str,
        replicas: u32,
    ) -> Result<String, ControlError> {
        let key = ObjectKey {
            environment: env.to_owned(),
            kind: Kind::Service,
            name: service.to_owned(),
        };
        let observed = self.engine.observe().await?;
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
        let problems = rules::problems_with(&observed.objects, env, &key, &value);
        if !problems.is_empty() {
            return Err(ControlError::Invalid(format!(
                "{env}/{service} at {replicas} replicas would break the model's rules: {}",
                problems.join("; ")
            )));
        }
        let text = format!("replicas {before} → {replicas} (through the API)");
        self.write_replicas(&key, value, "Scaled", &text).await?;
        self.wake();
        let policy = objects::sync_policy(&observed.objects, env);
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
    /// update settings.
    pub async fn redeploy(&self, env: &str, service: &str) -> Result<String, ControlError> {
        let text = self.engine.redeploy(env, service).await?;
        self.store().event(env, service, "Redeploy", &text)?;
        self.wake();
        Ok(text)
    }

    /// `drover node update --availability`.
    pub async fn set_availability(
        &self,
        node: &str,
        availability: Option<&str>,
    ) -> Result<String, ControlError> {
        use drover_model::cluster::Availability;
        let availability = match availability {
            None => None,
            Some("active") => Some(Availability::Active),
            Some("pause") => Some(Availability::Pause),
            Some("drain") => Some(Availability::Drain),
            Some(other) => {
                return Err(ControlError::Refused(format!(
                    "unknown availability `{other}`: expected active, pause or drain"
                )));
            }
        };
        let engine = &self.engine;
        if !engine
            .kinds()
            .iter()
            .any(|k| engine.capabilities(*k).node_availability)
        {
            return Err(ControlError::Refused(
                "this engine does not set node availability".into(),
            ));
        }
        let text = self.engine.set_availability(node, availability).await?;
        self.store()
            .event("", &format!("node/{node}"), "Availability", &text)?;
        self.wake();
        Ok(text)
    }

    /// `drover rollback ENV [--to REV]`: asks for a commit that restores the
    /// environment as it was at REV (default: the last healthy release before the one
    /// in force). It is applied as any commit is, and recorded as a manual release.
    pub async fn rollback(&self, env: &str, to: Option<&str>) -> Result<String, ControlError> {
        let applied = subset(&self.engine.observe().await?.objects, env);
        let store = self.store();
        let current = store
            .environments()?
            .into_iter()
            .find(|e| e.name == env)
            .ok_or_else(|| ControlError::NotFound(format!("no environment `{env}`")))?
            .revision;
        let target = match to {
            Some(to) => to.to_owned(),
            None => {
                let releases = store.releases(env, 100)?;
                // A healthy release's state is what the release after it started
                // from; one that ran what runs now would be a commit changing nothing.
                releases
                    .iter()
                    .enumerate()
                    .skip(1)
                    .find(|(i, r)| {
                        r.result == ReleaseResult::Healthy
                            && Some(&r.revision) != current.as_ref()
                            && r.trigger != Trigger::Rollback
                            && subset(&objects::from_snapshot(&releases[i - 1].snapshot), env)
                                != applied
                    })
                    .map(|(_, r)| r.revision.clone())
                    .ok_or_else(|| {
                        ControlError::Refused(format!(
                            "`{env}` has no earlier healthy release that ran something else than what runs now: rolling back would change nothing; name a revision with --to"
                        ))
                    })?
            }
        };
        let short = short_id(&target);
        let text =
            format!("rolling {env} back to {short}: a commit restoring environments/{env} follows");
        let queued = store.batch(|store| {
            store.event(env, env, "RollbackRequested", &text)?;
            Self::queue_git_write(
                store,
                GitWrite::Restore(RollbackRequest {
                    environment: env.to_owned(),
                    to: target,
                }),
            )
        })?;
        drop(store);
        self.config.metrics.rollback(env, false);
        self.send_git_write(queued);
        Ok(text)
    }

    /// A queued write was carried out (`Ok(commit)`) or could not be (`Err(why)`):
    /// what it was for learns the result, then the outbox records it.
    pub async fn written(&self, queued: &QueuedWrite, result: Result<String, String>) {
        match &queued.write {
            GitWrite::Revert(r) => self.reverted(r, result.clone()).await,
            GitWrite::Restore(r) => self.rolled_back(r, result.clone()).await,
        }
        let (state, text) = match &result {
            Ok(commit) => (WriteState::Written, commit.as_str()),
            Err(why) => (WriteState::Failed, why.as_str()),
        };
        if let Err(e) = self.store().finish_write(queued.record.id, state, text) {
            tracing::error!("the Git outbox: {e}");
        }
    }

    /// The commit of a manual rollback was written (`Ok(commit)`) or not (`Err(why)`).
    async fn rolled_back(&self, request: &RollbackRequest, result: Result<String, String>) {
        let env = &request.environment;
        let short = short_id(&request.to);
        let (reason, text) = match &result {
            Ok(commit) => {
                self.inner
                    .lock()
                    .await
                    .manual_commits
                    .insert(env.clone(), commit.clone());
                (
                    "RollbackCommitted",
                    format!("rollback to {short} committed as {}", short_id(commit)),
                )
            }
            Err(why) => (
                "RollbackFailed",
                format!("could not roll back to {short}: {why}"),
            ),
        };
        let _ = self.store().event(env, env, reason, &text);
        tracing::info!("{env}: {text}");
    }

    /// A revert commit was written (`Ok(commit)`) or could not be (`Err(why)`).
    async fn reverted(&self, request: &RevertRequest, result: Result<String, String>) {
        let short = short_id(&request.revision);
        {
            let mut inner = self.inner.lock().await;
            match &result {
                Ok(_) => inner.revert_failures.remove(&request.environment),
                Err(why) => inner.revert_failures.insert(
                    request.environment.clone(),
                    format!("revert of {short} not written to Git: {why}"),
                ),
            };
        }
        let store = self.store();
        let (reason, text) = match &result {
            Ok(commit) => {
                let _ = store.set_revert(request.release, commit);
                (
                    "Reverted",
                    format!("revision {short} reverted in Git by {}", short_id(commit)),
                )
            }
            Err(why) => (
                "RevertFailed",
                format!("could not revert {short} in Git: {why}; the environment stays held"),
            ),
        };
        let _ = store.event(&request.environment, &request.environment, reason, &text);
        tracing::info!("{}: {text}", request.environment);
    }
}
