//! Policies end to end: the follower rejects a commit that breaks a shipped policy,
//! naming the rule's message and place, and what ran keeps running.

use std::time::Duration;

use crate::platform::Platform;

#[test]
fn a_commit_breaking_a_shipped_policy_is_rejected_with_the_rule_and_its_place() {
    let platform = Platform::start();
    platform.wait_for(Duration::from_secs(20), "web ready", |s| {
        Platform::ready(s, "web", 1)
    });
    platform.repo.edit(
        "environments/staging/web.yaml",
        "  version: v1\n",
        "  version: v1\n  image: ghcr.io/example/web:latest\n",
    );
    platform.commit("web from the latest image");
    let up = platform.up.as_ref().unwrap();
    let rejected = up.expect_line(Duration::from_secs(20), |l| l.contains("rejected"));
    assert!(rejected.contains("stays in force"), "{rejected}");
    let why = up.expect_line(Duration::from_secs(5), |l| l.contains("error[E133]"));
    assert!(why.contains("environments/staging/web.yaml:7:3"), "{why}");
    // The environment says so, and what ran keeps running.
    let status = platform.status();
    let message = status["environments"][0]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message
            .contains("first: environments/staging/web.yaml:7:3: E133 service web: pins its image"),
        "{status:#}"
    );
    assert_eq!(platform.get_json("web.dev.localhost", "/")["version"], "v1");
}
