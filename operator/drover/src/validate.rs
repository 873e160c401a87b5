//! `drover validate`: load a config repo, run every rule, print the findings.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use drover_diagnostics::{RenderOptions, render_human, render_json, summary};

use crate::{Color, Output};

pub fn run(dir: &Path, output: Output, color: Color) -> anyhow::Result<ExitCode> {
    let files =
        drover_load::read_dir(dir).with_context(|| format!("cannot validate {}", dir.display()))?;
    let keys = crate::secret::configured_keys()?;
    let (checked, _) = drover_source::check_revision(
        &files,
        &mut drover_load::DocumentCache::default(),
        keys.as_deref(),
    );
    let valid = checked.is_valid();
    if keys.is_none() && drover_secrets::repo::has_encrypted(&checked.repo) {
        eprintln!(
            "note: encrypted secrets were checked for their format only: set {} to an age key file to open them and check their MACs",
            drover_secrets::keys::KEY_FILE_VAR
        );
    }
    let mut stdout = std::io::stdout().lock();
    match output {
        Output::Json => stdout.write_all(render_json(&checked.diagnostics, valid).as_bytes())?,
        Output::Yaml => {
            let json: serde_json::Value =
                serde_json::from_str(&render_json(&checked.diagnostics, valid))?;
            stdout.write_all(serde_saphyr::to_string(&json)?.as_bytes())?;
        }
        Output::Human | Output::Wide => {
            let color = color.enabled();
            stdout.write_all(
                render_human(&checked.diagnostics, RenderOptions { color }).as_bytes(),
            )?;
            let repo = &checked.repo;
            let verdict = if valid { "valid" } else { "invalid" };
            let count =
                |n: usize, noun: &str| format!("{n} {noun}{}", if n == 1 { "" } else { "s" });
            writeln!(
                stdout,
                "{}: {verdict} ({}; {}, {}, {})",
                dir.display(),
                summary(&checked.diagnostics),
                count(repo.clusters.len(), "cluster"),
                count(repo.environments.len(), "environment"),
                count(repo.service_count(), "service"),
            )?;
        }
    }
    stdout.flush()?;
    crate::diff::exit_without_freeing((checked, files));
    Ok(if valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
