//! Instances as real processes: logs, stopping the whole group, restart policy.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use drover_agent::process::{Backoff, Spec, restarts, spawn};
use drover_model::service::RestartPolicy;

fn spec(dir: &std::path::Path, script: &str) -> Spec {
    Spec {
        argv: vec!["sh".into(), "-c".into(), script.into()],
        env: BTreeMap::from([
            ("PATH".to_owned(), std::env::var("PATH").unwrap()),
            ("GREETING".to_owned(), "hello".to_owned()),
        ]),
        working_dir: dir.join("work"),
        log: dir.join("logs/instance.log"),
        log_max_bytes: 1 << 20,
        log_keep: 2,
    }
}

fn running(pattern: &str) -> bool {
    let out = std::process::Command::new("pgrep")
        .args(["-f", pattern])
        .output()
        .unwrap();
    !out.stdout.is_empty()
}

async fn wait_for_log(path: &std::path::Path, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        if log.contains(text) || Instant::now() > deadline {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn output_goes_to_the_log_and_only_the_given_environment_is_seen() {
    let tmp = tempfile::tempdir().unwrap();
    // CARGO_PKG_NAME is set in this test process by cargo; it must not reach the instance.
    let s = spec(
        tmp.path(),
        "echo \"$GREETING from $(pwd)\"; echo oops >&2; echo \"secret=${CARGO_PKG_NAME:-none}\"",
    );
    let mut process = spawn(&s).unwrap();
    assert!(process.wait().await.unwrap().success());
    let log = wait_for_log(&s.log, "secret=").await;
    assert!(
        log.contains(&format!("hello from {}", s.working_dir.display())),
        "{log}"
    );
    assert!(log.contains("oops"), "{log}");
    assert!(
        log.contains("secret=none"),
        "the agent's environment leaked: {log}"
    );
}

#[tokio::test]
async fn stopping_ends_the_whole_group_even_when_sigterm_is_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let s = spec(tmp.path(), "trap '' TERM; sleep 31 & sleep 32; wait");
    let mut process = spawn(&s).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(running("sleep 3[12]"));
    let started = Instant::now();
    let status = process.stop(Duration::from_millis(500)).await.unwrap();
    assert!(!status.success());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "SIGKILL after the grace period"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!running("sleep 3[12]"), "a child outlived its instance");
}

#[tokio::test]
async fn a_process_that_honours_sigterm_stops_within_the_grace_period() {
    let tmp = tempfile::tempdir().unwrap();
    let s = spec(
        tmp.path(),
        "trap 'echo bye; exit 0' TERM; echo up; while true; do sleep 0.1; done",
    );
    let mut process = spawn(&s).unwrap();
    wait_for_log(&s.log, "up").await;
    let status = process.stop(Duration::from_secs(10)).await.unwrap();
    assert!(status.success());
    assert!(wait_for_log(&s.log, "bye").await.contains("bye"));
}

#[tokio::test]
async fn logs_rotate_by_size_keeping_the_newest() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = spec(
        tmp.path(),
        "i=0; while [ $i -lt 300 ]; do echo \"line $i ........................................\"; i=$((i+1)); done",
    );
    s.log_max_bytes = 4096;
    let mut process = spawn(&s).unwrap();
    process.wait().await.unwrap();
    wait_for_log(&s.log, "line 299").await;
    let current = std::fs::read_to_string(&s.log).unwrap();
    assert!(current.contains("line 299"));
    assert!(current.len() <= 4096);
    assert!(tmp.path().join("logs/instance.log.1").exists());
    assert!(tmp.path().join("logs/instance.log.2").exists());
    assert!(
        !tmp.path().join("logs/instance.log.3").exists(),
        "only two rotated files are kept"
    );
}

#[test]
fn restart_policy_decides_by_exit_status() {
    use std::os::unix::process::ExitStatusExt;
    let (ok, failed) = (
        std::process::ExitStatus::from_raw(0),
        std::process::ExitStatus::from_raw(1 << 8),
    );
    assert!(restarts(RestartPolicy::Always, ok) && restarts(RestartPolicy::Always, failed));
    assert!(!restarts(RestartPolicy::OnFailure, ok) && restarts(RestartPolicy::OnFailure, failed));
    assert!(!restarts(RestartPolicy::Never, failed));
}

#[test]
fn backoff_doubles_up_to_the_cap_and_resets_after_a_good_run() {
    let b = Backoff::default();
    let quick = Duration::from_secs(1);
    let delays: Vec<u64> = (1..=8).map(|n| b.delay(n, quick).as_secs()).collect();
    assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60]);
    assert_eq!(b.delay(6, Duration::from_secs(45)), Duration::from_secs(1));
    assert_eq!(b.delay(u32::MAX, quick), Duration::from_secs(60));
}
