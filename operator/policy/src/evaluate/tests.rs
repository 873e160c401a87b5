//! The shipped policies over the example repo and small edits of it.

use drover_load::SourceFile;

use super::*;
use crate::shipped;

fn example() -> Vec<SourceFile> {
    let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/repo"));
    drover_load::read_dir(root).unwrap()
}

fn edit(files: &[SourceFile], path: &str, from: &str, to: &str) -> Vec<SourceFile> {
    let mut files = files.to_vec();
    let file = files.iter_mut().find(|f| f.path == path).unwrap();
    assert!(file.text.contains(from), "{path} lacks {from:?}");
    file.text = file.text.replacen(from, to, 1);
    files
}

fn found(files: &[SourceFile]) -> Vec<String> {
    let loaded = drover_load::load(files);
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    check(&loaded.repo, &shipped())
        .iter()
        .map(|d| {
            format!(
                "{}: {}[{}]: {}",
                d.location,
                d.severity,
                d.code.id(),
                d.message
            )
        })
        .collect()
}

#[test]
fn the_example_repo_keeps_every_shipped_policy() {
    assert_eq!(found(&example()), Vec::<String>::new());
}

#[test]
fn a_production_service_with_one_replica_and_no_probe_breaks_two_rules_at_their_fields() {
    let files = edit(
        &example(),
        "environments/production/web.yaml",
        "replicas: 3",
        "replicas: 1",
    );
    let lines = found(&files);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("environments/production/web.yaml:12:3: error[E133]: service web: runs at least 2 replicas"),
        "{lines:?}"
    );
    // Staging is not production: the same there is fine.
    let staging = edit(
        &example(),
        "environments/staging/web.yaml",
        "replicas: 2",
        "replicas: 1",
    );
    assert_eq!(found(&staging), Vec::<String>::new());
}

#[test]
fn latest_tags_public_services_without_hosts_and_clear_production_secrets_are_caught() {
    let files = edit(
        &example(),
        "environments/staging/api.yaml",
        "shop-api:v2.1.0",
        "shop-api:latest",
    );
    let lines = found(&files);
    assert!(
        lines[0].contains("error[E133]: service api: pins its image"),
        "{lines:?}"
    );
    let files = edit(
        &example(),
        "environments/production/web.yaml",
        "    - host: shop.localhost\n",
        "    -\n",
    );
    let lines = found(&files);
    assert!(
        lines.iter().any(|l| l.contains("service web: is public")),
        "{lines:?}"
    );
    let clear = "apiVersion: drover.dev/v1alpha1\nkind: Secret\nmetadata:\n  name: db-credentials\nspec:\n  data:\n    password: in-clear\n    username: shop\n";
    let mut files = example();
    files
        .iter_mut()
        .find(|f| f.path == "environments/production/secrets.yaml")
        .unwrap()
        .text = clear.into();
    let lines = found(&files);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("environments/production/secrets.yaml:6:3: error[E133]: secret db-credentials: is encrypted in Git"),
        "{lines:?}"
    );
    assert!(!lines[0].contains("in-clear"));
}

#[test]
fn an_image_reference_is_split_into_name_tag_and_digest() {
    let parts = |r: &str| {
        let cel::Value::Map(map) = image(Some(r)) else {
            panic!("a map")
        };
        let get = |k: &str| match map.get(&cel::objects::Key::from(k)) {
            Some(cel::Value::String(s)) => s.to_string(),
            other => panic!("{other:?}"),
        };
        (get("name"), get("tag"), get("digest"))
    };
    assert_eq!(
        parts("ghcr.io/shop/web:v1"),
        ("ghcr.io/shop/web".into(), "v1".into(), String::new())
    );
    assert_eq!(
        parts("registry:5000/web"),
        ("registry:5000/web".into(), String::new(), String::new())
    );
    assert_eq!(
        parts("web:v2@sha256:abc"),
        ("web".into(), "v2".into(), "sha256:abc".into())
    );
    assert_eq!(image(None), cel::Value::Null);
}
