//! Service rules (domain notes §1–§8) and the references between an environment's
//! services: secrets, `dependsOn` and its cycles, routes two services claim.

use std::collections::{BTreeMap, BTreeSet};

use drover_diagnostics::{Code, closest};
use drover_load::{EnvironmentDir, Object, Repo};
use drover_model::cluster::Engine;
use drover_model::placement::Constraint;
use drover_model::service::{FailureAction, Mode, PortRef, Probe, UpdateConfig, VolumeKind};
use drover_model::{Amount, Kind, SecretSpec, ServiceSpec};

use crate::{Findings, Hint, names};

pub(crate) fn check_all(f: &mut Findings<'_>, repo: &Repo, dir: &EnvironmentDir) {
    let engine = dir
        .environment
        .as_ref()
        .and_then(|e| repo.cluster(&e.spec().cluster))
        .map(|c| c.spec().engine);
    let secrets: BTreeSet<&str> = dir.secrets.iter().map(|s| s.name()).collect();
    let services: BTreeSet<&str> = dir.services.iter().map(|s| s.name()).collect();
    for service in &dir.services {
        names::object(f, service);
        check_service(f, service, engine);
        for (i, mount) in service.spec().secrets.iter().enumerate() {
            if !secrets.contains(mount.name.as_str())
                && !repo.failed_to_parse(&dir.name, Kind::Secret, &mount.name)
            {
                let d = f.at(
                    service,
                    &format!("spec.secrets[{i}].name"),
                    Code::UnknownSecret,
                    format!(
                        "service `{}` mounts secret `{}`, which environment `{}` does not define",
                        service.name(),
                        mount.name,
                        dir.name
                    ),
                );
                match closest(&mount.name, secrets.iter().copied()) {
                    Some(s) => d.hint(format!("did you mean `{s}`?")),
                    None => d.hint(format!(
                        "add a `kind: Secret` named `{}` to environments/{}/",
                        mount.name, dir.name
                    )),
                }
            }
        }
        for (i, mount) in service.spec().secrets.iter().enumerate() {
            let Some(secret) = dir.secrets.iter().find(|s| s.name() == mount.name) else {
                continue;
            };
            for (var, key) in &mount.env {
                if !secret.spec().data.contains_key(key) {
                    f.at(
                        service,
                        &format!("spec.secrets[{i}].env.{var}"),
                        Code::UnknownSecret,
                        format!(
                            "`{var}` takes key `{key}` of secret `{}`, which has no such key",
                            mount.name
                        ),
                    )
                    .hint(format!(
                        "its keys: {}",
                        secret
                            .spec()
                            .data
                            .keys()
                            .map(|k| format!("`{k}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
        }
        for (i, dep) in service.spec().depends_on.iter().enumerate() {
            if dep == service.name() {
                f.at(
                    service,
                    &format!("spec.dependsOn[{i}]"),
                    Code::DependencyCycle,
                    format!("service `{dep}` depends on itself"),
                );
            } else if !services.contains(dep.as_str())
                && !repo.failed_to_parse(&dir.name, Kind::Service, dep)
            {
                let d = f.at(
                    service,
                    &format!("spec.dependsOn[{i}]"),
                    Code::UnknownDependency,
                    format!(
                        "service `{}` depends on `{dep}`, which environment `{}` does not define",
                        service.name(),
                        dir.name
                    ),
                );
                match closest(dep, services.iter().copied()) {
                    Some(s) => d.hint(format!("did you mean `{s}`?")),
                    None => d.hint(format!(
                        "define service `{dep}` in environments/{}/, or remove the entry",
                        dir.name
                    )),
                }
            }
        }
    }
    dependency_cycles(f, dir);
    route_conflicts(f, dir);
}

fn check_service(f: &mut Findings<'_>, service: &Object<ServiceSpec>, engine: Option<Engine>) {
    let spec = service.spec();
    let name = service.name();

    if let Some(why) = spec
        .version
        .as_deref()
        .and_then(crate::artifact::version_problem)
    {
        f.at(
            service,
            "spec.version",
            Code::InvalidValue,
            format!("`spec.version`: {why}"),
        );
    }
    if let Some(why) = spec
        .image
        .as_deref()
        .and_then(crate::artifact::image_problem)
    {
        f.at(
            service,
            "spec.image",
            Code::InvalidValue,
            format!("`spec.image`: {why}"),
        );
    }

    if spec.command.is_empty() && spec.image.is_none() {
        f.at(
            service,
            "spec",
            Code::NoWorkload,
            format!("service `{name}` has neither `command` nor `image`: nothing to run"),
        )
        .hint("set `command` (the local engine runs processes) or `image` (Kubernetes)");
    } else if spec.command.is_empty() && engine == Some(Engine::Local) {
        f.at(service, "spec.image", Code::NoWorkload, format!("service `{name}` has only an `image`, but its cluster uses the local engine, which runs processes"))
            .hint("add `command: [program, args…]`");
    }

    let from_secrets = spec.secrets.iter().enumerate().flat_map(|(i, m)| {
        m.env
            .keys()
            .map(move |k| (format!("spec.secrets[{i}].env.{k}"), k))
    });
    let mut named = BTreeSet::new();
    for (path, key) in spec
        .env
        .keys()
        .map(|k| (format!("spec.env.{k}"), k))
        .chain(from_secrets)
    {
        let valid = !key.is_empty()
            && !key.as_bytes()[0].is_ascii_digit()
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            f.at(service, &path, Code::InvalidEnvVarName, format!("environment variable name `{key}` may only hold letters, digits and `_`, and may not start with a digit"))
                .hint(format!("for example `{}`", key.replace(|c: char| !c.is_ascii_alphanumeric(), "_").trim_start_matches(|c: char| c.is_ascii_digit())));
        } else if !named.insert(key) {
            f.at(service, &path, Code::InvalidEnvVarName, format!("environment variable `{key}` is set twice (in `env` and from a secret, or by two secrets)"))
                .hint("give each variable one source");
        }
    }

    if spec.mode == Mode::Global && spec.replicas.is_some() {
        f.at(service, "spec.replicas", Code::ReplicasWithGlobalMode, format!("service `{name}` sets `replicas` but its mode is `global` (one instance per eligible node)"))
            .hint("remove `replicas`, or set `mode: replicated`");
    }

    // Ports.
    let mut port_names = BTreeSet::new();
    for (i, port) in spec.ports.iter().enumerate() {
        let path = format!("spec.ports[{i}]");
        names::check(f, service, &format!("{path}.name"), "port name", &port.name);
        if !port_names.insert(port.name.as_str()) {
            f.at(
                service,
                &format!("{path}.name"),
                Code::InvalidPort,
                format!("port `{}` is declared twice", port.name),
            )
            .hint("port names are unique within a service; rename or remove one");
        }
        if port.target == Some(0) {
            f.at(
                service,
                &format!("{path}.target"),
                Code::InvalidPort,
                "port 0 is not a port".into(),
            )
            .hint("leave `target` unset to have one assigned");
        }
        if port.published == Some(0) {
            f.at(
                service,
                &format!("{path}.published"),
                Code::InvalidPort,
                "port 0 is not a port".into(),
            );
        }
    }

    // Resources: limit >= request, unless the limit is 0 (unlimited).
    let req = spec.resources.requests;
    let lim = spec.resources.limits;
    limit_not_below_request(f, service, req.cpu, lim.cpu);
    limit_not_below_request(f, service, req.memory, lim.memory);
    if let Some(r) = req.memory
        && lim.memory != Some(r)
    {
        let limit = lim
            .memory
            .map_or("there is no memory limit".to_owned(), |l| {
                format!("differs from the limit {l}")
            });
        f.at(
            service,
            "spec.resources.requests.memory",
            Code::MemoryRequestNotLimit,
            format!("memory request {r} {limit}: an instance above its request may be killed"),
        )
        .hint(format!("set `limits.memory: {r}` as well"));
    }

    // Probes.
    if let Some(probe) = &spec.liveness_probe {
        check_probe(f, service, "spec.livenessProbe", probe);
        if probe.success_threshold != 1 {
            f.at(
                service,
                "spec.livenessProbe.successThreshold",
                Code::LivenessSuccessThreshold,
                format!(
                    "a liveness probe's success threshold must be 1, not {}",
                    probe.success_threshold
                ),
            )
            .hint("remove `successThreshold`, or set it to 1");
        }
    }
    if let Some(probe) = &spec.readiness_probe {
        check_probe(f, service, "spec.readinessProbe", probe);
    }

    // Autoscaling.
    if let Some(auto) = &spec.autoscaling {
        let path = "spec.autoscaling";
        if spec.mode == Mode::Global {
            f.at(service, path, Code::InvalidAutoscaling, format!("service `{name}` is `global`: its instance count follows the nodes and cannot be autoscaled"));
        }
        if auto.min_replicas == 0 {
            f.at(
                service,
                &format!("{path}.minReplicas"),
                Code::InvalidAutoscaling,
                "`minReplicas` must be at least 1".into(),
            );
        }
        if auto.min_replicas > auto.max_replicas {
            f.at(
                service,
                &format!("{path}.minReplicas"),
                Code::InvalidAutoscaling,
                format!(
                    "`minReplicas` ({}) is above `maxReplicas` ({})",
                    auto.min_replicas, auto.max_replicas
                ),
            )
            .hint("make minReplicas <= maxReplicas");
        } else if let Some(r) = spec.replicas
            && !(auto.min_replicas..=auto.max_replicas).contains(&r)
        {
            f.at(
                service,
                "spec.replicas",
                Code::InvalidAutoscaling,
                format!(
                    "`replicas` ({r}) is outside the autoscaling bounds {}..={}",
                    auto.min_replicas, auto.max_replicas
                ),
            )
            .hint("set replicas within the bounds, or leave it unset to start at minReplicas");
        }
        if auto.metrics.is_empty() {
            f.at(
                service,
                &format!("{path}.metrics"),
                Code::InvalidAutoscaling,
                "autoscaling needs at least one metric".into(),
            )
            .hint("for example `- {type: cpu, target: 60}`");
        }
        if !(0.0..1.0).contains(&auto.tolerance) {
            f.at(
                service,
                &format!("{path}.tolerance"),
                Code::InvalidAutoscaling,
                format!(
                    "`tolerance` must be at least 0 and below 1, not {}",
                    auto.tolerance
                ),
            );
        }
        if auto.evaluation_period.millis() == 0 {
            f.at(
                service,
                &format!("{path}.evaluationPeriod"),
                Code::InvalidAutoscaling,
                "`evaluationPeriod` must be longer than 0s".into(),
            );
        }
        for (i, metric) in auto.metrics.iter().enumerate() {
            let mpath = format!("{path}.metrics[{i}]");
            if metric.target == 0 {
                f.at(
                    service,
                    &format!("{mpath}.target"),
                    Code::InvalidAutoscaling,
                    "a metric's target must be above 0".into(),
                );
            }
            use drover_model::service::MetricKind;
            let (missing, resource) = match metric.kind {
                MetricKind::Cpu => (req.cpu.is_none(), "cpu"),
                MetricKind::Memory => (req.memory.is_none(), "memory"),
                _ => (false, ""),
            };
            if missing {
                f.at(service, &format!("{mpath}.type"), Code::UtilizationNeedsRequest, format!("a {resource} utilization target needs `resources.requests.{resource}`: utilization is usage divided by the request"))
                    .hint(format!("set `resources.requests.{resource}`"));
            }
        }
    }

    check_update(f, service, "spec.update", &spec.update, false);
    check_update(f, service, "spec.rollback", &spec.rollback, true);

    for (i, text) in spec.placement.constraints.iter().enumerate() {
        if let Err(e) = Constraint::parse(text) {
            f.at(
                service,
                &format!("spec.placement.constraints[{i}]"),
                Code::InvalidConstraint,
                format!("placement constraint {e}"),
            )
            .hint(
                "write `node.labels.KEY == VALUE`, `node.role == manager` or `node.name != NAME`",
            );
        }
    }

    for (i, preference) in spec.placement.preferences.iter().enumerate() {
        if preference.label().is_none() {
            f.at(
                service,
                &format!("spec.placement.preferences[{i}].spread"),
                Code::InvalidConstraint,
                format!(
                    "placement preference `spread: {}` names no node label",
                    preference.spread
                ),
            )
            .hint("write `spread: node.labels.KEY`, e.g. `node.labels.zone`");
        }
    }

    // Routes.
    for (i, route) in spec.routes.iter().enumerate() {
        let path = format!("spec.routes[{i}]");
        if !route.path.starts_with('/') {
            f.at(
                service,
                &format!("{path}.path"),
                Code::RouteConflict,
                format!("route path `{}` must start with `/`", route.path),
            )
            .hint(format!("write `/{}`", route.path));
        }
        if let Some(host) = &route.host
            && !valid_host(host)
        {
            f.at(service, &format!("{path}.host"), Code::RouteConflict, format!("route host `{host}` is not a host name"))
                .hint("lowercase labels separated by dots, optionally starting with `*.`, e.g. `shop.example.com`");
        }
        port_reference(
            f,
            service,
            &format!("{path}.port"),
            route.port.as_deref(),
            "route",
        );
    }
    if !spec.routes.is_empty() && spec.readiness_probe.is_none() {
        f.at(service, "spec.routes", Code::RoutedWithoutReadiness, format!("service `{name}` is routed but has no readiness probe: instances get traffic as soon as they start"))
            .hint("add `readinessProbe: {httpGet: {path: /ready}}`");
    }

    // Volumes.
    let mut volume_names = BTreeSet::new();
    for (i, volume) in spec.volumes.iter().enumerate() {
        let path = format!("spec.volumes[{i}]");
        names::check(
            f,
            service,
            &format!("{path}.name"),
            "volume name",
            &volume.name,
        );
        if !volume_names.insert(volume.name.as_str()) {
            f.at(
                service,
                &format!("{path}.name"),
                Code::InvalidVolume,
                format!("volume `{}` is declared twice", volume.name),
            );
        }
        if !volume.target.starts_with('/') {
            f.at(
                service,
                &format!("{path}.target"),
                Code::InvalidVolume,
                format!("volume target `{}` must be an absolute path", volume.target),
            )
            .hint(format!("write `/{}`", volume.target));
        }
        match (volume.kind, volume.source.as_deref()) {
            (VolumeKind::Nfs, source) if !source.is_some_and(|s| s.contains(":/")) => {
                f.at(
                    service,
                    &format!("{path}.source"),
                    Code::InvalidVolume,
                    "an nfs volume needs `source: server:/export`".into(),
                );
            }
            (VolumeKind::Config, None) => {
                f.at(
                    service,
                    &format!("{path}.source"),
                    Code::InvalidVolume,
                    "a config volume needs `source`: a file of the config repo".into(),
                );
            }
            _ => {}
        }
    }
}

/// A limit below its request (0 is "no limit") cannot be honoured.
fn limit_not_below_request<A: Amount>(
    f: &mut Findings<'_>,
    service: &Object<ServiceSpec>,
    request: Option<A>,
    limit: Option<A>,
) {
    if let (Some(r), Some(l)) = (request, limit)
        && !l.is_unlimited()
        && l < r
    {
        f.at(
            service,
            &format!("spec.resources.limits.{}", A::FIELD),
            Code::LimitBelowRequest,
            format!("{} limit {l} is below the request {r}", A::LABEL),
        )
        .hint(format!(
            "raise the limit to at least {r}, or set it to 0 for no limit"
        ));
    }
}

fn check_probe(f: &mut Findings<'_>, service: &Object<ServiceSpec>, path: &str, probe: &Probe) {
    let handlers = [
        probe.http_get.is_some(),
        probe.tcp_socket.is_some(),
        probe.exec.is_some(),
    ];
    let count = handlers.iter().filter(|h| **h).count();
    if count != 1 {
        f.at(
            service,
            path,
            Code::InvalidProbe,
            format!(
                "a probe needs exactly one of `httpGet`, `tcpSocket`, `exec`; this one has {count}"
            ),
        )
        .hint("keep one check per probe");
    }
    for (field, value) in [
        ("periodSeconds", probe.period_seconds),
        ("timeoutSeconds", probe.timeout_seconds),
        ("successThreshold", probe.success_threshold),
        ("failureThreshold", probe.failure_threshold),
    ] {
        if value == 0 {
            f.at(
                service,
                &format!("{path}.{field}"),
                Code::InvalidProbe,
                format!("`{field}` must be at least 1"),
            );
        }
    }
    if let Some(http) = &probe.http_get {
        if !http.path.starts_with('/') {
            f.at(
                service,
                &format!("{path}.httpGet.path"),
                Code::InvalidProbe,
                format!("probe path `{}` must start with `/`", http.path),
            );
        }
        probe_port(
            f,
            service,
            &format!("{path}.httpGet.port"),
            http.port.as_ref(),
        );
    }
    if let Some(tcp) = &probe.tcp_socket {
        probe_port(
            f,
            service,
            &format!("{path}.tcpSocket.port"),
            tcp.port.as_ref(),
        );
    }
    if let Some(exec) = &probe.exec
        && exec.command.is_empty()
    {
        f.at(
            service,
            &format!("{path}.exec.command"),
            Code::InvalidProbe,
            "an exec probe needs a command".into(),
        );
    }
}

fn probe_port(
    f: &mut Findings<'_>,
    service: &Object<ServiceSpec>,
    path: &str,
    port: Option<&PortRef>,
) {
    match port {
        Some(PortRef::Number(_)) => {}
        Some(PortRef::Name(name)) => port_reference(f, service, path, Some(name), "probe"),
        None => port_reference(f, service, path, None, "probe"),
    }
}

/// A named port must be declared; an omitted one needs at least one declared port.
fn port_reference(
    f: &mut Findings<'_>,
    service: &Object<ServiceSpec>,
    path: &str,
    name: Option<&str>,
    what: &str,
) {
    let ports = &service.spec().ports;
    match name {
        Some(name) if !ports.iter().any(|p| p.name == name) => {
            let d = f.at(
                service,
                path,
                Code::UnknownPort,
                format!(
                    "{what} uses port `{name}`, which service `{}` does not declare",
                    service.name()
                ),
            );
            match closest(name, ports.iter().map(|p| p.name.as_str())) {
                Some(p) => d.hint(format!("did you mean `{p}`?")),
                None => d.hint(format!("declare it under `ports:` as `- name: {name}`")),
            }
        }
        None if ports.is_empty() => {
            f.at(
                service,
                path,
                Code::UnknownPort,
                format!(
                    "{what} has no port to use: service `{}` declares no ports",
                    service.name()
                ),
            )
            .hint("declare one under `ports:`, e.g. `- name: http`");
        }
        _ => {}
    }
}

fn check_update(
    f: &mut Findings<'_>,
    service: &Object<ServiceSpec>,
    path: &str,
    update: &UpdateConfig,
    is_rollback: bool,
) {
    if !(0.0..=1.0).contains(&update.max_failure_ratio) {
        f.at(
            service,
            &format!("{path}.maxFailureRatio"),
            Code::InvalidUpdateConfig,
            format!(
                "`maxFailureRatio` is a fraction from 0 to 1, not {}",
                update.max_failure_ratio
            ),
        )
        .hint("0 tolerates no failed instance; 0.2 tolerates one in five");
    }
    if is_rollback && update.failure_action == FailureAction::Rollback {
        f.at(
            service,
            &format!("{path}.failureAction"),
            Code::InvalidUpdateConfig,
            "a rollback cannot itself roll back on failure".into(),
        )
        .hint("use `pause` or `continue`");
    }
}

fn valid_host(host: &str) -> bool {
    let host = host.strip_prefix("*.").unwrap_or(host);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Reports each `dependsOn` cycle once, at the first service of it in file order.
fn dependency_cycles(f: &mut Findings<'_>, dir: &EnvironmentDir) {
    let index: BTreeMap<&str, usize> = dir
        .services
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name(), i))
        .collect();
    // 0 = unvisited, 1 = on the current path, 2 = done.
    let mut state = vec![0u8; dir.services.len()];
    let mut reported = BTreeSet::new();
    for start in 0..dir.services.len() {
        let mut path = Vec::new();
        visit(
            dir,
            &index,
            start,
            &mut state,
            &mut path,
            &mut |cycle: &[usize]| {
                let mut members: Vec<usize> = cycle.to_vec();
                members.sort_unstable();
                if !reported.insert(members.clone()) {
                    return;
                }
                let first = members[0];
                // Rotate so the cycle is printed from the first service in file order.
                let pos = cycle.iter().position(|i| *i == first).unwrap_or(0);
                let mut names: Vec<&str> = cycle[pos..]
                    .iter()
                    .chain(&cycle[..pos])
                    .map(|i| dir.services[*i].name())
                    .collect();
                names.push(names[0]);
                let service = &dir.services[first];
                let next = names[1];
                let dep_index = service
                    .spec()
                    .depends_on
                    .iter()
                    .position(|d| d == next)
                    .unwrap_or(0);
                f.at(
                    service,
                    &format!("spec.dependsOn[{dep_index}]"),
                    Code::DependencyCycle,
                    format!(
                        "services depend on each other in a cycle: {}",
                        names.join(" → ")
                    ),
                )
                .hint("remove one `dependsOn` entry of the cycle");
            },
        );
    }
}

fn visit(
    dir: &EnvironmentDir,
    index: &BTreeMap<&str, usize>,
    node: usize,
    state: &mut [u8],
    path: &mut Vec<usize>,
    report: &mut dyn FnMut(&[usize]),
) {
    match state[node] {
        2 => return,
        1 => {
            let from = path.iter().position(|n| *n == node).unwrap_or(0);
            report(&path[from..]);
            return;
        }
        _ => {}
    }
    state[node] = 1;
    path.push(node);
    for dep in &dir.services[node].spec().depends_on {
        if let Some(&next) = index.get(dep.as_str())
            && next != node
        {
            visit(dir, index, next, state, path, report);
        }
    }
    path.pop();
    state[node] = 2;
}

/// Two services of one environment may not claim the same host, path and listener,
/// nor the same published port.
fn route_conflicts(f: &mut Findings<'_>, dir: &EnvironmentDir) {
    let mut routes: BTreeMap<(Option<&str>, &str, Option<&str>), &str> = BTreeMap::new();
    let mut published: BTreeMap<u16, &str> = BTreeMap::new();
    for service in &dir.services {
        for (i, route) in service.spec().routes.iter().enumerate() {
            let key = (
                route.host.as_deref(),
                route.path.as_str(),
                route.listener.as_deref(),
            );
            match routes.get(&key) {
                Some(owner) if *owner != service.name() => {
                    let host = route.host.as_deref().unwrap_or("*");
                    f.at(
                        service,
                        &format!("spec.routes[{i}]"),
                        Code::RouteConflict,
                        format!(
                            "route {host}{} is already claimed by service `{owner}`",
                            route.path
                        ),
                    )
                    .hint("give one of them another host or path");
                }
                _ => {
                    routes.insert(key, service.name());
                }
            }
        }
        for (i, port) in service.spec().ports.iter().enumerate() {
            let Some(p) = port.published else { continue };
            match published.get(&p) {
                Some(owner) if *owner != service.name() => {
                    f.at(
                        service,
                        &format!("spec.ports[{i}].published"),
                        Code::InvalidPort,
                        format!("published port {p} is already used by service `{owner}`"),
                    );
                }
                _ => {
                    published.insert(p, service.name());
                }
            }
        }
    }
}

pub(crate) fn check_secret(f: &mut Findings<'_>, secret: &Object<SecretSpec>) {
    let spec = secret.spec();
    if spec.data.is_empty() {
        f.at(
            secret,
            "spec.data",
            Code::InvalidSecret,
            format!("secret `{}` holds no values", secret.name()),
        )
        .hint("add `data: {KEY: VALUE}` and encrypt it with `drover secret encrypt FILE`");
    }
    for key in spec.data.keys() {
        let valid = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            && key != "."
            && key != "..";
        if !valid {
            f.at(secret, &format!("spec.data.{key}"), Code::InvalidSecret, format!("secret key `{key}` cannot be a file name: use letters, digits, `.`, `_` and `-`"));
        }
    }
}
