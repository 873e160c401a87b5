//! A Drover service as a Swarm service spec (`POST /v1.41/services/create`), as a
//! pure function: replicated or global mode, resources and reservations, placement
//! constraints, labels, env, command and args, a health check from the readiness (else
//! liveness) probe, the restart policy, the update and rollback config one to one,
//! host-mode published ports with DNS round robin (the routing mesh needs IPVS, which
//! not every host has), docker-flow-proxy's labels for routes, and the environment's
//! overlay network.
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

/// The Swarm service's name: `ENV_SERVICE`, as `docker stack deploy` names a stack's.
pub fn service_name(env: &str, service: &str) -> String {
    format!("{env}_{service}")
}

/// The environment's overlay network.
pub fn network_name(env: &str) -> String {
    format!("{env}_default")
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

fn labels(env: &str, name: &str, spec: &ServiceSpec) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
        (ENVIRONMENT_LABEL.to_owned(), env.to_owned()),
        (SERVICE_LABEL.to_owned(), name.to_owned()),
        ("com.docker.stack.namespace".to_owned(), env.to_owned()),
    ]);
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

/// The service spec of `name` in `env`; `automatic_rollback` is the environment's.
pub fn service(env: &str, name: &str, spec: &ServiceSpec, automatic_rollback: bool) -> Rendered {
    let mut warnings = Vec::new();
    let ports = spec.container_ports();
    let mut env_vars: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    env_vars.extend(
        spec.port_variables(&ports)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}")),
    );
    let mut container = json!({
        "Image": spec.image.clone().unwrap_or_default(),
        "Labels": {SERVICE_LABEL: name},
        "Env": env_vars,
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
        container["Healthcheck"] = healthcheck(probe, spec, name, &mut warnings);
    }
    let mounts: Vec<Value> = spec
        .volumes
        .iter()
        .map(|v| {
            let (kind, source) = match v.kind {
                VolumeKind::HostPath => ("volume", format!("{env}_{}", v.name)),
                VolumeKind::Nfs | VolumeKind::Config => {
                    warnings.push(format!(
                        "service {name}: volume {} is mounted as a named volume on Swarm",
                        v.name
                    ));
                    ("volume", format!("{env}_{}", v.name))
                }
            };
            json!({"Type": kind, "Source": source, "Target": v.target, "ReadOnly": v.read_only})
        })
        .collect();
    if !mounts.is_empty() {
        container["Mounts"] = json!(mounts);
    }
    if !spec.secrets.is_empty() {
        warnings.push(format!(
            "service {name}: its secrets are not rendered for Swarm yet (Swarm secrets named by their content's hash come with the engine)"
        ));
    }
    let published: Vec<Value> = match spec.access {
        Access::Public | Access::Private => ports
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
            .collect(),
        _ => Vec::new(),
    };
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
        "Name": service_name(env, name),
        "Labels": labels(env, name, spec),
        "TaskTemplate": {
            "ContainerSpec": container,
            "Resources": {
                "Limits": resources(&spec.resources.limits),
                "Reservations": resources(&spec.resources.requests),
            },
            "RestartPolicy": {"Condition": restart},
            "Placement": {"Constraints": spec.placement.constraints},
            "Networks": [{"Target": network_name(env), "Aliases": [name]}],
        },
        "Mode": mode,
        "UpdateConfig": update_config(&spec.update, spec.strategy, automatic_rollback),
        "RollbackConfig": update_config(&spec.rollback, spec.strategy, false),
        "EndpointSpec": {"Mode": "dnsrr", "Ports": published},
    });
    Rendered {
        spec: service,
        warnings,
    }
}

#[cfg(test)]
mod tests;
