//! `drover crds`: print or write the CRDs and the editor schema generated from the model.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
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
