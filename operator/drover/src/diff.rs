//! `drover diff` and `drover preview`: what a change to the config repo does, from Git
//! alone (no cluster access).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use drover_diagnostics::{RenderOptions, render_human};
use drover_diff::{ChangeSet, Options, diff_repos, render};
use drover_load::DocumentCache;
use drover_source::{Desired, GitSource, RepoSpec, Revision};

use crate::{Color, Format};

/// Where mirrors of remote config repos are kept.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("DROVER_STATE_DIR") {
        return PathBuf::from(dir).join("git");
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("drover/git")
}

fn open(location: &str) -> anyhow::Result<GitSource> {
    let spec = RepoSpec {
        location: location.to_owned(),
        ..RepoSpec::default()
    };
    let mut source = GitSource::open(spec, &cache_dir())?;
    if let Some(keys) = crate::secret::configured_keys()? {
        source = source.with_keys(keys);
    }
    source.fetch()?;
    Ok(source)
}

/// The desired state at a revision; files unchanged since the last call with the
/// same cache are not parsed again.
fn desired(
    source: &GitSource,
    revision: &str,
    cache: &mut DocumentCache,
) -> anyhow::Result<Desired> {
    let revision = source.resolve(revision)?;
    Ok(source.desired_at_cached(&revision, cache)?)
}

fn label(revision: &Revision) -> String {
    format!("`{}` ({})", revision.short(), revision.summary)
}

/// The process exits next: freeing two revisions' worth of objects would only cost
/// time (tens of milliseconds for 10,000 services).
pub fn exit_without_freeing<T>(state: T) {
    std::mem::forget(state);
}

/// Prints an invalid revision's errors the way `drover validate` does, and fails.
fn reject_invalid(desired: &Desired) -> anyhow::Result<()> {
    if desired.checked.is_valid() {
        return Ok(());
    }
    let errors: Vec<_> = desired
        .checked
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .cloned()
        .collect();
    eprint!("{}", render_human(&errors, RenderOptions::default()));
    anyhow::bail!(
        "revision {} is invalid ({} errors); fix it before diffing",
        desired.revision.short(),
        errors.len()
    )
}

pub fn diff(
    repo: &str,
    from: &str,
    to: &str,
    env: Option<&str>,
    format: Format,
    color: Color,
) -> anyhow::Result<ExitCode> {
    let source = open(repo)?;
    let mut cache = DocumentCache::default();
    let old = desired(&source, from, &mut cache)?;
    let new = desired(&source, to, &mut cache)?;
    reject_invalid(&old)?;
    reject_invalid(&new)?;
    let mut set = diff_repos(&old.checked.repo, &new.checked.repo, Options::default());
    if let Some(env) = env {
        anyhow::ensure!(
            old.checked.repo.environment(env).is_some()
                || new.checked.repo.environment(env).is_some(),
            "no environment `{env}` at either revision"
        );
        set = set.only_environment(env);
    }
    let out = match format {
        Format::Text => render::text(&set, color.enabled()),
        Format::Json => serde_json::to_string_pretty(&set).context("serializing the diff")? + "\n",
        Format::Markdown => {
            let warnings = &new.checked.diagnostics;
            render::markdown(
                &set,
                &render::Preview {
                    base: label(&old.revision),
                    head: label(&new.revision),
                    diagnostics: warnings,
                },
            )
        }
    };
    std::io::stdout().lock().write_all(out.as_bytes())?;
    let code = if set.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    };
    exit_without_freeing((old, new, cache, set));
    Ok(code)
}

pub fn preview(repo: &str, base: &str, head: &str, format: Format) -> anyhow::Result<ExitCode> {
    let source = open(repo)?;
    let mut cache = DocumentCache::default();
    let old = desired(&source, base, &mut cache)?;
    let new = desired(&source, head, &mut cache)?;
    reject_invalid(&old)?;
    // Who may change what, by the base's rules (Drover's own commits are not known
    // here: they are not in pull requests).
    let refusals: Vec<String> = source
        .refusals(
            Some(&old.revision),
            &new.revision,
            &drover_source::Rules::of(&old.checked.repo),
            None,
        )?
        .iter()
        .map(ToString::to_string)
        .collect();
    let valid = new.checked.is_valid() && refusals.is_empty();
    // An invalid head is shown with its errors, and no diff: it would not be applied.
    let set = if valid {
        diff_repos(&old.checked.repo, &new.checked.repo, Options::default())
    } else {
        ChangeSet::default()
    };
    let out = match format {
        Format::Json => {
            let report = serde_json::json!({
                "base": old.revision.id, "head": new.revision.id, "valid": valid,
                "diagnostics": new.checked.diagnostics, "changes": set,
                "refusals": refusals,
            });
            serde_json::to_string_pretty(&report).context("serializing the preview")? + "\n"
        }
        Format::Markdown | Format::Text => {
            let mut text = render::markdown(
                &set,
                &render::Preview {
                    base: label(&old.revision),
                    head: label(&new.revision),
                    diagnostics: &new.checked.diagnostics,
                },
            );
            if !refusals.is_empty() {
                text.push_str("\n#### Change rules\n\n❌ Drover would refuse these commits (the environments' `changes` rules, as the base states them):\n\n");
                for refusal in &refusals {
                    text.push_str(&format!("- {refusal}\n"));
                }
            }
            text
        }
    };
    std::io::stdout().lock().write_all(out.as_bytes())?;
    exit_without_freeing((old, new, cache, set));
    Ok(if valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
