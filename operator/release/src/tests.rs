//! Table-driven tests of the release verdict, the waves and the gate: one row per
//! situation a release or a promotion can be in.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use drover_model::environment::Promotion;

use crate::gate::{self, Closed, EnvironmentFacts, Input, Refused, ServiceFacts};
use crate::judge::{OpenRelease, Policy, Progress, ServiceProgress, Verdict, judge, outcome};
use crate::state::{Lifecycle, ReleaseResult, SyncStatus, Trigger};
use crate::waves::{Dependencies, waits_for};

const DEADLINE: Duration = Duration::from_secs(60);

fn release(services: &[&str], trigger: Trigger, automatic: bool, start: Instant) -> OpenRelease {
    OpenRelease::start(
        7,
        "3f2a1c0d9e8b7a6f",
        services.iter().map(|s| (*s).to_owned()).collect(),
        false,
        trigger,
        Policy {
            deadline: DEADLINE,
            automatic_rollback: automatic,
            revert_commit: true,
        },
        start,
    )
}

fn failed(why: &str) -> Progress {
    Progress::Failed { why: why.into() }
}

fn waiting(on: &str) -> Progress {
    Progress::Waiting { on: on.into() }
}

#[derive(Debug)]
enum Expect {
    Wait,
    Healthy,
    Failed(&'static str),
    RollBack(&'static str),
}

/// (situation, trigger, automatic rollback, seconds since the start, each service's
/// progress and detail, the verdict expected).
type VerdictCase = (
    &'static str,
    Trigger,
    bool,
    u64,
    Vec<(&'static str, Progress, &'static str)>,
    Expect,
);

#[test]
fn the_first_release_of_an_environment_fails_with_nothing_to_roll_back_to() {
    let start = Instant::now();
    let mut first = release(&["web"], Trigger::Git, true, start);
    first.first = true;
    let progress = BTreeMap::from([(
        "web".to_owned(),
        ServiceProgress::new(failed("crash loop"), ""),
    )]);
    match judge(&first, &progress, start) {
        Verdict::Failed { reason } => assert!(
            reason.starts_with("web: crash loop; it is the environment's first release"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
    let later = release(&["web"], Trigger::Git, true, start);
    assert!(matches!(
        judge(&later, &progress, start),
        Verdict::RollBack { .. }
    ));
}

#[test]
fn every_verdict_follows_from_the_services_progress() {
    use Expect::*;
    use Progress::{Absent, Healthy as Done, Rolling};
    let readiness = ", 0/3 ready, readiness GET /ready returned 503 (3 times)";
    let crash = ", 1/3 ready, exited with status 1 (restarted 4 times)";
    #[rustfmt::skip]
    let cases: Vec<VerdictCase> = vec![
        ("every service healthy", Trigger::Git, true, 5,
            vec![("web", Done, ""), ("api", Done, "")], Healthy),
        ("a removed service counts as done", Trigger::Git, true, 5,
            vec![("web", Done, ""), ("api", Absent, "")], Healthy),
        ("a service still rolling, within the deadline", Trigger::Git, true, 5,
            vec![("web", Done, ""), ("api", Rolling, ", 1/3 ready")], Wait),
        ("a service not reported yet", Trigger::Git, true, 5,
            vec![("web", Done, "")], Wait),
        ("failed on readiness", Trigger::Git, true, 5,
            vec![("web", failed("update stopped: 1 of 3 instances failed (staging.web.1)"), readiness)],
            RollBack("web: update stopped: 1 of 3 instances failed (staging.web.1), 0/3 ready, readiness GET /ready returned 503 (3 times)")),
        ("failed on a crash loop", Trigger::Git, true, 5,
            vec![("api", Done, ""), ("web", failed("update stopped: 2 of 3 instances failed (staging.web.1, staging.web.2)"), crash)],
            RollBack("web: update stopped: 2 of 3 instances failed (staging.web.1, staging.web.2), 1/3 ready, exited with status 1 (restarted 4 times)")),
        ("the first failed service in release order names the reason", Trigger::Git, true, 5,
            vec![("web", failed("boom"), ""), ("api", failed("bang"), "")], RollBack("web: boom")),
        ("deadline passed", Trigger::Git, true, 61,
            vec![("web", Done, ""), ("api", Rolling, ", 2/3 ready")],
            RollBack("api: not healthy within the progress deadline (60s), 2/3 ready")),
        ("deadline passed while a dependency still rolls", Trigger::Git, true, 61,
            vec![("web", waiting("api"), ", 0/2 ready"), ("api", Rolling, ", 1/3 ready")],
            RollBack("web: not healthy within the progress deadline (60s), 0/2 ready")),
        ("a dependency still rolling holds the release open", Trigger::Git, true, 5,
            vec![("web", waiting("api"), ""), ("api", Rolling, "")], Wait),
        ("automatic rollback off: failed, and stays", Trigger::Git, false, 5,
            vec![("web", failed("boom"), "")], Failed("web: boom")),
        ("a manual release rolls back like a commit", Trigger::Manual, true, 5,
            vec![("web", failed("boom"), "")], RollBack("web: boom")),
        ("a rollback that fails is not rolled back again", Trigger::Rollback, true, 5,
            vec![("web", failed("boom"), "")], Failed("web: boom")),
        ("a rollback past its deadline fails", Trigger::Rollback, true, 61,
            vec![("web", Rolling, "")], Failed("web: not healthy within the progress deadline (60s)")),
        ("a rollback that is healthy", Trigger::Rollback, true, 5,
            vec![("web", Done, "")], Healthy),
    ];
    let start = Instant::now();
    for (name, trigger, automatic, after, progress, expect) in cases {
        let services: Vec<&str> = ["web", "api"]
            .into_iter()
            .filter(|s| progress.iter().any(|(p, _, _)| p == s) || name.contains("not reported"))
            .collect();
        let r = release(&services, trigger, automatic, start);
        let progress: BTreeMap<String, ServiceProgress> = progress
            .into_iter()
            .map(|(s, p, d)| (s.to_owned(), ServiceProgress::new(p, d)))
            .collect();
        let verdict = judge(&r, &progress, start + Duration::from_secs(after));
        let ok = match (&expect, &verdict) {
            (Wait, Verdict::Wait { until }) => *until == start + DEADLINE,
            (Healthy, Verdict::Healthy) => true,
            (Failed(want), Verdict::Failed { reason }) => reason == want,
            (RollBack(want), Verdict::RollBack { reason }) => reason == want,
            _ => false,
        };
        assert!(ok, "{name}: expected {expect:?}, got {verdict:?}");
    }
}

#[test]
fn a_verdict_is_recorded_with_its_result_and_line() {
    let r = release(&["web"], Trigger::Git, true, Instant::now());
    let cases = [
        (
            Verdict::Healthy,
            ReleaseResult::Healthy,
            "ReleaseHealthy",
            "release 3f2a1c0 is healthy",
        ),
        (
            Verdict::Failed {
                reason: "web: boom".into(),
            },
            ReleaseResult::Failed,
            "ReleaseFailed",
            "release 3f2a1c0 failed — web: boom",
        ),
        (
            Verdict::RollBack {
                reason: "web: boom".into(),
            },
            ReleaseResult::RolledBack,
            "RollingBack",
            "release 3f2a1c0 failed — web: boom; rolling back",
        ),
    ];
    for (verdict, result, reason, line) in cases {
        assert_eq!(outcome(&r, &verdict), Some((result, line.to_owned())));
        assert_eq!(result.event_reason(), reason);
    }
    let wait = Verdict::Wait {
        until: Instant::now(),
    };
    assert_eq!(outcome(&r, &wait), None);
    // A rollback says it is one.
    let back = r.rollback(9, Instant::now());
    assert_eq!(
        outcome(&back, &Verdict::Healthy),
        Some((
            ReleaseResult::Healthy,
            "rollback of release 3f2a1c0 is healthy: back at what ran before".to_owned()
        ))
    );
    let failed = Verdict::Failed {
        reason: "web: boom".into(),
    };
    assert_eq!(
        outcome(&back, &failed).unwrap().1,
        "rollback of release 3f2a1c0 failed — web: boom"
    );
}

#[test]
fn a_rollback_is_judged_from_its_own_start_with_the_same_services() {
    let start = Instant::now();
    let r = release(&["web", "api"], Trigger::Git, true, start);
    let later = start + Duration::from_secs(30);
    let back = r.rollback(8, later);
    assert_eq!(
        (back.id, back.started, back.trigger),
        (8, later, Trigger::Rollback)
    );
    assert_eq!(back.services, r.services);
    assert!(back.is_rollback() && !r.is_rollback());
}

#[test]
fn a_newer_revision_supersedes_the_open_release() {
    assert_eq!(
        crate::judge::supersede("9e8b7a6"),
        (
            ReleaseResult::Superseded,
            "revision 9e8b7a6 arrived".to_owned()
        )
    );
}

#[test]
fn services_roll_in_depends_on_order_and_roll_back_in_reverse() {
    // web depends on api, api on db.
    let deps: Dependencies = [
        ("web".to_owned(), vec!["api".to_owned()]),
        ("api".to_owned(), vec!["db".to_owned()]),
        ("db".to_owned(), vec![]),
    ]
    .into();
    let start = Instant::now();
    let forward = release(&["web", "api", "db"], Trigger::Git, true, start);
    let nothing_settled = |_: &str| false;
    assert_eq!(
        waits_for(&forward, &deps, nothing_settled, "web"),
        Some("api")
    );
    assert_eq!(
        waits_for(&forward, &deps, nothing_settled, "api"),
        Some("db")
    );
    assert_eq!(waits_for(&forward, &deps, nothing_settled, "db"), None);
    assert_eq!(waits_for(&forward, &deps, |s| s == "api", "web"), None);

    let back = forward.rollback(8, start);
    assert_eq!(waits_for(&back, &deps, nothing_settled, "db"), Some("api"));
    assert_eq!(waits_for(&back, &deps, nothing_settled, "api"), Some("web"));
    assert_eq!(waits_for(&back, &deps, nothing_settled, "web"), None);

    // A dependency outside the release does not hold a service back.
    let only_web = release(&["web"], Trigger::Git, true, start);
    assert_eq!(waits_for(&only_web, &deps, nothing_settled, "web"), None);
    assert_eq!(waits_for(&only_web, &deps, nothing_settled, "api"), None);
}

fn facts(sync: SyncStatus, releasing: bool, web: Lifecycle) -> EnvironmentFacts {
    EnvironmentFacts {
        sync,
        message: if sync == SyncStatus::Synced {
            String::new()
        } else {
            "self-heal is off: web: replicas 2 → 3".into()
        },
        releasing,
        services: vec![ServiceFacts {
            name: "web".into(),
            state: web,
            ready: if web == Lifecycle::Running { 2 } else { 1 },
            desired: 2,
            message: if web == Lifecycle::Abnormal {
                "staging.web.1: exited".into()
            } else {
                String::new()
            },
        }],
    }
}

/// (situation, the source, the target releasing, healthy since, how long it has been
/// healthy or why the gate is closed).
type GateCase = (
    &'static str,
    Option<EnvironmentFacts>,
    bool,
    Option<i64>,
    Result<i64, &'static str>,
);

#[test]
fn the_gate_is_closed_for_each_reason_and_open_after_the_soak() {
    use Lifecycle::{Abnormal, Running, Updating};
    use SyncStatus::{Held, OutOfSync, Synced};
    let policy: Promotion =
        serde_json::from_value(serde_json::json!({"from": "staging", "soak": "5m"})).unwrap();
    let now = 10_000_000;
    let healthy = Some(now - 301_000);
    #[rustfmt::skip]
    let cases: Vec<GateCase> = vec![
        ("never applied", None, false, healthy, Err("staging has not been applied yet")),
        ("out of sync", Some(facts(OutOfSync, false, Running)), false, healthy,
            Err("staging is OutOfSync: self-heal is off: web: replicas 2 → 3")),
        ("held", Some(facts(Held, false, Running)), false, healthy,
            Err("staging is Held: self-heal is off: web: replicas 2 → 3")),
        ("releasing", Some(facts(Synced, true, Running)), false, healthy, Err("staging is rolling out a release")),
        ("updating", Some(facts(Synced, false, Updating)), false, healthy,
            Err("staging is not healthy: web is Updating, 1/2 ready")),
        ("abnormal", Some(facts(Synced, false, Abnormal)), false, healthy,
            Err("staging is not healthy: web is Abnormal, 1/2 ready — staging.web.1: exited")),
        ("target releasing", Some(facts(Synced, false, Running)), true, healthy,
            Err("production is rolling out a release; promote when it is done")),
        ("soaking", Some(facts(Synced, false, Running)), false, Some(now - 41_000),
            Err("staging has been healthy for 41s; the soak time is 5m (4m19s to go)")),
        ("never healthy", Some(facts(Synced, false, Running)), false, None,
            Err("staging has been healthy for 0s; the soak time is 5m (5m to go)")),
        ("open", Some(facts(Synced, false, Running)), false, healthy, Ok(301_000)),
    ];
    for (name, source, target_releasing, since, expect) in cases {
        let got = gate::check(Input {
            from: "staging",
            to: "production",
            policy: Some(&policy),
            source: source.as_ref(),
            target_releasing,
            healthy_since_ms: since,
            now_ms: now,
        })
        .expect("allowed");
        match (got, expect) {
            (Ok(open), Ok(ms)) => {
                assert_eq!((open.healthy_ms, open.pull_request), (ms, false), "{name}")
            }
            (Err(closed), Err(text)) => assert_eq!(closed.to_string(), text, "{name}"),
            (got, expect) => panic!("{name}: expected {expect:?}, got {got:?}"),
        }
    }
}

#[test]
fn a_promotion_the_config_does_not_allow_is_refused() {
    let policy: Promotion = serde_json::from_value(serde_json::json!({"from": "qa"})).unwrap();
    let input = |policy| Input {
        from: "staging",
        to: "production",
        policy,
        source: None,
        target_releasing: false,
        healthy_since_ms: None,
        now_ms: 0,
    };
    assert!(matches!(
        gate::check(input(None)),
        Err(Refused::NotPromoted { .. })
    ));
    assert_eq!(
        gate::check(input(Some(&policy))).unwrap_err().to_string(),
        "production promotes from qa, not from staging"
    );
    assert!(matches!(
        gate::unhealthy("qa", None),
        Some(Closed::NotApplied { .. })
    ));
}

#[test]
fn durations_read_as_people_write_them() {
    let shown: Vec<String> = [0, 12_400, 60_000, 61_000, 300_000, 3_600_000, 5_400_000]
        .into_iter()
        .map(gate::human_duration)
        .collect();
    assert_eq!(shown, ["0s", "12s", "1m", "1m1s", "5m", "1h", "1h30m"]);
}

#[test]
fn a_service_lifecycle_says_where_its_instances_are() {
    use crate::explain::{Instances, lifecycle};
    let base = Instances {
        desired: 3,
        running: 3,
        ready: 3,
        ..Instances::default()
    };
    #[rustfmt::skip]
    let cases = [
        (base.clone(), Lifecycle::Running),
        (Instances { problems: vec!["slot 2: no node has 4 CPUs free".into()], ..base.clone() }, Lifecycle::Abnormal),
        (Instances { updating: true, ..base.clone() }, Lifecycle::Updating),
        (Instances { ready: 1, ..base.clone() }, Lifecycle::Updating),
        (Instances { ready: 0, restarted: true, ..base.clone() }, Lifecycle::Updating),
        (Instances { ready: 0, ..base.clone() }, Lifecycle::Starting),
        (Instances { running: 2, ready: 2, ..base.clone() }, Lifecycle::Updating),
    ];
    for (instances, expect) in cases {
        assert_eq!(lifecycle(&instances), expect, "{instances:?}");
    }
}
