//! `drover example-app`, the demo service the examples run: its endpoints and the
//! switches rollout demos use.

use std::time::Duration;

use crate::support::{Running, http_get};

/// Starts the app and returns it with its `127.0.0.1:PORT` address.
fn start(args: &[&str], env: &[(&str, &str)]) -> (Running, String) {
    let mut all = vec!["example-app"];
    all.extend_from_slice(args);
    let app = Running::start(&all, env);
    let line = app.expect_line(Duration::from_secs(10), |l| {
        l.contains(" listening on http://")
    });
    let addr = line.rsplit("http://").next().unwrap().to_owned();
    (app, addr)
}

#[test]
fn it_reports_its_version_and_becomes_ready_after_the_delay() {
    let (_app, addr) = start(
        &["--ready-after", "1"],
        &[("DROVER_VERSION", "v1.4.0"), ("EXAMPLE_MESSAGE", "shop")],
    );
    let (status, body) = http_get(&addr, "/");
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (json["version"].as_str(), json["message"].as_str()),
        (Some("v1.4.0"), Some("shop"))
    );
    assert_eq!(http_get(&addr, "/version"), (200, "v1.4.0\n".to_owned()));
    assert_eq!(http_get(&addr, "/healthz").0, 200);
    assert_eq!(
        http_get(&addr, "/ready").0,
        503,
        "not ready during the first second"
    );
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(http_get(&addr, "/ready").0, 200);
}

#[test]
fn switches_fail_readiness_and_liveness() {
    let (_app, addr) = start(
        &[],
        &[
            ("EXAMPLE_FAIL_READINESS", "1"),
            ("EXAMPLE_FAIL_LIVENESS", "true"),
        ],
    );
    assert_eq!(http_get(&addr, "/ready").0, 503);
    assert_eq!(http_get(&addr, "/healthz").0, 500);
    assert_eq!(http_get(&addr, "/").0, 200, "it still serves");
}

#[test]
fn it_listens_on_the_port_the_engine_assigns() {
    let port = crate::support::free_port();
    let (_app, addr) = start(&[], &[("PORT", &port.to_string())]);
    assert_eq!(addr, format!("127.0.0.1:{port}"));
}

#[test]
fn crash_switches_exit_with_status_1() {
    let mut at_start = Running::start(&["example-app", "--crash-on-start"], &[]);
    assert_eq!(at_start.wait_exit(Duration::from_secs(10)), Some(1));
    let (mut later, addr) = start(&["--crash-after", "0.5"], &[]);
    assert_eq!(http_get(&addr, "/").0, 200, "serves until it crashes");
    assert_eq!(later.wait_exit(Duration::from_secs(10)), Some(1));
}

#[test]
fn sigterm_stops_it_cleanly() {
    let (mut app, _addr) = start(&[], &[]);
    let status = std::process::Command::new("kill")
        .args(["-TERM", &app.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(app.wait_exit(Duration::from_secs(10)), Some(0));
}
