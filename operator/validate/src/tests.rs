//! Rule tests on small in-memory repos.

use drover_load::{SourceFile, load};

use super::*;

const CLUSTER: &str = "apiVersion: drover.dev/v1alpha1\nkind: Cluster\nmetadata:\n  name: local\nspec:\n  local:\n    nodes:\n      - name: n1\n        capacity: {cpu: 4, memory: 8Gi}\n      - name: n2\n        capacity: {cpu: 4, memory: 8Gi}\n        availability: drain\n";
const ENV: &str = "apiVersion: drover.dev/v1alpha1\nkind: Environment\nmetadata:\n  name: staging\nspec:\n  cluster: local\n";

fn service(name: &str, body: &str) -> String {
    format!(
        "---\napiVersion: drover.dev/v1alpha1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  command: [run]\n{body}"
    )
}

fn check(env_files: &[(&str, String)]) -> Vec<String> {
    let mut files = vec![
        SourceFile::new("clusters/local.yaml", CLUSTER),
        SourceFile::new("environments/staging/environment.yaml", ENV),
    ];
    for (name, text) in env_files {
        files.push(SourceFile::new(
            format!("environments/staging/{name}"),
            text.clone(),
        ));
    }
    let loaded = load(&files);
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    let mut d = validate(&loaded.repo);
    drover_diagnostics::sort(&mut d);
    d.iter()
        .map(|d| format!("{}: {}: {}", d.location, d.code.id(), d.message))
        .collect()
}

#[test]
fn a_dependency_cycle_is_printed_from_its_first_service() {
    let text = [
        service("a", "  dependsOn: [b]\n"),
        service("b", "  dependsOn: [c]\n"),
        service("c", "  dependsOn: [a]\n"),
    ]
    .concat();
    assert_eq!(
        check(&[("s.yaml", text)]),
        [
            "environments/staging/s.yaml:8:15: E115: services depend on each other in a cycle: a → b → c → a"
        ]
    );
}

#[test]
fn quota_totals_count_replicas_times_requests_and_name_the_biggest() {
    let text = [
        service("a", "  replicas: 3\n  resources:\n    requests: {cpu: 1}\n"),
        service("b", "  resources:\n    requests: {cpu: 500m}\n"),
    ]
    .concat();
    let quota = "apiVersion: drover.dev/v1alpha1\nkind: Quota\nmetadata:\n  name: q\nspec:\n  hard:\n    requests:\n      cpu: 3\n";
    assert_eq!(
        check(&[("s.yaml", text), ("quota.yaml", quota.into())]),
        [
            "environments/staging/quota.yaml:8:7: E116: environment `staging` requests 3500m CPU in total (a 3, b 500m), above quota `q`'s `requests.cpu: 3`"
        ]
    );
}

#[test]
fn global_services_count_one_instance_per_node_that_is_not_drained() {
    let text = service(
        "agent",
        "  mode: global\n  resources:\n    requests: {cpu: 2}\n",
    );
    let quota = "apiVersion: drover.dev/v1alpha1\nkind: Quota\nmetadata:\n  name: q\nspec:\n  hard:\n    instances: 1\n    requests: {cpu: 2}\n";
    assert!(check(&[("s.yaml", text), ("quota.yaml", quota.into())]).is_empty());
}

#[test]
fn a_valid_service_with_every_section_has_no_findings() {
    let body = "  ports: [{name: http}]\n  readinessProbe:\n    httpGet: {path: /ready, port: http}\n  livenessProbe:\n    tcpSocket: {}\n  resources:\n    requests: {cpu: 250m, memory: 128Mi}\n    limits: {cpu: 1, memory: 128Mi}\n  autoscaling:\n    maxReplicas: 4\n    metrics: [{type: cpu, target: 60}]\n  routes: [{host: shop.example.com, path: /}]\n  placement:\n    constraints: [node.labels.zone == a]\n";
    assert_eq!(
        check(&[("s.yaml", service("web", body))]),
        Vec::<String>::new()
    );
}

#[test]
fn a_broken_document_is_reported_once_not_again_by_everything_that_refers_to_it() {
    let files = vec![
        SourceFile::new("clusters/local.yaml", CLUSTER),
        SourceFile::new("environments/staging/environment.yaml", ENV),
        SourceFile::new(
            "environments/staging/api.yaml",
            service("api", "  replicas: many\n"),
        ),
        SourceFile::new(
            "environments/staging/web.yaml",
            service("web", "  dependsOn: [api]\n"),
        ),
    ];
    let checked = crate::check(&files);
    let codes: Vec<&str> = checked.diagnostics.iter().map(|d| d.code.id()).collect();
    assert_eq!(codes, ["E004"], "{:?}", checked.diagnostics);
}

#[test]
fn plain_kubernetes_objects_need_a_kubernetes_cluster_no_namespace_and_no_plain_secret() {
    let found = check(&[(
        "k8s.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: other}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: b}\ndata: {password: aHVudGVyMg==}\n".to_owned(),
    )]);
    assert_eq!(
        found,
        [
            "environments/staging/k8s.yaml:1:1: E130: ConfigMap/a is a plain Kubernetes object, but environment `staging` runs on cluster `local`, whose engine runs Drover's own kinds only",
            "environments/staging/k8s.yaml:3:21: E130: ConfigMap/a names a namespace: an environment's objects all go into its own namespace",
            "environments/staging/k8s.yaml:5:1: E130: Secret/b is a plain Kubernetes object, but environment `staging` runs on cluster `local`, whose engine runs Drover's own kinds only",
            "environments/staging/k8s.yaml:6:1: E130: Secret/b is a Kubernetes Secret: its values would be in Git for every reader of the repo, and in every diff",
        ]
    );
    assert!(!found.iter().any(|l| l.contains("aHVudGVyMg")));
}

#[test]
fn kubernetes_node_names_are_kubernetes_names_and_listed_once() {
    let cluster = "apiVersion: drover.dev/v1alpha1\nkind: Cluster\nmetadata:\n  name: kube\nspec:\n  engine: kubernetes\n  kubernetes:\n    nodes:\n      - name: ip-10-0-1-2.ec2.internal\n      - name: Bad_Node\n      - name: ip-10-0-1-2.ec2.internal\n        availability: pause\n";
    let loaded = load(&[SourceFile::new("clusters/kube.yaml", cluster)]);
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    let found: Vec<String> = validate(&loaded.repo)
        .iter()
        .map(|d| format!("{}: {}", d.location, d.message))
        .collect();
    assert_eq!(
        found,
        [
            "clusters/kube.yaml:10:9: node name `Bad_Node` may only hold lowercase letters, digits, `-` and `.`",
            "clusters/kube.yaml:11:9: node `ip-10-0-1-2.ec2.internal` is listed twice",
        ]
    );
}
