//! Supervising real processes: restarts with back-off, readiness and liveness from
//! real (exec) probes driven by flag files, and stopping.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use drover_agent::probe::Target;
use drover_agent::process::{Backoff, Spec};
use drover_agent::supervise::{InstanceSpec, Phase, Status, supervise};
use drover_model::service::{ExecAction, Probe, RestartPolicy};
use tokio::sync::watch;

fn instance(dir: &Path, script: &str, restart: RestartPolicy) -> InstanceSpec {
    InstanceSpec {
        process: Spec {
            argv: vec!["sh".into(), "-c".into(), script.into()],
            env: BTreeMap::from([("PATH".to_owned(), std::env::var("PATH").unwrap())]),
            working_dir: dir.join("work"),
            log: dir.join("instance.log"),
            log_max_bytes: 1 << 20,
            log_keep: 1,
        },
        restart,
        liveness: None,
        readiness: None,
        target: Target {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ports: BTreeMap::new(),
            default_port: None,
            env: BTreeMap::new(),
            working_dir: None,
        },
        backoff: Backoff {
            base: Duration::from_millis(50),
            cap: Duration::from_millis(200),
            reset_after: Duration::from_secs(30),
        },
        grace: Duration::from_secs(2),
    }
}

/// A probe passing while `flag` exists, checked every second.
fn flag_probe(flag: &Path) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: vec!["test".into(), "-e".into(), flag.display().to_string()],
        }),
        period_seconds: 1,
        failure_threshold: 1,
        ..Probe::default()
    }
}

async fn until(
    status: &mut watch::Receiver<Status>,
    within: Duration,
    what: &str,
    wanted: impl Fn(&Status) -> bool,
) -> Status {
    let found = tokio::time::timeout(within, status.wait_for(|s| wanted(s)))
        .await
        .ok()
        .and_then(Result::ok)
        .map(|s| s.clone());
    found.unwrap_or_else(|| {
        panic!(
            "not {what} within {within:?}; status {:?}",
            *status.borrow()
        )
    })
}

#[tokio::test]
async fn an_instance_that_keeps_exiting_is_restarted_with_back_off() {
    let tmp = tempfile::tempdir().unwrap();
    let mut handle = supervise(instance(tmp.path(), "exit 3", RestartPolicy::Always));
    let status = until(
        &mut handle.status,
        Duration::from_secs(10),
        "restarted three times",
        |s| s.restarts >= 3,
    )
    .await;
    assert_eq!(status.last_failure.as_deref(), Some("exited with status 3"));
    handle.stop().await;
}

#[tokio::test]
async fn on_failure_leaves_a_clean_exit_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let mut handle = supervise(instance(tmp.path(), "exit 0", RestartPolicy::OnFailure));
    let status = until(&mut handle.status, Duration::from_secs(10), "exited", |s| {
        s.phase == Phase::Exited
    })
    .await;
    assert_eq!(
        (status.restarts, status.last_failure.as_deref()),
        (0, Some("exited with status 0"))
    );
}

#[tokio::test]
async fn readiness_follows_its_probe_without_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let flag = tmp.path().join("ready");
    let mut spec = instance(tmp.path(), "sleep 33", RestartPolicy::Always);
    spec.readiness = Some(flag_probe(&flag));
    let mut handle = supervise(spec);
    until(&mut handle.status, Duration::from_secs(5), "running", |s| {
        s.phase == Phase::Running
    })
    .await;
    assert!(
        !handle.status.borrow().ready,
        "not ready before the probe passes"
    );
    std::fs::write(&flag, "").unwrap();
    until(&mut handle.status, Duration::from_secs(5), "ready", |s| {
        s.ready
    })
    .await;
    std::fs::remove_file(&flag).unwrap();
    let status = until(&mut handle.status, Duration::from_secs(5), "unready", |s| {
        !s.ready
    })
    .await;
    assert_eq!(
        (status.phase, status.restarts),
        (Phase::Running, 0),
        "readiness never restarts"
    );
    assert!(
        status
            .last_failure
            .unwrap()
            .starts_with("readiness `test -e")
    );
    handle.stop().await;
}

#[tokio::test]
async fn failing_liveness_restarts_the_instance_and_stop_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = instance(tmp.path(), "sleep 34 & wait", RestartPolicy::Always);
    spec.liveness = Some(flag_probe(&tmp.path().join("alive")));
    let mut handle = supervise(spec);
    let status = until(
        &mut handle.status,
        Duration::from_secs(10),
        "restarted after liveness failed",
        |s| s.restarts >= 1,
    )
    .await;
    assert!(
        status
            .last_failure
            .unwrap()
            .starts_with("liveness `test -e"),
        "restarted for liveness"
    );
    handle.stop().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let left = std::process::Command::new("pgrep")
        .args(["-f", "sleep 34"])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "left behind: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}
