//! The Kubernetes engine against a real control plane (kube-apiserver 1.20, controller
//! manager, scheduler, etcd — built by tests/k8s/build.sh, started by cluster.sh): one
//! cluster for the whole binary, started first and stopped last, each test in its own
//! namespace-scoped environment. There is no kubelet: `mark_ready` plays it, setting
//! Pod status through `pods/status`.
//!
//! Its own harness (`harness = false`) so the cluster is stopped after the last test,
//! whatever happened: `cargo test --test kubernetes [FILTER]`.

#[path = "support.rs"]
#[allow(dead_code)]
mod support;

#[path = "platform.rs"]
#[allow(dead_code)]
mod platform;

#[path = "k8s/mixed.rs"]
mod mixed;

#[path = "k8s/operator.rs"]
mod operator;

#[path = "k8s/chart.rs"]
mod chart;

#[path = "k8s/nodes.rs"]
mod nodes;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use drover_testkit::git::TestRepo;
use serde_json::Value;
use support::Running;

/// The control plane for this binary.
struct Kube {
    state: PathBuf,
    kubeconfig: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Kube {
    fn start() -> Kube {
        let root = support::repo_root();
        let build = Command::new("bash")
            .arg(root.join("tests/k8s/build.sh"))
            .output()
            .expect("build.sh runs");
        assert!(
            build.status.success(),
            "tests/k8s/build.sh failed: {}",
            String::from_utf8_lossy(&build.stderr)
        );
        let bin = String::from_utf8_lossy(&build.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .trim()
            .to_owned();
        let tmp = tempfile::tempdir().expect("a temporary directory");
        let state = tmp.path().join("cluster");
        // Ports from the process id, so two runs on one machine do not collide.
        let base = 20000 + (std::process::id() % 400) * 10;
        let up = Command::new("bash")
            .arg(root.join("tests/k8s/cluster.sh"))
            .args(["up", &bin, state.to_str().unwrap(), &base.to_string()])
            .output()
            .expect("cluster.sh runs");
        assert!(
            up.status.success(),
            "cluster.sh up failed: {}",
            String::from_utf8_lossy(&up.stderr)
        );
        let kubeconfig = PathBuf::from(
            String::from_utf8_lossy(&up.stdout)
                .lines()
                .last()
                .unwrap()
                .trim(),
        );
        Kube {
            state,
            kubeconfig,
            _tmp: tmp,
        }
    }

    fn kubectl(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("kubectl")
            .env("KUBECONFIG", &self.kubeconfig)
            .args(args)
            .output()
            .expect("kubectl runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// `kubectl apply --server-side --force-conflicts` of a YAML stream.
    fn apply(&self, yaml: &[u8]) -> (bool, String) {
        use std::io::Write;
        let mut child = Command::new("kubectl")
            .env("KUBECONFIG", &self.kubeconfig)
            .args(["apply", "--server-side", "--force-conflicts", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(yaml)
            .expect("kubectl reads the objects");
        let out = child.wait_with_output().expect("kubectl finishes");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    fn json(&self, args: &[&str]) -> Option<Value> {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let (ok, text) = self.kubectl(&all);
        ok.then(|| serde_json::from_str(&text).ok()).flatten()
    }

    /// Waits until `check` holds for `kubectl get ARGS -o json`, or panics with the last
    /// thing seen.
    fn until(&self, args: &[&str], timeout: Duration, check: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let seen = self.json(args);
            if let Some(v) = &seen
                && check(v)
            {
                return v.clone();
            }
            assert!(
                start.elapsed() < timeout,
                "kubectl get {args:?} never matched: {seen:?}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Waits until `kubectl get ARGS` finds nothing, or panics saying `what`.
    fn until_gone(&self, args: &[&str], what: &str) {
        let start = Instant::now();
        while self.json(args).is_some() {
            assert!(start.elapsed() < Duration::from_secs(30), "{what}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Plays the kubelet: every Pod of `namespace` whose image `ready` accepts is marked
    /// Running and Ready.
    fn mark_ready(&self, namespace: &str, ready: impl Fn(&str) -> bool) {
        let Some(pods) = self.json(&["get", "pods", "-n", namespace]) else {
            return;
        };
        for pod in pods["items"].as_array().into_iter().flatten() {
            let image = pod["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap_or_default();
            let name = pod["metadata"]["name"].as_str().unwrap_or_default();
            let is_ready = pod["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            if is_ready || !ready(image) || pod["spec"]["nodeName"].is_null() {
                continue;
            }
            let now = "2026-01-01T00:00:00Z";
            let patch = serde_json::json!({"status": {
                "phase": "Running",
                "conditions": [
                    {"type": "Ready", "status": "True", "lastTransitionTime": now},
                    {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                ],
                "containerStatuses": [{
                    "name": pod["spec"]["containers"][0]["name"], "image": image, "imageID": "",
                    "ready": true, "restartCount": 0, "started": true,
                    "state": {"running": {"startedAt": now}},
                }],
            }});
            self.raw_patch(
                &format!("/api/v1/namespaces/{namespace}/pods/{name}/status"),
                &patch,
            );
        }
    }

    /// A strategic-merge PATCH straight to the API server (kubectl 1.20 cannot patch
    /// subresources).
    fn raw_patch(&self, path: &str, patch: &Value) {
        let config = std::fs::read_to_string(&self.kubeconfig).unwrap();
        let (token, server) = (quoted(&config, "token"), quoted(&config, "server"));
        let out = Command::new("curl")
            .args([
                "-sk",
                "-X",
                "PATCH",
                "-H",
                &format!("Authorization: Bearer {token}"),
            ])
            .args(["-H", "Content-Type: application/strategic-merge-patch+json"])
            .args(["--data", &patch.to_string(), &format!("{server}{path}")])
            .output()
            .expect("curl runs");
        assert!(out.status.success(), "PATCH {path} failed");
    }

    /// `cluster.sh apiserver-stop` / `apiserver-start`: an API server outage.
    fn apiserver(&self, action: &str) {
        let out = Command::new("bash")
            .arg(support::repo_root().join("tests/k8s/cluster.sh"))
            .args([action, self.state.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{action}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn stop(&self) {
        let _ = Command::new("bash")
            .arg(support::repo_root().join("tests/k8s/cluster.sh"))
            .args(["down", self.state.to_str().unwrap()])
            .output();
    }
}

/// The quoted value of `field: "…"` in cluster.sh's flow-style kubeconfig.
fn quoted<'a>(config: &'a str, field: &str) -> &'a str {
    config
        .split(&format!("{field}: \""))
        .nth(1)
        .and_then(|t| t.split('"').next())
        .unwrap_or_else(|| panic!("the kubeconfig has a {field}"))
}

/// A config repo of examples/repo's staging environment on a Kubernetes cluster, in
/// namespace `ns`, and `drover up` following it.
struct Drover {
    repo: TestRepo,
    up: Running,
    state: PathBuf,
    namespace: String,
    _tmp: tempfile::TempDir,
}

impl Drover {
    fn up(kube: &Kube, ns: &str) -> Drover {
        Drover::up_with(kube, ns, &[])
    }

    /// Like [`Drover::up`], with `(from, to)` replaced in every file first.
    fn up_with(kube: &Kube, ns: &str, edits: &[(&str, &str)]) -> Drover {
        let tmp = tempfile::tempdir().unwrap();
        let repo = TestRepo::init(&tmp.path().join("repo"));
        let staging = support::repo_root().join("examples/repo/environments/staging");
        for entry in std::fs::read_dir(&staging).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            let text = std::fs::read_to_string(&path)
                .unwrap()
                .replace(
                    "cluster: local-staging",
                    &format!("cluster: kube\n  namespace: {ns}"),
                )
                .replace("progressDeadline: 2m", "progressDeadline: 30s");
            let text = edits
                .iter()
                .fold(text, |text, (from, to)| text.replace(from, to));
            repo.write(&format!("environments/staging/{name}"), &text);
        }
        repo.write("clusters/kube.yaml", "apiVersion: drover.dev/v1alpha1\nkind: Cluster\nmetadata:\n  name: kube\nspec:\n  engine: kubernetes\n  kubernetes: {}\n");
        repo.commit("staging on Kubernetes");
        let state = tmp.path().join("state");
        let up = Running::start(
            &[
                "up",
                repo.dir.as_path().to_str().unwrap(),
                "--state-dir",
                state.to_str().unwrap(),
            ],
            &[("KUBECONFIG", kube.kubeconfig.to_str().unwrap())],
        );
        Drover {
            repo,
            up,
            state,
            namespace: ns.to_owned(),
            _tmp: tmp,
        }
    }
}

/// Moves web from v1.4.0 to v1.5.0 (image and version) in `d`'s files, uncommitted.
fn web_v1_5_0(d: &Drover) -> &TestRepo {
    d.repo
        .edit(
            "environments/staging/web.yaml",
            "shop-web:v1.4.0",
            "shop-web:v1.5.0",
        )
        .edit(
            "environments/staging/web.yaml",
            "version: v1.4.0",
            "version: v1.5.0",
        )
}

/// Removes worker's file from `d`'s repo, uncommitted.
fn remove_worker(d: &Drover) {
    let file = d
        .repo
        .dir
        .as_path()
        .join("environments/staging/worker.yaml");
    std::fs::remove_file(file).unwrap();
}

fn deployment(kube: &Kube, d: &Drover, name: &str, check: impl Fn(&Value) -> bool) -> Value {
    kube.until(
        &["get", "deployment", name, "-n", &d.namespace],
        Duration::from_secs(30),
        check,
    )
}

fn examples_staging_is_applied_as_rendered(kube: &Kube) {
    let d = Drover::up(kube, "applied");
    deployment(kube, &d, "web", |_| true);
    let web = kube
        .json(&[
            "get",
            "deployment",
            "web",
            "-n",
            "applied",
            "--show-managed-fields",
        ])
        .expect("web's Deployment");
    assert_eq!(web["spec"]["replicas"], 2);
    let container = &web["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "ghcr.io/example/shop-web:v1.4.0");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/ready");
    assert_eq!(container["resources"]["limits"]["memory"], "128Mi");
    assert_eq!(web["spec"]["strategy"]["rollingUpdate"]["maxSurge"], 1);
    assert_eq!(web["spec"]["minReadySeconds"], 5);
    let managers: Vec<&str> = web["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["manager"].as_str())
        .collect();
    assert!(
        managers.contains(&"drover"),
        "applied server-side as drover: {managers:?}"
    );
    let service = kube
        .json(&["get", "service", "web", "-n", "applied"])
        .expect("web's Service");
    assert_eq!(service["spec"]["type"], "LoadBalancer");
    let hpa = kube
        .json(&["get", "hpa", "api", "-n", "applied"])
        .expect("api's autoscaler");
    assert_eq!(hpa["spec"]["maxReplicas"], 4);
    let api = deployment(kube, &d, "api", |_| true);
    assert!(
        api["spec"].get("replicas").is_some(),
        "the HPA's default replicas"
    );
    assert!(
        kube.json(&["get", "resourcequota", "staging-quota", "-n", "applied"])
            .is_some()
    );
    assert!(
        kube.json(&["get", "limitrange", "staging-quota", "-n", "applied"])
            .is_some()
    );
    assert!(
        kube.json(&["get", "ingress", "web", "-n", "applied"])
            .is_some()
    );
    // The Secret holds the decrypted values (Kubernetes's base64), never the ciphertext.
    let secret = kube
        .json(&["get", "secret", "db-credentials", "-n", "applied"])
        .expect("the secret");
    assert!(!secret.to_string().contains("ENC["));
    assert_eq!(
        secret["data"]["password"],
        base64_of("staging-example-password"),
        "{secret:#}"
    );
    // The api's pods take DB_USER from it, and roll when a value changes.
    let api = kube
        .json(&["get", "deployment", "api", "-n", "applied"])
        .expect("the api");
    let template = &api["spec"]["template"];
    assert!(
        template["metadata"]["annotations"]["drover.dev/secrets"]
            .as_str()
            .is_some_and(|s| s.starts_with("sha256:")),
        "{template:#}"
    );
    assert!(
        template.to_string().contains("secretKeyRef"),
        "{template:#}"
    );
}

fn git_changes_move_the_deployment_and_removed_services_are_pruned(kube: &Kube) {
    let d = Drover::up(kube, "changes");
    deployment(kube, &d, "worker", |_| true);
    kube.kubectl(&["create", "configmap", "not-drovers", "-n", "changes"]);
    web_v1_5_0(&d).edit(
        "environments/staging/web.yaml",
        "replicas: 2",
        "replicas: 3",
    );
    remove_worker(&d);
    d.repo.commit("web v1.5.0 with 3 replicas; no worker");
    deployment(kube, &d, "web", |w| {
        w["spec"]["replicas"] == 3
            && w["spec"]["template"]["spec"]["containers"][0]["image"]
                == "ghcr.io/example/shop-web:v1.5.0"
    });
    kube.until_gone(
        &["get", "deployment", "worker", "-n", "changes"],
        "worker is pruned",
    );
    assert!(
        kube.json(&["get", "configmap", "not-drovers", "-n", "changes"])
            .is_some(),
        "untouched"
    );
}

fn kubectl_scale_and_edit_are_drift_and_reverted(kube: &Kube) {
    let d = Drover::up(kube, "drift");
    deployment(kube, &d, "web", |w| w["spec"]["replicas"] == 2);
    let (ok, text) = kube.kubectl(&["scale", "deployment", "web", "--replicas=5", "-n", "drift"]);
    assert!(ok, "{text}");
    deployment(kube, &d, "web", |w| w["spec"]["replicas"] == 2);
    let image = |w: &Value| w["spec"]["template"]["spec"]["containers"][0]["image"].clone();
    let (ok, text) = kube.kubectl(&[
        "set",
        "image",
        "deployment/web",
        "web=ghcr.io/example/shop-web:hand-edited",
        "-n",
        "drift",
    ]);
    assert!(ok, "{text}");
    deployment(kube, &d, "web", |w| {
        image(w) == "ghcr.io/example/shop-web:v1.4.0"
    });
}

/// `drover status -o json`'s entry for staging, once `check` holds for it.
fn staging_status(d: &Drover, check: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let out = support::drover()
            .args(["status", "-o", "json", "--state-dir"])
            .arg(&d.state)
            .output()
            .unwrap();
        let status: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let staging = status["environments"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["name"] == "staging")
            .cloned();
        if let Some(env) = staging
            && check(&env)
        {
            return env;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "staging's status never matched: {status} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn drift_with_self_heal_off_is_out_of_sync_and_left_alone(kube: &Kube) {
    let d = Drover::up_with(kube, "no-heal", &[("selfHeal: true", "selfHeal: false")]);
    first_release_healthy(kube, &d);
    staging_status(&d, |e| e["sync"] == "Synced");
    let (ok, text) = kube.kubectl(&[
        "scale",
        "deployment",
        "web",
        "--replicas=4",
        "-n",
        "no-heal",
    ]);
    assert!(ok, "{text}");
    let env = staging_status(&d, |e| e["sync"] == "OutOfSync");
    assert!(
        env["message"]
            .as_str()
            .unwrap()
            .contains("self-heal is off"),
        "{env}"
    );
    std::thread::sleep(Duration::from_secs(2));
    deployment(kube, &d, "web", |w| w["spec"]["replicas"] == 4);
}

/// Plays the kubelet for `d`'s namespace (every Pod ready but those of a `broken`
/// image) until `check` holds for `drover history staging -o json`, which it returns.
fn history_until(kube: &Kube, d: &Drover, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        kube.mark_ready(&d.namespace, |img| !img.contains("broken"));
        let out = support::drover()
            .args(["history", "staging", "-o", "json", "--state-dir"])
            .arg(&d.state)
            .output()
            .unwrap();
        let history: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if check(&history) {
            return history;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "{what}: {history}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Plays the kubelet for `d`'s namespace until its first release is judged healthy.
fn first_release_healthy(kube: &Kube, d: &Drover) {
    history_until(kube, d, "the first release is healthy", |h| {
        h.to_string().contains("\"healthy\"")
    });
}

fn ready_pods_make_the_release_healthy_and_unready_ones_roll_it_back(kube: &Kube) {
    let d = Drover::up(kube, "release");
    let healthy = |img: &str| !img.contains("broken");
    first_release_healthy(kube, &d);
    d.repo.edit(
        "environments/staging/web.yaml",
        "shop-web:v1.4.0",
        "shop-web:broken",
    );
    let bad = d.repo.commit("web: broken image");
    // Its Pods never become ready: past the 30 s deadline the release rolls back and
    // the revert is committed.
    let start = Instant::now();
    loop {
        kube.mark_ready("release", healthy);
        let log = support::stdout(
            &Command::new("git")
                .args(["log", "--format=%s"])
                .current_dir(d.repo.dir.as_path())
                .output()
                .unwrap(),
        );
        if log.lines().next().is_some_and(|l| l.starts_with("Revert")) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "the bad release {bad} is reverted: {log}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    deployment(kube, &d, "web", |w| {
        w["spec"]["template"]["spec"]["containers"][0]["image"] == "ghcr.io/example/shop-web:v1.4.0"
    });
}

/// The newest commit's subject of `d`'s repo.
fn last_subject(d: &Drover) -> String {
    let out = Command::new("git")
        .args(["log", "-1", "--format=%s"])
        .current_dir(d.repo.dir.as_path())
        .output()
        .unwrap();
    support::stdout(&out).trim().to_owned()
}

const SETTINGS: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  level: info\n";
const MIGRATE: &str = "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\nspec:\n  backoffLimit: 0\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n        - name: migrate\n          image: ghcr.io/example/migrate:v2\n";

fn plain_manifests_are_applied_kept_from_drift_and_a_failed_job_rolls_the_release_back(
    kube: &Kube,
) {
    let d = Drover::up(kube, "plain");
    first_release_healthy(kube, &d);
    d.repo.write("environments/staging/settings.yaml", SETTINGS);
    d.repo.commit("settings");
    let level = |level: &'static str| move |m: &Value| m["data"]["level"] == level;
    let map = kube.until(
        &["get", "configmap", "settings", "-n", "plain"],
        Duration::from_secs(30),
        level("info"),
    );
    assert_eq!(
        map["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "drover"
    );
    // kubectl edit: drift on a plain object is seen through its watch and reverted.
    let (ok, text) = kube.kubectl(&[
        "patch",
        "configmap",
        "settings",
        "-n",
        "plain",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"level":"debug"}}"#,
    ]);
    assert!(ok, "{text}");
    kube.until(
        &["get", "configmap", "settings", "-n", "plain"],
        Duration::from_secs(30),
        level("info"),
    );
    // One release: the ConfigMap changes and a Job runs; the Job fails, so the whole
    // release rolls back — the ConfigMap's change too — and is reverted in Git.
    d.repo
        .edit(
            "environments/staging/settings.yaml",
            "level: info",
            "level: warn",
        )
        .write("environments/staging/migrate.yaml", MIGRATE);
    d.repo.commit("migrate, quieter");
    kube.until(
        &["get", "configmap", "settings", "-n", "plain"],
        Duration::from_secs(30),
        level("warn"),
    );
    kube.until(
        &["get", "job", "migrate", "-n", "plain"],
        Duration::from_secs(30),
        |_| true,
    );
    let now = "2026-01-01T00:00:00Z";
    kube.raw_patch(
        "/apis/batch/v1/namespaces/plain/jobs/migrate/status",
        &serde_json::json!({"status": {"failed": 1, "conditions": [{
            "type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
            "message": "Job has reached the specified backoff limit",
            "lastProbeTime": now, "lastTransitionTime": now}]}}),
    );
    let start = Instant::now();
    while !last_subject(&d).starts_with("Revert") {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the release is reverted: {}\n{:?}\n{}",
            last_subject(&d),
            kube.json(&["get", "job", "migrate", "-n", "plain"]),
            d.up.printed()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    kube.until(
        &["get", "configmap", "settings", "-n", "plain"],
        Duration::from_secs(30),
        level("info"),
    );
    kube.until_gone(
        &["get", "job", "migrate", "-n", "plain"],
        "the Job is removed with its release",
    );
    let out = support::drover()
        .args(["history", "staging", "--state-dir"])
        .arg(&d.state)
        .output()
        .unwrap();
    let history = support::stdout(&out);
    assert!(history.contains("BackoffLimitExceeded"), "{history}");
}

fn drover_plan_shows_the_servers_dry_run_and_what_would_be_pruned_and_changes_nothing(kube: &Kube) {
    let d = Drover::up(kube, "plan");
    deployment(kube, &d, "worker", |_| true);
    deployment(kube, &d, "web", |w| w["spec"]["replicas"] == 2);
    // Edited, not committed: `drover up` follows commits, `drover plan` reads files.
    d.repo.edit(
        "environments/staging/web.yaml",
        "replicas: 2",
        "replicas: 3",
    );
    remove_worker(&d);
    let plan = |extra: &[&str]| {
        let out = support::drover()
            .arg("plan")
            .arg(d.repo.dir.as_path())
            .args(["--env", "staging", "--state-dir"])
            .arg(&d.state)
            .args(extra)
            .env("KUBECONFIG", &kube.kubeconfig)
            .output()
            .unwrap();
        (
            out.status.code(),
            support::stdout(&out),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, text, errors) = plan(&[]);
    assert_eq!(code, Some(1), "{text}{errors}");
    for line in [
        "  web: replicas 2 → 3",
        "  worker: removed",
        "staging on cluster kube (namespace plan), by server-side dry run:",
        "  ~ Deployment/plan/web\n      spec.replicas: 2 → 3",
        "  - Deployment/plan/worker (pruned: Drover made it and no longer renders it)",
    ] {
        assert!(text.contains(line), "{line:?} in:\n{text}");
    }
    assert!(
        !text.contains("Deployment/plan/api"),
        "unchanged objects are counted, not listed:\n{text}"
    );
    let (code, json, _) = plan(&["-o", "json"]);
    assert_eq!(code, Some(1));
    let json: Value = serde_json::from_str(&json).unwrap();
    let web = json["cluster"]["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["object"]["kind"] == "Deployment" && o["object"]["name"] == "web")
        .cloned()
        .unwrap();
    assert_eq!(web["action"], "update");
    assert_eq!(web["fields"][0]["planned"], 3);
    let (code, offline, _) = plan(&["--offline"]);
    assert_eq!(code, Some(1));
    assert!(
        offline.contains("the cluster was not asked (--offline)"),
        "{offline}"
    );
    // A dry run changes nothing.
    std::thread::sleep(Duration::from_secs(1));
    deployment(kube, &d, "web", |w| w["spec"]["replicas"] == 2);
    assert!(
        kube.json(&["get", "deployment", "worker", "-n", "plan"])
            .is_some()
    );
}

fn an_api_server_outage_mid_release_is_shown_then_resumed_and_nothing_is_applied_twice(
    kube: &Kube,
) {
    let d = Drover::up(kube, "outage");
    first_release_healthy(kube, &d);
    // The API server goes away; a release arrives meanwhile.
    kube.apiserver("apiserver-stop");
    web_v1_5_0(&d);
    let revision = d.repo.commit("web v1.5.0 during an outage");
    let short = &revision[..7];
    let env = staging_status(&d, |e| e["sync"] == "Failed");
    let message = env["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("cluster kube"),
        "says which cluster: {message}"
    );
    kube.apiserver("apiserver-start");
    // It resumes by itself: applies the revision once, then judges its release.
    deployment(kube, &d, "web", |w| {
        w["spec"]["template"]["spec"]["containers"][0]["image"] == "ghcr.io/example/shop-web:v1.5.0"
    });
    let of_revision = |history: &Value| -> Vec<Value> {
        history
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["revision"] == revision.as_str())
            .cloned()
            .collect()
    };
    let history = of_revision(&history_until(
        kube,
        &d,
        &format!("the release of {short} is judged healthy"),
        |h| of_revision(h).iter().any(|r| r["result"] == "healthy"),
    ));
    assert_eq!(
        history.len(),
        1,
        "one release for the revision: {history:?}"
    );
    let printed = d.up.printed();
    let applied = printed
        .lines()
        .filter(|l| l.contains(&format!("revision {short} applied")))
        .count();
    assert_eq!(applied, 1, "applied once:\n{printed}");
    // Said in Drover's words, not once per retry of the client underneath.
    assert!(printed.lines().count() < 40, "a quiet outage:\n{printed}");
    assert!(!printed.contains("eof in poll"), "{printed}");
}

fn a_failed_first_release_fails_without_a_revert_and_a_new_commit_fixes_it(kube: &Kube) {
    let d = Drover::up_with(kube, "first", &[("shop-web:v1.4.0", "shop-web:broken")]);
    let first = last_subject(&d);
    let history = history_until(kube, &d, "the first release fails", |h| {
        h[0]["result"] == "failed"
    });
    let reason = history[0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("first release: nothing ran before it"),
        "{reason}"
    );
    assert_eq!(
        history.as_array().map(Vec::len),
        Some(1),
        "no rollback: {history}"
    );
    assert_eq!(last_subject(&d), first, "nothing is reverted");
    d.repo.edit(
        "environments/staging/web.yaml",
        "shop-web:broken",
        "shop-web:v1.4.1",
    );
    d.repo.commit("web: a working image");
    history_until(kube, &d, "the fix is healthy", |h| {
        h[0]["result"] == "healthy"
    });
}

fn a_wrong_token_is_a_clear_error_in_status(kube: &Kube) {
    let tmp = tempfile::tempdir().unwrap();
    let config = std::fs::read_to_string(&kube.kubeconfig).unwrap();
    let token = quoted(&config, "token");
    let wrong = tmp.path().join("kubeconfig");
    std::fs::write(&wrong, config.replace(token, "not-the-token")).unwrap();
    let wrong_kube = Kube {
        state: kube.state.clone(),
        kubeconfig: wrong,
        _tmp: tmp,
    };
    let d = Drover::up(&wrong_kube, "refused");
    let env = staging_status(&d, |e| e["sync"] == "Failed");
    let message = env["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("refused Drover's credentials"),
        "{message}"
    );
    assert!(
        kube.json(&["get", "namespace", "refused"]).is_none(),
        "nothing is applied"
    );
    // Still running: the API answers.
    let out = support::drover()
        .args(["status", "--state-dir"])
        .arg(&d.state)
        .output()
        .unwrap();
    assert!(out.status.success());
}

/// One test of this binary.
type Test = fn(&Kube);

fn main() {
    let tests: [(&str, Test); 16] = [
        (
            "node_availability_cordons_drains_within_the_budget_and_uncordons",
            nodes::node_availability_cordons_drains_within_the_budget_and_uncordons,
        ),
        (
            "the_helm_chart_renders_what_install_prints_and_the_cluster_takes_it",
            chart::the_helm_chart_renders_what_install_prints_and_the_cluster_takes_it,
        ),
        (
            "the_installed_operator_converges_staging_and_reports_in_fluxs_contract",
            operator::the_installed_operator_converges_staging_and_reports_in_fluxs_contract,
        ),
        (
            "killing_the_leader_hands_over_within_the_lease_and_nothing_is_applied_twice",
            operator::killing_the_leader_hands_over_within_the_lease_and_nothing_is_applied_twice,
        ),
        (
            "a_permission_taken_away_is_named_in_the_status",
            operator::a_permission_taken_away_is_named_in_the_status,
        ),
        (
            "one_up_drives_a_local_cluster_and_a_kubernetes_one_from_one_repo",
            mixed::one_up_drives_a_local_cluster_and_a_kubernetes_one_from_one_repo,
        ),
        (
            "a_wrong_token_is_a_clear_error_in_status",
            a_wrong_token_is_a_clear_error_in_status,
        ),
        (
            "examples_staging_is_applied_as_rendered",
            examples_staging_is_applied_as_rendered,
        ),
        (
            "git_changes_move_the_deployment_and_removed_services_are_pruned",
            git_changes_move_the_deployment_and_removed_services_are_pruned,
        ),
        (
            "drift_with_self_heal_off_is_out_of_sync_and_left_alone",
            drift_with_self_heal_off_is_out_of_sync_and_left_alone,
        ),
        (
            "kubectl_scale_and_edit_are_drift_and_reverted",
            kubectl_scale_and_edit_are_drift_and_reverted,
        ),
        (
            "ready_pods_make_the_release_healthy_and_unready_ones_roll_it_back",
            ready_pods_make_the_release_healthy_and_unready_ones_roll_it_back,
        ),
        (
            "a_failed_first_release_fails_without_a_revert_and_a_new_commit_fixes_it",
            a_failed_first_release_fails_without_a_revert_and_a_new_commit_fixes_it,
        ),
        (
            "an_api_server_outage_mid_release_is_shown_then_resumed_and_nothing_is_applied_twice",
            an_api_server_outage_mid_release_is_shown_then_resumed_and_nothing_is_applied_twice,
        ),
        (
            "drover_plan_shows_the_servers_dry_run_and_what_would_be_pruned_and_changes_nothing",
            drover_plan_shows_the_servers_dry_run_and_what_would_be_pruned_and_changes_nothing,
        ),
        (
            "plain_manifests_are_applied_kept_from_drift_and_a_failed_job_rolls_the_release_back",
            plain_manifests_are_applied_kept_from_drift_and_a_failed_job_rolls_the_release_back,
        ),
    ];
    support::run_shared(&tests, Kube::start, Kube::stop);
}

/// Kubernetes's base64 of a value.
fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}
