//! One controller over two engines (`Both`): a repo whose staging runs on a local
//! cluster and production on a Kubernetes one, each engine a stand-in in memory.

use super::*;
use crate::both::Both;
use crate::controller::ControlError;

type Pair = Both<InMemoryEngine, InMemoryEngine>;

/// The example, with production's cluster on Kubernetes.
fn mixed(id: &str) -> DesiredRevision {
    let mut desired = revision(id);
    for (key, value) in desired.state.iter_mut() {
        if key.kind == Kind::Cluster && key.name == "local-production" {
            value["spec"]["engine"] = "kubernetes".into();
        }
    }
    desired
}

/// The environments an engine runs objects for ("" holds the clusters).
fn environments(engine: &InMemoryEngine) -> Vec<String> {
    let mut envs: Vec<String> = engine
        .observed
        .lock()
        .unwrap()
        .objects
        .keys()
        .map(|k| k.environment.clone())
        .collect();
    envs.dedup();
    envs
}

fn clusters(engine: &InMemoryEngine) -> Vec<String> {
    engine
        .observed
        .lock()
        .unwrap()
        .objects
        .keys()
        .filter(|k| k.kind == Kind::Cluster)
        .map(|k| k.name.clone())
        .collect()
}

/// [`mixed`] with a new version of web everywhere, and production's release past its
/// deadline at once: judged from what a failing cluster cannot say, it would fail.
fn new_web_with_production_due_at_once(id: &str) -> DesiredRevision {
    let mut desired = mixed(id);
    for (key, value) in desired.state.iter_mut() {
        if key.kind == Kind::Service && key.name == "web" {
            value["spec"]["version"] = "9.9.9".into();
        }
        if key.kind == Kind::Environment && key.environment == "production" {
            value["spec"]["rollback"]["progressDeadline"] = "0s".into();
        }
    }
    desired
}

fn engines() -> (Arc<InMemoryEngine>, Arc<InMemoryEngine>, Arc<Pair>) {
    let local = Arc::new(InMemoryEngine::default());
    let kube = Arc::new(InMemoryEngine {
        kubernetes: true,
        ..InMemoryEngine::default()
    });
    let both = Arc::new(Both::new(local.clone(), kube.clone()));
    (local, kube, both)
}

#[tokio::test]
async fn each_environment_is_applied_by_the_engine_of_its_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let (local, kube, both) = engines();
    let control = controller(dir.path(), both);
    control.set_desired(mixed("a")).await;
    control.pass().await.unwrap();
    assert_eq!(environments(&local), ["", "staging"]);
    assert_eq!(clusters(&local), ["local-staging"]);
    assert_eq!(environments(&kube), ["", "production"]);
    assert_eq!(clusters(&kube), ["local-production"]);
    for env in ["staging", "production"] {
        assert_eq!(status_of(&control, env).status, SyncStatus::Synced, "{env}");
        let releases = control.with_store(|s| s.releases(env, 10)).unwrap();
        assert_eq!(releases.len(), 1, "{env}");
        assert_eq!(releases[0].result, ReleaseResult::Healthy, "{env}");
    }
}

#[tokio::test]
async fn an_environment_moved_to_a_kubernetes_cluster_leaves_the_local_one_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (local, kube, both) = engines();
    let control = controller(dir.path(), both);
    control.set_desired(revision("a")).await;
    control.pass().await.unwrap();
    assert_eq!(environments(&local), ["", "production", "staging"]);
    assert!(environments(&kube).is_empty());
    control.set_desired(mixed("b")).await;
    control.pass().await.unwrap();
    // Every service of production goes from the local engine: the guard against
    // emptying an environment does not hold a move.
    assert_eq!(environments(&local), ["", "staging"]);
    assert_eq!(environments(&kube), ["", "production"]);
    let production = status_of(&control, "production");
    assert_eq!(production.status, SyncStatus::Synced, "{production:?}");
    let events = control.with_store(|s| s.events(50)).unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.reason == "Moved" && e.environment == "production"),
        "{events:?}"
    );
    control.pass().await.unwrap();
    assert_eq!(environments(&local), ["", "staging"], "nothing comes back");
}

#[tokio::test]
async fn a_failing_kubernetes_cluster_stops_neither_the_local_one_nor_its_releases() {
    let dir = tempfile::tempdir().unwrap();
    let (local, kube, both) = engines();
    let control = controller(dir.path(), both);
    control.set_desired(mixed("a")).await;
    control.pass().await.unwrap();
    let desired = new_web_with_production_due_at_once("b");
    *kube.refuse.lock().unwrap() = Some(0);
    control.set_desired(desired).await;
    let error = control.pass().await.unwrap_err();
    assert!(
        matches!(&error, ControlError::Clusters { kinds, .. } if kinds == &[EngineKind::Kubernetes]),
        "{error:?}"
    );
    control.record_failure(&error).await;
    assert_eq!(web_version(&local), "9.9.9");
    assert_eq!(status_of(&control, "staging").status, SyncStatus::Synced);
    assert_eq!(staging_releases(&control)[0].result, ReleaseResult::Healthy);
    let production = status_of(&control, "production");
    assert_eq!(production.status, SyncStatus::Failed);
    assert!(
        production.message.contains("the cluster refuses"),
        "{production:?}"
    );
    let releases = control
        .with_store(|s| s.releases("production", 10))
        .unwrap();
    assert!(releases[0].result.is_open(), "{releases:?}");
    // The cluster comes back: production is applied as the revision it is.
    *kube.refuse.lock().unwrap() = None;
    control.pass().await.unwrap();
    assert_eq!(status_of(&control, "production").status, SyncStatus::Synced);
    let releases = control
        .with_store(|s| s.releases("production", 10))
        .unwrap();
    assert_eq!(releases[0].result, ReleaseResult::Healthy, "{releases:?}");
}

#[tokio::test]
async fn a_kubernetes_cluster_that_cannot_be_observed_leaves_the_local_one_working() {
    let dir = tempfile::tempdir().unwrap();
    let (local, kube, both) = engines();
    let control = controller(dir.path(), both);
    control.set_desired(mixed("a")).await;
    control.pass().await.unwrap();
    let desired = new_web_with_production_due_at_once("b");
    // Production's release opens, then its cluster goes away before it is judged.
    *kube.refuse.lock().unwrap() = Some(0);
    control.set_desired(desired).await;
    assert!(control.pass().await.is_err());
    *kube.refuse.lock().unwrap() = None;
    *kube.unreachable.lock().unwrap() = true;
    let error = control.pass().await.unwrap_err();
    assert!(
        matches!(&error, ControlError::Clusters { kinds, .. } if kinds == &[EngineKind::Kubernetes]),
        "{error:?}"
    );
    control.record_failure(&error).await;
    assert_eq!(web_version(&local), "9.9.9");
    assert_eq!(staging_releases(&control)[0].result, ReleaseResult::Healthy);
    let production = status_of(&control, "production");
    assert_eq!(production.status, SyncStatus::Failed);
    assert!(production.message.contains("unreachable"), "{production:?}");
    let releases = control
        .with_store(|s| s.releases("production", 10))
        .unwrap();
    assert!(releases[0].result.is_open(), "{releases:?}");
}
