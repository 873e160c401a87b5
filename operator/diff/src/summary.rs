//! The semantic lines of a change, in a reviewer's words: `web: replicas 3 → 5`,
//! `api: image v1.2.0 → v1.3.0`, `quota staging: requests.cpu 6 → 8 (+2)`,
//! `secret db: password changed (sha256:1a2b3c4d)`.

use drover_model::{Cpu, Kind, Memory};
use json_patch::{Patch, PatchOperation};
use serde_json::Value;

use crate::{Change, ObjectKey, op_path};

/// The annotation an engine puts on an observed object that differs live from what
/// was applied (`Deployment/staging/web: spec.template changed`): what people read as
/// the drift, never applied.
pub const DRIFT_ANNOTATION: &str = "drover.dev/drift";

/// How an object is named at the start of its lines.
fn subject(key: &ObjectKey) -> String {
    match key.kind {
        // A plain Kubernetes object's name says its kind: `ConfigMap/settings`.
        Kind::Service | Kind::Manifest => key.name.clone(),
        other => format!("{} {}", other.as_str().to_ascii_lowercase(), key.name),
    }
}

/// A scalar as people write it; structures in short JSON.
fn show(value: &Value) -> String {
    match value {
        Value::Null => "unset".to_owned(),
        Value::String(s) => s.clone(),
        Value::Bool(_) | Value::Number(_) => value.to_string(),
        other => {
            let text = other.to_string();
            if text.chars().count() > 60 {
                format!("{}…", text.chars().take(59).collect::<String>())
            } else {
                text
            }
        }
    }
}

/// JSON Pointer segments, unescaped.
fn segments(pointer: &str) -> Vec<String> {
    pointer
        .split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// A dotted field path (`update.parallelism`, `routes[0].host`) from segments.
fn dotted(segments: &[String]) -> String {
    let mut out = String::new();
    for s in segments {
        if s.parse::<usize>().is_ok() {
            out.push_str(&format!("[{s}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(s);
        }
    }
    out
}

/// The words for a service field.
fn service_label(spec: &[String]) -> String {
    let strs: Vec<&str> = spec.iter().map(String::as_str).collect();
    match strs.as_slice() {
        ["readinessProbe" | "livenessProbe", rest @ ..] => {
            let which = if strs[0] == "readinessProbe" {
                "readiness"
            } else {
                "liveness"
            };
            // The check's kind (httpGet, tcpSocket, exec) says little; its field says it all.
            let rest: Vec<String> = rest
                .iter()
                .filter(|s| !matches!(**s, "httpGet" | "tcpSocket" | "exec"))
                .map(|s| s.to_string())
                .collect();
            if rest.is_empty() {
                format!("{which} probe")
            } else {
                format!("{which} probe {}", dotted(&rest))
            }
        }
        ["resources", kind @ ("requests" | "limits"), resource] => {
            format!(
                "{resource} {}",
                if *kind == "requests" {
                    "request"
                } else {
                    "limit"
                }
            )
        }
        ["env", name] => format!("env {name}"),
        _ => dotted(spec),
    }
}

/// `registry/name:tag` → (`registry/name`, `tag`); digests split at `@`.
fn split_image(image: &str) -> (&str, &str) {
    if let Some((repo, digest)) = image.split_once('@') {
        return (repo, digest);
    }
    match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => (&image[..i], &image[i + 1..]),
        _ => (image, ""),
    }
}

/// `+2`, `-512Mi`: the difference between two quantities of a known kind.
fn delta(resource: &str, before: &Value, after: &Value) -> Option<String> {
    let (a, b) = (before.as_str()?, after.as_str()?);
    let (a, b, show): (u64, u64, fn(u64) -> String) = match resource {
        "cpu" => (a.parse::<Cpu>().ok()?.0, b.parse::<Cpu>().ok()?.0, |v| {
            Cpu(v).to_string()
        }),
        "memory" => (
            a.parse::<Memory>().ok()?.0,
            b.parse::<Memory>().ok()?.0,
            |v| Memory(v).to_string(),
        ),
        _ => return None,
    };
    Some(if b >= a {
        format!("+{}", show(b - a))
    } else {
        format!("-{}", show(a - b))
    })
}

pub(crate) fn lines(
    key: &ObjectKey,
    change: Change,
    old: &Value,
    new: &Value,
    patch: &Patch,
) -> Vec<String> {
    let who = subject(key);
    match change {
        Change::Added if key.kind == Kind::Service => {
            let spec = &new["spec"];
            let mut details = Vec::new();
            if let Some(r) = spec.get("replicas") {
                details.push(format!("replicas {r}"));
            }
            if let Some(v) = spec.get("version").or_else(|| spec.get("image")) {
                details.push(show(v));
            }
            return vec![format!("{who}: added ({})", details.join(", "))];
        }
        Change::Added => return vec![format!("{who}: added")],
        Change::Removed => return vec![format!("{who}: removed")],
        Change::Changed => {}
    }
    let mut out = Vec::new();
    // What an engine saw changed live, in its words, instead of the mark it carries.
    let drift = old["metadata"]["annotations"][DRIFT_ANNOTATION].as_str();
    if let Some(text) = drift {
        out.push(format!("{who}: {text}"));
    }
    for op in &patch.0 {
        let path = op_path(op);
        if drift.is_some() && path.starts_with("/metadata/annotations") {
            continue;
        }
        let segs = segments(&path);
        let before = old.pointer(&path);
        let after = match op {
            PatchOperation::Add(o) => Some(&o.value),
            PatchOperation::Replace(o) => Some(&o.value),
            _ => None,
        };
        let in_spec = segs.first().is_some_and(|s| s == "spec");
        let spec_segs = if in_spec { &segs[1..] } else { &segs[..] };
        let line = match (key.kind, spec_segs.first().map(String::as_str)) {
            (Kind::Secret, Some("data")) if in_spec => {
                let name = spec_segs.get(1).cloned().unwrap_or_default();
                match after {
                    Some(v) if before.is_some() => format!("{who}: {name} changed ({})", show(v)),
                    Some(v) => format!("{who}: {name} added ({})", show(v)),
                    None => format!("{who}: {name} removed"),
                }
            }
            _ => {
                let label = match key.kind {
                    Kind::Service if in_spec => service_label(spec_segs),
                    _ if in_spec => dotted(spec_segs),
                    _ => dotted(&segs),
                };
                match (before, after) {
                    (Some(b), Some(a)) if label == "image" => {
                        let ((repo_b, tag_b), (repo_a, tag_a)) = (
                            split_image(b.as_str().unwrap_or("")),
                            split_image(a.as_str().unwrap_or("")),
                        );
                        if repo_b == repo_a && !tag_b.is_empty() && !tag_a.is_empty() {
                            format!("{who}: image {tag_b} → {tag_a}")
                        } else {
                            format!("{who}: image {} → {}", show(b), show(a))
                        }
                    }
                    (Some(b), Some(a)) => {
                        let resource = spec_segs.last().map(String::as_str).unwrap_or("");
                        let change = match (key.kind, delta(resource, b, a)) {
                            (Kind::Quota, Some(d)) => format!(" ({d})"),
                            _ => String::new(),
                        };
                        format!("{who}: {label} {} → {}{change}", show(b), show(a))
                    }
                    (None, Some(a)) if a.is_object() || a.is_array() => {
                        format!("{who}: {label} added")
                    }
                    (None, Some(a)) => format!("{who}: {label} set to {}", show(a)),
                    (Some(b), None) if b.is_object() || b.is_array() => {
                        format!("{who}: {label} removed")
                    }
                    (Some(b), None) => format!("{who}: {label} removed (was {})", show(b)),
                    (None, None) => format!("{who}: {label} changed"),
                }
            }
        };
        out.push(line);
    }
    out
}
