//! Rendering checked against golden files (`testdata/`), and the mappings that matter
//! most checked by name. Regenerate the goldens with
//! `DROVER_BLESS=1 cargo test -p drover-kube render`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use drover_diff::{ObjectKey, State};
use drover_model::Kind;
use serde_json::Value;

use super::*;

fn repo_state(dir: &Path) -> State {
    let loaded = drover_load::load_dir(dir).expect("the repo reads");
    assert!(
        loaded.diagnostics.is_empty(),
        "the repo loads cleanly: {:?}",
        loaded.diagnostics
    );
    drover_diff::normalize(&loaded.repo)
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/repo")
}

fn environment(state: &State, env: &str) -> BTreeMap<ObjectKey, Value> {
    state
        .iter()
        .filter(|(k, _)| k.environment == env)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn target(namespace: &str, autoscaling: &str) -> Target {
    Target {
        namespace: namespace.to_owned(),
        apis: Apis {
            autoscaling: autoscaling.to_owned(),
            ..Apis::default()
        },
        progress_deadline: 120,
    }
}

/// Compares `text` with the golden file, or rewrites it under `DROVER_BLESS`.
fn golden(name: &str, text: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name);
    drover_testkit::golden::assert_golden(&path, text, "DROVER_BLESS=1 cargo test -p drover-kube");
}

fn as_yaml(rendered: &Rendered) -> String {
    let mut text = String::new();
    for warning in &rendered.warnings {
        text.push_str(&format!("# warning: {warning}\n"));
    }
    for object in &rendered.objects {
        text.push_str("---\n");
        text.push_str(&drover_diff::to_yaml(object));
    }
    text
}

/// An environment of examples/repo, rendered into `namespace`.
fn examples_rendered(
    env: &str,
    namespace: &str,
    autoscaling: &str,
) -> (Rendered, Vec<RenderError>) {
    let state = repo_state(&examples());
    render_environment(&environment(&state, env), &target(namespace, autoscaling))
}

#[test]
fn examples_staging_renders_as_its_golden_file() {
    let (rendered, errors) = examples_rendered("staging", "staging", "autoscaling/v2");
    assert!(errors.is_empty(), "{errors:?}");
    golden("staging.yaml", &as_yaml(&rendered));
}

#[test]
fn examples_production_renders_as_its_golden_file() {
    let (rendered, errors) =
        examples_rendered("production", "shop-production", "autoscaling/v2beta2");
    assert!(errors.is_empty(), "{errors:?}");
    golden("production.yaml", &as_yaml(&rendered));
}

fn find<'a>(rendered: &'a Rendered, kind: &str, name: &str) -> &'a Value {
    rendered
        .objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind} {name} is rendered"))
}

fn service_key(name: &str) -> ObjectKey {
    ObjectKey {
        environment: "staging".into(),
        kind: Kind::Service,
        name: name.into(),
    }
}

fn rendered_service(spec: Value) -> Result<Rendered, RenderError> {
    let value = serde_json::json!({
        "apiVersion": "drover.dev/v1alpha1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": spec,
    });
    render(
        &service_key("web"),
        &value,
        &target("staging", "autoscaling/v2"),
    )
}

#[test]
fn start_first_updates_surge_and_stop_first_updates_take_down_first() {
    let surge = rendered_service(serde_json::json!({
        "image": "web:1", "replicas": 4,
        "update": {"parallelism": 2, "order": "start-first", "monitor": "7s"},
    }))
    .unwrap();
    let deployment = find(&surge, "Deployment", "web");
    assert_eq!(
        deployment["spec"]["strategy"]["rollingUpdate"],
        serde_json::json!({"maxSurge": 2, "maxUnavailable": 0})
    );
    assert_eq!(deployment["spec"]["minReadySeconds"], 7);
    let stop = rendered_service(serde_json::json!({
        "image": "web:1", "update": {"parallelism": 0, "order": "stop-first"},
    }))
    .unwrap();
    assert_eq!(
        find(&stop, "Deployment", "web")["spec"]["strategy"]["rollingUpdate"],
        serde_json::json!({"maxSurge": 0, "maxUnavailable": "100%"})
    );
}

#[test]
fn access_modes_choose_the_service_type() {
    for (access, kind, internal) in [
        ("internal", Some("ClusterIP"), false),
        ("private", Some("LoadBalancer"), true),
        ("public", Some("LoadBalancer"), false),
        ("none", None, false),
    ] {
        let rendered = rendered_service(serde_json::json!({
            "image": "web:1", "access": access, "ports": [{"name": "http"}],
        }))
        .unwrap();
        let service = rendered.objects.iter().find(|o| o["kind"] == "Service");
        assert_eq!(
            service.map(|s| s["spec"]["type"].as_str().unwrap()),
            kind,
            "{access}"
        );
        let annotated = service.is_some_and(|s| {
            s["metadata"]["annotations"]["networking.gke.io/load-balancer-type"] == "Internal"
        });
        assert_eq!(annotated, internal, "{access}");
    }
}

#[test]
fn an_autoscaled_service_leaves_replicas_to_its_autoscaler() {
    let rendered = rendered_service(serde_json::json!({
        "image": "web:1", "replicas": 3,
        "autoscaling": {"minReplicas": 2, "maxReplicas": 5, "metrics": [{"type": "cpu", "target": 60}]},
    }))
    .unwrap();
    assert!(
        find(&rendered, "Deployment", "web")["spec"]
            .get("replicas")
            .is_none()
    );
    let hpa = find(&rendered, "HorizontalPodAutoscaler", "web");
    assert_eq!(hpa["apiVersion"], "autoscaling/v2");
    assert_eq!(hpa["spec"]["minReplicas"], 2);
}

#[test]
fn global_services_are_daemon_sets() {
    let rendered =
        rendered_service(serde_json::json!({"image": "agent:1", "mode": "global"})).unwrap();
    let daemon = find(&rendered, "DaemonSet", "web");
    assert_eq!(daemon["spec"]["updateStrategy"]["type"], "RollingUpdate");
    assert!(rendered.objects.iter().all(|o| o["kind"] != "Deployment"));
}

#[test]
fn constraints_become_node_selectors_and_affinity() {
    let rendered = rendered_service(serde_json::json!({
        "image": "web:1",
        "placement": {"constraints": ["node.labels.zone == a", "node.labels.disk != hdd", "node.role == worker"]},
    }))
    .unwrap();
    let pod = &find(&rendered, "Deployment", "web")["spec"]["template"]["spec"];
    assert_eq!(pod["nodeSelector"], serde_json::json!({"zone": "a"}));
    let terms = &pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"][0]["matchExpressions"];
    assert_eq!(terms[0]["operator"], "NotIn");
    assert_eq!(terms[1]["operator"], "DoesNotExist");
}

#[test]
fn what_kubernetes_cannot_run_is_a_clear_error() {
    let no_image = rendered_service(serde_json::json!({"command": ["sleep", "1"]})).unwrap_err();
    assert!(no_image.to_string().contains("service web: has no `image`"));
    let one_off =
        rendered_service(serde_json::json!({"image": "job:1", "restartPolicy": "never"})).unwrap();
    assert!(one_off.warnings[0].contains("restartPolicy never is not available"));
}

#[test]
fn secrets_render_without_values_and_variables_take_their_keys() {
    let (rendered, _) = examples_rendered("staging", "staging", "autoscaling/v2");
    let secret = find(&rendered, "Secret", "db-credentials");
    assert!(
        secret.get("data").is_none(),
        "the engine fills data at apply"
    );
    assert!(
        secret["metadata"]["annotations"]["drover.dev/fingerprints"]
            .as_str()
            .unwrap()
            .contains("sha256:")
    );
    let text = as_yaml(&rendered);
    assert!(!text.contains("ENC["), "no ciphertext is rendered");
    let api = find(&rendered, "Deployment", "api");
    let env = &api["spec"]["template"]["spec"]["containers"][0]["env"];
    let user = env
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "DB_USER")
        .unwrap();
    assert_eq!(
        user["valueFrom"]["secretKeyRef"],
        serde_json::json!({"name": "db-credentials", "key": "username"})
    );
}

#[test]
fn every_rendered_object_names_its_owner() {
    let (rendered, _) = examples_rendered("staging", "staging", "autoscaling/v2");
    for object in &rendered.objects {
        let owner = object["metadata"]["annotations"][OWNER].as_str().unwrap();
        assert!(owner.starts_with("staging/"), "{owner}");
        assert_eq!(object["metadata"]["labels"][MANAGED_BY.0], MANAGED_BY.1);
    }
}
