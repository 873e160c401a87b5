//! charts/drover, rendered and linted by Helm itself (Helm 4's Go SDK through the
//! helm-python-sdk wheel, tests/helm): it gives, object by object, what
//! `drover install --print` gives, and what it renders is applied to the real
//! control plane.

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::{Value, json};

use crate::Kube;
use crate::support::{drover, repo_root};

/// Labels Helm's conventions add and the installer has no use for.
const HELM_LABELS: [&str; 3] = [
    "helm.sh/chart",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/managed-by",
];

const REPO: &str = "https://git.example.com/platform/config.git";

fn documents(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_str_multiple::<Value, Vec<Value>>(yaml)
        .unwrap_or_else(|e| panic!("not YAML ({e}):\n{yaml}"))
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

fn key(object: &Value) -> String {
    format!(
        "{}/{}/{}",
        object["kind"].as_str().unwrap_or_default(),
        object["metadata"]["namespace"].as_str().unwrap_or_default(),
        object["metadata"]["name"].as_str().unwrap_or_default()
    )
}

/// The chart rendered by Helm with `values`: (templates and CRDs, lint report).
fn helm_render(values: &Value) -> (Vec<Value>, Value) {
    let root = repo_root();
    let python = Command::new("bash")
        .arg(root.join("tests/helm/helm.sh"))
        .output()
        .expect("tests/helm/helm.sh runs");
    assert!(
        python.status.success(),
        "tests/helm/helm.sh: {}",
        String::from_utf8_lossy(&python.stderr)
    );
    let python = String::from_utf8_lossy(&python.stdout).trim().to_owned();
    let out = Command::new(python)
        .arg(root.join("tests/helm/render.py"))
        .arg(root.join("charts/drover"))
        .arg("drover-system")
        .arg(values.to_string())
        .output()
        .expect("render.py runs");
    assert!(
        out.status.success(),
        "helm render failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut objects = Vec::new();
    for crd in rendered["crds"].as_array().unwrap() {
        objects.extend(documents(crd.as_str().unwrap()));
    }
    for yaml in rendered["templates"].as_object().unwrap().values() {
        objects.extend(documents(yaml.as_str().unwrap()));
    }
    (objects, rendered["lint"].clone())
}

fn without_helm_labels(mut object: Value) -> Value {
    if let Some(labels) = object
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        for label in HELM_LABELS {
            labels.remove(label);
        }
    }
    object
}

pub(crate) fn the_helm_chart_renders_what_install_prints_and_the_cluster_takes_it(kube: &Kube) {
    let values = json!({
        "repo": {"url": REPO, "branch": "main", "path": "deploy"},
        "gitSecret": "git-credentials",
        "webhookSecret": "webhook",
        "ageKeySecret": "sops-age",
        "metricsPublic": true,
    });
    let (chart, lint) = helm_render(&values);
    let problems: Vec<&Value> = lint["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["severity"].as_u64().unwrap_or(0) >= 2)
        .collect();
    assert!(
        problems.is_empty() && lint["errors"].as_array().unwrap().is_empty(),
        "helm lint --strict: {lint:#}"
    );
    let out = drover()
        .args([
            "install", "--print", "--repo", REPO, "--branch", "main", "--path", "deploy",
        ])
        .args([
            "--git-secret",
            "git-credentials",
            "--webhook-secret",
            "webhook",
            "--age-key-secret",
            "sops-age",
            "--metrics-public",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed: BTreeMap<String, Value> = documents(&String::from_utf8_lossy(&out.stdout))
        .into_iter()
        // Helm installs into a namespace it is given (`--create-namespace`).
        .filter(|o| o["kind"] != "Namespace")
        .map(|o| (key(&o), o))
        .collect();
    let rendered: BTreeMap<String, Value> = chart
        .iter()
        .cloned()
        .map(without_helm_labels)
        .map(|o| (key(&o), o))
        .collect();
    assert_eq!(
        printed.keys().collect::<Vec<_>>(),
        rendered.keys().collect::<Vec<_>>(),
        "the chart and `drover install --print` make different objects"
    );
    for (name, object) in &printed {
        assert_eq!(
            &rendered[name], object,
            "{name} differs between the chart (left) and `drover install --print` (right)"
        );
    }
    // And the API server takes what Helm rendered.
    let stream: String = chart
        .iter()
        .map(|o| format!("---\n{}", serde_saphyr::to_string(o).unwrap()))
        .collect();
    let _ = kube.kubectl(&["create", "namespace", "drover-system"]);
    let (ok, text) = kube.apply(stream.as_bytes());
    assert!(ok, "kubectl apply of the rendered chart: {text}");
    let deployment = kube
        .json(&["get", "deployment", "drover", "-n", "drover-system"])
        .unwrap();
    assert_eq!(
        deployment["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "Helm"
    );
    // `drover install` applies the same by itself (and puts the installer's own labels
    // back, for the tests that follow).
    let out = drover()
        .args(["install", "--repo", REPO])
        .env("KUBECONFIG", &kube.kubeconfig)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "drover install: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("Deployment/drover applied"), "{said}");
    let deployment = kube
        .json(&[
            "get",
            "deployment",
            "drover",
            "-n",
            "drover-system",
            "--show-managed-fields",
        ])
        .unwrap();
    assert!(
        deployment["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["manager"] == "drover-install"),
        "{deployment:#}"
    );
}
