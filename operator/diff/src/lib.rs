//! What changes between two states — two revisions of a config repo, or desired and
//! live — per object: an RFC 6902 JSON Patch, a unified diff of the YAML, and the
//! semantic lines a reviewer reads first (`web: replicas 3 → 5`).
//!
//! Everything here is a pure function of its inputs. States are compared after
//! normalization (see [`normalize`]), so an omitted default never shows as a change
//! and secret values never show at all.

pub mod drift;
mod normalize;
pub mod render;
mod summary;

use serde::Serialize;
use serde_json::Value;

pub use normalize::{ObjectKey, State, fingerprint, for_each_normalized, normalize};
pub use summary::DRIFT_ANNOTATION;

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Added,
    Changed,
    Removed,
}

/// One object's change.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectChange {
    #[serde(flatten)]
    pub key: ObjectKey,
    pub change: Change,
    /// Lines a reviewer reads first.
    pub summary: Vec<String>,
    /// RFC 6902 operations turning the old object into the new one.
    pub patch: json_patch::Patch,
    /// Unified diff of the normalized YAML.
    pub diff: String,
}

/// Every change between two states, ordered by environment, kind, then name.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChangeSet {
    pub changes: Vec<ObjectChange>,
}

impl ChangeSet {
    /// Nothing changes.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The environments with changes (clusters count as the environment `""`).
    pub fn environments(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .changes
            .iter()
            .map(|c| c.key.environment.as_str())
            .collect();
        names.dedup();
        names
    }

    /// The changes of one environment (`""` for clusters).
    pub fn in_environment<'a>(
        &'a self,
        environment: &'a str,
    ) -> impl Iterator<Item = &'a ObjectChange> + 'a {
        self.changes
            .iter()
            .filter(move |c| c.key.environment == environment)
    }

    /// Only the changes of one environment.
    pub fn only_environment(mut self, environment: &str) -> ChangeSet {
        self.changes.retain(|c| c.key.environment == environment);
        self
    }
}

/// Options for a diff.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Ignore `replicas` of services with autoscaling on: the autoscaler owns it, so a
    /// difference between desired and live is not drift.
    pub ignore_autoscaled_replicas: bool,
}

/// Renders a normalized object as YAML with sorted keys.
pub fn to_yaml(value: &Value) -> String {
    serde_saphyr::to_string(value).expect("JSON values serialize to YAML")
}

fn has_autoscaling(value: &Value) -> bool {
    value["spec"]
        .get("autoscaling")
        .is_some_and(|a| !a.is_null())
}

/// The changes between two repos. Objects whose documents are the same parse in both
/// (a file unchanged between two revisions loaded with one `DocumentCache`) are equal
/// by construction and are neither normalized nor compared, so a small change to a
/// large repo costs little.
pub fn diff_repos(old: &drover_load::Repo, new: &drover_load::Repo, options: Options) -> ChangeSet {
    let sources = |repo| {
        let mut map = std::collections::HashMap::new();
        normalize::walk(repo, &mut |key, source, _| {
            map.insert(key, std::sync::Arc::as_ptr(source));
        });
        map
    };
    let (old_sources, new_sources) = (sources(old), sources(new));
    let changed =
        |repo, other: &std::collections::HashMap<ObjectKey, *const drover_load::Source>| {
            let mut state = State::new();
            normalize::walk(repo, &mut |key, source, normalized| {
                if other.get(&key) != Some(&std::sync::Arc::as_ptr(source)) {
                    state.insert(key, normalized());
                }
            });
            state
        };
    diff(
        &changed(old, &new_sources),
        &changed(new, &old_sources),
        options,
    )
}

/// The changes that turn `old` into `new`.
pub fn diff(old: &State, new: &State, options: Options) -> ChangeSet {
    let mut changes = Vec::new();
    let keys: std::collections::BTreeSet<&ObjectKey> = old.keys().chain(new.keys()).collect();
    let empty = Value::Null;
    for key in keys {
        let (before, after) = (old.get(key), new.get(key));
        let change = match (before, after) {
            (None, Some(_)) => Change::Added,
            (Some(_), None) => Change::Removed,
            (Some(a), Some(b)) if a == b => continue,
            (Some(_), Some(_)) => Change::Changed,
            (None, None) => continue,
        };
        let (a, b) = (before.unwrap_or(&empty), after.unwrap_or(&empty));
        let mut patch = json_patch::diff(a, b);
        if options.ignore_autoscaled_replicas && change == Change::Changed && has_autoscaling(b) {
            patch
                .0
                .retain(|op| !op_path(op).starts_with("/spec/replicas"));
            if patch.0.is_empty() {
                continue;
            }
        }
        let summary = summary::lines(key, change, a, b, &patch);
        let diff = unified(key, before, after);
        changes.push(ObjectChange {
            key: key.clone(),
            change,
            summary,
            patch,
            diff,
        });
    }
    ChangeSet { changes }
}

pub(crate) fn op_path(op: &json_patch::PatchOperation) -> String {
    use json_patch::PatchOperation::*;
    match op {
        Add(o) => o.path.to_string(),
        Remove(o) => o.path.to_string(),
        Replace(o) => o.path.to_string(),
        Move(o) => o.path.to_string(),
        Copy(o) => o.path.to_string(),
        Test(o) => o.path.to_string(),
    }
}

fn unified(key: &ObjectKey, before: Option<&Value>, after: Option<&Value>) -> String {
    let a = before.map(to_yaml).unwrap_or_default();
    let b = after.map(to_yaml).unwrap_or_default();
    let name = if key.environment.is_empty() {
        format!("{}/{}", key.kind, key.name)
    } else {
        format!("{}/{}/{}", key.environment, key.kind, key.name)
    };
    let (from, to) = match (before, after) {
        (None, _) => ("/dev/null".to_owned(), format!("b/{name}")),
        (_, None) => (format!("a/{name}"), "/dev/null".to_owned()),
        _ => (format!("a/{name}"), format!("b/{name}")),
    };
    similar::TextDiff::from_lines(&a, &b)
        .unified_diff()
        .context_radius(3)
        .header(&from, &to)
        .to_string()
}

#[cfg(test)]
mod tests;
