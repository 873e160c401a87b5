//! A Drover service's workload: a Deployment (a DaemonSet in global mode) with its Pod
//! template — container, probes, resources, env, volumes, placement — and the update
//! settings as the rollout strategy.

use std::collections::BTreeMap;

use drover_diff::ObjectKey;
use drover_model::placement::{Constraint, Subject};
use drover_model::service::{
    Mode, Port, Probe, Protocol, ResourceList, Resources, RestartPolicy, ServiceSpec, Strategy,
    UpdateConfig, UpdateOrder, Volume, VolumeKind,
};
use serde_json::{Map, Value, json};

use super::{RenderError, Rendered, SERVICE_LABEL, Target, labels_of, metadata, network, spec};

/// A service's workload and, beside it, its network objects.
/// What a service asks that the Kubernetes engine does not do yet: said at every
/// apply, never dropped in silence.
fn not_built_here(key: &ObjectKey, service: &ServiceSpec, warnings: &mut Vec<String>) {
    if !service.depends_on.is_empty() {
        warnings.push(format!(
            "service {}: dependsOn ({}) is not honoured on Kubernetes yet: it rolls out together with the services it depends on",
            key.name,
            service.depends_on.join(", ")
        ));
    }
    if service.rollback != drover_model::service::UpdateConfig::default() {
        warnings.push(format!(
            "service {}: its rollback settings are not used on Kubernetes yet: a rollback rolls out with its update settings",
            key.name
        ));
    }
}

pub(super) fn service(
    key: &ObjectKey,
    value: &Value,
    target: &Target,
) -> Result<Rendered, RenderError> {
    let service: ServiceSpec = spec(key, value)?;
    let mut labels = labels_of(value);
    labels.insert(SERVICE_LABEL.to_owned(), key.name.clone());
    let mut warnings = Vec::new();
    let pod = pod_template(key, &service, &labels, &mut warnings)?;
    not_built_here(key, &service, &mut warnings);
    let selector = json!({"matchLabels": {SERVICE_LABEL: key.name}});
    let workload = match service.mode {
        Mode::Replicated => {
            let mut spec = json!({
                "selector": selector,
                "template": pod,
                "strategy": strategy(service.strategy, &service.update),
                "minReadySeconds": service.update.monitor.0 / 1000,
                "progressDeadlineSeconds": target.progress_deadline.max(1),
            });
            // With an autoscaler, replicas are its field: Drover leaves them out, so
            // they are neither applied over nor seen as drift.
            if service.autoscaling.is_none() {
                spec["replicas"] = Value::from(service.replicas.unwrap_or(1));
            }
            json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": metadata(&key.name, target, &labels),
                "spec": spec,
            })
        }
        Mode::Global => {
            if service.update.order == UpdateOrder::StartFirst {
                warnings.push(format!(
                    "service {}: a DaemonSet cannot start a new Pod before stopping the old one on Kubernetes 1.20 (maxSurge needs 1.21+): it updates stop-first",
                    key.name
                ));
            }
            json!({
                "apiVersion": "apps/v1",
                "kind": "DaemonSet",
                "metadata": metadata(&key.name, target, &labels),
                "spec": {
                    "selector": selector,
                    "template": pod,
                    "minReadySeconds": service.update.monitor.0 / 1000,
                    "updateStrategy": {
                        "type": "RollingUpdate",
                        "rollingUpdate": {"maxUnavailable": batch(service.update.parallelism)},
                    },
                },
            })
        }
    };
    let mut objects = vec![workload];
    objects.extend(network::objects(
        key,
        &service,
        &labels,
        target,
        &mut warnings,
    ));
    Ok(Rendered { objects, warnings })
}

/// Parallelism as a rollout batch: `0` means all at once.
fn batch(parallelism: u32) -> Value {
    if parallelism == 0 {
        Value::from("100%")
    } else {
        Value::from(parallelism)
    }
}

/// Swarm's update settings as a Deployment strategy: start-first surges `parallelism`
/// new Pods before old ones go, stop-first takes `parallelism` down first.
fn strategy(strategy: Strategy, update: &UpdateConfig) -> Value {
    match strategy {
        Strategy::Recreate => json!({"type": "Recreate"}),
        Strategy::Rolling => {
            let (surge, unavailable) = match update.order {
                UpdateOrder::StartFirst => (batch(update.parallelism), Value::from(0)),
                UpdateOrder::StopFirst => (Value::from(0), batch(update.parallelism)),
            };
            json!({
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable},
            })
        }
    }
}

/// The ports a container declares: the service's, or the default one.
pub(super) fn container_ports(service: &ServiceSpec) -> Vec<Port> {
    service.container_ports()
}

fn pod_template(
    key: &ObjectKey,
    service: &ServiceSpec,
    labels: &BTreeMap<String, String>,
    warnings: &mut Vec<String>,
) -> Result<Value, RenderError> {
    let Some(image) = service.image.clone() else {
        return Err(RenderError::new(
            key,
            "has no `image`: Kubernetes runs containers from images (set `spec.image`)",
        ));
    };
    if service.restart_policy != RestartPolicy::Always {
        warnings.push(format!(
            "service {}: restartPolicy {} is not available on Kubernetes, where a Deployment's Pods always restart (run one-off work as a Job)",
            key.name,
            match service.restart_policy {
                RestartPolicy::OnFailure => "on-failure",
                _ => "never",
            }
        ));
    }
    let ports = container_ports(service);
    let mut env: Vec<Value> = service
        .env
        .iter()
        .map(|(name, value)| json!({"name": name, "value": value}))
        .collect();
    // The same variables the local engine sets, so one program runs on both.
    for (name, value) in service.port_variables(&ports) {
        env.push(json!({"name": name, "value": value}));
    }
    for mount in &service.secrets {
        for (var, secret_key) in &mount.env {
            env.push(json!({
                "name": var,
                "valueFrom": {"secretKeyRef": {"name": mount.name, "key": secret_key}},
            }));
        }
    }
    let mut container = json!({
        "name": key.name,
        "image": image,
        "ports": ports.iter().map(|p| json!({
            "name": p.name,
            "containerPort": p.target,
            "protocol": protocol(p.protocol),
        })).collect::<Vec<_>>(),
        "env": env,
    });
    let c = container.as_object_mut().expect("an object");
    if !service.command.is_empty() {
        c.insert("command".into(), json!(service.command));
    }
    if !service.args.is_empty() {
        c.insert("args".into(), json!(service.args));
    }
    if let Some(dir) = &service.working_dir {
        c.insert("workingDir".into(), json!(dir));
    }
    if !service.resources.is_empty() {
        c.insert("resources".into(), resources(&service.resources));
    }
    let first = ports.first().map(|p| p.name.clone());
    for (field, probe) in [
        ("readinessProbe", &service.readiness_probe),
        ("livenessProbe", &service.liveness_probe),
    ] {
        if let Some(probe) = probe {
            c.insert(field.into(), self::probe(probe, first.as_deref()));
        }
    }
    let (volumes, mounts) = volumes(key, service, warnings)?;
    if !mounts.is_empty() {
        c.insert("volumeMounts".into(), Value::Array(mounts));
    }
    let mut pod = json!({"containers": [container]});
    let p = pod.as_object_mut().expect("an object");
    if !volumes.is_empty() {
        p.insert("volumes".into(), Value::Array(volumes));
    }
    placement(p, key, service)?;
    Ok(json!({"metadata": {"labels": labels}, "spec": pod}))
}

pub(super) fn protocol(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
    }
}

pub(super) fn resource_list(list: &ResourceList) -> Value {
    let mut m = Map::new();
    if let Some(cpu) = list.cpu {
        m.insert("cpu".into(), Value::from(cpu.to_string()));
    }
    if let Some(memory) = list.memory {
        m.insert("memory".into(), Value::from(memory.to_string()));
    }
    Value::Object(m)
}

pub(super) fn resources(r: &Resources) -> Value {
    let mut m = Map::new();
    if !r.requests.is_empty() {
        m.insert("requests".into(), resource_list(&r.requests));
    }
    if !r.limits.is_empty() {
        m.insert("limits".into(), resource_list(&r.limits));
    }
    Value::Object(m)
}

fn port_value(port: Option<&drover_model::service::PortRef>, first: Option<&str>) -> Value {
    use drover_model::service::PortRef;
    match port {
        Some(PortRef::Number(n)) => Value::from(*n),
        Some(PortRef::Name(name)) => Value::from(name.clone()),
        None => Value::from(first.unwrap_or("default")),
    }
}

fn probe(probe: &Probe, first: Option<&str>) -> Value {
    let mut p = json!({
        "initialDelaySeconds": probe.initial_delay_seconds,
        "periodSeconds": probe.period_seconds,
        "timeoutSeconds": probe.timeout_seconds,
        "successThreshold": probe.success_threshold,
        "failureThreshold": probe.failure_threshold,
    });
    if let Some(http) = &probe.http_get {
        let mut get = json!({
            "path": http.path,
            "port": port_value(http.port.as_ref(), first),
            "scheme": match http.scheme {
                drover_model::service::Scheme::Http => "HTTP",
                drover_model::service::Scheme::Https => "HTTPS",
            },
        });
        if !http.headers.is_empty() {
            get["httpHeaders"] = http
                .headers
                .iter()
                .map(|(name, value)| json!({"name": name, "value": value}))
                .collect();
        }
        p["httpGet"] = get;
    } else if let Some(tcp) = &probe.tcp_socket {
        p["tcpSocket"] = json!({"port": port_value(tcp.port.as_ref(), first)});
    } else if let Some(exec) = &probe.exec {
        p["exec"] = json!({"command": exec.command});
    }
    p
}

/// Volumes and secret mounts as Pod volumes and container mounts.
fn volumes(
    key: &ObjectKey,
    service: &ServiceSpec,
    warnings: &mut Vec<String>,
) -> Result<(Vec<Value>, Vec<Value>), RenderError> {
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    for Volume {
        name,
        kind,
        source,
        target,
        read_only,
    } in &service.volumes
    {
        let source_volume = match (kind, source) {
            (VolumeKind::HostPath, Some(path)) => json!({"hostPath": {"path": path}}),
            (VolumeKind::HostPath, None) => json!({"emptyDir": {}}),
            (VolumeKind::Nfs, Some(source)) => {
                let Some((server, path)) = source.split_once(':') else {
                    return Err(RenderError::new(
                        key,
                        format!("volume {name}: an NFS source is `SERVER:/PATH`, not `{source}`"),
                    ));
                };
                json!({"nfs": {"server": server, "path": path, "readOnly": read_only}})
            }
            (VolumeKind::Nfs, None) => {
                return Err(RenderError::new(
                    key,
                    format!("volume {name}: an NFS volume needs `source: SERVER:/PATH`"),
                ));
            }
            (VolumeKind::Config, source) => {
                json!({"configMap": {"name": source.clone().unwrap_or_else(|| name.clone())}})
            }
        };
        if *kind == VolumeKind::HostPath && source.is_some() {
            warnings.push(format!(
                "service {}: volume {name} is a host path: on Kubernetes its data stays on whichever node a Pod lands on",
                key.name
            ));
        }
        let mut volume = json!({"name": name});
        merge(&mut volume, source_volume);
        volumes.push(volume);
        mounts.push(json!({"name": name, "mountPath": target, "readOnly": read_only}));
    }
    for secret in &service.secrets {
        let volume = format!("secret-{}", secret.name);
        volumes.push(json!({"name": volume, "secret": {"secretName": secret.name}}));
        let path = secret
            .target
            .clone()
            .unwrap_or_else(|| format!("/run/secrets/{}", secret.name));
        mounts.push(json!({"name": volume, "mountPath": path, "readOnly": true}));
    }
    Ok((volumes, mounts))
}

fn merge(into: &mut Value, from: Value) {
    if let (Value::Object(a), Value::Object(b)) = (into, from) {
        a.extend(b);
    }
}

/// Placement constraints as a node selector (`==` on labels) and node affinity (the
/// rest); replicas spread over each preference's label, then over nodes, as Swarm
/// spreads tasks.
fn placement(
    pod: &mut Map<String, Value>,
    key: &ObjectKey,
    service: &ServiceSpec,
) -> Result<(), RenderError> {
    let mut selector = Map::new();
    let mut expressions = Vec::new();
    for text in &service.placement.constraints {
        let c = Constraint::parse(text)
            .map_err(|e| RenderError::new(key, format!("placement: {e}")))?;
        let operator = if c.equals { "In" } else { "NotIn" };
        match c.subject {
            Subject::Label(label) if c.equals => {
                selector.insert(label, Value::from(c.value));
            }
            Subject::Label(label) => expressions.push(json!({
                "key": label, "operator": operator, "values": [c.value],
            })),
            Subject::Name => expressions.push(json!({
                "key": "kubernetes.io/hostname", "operator": operator, "values": [c.value],
            })),
            Subject::Role => {
                let manager = (c.value == "manager") == c.equals;
                expressions.push(json!({
                    "key": "node-role.kubernetes.io/control-plane",
                    "operator": if manager { "Exists" } else { "DoesNotExist" },
                }));
            }
        }
    }
    if !selector.is_empty() {
        pod.insert("nodeSelector".into(), Value::Object(selector));
    }
    if !expressions.is_empty() {
        pod.insert(
            "affinity".into(),
            json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": expressions}],
            }}}),
        );
    }
    if service.mode == Mode::Replicated {
        // Placement preferences first (spread over a label's values), then nodes.
        let keys = service
            .placement
            .spread_labels()
            .into_iter()
            .chain(["kubernetes.io/hostname".to_owned()]);
        let spread: Vec<Value> = keys
            .map(|topology| {
                json!({
                    "maxSkew": 1,
                    "topologyKey": topology,
                    "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": {"matchLabels": {SERVICE_LABEL: key.name}},
                })
            })
            .collect();
        pod.insert("topologySpreadConstraints".into(), Value::from(spread));
    }
    Ok(())
}
