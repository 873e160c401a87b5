//! Commit → the new version serving through the proxy, end to end: starts the real
//! `drover up` on a Git repository with one service of the demo app, then N times
//! commits a new `version:` and measures from the moment `git commit` returns to the
//! first answer through the proxy that reports the new version.
//!
//!   commit_to_serving DROVER_BINARY REPO_DIR [COMMITS]
//!
//! REPO_DIR must be a Git repository with a valid config repo whose
//! `environments/staging/web.yaml` says `version: v1`, routed at host `web.dev.localhost`
//! through the listener of cluster `local` (benches/commit_to_serving.sh makes one).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use drover_testkit::git::git;

/// The version the app reports through the proxy, if it answers.
fn version(proxy: &str) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(proxy).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(b"GET /version HTTP/1.1\r\nHost: web.dev.localhost\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    if !response.starts_with("HTTP/1.1 200") {
        return None;
    }
    Some(response.split("\r\n\r\n").nth(1)?.trim().to_owned())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (binary, repo) = (
        args.get(1).context("DROVER_BINARY")?,
        PathBuf::from(args.get(2).context("REPO_DIR")?),
    );
    let commits: usize = args.get(3).map_or(Ok(20), |n| n.parse())?;
    let state = std::env::temp_dir().join(format!("drover-bench-up-{}", std::process::id()));
    let (mut child, lines) = drover_bench::spawn_lines(
        Command::new(binary)
            .args(["up", repo.to_str().context("UTF-8 path")?, "--state-dir"])
            .arg(&state),
    )
    .context("starting drover up")?;
    let result = (|| {
        let proxy = loop {
            let line = lines.recv_timeout(Duration::from_secs(60))?;
            if let Some(addr) = line.strip_prefix("proxy local/http: http://") {
                break addr.to_owned();
            }
        };
        let serving = |wanted: &str, within: Duration| -> anyhow::Result<Duration> {
            let start = Instant::now();
            while start.elapsed() < within {
                if version(&proxy).as_deref() == Some(wanted) {
                    return Ok(start.elapsed());
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            bail!("{wanted} not served within {within:?}")
        };
        serving("v1", Duration::from_secs(60))?;
        let file = repo.join("environments/staging/web.yaml");
        let mut samples = Vec::with_capacity(commits);
        for i in 2..commits + 2 {
            let text = std::fs::read_to_string(&file)?;
            let text = text.replace(&format!("version: v{}", i - 1), &format!("version: v{i}"));
            std::fs::write(&file, text)?;
            git(&repo, &["commit", "-q", "-am", &format!("web v{i}")]);
            samples.push(serving(&format!("v{i}"), Duration::from_secs(30))?);
        }
        println!(
            "{}",
            drover_bench::report("commit -> new version serving", &mut samples)
        );
        anyhow::Ok(())
    })();
    drover_bench::stop_up(&mut child, &state);
    result
}
