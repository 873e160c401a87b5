//! Evaluating policies over a repo's objects. Each rule sees `object` (the object as
//! Drover normalizes it: defaults filled in, secret values as fingerprints),
//! `environment` (its Environment, or null for a Cluster), `encrypted` (whether a
//! Secret's values are all encrypted in Git) and `image` (a Service's image parsed
//! once: `{name, tag, digest}`, empty strings where absent; null without an image). A rule that is false, or that cannot be
//! evaluated (a field it reads is absent and not guarded with `has()`), is broken, as
//! with Kubernetes' `failurePolicy: Fail`.

use std::collections::BTreeMap;

use drover_diagnostics::{Code, Diagnostic};
use drover_load::{EnvironmentDir, Repo, SOPS_BLOCK, Source};
use drover_model::Kind;
use serde_json::Value;

use crate::document::{Policy, Severity};

/// Every violation of `policies` by the objects of `repo`.
pub fn check(repo: &Repo, policies: &[Policy]) -> Vec<Diagnostic> {
    if policies.is_empty() {
        return Vec::new();
    }
    // The Environments first (every object's rules may read its own).
    let mut environments: BTreeMap<String, cel::Value> = BTreeMap::new();
    let only_environments = Repo {
        environments: repo
            .environments
            .iter()
            .map(|d| EnvironmentDir {
                name: d.name.clone(),
                environment: d.environment.clone(),
                ..EnvironmentDir::default()
            })
            .collect(),
        ..Repo::default()
    };
    drover_diff::for_each_normalized(&only_environments, |key, _, value| {
        environments.insert(key.environment, to_cel(&value));
    });
    // Environments are independent: their objects are evaluated on every core, each
    // normalized and dropped in turn, and the findings put back in order.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_thread = repo.environments.len().div_ceil(threads).max(1);
    let mut parts: Vec<Repo> = repo
        .environments
        .chunks(per_thread)
        .map(|dirs| Repo {
            environments: dirs.to_vec(),
            ..Repo::default()
        })
        .collect();
    match parts.first_mut() {
        Some(first) => first.clusters = repo.clusters.clone(),
        None => parts.push(Repo {
            clusters: repo.clusters.clone(),
            ..Repo::default()
        }),
    }
    let environments = &environments;
    std::thread::scope(|scope| {
        let workers: Vec<_> = parts
            .iter()
            .map(|part| {
                scope.spawn(move || {
                    let mut out = Vec::new();
                    drover_diff::for_each_normalized(part, |key, source, value| {
                        object(&key, source, &value, environments, policies, &mut out);
                    });
                    out
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a policy evaluation does not panic"))
            .collect()
    })
}

/// Every violation of `policies` by one object.
fn object(
    key: &drover_diff::ObjectKey,
    source: &Source,
    value: &Value,
    environments: &BTreeMap<String, cel::Value>,
    policies: &[Policy],
    out: &mut Vec<Diagnostic>,
) {
    let kind = key.kind.as_str();
    let applying: Vec<&Policy> = policies
        .iter()
        .filter(|p| p.applies_to(kind, &key.environment))
        .collect();
    if applying.is_empty() {
        return;
    }
    let mut context = cel::Context::default();
    context.add_variable_from_value("object", to_cel(value));
    let environment = environments
        .get(key.environment.as_str())
        .cloned()
        .unwrap_or(cel::Value::Null);
    context.add_variable_from_value("environment", environment);
    context.add_variable_from_value(
        "encrypted",
        cel::Value::Bool(key.kind == Kind::Secret && encrypted(source)),
    );
    context.add_variable_from_value("image", image(value["spec"]["image"].as_str()));
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

/// An image reference as `{name, tag, digest}`: `ghcr.io/shop/web:v1@sha256:…` →
/// `ghcr.io/shop/web`, `v1`, `sha256:…` (a registry's port is not a tag).
fn image(reference: Option<&str>) -> cel::Value {
    let Some(reference) = reference else {
        return cel::Value::Null;
    };
    let (rest, digest) = reference.split_once('@').unwrap_or((reference, ""));
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], &rest[last_slash + i + 1..]),
        None => (rest, ""),
    };
    let map: std::collections::HashMap<String, cel::Value> = [
        ("name".to_owned(), cel::Value::from(name)),
        ("tag".to_owned(), cel::Value::from(tag)),
        ("digest".to_owned(), cel::Value::from(digest)),
    ]
    .into_iter()
    .collect();
    cel::Value::from(map)
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
