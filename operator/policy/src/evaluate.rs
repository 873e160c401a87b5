//! Evaluating policies over a repo's objects. Each rule sees `object` (the object as
//! Drover normalizes it: defaults filled in, secret values as fingerprints),
//! `environment` (its Environment, or null for a Cluster) and `encrypted` (whether a
//! Secret's values are all encrypted in Git). A rule that is false, or that cannot be
//! evaluated (a field it reads is absent and not guarded with `has()`), is broken, as
//! with Kubernetes' `failurePolicy: Fail`.

use std::collections::BTreeMap;

use drover_diagnostics::{Code, Diagnostic};
use drover_load::{Repo, SOPS_BLOCK, Source};
use drover_model::Kind;
use serde_json::Value;

use crate::document::{Policy, Severity};

/// Every violation of `policies` by the objects of `repo`.
pub fn check(repo: &Repo, policies: &[Policy]) -> Vec<Diagnostic> {
    if policies.is_empty() {
        return Vec::new();
    }
    let objects = drover_diff::normalized_with_sources(repo);
    let environments: BTreeMap<&str, &Value> = objects
        .iter()
        .filter(|(k, _, _)| k.kind == Kind::Environment)
        .map(|(k, _, v)| (k.environment.as_str(), v))
        .collect();
    let mut out = Vec::new();
    for (key, source, value) in &objects {
        let kind = key.kind.as_str();
        let applying: Vec<&Policy> = policies
            .iter()
            .filter(|p| p.applies_to(kind, &key.environment))
            .collect();
        if applying.is_empty() {
            continue;
        }
        let mut context = cel::Context::default();
        context.add_variable_from_value("object", to_cel(value));
        let environment = environments
            .get(key.environment.as_str())
            .map_or(cel::Value::Null, |e| to_cel(e));
        context.add_variable_from_value("environment", environment);
        context.add_variable_from_value(
            "encrypted",
            cel::Value::Bool(key.kind == Kind::Secret && encrypted(source)),
        );
        for policy in applying {
            for rule in &policy.rules {
                let broken = match rule.program.execute(&context) {
                    Ok(cel::Value::Bool(true)) => continue,
                    Ok(cel::Value::Bool(false)) => None,
                    Ok(other) => Some(format!("it gave {other:?}, not true or false")),
                    Err(e) => Some(format!("it could not be evaluated: {e}")),
                };
                let code = match rule.severity {
                    Severity::Error => Code::PolicyViolation,
                    Severity::Warning => Code::PolicyWarning,
                };
                let name = value["metadata"]["name"].as_str().unwrap_or_default();
                let expression = rule
                    .expression
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ");
                let mut hint = format!(
                    "policy `{}` rule `{}` ({}): `{expression}`",
                    policy.name, rule.name, policy.file
                );
                if let Some(why) = broken {
                    hint.push_str(&format!("; {why}"));
                }
                out.push(
                    Diagnostic::new(
                        code,
                        source.locate(rule.path.as_deref().unwrap_or("")),
                        format!("{} {name}: {}", kind.to_lowercase(), rule.message),
                    )
                    .with_hint(hint),
                );
            }
        }
    }
    out
}

fn to_cel(value: &Value) -> cel::Value {
    cel::to_value(value).unwrap_or(cel::Value::Null)
}

/// A Secret whose file has a `sops:` block and every value of `data` encrypted.
fn encrypted(source: &Source) -> bool {
    let Some(tree) = source.tree() else {
        return false;
    };
    let values = tree.get("spec").and_then(|s| s.get("data"));
    let all_encrypted = match values.map(|v| &v.value) {
        Some(drover_load::YamlValue::Map(entries)) => entries
            .iter()
            .all(|(_, v)| v.as_str().is_some_and(drover_secrets::sops::is_encrypted)),
        _ => false,
    };
    tree.get(SOPS_BLOCK).is_some() && all_encrypted
}

#[cfg(test)]
mod tests;
