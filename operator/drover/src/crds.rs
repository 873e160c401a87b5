//! `drover crds`: print or write the CRDs and the editor schema generated from the model.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use drover_model::reference::reference_markdown;
use drover_model::schema::{crd_files, crds};

pub fn run(write: Option<&Path>) -> anyhow::Result<ExitCode> {
    let Some(dir) = write else {
        let mut out = String::new();
        for crd in crds() {
            out.push_str("---\n");
            out.push_str(&serde_saphyr::to_string(&crd).context("serializing a CRD")?);
        }
        print!("{out}");
        return Ok(ExitCode::SUCCESS);
    };
    for file in crd_files() {
        let path = dir.join(&file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, &file.content)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Rewrites `crds/`, the Helm chart's `crds/`, `docs/reference.md` and
/// `docs/errors.md` under `root`.
pub fn generate(root: &Path) -> anyhow::Result<ExitCode> {
    run(Some(&root.join("crds")))?;
    let chart = root.join(drover_model::schema::CHART_CRDS);
    std::fs::create_dir_all(&chart).with_context(|| format!("creating {}", chart.display()))?;
    for file in crd_files().iter().filter(|f| f.path.ends_with(".yaml")) {
        let path = chart.join(&file.path);
        std::fs::write(&path, &file.content)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    let reference = root.join("docs/reference.md");
    std::fs::create_dir_all(root.join("docs")).context("creating docs/")?;
    std::fs::write(&reference, reference_markdown())
        .with_context(|| format!("writing {}", reference.display()))?;
    println!("wrote {}", reference.display());
    let errors = root.join("docs/errors.md");
    std::fs::write(&errors, drover_diagnostics::catalogue_markdown())
        .with_context(|| format!("writing {}", errors.display()))?;
    println!("wrote {}", errors.display());
    Ok(ExitCode::SUCCESS)
}
