//! A Drover service as a Swarm service spec (`POST /v1.41/services/create`), as a
//! pure function: replicated or global mode, resources and reservations, placement
//! constraints and preferences, labels, env, command and args, a health check from the readiness (else
//! liveness) probe, the restart policy, the update and rollback config one to one,
//! host-mode published ports with DNS round robin (the routing mesh needs IPVS, which
//! not every host has), docker-flow-proxy's labels for routes, secrets as files, and
//! the environment's overlay network. A `Secret`'s keys become Swarm secrets named by
//! their content (Swarm secrets are immutable): a changed value is a new secret, and
//! the services that mount it are updated to it.
//!
//! Names follow `docker stack deploy`: the environment's namespace (its name unless
//! `spec.namespace` says otherwise) is the stack, and every name starts `STACK_`.
//! The engine puts the ids of networks and secrets in place of their names before it
//! sends a spec; everything else is sent as rendered here.
//!
//! One decision: with the environment's automatic rollback on, a `failure_action:
//! rollback` is rendered as `pause`. Swarm's own rollback would return one service and
//! leave Git saying the bad version; Drover sees the paused update as a failed release
//! and rolls the whole release back itself, with the revert commit, so Git and the
//! swarm agree. With automatic rollback off, Swarm's action is kept as written.

use std::collections::BTreeMap;

use drover_model::service::{
    Access, DEFAULT_TARGET_PORT, FailureAction, Mode, PortRef, Probe, Protocol, RestartPolicy,
    ServiceSpec, Strategy, UpdateConfig, UpdateOrder, VolumeKind,
};
use serde_json::{Value, json};

/// Labels on everything Drover creates: only services with them are ever pruned, and
/// then only those its inventory lists.
pub const MANAGED_BY: (&str, &str) = ("dev.drover.managed-by", "drover");
pub const ENVIRONMENT_LABEL: &str = "dev.drover.environment";
pub const SERVICE_LABEL: &str = "dev.drover.service";

/// A service's spec, and what it could not carry over.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub spec: Value,
    pub warnings: Vec<String>,
}

/// Where an environment's objects go on a swarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub environment: String,
    /// The stack namespace every name starts with: the environment's namespace.
    pub stack: String,
    /// The environment's `rollback.automatic`.
    pub automatic_rollback: bool,
}

impl Target {
    /// An environment's target from its normalized object.
    pub fn of(environment: &str, value: &Value) -> Target {
        let spec = &value["spec"];
        Target {
            environment: environment.to_owned(),
            stack: spec["namespace"].as_str().unwrap_or(environment).to_owned(),
            automatic_rollback: spec["rollback"]["automatic"].as_bool().unwrap_or(true),
        }
    }

    /// The Swarm service's name: `STACK_SERVICE`, as `docker stack deploy` names a
    /// stack's.
    pub fn service_name(&self, service: &str) -> String {
        format!("{}_{service}", self.stack)
    }

    /// The environment's overlay network.
    pub fn network_name(&self) -> String {
        format!("{}_default", self.stack)
    }

    fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
            (ENVIRONMENT_LABEL.to_owned(), self.environment.clone()),
            (STACK_LABEL.to_owned(), self.stack.clone()),
        ])
    }
}

/// What `docker stack deploy` labels a stack's objects with.
pub const STACK_LABEL: &str = "com.docker.stack.namespace";

/// The Swarm secrets of one `Secret`, by key: the name of the version each key's
/// current value is (`SECRET → KEY → STACK_SECRET_KEY-FINGERPRINT`).
pub type SecretVersions = BTreeMap<String, BTreeMap<String, String>>;

/// One key of a `Secret` as a Swarm secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretVersion {
    pub key: String,
    /// The fingerprint the normalized object holds for the key's value.
    pub fingerprint: String,
    /// Named by the value's fingerprint, so a new value is a new name.
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// Swarm's limit on a secret's name.
const NAME_MAX: usize = 64;

/// The Swarm secrets of `secret` (its normalized object: `data` holds each
/// key's fingerprint, never a value).
pub fn secret_versions(target: &Target, secret: &str, value: &Value) -> Vec<SecretVersion> {
    let keys = value["spec"]["data"].as_object();
    keys.into_iter()
        .flatten()
        .map(|(key, fingerprint)| {
            let digits = fingerprint
                .as_str()
                .unwrap_or_default()
                .trim_start_matches("sha256:");
            let mut base = format!("{}_{secret}_{key}", target.stack);
            // Swarm refuses longer names; the fingerprint must survive.
            base.truncate(NAME_MAX - digits.len() - 1);
            let mut labels = target.labels();
            labels.insert(SECRET_LABEL.into(), secret.to_owned());
            labels.insert(KEY_LABEL.into(), key.clone());
            SecretVersion {
                key: key.clone(),
                fingerprint: fingerprint.as_str().unwrap_or_default().to_owned(),
                name: format!("{base}-{digits}"),
                labels,
            }
        })
        .collect()
}

pub const SECRET_LABEL: &str = "dev.drover.secret";
pub const KEY_LABEL: &str = "dev.drover.key";

/// The environment's overlay network (`POST /networks/create`), attachable so that a
/// proxy or a one-off container can join it.
pub fn network(target: &Target) -> Value {
    json!({
        "Name": target.network_name(),
        "Driver": "overlay",
        "Attachable": true,
        "CheckDuplicate": true,
        "Labels": target.labels(),
    })
}

fn nanos(d: drover_model::quantity::Duration) -> u64 {
    d.millis() * 1_000_000
}

fn update_config(u: &UpdateConfig, strategy: Strategy, automatic_rollback: bool) -> Value {
    let action = match u.failure_action {
        FailureAction::Pause => "pause",
        FailureAction::Continue => "continue",
        FailureAction::Rollback if automatic_rollback => "pause",
        FailureAction::Rollback => "rollback",
    };
    let recreate = strategy == Strategy::Recreate;
    json!({
        // 0: all at once, as `recreate` asks.
        "Parallelism": if recreate { 0 } else { u.parallelism },
        "Delay": nanos(u.delay),
        "FailureAction": action,
        "Monitor": nanos(u.monitor),
        "MaxFailureRatio": u.max_failure_ratio,
        "Order": match u.order {
            UpdateOrder::StartFirst if !recreate => "start-first",
            _ => "stop-first",
        },
    })
}

/// The health check Swarm runs in the container. An HTTP or TCP probe needs a tool in
/// the image (`wget`, `nc`), which Drover cannot see: said in a warning.
fn healthcheck(probe: &Probe, spec: &ServiceSpec, name: &str, warnings: &mut Vec<String>) -> Value {
    let ports = spec.container_ports();
    let port_of = |r: Option<&PortRef>| match r {
        Some(PortRef::Number(n)) => *n,
        Some(PortRef::Name(named)) => ports
            .iter()
            .find(|p| &p.name == named)
            .and_then(|p| p.target)
            .unwrap_or(DEFAULT_TARGET_PORT),
        None => ports[0].target.unwrap_or(DEFAULT_TARGET_PORT),
    };
    let test: Vec<String> = if let Some(exec) = &probe.exec {
        std::iter::once("CMD".to_owned())
            .chain(exec.command.iter().cloned())
            .collect()
    } else if let Some(http) = &probe.http_get {
        warnings.push(format!(
            "service {name}: its HTTP probe runs as `wget` inside the container on Swarm: the image needs wget (busybox and alpine have it)"
        ));
        let url = format!(
            "http://127.0.0.1:{}{}",
            port_of(http.port.as_ref()),
            http.path
        );
        ["CMD", "wget", "-q", "-O", "/dev/null", &url]
            .map(str::to_owned)
            .to_vec()
    } else if let Some(tcp) = &probe.tcp_socket {
        warnings.push(format!(
            "service {name}: its TCP probe runs as `nc -z` inside the container on Swarm: the image needs nc"
        ));
        let port = port_of(tcp.port.as_ref()).to_string();
        ["CMD", "nc", "-z", "127.0.0.1", &port]
            .map(str::to_owned)
            .to_vec()
    } else {
        vec!["NONE".to_owned()]
    };
    json!({
        "Test": test,
        "Interval": u64::from(probe.period_seconds) * 1_000_000_000,
        "Timeout": u64::from(probe.timeout_seconds) * 1_000_000_000,
        "Retries": probe.failure_threshold,
        "StartPeriod": u64::from(probe.initial_delay_seconds) * 1_000_000_000,
    })
}

fn resources(list: &drover_model::service::ResourceList) -> Value {
    let mut out = serde_json::Map::new();
    if let Some(cpu) = list.cpu {
        out.insert("NanoCPUs".into(), json!(cpu.millis() * 1_000_000));
    }
    if let Some(memory) = list.memory {
        out.insert("MemoryBytes".into(), json!(memory.bytes()));
    }
    Value::Object(out)
}

fn labels(target: &Target, name: &str, spec: &ServiceSpec) -> BTreeMap<String, String> {
    let mut labels = target.labels();
    labels.insert(SERVICE_LABEL.to_owned(), name.to_owned());
    if let Some(version) = &spec.version {
        labels.insert("dev.drover.version".into(), version.clone());
    }
    // What docker-flow-proxy reads to route to the service by itself.
    let ports = spec.container_ports();
    for (i, route) in spec.routes.iter().enumerate() {
        let suffix = if i == 0 {
            String::new()
        } else {
            format!(".{i}")
        };
        let port = route
            .port
            .as_ref()
            .and_then(|p| ports.iter().find(|q| &q.name == p))
            .unwrap_or(&ports[0]);
        labels.insert("com.df.notify".into(), "true".into());
        labels.insert("com.df.distribute".into(), "true".into());
        labels.insert(format!("com.df.servicePath{suffix}"), route.path.clone());
        labels.insert(
            format!("com.df.port{suffix}"),
            port.target.unwrap_or(DEFAULT_TARGET_PORT).to_string(),
        );
        if let Some(host) = &route.host {
            labels.insert(format!("com.df.serviceDomain{suffix}"), host.clone());
        }
    }
    labels
}

/// The container's environment: the service's own, the `PORT` variables, and what
/// the local engine also tells each instance (`DROVER_*`; the instance by Swarm's
/// task template).
fn env_vars(target: &Target, name: &str, spec: &ServiceSpec) -> Vec<String> {
    let ports = spec.container_ports();
    let mut vars: BTreeMap<String, String> = spec.env.clone().into_iter().collect();
    vars.extend(spec.port_variables(&ports));
    vars.insert("DROVER_ENVIRONMENT".into(), target.environment.clone());
    vars.insert("DROVER_SERVICE".into(), name.to_owned());
    vars.insert("DROVER_INSTANCE".into(), "{{.Task.Name}}".into());
    if let Some(version) = &spec.version {
        vars.insert("DROVER_VERSION".into(), version.clone());
    }
    vars.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// Volumes as named volumes of the stack (`STACK_NAME`), kept across tasks.
fn mounts(target: &Target, name: &str, spec: &ServiceSpec, warnings: &mut Vec<String>) -> Value {
    let mounts: Vec<Value> = spec
        .volumes
        .iter()
        .map(|v| {
            if v.kind != VolumeKind::HostPath {
                warnings.push(format!(
                    "service {name}: volume {} is mounted as a named volume on Swarm",
                    v.name
                ));
            }
            let source = format!("{}_{}", target.stack, v.name);
            json!({"Type": "volume", "Source": source, "Target": v.target, "ReadOnly": v.read_only})
        })
        .collect();
    Value::from(mounts)
}

/// Each key of each mounted secret as a file `TARGET/KEY` (default
/// `/run/secrets/NAME/KEY`), readable by all in the container as Swarm's own are.
fn secret_files(
    name: &str,
    spec: &ServiceSpec,
    secrets: &SecretVersions,
    warnings: &mut Vec<String>,
) -> Value {
    let mut files = Vec::new();
    for mount in &spec.secrets {
        if !mount.env.is_empty() {
            warnings.push(format!(
                "service {name}: secret {} as environment variables is not built on Swarm, which delivers secrets as files only: read {}/KEY instead",
                mount.name,
                mount.target.as_deref().unwrap_or(&format!("/run/secrets/{}", mount.name))
            ));
        }
        let Some(keys) = secrets.get(&mount.name) else {
            warnings.push(format!(
                "service {name}: secret {} is not applied, so it is not mounted",
                mount.name
            ));
            continue;
        };
        let dir = mount
            .target
            .clone()
            .unwrap_or_else(|| format!("/run/secrets/{}", mount.name));
        for (key, version) in keys {
            files.push(json!({
                "File": {"Name": format!("{}/{key}", dir.trim_end_matches('/')), "UID": "0", "GID": "0", "Mode": 0o444},
                "SecretName": version,
            }));
        }
    }
    Value::from(files)
}

/// Placement constraints as Swarm writes them: a node's name is its hostname there.
fn constraints(spec: &ServiceSpec) -> Vec<String> {
    spec.placement
        .constraints
        .iter()
        .map(|c| match c.trim().strip_prefix("node.name") {
            Some(rest) => format!("node.hostname{rest}"),
            None => c.clone(),
        })
        .collect()
}

/// Placement preferences as Swarm's spread descriptors.
fn preferences(spec: &ServiceSpec) -> Vec<Value> {
    spec.placement
        .preferences
        .iter()
        .map(|p| json!({"Spread": {"SpreadDescriptor": p.spread.trim()}}))
        .collect()
}

fn published_ports(spec: &ServiceSpec) -> Vec<Value> {
    if !matches!(spec.access, Access::Public | Access::Private) {
        return Vec::new();
    }
    spec.container_ports()
        .iter()
        .map(|p| {
            let mut port = json!({
                "Protocol": match p.protocol { Protocol::Udp => "udp", _ => "tcp" },
                "TargetPort": p.target,
                "PublishMode": "host",
            });
            if let Some(published) = p.published {
                port["PublishedPort"] = json!(published);
            }
            port
        })
        .collect()
}

fn container(
    target: &Target,
    name: &str,
    spec: &ServiceSpec,
    secrets: &SecretVersions,
    warnings: &mut Vec<String>,
) -> Value {
    let mut container = json!({
        "Image": spec.image.clone().unwrap_or_default(),
        "Labels": {SERVICE_LABEL: name},
        "Env": env_vars(target, name, spec),
    });
    if !spec.command.is_empty() {
        container["Command"] = json!(spec.command);
    }
    if !spec.args.is_empty() {
        container["Args"] = json!(spec.args);
    }
    if let Some(dir) = &spec.working_dir {
        container["Dir"] = json!(dir);
    }
    if let Some(probe) = spec
        .readiness_probe
        .as_ref()
        .or(spec.liveness_probe.as_ref())
    {
        container["Healthcheck"] = healthcheck(probe, spec, name, warnings);
    }
    let mounts = mounts(target, name, spec, warnings);
    if mounts.as_array().is_some_and(|m| !m.is_empty()) {
        container["Mounts"] = mounts;
    }
    let files = secret_files(name, spec, secrets, warnings);
    if files.as_array().is_some_and(|f| !f.is_empty()) {
        container["Secrets"] = files;
    }
    container
}

/// The service spec of `name` in `target`'s environment; `secrets` names the current
/// version of each secret it may mount.
pub fn service(
    target: &Target,
    name: &str,
    spec: &ServiceSpec,
    secrets: &SecretVersions,
) -> Rendered {
    let mut warnings = Vec::new();
    if spec.autoscaling.is_some() {
        warnings.push(format!(
            "service {name}: autoscaling is not built for Swarm: it keeps {} replicas",
            spec.replicas.unwrap_or(1)
        ));
    }
    let mode = match spec.mode {
        Mode::Global => json!({"Global": {}}),
        _ => json!({"Replicated": {"Replicas": spec.replicas.unwrap_or(1)}}),
    };
    let restart = match spec.restart_policy {
        RestartPolicy::Always => "any",
        RestartPolicy::OnFailure => "on-failure",
        RestartPolicy::Never => "none",
    };
    let service = json!({
        "Name": target.service_name(name),
        "Labels": labels(target, name, spec),
        "TaskTemplate": {
            "ContainerSpec": container(target, name, spec, secrets, &mut warnings),
            "Resources": {
                "Limits": resources(&spec.resources.limits),
                "Reservations": resources(&spec.resources.requests),
            },
            "RestartPolicy": {"Condition": restart},
            "Placement": {"Constraints": constraints(spec), "Preferences": preferences(spec)},
            "Networks": [{"Target": target.network_name(), "Aliases": [name]}],
        },
        "Mode": mode,
        "UpdateConfig": update_config(&spec.update, spec.strategy, target.automatic_rollback),
        "RollbackConfig": update_config(&spec.rollback, spec.strategy, false),
        "EndpointSpec": {"Mode": "dnsrr", "Ports": published_ports(spec)},
    });
    Rendered {
        spec: service,
        warnings,
    }
}

#[cfg(test)]
mod tests;
