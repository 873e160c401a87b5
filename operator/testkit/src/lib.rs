//! Test and benchmark helpers: generators of realistic config repos, and real Git
//! repositories and servers.

pub mod git;
pub mod golden;

use std::fmt::Write as _;
use std::path::Path;

/// Shape of a generated repo.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Services in total, spread evenly over the environments.
    pub services: usize,
    /// Number of environments (each on its own local cluster).
    pub environments: usize,
}

/// One generated file: path relative to the repo root, and content.
pub type File = (String, String);

/// A repo of `shape.services` realistic services: probes, resources, autoscaling on
/// some, a route each, a secret and a dependency on a shared core service.
/// `revision` changes every 100th service's image, so two revisions differ by 1%.
pub fn repo(shape: Shape, revision: u32) -> Vec<File> {
    let mut files = Vec::new();
    let per_env = shape.services.div_ceil(shape.environments.max(1));
    for e in 0..shape.environments {
        let env = format!("env-{e:03}");
        let cluster = format!("cluster-{e:03}");
        let mut nodes = String::new();
        for n in 0..8 {
            let _ = write!(
                nodes,
                "      - name: node-{n}\n        capacity: {{cpu: 64, memory: 256Gi}}\n        labels: {{zone: z{}}}\n",
                n % 3
            );
        }
        files.push((
            format!("clusters/{cluster}.yaml"),
            format!("apiVersion: drover.dev/v1alpha1\nkind: Cluster\nmetadata:\n  name: {cluster}\nspec:\n  engine: local\n  local:\n    nodes:\n{nodes}    proxy:\n      listeners:\n        - name: http\n          port: 0\n"),
        ));
        files.push((
            format!("environments/{env}/environment.yaml"),
            format!("apiVersion: drover.dev/v1alpha1\nkind: Environment\nmetadata:\n  name: {env}\nspec:\n  cluster: {cluster}\n"),
        ));
        files.push((
            format!("environments/{env}/quota.yaml"),
            "apiVersion: drover.dev/v1alpha1\nkind: Quota\nmetadata:\n  name: quota\nspec:\n  hard:\n    requests: {cpu: 500, memory: 2000Gi}\n  limitRange:\n    defaultRequest: {cpu: 100m, memory: 64Mi}\n".to_owned(),
        ));
        files.push((
            format!("environments/{env}/secrets.yaml"),
            "apiVersion: drover.dev/v1alpha1\nkind: Secret\nmetadata:\n  name: db\nspec:\n  data:\n    password: bench-value-in-clear
".to_owned(),
        ));
        let count = per_env.min(shape.services.saturating_sub(e * per_env));
        for s in 0..count {
            let global = e * per_env + s;
            let name = if s == 0 {
                "core".to_owned()
            } else {
                format!("svc-{s:05}")
            };
            let version = if global.is_multiple_of(100) {
                format!("v1.{revision}.0")
            } else {
                "v1.0.0".to_owned()
            };
            let depends = if s == 0 {
                String::new()
            } else {
                "  dependsOn: [core]\n".to_owned()
            };
            let autoscaling = if s % 4 == 0 {
                "  autoscaling:\n    minReplicas: 1\n    maxReplicas: 6\n    metrics:\n      - type: cpu\n        target: 70\n"
            } else {
                ""
            };
            files.push((
                format!("environments/{env}/services/{name}.yaml"),
                format!(
                    "apiVersion: drover.dev/v1alpha1\nkind: Service\nmetadata:\n  name: {name}\n  labels: {{team: t{}, tier: backend}}\nspec:\n  version: {version}\n  image: registry.example/{name}:{version}\n  command: [drover, example-app]\n  args: [--message, \"{name}\"]\n  env:\n    LOG_LEVEL: info\n    SERVICE_NAME: {name}\n  replicas: 2\n  ports:\n    - name: http\n  resources:\n    requests: {{cpu: 10m, memory: 32Mi}}\n    limits: {{cpu: 100m, memory: 32Mi}}\n  readinessProbe:\n    httpGet: {{path: /ready, port: http}}\n    periodSeconds: 2\n  livenessProbe:\n    tcpSocket: {{port: http}}\n{autoscaling}  update:\n    parallelism: 1\n    order: start-first\n    failureAction: rollback\n  routes:\n    - host: {name}.{env}.localhost\n      path: /\n  secrets:\n    - name: db\n{depends}  placement:\n    constraints: [node.labels.zone != z9]\n",
                    s % 17
                ),
            ));
        }
    }
    files
}

/// Writes a generated repo under `root`.
pub fn write(root: &Path, files: &[File]) -> std::io::Result<()> {
    for (path, text) in files {
        let path = root.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, text)?;
    }
    Ok(())
}
