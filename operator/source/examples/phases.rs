//! Ad-hoc timing of the Git source's phases on a repo (benchmarks of record: benches/).
use std::time::Instant;

use drover_load::DocumentCache;
use drover_source::{GitSource, RepoSpec};

fn main() {
    let location = std::env::args().nth(1).expect("usage: phases REPO");
    let spec = RepoSpec {
        location,
        ..RepoSpec::default()
    };
    let source = GitSource::open(spec, &std::env::temp_dir()).unwrap();
    let (old, new) = (
        source.resolve("HEAD~1").unwrap(),
        source.resolve("HEAD").unwrap(),
    );
    let t = Instant::now();
    let files = source.files_at(&old).unwrap();
    println!("files_at: {:?} ({} files)", t.elapsed(), files.len());
    let mut cache = DocumentCache::default();
    let t = Instant::now();
    let a = drover_validate::check_cached(&files, &mut cache);
    println!("cold check: {:?}", t.elapsed());
    let t = Instant::now();
    let files = source.files_at(&new).unwrap();
    let b = drover_validate::check_cached(&files, &mut cache);
    println!("warm files_at + check: {:?}", t.elapsed());
    let t = Instant::now();
    let set = drover_diff::diff_repos(&a.repo, &b.repo, drover_diff::Options::default());
    println!(
        "diff_repos: {:?} ({} changes)",
        t.elapsed(),
        set.changes.len()
    );
}
