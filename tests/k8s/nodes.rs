//! Node availability on Kubernetes, as Swarm users know it: a Cluster's `nodes:` in Git
//! cordon (`pause`), drain — evicting through the Eviction API, so a
//! PodDisruptionBudget holds what it protects — and uncordon (`active`); `drover node
//! update` overrides Git until told `git`.

use std::time::{Duration, Instant};

use drover_testkit::git::TestRepo;
use serde_json::Value;

use crate::Kube;
use crate::support::{Running, drover};

const SOON: Duration = Duration::from_secs(60);
const NODE: &str = "drain-me";
const NS: &str = "nodes-test";

fn cluster_yaml(availability: &str) -> String {
    format!(
        "apiVersion: drover.dev/v1alpha1\nkind: Cluster\nmetadata:\n  name: kube\nspec:\n  engine: kubernetes\n  kubernetes:\n    nodes:\n      - name: {NODE}\n        availability: {availability}\n"
    )
}

const ENVIRONMENT: &str = "apiVersion: drover.dev/v1alpha1\nkind: Environment\nmetadata:\n  name: nodes\nspec:\n  cluster: kube\n  namespace: nodes-test\n";

const WEB: &str = "apiVersion: drover.dev/v1alpha1
kind: Service
metadata:
  name: web
spec:
  version: v1
  image: ghcr.io/example/web:v1
  replicas: 2
  access: none
  placement:
    constraints:
      - node.labels.pool == drain
";

const BUDGET: &str = "apiVersion: policy/v1beta1
kind: PodDisruptionBudget
metadata:
  name: web
spec:
  minAvailable: 1
  selector:
    matchLabels:
      drover.dev/service: web
";

/// A second fake Node, `pool: drain`, that only this test's Pods go to.
fn add_node(kube: &Kube) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("node.yaml");
    std::fs::write(
        &file,
        format!(
            "apiVersion: v1\nkind: Node\nmetadata: {{name: {NODE}, labels: {{kubernetes.io/hostname: {NODE}, pool: drain}}}}\nstatus:\n  capacity: {{cpu: \"16\", memory: 64Gi, pods: \"100\"}}\n  allocatable: {{cpu: \"16\", memory: 64Gi, pods: \"100\"}}\n  conditions: [{{type: Ready, status: \"True\", reason: Fake, message: fake}}]\n"
        ),
    )
    .unwrap();
    let (ok, text) = kube.kubectl(&["apply", "-f", file.to_str().unwrap()]);
    assert!(ok, "{text}");
    let _ = kube.kubectl(&[
        "taint",
        "node",
        NODE,
        "node.kubernetes.io/not-ready:NoSchedule-",
    ]);
}

fn cordoned(kube: &Kube, up: &Running, yes: bool) {
    let start = Instant::now();
    loop {
        let node = kube.json(&["get", "node", NODE]).unwrap_or_default();
        if node["spec"]["unschedulable"].as_bool().unwrap_or(false) == yes {
            return;
        }
        assert!(
            start.elapsed() < SOON,
            "{NODE} should be {}: {:#}\n{}",
            if yes { "cordoned" } else { "uncordoned" },
            node["metadata"]["annotations"],
            up.printed()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn pods(kube: &Kube) -> Vec<Value> {
    kube.json(&["get", "pods", "-n", NS])
        .map(|l| l["items"].as_array().cloned().unwrap_or_default())
        .unwrap_or_default()
}

fn evicted(pod: &Value) -> bool {
    !pod["metadata"]["deletionTimestamp"].is_null()
}

/// `drover status -o json`'s view of the node.
fn node_status(state: &std::path::Path) -> Value {
    let out = drover()
        .args(["status", "-o", "json", "--state-dir"])
        .arg(state)
        .output()
        .unwrap();
    let status: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    status["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["name"] == NODE)
        .cloned()
        .unwrap_or_default()
}

pub(crate) fn node_availability_cordons_drains_within_the_budget_and_uncordons(kube: &Kube) {
    add_node(kube);
    let tmp = tempfile::tempdir().unwrap();
    let repo = TestRepo::init(&tmp.path().join("repo"));
    repo.write("clusters/kube.yaml", &cluster_yaml("active"))
        .write("environments/nodes/environment.yaml", ENVIRONMENT)
        .write("environments/nodes/web.yaml", WEB)
        .write("environments/nodes/budget.yaml", BUDGET);
    repo.commit("web on drain-me, with a budget");
    let state = tmp.path().join("state");
    let up = Running::start(
        &[
            "up",
            repo.dir.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
        ],
        &[("KUBECONFIG", kube.kubeconfig.to_str().unwrap())],
    );
    // Both replicas run (as the kubelet would say) on drain-me.
    let start = Instant::now();
    while pods(kube)
        .iter()
        .filter(|p| p["spec"]["nodeName"] == NODE && p["status"]["phase"] == "Running")
        .count()
        < 2
    {
        assert!(
            start.elapsed() < SOON,
            "web never ran on {NODE}: {}",
            up.printed()
        );
        kube.mark_ready(NS, |_| true);
        std::thread::sleep(Duration::from_millis(300));
    }
    kube.until(&["get", "pdb", "web", "-n", NS], SOON, |b| {
        b["status"]["disruptionsAllowed"] == 1
    });
    // pause: cordoned, nothing moves.
    repo.write("clusters/kube.yaml", &cluster_yaml("pause"));
    repo.commit("pause drain-me");
    cordoned(kube, &up, true);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        pods(kube).iter().all(|p| !evicted(p)),
        "pause evicted a Pod"
    );
    // drain: evicted as far as the budget allows — one of two — and said so.
    repo.write("clusters/kube.yaml", &cluster_yaml("drain"));
    repo.commit("drain drain-me");
    let start = Instant::now();
    loop {
        let node = node_status(&state);
        let waiting = node["status"]
            .as_str()
            .unwrap_or_default()
            .contains("PodDisruptionBudget");
        if waiting && pods(kube).iter().filter(|p| evicted(p)).count() == 1 {
            assert_eq!(node["availability"], "drain");
            break;
        }
        assert!(
            start.elapsed() < SOON,
            "the drain should evict one Pod and wait on the budget: {node:#} {:#?}",
            pods(kube)
                .iter()
                .map(|p| &p["metadata"]["deletionTimestamp"])
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // active: uncordoned.
    repo.write("clusters/kube.yaml", &cluster_yaml("active"));
    repo.commit("drain-me back");
    cordoned(kube, &up, false);
    // `drover node update` overrides Git, kept on the Node, until `git`.
    let update = |availability: &str| {
        let out = drover()
            .args([
                "node",
                "update",
                "--availability",
                availability,
                NODE,
                "--state-dir",
            ])
            .arg(&state)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    update("pause");
    cordoned(kube, &up, true);
    let node = kube.json(&["get", "node", NODE]).unwrap();
    assert_eq!(
        node["metadata"]["annotations"]["drover.dev/availability"],
        "pause"
    );
    let start = Instant::now();
    while node_status(&state)["availability_override"] != "pause" {
        assert!(start.elapsed() < SOON, "{:#}", node_status(&state));
        std::thread::sleep(Duration::from_millis(250));
    }
    update("git");
    cordoned(kube, &up, false);
    drop(up);
    let _ = kube.kubectl(&["delete", "node", NODE, "--wait=false"]);
}
