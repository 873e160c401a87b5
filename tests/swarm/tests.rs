//! What users of a swarm rely on, each test in its own stack: staging deployed and
//! answering on its published port, a rolling update at the configured pace, a failing
//! health check rolling the whole release back with the revert on the remote, secret
//! rotation, prune beside hand-made services, `docker service scale` reverted, node
//! availability, and a dockerd restart in the middle of a release.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Drover, Swarm, Test};

const RELEASE: Duration = Duration::from_secs(90);

pub fn all() -> Vec<(&'static str, Test)> {
    vec![
        (
            "examples_staging_runs_on_the_swarm_and_answers_on_its_published_port",
            examples_staging_runs_on_the_swarm_and_answers_on_its_published_port,
        ),
        (
            "a_new_version_rolls_out_one_task_at_a_time_as_configured",
            a_new_version_rolls_out_one_task_at_a_time_as_configured,
        ),
        (
            "a_failing_health_check_rolls_the_whole_release_back_and_the_revert_is_on_the_remote",
            a_failing_health_check_rolls_the_whole_release_back_and_the_revert_is_on_the_remote,
        ),
        (
            "a_changed_secret_is_a_new_swarm_secret_the_service_moves_to_and_the_old_one_goes",
            a_changed_secret_is_a_new_swarm_secret_the_service_moves_to_and_the_old_one_goes,
        ),
        (
            "a_service_removed_from_git_is_pruned_and_a_hand_made_one_is_left_alone",
            a_service_removed_from_git_is_pruned_and_a_hand_made_one_is_left_alone,
        ),
        (
            "docker_service_scale_is_drift_and_reverted",
            docker_service_scale_is_drift_and_reverted,
        ),
        (
            "node_availability_follows_git_and_drover_node_update",
            node_availability_follows_git_and_drover_node_update,
        ),
        (
            "dockerd_restarted_mid_release_is_waited_out_and_the_release_judged",
            dockerd_restarted_mid_release_is_waited_out_and_the_release_judged,
        ),
    ]
}

/// Waits for staging's first release to be healthy.
fn first_release(d: &Drover) {
    d.expect("is healthy", RELEASE);
}

fn image(service: &Value) -> &str {
    service["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
        .as_str()
        .unwrap_or_default()
}

/// Moves web to `version` (image and version) in `d`'s files, uncommitted.
fn web_to(d: &Drover, from: &str, to: &str) {
    d.work
        .edit(
            "environments/staging/web.yaml",
            &format!("shop-web:{from}"),
            &format!("shop-web:{to}"),
        )
        .edit(
            "environments/staging/web.yaml",
            &format!("version: {from}"),
            &format!("version: {to}"),
        );
}

fn examples_staging_runs_on_the_swarm_and_answers_on_its_published_port(swarm: &Swarm) {
    let d = Drover::up(swarm, "answers", &[]);
    first_release(&d);
    for service in ["web", "api", "worker"] {
        let live = swarm.service(&d.name(service)).expect("the service exists");
        assert_eq!(live["Spec"]["Labels"]["dev.drover.managed-by"], "drover");
        assert_eq!(
            live["Spec"]["Labels"]["com.docker.stack.namespace"],
            "answers"
        );
    }
    let web = swarm.service(&d.name("web")).unwrap();
    assert_eq!(web["Spec"]["Mode"]["Replicated"]["Replicas"], 2);
    assert_eq!(web["Spec"]["UpdateConfig"]["Order"], "start-first");
    assert_eq!(web["Spec"]["EndpointSpec"]["Mode"], "dnsrr");
    // Each of web's tasks answers on the host port Swarm published for it.
    let (ok, status) = d.drover(&["status", "-o", "json"]);
    assert!(ok, "{status}");
    let status: Value = serde_json::from_str(&status).unwrap();
    let ports: Vec<u64> = status["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["service"] == "web")
        .filter_map(|i| i["port"].as_u64())
        .collect();
    assert_eq!(ports.len(), 2, "{status:#}");
    for port in ports {
        let (code, body) = super::support::http_get(&format!("127.0.0.1:{port}"), "/");
        assert_eq!(code, 200, "{body}");
        assert!(body.contains("welcome to the shop"), "{body}");
    }
    // api's secret is a file in its tasks, holding the decrypted value.
    let (ok, containers) = swarm.docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.docker.swarm.service.name={}", d.name("api")),
    ]);
    assert!(ok, "{containers}");
    let container = containers.lines().next().expect("an api task runs");
    let (ok, value) = swarm.docker(&[
        "exec",
        container,
        "cat",
        "/run/secrets/db-credentials/password",
    ]);
    assert!(ok, "{value}");
    assert_eq!(value.trim(), "staging-example-password");
    let api = swarm.service(&d.name("api")).unwrap();
    let files = &api["Spec"]["TaskTemplate"]["ContainerSpec"]["Secrets"];
    assert_eq!(
        files[0]["File"]["Name"],
        "/run/secrets/db-credentials/password"
    );
    let (ok, listed) = swarm.docker(&["secret", "ls", "--format", "{{.Name}}"]);
    assert!(ok, "{listed}");
    assert!(
        listed.contains("answers_db-credentials_password-"),
        "{listed}"
    );
    // The environment's overlay network.
    let (ok, networks) = swarm.docker(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    assert!(
        ok && networks.contains("answers_default overlay"),
        "{networks}"
    );
}

fn a_new_version_rolls_out_one_task_at_a_time_as_configured(swarm: &Swarm) {
    let d = Drover::up(swarm, "rolling", &[]);
    first_release(&d);
    web_to(&d, "v1.4.0", "v1.5.0");
    let id = d.commit("web v1.5.0");
    d.expect(&format!("release {} is healthy", &id[..7]), RELEASE);
    let web = swarm.service(&d.name("web")).unwrap();
    assert_eq!(image(&web), "ghcr.io/example/shop-web:v1.5.0");
    assert_eq!(web["Spec"]["UpdateConfig"]["Parallelism"], 1);
    // Parallelism 1 with a 1 s delay: the old tasks stopped one after the other, at
    // least the delay apart, not together.
    let mut stopped: Vec<String> = swarm
        .tasks(&d.name("web"))
        .iter()
        .filter(|t| t["Spec"]["ContainerSpec"]["Image"] == "ghcr.io/example/shop-web:v1.4.0")
        .filter_map(|t| t["Status"]["Timestamp"].as_str().map(str::to_owned))
        .collect();
    stopped.sort();
    assert_eq!(stopped.len(), 2, "two old tasks: {stopped:?}");
    let at = |t: &str| t.parse::<jiff::Timestamp>().expect("an RFC 3339 time");
    let apart = at(&stopped[1]).duration_since(at(&stopped[0]));
    assert!(
        apart >= jiff::SignedDuration::from_secs(1),
        "the old tasks stopped {apart:?} apart: {stopped:?}"
    );
}

fn a_failing_health_check_rolls_the_whole_release_back_and_the_revert_is_on_the_remote(
    swarm: &Swarm,
) {
    let d = Drover::up(swarm, "failing", &[]);
    first_release(&d);
    // api gets a healthy new version; web a new version whose readiness fails.
    web_to(&d, "v1.4.0", "v1.6.0");
    d.work
        .edit(
            "environments/staging/web.yaml",
            "  replicas: 2\n",
            "  replicas: 2\n  env:\n    EXAMPLE_FAIL_READINESS: \"true\"\n",
        )
        .edit(
            "environments/staging/api.yaml",
            "shop-api:v2.1.0",
            "shop-api:v2.2.0",
        );
    let bad = d.commit("web v1.6.0, api v2.2.0");
    let failed = d.expect(&format!("release {} failed", &bad[..7]), RELEASE);
    assert!(failed.contains("web"), "{failed}");
    d.expect("is healthy: back at what ran before", RELEASE);
    // Both services are back, by Swarm's own rollback, and Git says so on the remote.
    for (service, was) in [("web", "shop-web:v1.4.0"), ("api", "shop-api:v2.1.0")] {
        let live = swarm.service(&d.name(service)).unwrap();
        assert!(image(&live).ends_with(was), "{service}: {}", image(&live));
        assert_eq!(
            live["UpdateStatus"]["State"], "rollback_completed",
            "{service}"
        );
    }
    let start = Instant::now();
    while !d
        .remote_subject()
        .starts_with("Revert \"web v1.6.0, api v2.2.0\"")
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the revert is on the remote: {}",
            d.remote_subject()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // Git and the swarm agree: nothing drifts and nothing is applied again.
    d.up.expect_quiet(Duration::from_secs(3), |l| l.contains("drift"));
}

fn a_changed_secret_is_a_new_swarm_secret_the_service_moves_to_and_the_old_one_goes(swarm: &Swarm) {
    let d = Drover::up(swarm, "rotate", &[]);
    first_release(&d);
    let mounted = |api: &Value| {
        api["Spec"]["TaskTemplate"]["ContainerSpec"]["Secrets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["File"]["Name"] == "/run/secrets/db-credentials/password")
            .map(|s| s["SecretName"].as_str().unwrap().to_owned())
            .expect("the password is mounted")
    };
    let before = mounted(&swarm.service(&d.name("api")).unwrap());
    super::support::edit_secret(
        &d.work.dir,
        "environments/staging/secrets.yaml",
        "staging-example-password",
        "rotated-password",
        &super::support::example_key(),
    );
    d.commit("rotate the database password");
    let after = swarm
        .until_service(&d.name("api"), RELEASE, |api| {
            api.is_some_and(|api| mounted(api) != before)
        })
        .map(|api| mounted(&api))
        .unwrap();
    assert!(
        after.starts_with("rotate_db-credentials_password-"),
        "{after}"
    );
    // The tasks move to it; then the old version, mounted by nothing, is removed.
    let start = Instant::now();
    loop {
        let (_, names) = swarm.docker(&["secret", "ls", "--format", "{{.Name}}"]);
        if names.contains(&after) && !names.contains(&before) {
            break;
        }
        assert!(
            start.elapsed() < RELEASE,
            "{before} is removed and {after} kept: {names}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn a_service_removed_from_git_is_pruned_and_a_hand_made_one_is_left_alone(swarm: &Swarm) {
    let d = Drover::up(swarm, "prune", &[]);
    first_release(&d);
    let manual = d.name("manual");
    let (ok, text) = swarm.docker(&[
        "service",
        "create",
        "-d",
        "--name",
        &manual,
        "--label",
        "com.docker.stack.namespace=prune",
        "--stop-grace-period",
        "1s",
        "ghcr.io/example/shop-web:v1.4.0",
    ]);
    assert!(ok, "{text}");
    std::fs::remove_file(d.work.dir.join("environments/staging/worker.yaml")).unwrap();
    d.commit("worker retires");
    swarm.until_service(&d.name("worker"), RELEASE, |s| s.is_none());
    assert!(
        swarm.service(&manual).is_some(),
        "the hand-made service stays"
    );
    assert!(swarm.service(&d.name("web")).is_some());
    swarm.docker(&["service", "rm", &manual]);
}

fn docker_service_scale_is_drift_and_reverted(swarm: &Swarm) {
    let d = Drover::up(swarm, "scaled", &[]);
    first_release(&d);
    let web = d.name("web");
    let (ok, text) = swarm.docker(&["service", "scale", "-d", &format!("{web}=4")]);
    assert!(ok, "{text}");
    d.expect(
        "drift reverted to Git: web: replicas 4 → 2",
        Duration::from_secs(30),
    );
    let live = swarm.service(&web).unwrap();
    assert_eq!(live["Spec"]["Mode"]["Replicated"]["Replicas"], 2);
}

fn node_availability_follows_git_and_drover_node_update(swarm: &Swarm) {
    let (ok, host) = swarm.docker(&["node", "ls", "--format", "{{.Hostname}}"]);
    assert!(ok, "{host}");
    let host = host.trim().to_owned();
    let d = Drover::up(swarm, "nodes", &[]);
    first_release(&d);
    let availability = || {
        let (_, a) = swarm.docker(&[
            "node",
            "inspect",
            "self",
            "--format",
            "{{.Spec.Availability}}",
        ]);
        a.trim().to_owned()
    };
    let until = |want: &str| {
        let start = Instant::now();
        while availability() != want {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "node never {want}: {}",
                availability()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    };
    d.work.edit(
        "clusters/swarm.yaml",
        "  swarm:\n",
        &format!("  swarm:\n    nodes:\n      - name: {host}\n        availability: pause\n"),
    );
    d.commit("pause the node");
    until("pause");
    // `drover node update` overrides Git, on the node itself, until cleared.
    let (ok, said) = d.drover(&["node", "update", &host, "--availability", "active"]);
    assert!(ok, "{said}");
    until("active");
    let (ok, status) = d.drover(&["status"]);
    assert!(ok && status.contains(&host), "{status}");
    let (ok, said) = d.drover(&["node", "update", &host, "--availability", "git"]);
    assert!(ok, "{said}");
    until("pause");
    d.work.edit(
        "clusters/swarm.yaml",
        "        availability: pause\n",
        "        availability: active\n",
    );
    d.commit("the node is back");
    until("active");
}

fn dockerd_restarted_mid_release_is_waited_out_and_the_release_judged(swarm: &Swarm) {
    let d = Drover::up(swarm, "restart", &[]);
    first_release(&d);
    web_to(&d, "v1.4.0", "v1.5.0");
    let id = d.commit("web v1.5.0");
    d.expect(&format!("revision {} applied", &id[..7]), RELEASE);
    swarm.stop_dockerd();
    std::thread::sleep(Duration::from_secs(2));
    swarm.up();
    // Swarm carries the update on after the restart; Drover reconnects and judges it.
    d.expect(
        &format!("release {} is healthy", &id[..7]),
        Duration::from_secs(120),
    );
    let web = swarm.service(&d.name("web")).unwrap();
    assert_eq!(image(&web), "ghcr.io/example/shop-web:v1.5.0");
}
