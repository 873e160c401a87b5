//! The model's rules applied to a change made outside Git (`drover scale`): the
//! environment as it is applied, with the change in place, checked by the very rules
//! `drover validate` runs, so the API refuses what a commit would be refused for.

use drover_diff::{ObjectKey, State};
use drover_model::Kind;
use serde_json::Value;

/// The errors of `env` as applied in `state` with `key` set to `value`, each as
/// `message (CODE)`. The whole applied repo is checked (rules look across
/// environments: promotions, routes), and the errors located in `env` are its.
pub(super) fn problems_with(
    state: &State,
    env: &str,
    key: &ObjectKey,
    value: &Value,
) -> Vec<String> {
    // Applied objects are whole manifests, and JSON is YAML: the files of a repo.
    let files: Vec<drover_load::SourceFile> = state
        .iter()
        .map(|(k, v)| {
            let v = if k == key { value } else { v };
            let path = if k.kind == Kind::Cluster {
                format!("clusters/{}.yaml", k.name)
            } else {
                format!(
                    "environments/{}/{}-{}.yaml",
                    k.environment,
                    k.kind.as_str(),
                    k.name
                )
            };
            drover_load::SourceFile::new(path, v.to_string())
        })
        .collect();
    let here = format!("environments/{env}/");
    drover_validate::check(&files)
        .diagnostics
        .into_iter()
        .filter(|d| d.is_error() && d.location.file.starts_with(&here))
        .map(|d| format!("{} ({})", d.message, d.code.id()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> State {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/repo");
        drover_diff::normalize(&drover_load::load_dir(&root).unwrap().repo)
    }

    #[test]
    fn applied_objects_pass_the_rules_and_a_change_past_the_quota_does_not() {
        let state = example();
        let (key, web) = state
            .iter()
            .find(|(k, _)| k.environment == "staging" && k.name == "web")
            .map(|(k, v)| (k.clone(), v.clone()))
            .unwrap();
        assert_eq!(
            problems_with(&state, "staging", &key, &web),
            Vec::<String>::new()
        );
        let mut huge = web.clone();
        huge["spec"]["replicas"] = Value::from(10_000);
        let problems = problems_with(&state, "staging", &key, &huge);
        assert!(
            problems.iter().any(|p| p.ends_with("(E116)")),
            "{problems:?}"
        );
    }
}
