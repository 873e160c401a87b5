//! `drover operator` on the real control plane, installed as users install it
//! (`drover install --print | kubectl apply --server-side -f -`) and run with the
//! installed ServiceAccount's own token, so the least-privilege RBAC is proven enough:
//! it converges examples/kubernetes' staging from a Git server, reports in Flux's
//! status contract (conditions, printer columns, `kubectl wait`, Events), hands over
//! from a killed leader without applying anything twice, and names a permission taken
//! away in the status.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use drover_testkit::git::{GitDaemon, TestRepo, bare, git};
use serde_json::Value;

use crate::Kube;
use crate::support::{Running, drover, repo_root};

const SOON: Duration = Duration::from_secs(60);
/// Short, so a hand-over is quick; the test checks it happens within it.
const LEASE: Duration = Duration::from_secs(4);

/// The operator installed in the test cluster, and a kubeconfig with its
/// ServiceAccount's token.
struct Installed {
    kubeconfig: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Installed {
    fn new(kube: &Kube) -> Installed {
        let tmp = tempfile::tempdir().unwrap();
        apply_install(kube);
        let secret = kube.until(
            &["get", "serviceaccount", "drover", "-n", "drover-system"],
            SOON,
            |sa| sa["secrets"][0]["name"].is_string(),
        )["secrets"][0]["name"]
            .as_str()
            .unwrap()
            .to_owned();
        kube.until(
            &["get", "secret", &secret, "-n", "drover-system"],
            SOON,
            |s| s["data"]["token"].is_string(),
        );
        let (ok, token) = kube.kubectl(&[
            "get",
            "secret",
            &secret,
            "-n",
            "drover-system",
            "-o",
            "go-template={{.data.token | base64decode}}",
        ]);
        assert!(ok, "{token}");
        let admin = std::fs::read_to_string(&kube.kubeconfig).unwrap();
        let server = crate::quoted(&admin, "server");
        let kubeconfig = tmp.path().join("operator.kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: \"{server}\", insecure-skip-tls-verify: true}}}}]\nusers: [{{name: drover, user: {{token: \"{token}\"}}}}]\ncontexts: [{{name: c, context: {{cluster: c, user: drover}}}}]\ncurrent-context: c\n"
            ),
        )
        .unwrap();
        Installed {
            kubeconfig,
            _tmp: tmp,
        }
    }
}

/// `drover install --print | kubectl apply --server-side -f -` (again: it is idempotent,
/// and it puts back a rule a test took away).
fn apply_install(kube: &Kube) {
    let out = drover()
        .args([
            "install",
            "--print",
            "--repo",
            "git://example.invalid/config.git",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ok, text) = kube.apply(&out.stdout);
    assert!(ok, "kubectl apply of the installation failed: {text}");
}

/// examples/kubernetes' staging as environment `env`, in namespace `ns`, pushed to a
/// repository served by `git daemon`.
struct Config {
    work: TestRepo,
    remote: PathBuf,
    daemon: GitDaemon,
    env: String,
    ns: String,
    dir: tempfile::TempDir,
}

impl Config {
    fn new(env: &str, ns: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let served = dir.path().join("served");
        let remote = bare(&served, "config.git");
        let daemon = GitDaemon::serve(&served);
        let work = TestRepo::init(&dir.path().join("work"));
        let examples = repo_root().join("examples/kubernetes");
        work.write(
            "clusters/kube.yaml",
            &std::fs::read_to_string(examples.join("clusters/kube.yaml")).unwrap(),
        );
        for entry in std::fs::read_dir(examples.join("environments/staging")).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path)
                .unwrap()
                .replace("  name: staging\n", &format!("  name: {env}\n"))
                .replace(
                    "  cluster: kube\n",
                    &format!("  cluster: kube\n  namespace: {ns}\n"),
                )
                .replace("progressDeadline: 2m", "progressDeadline: 60s");
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            work.write(&format!("environments/{env}/{name}"), &text);
        }
        work.commit(&format!("{env} on Kubernetes"));
        let config = Config {
            work,
            remote,
            daemon,
            env: env.to_owned(),
            ns: ns.to_owned(),
            dir,
        };
        config.push();
        config
    }

    fn push(&self) {
        git(
            &self.work.dir,
            &["push", "-q", "-f", self.remote.to_str().unwrap(), "main"],
        );
    }

    /// Commits and pushes a change of web's version.
    fn web_version(&self, from: &str, to: &str) -> String {
        let file = format!("environments/{}/web.yaml", self.env);
        self.work
            .edit(
                &file,
                &format!("shop-web:{from}"),
                &format!("shop-web:{to}"),
            )
            .edit(
                &file,
                &format!("version: {from}"),
                &format!("version: {to}"),
            );
        let id = self.work.commit(&format!("web {to}"));
        self.push();
        id
    }

    /// `drover operator` as the installed ServiceAccount, named `identity`.
    fn operator(&self, installed: &Installed, identity: &str) -> Running {
        let state = self.dir.path().join(format!("state-{identity}"));
        Running::start(
            &[
                "operator",
                "--repo",
                &self.daemon.url("config.git"),
                "--namespace",
                "drover-system",
                "--state-dir",
                state.to_str().unwrap(),
                "--identity",
                identity,
                "--poll",
                "1s",
                "--lease-duration",
                &format!("{}s", LEASE.as_secs()),
            ],
            &[("KUBECONFIG", installed.kubeconfig.to_str().unwrap())],
        )
    }
}

/// The Environment resource, once `check` holds for it.
fn environment(kube: &Kube, name: &str, check: impl Fn(&Value) -> bool) -> Value {
    kube.until(&["get", "environment", name], SOON, check)
}

/// The condition `type_` of an Environment resource: (status, reason, message).
fn condition(resource: &Value, type_: &str) -> Option<(String, String, String)> {
    let c = resource["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)?;
    let text = |f: &str| c[f].as_str().unwrap_or_default().to_owned();
    Some((text("status"), text("reason"), text("message")))
}

fn is(resource: &Value, type_: &str, status: &str) -> bool {
    condition(resource, type_).is_some_and(|(s, _, _)| s == status)
}

/// Plays the kubelet until the environment is Ready.
fn ready(kube: &Kube, config: &Config) -> Value {
    let start = Instant::now();
    loop {
        kube.mark_ready(&config.ns, |_| true);
        if let Some(resource) = kube.json(&["get", "environment", &config.env])
            && is(&resource, "Ready", "True")
        {
            return resource;
        }
        assert!(
            start.elapsed() < SOON * 2,
            "{} never became Ready: {:?}",
            config.env,
            kube.json(&["get", "environment", &config.env])
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Each Deployment's resourceVersion in `ns`.
fn versions(kube: &Kube, ns: &str) -> Vec<(String, String)> {
    let list = kube.json(&["get", "deployments", "-n", ns]).unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["metadata"]["name"].as_str().unwrap().to_owned(),
                d["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect()
}

fn cleanup(kube: &Kube, config: &Config) {
    let _ = kube.kubectl(&["delete", "environment", &config.env, "--wait=false"]);
}

pub(crate) fn the_installed_operator_converges_staging_and_reports_in_fluxs_contract(kube: &Kube) {
    let installed = Installed::new(kube);
    let config = Config::new("staging", "op-staging");
    let operator = config.operator(&installed, "replica-a");
    let first = git(&config.work.dir, &["rev-parse", "HEAD"]);
    let resource = environment(kube, "staging", |r| {
        r["status"]["lastAppliedRevision"] == first.as_str()
    });
    assert!(
        is(&resource, "Reconciling", "True"),
        "a release is being judged: {resource:#}"
    );
    let resource = ready(kube, &config);
    assert_eq!(
        condition(&resource, "Healthy").map(|c| c.1),
        Some("Succeeded".to_owned())
    );
    assert_eq!(resource["status"]["observedGeneration"], 1);
    let inventory = resource["status"]["inventory"]["entries"].to_string();
    assert!(
        inventory.contains("op-staging_web_apps_Deployment"),
        "{inventory}"
    );
    assert_eq!(resource["status"]["history"][0]["result"], "healthy");
    // What people type.
    let (ok, table) = kube.kubectl(&["get", "environments", "-A"]);
    assert!(ok, "{table}");
    let header = table.lines().next().unwrap_or_default();
    for column in ["NAME", "REVISION", "READY", "STATUS", "AGE"] {
        assert!(header.contains(column), "{table}");
    }
    let row: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with("staging "))
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        row[..6],
        ["staging", &first, "True", "Applied", "revision", &first],
        "{table}"
    );
    let (ok, text) = kube.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "environment/staging",
        "--timeout=10s",
    ]);
    assert!(ok, "kubectl wait: {text}");
    let (_, events) = kube.kubectl(&[
        "get",
        "events",
        "-n",
        "kube-system",
        "--field-selector",
        "involvedObject.kind=Environment,involvedObject.name=staging",
    ]);
    assert!(events.contains("ReleaseHealthy"), "{events}");
    // An invalid commit is rejected: Stalled, with the last valid revision in force.
    config.work.write(
        "environments/staging/web.yaml",
        "apiVersion: drover.dev/v1alpha1\nkind: Service\nmetadata:\n  name: web\nspec:\n  replicas: many\n",
    );
    let bad = config.work.commit("web: a typo");
    config.push();
    let resource = environment(kube, "staging", |r| {
        r["status"]["lastAttemptedRevision"] == bad.as_str()
    });
    let (status, reason, message) = condition(&resource, "Ready").unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "RevisionRejected")
    );
    assert!(message.contains("replicas"), "{message}");
    assert!(is(&resource, "Stalled", "True"), "{resource:#}");
    assert_eq!(resource["status"]["lastAppliedRevision"], first.as_str());
    git(&config.work.dir, &["revert", "--no-edit", "HEAD"]);
    config.push();
    // After the revert, Ready again and no longer Stalled (kstatus: the condition goes).
    environment(kube, "staging", |r| {
        is(r, "Ready", "True") && condition(r, "Stalled").is_none()
    });
    // `flux reconcile`'s way of asking is honoured.
    let (ok, text) = kube.kubectl(&[
        "annotate",
        "--overwrite",
        "environment/staging",
        "reconcile.fluxcd.io/requestedAt=now-1",
    ]);
    assert!(ok, "{text}");
    environment(kube, "staging", |r| {
        r["status"]["lastHandledReconcileAt"] == "now-1"
    });
    drop(operator);
    cleanup(kube, &config);
}

pub(crate) fn killing_the_leader_hands_over_within_the_lease_and_nothing_is_applied_twice(
    kube: &Kube,
) {
    let installed = Installed::new(kube);
    let config = Config::new("handover", "op-handover");
    let mut leader = config.operator(&installed, "replica-a");
    leader.expect_line(SOON, |l| l.contains("leading: this replica acts"));
    let standby = config.operator(&installed, "replica-b");
    standby.expect_line(SOON, |l| l.contains("waiting for the Lease"));
    ready(kube, &config);
    let before = versions(kube, &config.ns);
    let history = environment(kube, "handover", |_| true)["status"]["history"].clone();
    standby.expect_quiet(Duration::from_secs(1), |l| l.contains("leading"));
    // A crash, not a stop: the Lease is not given back, it runs out.
    let killed = Instant::now();
    let _ = Command::new("kill")
        .args(["-KILL", &leader.pid().to_string()])
        .status();
    let _ = leader.wait_exit(Duration::from_secs(5));
    standby.expect_line(SOON, |l| l.contains("leading: this replica acts"));
    let waited = killed.elapsed();
    assert!(
        waited < LEASE + Duration::from_secs(5),
        "the hand-over took {waited:?} with a {LEASE:?} lease"
    );
    standby.expect_line(SOON, |l| l.contains("taken over at revision"));
    // Its passes find nothing to do: the same objects, the same history.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        versions(kube, &config.ns),
        before,
        "something was applied again"
    );
    let resource = environment(kube, "handover", |r| is(r, "Ready", "True"));
    assert_eq!(resource["status"]["history"], history);
    // And it acts: a new commit is released by the new leader.
    let next = config.web_version("v1.4.0", "v1.5.0");
    environment(kube, "handover", |r| {
        r["status"]["lastAppliedRevision"] == next.as_str()
    });
    ready(kube, &config);
    drop(standby);
    cleanup(kube, &config);
}

pub(crate) fn a_permission_taken_away_is_named_in_the_status(kube: &Kube) {
    let installed = Installed::new(kube);
    let config = Config::new("rbac", "op-rbac");
    let operator = config.operator(&installed, "replica-a");
    ready(kube, &config);
    // The cluster's owner takes Deployments away from the operator's ClusterRole.
    let role = kube.json(&["get", "clusterrole", "drover"]).unwrap();
    let rules: Vec<Value> = role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["apiGroups"][0] != "apps")
        .cloned()
        .collect();
    let patch = serde_json::json!({ "rules": rules }).to_string();
    let (ok, text) = kube.kubectl(&[
        "patch",
        "clusterrole",
        "drover",
        "--type=merge",
        "-p",
        &patch,
    ]);
    assert!(ok, "{text}");
    config.web_version("v1.4.0", "v1.5.0");
    let resource = environment(kube, "rbac", |r| is(r, "Ready", "False"));
    let (_, reason, message) = condition(&resource, "Ready").unwrap();
    assert_eq!(reason, "ReconciliationFailed");
    assert!(
        message.contains("forbidden") && message.contains("deployments"),
        "the status should name the missing permission: {message}"
    );
    assert!(
        message.contains("system:serviceaccount:drover-system:drover"),
        "and who lacks it: {message}"
    );
    // Given back, the operator goes on by itself.
    apply_install(kube);
    environment(kube, "rbac", |r| {
        r["status"]["lastAppliedRevision"] == git(&config.work.dir, &["rev-parse", "HEAD"]).as_str()
    });
    drop(operator);
    cleanup(kube, &config);
}
