//! `drover watch`: new commits become new desired states — from a watched local repo,
//! and from a remote served by `git daemon` when a signed webhook announces a push.

use std::time::Duration;

use drover_source::webhook::sign;
use drover_testkit::git::{ServedExample, TestRepo};

use crate::support::{Running, http_post};

const SECRET: &str = "webhook-shared-secret";

fn accepted(short: &str) -> impl Fn(&str) -> bool + '_ {
    move |l| l.starts_with(&format!("revision {short} accepted"))
}

#[test]
fn a_commit_in_a_watched_local_repo_produces_the_new_desired_state() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, first) = TestRepo::with_example(&tmp.path().join("config"), "first");
    let state = tmp.path().join("state");
    let watch = Running::start(
        &["watch", repo.dir.to_str().unwrap()],
        &[("DROVER_STATE_DIR", state.to_str().unwrap())],
    );
    watch.expect_line(Duration::from_secs(20), accepted(&first[..7]));

    repo.edit(
        "environments/staging/web.yaml",
        "replicas: 2",
        "replicas: 3",
    );
    let second = repo.commit("web: 3 replicas");
    let line = watch.expect_line(Duration::from_secs(5), accepted(&second[..7]));
    assert!(
        line.ends_with("web: 3 replicas (6 services in 2 environments; 0 errors, 0 warnings)"),
        "{line}"
    );

    repo.edit(
        "environments/staging/web.yaml",
        "replicas: 3",
        "replicas: three",
    );
    let bad = repo.commit("typo");
    let line = watch.expect_line(Duration::from_secs(5), |l| {
        l.starts_with(&format!("revision {} rejected", &bad[..7]))
    });
    assert!(
        line.ends_with(&format!("{} stays in force", &second[..7])),
        "{line}"
    );
    watch.expect_line(Duration::from_secs(5), |l| {
        l.contains("environments/staging/web.yaml:12:13: error[E004]")
    });
}

#[test]
fn a_push_to_a_remote_plus_a_signed_webhook_produces_the_new_desired_state() {
    let tmp = tempfile::tempdir().unwrap();
    let served = ServedExample::new(tmp.path());
    let (work, first) = (&served.work, served.first.clone());

    let state = tmp.path().join("state");
    let watch = Running::start(
        // Polling once an hour: only the webhook can make this test see the push.
        &["watch", &served.url(), "--poll", "1h"],
        &[
            ("DROVER_STATE_DIR", state.to_str().unwrap()),
            ("DROVER_WEBHOOK_SECRET", SECRET),
        ],
    );
    let address = watch.expect_line(Duration::from_secs(20), |l| {
        l.starts_with("webhook: POST http://")
    });
    let address = address
        .trim_start_matches("webhook: POST http://")
        .trim_end_matches("/api/v1/webhooks/git")
        .to_owned();
    watch.expect_line(Duration::from_secs(20), accepted(&first[..7]));

    work.edit("environments/production/api.yaml", "v2.1.0", "v2.2.0");
    let second = work.commit("api v2.2.0");
    served.push();
    let body = br#"{"ref":"refs/heads/main","after":"0000000"}"#;

    // Unsigned, and signed with the wrong secret: refused, and nothing happens.
    let (status, text) = http_post(
        &address,
        "/api/v1/webhooks/git",
        &[("X-GitHub-Event", "push")],
        body,
    );
    assert_eq!(status, 401, "{text}");
    let forged = format!("sha256={}", sign(b"not-the-secret", body));
    let (status, _) = http_post(
        &address,
        "/api/v1/webhooks/git",
        &[("X-Hub-Signature-256", &forged)],
        body,
    );
    assert_eq!(status, 401);
    watch.expect_quiet(Duration::from_millis(1500), |l| l.starts_with("revision"));

    // Signed: accepted, fetched, and the new revision becomes the desired state.
    let signature = format!("sha256={}", sign(SECRET.as_bytes(), body));
    let (status, text) = http_post(
        &address,
        "/api/v1/webhooks/git",
        &[("X-Hub-Signature-256", &signature)],
        body,
    );
    assert_eq!(status, 202, "{text}");
    assert!(text.contains("\"provider\":\"github\""), "{text}");
    watch.expect_line(Duration::from_secs(10), accepted(&second[..7]));

    // GitLab's token and Gitea's signature work the same way; a burst of pushes
    // coalesces into fetches that report the newest commit once.
    work.edit("environments/production/api.yaml", "v2.2.0", "v2.3.0");
    let third = work.commit("api v2.3.0");
    served.push();
    let (status, _) = http_post(
        &address,
        "/api/v1/webhooks/git",
        &[("X-Gitlab-Token", SECRET)],
        body,
    );
    assert_eq!(status, 202);
    let gitea = sign(SECRET.as_bytes(), body);
    let (status, _) = http_post(
        &address,
        "/api/v1/webhooks/git",
        &[("X-Gitea-Signature", &gitea)],
        body,
    );
    assert_eq!(status, 202);
    watch.expect_line(Duration::from_secs(10), accepted(&third[..7]));
    watch.expect_quiet(Duration::from_millis(500), |l| l.starts_with("revision"));
}
