//! The Git source against real repositories: local ones made with `git`, and bare
//! remotes served by a real `git daemon` on 127.0.0.1.

use std::time::{Duration, Instant};

use drover_source::{GitSource, Reference, RepoSpec, watch_refs};
use drover_testkit::git::{ServedExample, TestRepo, example_repo, git};

fn spec(location: &str) -> RepoSpec {
    RepoSpec {
        location: location.to_owned(),
        ..RepoSpec::default()
    }
}

#[test]
fn a_local_repo_is_read_at_any_revision_without_a_checkout() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, first) = TestRepo::with_example(&tmp.path().join("config"), "shop: first version");
    repo.edit(
        "environments/staging/web.yaml",
        "replicas: 2",
        "replicas: 5",
    );
    let second = repo.commit("web: scale to 5");
    // Uncommitted edits in the working tree are not part of any revision.
    repo.edit(
        "environments/staging/web.yaml",
        "replicas: 5",
        "replicas: 9",
    );

    let source =
        GitSource::open(spec(repo.dir.to_str().unwrap()), &tmp.path().join("cache")).unwrap();
    assert!(!source.is_remote());
    let tracked = source.tracked().unwrap();
    assert_eq!(tracked.id, second);
    assert_eq!(tracked.summary, "web: scale to 5");

    let replicas = |rev: &str| {
        let desired = source.desired_at(&source.resolve(rev).unwrap()).unwrap();
        assert!(
            desired.checked.is_valid(),
            "{:?}",
            desired.checked.diagnostics
        );
        let env = desired.checked.repo.environment("staging").unwrap().clone();
        env.services
            .iter()
            .find(|s| s.name() == "web")
            .unwrap()
            .spec()
            .replicas
    };
    assert_eq!(replicas(&first), Some(2));
    assert_eq!(replicas("main"), Some(5));
    assert_eq!(replicas("HEAD~1"), Some(2));
}

#[test]
fn an_invalid_revision_is_reported_with_file_line_and_column() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = TestRepo::init(&tmp.path().join("config"));
    repo.copy_from(&example_repo());
    repo.edit(
        "environments/staging/api.yaml",
        "readinessProbe:",
        "readinesProbe:",
    );
    repo.commit("typo");
    let source = GitSource::open(spec(repo.dir.to_str().unwrap()), tmp.path()).unwrap();
    let desired = source.desired_at(&source.tracked().unwrap()).unwrap();
    assert!(!desired.checked.is_valid());
    let first = &desired.checked.diagnostics[0];
    assert_eq!(
        first.location.to_string(),
        "environments/staging/api.yaml:22:3"
    );
    assert_eq!(
        first.hint.as_deref(),
        Some("did you mean `readinessProbe`?")
    );
}

#[test]
fn an_unknown_revision_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = TestRepo::init(&tmp.path().join("config"));
    repo.commit("empty");
    let source = GitSource::open(spec(repo.dir.to_str().unwrap()), tmp.path()).unwrap();
    let error = source.resolve("no-such-branch").unwrap_err().to_string();
    assert!(
        error.contains("`no-such-branch` is not a commit"),
        "{error}"
    );
}

#[test]
fn tags_and_commits_can_be_pinned() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = TestRepo::init(&tmp.path().join("config"));
    let first = repo.commit("one");
    git(&repo.dir, &["tag", "v1"]);
    repo.commit("two");
    let pinned = |reference| {
        let spec = RepoSpec {
            location: repo.dir.to_str().unwrap().to_owned(),
            reference,
            ..RepoSpec::default()
        };
        GitSource::open(spec, tmp.path())
            .unwrap()
            .tracked()
            .unwrap()
            .id
    };
    assert_eq!(pinned(Reference::Tag("v1".into())), first);
    assert_eq!(pinned(Reference::Commit(first[..8].to_owned())), first);
}

#[test]
fn a_commit_in_a_watched_repo_is_noticed_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = TestRepo::init(&tmp.path().join("config"));
    repo.commit("one");
    let source = GitSource::open(spec(repo.dir.to_str().unwrap()), tmp.path()).unwrap();
    let watch = watch_refs(source.git_dir()).unwrap();
    assert!(
        !watch.wait(Duration::from_millis(200)),
        "nothing happened yet"
    );
    let committed = Instant::now();
    let second = repo.commit("two");
    assert!(
        watch.wait(Duration::from_secs(5)),
        "the commit was not noticed"
    );
    assert_eq!(source.tracked().unwrap().id, second);
    // The whole commit (several file events) counts as one change.
    assert!(!watch.wait(Duration::from_millis(200)));
    assert!(committed.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_remote_served_by_git_daemon_is_mirrored_and_fetched() {
    let tmp = tempfile::tempdir().unwrap();
    let served = ServedExample::new(tmp.path());
    let (work, first) = (&served.work, served.first.clone());

    let cache = tmp.path().join("cache");
    let source = GitSource::open(spec(&served.url()), &cache).unwrap();
    assert!(source.is_remote());
    source.fetch().unwrap();
    assert_eq!(source.tracked().unwrap().id, first);
    assert!(
        source
            .desired_at(&source.tracked().unwrap())
            .unwrap()
            .checked
            .is_valid()
    );

    work.edit("environments/production/api.yaml", "v2.1.0", "v2.2.0");
    let second = work.commit("api v2.2.0");
    served.push();
    assert_eq!(
        source.tracked().unwrap().id,
        first,
        "nothing changes before a fetch"
    );
    source.fetch().unwrap();
    assert_eq!(source.tracked().unwrap().id, second);

    // Reopening finds the same mirror.
    let again = GitSource::open(spec(&served.url()), &cache).unwrap();
    assert_eq!(again.tracked().unwrap().id, second);
}

#[test]
fn file_urls_are_mirrored_like_any_remote() {
    let tmp = tempfile::tempdir().unwrap();
    let work = TestRepo::init(&tmp.path().join("work"));
    let id = work.commit("one");
    let url = format!("file://{}", work.dir.display());
    let source = GitSource::open(spec(&url), &tmp.path().join("cache")).unwrap();
    source.fetch().unwrap();
    assert_eq!(source.tracked().unwrap().id, id);
}

#[test]
fn an_unreachable_remote_fails_to_fetch_without_showing_credentials() {
    let tmp = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://bot:hunter2@127.0.0.1:{port}/config.git");
    let source = GitSource::open(spec(&url), tmp.path()).unwrap();
    let error = source.fetch().unwrap_err().to_string();
    assert!(!error.contains("hunter2"), "{error}");
    assert!(
        error.contains(&format!("http://127.0.0.1:{port}/config.git")),
        "{error}"
    );
    assert!(!format!("{source:?}").contains("hunter2"));
}

#[test]
fn an_invalid_revision_is_rejected_and_the_last_valid_one_stays_in_force() {
    use drover_source::{Follower, Update};
    let tmp = tempfile::tempdir().unwrap();
    let (repo, good) = TestRepo::with_example(&tmp.path().join("config"), "good");
    let mut follower =
        Follower::new(GitSource::open(spec(repo.dir.to_str().unwrap()), tmp.path()).unwrap());
    assert!(
        matches!(follower.check().unwrap(), Some(Update::Accepted(d)) if d.revision.id == good)
    );
    assert!(
        follower.check().unwrap().is_none(),
        "same commit, nothing new"
    );

    repo.edit(
        "environments/staging/web.yaml",
        "replicas: 2",
        "replicas: two",
    );
    let bad = repo.commit("bad");
    match follower.check().unwrap() {
        Some(Update::Rejected {
            revision,
            diagnostics,
            in_force,
        }) => {
            assert_eq!(revision.id, bad);
            assert_eq!(in_force.unwrap().id, good);
            assert_eq!(
                diagnostics[0].location.to_string(),
                "environments/staging/web.yaml:12:13"
            );
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(follower.in_force().unwrap().id, good);
    assert!(
        follower.check().unwrap().is_none(),
        "a rejected commit is reported once"
    );

    repo.edit(
        "environments/staging/web.yaml",
        "replicas: two",
        "replicas: 3",
    );
    let fixed = repo.commit("fixed");
    assert!(
        matches!(follower.check().unwrap(), Some(Update::Accepted(d)) if d.revision.id == fixed)
    );
}

#[test]
fn a_commit_is_found_by_its_write_token_and_only_by_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, _) = TestRepo::with_example(&tmp.path().join("config"), "shop: first version");
    let source =
        GitSource::open(spec(repo.dir.to_str().unwrap()), &tmp.path().join("cache")).unwrap();
    let file = "environments/staging/web.yaml";
    let text = std::fs::read_to_string(repo.dir.join(file)).unwrap();
    let message = format!(
        "Deploy to staging\n\n{}\n",
        drover_source::trailer("0f1e2d3c")
    );
    let commit = source
        .commit_files(
            &[(file.to_owned(), text.replace("replicas: 2", "replicas: 3"))],
            &message,
            ("Drover", "drover@localhost"),
            None,
        )
        .unwrap();
    git(
        &repo.dir,
        &["commit", "-q", "--allow-empty", "-m", "later work"],
    );
    assert_eq!(source.find_written("0f1e2d3c").unwrap(), Some(commit));
    assert_eq!(source.find_written("0f1e2d3").unwrap(), None);
}

#[test]
fn a_lock_a_dead_write_left_is_recovered_and_a_live_one_is_waited_for() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, _) = TestRepo::with_example(&tmp.path().join("config"), "shop: first version");
    // Left by a process that died before this one opened the repository.
    let lock = repo.dir.join(".git/refs/heads/main.lock");
    std::fs::write(&lock, "").unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(&lock)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let source =
        GitSource::open(spec(repo.dir.to_str().unwrap()), &tmp.path().join("cache")).unwrap();
    let file = "environments/staging/web.yaml";
    let text = std::fs::read_to_string(repo.dir.join(file)).unwrap();
    let write = |to: &str| {
        source.commit_files(
            &[(file.to_owned(), text.replace("replicas: 2", to))],
            "scale",
            ("Drover", "drover@localhost"),
            None,
        )
    };
    let first = write("replicas: 3").unwrap();
    assert!(!lock.exists(), "the stale lock is gone");
    assert_eq!(git(&repo.dir, &["rev-parse", "main"]).trim(), first);
    // A lock taken now belongs to a live git: waited for, never removed.
    std::fs::write(&lock, "").unwrap();
    let held = lock.clone();
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        std::fs::remove_file(held).unwrap();
    });
    let started = Instant::now();
    let second = write("replicas: 4").unwrap();
    releaser.join().unwrap();
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(git(&repo.dir, &["rev-parse", "main"]).trim(), second);
}
