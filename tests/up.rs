//! `drover up`: the local engine end to end — real agents, real service processes, the
//! real proxy, a real Git repository. Each test starts its own platform.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::platform::{Load, Platform, alive, processes_of};
use crate::releases::reshape_web;

const SOON: Duration = Duration::from_secs(20);
const HOST: &str = "web.dev.localhost";

fn kill9(pid: u64) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("the process exists");
}

pub(crate) fn pids(status: &Value, service: &str) -> BTreeSet<u64> {
    Platform::instances(status, service)
        .iter()
        .filter_map(|i| i["pid"].as_u64())
        .collect()
}

fn nodes_of(status: &Value, service: &str) -> Vec<String> {
    let mut nodes: Vec<String> = Platform::instances(status, service)
        .iter()
        .map(|i| i["node"].as_str().unwrap().to_owned())
        .collect();
    nodes.sort();
    nodes
}

fn set_replicas(platform: &Platform, from: u32, to: u32) {
    platform.repo.edit(
        "environments/staging/web.yaml",
        &format!("replicas: {from}"),
        &format!("replicas: {to}"),
    );
    platform.repo.commit(&format!("web: {to} replicas"));
}

#[test]
fn an_autoscaled_service_follows_its_request_rate_without_drift() {
    let mut platform = Platform::start();
    reshape_web(
        &mut platform,
        "  replicas: 1\n  autoscaling:\n    maxReplicas: 3\n    evaluationPeriod: 1s\n    metrics:\n      - {type: request-rate, target: 5}\n",
        "web: autoscale on request rate",
    );

    // Far more than 5 requests per second per instance: up to the ceiling.
    let load = Load::start(&platform);
    let line = platform.up.as_mut().unwrap().expect_line(SOON, |l| {
        l.starts_with("staging/web: autoscaled: replicas 1 → 3 (request-rate ")
    });
    assert!(line.ends_with(" / target 5 req/s)"), "{line}");
    platform.wait_for(SOON, "3 web ready", |s| Platform::ready(s, "web", 3));
    let seen = load.finish();
    assert!(
        seen.iter().all(|a| a.starts_with("200 ")),
        "no request fails while scaling"
    );

    // Idle: down to the floor. Never reported as drift from Git's `replicas: 1`.
    platform.up.as_mut().unwrap().expect_line(SOON, |l| {
        l.starts_with("staging/web: autoscaled: replicas 3 → 1 (request-rate 0 req/s")
    });
    platform.wait_for(SOON, "1 web", |s| Platform::ready(s, "web", 1));
    let reasons = platform.event_reasons();
    assert_eq!(
        reasons.iter().filter(|r| **r == "Autoscaled").count(),
        2,
        "{reasons:?}"
    );
    assert!(
        !reasons
            .iter()
            .any(|r| r == "DriftReverted" || r == "OutOfSync"),
        "{reasons:?}"
    );
}

#[test]
fn a_committed_service_answers_through_the_proxy() {
    let platform = Platform::start();
    platform.wait_for(SOON, "web ready", |s| Platform::ready(s, "web", 1));
    assert_eq!(platform.get_json(HOST, "/")["message"], "web");

    let web =
        std::fs::read_to_string(platform.repo.dir.join("environments/staging/web.yaml")).unwrap();
    let api = web
        .replace("name: web", "name: api")
        .replace("--message, web", "--message, api")
        .replace("web.dev.localhost", "api.dev.localhost");
    platform.repo.write("environments/staging/api.yaml", &api);
    platform.repo.commit("a new service: api");
    platform.wait_for(SOON, "api ready", |s| Platform::ready(s, "api", 1));
    assert_eq!(
        platform.get_json("api.dev.localhost", "/")["message"],
        "api"
    );
    // A host no route knows gets a clear 404.
    let (status, body) = platform.get("nobody.dev.localhost", "/");
    assert_eq!(status, 404);
    assert!(body.contains("no route"), "{body}");
}

#[test]
fn three_replicas_are_spread_and_share_the_requests() {
    let platform = Platform::start();
    platform.wait_for(SOON, "web ready", |s| Platform::ready(s, "web", 1));
    set_replicas(&platform, 1, 3);
    let status = platform.wait_for(SOON, "3 web instances ready", |s| {
        Platform::ready(s, "web", 3)
    });
    assert_eq!(nodes_of(&status, "web"), ["node-1", "node-1", "node-2"]);
    let answered: BTreeSet<u64> = (0..30)
        .map(|_| platform.get_json(HOST, "/")["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(
        answered,
        pids(&status, "web"),
        "requests reach every instance"
    );
}

#[test]
fn an_instance_killed_with_sigkill_is_restarted() {
    let platform = Platform::start();
    let before = platform.wait_for(SOON, "web ready", |s| Platform::ready(s, "web", 1));
    let pid = *pids(&before, "web").first().unwrap();
    kill9(pid);
    let after = platform.wait_for(SOON, "web restarted and ready", |s| {
        Platform::ready(s, "web", 1) && !pids(s, "web").contains(&pid)
    });
    assert_eq!(Platform::instances(&after, "web")[0]["restarts"], 1);
    assert_eq!(platform.get_json(HOST, "/")["message"], "web");
}

#[test]
fn a_killed_agents_instances_move_to_another_node_within_the_heartbeat_timeout() {
    let platform = Platform::start();
    let before = platform.wait_for(SOON, "web ready", |s| Platform::ready(s, "web", 1));
    let node = nodes_of(&before, "web")[0].clone();
    let old_pid = *pids(&before, "web").first().unwrap();
    let agent = before["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == node.as_str())
        .and_then(|n| n["agent_pid"].as_u64())
        .expect("the node's agent reports its pid");
    let killed = Instant::now();
    kill9(agent);
    let after = platform.wait_for(Duration::from_secs(3 + 5), "web moved and ready", |s| {
        Platform::ready(s, "web", 1) && nodes_of(s, "web") != [node.clone()]
    });
    assert!(killed.elapsed() < Duration::from_secs(8));
    assert_eq!(
        platform.get_json(HOST, "/")["pid"],
        *pids(&after, "web").first().unwrap()
    );
    // The agent comes back, finds the instance its predecessor left and stops it.
    let deadline = Instant::now() + SOON;
    while alive(old_pid as u32) {
        assert!(
            Instant::now() < deadline,
            "the orphaned instance {old_pid} still runs"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    platform.wait_for(SOON, "the node is back", |s| {
        s["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["status"] == "ready")
    });
}

#[test]
fn draining_a_node_moves_its_instances_and_pausing_moves_none() {
    let platform = Platform::start();
    platform.wait_for(SOON, "web ready", |s| Platform::ready(s, "web", 1));
    set_replicas(&platform, 1, 2);
    platform.wait_for(SOON, "web on both nodes", |s| {
        Platform::ready(s, "web", 2) && nodes_of(s, "web") == ["node-1", "node-2"]
    });

    platform.drover(&["node", "update", "--availability", "drain", "node-1"]);
    platform.wait_for(SOON, "web drained off node-1", |s| {
        Platform::ready(s, "web", 2) && nodes_of(s, "web") == ["node-2", "node-2"]
    });

    // Active again: nothing moves back. Paused: nothing moves away, nothing arrives.
    platform.drover(&["node", "update", "--availability", "active", "node-1"]);
    platform.drover(&["node", "update", "--availability", "pause", "node-2"]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(nodes_of(&platform.status(), "web"), ["node-2", "node-2"]);
    set_replicas(&platform, 2, 3);
    let status = platform.wait_for(SOON, "a third instance", |s| Platform::ready(s, "web", 3));
    assert_eq!(nodes_of(&status, "web"), ["node-1", "node-2", "node-2"]);
    let node_2 = &status["nodes"].as_array().unwrap()[1];
    assert_eq!(node_2["availability"], "pause");
    assert_eq!(node_2["availability_override"], "pause");
}

#[test]
fn an_invalid_commit_is_rejected_and_services_keep_serving() {
    let mut platform = Platform::start();
    let before = platform.wait_for(SOON, "web ready", |s| Platform::ready(s, "web", 1));
    platform.repo.edit(
        "environments/staging/web.yaml",
        "replicas: 1",
        "replicas: three",
    );
    let bad = platform.repo.commit("typo");
    let up = platform.up.as_mut().unwrap();
    let line = up.expect_line(SOON, |l| {
        l.starts_with(&format!("revision {} rejected", &bad[..7]))
    });
    assert!(line.contains("stays in force"), "{line}");
    up.expect_line(SOON, |l| {
        l.contains("environments/staging/web.yaml:9:13: error[E004]")
    });
    let status = platform.status();
    assert_eq!(pids(&status, "web"), pids(&before, "web"), "web untouched");
    assert!(
        status["environments"][0]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("revision {} rejected", &bad[..7])),
        "{status}"
    );
    assert_eq!(platform.get_json(HOST, "/")["message"], "web");
}

#[test]
fn a_control_plane_killed_and_restarted_finds_the_same_instances_and_no_duplicates() {
    let mut platform = Platform::start();
    platform.wait_for(SOON, "web ready", |s| Platform::ready(s, "web", 1));
    set_replicas(&platform, 1, 2);
    let before = platform.wait_for(SOON, "2 web ready", |s| Platform::ready(s, "web", 2));
    let proxy = platform.proxy.clone();

    platform.kill_up();
    platform.start_up();
    let after = platform.wait_for(SOON, "2 web ready again", |s| Platform::ready(s, "web", 2));
    assert_eq!(
        pids(&after, "web"),
        pids(&before, "web"),
        "the same processes"
    );
    assert_eq!(platform.proxy, proxy, "the proxy listens where it did");
    let instances: Vec<u32> = processes_of(&platform.state)
        .into_iter()
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd"))
                .is_ok_and(|cwd| cwd.to_string_lossy().contains("/instances/"))
        })
        .collect();
    assert_eq!(instances.len(), 2, "no duplicate instances: {instances:?}");
    assert_eq!(platform.get_json(HOST, "/")["message"], "web");
}

#[test]
fn ctrl_c_stops_agents_and_instances() {
    let mut platform = Platform::start();
    let status = platform.wait_for(SOON, "web ready", |s| Platform::ready(s, "web", 1));
    assert!(!processes_of(&platform.state).is_empty());
    let agents: Vec<u64> = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["agent_pid"].as_u64())
        .collect();
    assert_eq!(agents.len(), 2);
    assert_eq!(platform.interrupt(), Some(0));
    assert_eq!(processes_of(&platform.state), Vec::<u32>::new());
    assert!(agents.iter().all(|pid| !alive(*pid as u32)));
}

#[test]
fn scaling_outside_git_is_reported_as_drift_and_reverted() {
    let mut platform = Platform::start();
    platform.wait_for(SOON, "web ready", |s| Platform::ready(s, "web", 1));
    let said = platform.drover(&["scale", "web=3"]);
    assert!(said.contains("self-heal will revert it"), "{said}");
    let up = platform.up.as_mut().unwrap();
    up.expect_line(SOON, |l| {
        l == "staging: drift reverted to Git: web: replicas 3 → 1"
    });
    platform.wait_for(SOON, "back to 1", |s| Platform::ready(s, "web", 1));
    let reasons = platform.event_reasons();
    assert!(
        reasons.starts_with(&["DriftReverted".to_owned(), "Scaled".to_owned()]),
        "{reasons:?}"
    );
    let audit = platform.drover(&["audit"]);
    let row = audit.lines().nth(1).unwrap_or_default();
    for word in [
        "admin",
        "127.0.0.1:",
        "scale",
        "staging/web",
        "ok",
        "replicas 3",
    ] {
        assert!(row.contains(word), "{audit}");
    }
}

#[test]
fn writes_without_the_token_are_refused() {
    let platform = Platform::start();
    let (status, body) = crate::support::http_post(
        &platform.api,
        "/api/v1/services/staging/web/scale",
        &[("Content-Type", "application/json")],
        br#"{"replicas": 5}"#,
    );
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("Bearer"), "{body}");
}

#[test]
fn an_agent_token_reports_for_its_own_node_and_nothing_else() {
    let platform = Platform::start();
    platform.wait_for(SOON, "web ready", |s| Platform::ready(s, "web", 1));
    let token = std::fs::read_to_string(platform.state.join("nodes/node-1/agent-token")).unwrap();
    let auth = format!("Bearer {}", token.trim());
    let mode = std::fs::metadata(platform.state.join("nodes/node-1/agent-token"))
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
        .unwrap();
    assert_eq!(mode, 0o600);
    let report = |node: &str| {
        crate::support::http_post(
            &platform.api,
            &format!("/api/v1/agents/{node}/report"),
            &[("Authorization", &auth), ("User-Agent", "impostor")],
            br#"{"generation": 0, "pid": 1, "seq": 0, "urgent": true, "instances": []}"#,
        )
    };
    let (status, body) = report("node-2");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("lacks scope `node:node-2`"), "{body}");
    let (status, body) = crate::support::http_post(
        &platform.api,
        "/api/v1/services/staging/web/scale",
        &[("Authorization", &auth)],
        br#"{"replicas": 5}"#,
    );
    assert_eq!(status, 403, "{body}");
    let audit: Value = serde_json::from_str(&platform.drover(&["audit", "-o", "json"])).unwrap();
    let refused: Vec<&Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["who"] == "agent-node-1" && a["outcome"] == "refused")
        .collect();
    assert_eq!(refused.len(), 2, "{audit:#}");
    assert!(
        refused
            .iter()
            .any(|a| a["action"] == "report" && a["target"] == "node-2")
    );
    assert!(
        refused[0]["origin"]
            .as_str()
            .unwrap()
            .contains("(impostor)")
            || refused[1]["origin"]
                .as_str()
                .unwrap()
                .contains("(impostor)")
    );
    // A request value that could forge a line is refused by the rule, before anything.
    let admin = format!("Bearer {}", platform.token());
    let (status, body) = crate::support::http_post(
        &platform.api,
        "/api/v1/environments/staging/rollback",
        &[("Authorization", &admin)],
        b"{\"to\": \"main\\nDrover-Release: forged\"}",
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("`to` names a revision"), "{body}");
}

#[test]
fn logs_show_what_instances_print_and_follow_new_lines() {
    let platform = Platform::start();
    let status = platform.wait_for(SOON, "web ready", |s| Platform::ready(s, "web", 1));
    let logs = platform.drover(&["logs", "web"]);
    assert!(
        logs.lines()
            .any(|l| l.starts_with("staging.web.1 | example-app v1 listening on http://")),
        "{logs}"
    );
    let state = platform.state.to_str().unwrap().to_owned();
    let follow =
        crate::support::Running::start(&["logs", "staging/web", "-f", "--state-dir", &state], &[]);
    follow.expect_line(SOON, |l| l.contains("listening on"));
    // A restart writes a new line, which the follower prints.
    kill9(*pids(&status, "web").first().unwrap());
    follow.expect_line(SOON, |l| l.contains("listening on"));
}

#[test]
fn a_removed_instance_finishes_its_requests_before_it_is_stopped() {
    let platform = Platform::start();
    platform.wait_for(SOON, "web ready", |s| Platform::ready(s, "web", 1));
    set_replicas(&platform, 1, 2);
    platform.wait_for(SOON, "2 web ready", |s| Platform::ready(s, "web", 2));
    // Round-robin: one slow request on each instance.
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let proxy = platform.proxy.clone();
            let request = std::thread::spawn(move || {
                crate::support::http("GET", &proxy, "/sleep?ms=2000", &[("Host", HOST)], b"")
            });
            std::thread::sleep(Duration::from_millis(100));
            request
        })
        .collect();
    set_replicas(&platform, 2, 1);
    for request in slow {
        let (status, body) = request.join().unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(body.starts_with("slept 2000 ms"), "{body}");
    }
    // The removed instance was stopped only once its request was done.
    let deadline = Instant::now() + SOON;
    loop {
        // One log per process: web.2's (its spec never changed here).
        let text: String = std::fs::read_dir(platform.state.join("logs"))
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("staging.web.2@")
            })
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .collect();
        if let Some(line) = text.lines().find(|l| l.contains("stopping with")) {
            assert!(
                line.ends_with("stopping with 0 slow request(s) in flight"),
                "{line}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "staging.web.2 was not stopped:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn promoting_the_backup_address_pool_moves_new_connections_to_it() {
    let platform = Platform::start();
    platform.wait_for(SOON, "web ready", |s| Platform::ready(s, "web", 1));
    assert_eq!(platform.get_json(HOST, "/")["client"], "127.0.30.1");
    let pool = |s: &Value, name: &str| {
        s["pools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| p["status"].as_str().unwrap().to_owned())
    };
    let status = platform.status();
    assert_eq!(pool(&status, "blue").as_deref(), Some("ACTIVE"));
    assert_eq!(pool(&status, "green").as_deref(), Some("READY"));

    platform
        .repo
        .edit("clusters/local.yaml", "role: active", "role: was-active")
        .edit("clusters/local.yaml", "role: backup", "role: active")
        .edit("clusters/local.yaml", "role: was-active", "role: backup");
    platform.repo.commit("promote the green address pool");
    platform.wait_for(SOON, "green active, blue draining", |s| {
        pool(s, "green").as_deref() == Some("ACTIVE")
            && pool(s, "blue").as_deref() == Some("DRAINING")
    });
    assert_eq!(platform.get_json(HOST, "/")["client"], "127.0.31.1");
    platform.wait_for(Duration::from_secs(2 + 3), "blue drained", |s| {
        pool(s, "blue").as_deref() == Some("READY")
    });
}

#[test]
fn agents_can_run_on_their_own() {
    let platform = Platform::start_with(&["--no-agents"]);
    let state = platform.state.to_str().unwrap().to_owned();
    let agents: Vec<crate::support::Running> = ["node-1", "node-2"]
        .into_iter()
        .map(|node| {
            crate::support::Running::start(&["agent", "--node", node, "--state-dir", &state], &[])
        })
        .collect();
    platform.wait_for(SOON, "web ready", |s| Platform::ready(s, "web", 1));
    assert_eq!(platform.get_json(HOST, "/")["message"], "web");
    // SIGTERM: each agent stops its instances and exits.
    for mut agent in agents {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(agent.pid() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        assert_eq!(agent.wait_exit(SOON), Some(0));
    }
    let instances: Vec<u32> = processes_of(&platform.state)
        .into_iter()
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd"))
                .is_ok_and(|cwd| cwd.to_string_lossy().contains("/instances/"))
        })
        .collect();
    assert_eq!(instances, Vec::<u32>::new());
}

#[test]
fn the_state_directory_and_what_it_holds_are_their_owners_alone() {
    use std::os::unix::fs::PermissionsExt;
    let platform = Platform::start();
    platform.wait_for(SOON, "web ready", |s| Platform::ready(s, "web", 1));
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(&platform.state), 0o700, "the state directory");
    for file in ["drover.db", "drover.db-wal", "drover.db-shm", "api-token"] {
        assert_eq!(mode(&platform.state.join(file)), 0o600, "{file}");
    }
    let logs: Vec<_> = std::fs::read_dir(platform.state.join("logs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(!logs.is_empty(), "instances write logs");
    for log in logs {
        assert_eq!(mode(&log), 0o600, "{}", log.display());
    }
}
