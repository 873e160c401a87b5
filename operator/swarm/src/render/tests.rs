//! Rendering checked against golden files (`testdata/`), and the mappings that matter
//! most by name. Regenerate the goldens with `DROVER_BLESS=1 cargo test -p drover-swarm`.

use std::path::Path;

use drover_model::Kind;
use drover_model::service::ServiceSpec;
use serde_json::Value;

use super::*;

/// examples/repo's services of `env`, each rendered.
fn rendered(env: &str) -> Vec<(String, Rendered)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/repo");
    let loaded = drover_load::load_dir(&dir).expect("the repo reads");
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    let state = drover_diff::normalize(&loaded.repo);
    state
        .iter()
        .filter(|(k, _)| k.environment == env && k.kind == Kind::Service)
        .map(|(k, v)| {
            let spec: ServiceSpec = serde_json::from_value(v["spec"].clone()).expect("a spec");
            (k.name.clone(), service(env, &k.name, &spec, true))
        })
        .collect()
}

fn golden(name: &str, text: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name);
    drover_testkit::golden::assert_golden(&path, text, "DROVER_BLESS=1 cargo test -p drover-swarm");
}

#[test]
fn examples_staging_renders_as_its_golden_file() {
    let all: serde_json::Map<String, Value> = rendered("staging")
        .into_iter()
        .map(|(name, r)| (name, json!({"spec": r.spec, "warnings": r.warnings})))
        .collect();
    golden(
        "staging.json",
        &(serde_json::to_string_pretty(&all).unwrap() + "\n"),
    );
}

fn staging(name: &str) -> Value {
    rendered("staging")
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, r)| r.spec)
        .expect("the service is in examples/repo staging")
}

#[test]
fn update_settings_map_one_to_one_but_a_swarm_rollback_is_drovers_whole_release_rollback() {
    let web = staging("web");
    let update = &web["UpdateConfig"];
    assert_eq!(update["Order"], "start-first");
    assert!(update["Monitor"].as_u64().unwrap() > 0);
    // Git's `failureAction: rollback` with automatic rollback on: Swarm pauses and
    // Drover rolls the whole release back (and commits the revert).
    let mut spec: ServiceSpec = ServiceSpec::default();
    spec.update.failure_action = FailureAction::Rollback;
    let on = service("staging", "x", &spec, true).spec;
    let off = service("staging", "x", &spec, false).spec;
    assert_eq!(on["UpdateConfig"]["FailureAction"], "pause");
    assert_eq!(off["UpdateConfig"]["FailureAction"], "rollback");
}

#[test]
fn published_ports_are_host_mode_with_dns_round_robin() {
    let web = staging("web");
    assert_eq!(web["EndpointSpec"]["Mode"], "dnsrr");
    let ports = web["EndpointSpec"]["Ports"].as_array().unwrap();
    assert!(!ports.is_empty(), "web is public: {web:#}");
    assert!(ports.iter().all(|p| p["PublishMode"] == "host"));
    assert_eq!(web["Name"], "staging_web");
    assert_eq!(
        web["TaskTemplate"]["Networks"][0]["Target"],
        "staging_default"
    );
    assert_eq!(web["Labels"]["dev.drover.managed-by"], "drover");
}

#[test]
fn a_global_service_and_an_exec_probe_map_to_swarms_own() {
    let mut spec = ServiceSpec {
        mode: Mode::Global,
        ..ServiceSpec::default()
    };
    let probe: Probe =
        serde_json::from_value(json!({"exec": {"command": ["test", "-f", "/ok"]}})).unwrap();
    spec.liveness_probe = Some(probe);
    let r = service("staging", "agent", &spec, true);
    assert_eq!(r.spec["Mode"], json!({"Global": {}}));
    assert_eq!(
        r.spec["TaskTemplate"]["ContainerSpec"]["Healthcheck"]["Test"],
        json!(["CMD", "test", "-f", "/ok"])
    );
    assert!(r.warnings.is_empty());
}
