//! `drover crds`: the CRDs a Kubernetes cluster needs, straight from the model.

use crate::support::{repo_root, run_in, stdout};

#[test]
fn crds_prints_one_definition_per_kind() {
    let output = run_in(&repo_root(), &["crds"]);
    assert!(output.status.success());
    let text = stdout(&output);
    for name in ["clusters", "environments", "quotas", "secrets", "services"] {
        assert!(
            text.contains(&format!("name: {name}.drover.dev")),
            "{name} missing"
        );
    }
    assert_eq!(text.matches("kind: CustomResourceDefinition").count(), 5);
}

#[test]
fn crds_write_produces_exactly_the_checked_in_files() {
    let out = tempfile::tempdir().unwrap();
    let output = run_in(
        &repo_root(),
        &["crds", "--write", out.path().to_str().unwrap()],
    );
    assert!(output.status.success());
    for file in ["services.drover.dev.yaml", "schema/drover.schema.json"] {
        let written = std::fs::read_to_string(out.path().join(file)).unwrap();
        let checked_in = std::fs::read_to_string(repo_root().join("crds").join(file)).unwrap();
        assert_eq!(
            written, checked_in,
            "{file} differs from crds/; run `cargo run -p drover -- generate`"
        );
    }
}
