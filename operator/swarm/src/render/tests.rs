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
    let target = staging_target();
    let secrets: SecretVersions = state
        .iter()
        .filter(|(k, _)| k.environment == env && k.kind == Kind::Secret)
        .map(|(k, v)| {
            let versions = secret_versions(&target, &k.name, v);
            (
                k.name.clone(),
                versions.into_iter().map(|v| (v.key, v.name)).collect(),
            )
        })
        .collect();
    state
        .iter()
        .filter(|(k, _)| k.environment == env && k.kind == Kind::Service)
        .map(|(k, v)| {
            let spec: ServiceSpec = serde_json::from_value(v["spec"].clone()).expect("a spec");
            (k.name.clone(), service(&target, &k.name, &spec, &secrets))
        })
        .collect()
}

fn staging_target() -> Target {
    Target::of("staging", &json!({"spec": {"cluster": "swarm"}}))
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
    let mut target = staging_target();
    let on = service(&target, "x", &spec, &SecretVersions::new()).spec;
    target.automatic_rollback = false;
    let off = service(&target, "x", &spec, &SecretVersions::new()).spec;
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
    let r = service(&staging_target(), "agent", &spec, &SecretVersions::new());
    assert_eq!(r.spec["Mode"], json!({"Global": {}}));
    assert_eq!(
        r.spec["TaskTemplate"]["ContainerSpec"]["Healthcheck"]["Test"],
        json!(["CMD", "test", "-f", "/ok"])
    );
    assert!(r.warnings.is_empty());
}

#[test]
fn a_secret_key_is_a_swarm_secret_named_by_its_value_and_mounted_as_a_file() {
    let target = Target::of("staging", &json!({"spec": {"namespace": "shop"}}));
    let v1 = json!({"spec": {"data": {"password": "sha256:0a1b2c3d"}}});
    let v2 = json!({"spec": {"data": {"password": "sha256:99887766"}}});
    let first = secret_versions(&target, "db", &v1);
    let second = secret_versions(&target, "db", &v2);
    assert_eq!(first[0].name, "shop_db_password-0a1b2c3d");
    assert_ne!(first[0].name, second[0].name, "a new value is a new secret");
    assert_eq!(first[0].labels["dev.drover.secret"], "db");
    let long = secret_versions(&target, &"s".repeat(80), &v1);
    assert_eq!(long[0].name.len(), 64);
    assert!(long[0].name.ends_with("-0a1b2c3d"));

    let spec: ServiceSpec = serde_json::from_value(json!({
        "image": "api:1", "secrets": [{"name": "db"}, {"name": "tls", "target": "/etc/tls/"}],
        "placement": {"constraints": ["node.name == n1"], "preferences": [{"spread": "node.labels.zone"}]},
    }))
    .unwrap();
    let secrets = SecretVersions::from([
        (
            "db".to_owned(),
            [("password".to_owned(), first[0].name.clone())].into(),
        ),
        (
            "tls".to_owned(),
            [("key".to_owned(), "shop_tls_key-1".to_owned())].into(),
        ),
    ]);
    let r = service(&target, "api", &spec, &secrets);
    let files = &r.spec["TaskTemplate"]["ContainerSpec"]["Secrets"];
    assert_eq!(files[0]["File"]["Name"], "/run/secrets/db/password");
    assert_eq!(files[0]["SecretName"], "shop_db_password-0a1b2c3d");
    assert_eq!(files[1]["File"]["Name"], "/etc/tls/key");
    assert_eq!(r.spec["Name"], "shop_api");
    let placement = &r.spec["TaskTemplate"]["Placement"];
    assert_eq!(placement["Constraints"], json!(["node.hostname == n1"]));
    assert_eq!(
        placement["Preferences"],
        json!([{"Spread": {"SpreadDescriptor": "node.labels.zone"}}])
    );
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}
