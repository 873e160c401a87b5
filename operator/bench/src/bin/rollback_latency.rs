//! From the health check that makes an instance fail beyond its threshold to the start
//! of the rollback of its release: starts the real `drover up` on a Git repository
//! (three `drover example-app` instances, start-first updates, `monitor: 1s`), then N
//! times commits a version whose readiness always fails and reads two events from the
//! API: `InstanceFailing` (stamped by the agent when the probe crossed its threshold)
//! and `RollingBack` (stamped by the control plane). Drover reverts each bad commit in
//! Git; the next round commits on top of the revert.
//!
//!   rollback_latency DROVER_BINARY REPO_DIR [ROUNDS]
//!
//! REPO_DIR: a Git working copy of tests/fixtures/platform (benches/rollback.sh).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use drover_testkit::git::git;

fn get(api: &str, token: &str, path: &str) -> anyhow::Result<serde_json::Value> {
    let mut stream = std::net::TcpStream::connect(api)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {api}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let body = response.split("\r\n\r\n").nth(1).context("no body")?;
    Ok(serde_json::from_str(body)?)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (binary, repo) = (
        args.get(1).context("DROVER_BINARY")?,
        PathBuf::from(args.get(2).context("REPO_DIR")?),
    );
    let rounds: usize = args.get(3).map_or(Ok(5), |n| n.parse())?;
    let file = repo.join("environments/staging/web.yaml");
    let text = std::fs::read_to_string(&file)?.replace(
        "  replicas: 1\n",
        "  replicas: 3\n  update: {parallelism: 1, order: start-first, monitor: 1s}\n  rollback: {parallelism: 0, order: start-first, monitor: 1s}\n",
    );
    std::fs::write(&file, text)?;
    git(&repo, &["commit", "-q", "-am", "three instances"]);
    let state = std::env::temp_dir().join(format!("drover-bench-rollback-{}", std::process::id()));
    let (mut child, lines) = drover_bench::spawn_lines(
        Command::new(binary)
            .args(["up", repo.to_str().context("UTF-8 path")?, "--state-dir"])
            .arg(&state),
    )
    .context("starting drover up")?;
    let result = (|| {
        let wait_for = |what: &dyn Fn(&str) -> bool| -> anyhow::Result<String> {
            loop {
                let line = lines.recv_timeout(Duration::from_secs(60))?;
                if what(&line) {
                    return Ok(line);
                }
            }
        };
        let api = wait_for(&|l| l.starts_with("api: "))?;
        let api = api
            .trim_start_matches("api: http://")
            .split(' ')
            .next()
            .context("api address")?
            .to_owned();
        wait_for(&|l| l.starts_with("staging: release ") && l.ends_with(" is healthy"))?;
        let mut samples = Vec::new();
        for round in 0..rounds {
            let text = std::fs::read_to_string(&file)?;
            let bad = text.replace(
                "  replicas: 3\n",
                &format!(
                    "  replicas: 3\n  env: {{EXAMPLE_FAIL_READINESS: \"1\", ROUND: \"{round}\"}}\n"
                ),
            );
            std::fs::write(&file, bad)?;
            git(
                &repo,
                &["commit", "-q", "-am", &format!("bad release {round}")],
            );
            wait_for(&|l| l.contains(" reverted in Git by "))?;
            let token = std::fs::read_to_string(state.join("api-token"))?;
            let events = get(&api, token.trim(), "/api/v1/events?limit=100")?;
            let events = events.as_array().context("events")?;
            let at = |reason: &str| {
                events
                    .iter()
                    .find(|e| e["reason"] == reason)
                    .and_then(|e| e["at_ms"].as_i64())
            };
            let (Some(failing), Some(rollback)) = (at("InstanceFailing"), at("RollingBack")) else {
                bail!("events missing: {events:?}");
            };
            samples.push(Duration::from_millis((rollback - failing).max(0) as u64));
            // The revert is in the working copy now; let the environment settle on it.
            wait_for(&|l| l.starts_with("staging: release ") && l.ends_with(" is healthy"))?;
        }
        println!(
            "{}",
            drover_bench::report(
                "failing beyond the threshold -> rollback starts",
                &mut samples
            )
        );
        anyhow::Ok(())
    })();
    drover_bench::stop_up(&mut child, &state);
    result
}
