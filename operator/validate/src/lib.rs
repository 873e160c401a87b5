//! Semantic validation of a loaded config repo: the rules of docs/model.md that no
//! schema can express (naming, references between objects, resources, probes,
//! autoscaling, address pools, quotas), each reported at the field that breaks it.
//!
//! Validation is a pure function of the repo: it reads nothing else and changes
//! nothing, so previews and the reconciler can run it anywhere.

pub mod artifact;
mod cluster;
mod environment;
mod manifest;
mod names;
mod quota;
mod service;

use drover_diagnostics::{Code, Diagnostic};
use drover_load::{DocumentCache, Object, RawObject, Repo, SourceFile};

/// Collects diagnostics for one object, located by field path.
pub(crate) struct Findings<'a> {
    out: &'a mut Vec<Diagnostic>,
}

impl Findings<'_> {
    /// Reports `message` at `path` of `object`.
    pub fn at<S>(
        &mut self,
        object: &Object<S>,
        path: &str,
        code: Code,
        message: String,
    ) -> &mut Diagnostic {
        self.push(Diagnostic::new(code, object.locate(path), message))
    }

    /// Reports `message` at `path` of a plain Kubernetes object.
    pub fn at_raw(
        &mut self,
        object: &RawObject,
        path: &str,
        code: Code,
        message: String,
    ) -> &mut Diagnostic {
        self.push(Diagnostic::new(code, object.locate(path), message))
    }

    fn push(&mut self, diagnostic: Diagnostic) -> &mut Diagnostic {
        self.out.push(diagnostic);
        self.out.last_mut().expect("just pushed")
    }
}

/// Runs every rule over the repo. Errors make the repo invalid; warnings do not.
pub fn validate(repo: &Repo) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut findings = Findings { out: &mut out };
    for cluster in &repo.clusters {
        names::object(&mut findings, cluster);
        cluster::check(&mut findings, cluster);
    }
    for dir in &repo.environments {
        environment::check(&mut findings, repo, dir);
        for secret in &dir.secrets {
            names::object(&mut findings, secret);
            service::check_secret(&mut findings, secret);
        }
        for q in &dir.quotas {
            names::object(&mut findings, q);
        }
        manifest::check(&mut findings, repo, dir);
        service::check_all(&mut findings, repo, dir);
        quota::check(&mut findings, repo, dir);
    }
    out
}

/// A repo read and checked: what loaded, and every finding sorted by place.
#[derive(Debug)]
pub struct Checked {
    /// The objects that parsed.
    pub repo: Repo,
    /// Parse and rule findings, sorted by file, line and column.
    pub diagnostics: Vec<Diagnostic>,
}

impl Checked {
    /// No errors (warnings allowed).
    pub fn is_valid(&self) -> bool {
        !has_errors(&self.diagnostics)
    }
}

/// Loads `files` and runs every rule. Rules run even when some documents failed to
/// parse, so one run reports everything that can be known.
pub fn check(files: &[SourceFile]) -> Checked {
    check_cached(files, &mut DocumentCache::default())
}

/// Like [`check`], reusing what `cache` holds from the previous load for files whose
/// path and content id are unchanged (the common case between two revisions).
pub fn check_cached(files: &[SourceFile], cache: &mut DocumentCache) -> Checked {
    let loaded = drover_load::load_cached(files, cache);
    let mut diagnostics = loaded.diagnostics;
    diagnostics.extend(validate(&loaded.repo));
    drover_diagnostics::sort(&mut diagnostics);
    Checked {
        repo: loaded.repo,
        diagnostics,
    }
}

/// True when the diagnostics hold at least one error.
pub fn has_errors(diagnostics: &[Diagnostic]) -> bool {
    diagnostics.iter().any(Diagnostic::is_error)
}

/// `add a hint` helper, so rules read as one expression.
pub(crate) trait Hint {
    fn hint(&mut self, hint: impl Into<String>);
}

impl Hint for Diagnostic {
    fn hint(&mut self, hint: impl Into<String>) {
        self.hint = Some(hint.into());
    }
}

#[cfg(test)]
mod tests;
