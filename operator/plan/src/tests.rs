//! Plan tests on the example repo.

use std::path::Path;

use drover_diff::normalize;

use super::*;

fn desired_with(edit: impl FnOnce(&mut Vec<drover_load::SourceFile>)) -> State {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/repo"));
    let mut files = drover_load::read_dir(root).unwrap();
    edit(&mut files);
    let loaded = drover_load::load(&files);
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    normalize(&loaded.repo)
}

fn desired() -> State {
    desired_with(|_| {})
}

/// Everything live exactly as `state`, all of it created by Drover.
fn live(state: &State) -> Observed {
    Observed {
        objects: state.clone(),
        inventory: state.keys().cloned().collect(),
    }
}

fn describe(plan: &Plan) -> Vec<String> {
    plan.actions
        .iter()
        .map(|a| {
            let verb = match a {
                Action::Create { .. } => "create",
                Action::Update { .. } => "update",
                Action::Delete { .. } => "delete",
            };
            let k = a.key();
            format!("{verb} {}/{}/{}", k.environment, k.kind, k.name)
        })
        .collect()
}

fn without(files: &mut Vec<drover_load::SourceFile>, path: &str) {
    files.retain(|f| f.path != path);
}

#[test]
fn from_nothing_everything_is_created_in_dependency_order() {
    let plan = plan(&desired(), &Observed::default());
    assert_eq!(
        describe(&plan),
        [
            "create //Cluster/local-production",
            "create //Cluster/local-staging",
            "create production/Environment/production",
            "create production/Quota/production-quota",
            "create production/Secret/db-credentials",
            "create production/Service/api",
            "create production/Service/web",
            "create production/Service/worker",
            "create staging/Environment/staging",
            "create staging/Quota/staging-quota",
            "create staging/Secret/db-credentials",
            "create staging/Service/api",
            "create staging/Service/web",
            "create staging/Service/worker",
        ]
        .map(|s| s.replace("//", "/"))
    );
}

#[test]
fn when_live_matches_desired_there_is_nothing_to_do() {
    let state = desired();
    assert!(plan(&state, &live(&state)).is_empty());
}

#[test]
fn a_changed_service_is_updated_with_a_patch() {
    let before = desired();
    let after = desired_with(|files| {
        let web = files
            .iter_mut()
            .find(|f| f.path == "environments/staging/web.yaml")
            .unwrap();
        web.text = web.text.replace("replicas: 2", "replicas: 3");
    });
    let plan = plan(&after, &live(&before));
    assert_eq!(describe(&plan), ["update staging/Service/web"]);
    let Action::Update { patch, .. } = &plan.actions[0] else {
        unreachable!()
    };
    assert_eq!(
        serde_json::to_value(patch).unwrap(),
        serde_json::json!([{"op": "replace", "path": "/spec/replicas", "value": 3}])
    );
}

#[test]
fn only_objects_drover_created_are_pruned() {
    let before = desired();
    let after = desired_with(|files| without(files, "environments/staging/worker.yaml"));
    assert_eq!(
        describe(&plan(&after, &live(&before))),
        ["delete staging/Service/worker"]
    );
    let mut not_ours = live(&before);
    not_ours.inventory.retain(|k| k.name != "worker");
    assert!(plan(&after, &not_ours).is_empty());
}

#[test]
fn prune_off_keeps_what_git_no_longer_has() {
    let before = desired();
    let after = desired_with(|files| {
        without(files, "environments/staging/worker.yaml");
        let env = files
            .iter_mut()
            .find(|f| f.path == "environments/staging/environment.yaml")
            .unwrap();
        env.text = env.text.replace("prune: true", "prune: false");
    });
    assert_eq!(
        describe(&plan(&after, &live(&before))),
        ["update staging/Environment/staging"]
    );
}

#[test]
fn deleting_every_service_of_an_environment_is_held_unless_allowed() {
    let before = desired();
    let emptied = |allow: bool| {
        desired_with(|files| {
            for s in ["web", "api", "worker"] {
                without(files, &format!("environments/staging/{s}.yaml"));
            }
            if allow {
                let env = files
                    .iter_mut()
                    .find(|f| f.path == "environments/staging/environment.yaml")
                    .unwrap();
                env.text = env
                    .text
                    .replace("selfHeal: true", "selfHeal: true\n    allowEmpty: true");
            }
        })
    };
    let held = plan(&emptied(false), &live(&before));
    assert!(held.is_empty(), "{:?}", describe(&held));
    assert_eq!(held.holds.len(), 1);
    assert!(
        held.holds[0]
            .reason
            .contains("every service of environment `staging` (3)"),
        "{}",
        held.holds[0].reason
    );

    // Allowed: dependents go first, the service they depend on last.
    let allowed = plan(&emptied(true), &live(&before));
    assert_eq!(
        describe(&allowed),
        [
            "update staging/Environment/staging",
            "delete staging/Service/worker",
            "delete staging/Service/web",
            "delete staging/Service/api"
        ]
    );
}

#[test]
fn one_environments_plan_is_its_part_of_the_whole_plan() {
    let before = desired();
    let after = desired_with(|files| {
        without(files, "environments/staging/worker.yaml");
        without(files, "environments/production/api.yaml");
    });
    let whole = describe(&plan(&after, &live(&before)));
    for env in ["", "staging", "production"] {
        let part = describe(&plan_environment(env, &after, &live(&before)));
        let expected: Vec<String> = whole
            .iter()
            .filter(|a| a.split(' ').nth(1).unwrap().split('/').next() == Some(env))
            .cloned()
            .collect();
        assert_eq!(part, expected, "{env}");
    }
    assert_eq!(
        describe(&plan_environment("staging", &after, &live(&before))),
        ["delete staging/Service/worker"]
    );
}
