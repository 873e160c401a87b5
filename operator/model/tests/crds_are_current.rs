//! `crds/` and `docs/reference.md` must hold exactly what the model generates. When
//! this fails, run `cargo run -p drover -- generate` and commit the result.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn files_under(dir: &Path, root: &Path, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).expect("crds/ is readable") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files_under(&path, root, out);
        } else {
            out.insert(
                path.strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/"),
            );
        }
    }
}

#[test]
fn checked_in_crds_match_the_model() {
    let crds = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../crds");
    let generated = drover_model::schema::crd_files();
    let mut stale = Vec::new();
    for file in &generated {
        let on_disk = std::fs::read_to_string(crds.join(&file.path)).unwrap_or_default();
        if on_disk != file.content {
            stale.push(file.path.clone());
        }
    }
    let mut present = BTreeSet::new();
    files_under(&crds, &crds, &mut present);
    let expected: BTreeSet<String> = generated.iter().map(|f| f.path.clone()).collect();
    let extra: Vec<&String> = present.difference(&expected).collect();
    assert!(
        stale.is_empty() && extra.is_empty(),
        "crds/ is out of date (changed: {stale:?}, not generated: {extra:?}).\n\
         Regenerate with: cargo run -p drover -- generate"
    );
}

#[test]
fn the_helm_charts_crds_match_the_model() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let chart = root.join(drover_model::schema::CHART_CRDS);
    let generated: Vec<_> = drover_model::schema::crd_files()
        .into_iter()
        .filter(|f| f.path.ends_with(".yaml"))
        .collect();
    let stale: Vec<&String> = generated
        .iter()
        .filter(|f| std::fs::read_to_string(chart.join(&f.path)).unwrap_or_default() != f.content)
        .map(|f| &f.path)
        .collect();
    let mut present = BTreeSet::new();
    files_under(&chart, &chart, &mut present);
    let expected: BTreeSet<String> = generated.iter().map(|f| f.path.clone()).collect();
    let extra: Vec<&String> = present.difference(&expected).collect();
    assert!(
        stale.is_empty() && extra.is_empty(),
        "charts/drover/crds is out of date (changed: {stale:?}, not generated: {extra:?}).\n\
         Regenerate with: cargo run -p drover -- generate"
    );
}

#[test]
fn the_field_reference_matches_the_model() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/reference.md");
    let on_disk = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        on_disk == drover_model::reference::reference_markdown(),
        "docs/reference.md is out of date. Regenerate with: cargo run -p drover -- generate"
    );
}

#[test]
fn every_crd_is_structural_with_no_unknown_fields_allowed_silently() {
    for crd in drover_model::schema::crds() {
        let json = serde_json::to_string(&crd).unwrap();
        // Kubernetes rejects `additionalProperties: false` next to `properties`.
        assert!(
            !json.contains("\"additionalProperties\":false"),
            "{}",
            crd.metadata.name.unwrap()
        );
        assert!(json.contains("openAPIV3Schema"));
    }
}
