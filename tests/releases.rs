//! Rolling updates and releases through a real `drover up`: updates under load,
//! failed releases rolled back as a whole and reverted in Git, superseding, manual
//! rollbacks, redeploys, and releases and reverts across a control-plane crash.

use std::time::Duration;

use serde_json::Value;

use crate::platform::{Load, Platform};
use crate::up::pids;

const SOON: Duration = Duration::from_secs(20);
const HOST: &str = "web.dev.localhost";

#[test]
fn a_start_first_rolling_update_under_load_fails_no_request() {
    let platform = Platform::start();
    platform.wait_for(SOON, "web ready", |s| Platform::ready(s, "web", 1));
    platform.repo.edit(
        "environments/staging/web.yaml",
        "  replicas: 1\n",
        "  replicas: 3\n  update: {parallelism: 1, order: start-first, monitor: 1s}\n",
    );
    platform.repo.commit("web: 3 replicas, start-first updates");
    platform.wait_for(SOON, "3 web ready", |s| Platform::ready(s, "web", 3));

    let load = Load::start(&platform);
    std::thread::sleep(Duration::from_millis(300));
    platform.repo.edit(
        "environments/staging/web.yaml",
        "version: v1",
        "version: v2",
    );
    platform.repo.commit("web v2");
    platform.wait_for(Duration::from_secs(40), "every instance on v2", |s| {
        Platform::ready(s, "web", 3)
            && s["services"][0]["state"] == "Running"
            && s["services"][0]["version"] == "v2"
    });
    std::thread::sleep(Duration::from_millis(300));
    let seen = load.finish();
    let failures: Vec<&String> = seen.iter().filter(|a| !a.starts_with("200 ")).collect();
    assert_eq!(
        failures,
        Vec::<&String>::new(),
        "no request fails during the update"
    );
    let answers: Vec<String> = seen
        .iter()
        .map(|a| a.trim_start_matches("200 ").to_owned())
        .collect();

    assert!(answers.iter().any(|v| v == "v1") && answers.last().map(String::as_str) == Some("v2"));
    let status = platform.status();
    assert!(
        Platform::instances(&status, "web")
            .iter()
            .all(|i| i["current"] == true)
    );
}

#[test]
fn a_release_failing_readiness_rolls_back_as_a_whole_and_is_not_applied_again() {
    let mut platform = Platform::start_remote();
    let good = three_webs(&mut platform);

    let load = Load::start(&platform);
    let bad = release_v2(
        &platform,
        3,
        "EXAMPLE_FAIL_READINESS",
        "1",
        "web v2, which never becomes ready",
    );
    let up = platform.up.as_mut().unwrap();
    let line = up.expect_line(Duration::from_secs(40), |l| {
        l.starts_with(&format!("staging: release {} failed", &bad[..7]))
    });
    assert!(line.ends_with("; rolling back"), "{line}");
    assert!(line.contains("readiness GET /ready returned 503"), "{line}");
    // The rollback becomes healthy and the revert is written, in either order.
    let (healthy, reverted) = (
        format!(
            "staging: rollback of release {} is healthy: back at what ran before",
            &bad[..7]
        ),
        format!("staging: revision {} reverted in Git by ", &bad[..7]),
    );
    let mut line = String::new();
    let mut seen_healthy = false;
    while !seen_healthy || line.is_empty() {
        let next = up.expect_line(SOON, |l| l == healthy || l.starts_with(&reverted));
        if next == healthy {
            seen_healthy = true;
        } else {
            line = next;
        }
    }
    let revert = line.rsplit(' ').next().unwrap().to_owned();
    let bare = platform.remote.clone().unwrap();
    let subject = drover_testkit::git::git(&bare, &["log", "-1", "--format=%s", "main"]);
    assert_eq!(
        subject.trim(),
        "Revert \"web v2, which never becomes ready\""
    );
    let body = drover_testkit::git::git(&bare, &["log", "-1", "--format=%b", "main"]);
    assert!(body.contains("readiness GET /ready returned 503"), "{body}");
    assert!(body.contains("Drover-Release: staging#"), "{body}");
    let status = platform.wait_for(SOON, "synced at the revert", |s| {
        s["environments"][0]["sync"] == "Synced"
            && s["environments"][0]["revision"] == revert.as_str()
            && Platform::ready(s, "web", 3)
    });
    assert_eq!(status["services"][0]["version"], "v1");
    let _ = good;
    let seen = load.finish();
    assert!(!seen.is_empty());
    let bad_answers: Vec<&String> = seen.iter().filter(|s| *s != "200 v1").collect();
    assert_eq!(
        bad_answers,
        Vec::<&String>::new(),
        "v1 served throughout, no error"
    );

    let history: Value =
        serde_json::from_str(&platform.drover(&["history", "staging", "-o", "json"])).unwrap();
    let results: Vec<(&str, &str)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["trigger"].as_str().unwrap(),
                r["result"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        results[..3],
        [
            ("rollback", "healthy"),
            ("git", "rolled-back"),
            ("git", "healthy")
        ]
    );
    assert!(
        history[1]["reason"].as_str().unwrap().contains("readiness"),
        "{history}"
    );
}

/// Commits web v2 (with `replicas` replicas) with one switch of the demo app set, such
/// as `EXAMPLE_FAIL_READINESS=1`; returns the commit.
pub(crate) fn release_v2(
    platform: &Platform,
    replicas: u32,
    switch: &str,
    value: &str,
    message: &str,
) -> String {
    platform.commit_web_v2(
        replicas,
        &format!("  env: {{{switch}: \"{value}\"}}\n"),
        message,
    )
}

/// Three web instances updated start-first, with a fast rollback; waits until the
/// release that set them up is healthy.
/// Waits for web, writes `with` in place of its `replicas: 1` line, commits, and waits
/// for that release to be healthy; the commit.
pub(crate) fn reshape_web(platform: &mut Platform, with: &str, message: &str) -> String {
    platform.wait_for(SOON, "web ready", |s| Platform::ready(s, "web", 1));
    platform
        .repo
        .edit("environments/staging/web.yaml", "  replicas: 1\n", with);
    let commit = platform.commit(message);
    platform.up.as_mut().unwrap().expect_line(SOON, |l| {
        l == format!("staging: release {} is healthy", &commit[..7])
    });
    commit
}

/// Three webs, updated and rolled back one at a time, start-first.
pub(crate) fn three_webs(platform: &mut Platform) -> String {
    reshape_web(
        platform,
        "  replicas: 3\n  update: {parallelism: 1, order: start-first, monitor: 1s}\n  rollback: {parallelism: 0, order: start-first, monitor: 1s}\n",
        "web: 3 replicas",
    )
}

#[test]
fn a_crash_looping_release_rolls_back_and_the_old_version_serves_throughout() {
    let mut platform = Platform::start();
    three_webs(&mut platform);
    let load = Load::start(&platform);
    let bad = release_v2(
        &platform,
        3,
        "EXAMPLE_CRASH_AFTER",
        "0.3",
        "web v2, which crashes",
    );
    let line = platform
        .up
        .as_mut()
        .unwrap()
        .expect_line(Duration::from_secs(40), |l| {
            l.starts_with(&format!("staging: release {} failed", &bad[..7]))
        });
    assert!(
        line.contains("update stopped: 1 of 3 instances failed"),
        "{line}"
    );
    platform.wait_for(SOON, "back on v1, reverted in Git", |s| {
        s["environments"][0]["sync"] == "Synced"
            && s["environments"][0]["revision"] != bad[..7]
            && Platform::ready(s, "web", 3)
    });
    assert_eq!(platform.get_json(HOST, "/")["version"], "v1");
    let seen = load.finish();
    let bad_answers: Vec<&String> = seen.iter().filter(|a| *a != "200 v1").collect();
    assert_eq!(
        bad_answers,
        Vec::<&String>::new(),
        "v1 served throughout, no error"
    );
    let log = drover_testkit::git::git(&platform.repo.dir, &["log", "-1", "--format=%s"]);
    assert_eq!(log.trim(), "Revert \"web v2, which crashes\"");
    // The working copy follows the revert: nothing is left modified.
    let changes = drover_testkit::git::git(&platform.repo.dir, &["status", "--porcelain"]);
    assert_eq!(changes, "");
}

#[test]
fn a_two_service_release_where_only_the_second_fails_rolls_back_both() {
    let mut platform = Platform::start();
    let web =
        std::fs::read_to_string(platform.repo.dir.join("environments/staging/web.yaml")).unwrap();
    let api = web
        .replace("name: web", "name: api")
        .replace("--message, web", "--message, api")
        .replace("web.dev.localhost", "api.dev.localhost")
        .replace("  replicas: 1\n", "  replicas: 1\n  dependsOn: [web]\n");
    platform.repo.write("environments/staging/api.yaml", &api);
    platform.commit("api, after web");
    three_webs(&mut platform);
    platform
        .repo
        .edit(
            "environments/staging/web.yaml",
            "version: v1",
            "version: v2",
        )
        .edit(
            "environments/staging/api.yaml",
            "version: v1",
            "version: v2",
        )
        .edit(
            "environments/staging/api.yaml",
            "  replicas: 1\n",
            "  replicas: 1\n  env: {EXAMPLE_FAIL_READINESS: \"1\"}\n",
        );
    let bad = platform.commit("web and api v2; api never ready");
    let seen = std::cell::RefCell::new(Vec::new());
    let line = platform
        .up
        .as_mut()
        .unwrap()
        .expect_line(Duration::from_secs(40), |l| {
            seen.borrow_mut().push(l.to_owned());
            l.starts_with(&format!("staging: release {} failed", &bad[..7]))
        });
    // api depends on web: its update starts only once web's is done.
    let seen = seen.into_inner();
    let web_done = (1..=3)
        .map(|n| {
            seen.iter()
                .rposition(|l| l.starts_with(&format!("instance staging.web.{n} ready")))
        })
        .collect::<Option<Vec<usize>>>()
        .expect("every web instance became ready on v2");
    let api_started = seen
        .iter()
        .position(|l| l.starts_with("instance staging.api.1 on"))
        .expect("api's update started");
    assert!(web_done.iter().all(|w| *w < api_started), "{seen:#?}");
    assert!(
        line.starts_with(&format!("staging: release {} failed — api: ", &bad[..7])),
        "{line}"
    );
    let status = platform.wait_for(SOON, "both back on v1", |s| {
        s["environments"][0]["sync"] == "Synced"
            && Platform::ready(s, "web", 3)
            && Platform::ready(s, "api", 1)
            && s["services"]
                .as_array()
                .unwrap()
                .iter()
                .all(|v| v["version"] == "v1" && v["state"] == "Running")
    });
    assert_eq!(status["services"].as_array().unwrap().len(), 2);
    assert_eq!(platform.get_json(HOST, "/")["version"], "v1");
}

#[test]
fn a_newer_commit_supersedes_a_release_in_progress() {
    let mut platform = Platform::start();
    three_webs(&mut platform);
    // v2 takes its time: readiness is not even checked for 20 s.
    platform
        .repo
        .edit(
            "environments/staging/web.yaml",
            "version: v1",
            "version: v2",
        )
        .edit(
            "environments/staging/web.yaml",
            "periodSeconds: 1",
            "periodSeconds: 1\n    initialDelaySeconds: 20",
        );
    let slow = platform.commit("web v2, slow to get ready");
    std::thread::sleep(Duration::from_millis(500));
    platform
        .repo
        .edit(
            "environments/staging/web.yaml",
            "version: v2",
            "version: v3",
        )
        .edit(
            "environments/staging/web.yaml",
            "periodSeconds: 1\n    initialDelaySeconds: 20",
            "periodSeconds: 1",
        );
    let fast = platform.commit("web v3");
    platform
        .up
        .as_mut()
        .unwrap()
        .expect_line(Duration::from_secs(15), |l| {
            l == format!("staging: release {} is healthy", &fast[..7])
        });
    assert_eq!(platform.get_json(HOST, "/")["version"], "v3");
    let history: Value =
        serde_json::from_str(&platform.drover(&["history", "staging", "-o", "json"])).unwrap();
    assert_eq!(history[0]["result"], "healthy");
    assert_eq!(history[1]["revision"], slow.as_str());
    assert_eq!(history[1]["result"], "superseded");
}

#[test]
fn a_control_plane_killed_mid_release_finishes_judging_it_after_a_restart() {
    let mut platform = Platform::start();
    three_webs(&mut platform);
    let bad = release_v2(
        &platform,
        3,
        "EXAMPLE_FAIL_READINESS",
        "1",
        "web v2, which never becomes ready",
    );
    platform.up.as_mut().unwrap().expect_line(SOON, |l| {
        l.starts_with(&format!("staging: revision {} applied", &bad[..7]))
    });
    platform.kill_up();
    platform.start_up();
    platform
        .up
        .as_mut()
        .unwrap()
        .expect_line(Duration::from_secs(40), |l| {
            l.starts_with(&format!("staging: release {} failed", &bad[..7]))
        });
    platform.wait_for(SOON, "rolled back and reverted", |s| {
        s["environments"][0]["sync"] == "Synced"
            && s["environments"][0]["revision"] != bad[..7]
            && Platform::ready(s, "web", 3)
    });
    assert_eq!(platform.get_json(HOST, "/")["version"], "v1");
    let history: Value =
        serde_json::from_str(&platform.drover(&["history", "staging", "-o", "json"])).unwrap();
    assert_eq!(history[1]["result"], "rolled-back", "{history}");
}

#[test]
fn redeploy_replaces_every_instance_with_the_same_spec() {
    let mut platform = Platform::start();
    three_webs(&mut platform);
    let before = pids(&platform.status(), "web");
    let said = platform.drover(&["redeploy", "web"]);
    assert!(
        said.starts_with("staging/web redeployed (generation 1)"),
        "{said}"
    );
    let after = platform.wait_for(SOON, "three new instances", |s| {
        Platform::ready(s, "web", 3)
            && s["services"][0]["state"] == "Running"
            && pids(s, "web").is_disjoint(&before)
    });
    assert_eq!(after["services"][0]["version"], "v1");
}

#[test]
fn a_manual_rollback_is_committed_to_git_and_recorded() {
    let mut platform = Platform::start();
    three_webs(&mut platform);
    let good = drover_testkit::git::git(&platform.repo.dir, &["rev-parse", "HEAD"]);
    platform.repo.edit(
        "environments/staging/web.yaml",
        "version: v1",
        "version: v2",
    );
    let v2 = platform.commit("web v2");
    platform.up.as_mut().unwrap().expect_line(SOON, |l| {
        l == format!("staging: release {} is healthy", &v2[..7])
    });
    let said = platform.drover(&["rollback", "staging"]);
    assert!(
        said.starts_with(&format!("rolling staging back to {}", &good.trim()[..7])),
        "{said}"
    );
    let line = platform.up.as_mut().unwrap().expect_line(SOON, |l| {
        l.starts_with(&format!(
            "staging: rollback to {} committed as ",
            &good.trim()[..7]
        ))
    });
    let commit = line.rsplit(' ').next().unwrap().to_owned();
    platform.up.as_mut().unwrap().expect_line(SOON, |l| {
        l == format!("staging: release {commit} is healthy")
    });
    assert_eq!(platform.get_json(HOST, "/")["version"], "v1");
    let subject = drover_testkit::git::git(&platform.repo.dir, &["log", "-1", "--format=%s"]);
    assert_eq!(
        subject.trim(),
        format!("Roll back staging to {}", &good.trim()[..7])
    );
    let history: Value =
        serde_json::from_str(&platform.drover(&["history", "staging", "-o", "json"])).unwrap();
    assert_eq!(history[0]["trigger"], "manual");
    assert_eq!(history[0]["result"], "healthy");
    // --to names any revision: forward to v2 again.
    platform.drover(&["rollback", "staging", "--to", &v2[..7]]);
    platform.up.as_mut().unwrap().expect_line(SOON, |l| {
        l.starts_with(&format!("staging: rollback to {} committed as ", &v2[..7]))
    });
    platform.wait_for(SOON, "v2 again", |s| {
        s["services"][0]["version"] == "v2" && s["services"][0]["state"] == "Running"
    });
    assert_eq!(platform.get_json(HOST, "/")["version"], "v2");
    // Both are in the audit trail, newest first, with who and from where.
    let audit: Value = serde_json::from_str(&platform.drover(&["audit", "-o", "json"])).unwrap();
    let rollbacks: Vec<(&str, &str, &str)> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "rollback")
        .map(|e| {
            assert!(e["origin"].as_str().unwrap().starts_with("127.0.0.1:"));
            (
                e["who"].as_str().unwrap(),
                e["target"].as_str().unwrap(),
                e["detail"].as_str().unwrap(),
            )
        })
        .collect();
    let to_v2 = format!("to {}", &v2[..7]);
    assert_eq!(
        rollbacks,
        [
            ("admin", "staging", to_v2.as_str()),
            ("admin", "staging", "to the last healthy release")
        ]
    );
    // Rolling back to what already runs commits nothing, and says so.
    let head = drover_testkit::git::git(&platform.repo.dir, &["rev-parse", "HEAD"]);
    platform.drover(&["rollback", "staging", "--to", &v2[..7]]);
    let line = platform.up.as_mut().unwrap().expect_line(SOON, |l| {
        l.starts_with(&format!("staging: could not roll back to {}", &v2[..7]))
    });
    assert!(line.contains("rolling back would commit nothing"), "{line}");
    assert_eq!(
        drover_testkit::git::git(&platform.repo.dir, &["rev-parse", "HEAD"]),
        head
    );
}

#[test]
fn a_revert_that_cannot_be_written_is_reported_and_the_hold_stays() {
    let mut platform = Platform::start();
    drover_testkit::git::git(&platform.repo.dir, &["tag", "live"]);
    // Pinned to a tag: there is no branch to write a revert to.
    platform.interrupt();
    platform.start_up_with(&["--tag", "live"]);
    platform.wait_for(SOON, "web ready", |s| Platform::ready(s, "web", 1));
    let bad = release_v2(
        &platform,
        1,
        "EXAMPLE_FAIL_READINESS",
        "1",
        "web v2, which never becomes ready",
    );
    drover_testkit::git::git(&platform.repo.dir, &["tag", "-f", "live"]);
    let up = platform.up.as_mut().unwrap();
    up.expect_line(Duration::from_secs(40), |l| {
        l.starts_with(&format!("staging: could not revert {} in Git", &bad[..7]))
    });
    let status = platform.wait_for(SOON, "held, saying why", |s| {
        s["environments"][0]["sync"] == "Held" && Platform::ready(s, "web", 1)
    });
    let message = status["environments"][0]["message"].as_str().unwrap();
    assert!(message.contains("not written to Git"), "{message}");
    assert_eq!(platform.get_json(HOST, "/")["version"], "v1");
}

#[test]
fn a_revert_interrupted_by_a_crash_is_written_once_after_the_restart() {
    let mut platform = Platform::start_remote();
    platform.env = vec![("DROVER_FAILPOINT".into(), "before-git-write".into())];
    platform.interrupt();
    platform.start_up();
    reshape_web(
        &mut platform,
        "  replicas: 1\n  update: {monitor: 1s}\n  rollback: {monitor: 1s}\n",
        "web: fast monitor",
    );
    let bad = release_v2(
        &platform,
        1,
        "EXAMPLE_FAIL_READINESS",
        "1",
        "web v2, never ready",
    );
    // The rollback is recorded with its revert queued, and `up` dies before writing it.
    let mut up = platform.up.take().unwrap();
    up.expect_line(Duration::from_secs(40), |l| {
        l.starts_with(&format!("staging: release {} failed", &bad[..7]))
    });
    assert_eq!(up.wait_exit(SOON), Some(137), "the failpoint stopped up");
    let bare = platform.remote.clone().unwrap();
    let tip = drover_testkit::git::git(&bare, &["rev-parse", "main"]);
    assert_eq!(tip.trim(), bad, "nothing was written before the crash");
    platform.env.clear();
    platform.start_up();
    let status = platform.wait_for(SOON, "synced at the revert", |s| {
        s["environments"][0]["sync"] == "Synced"
            && s["environments"][0]["revision"] != bad.as_str()
            && Platform::ready(s, "web", 1)
    });
    assert_eq!(status["services"][0]["version"], "v1");
    let log = drover_testkit::git::git(&bare, &["log", "--format=%s", &format!("{bad}..main")]);
    assert_eq!(
        log.trim(),
        "Revert \"web v2, never ready\"",
        "one revert, once"
    );
    let body = drover_testkit::git::git(&bare, &["log", "-1", "--format=%b", "main"]);
    assert!(body.contains("Drover-Write: "), "{body}");
    // Another restart finds the write done: still one revert.
    platform.interrupt();
    platform.start_up();
    platform.wait_for(SOON, "web ready", |s| Platform::ready(s, "web", 1));
    let again = drover_testkit::git::git(&bare, &["rev-list", "--count", &format!("{bad}..main")]);
    assert_eq!(again.trim(), "1");
}
