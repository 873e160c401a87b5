//! The controller driving the local engine on the example repo, without agents:
//! reports, as an agent would send them, drive what it records.

use std::path::Path;

use drover_control::{Config, Controller, DesiredRevision};
use drover_source::Revision;

use super::*;
use crate::protocol::{InstanceReport, Report};

type Control = Controller<LocalEngine>;

async fn example_plane(dir: &Path) -> Arc<Control> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/repo");
    let loaded = drover_load::load_dir(&root).expect("examples/repo reads");
    let wake = Arc::new(Notify::new());
    let state = StateDir::new(dir);
    let engine = LocalEngine::open(
        LocalConfig {
            state: state.clone(),
            drover: "/bin/drover".into(),
            proxies: crate::ProxyHost::Threads,
            vault: drover_secrets::Vault::new(),
        },
        wake.clone(),
    )
    .unwrap();
    let control = Controller::open(
        engine,
        Config {
            state,
            notifier: drover_control::notify::Notifier::none(),
            metrics: Default::default(),
        },
        wake,
    )
    .unwrap();
    control
        .set_desired(DesiredRevision {
            revision: Revision {
                id: "0123456789abcdef".into(),
                summary: "example".into(),
                committed_s: 0,
            },
            trace: Default::default(),
            state: drover_diff::normalize(&loaded.repo),
        })
        .await;
    control.pass().await.unwrap();
    control
}

fn report(seq: u64, ready: bool, assignments: &Assignments) -> Report {
    Report {
        generation: assignments.generation,
        pid: 4242,
        seq,
        urgent: true,
        instances: assignments
            .instances
            .iter()
            .map(|a| InstanceReport {
                id: a.id.clone(),
                spec_hash: a.spec_hash.clone(),
                phase: "running".into(),
                ready,
                pid: Some(1),
                ports: [("http".to_owned(), 1u16)].into(),
                restarts: 0,
                last_failure: None,
                failing: false,
                failing_since_ms: None,
                usage: Default::default(),
            })
            .collect(),
        machine: Default::default(),
    }
}

async fn ready_ids(control: &Control) -> Vec<String> {
    let status = control.status().await.unwrap();
    status
        .instances
        .iter()
        .filter(|i| i.ready)
        .map(|i| i.id.clone())
        .collect()
}

#[tokio::test]
async fn a_report_overtaken_by_a_newer_one_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let control = example_plane(dir.path()).await;
    let assigned = control.engine().assignments("staging-1", 0, false).await;
    assert!(!assigned.instances.is_empty());
    assert!(
        control
            .engine()
            .report("staging-1", report(2, true, &assigned))
    );
    control.pass().await.unwrap();
    let ready = ready_ids(&control).await;
    assert_eq!(ready.len(), assigned.instances.len());
    // Report 1 was sent before report 2 but arrives after it.
    assert!(
        control
            .engine()
            .report("staging-1", report(1, false, &assigned))
    );
    control.pass().await.unwrap();
    assert_eq!(ready_ids(&control).await, ready);
}

#[tokio::test]
async fn an_unknown_node_is_refused_and_a_known_one_gets_its_instances() {
    let dir = tempfile::tempdir().unwrap();
    let control = example_plane(dir.path()).await;
    assert!(!control.engine().report("nowhere", Report::default()));
    let staging_1 = control.engine().assignments("staging-1", 0, false).await;
    let ids: Vec<&str> = staging_1.instances.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["staging.api.1", "staging.web.1", "staging.worker.1"]);
}

#[tokio::test]
async fn scaling_against_git_is_reverted_with_an_event() {
    let dir = tempfile::tempdir().unwrap();
    let control = example_plane(dir.path()).await;
    let message = control.scale("staging", "web", 5).await.unwrap();
    assert!(message.contains("self-heal will revert it"), "{message}");
    control.pass().await.unwrap();
    let events = control.events(2).unwrap();
    assert_eq!(events[0].reason, "DriftReverted");
    assert_eq!(
        events[0].message,
        "drift reverted to Git: web: replicas 5 → 2"
    );
    let web = control
        .status()
        .await
        .unwrap()
        .services
        .into_iter()
        .find(|s| s.environment == "staging" && s.name == "web")
        .unwrap();
    assert_eq!(web.desired, 2);
}

#[tokio::test]
async fn an_autoscaled_service_scales_within_its_bounds_without_drift() {
    let dir = tempfile::tempdir().unwrap();
    let control = example_plane(dir.path()).await;
    // staging/api autoscales between 2 and 4.
    assert!(control.scale("staging", "api", 9).await.is_err());
    control.scale("staging", "api", 3).await.unwrap();
    control.pass().await.unwrap();
    let api = control
        .status()
        .await
        .unwrap()
        .services
        .into_iter()
        .find(|s| s.environment == "staging" && s.name == "api")
        .unwrap();
    assert_eq!(api.desired, 3);
    let staging = control.status().await.unwrap().environments;
    assert!(staging.iter().all(|e| e.sync == "Synced"), "{staging:?}");
}
