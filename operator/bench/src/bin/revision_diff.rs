//! A new revision arrives while the previous one is loaded — the reconciler's case:
//! time to read and validate the new revision (parsing only changed files) and diff
//! it against the previous one. Also times the cold load of the first revision.
//!
//!   revision_diff REPO_DIR OLD_REV NEW_REV [RUNS]

use std::time::{Duration, Instant};

use anyhow::Context;
use drover_load::DocumentCache;
use drover_source::{GitSource, RepoSpec};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let location = args.get(1).context("REPO_DIR")?.clone();
    let (old, new) = (
        args.get(2).context("OLD_REV")?,
        args.get(3).context("NEW_REV")?,
    );
    let runs: usize = args.get(4).map_or(Ok(10), |n| n.parse())?;
    let source = GitSource::open(
        RepoSpec {
            location,
            ..RepoSpec::default()
        },
        &std::env::temp_dir(),
    )?;
    let (old, new) = (source.resolve(old)?, source.resolve(new)?);
    let (mut cold, mut warm) = (Vec::<Duration>::new(), Vec::<Duration>::new());
    let mut changes = 0;
    for _ in 0..runs {
        let mut cache = DocumentCache::default();
        let started = Instant::now();
        let before = source.desired_at_cached(&old, &mut cache)?;
        cold.push(started.elapsed());
        let started = Instant::now();
        let after = source.desired_at_cached(&new, &mut cache)?;
        let set = drover_diff::diff_repos(
            &before.checked.repo,
            &after.checked.repo,
            drover_diff::Options::default(),
        );
        warm.push(started.elapsed());
        anyhow::ensure!(
            before.checked.is_valid() && after.checked.is_valid(),
            "both revisions must be valid"
        );
        changes = set.changes.len();
    }
    println!(
        "{}",
        drover_bench::report("first revision, cold (read + parse + validate)", &mut cold)
    );
    println!(
        "{}",
        drover_bench::report(
            &format!("next revision + diff ({changes} objects changed)"),
            &mut warm
        )
    );
    Ok(())
}
