//! Loader tests: layout rules and the wording of parse errors.

use super::*;

const CLUSTER: &str = "apiVersion: drover.dev/v1alpha1\nkind: Cluster\nmetadata:\n  name: local\nspec:\n  engine: local\n  local:\n    nodes:\n      - name: n1\n        capacity: {cpu: 2, memory: 1Gi}\n";
const ENV: &str = "apiVersion: drover.dev/v1alpha1\nkind: Environment\nmetadata:\n  name: staging\nspec:\n  cluster: local\n";

fn file(path: &str, text: &str) -> SourceFile {
    SourceFile::new(path.to_owned(), text.to_owned())
}

fn service(body: &str) -> String {
    format!("apiVersion: drover.dev/v1alpha1\nkind: Service\nmetadata:\n  name: api\nspec:\n{body}")
}

fn load_with(path: &str, text: &str) -> Loaded {
    load(&[
        file("clusters/local.yaml", CLUSTER),
        file("environments/staging/environment.yaml", ENV),
        file(path, text),
    ])
}

fn rendered(loaded: &Loaded) -> Vec<String> {
    let mut d = loaded.diagnostics.clone();
    drover_diagnostics::sort(&mut d);
    d.iter()
        .map(|d| {
            format!(
                "{}: {}: {} | {}",
                d.location,
                d.code.id(),
                d.message,
                d.hint.clone().unwrap_or_default()
            )
        })
        .collect()
}

#[test]
fn a_valid_repo_loads_every_kind_into_its_environment() {
    let loaded = load_with(
        "environments/staging/api.yaml",
        &service("  command: [./api]\n  replicas: 2\n"),
    );
    assert!(loaded.diagnostics.is_empty(), "{:?}", rendered(&loaded));
    let env = loaded.repo.environment("staging").unwrap();
    assert_eq!(env.services[0].spec().replicas, Some(2));
    assert_eq!(loaded.repo.clusters[0].name(), "local");
}

#[test]
fn an_unknown_field_suggests_the_field_meant() {
    let loaded = load_with(
        "environments/staging/api.yaml",
        &service("  command: [./api]\n  readinesProbe:\n    exec: {command: [true]}\n"),
    );
    assert_eq!(
        rendered(&loaded),
        [
            "environments/staging/api.yaml:7:3: E002: unknown field `readinesProbe` in `spec` of Service | did you mean `readinessProbe`?"
        ]
    );
}

#[test]
fn errors_in_later_documents_carry_their_file_line() {
    let text = format!(
        "{}---\n{}",
        service("  command: [a]\n"),
        service("  mode: globl\n").replace("name: api", "name: web")
    );
    let loaded = load_with("environments/staging/two.yaml", &text);
    assert_eq!(
        rendered(&loaded),
        [
            "environments/staging/two.yaml:13:9: E009: `globl` is not allowed for `spec.mode` | did you mean `global`?"
        ]
    );
}

#[test]
fn duplicate_keys_are_errors_not_last_one_wins() {
    let loaded = load_with(
        "environments/staging/api.yaml",
        &service("  replicas: 1\n  replicas: 2\n"),
    );
    assert_eq!(
        rendered(&loaded),
        [
            "environments/staging/api.yaml:7:3: E006: duplicate key `replicas` in `spec` | a key may appear once per mapping; remove or merge the repeated one"
        ]
    );
}

#[test]
fn the_same_service_twice_in_one_environment_is_an_error_pointing_at_both() {
    let one = service("  command: [a]\n");
    let loaded = load(&[
        file("clusters/local.yaml", CLUSTER),
        file("environments/staging/environment.yaml", ENV),
        file("environments/staging/a.yaml", &one),
        file("environments/staging/b.yaml", &one),
    ]);
    assert_eq!(
        rendered(&loaded),
        [
            "environments/staging/b.yaml:4:3: E008: Service `api` is defined twice in environment `staging` | the first definition is at environments/staging/a.yaml:4:3; rename or remove one"
        ]
    );
    assert_eq!(
        loaded.repo.environment("staging").unwrap().services.len(),
        1
    );
}

#[test]
fn a_syntax_error_in_one_document_does_not_hide_the_next() {
    let text = format!("{}---\n{}", "kind: [oops\n", service("  colour: red\n"));
    let loaded = load_with("environments/staging/x.yaml", &text);
    let lines = rendered(&loaded);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with("environments/staging/x.yaml:1:7: E001: invalid YAML"),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("environments/staging/x.yaml:8:3: E002: unknown field `colour`"),
        "{lines:?}"
    );
}

#[test]
fn kinds_in_the_wrong_folder_are_misplaced() {
    let loaded = load_with("clusters/api.yaml", &service("  command: [a]\n"));
    assert_eq!(
        rendered(&loaded),
        [
            "clusters/api.yaml:1:1: E007: a `Service` document cannot be here: clusters/ holds only `Cluster` documents | move it into `environments/<name>/`"
        ]
    );
}

#[test]
fn an_unknown_kind_suggests_the_kind_meant() {
    let loaded = load_with(
        "environments/staging/x.yaml",
        &service("").replace("kind: Service", "kind: Servce"),
    );
    assert_eq!(
        rendered(&loaded),
        ["environments/staging/x.yaml:2:1: E005: unknown kind `Servce` | did you mean `Service`?"]
    );
}

#[test]
fn an_environment_folder_needs_its_environment_document() {
    let loaded = load(&[
        file("clusters/local.yaml", CLUSTER),
        file("environments/prod/api.yaml", &service("  command: [a]\n")),
    ]);
    assert_eq!(
        rendered(&loaded),
        [
            "environments/prod/api.yaml:1:1: E011: environment folder `environments/prod/` has no `Environment` document | add `environments/prod/environment.yaml` with `kind: Environment` and `metadata.name: prod`"
        ]
    );
}

#[test]
fn a_bad_quantity_says_what_a_good_one_looks_like() {
    let loaded = load_with(
        "environments/staging/api.yaml",
        &service("  command: [a]\n  resources:\n    requests:\n      cpu: 2 cores\n"),
    );
    let lines = rendered(&loaded);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("environments/staging/api.yaml:9:12: E004: `spec.resources.requests.cpu` must be a CPU amount such as `2`, `0.25` or `250m`"),
        "{lines:?}"
    );
}

#[test]
fn secret_values_never_appear_in_errors() {
    let secret = "apiVersion: drover.dev/v1alpha1\nkind: Secret\nmetadata:\n  name: db\nspec:\n  data:\n    password: [hunter2-plaintext]\n";
    let loaded = load_with("environments/staging/db.yaml", secret);
    let lines = rendered(&loaded);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(!lines[0].contains("hunter2"), "{lines:?}");
}

#[test]
fn a_folder_without_the_layout_is_not_a_repo() {
    let loaded = load(&[file("README.yaml", "a: 1\n")]);
    assert_eq!(loaded.diagnostics[0].code, Code::NotARepo);
}

mod fast_path {
    //! The fast path (events → values) must accept ordinary documents and, wherever it
    //! accepts one, give exactly what the tree path gives.

    use std::sync::Arc;

    use drover_model::{Kind, Manifest, Metadata, ServiceSpec};
    use proptest::prelude::*;

    use crate::document::split;
    use crate::parse::{Doc, fast, parse_tree};

    fn service(doc: Doc) -> Arc<Manifest<ServiceSpec>> {
        match doc {
            Doc::Service(o) => o.manifest,
            other => panic!("not a service: {other:?}"),
        }
    }

    #[test]
    fn every_document_of_the_example_repo_takes_the_fast_path() {
        let root =
            std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/repo"));
        let files = crate::read_dir(root).unwrap();
        let mut documents = 0;
        for file in &files {
            let name: Arc<str> = file.path.as_str().into();
            for chunk in split(&file.text) {
                // An encrypted Secret takes the tree path: its `sops:` block is read
                // from the tree, and its MAC walks the tree.
                let encrypted = chunk.text.contains("\nsops:\n");
                assert_eq!(
                    fast(&name, &chunk).is_some(),
                    !encrypted,
                    "{} took the wrong path",
                    file.path
                );
                documents += 1;
            }
        }
        assert!(documents >= 14);
    }

    #[test]
    fn the_fast_path_declines_what_only_the_tree_path_reads_right() {
        let name: Arc<str> = "environments/e/s.yaml".into();
        let header = "apiVersion: drover.dev/v1alpha1\nkind: Service\nmetadata: {name: s}\n";
        for body in [
            "spec: {command: [a], replicas: 1, replicas: 2}\n", // a repeated key
            "spec: &s {command: [a]}\n",                        // an anchor
            "spec:\n  <<: {command: [a]}\n",                    // a merge key
            "spec: {command: [a], colour: red}\n",              // an unknown field
            "spec: {command: [a], replicas: !!str 3}\n",        // a tag
        ] {
            let text = format!("{header}{body}");
            let chunk = &split(&text)[0];
            assert!(fast(&name, chunk).is_none(), "should decline: {body}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

        #[test]
        fn wherever_the_fast_path_accepts_it_agrees_with_the_tree_path(metadata in any::<Metadata>(), spec in any::<ServiceSpec>()) {
            let mut m = Manifest::new(Kind::Service, String::new(), spec);
            m.metadata = metadata;
            let text = serde_saphyr::to_string(&m).unwrap();
            let name: Arc<str> = "environments/e/s.yaml".into();
            let chunk = &split(&text)[0];
            let tree = service(parse_tree(&name, chunk).unwrap().unwrap());
            prop_assert_eq!(&*tree, &m);
            if let Some(doc) = fast(&name, chunk) {
                prop_assert_eq!(&*service(doc), &m);
            }
        }
    }
}

#[test]
fn generated_services_keep_their_version_through_the_fast_path() {
    let text = "apiVersion: drover.dev/v1alpha1\nkind: Service\nmetadata:\n  name: svc-00001\n  labels: {team: t1, tier: backend}\nspec:\n  version: v1.1.0\n  image: registry.example/svc-00001:v1.0.0\n  command: [drover, example-app]\n  replicas: 2\n";
    let name: std::sync::Arc<str> = "environments/e/s.yaml".into();
    let chunk = &crate::document::split(text)[0];
    let Some(crate::parse::Doc::Service(o)) = crate::parse::fast(&name, chunk) else {
        panic!("declined")
    };
    assert_eq!(o.spec().version.as_deref(), Some("v1.1.0"));
    assert_eq!(o.spec().replicas, Some(2));
    assert_eq!(o.manifest.metadata.labels.len(), 2);
}

#[test]
fn every_problem_of_a_document_is_reported_at_once() {
    let loaded = load_with(
        "environments/staging/api.yaml",
        &service(
            "  command: [./api]\n  replicas: four\n  acess: public\n  update: {parallelism: lots}\n",
        ),
    );
    let found = rendered(&loaded);
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(
        found[0].starts_with("environments/staging/api.yaml:7:13: E004"),
        "{found:#?}"
    );
    assert!(
        found[1].starts_with("environments/staging/api.yaml:8:3: E002"),
        "{found:#?}"
    );
    assert!(found[1].contains("did you mean `access`?"), "{found:#?}");
    assert!(
        found[2].starts_with("environments/staging/api.yaml:9:25: E004"),
        "{found:#?}"
    );
}

#[test]
fn a_required_field_set_aside_is_not_reported_missing_as_well() {
    let loaded = load_with(
        "environments/staging/environment.yaml",
        "apiVersion: drover.dev/v1alpha1\nkind: Environment\nmetadata:\n  name: staging\nspec:\n  cluster: [local]\n",
    );
    let found = rendered(&loaded);
    assert!(found.iter().all(|f| !f.contains("E003")), "{found:#?}");
}

#[test]
fn unreadable_files_and_passed_limits_are_located_errors_and_the_rest_still_loads() {
    let limits = Limits::default();
    let binary = SourceFile::from_bytes(
        "environments/staging/blob.yaml".into(),
        vec![0x89, b'P', b'N', b'G', 0xff],
        &limits,
    );
    let loaded = load(&[
        file("clusters/local.yaml", CLUSTER),
        file("environments/staging/environment.yaml", ENV),
        binary,
        SourceFile::unreadable(
            "environments/staging/link.yaml",
            FileProblem::Symlink {
                target: "/etc/passwd".into(),
            },
        ),
        file(
            "environments/staging/api.yaml",
            &service(&format!(
                "  command: [./api]\n  env: {{BIG: \"{}\"}}\n",
                "x".repeat(200_000)
            )),
        ),
    ]);
    let found = rendered(&loaded);
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(
        found[0].starts_with("environments/staging/api.yaml:7:"),
        "{found:#?}"
    );
    assert!(
        found[0].contains("E013: this string is 195.3 KiB"),
        "{found:#?}"
    );
    assert!(
        found[1].starts_with("environments/staging/blob.yaml:1:1: E012"),
        "{found:#?}"
    );
    assert!(found[2].contains("link.yaml:1:1: E012"), "{found:#?}");
    assert!(found[2].contains("`/etc/passwd`"), "{found:#?}");
    assert!(
        loaded
            .repo
            .environment("staging")
            .unwrap()
            .environment
            .is_some()
    );
}

#[test]
fn a_file_with_too_many_documents_is_refused_without_being_parsed() {
    let docs = (0..1001)
        .map(|i| format!("apiVersion: drover.dev/v1alpha1\nkind: Secret\nmetadata: {{name: s{i}}}\nspec: {{values: {{a: b}}}}\n"))
        .collect::<Vec<_>>()
        .join("---\n");
    let loaded = load_with("environments/staging/many.yaml", &docs);
    let found = rendered(&loaded);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].contains("many.yaml:5000:1: E013: the file holds 1001 documents"),
        "{found:#?}"
    );
    assert!(
        loaded
            .repo
            .environment("staging")
            .unwrap()
            .secrets
            .is_empty()
    );
}

#[test]
fn links_in_a_directory_are_read_inside_the_repo_and_refused_out_of_it() {
    let root = tempfile::tempdir().unwrap();
    let env = root.path().join("environments/staging");
    std::fs::create_dir_all(&env).unwrap();
    std::fs::create_dir_all(root.path().join("clusters")).unwrap();
    std::fs::write(root.path().join("clusters/local.yaml"), CLUSTER).unwrap();
    std::fs::write(root.path().join("shared.yaml"), ENV).unwrap();
    std::os::unix::fs::symlink("../../shared.yaml", env.join("environment.yaml")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", env.join("zero.yaml")).unwrap();
    let outside = tempfile::NamedTempFile::new().unwrap();
    std::os::unix::fs::symlink(outside.path(), env.join("outside.yaml")).unwrap();
    let files = crate::read_dir(root.path()).unwrap();
    let loaded = load(&files);
    let found = rendered(&loaded);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(
        found[0].contains("outside.yaml:1:1: E012: the file is a symbolic link"),
        "{found:#?}"
    );
    assert!(
        found[1].contains("zero.yaml:1:1: E012: the file is a symbolic link to `/dev/zero`"),
        "{found:#?}"
    );
    assert!(
        loaded
            .repo
            .environment("staging")
            .unwrap()
            .environment
            .is_some()
    );
}

#[test]
fn a_plain_kubernetes_object_is_kept_as_written_under_its_kind_and_group() {
    let loaded = load_with(
        "environments/staging/jobs.yaml",
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\nspec:\n  template:\n    spec:\n      containers: [{name: m, image: 'm:1'}]\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {level: debug}\n",
    );
    assert!(loaded.diagnostics.is_empty(), "{:?}", rendered(&loaded));
    let manifests = &loaded.repo.environments[0].manifests;
    let names: Vec<&str> = manifests.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["Job.batch/migrate", "ConfigMap/settings"]);
    assert_eq!(manifests[1].value["data"]["level"], "debug");
    assert_eq!(
        manifests[1].locate("data.level").to_string(),
        "environments/staging/jobs.yaml:13:8"
    );
}

#[test]
fn a_plain_object_without_kind_or_name_says_what_it_needs_and_drovers_group_stays_strict() {
    let loaded = load_with(
        "environments/staging/x.yaml",
        "apiVersion: v1\nmetadata: {}\ndata: {}\n---\napiVersion: drover.dev/v2\nkind: Service\nmetadata: {name: a}\nspec: {}\n",
    );
    let lines = rendered(&loaded);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(lines[0].contains("has no `kind` text"), "{}", lines[0]);
    assert!(
        lines[1].contains("has no `metadata.name` text"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].contains("unsupported apiVersion `drover.dev/v2`"),
        "{}",
        lines[2]
    );
}

#[test]
fn plain_objects_belong_in_environments_not_clusters_and_are_unique() {
    let map = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n";
    let loaded = load(&[
        file("clusters/local.yaml", &format!("{CLUSTER}---\n{map}")),
        file("environments/staging/environment.yaml", ENV),
        file("environments/staging/a.yaml", &format!("{map}---\n{map}")),
    ]);
    let lines = rendered(&loaded);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines[0].contains("E007: a plain Kubernetes object cannot be here"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("E008: Manifest `ConfigMap/a` is defined twice"),
        "{}",
        lines[1]
    );
}
