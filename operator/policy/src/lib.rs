//! Policies: guard rails over the model, as Kubernetes' ValidatingAdmissionPolicies
//! are. A policy is a YAML document (`kind: Policy`) whose rules are CEL expressions
//! that must hold for every object it matches; each rule has a severity, a message and
//! the field it concerns, so a violation is a diagnostic at `file:line:column` like any
//! other — in `drover validate`, previews and the follower, where an error rejects the
//! revision.
//!
//! [`shipped`] are the defaults in Drover's `policies/`; a config repo adds its own in
//! its `policies/` ([`from_files`]). [`check`] evaluates them (pure: the repo and the
//! policies in, diagnostics out).

mod document;
mod evaluate;

pub use document::{Policy, Rule, Severity, from_files, shipped};
pub use evaluate::check;

/// Where a config repo keeps its own policies.
pub const REPO_FOLDER: &str = "policies/";
