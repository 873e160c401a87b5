//! Commit → new desired state, end to end: starts the real `drover watch` on a Git
//! repository, commits a one-line change N times, and measures from the moment
//! `git commit` returns (the ref has moved) to the moment `drover watch` prints the
//! accepted revision.
//!
//!   watch_latency DROVER_BINARY REPO_DIR [COMMITS]
//!
//! REPO_DIR must be a Git repository on branch `main` with a valid config repo; the
//! program edits the first service file it finds under environments/.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use drover_testkit::git::git;

fn first_service_file(dir: &Path) -> anyhow::Result<PathBuf> {
    let mut stack = vec![dir.join("environments")];
    let mut found = Vec::new();
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read_to_string(&path)?.contains("kind: Service") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
        .into_iter()
        .next()
        .context("no service file under environments/")
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (binary, repo) = (
        args.get(1).context("DROVER_BINARY")?,
        PathBuf::from(args.get(2).context("REPO_DIR")?),
    );
    let commits: usize = args.get(3).map_or(Ok(20), |n| n.parse())?;
    let file = first_service_file(&repo)?;
    let state = std::env::temp_dir().join(format!("drover-bench-{}", std::process::id()));
    let (mut child, lines) = drover_bench::spawn_lines(
        Command::new(binary)
            .args(["watch", repo.to_str().context("UTF-8 path")?])
            .env("DROVER_STATE_DIR", &state),
    )
    .context("starting drover watch")?;
    let wait_for = |prefix: &str| -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline
                .checked_duration_since(Instant::now())
                .context("timed out")?;
            let line = lines.recv_timeout(left)?;
            if line.starts_with(prefix) {
                return Ok(());
            }
            if line.contains(" rejected: ") {
                bail!("revision rejected: {line}");
            }
        }
    };
    let head = git(&repo, &["rev-parse", "--short=7", "HEAD"]);
    wait_for(&format!("revision {head} accepted"))?;

    let mut samples = Vec::with_capacity(commits);
    let original = std::fs::read_to_string(&file)?;
    for i in 0..commits {
        std::fs::write(&file, format!("{original}# bench edit {i}\n"))?;
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-q", "-m", &format!("bench {i}")]);
        let moved = Instant::now();
        let head = git(&repo, &["rev-parse", "--short=7", "HEAD"]);
        wait_for(&format!("revision {head} accepted"))?;
        samples.push(moved.elapsed());
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&state);
    println!(
        "{}",
        drover_bench::report("commit -> new desired state (drover watch)", &mut samples)
    );
    Ok(())
}
