//! The controller against `InMemoryEngine`, a stand-in engine that keeps objects in
//! memory and reports whatever progress a test sets: what the controller records,
//! applies and asks for, whatever engine runs the services. (End-to-end tests drive
//! the real local engine.)

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drover_diff::State;
use drover_model::Kind;
use drover_model::cluster::{Availability, Engine as EngineKind};
use drover_plan::{Action, Observed};
use drover_release::{Progress, ReleaseResult, ServiceProgress, SyncStatus, Trigger};
use drover_source::Revision;
use tokio::sync::Notify;

use super::{Config, Controller, DesiredRevision, GitWrite, QueuedWrite};
use crate::engine::{Capabilities, Engine, EngineError, EngineStatus, Orders, ServiceKey, Usage};
use crate::files::StateDir;

mod both;

/// A stand-in engine: objects in memory, progress as the test says.
#[derive(Debug, Default)]
struct InMemoryEngine {
    observed: Mutex<Observed>,
    /// Every service's progress; a service not named is healthy.
    progress: Mutex<BTreeMap<ServiceKey, Progress>>,
    applied: Mutex<Vec<Action>>,
    orders: Mutex<Option<Orders>>,
    /// Refuse every apply (a cluster that says no), counting the attempts.
    refuse: Mutex<Option<usize>>,
    /// How many times the engine was observed: once per pass.
    observations: Mutex<usize>,
    /// It runs Kubernetes clusters (not local ones), to stand beside another.
    kubernetes: bool,
    /// Nothing can be observed (an API server that cannot be reached).
    unreachable: Mutex<bool>,
}

impl Engine for InMemoryEngine {
    fn kinds(&self) -> &[EngineKind] {
        if self.kubernetes {
            &[EngineKind::Kubernetes]
        } else {
            &[EngineKind::Local]
        }
    }

    fn capabilities(&self, _: EngineKind) -> Capabilities {
        Capabilities::default()
    }

    async fn observe(&self) -> Result<Observed, EngineError> {
        *self.observations.lock().unwrap() += 1;
        if *self.unreachable.lock().unwrap() {
            return Err(EngineError::Failed("the cluster is unreachable".into()));
        }
        Ok(self.observed.lock().unwrap().clone())
    }

    async fn apply(&self, _: EngineKind, action: &Action) -> Result<(), EngineError> {
        if let Some(attempts) = self.refuse.lock().unwrap().as_mut() {
            *attempts += 1;
            return Err(EngineError::Failed("the cluster refuses".into()));
        }
        let mut observed = self.observed.lock().unwrap();
        match action {
            Action::Create { key, value } | Action::Update { key, value, .. } => {
                observed.objects.insert(key.clone(), value.clone());
                observed.inventory.insert(key.clone());
            }
            Action::Delete { key } => {
                observed.objects.remove(key);
                observed.inventory.remove(key);
            }
        }
        self.applied.lock().unwrap().push(action.clone());
        Ok(())
    }

    async fn converge(
        &self,
        _: EngineKind,
        orders: &Orders,
    ) -> Result<BTreeMap<ServiceKey, ServiceProgress>, EngineError> {
        *self.orders.lock().unwrap() = Some(orders.clone());
        let set = self.progress.lock().unwrap();
        Ok(self
            .observed
            .lock()
            .unwrap()
            .objects
            .keys()
            .filter(|k| k.kind == Kind::Service)
            .map(|k| {
                let key = (k.environment.clone(), k.name.clone());
                let progress = set.get(&key).cloned().unwrap_or(Progress::Healthy);
                (key, ServiceProgress::new(progress, ", 0/2 ready"))
            })
            .collect())
    }

    async fn status(&self) -> Result<EngineStatus, EngineError> {
        Ok(EngineStatus::default())
    }

    async fn usage(&self, _: &str, _: &str) -> Option<Usage> {
        None
    }

    async fn redeploy(&self, _: &str, _: &str) -> Result<String, EngineError> {
        Err(EngineError::Refused("not in memory".into()))
    }

    async fn set_availability(
        &self,
        _: &str,
        _: Option<Availability>,
    ) -> Result<String, EngineError> {
        Err(EngineError::Refused("not in memory".into()))
    }

    fn due(&self) -> Option<Instant> {
        None
    }
}

fn example() -> State {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/repo");
    drover_diff::normalize(
        &drover_load::load_dir(&root)
            .expect("examples/repo reads")
            .repo,
    )
}

fn revision(id: &str) -> DesiredRevision {
    DesiredRevision {
        revision: Revision {
            id: id.repeat(8),
            summary: format!("commit {id}"),
            committed_s: 0,
        },
        trace: Default::default(),
        state: example(),
    }
}

/// The example with web's version set.
fn with_web_version(mut desired: DesiredRevision, version: &str) -> DesiredRevision {
    for (key, value) in desired.state.iter_mut() {
        if key.kind == Kind::Service && key.name == "web" && key.environment == "staging" {
            value["spec"]["version"] = version.into();
        }
    }
    desired
}

fn controller<E: Engine>(dir: &Path, engine: Arc<E>) -> Arc<Controller<E>> {
    Controller::open(
        engine,
        Config {
            state: StateDir::new(dir),
            notifier: crate::notify::Notifier::none(),
            metrics: Default::default(),
        },
        Arc::new(Notify::new()),
    )
    .unwrap()
}

/// What the store records of staging's sync state.
fn staging_status<E: Engine>(control: &Controller<E>) -> drover_store::EnvironmentStatus {
    status_of(control, "staging")
}

/// What the store records of an environment's sync state.
fn status_of<E: Engine>(control: &Controller<E>, env: &str) -> drover_store::EnvironmentStatus {
    control
        .with_store(|s| s.environments())
        .unwrap()
        .into_iter()
        .find(|e| e.name == env)
        .unwrap()
}

/// The version staging's web has in the engine.
fn web_version(engine: &InMemoryEngine) -> serde_json::Value {
    engine
        .observed
        .lock()
        .unwrap()
        .objects
        .iter()
        .find(|(k, _)| k.environment == "staging" && k.name == "web")
        .map(|(_, v)| v["spec"]["version"].clone())
        .unwrap()
}

fn staging_releases<E: Engine>(control: &Controller<E>) -> Vec<drover_store::Release> {
    control.with_store(|s| s.releases("staging", 10)).unwrap()
}

#[tokio::test]
async fn a_first_revision_is_applied_and_synced_without_a_release_to_judge_twice() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(InMemoryEngine::default());
    let control = controller(dir.path(), engine.clone());
    control.set_desired(revision("a")).await;
    control.pass().await.unwrap();
    assert!(!engine.applied.lock().unwrap().is_empty());
    let staging = staging_status(&control);
    assert_eq!(staging.status, SyncStatus::Synced);
    // Every service is healthy at once here: the release is judged in the same pass.
    let releases = staging_releases(&control);
    assert_eq!(releases.len(), 1);
    assert_eq!(releases[0].result, ReleaseResult::Healthy);
    control.pass().await.unwrap();
    assert_eq!(
        staging_releases(&control).len(),
        1,
        "nothing is opened twice"
    );
}

// Time is the runtime's (paused, advanced only when every task waits), so the count
// of passes does not depend on how loaded the machine is.
#[tokio::test(start_paused = true)]
async fn a_failing_pass_is_retried_with_back_off_not_at_every_wake_up() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(InMemoryEngine::default());
    *engine.refuse.lock().unwrap() = Some(0);
    let control = controller(dir.path(), engine.clone());
    control.set_desired(revision("a")).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(control.clone().run(async move {
        let _ = stopped.await;
    }));
    // A cluster's watches wake the controller all the time: 140 wake-ups in 1.4 s.
    for _ in 0..140 {
        control.wake();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop.send(());
    running.await.unwrap();
    // The first retry comes 0.5–1 s after the first failure, the second 1–2 s after
    // that: within 1.4 s, exactly two passes, whatever the jitter.
    let passes = *engine.observations.lock().unwrap();
    assert_eq!(passes, 2, "{passes} passes in 1.4 s of wake-ups");
    assert!(engine.refuse.lock().unwrap().unwrap() >= 2);
    assert_eq!(staging_status(&control).status, SyncStatus::Failed);
}

#[tokio::test]
async fn a_release_still_rolling_asks_for_a_pass_at_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(InMemoryEngine::default());
    let control = controller(dir.path(), engine.clone());
    control.set_desired(revision("a")).await;
    control.pass().await.unwrap();
    let web = ("staging".to_owned(), "web".to_owned());
    engine
        .progress
        .lock()
        .unwrap()
        .insert(web, Progress::Rolling);
    control
        .set_desired(with_web_version(revision("b"), "v9"))
        .await;
    let before = Instant::now();
    let next = control.pass().await.unwrap().expect("a deadline");
    // The example's progress deadline is minutes away, not a fixed tick.
    assert!(
        next > before + Duration::from_secs(30),
        "{:?}",
        next - before
    );
    let open = engine.orders.lock().unwrap().clone().unwrap();
    assert_eq!(open.releases["staging"].services, ["web"]);
    assert_eq!(
        staging_releases(&control)[0].result,
        ReleaseResult::Progressing
    );
}

#[tokio::test]
async fn a_failed_release_is_rolled_back_reverted_and_held_at_what_ran_before() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(InMemoryEngine::default());
    let control = controller(dir.path(), engine.clone());
    let mut writes = control.git_writes().unwrap();
    control.set_desired(revision("a")).await;
    control.pass().await.unwrap();
    let web = ("staging".to_owned(), "web".to_owned());
    let good = web_version(&engine);
    engine.progress.lock().unwrap().insert(
        web.clone(),
        Progress::Failed {
            why: "update stopped: 1 of 2 instances failed (staging.web.1)".into(),
        },
    );
    control
        .set_desired(with_web_version(revision("b"), "v9"))
        .await;
    control.pass().await.unwrap();
    assert_eq!(
        web_version(&engine),
        "v9",
        "the bad release was applied first"
    );
    let releases = staging_releases(&control);
    assert_eq!(
        (releases[0].trigger, releases[0].result),
        (Trigger::Rollback, ReleaseResult::Progressing)
    );
    assert_eq!(releases[1].result, ReleaseResult::RolledBack);
    assert_eq!(
        releases[1].reason,
        "web: update stopped: 1 of 2 instances failed (staging.web.1), 0/2 ready"
    );
    let Ok(QueuedWrite {
        write: GitWrite::Revert(revert),
        record,
    }) = writes.try_recv()
    else {
        panic!("a revert was asked for");
    };
    assert_eq!(revert.revision, "b".repeat(8));
    // Recorded before it was asked for: a crash from here on cannot lose it.
    let pending = control.pending_git_writes().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].record, record);
    assert!(record.token.len() >= 16);
    // The next pass holds the environment at what it ran before, through the engine,
    // with web rolling back under its rollback settings.
    engine.progress.lock().unwrap().remove(&web);
    control.pass().await.unwrap();
    assert_eq!(web_version(&engine), good);
    let orders = engine.orders.lock().unwrap().clone().unwrap();
    assert!(orders.rolling_back.contains(&web));
    let staging = staging_status(&control);
    assert_eq!(staging.status, SyncStatus::Held);
    assert!(
        staging
            .message
            .starts_with("held at aaaaaaa: release bbbbbbb failed — web: ")
    );
    control.pass().await.unwrap();
    assert_eq!(staging_releases(&control)[0].result, ReleaseResult::Healthy);
    assert_eq!(
        web_version(&engine),
        good,
        "the failed revision is never applied again"
    );
}

#[tokio::test]
async fn a_controller_restarted_after_recording_a_release_goes_on_with_the_same_one() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(InMemoryEngine::default());
    let web = ("staging".to_owned(), "web".to_owned());
    {
        let control = controller(dir.path(), engine.clone());
        control.set_desired(revision("a")).await;
        control.pass().await.unwrap();
        engine
            .progress
            .lock()
            .unwrap()
            .insert(web.clone(), Progress::Rolling);
        control
            .set_desired(with_web_version(revision("b"), "v9"))
            .await;
        control.pass().await.unwrap();
    }
    // As if the crash came after the release was recorded and before it was applied:
    // web and the environment's status are as they were at `a`.
    let old = revision("a").state;
    let web_key = old
        .keys()
        .find(|k| k.environment == "staging" && k.name == "web")
        .unwrap()
        .clone();
    engine
        .observed
        .lock()
        .unwrap()
        .objects
        .insert(web_key.clone(), old[&web_key].clone());
    let store = drover_store::Store::open(&StateDir::new(dir.path()).database()).unwrap();
    let mut staging = store
        .environments()
        .unwrap()
        .into_iter()
        .find(|e| e.name == "staging")
        .unwrap();
    staging.revision = Some("a".repeat(8));
    store.set_environment(&staging).unwrap();
    let control = controller(dir.path(), engine.clone());
    control
        .set_desired(with_web_version(revision("b"), "v9"))
        .await;
    control.pass().await.unwrap();
    let releases = staging_releases(&control);
    let open: Vec<_> = releases.iter().filter(|r| r.result.is_open()).collect();
    assert_eq!(open.len(), 1, "{releases:#?}");
    assert_eq!(open[0].revision, "b".repeat(8));
    assert!(
        releases
            .iter()
            .all(|r| r.result != ReleaseResult::Superseded)
    );
    assert_eq!(
        web_version(&engine),
        "v9",
        "the rest of the revision is applied"
    );
    engine
        .progress
        .lock()
        .unwrap()
        .remove(&("staging".to_owned(), "web".to_owned()));
    control.pass().await.unwrap();
    assert_eq!(staging_releases(&control)[0].result, ReleaseResult::Healthy);
}

#[tokio::test]
async fn a_revision_removing_every_service_is_held_with_the_guards_reason() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(InMemoryEngine::default());
    let control = controller(dir.path(), engine.clone());
    control.set_desired(revision("a")).await;
    control.pass().await.unwrap();
    let mut empty = revision("b");
    empty
        .state
        .retain(|k, _| !(k.environment == "staging" && k.kind == Kind::Service));
    control.set_desired(empty).await;
    control.pass().await.unwrap();
    let staging = staging_status(&control);
    assert_eq!(staging.status, SyncStatus::Held);
    assert!(
        staging
            .message
            .contains("would delete every service of environment `staging`"),
        "{}",
        staging.message
    );
    let events = control.events(5).unwrap();
    assert!(events.iter().any(|e| e.reason == "Held"), "{events:?}");
    let services = engine
        .observed
        .lock()
        .unwrap()
        .objects
        .keys()
        .filter(|k| k.environment == "staging" && k.kind == Kind::Service)
        .count();
    assert_eq!(services, 3, "nothing was deleted");
}

#[tokio::test]
async fn a_commit_landing_before_the_revert_never_applies_the_failed_version_again() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(InMemoryEngine::default());
    let control = controller(dir.path(), engine.clone());
    control.set_desired(revision("a")).await;
    control.pass().await.unwrap();
    let web = ("staging".to_owned(), "web".to_owned());
    let good = web_version(&engine);
    let failed = Progress::Failed {
        why: "readiness failed".into(),
    };
    engine.progress.lock().unwrap().insert(web.clone(), failed);
    control
        .set_desired(with_web_version(revision("b"), "v9"))
        .await;
    control.pass().await.unwrap();
    engine.progress.lock().unwrap().remove(&web);
    control.pass().await.unwrap();
    assert_eq!(web_version(&engine), good, "rolled back");
    // An unrelated commit on top of the failed one, before Drover's revert lands: it
    // still says v9, which must not run again.
    control
        .set_desired(with_web_version(revision("c"), "v9"))
        .await;
    control.pass().await.unwrap();
    control.pass().await.unwrap();
    assert_eq!(web_version(&engine), good, "the failed version stays out");
    let staging = staging_status(&control);
    assert_eq!(staging.status, SyncStatus::Held);
    assert!(
        staging
            .message
            .starts_with("held at aaaaaaa: release bbbbbbb failed")
            && staging.message.contains("ccccccc still carries its change"),
        "{}",
        staging.message
    );
    // The revert lands: in sync again, at the revert.
    control
        .set_desired(with_web_version(revision("d"), good.as_str().unwrap()))
        .await;
    control.pass().await.unwrap();
    assert_eq!(staging_status(&control).status, SyncStatus::Synced);
    // A fix is a new change: it is released.
    control
        .set_desired(with_web_version(revision("e"), "v10"))
        .await;
    control.pass().await.unwrap();
    assert_eq!(web_version(&engine), "v10");
    assert_eq!(staging_releases(&control)[0].revision, "e".repeat(8));
}

#[tokio::test]
async fn an_environment_on_a_cluster_no_engine_drives_is_reported_unsupported() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/repo");
    let mut files = drover_load::read_dir(&root).unwrap();
    files.push(drover_load::SourceFile::new(
        "clusters/eu.yaml",
        "apiVersion: drover.dev/v1alpha1\nkind: Cluster\nmetadata: {name: eu}\nspec:\n  engine: kubernetes\n  kubernetes: {context: eu-1}\n",
    ));
    files.push(drover_load::SourceFile::new(
        "environments/eu/environment.yaml",
        "apiVersion: drover.dev/v1alpha1\nkind: Environment\nmetadata: {name: eu}\nspec: {cluster: eu}\n",
    ));
    let loaded = drover_load::load(&files);
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    let mut desired = revision("a");
    desired.state = drover_diff::normalize(&loaded.repo);
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(InMemoryEngine::default());
    let control = controller(dir.path(), engine.clone());
    control.set_desired(desired).await;
    control.pass().await.unwrap();
    let eu = control
        .with_store(|s| s.environments())
        .unwrap()
        .into_iter()
        .find(|e| e.name == "eu")
        .expect("eu is in status");
    assert_eq!(eu.status, SyncStatus::Unsupported);
    assert_eq!(
        eu.message,
        "not deployed: cluster `eu` uses the `kubernetes` engine, which this build of Drover cannot drive yet"
    );
    assert_eq!(staging_status(&control).status, SyncStatus::Synced);
    control.pass().await.unwrap();
    let said = control.events(50).unwrap();
    assert_eq!(said.iter().filter(|e| e.reason == "Unsupported").count(), 1);
}
