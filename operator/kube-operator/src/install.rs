//! What `drover install --print` emits (and `charts/drover` renders): the CRDs, the
//! namespace, the ServiceAccount and its least-privilege RBAC, the Deployment (non-root,
//! read-only root filesystem, resource requests, two replicas under a Lease), the
//! Service for the API, webhooks and metrics, and a NetworkPolicy. A pure function of
//! [`Settings`], so a test compares it with the chart object by object.

use serde_json::{Value, json};

/// The API port: the Drover API, the Git webhook and `/healthz`.
pub const API_PORT: u16 = 8080;

/// What an installation is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub namespace: String,
    pub image: String,
    pub replicas: u32,
    /// The config repo's URL.
    pub repo: String,
    pub branch: String,
    /// The config's directory in the repo.
    pub path: String,
    /// A Secret in `namespace` with `username` and `password`, or `identity` (an SSH
    /// private key), as Flux's GitRepository reads them.
    pub git_secret: Option<String>,
    /// A Secret in `namespace` whose `secret` key signs Git push webhooks.
    pub webhook_secret: Option<String>,
    /// A Secret in `namespace` whose `age.agekey` holds the age identity Drover opens
    /// encrypted secrets with (Flux's `sops-age` convention), mounted read-only.
    pub age_key_secret: Option<String>,
    /// `GET /metrics` without a token, and the pods annotated for Prometheus'
    /// annotation-based discovery (`prometheus.io/scrape`).
    pub metrics_public: bool,
    pub cpu_request: String,
    pub memory_request: String,
    pub memory_limit: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            namespace: "drover-system".into(),
            image: format!("ghcr.io/drover-dev/drover:v{}", env!("CARGO_PKG_VERSION")),
            replicas: 2,
            repo: String::new(),
            branch: "main".into(),
            path: String::new(),
            git_secret: None,
            webhook_secret: None,
            age_key_secret: None,
            metrics_public: false,
            cpu_request: "100m".into(),
            memory_request: "128Mi".into(),
            memory_limit: "512Mi".into(),
        }
    }
}

/// The name of everything the installation makes.
pub const NAME: &str = "drover";
/// The Lease the replicas elect their leader with.
pub const LEASE: &str = "drover-leader";

fn labels() -> Value {
    json!({
        "app.kubernetes.io/name": NAME,
        "app.kubernetes.io/component": "operator",
        "app.kubernetes.io/part-of": NAME,
    })
}

fn metadata(name: &str, namespace: Option<&str>) -> Value {
    let mut m = json!({ "name": name, "labels": labels() });
    if let Some(ns) = namespace {
        m["namespace"] = json!(ns);
    }
    m
}

/// Every object, in apply order.
pub fn objects(s: &Settings) -> Vec<Value> {
    let mut out: Vec<Value> = drover_model::schema::crds()
        .into_iter()
        .map(|crd| serde_json::to_value(crd).expect("a CRD is JSON"))
        .collect();
    let ns = Some(s.namespace.as_str());
    out.push(json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": metadata(&s.namespace, None),
    }));
    out.push(json!({
        "apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata(NAME, ns),
    }));
    out.push(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": metadata(NAME, None),
        "rules": cluster_rules(),
    }));
    out.push(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": metadata(NAME, None),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NAME},
        "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": s.namespace}],
    }));
    out.push(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": metadata(NAME, ns),
        "rules": namespace_rules(s),
    }));
    out.push(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": metadata(NAME, ns),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": NAME},
        "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": s.namespace}],
    }));
    out.push(deployment(s));
    out.push(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": metadata(NAME, ns),
        "spec": {
            "selector": selector(),
            "ports": [{"name": "http", "port": API_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }));
    out.push(network_policy(s));
    out
}

fn selector() -> Value {
    json!({ "app.kubernetes.io/name": NAME, "app.kubernetes.io/component": "operator" })
}

/// Everything Drover renders, in any namespace, and no more: what a plain manifest
/// of another kind needs is added by the cluster's owner (`rbac.extraRules` in the
/// chart), and Drover's status says which permission was missing.
pub fn cluster_rules() -> Value {
    const WRITE: [&str; 7] = [
        "get", "list", "watch", "create", "update", "patch", "delete",
    ];
    const READ: [&str; 3] = ["get", "list", "watch"];
    json!([
        {"apiGroups": ["drover.dev"], "resources": ["environments"], "verbs": WRITE},
        {"apiGroups": ["drover.dev"], "resources": ["environments/status"], "verbs": ["get", "update", "patch"]},
        {"apiGroups": [""], "resources": ["namespaces", "services", "secrets", "resourcequotas",
            "limitranges", "configmaps", "persistentvolumeclaims", "serviceaccounts"], "verbs": WRITE},
        {"apiGroups": ["apps"], "resources": ["deployments", "daemonsets", "statefulsets"], "verbs": WRITE},
        {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": WRITE},
        {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": WRITE},
        {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": WRITE},
        {"apiGroups": [""], "resources": ["pods"], "verbs": READ},
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch", "patch"]},
        {"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    ])
}

/// In its own namespace: the Lease, and the Secrets it is told to read (by name).
fn namespace_rules(s: &Settings) -> Value {
    let mut rules = vec![json!({
        "apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
        "verbs": ["get", "create", "update", "patch"],
    })];
    let secrets: Vec<&String> = [&s.git_secret, &s.webhook_secret]
        .into_iter()
        .flatten()
        .collect();
    if !secrets.is_empty() {
        rules.push(json!({
            "apiGroups": [""], "resources": ["secrets"], "resourceNames": secrets, "verbs": ["get"],
        }));
    }
    json!(rules)
}

fn deployment(s: &Settings) -> Value {
    let mut args = vec![
        "operator".to_owned(),
        "--repo".into(),
        s.repo.clone(),
        "--branch".into(),
        s.branch.clone(),
    ];
    let mut flag = |name: &str, value: &str| {
        if !value.is_empty() {
            args.push(format!("--{name}"));
            args.push(value.to_owned());
        }
    };
    flag("path", &s.path);
    flag("git-secret", s.git_secret.as_deref().unwrap_or_default());
    flag(
        "webhook-secret",
        s.webhook_secret.as_deref().unwrap_or_default(),
    );
    flag("listen", &format!("0.0.0.0:{API_PORT}"));
    flag("state-dir", "/var/lib/drover");
    if s.metrics_public {
        args.push("--metrics-public".into());
    }
    let mut deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": metadata(NAME, Some(&s.namespace)),
        "spec": {
            "replicas": s.replicas,
            "selector": {"matchLabels": selector()},
            "template": {
                "metadata": {"labels": labels()},
                "spec": {
                    "serviceAccountName": NAME,
                    "securityContext": {
                        "runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
                        "fsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [{
                        "name": "operator",
                        "image": s.image,
                        "imagePullPolicy": "IfNotPresent",
                        "args": args,
                        "env": [
                            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                        ],
                        "ports": [{"name": "http", "containerPort": API_PORT, "protocol": "TCP"}],
                        // Only the leader serves: the Service sends the API and webhooks
                        // to it alone. A standby is not restarted for waiting (no
                        // liveness probe); a leader that loses the Lease exits.
                        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
                        "resources": {
                            "requests": {"cpu": s.cpu_request, "memory": s.memory_request},
                            "limits": {"memory": s.memory_limit},
                        },
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                            "capabilities": {"drop": ["ALL"]},
                        },
                        "volumeMounts": [
                            {"name": "state", "mountPath": "/var/lib/drover"},
                            {"name": "tmp", "mountPath": "/tmp"},
                        ],
                    }],
                    "volumes": [
                        {"name": "state", "emptyDir": {}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
        },
    });
    if s.metrics_public {
        deployment["spec"]["template"]["metadata"]["annotations"] = json!({
            "prometheus.io/scrape": "true",
            "prometheus.io/port": API_PORT.to_string(),
            "prometheus.io/path": "/metrics",
        });
    }
    if let Some(secret) = &s.age_key_secret {
        let pod = &mut deployment["spec"]["template"]["spec"];
        let container = &mut pod["containers"][0];
        push(
            &mut container["env"],
            json!({"name": "SOPS_AGE_KEY_FILE", "value": AGE_KEY_FILE}),
        );
        push(
            &mut container["volumeMounts"],
            json!({"name": "age-key", "mountPath": AGE_KEY_DIR, "readOnly": true}),
        );
        push(
            &mut pod["volumes"],
            json!({"name": "age-key", "secret": {"secretName": secret, "defaultMode": 0o400}}),
        );
    }
    deployment
}

/// Where the age key Secret is mounted, and the file `SOPS_AGE_KEY_FILE` names.
const AGE_KEY_DIR: &str = "/etc/drover/age";
const AGE_KEY_FILE: &str = "/etc/drover/age/age.agekey";

fn push(list: &mut Value, item: Value) {
    if let Some(items) = list.as_array_mut() {
        items.push(item);
    }
}

/// Only the API port in; out, only DNS, the API server and Git (HTTPS, SSH, git://).
fn network_policy(s: &Settings) -> Value {
    let tcp = |port: u16| json!({"protocol": "TCP", "port": port});
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": metadata(NAME, Some(&s.namespace)),
        "spec": {
            "podSelector": {"matchLabels": selector()},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"ports": [tcp(API_PORT)]}],
            "egress": [
                {"ports": [{"protocol": "UDP", "port": 53}, tcp(53)]},
                {"ports": [tcp(443), tcp(6443), tcp(22), tcp(9418)]},
            ],
        },
    })
}

/// The objects as one YAML stream.
pub fn yaml(objects: &[Value]) -> String {
    let mut out = String::new();
    for object in objects {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(object).expect("JSON values serialize to YAML"));
    }
    out
}
