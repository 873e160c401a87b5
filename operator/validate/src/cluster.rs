//! Cluster rules: engine settings, nodes, listeners and proxy address pools (§6, §7).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use drover_diagnostics::Code;
use drover_load::Object;
use drover_model::ClusterSpec;
use drover_model::cluster::{Engine, PoolRole, parse_cidr};

use crate::{Findings, Hint, names};

/// The smallest pool allowed has 64 addresses: a /26 for IPv4.
const MIN_POOL_ADDRESSES_LOG2: u8 = 6;

/// Why `name` is not a Kubernetes object name (a DNS subdomain), if it is not.
fn kubernetes_name_problem(name: &str) -> Option<&'static str> {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if name.is_empty() {
        Some("is empty")
    } else if name.len() > 253 {
        Some("is longer than 253 characters")
    } else if !name.bytes().all(|b| alnum(b) || b == b'-' || b == b'.') {
        Some("may only hold lowercase letters, digits, `-` and `.`")
    } else if !alnum(name.as_bytes()[0]) || !alnum(name.as_bytes()[name.len() - 1]) {
        Some("must start and end with a letter or digit")
    } else {
        None
    }
}

/// Why `name` cannot be a swarm node's hostname or ID, if it cannot.
fn swarm_node_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("is empty")
    } else if name.len() > 253 {
        Some("is longer than 253 characters")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        Some("may only hold letters, digits, `-`, `_` and `.`")
    } else {
        None
    }
}

/// Why a swarm's `endpoint` is not an Engine API address Drover can reach, if it is not.
fn endpoint_problem(endpoint: &str) -> Option<&'static str> {
    let (scheme, rest) = endpoint.split_once("://")?;
    match scheme {
        "unix" if rest.starts_with('/') => None,
        "unix" => Some("needs an absolute socket path after `unix://`"),
        "tcp" | "http" if !rest.is_empty() && !rest.contains('/') => None,
        "tcp" | "http" => Some("needs `HOST:PORT` after the scheme"),
        _ => Some("has a scheme Drover does not speak (`unix://` or `tcp://`)"),
    }
}

/// Nodes whose availability Drover keeps: well named, each listed once.
fn managed_nodes(
    f: &mut Findings<'_>,
    cluster: &Object<ClusterSpec>,
    engine: &str,
    nodes: &[drover_model::cluster::ManagedNode],
    problem: impl Fn(&str) -> Option<(&'static str, &'static str)>,
) {
    let mut seen = BTreeSet::new();
    for (i, node) in nodes.iter().enumerate() {
        let path = format!("spec.{engine}.nodes[{i}].name");
        if let Some((problem, hint)) = problem(&node.name) {
            f.at(
                cluster,
                &path,
                Code::InvalidNode,
                format!("node name `{}` {problem}", node.name),
            )
            .hint(hint);
        }
        if !seen.insert(node.name.as_str()) {
            f.at(
                cluster,
                &path,
                Code::InvalidNode,
                format!("node `{}` is listed twice", node.name),
            )
            .hint("list each node once, with the availability it should have");
        }
    }
}

pub(crate) fn check(f: &mut Findings<'_>, cluster: &Object<ClusterSpec>) {
    let spec = cluster.spec();
    let needs = match spec.engine {
        Engine::Local => spec.local.is_none().then_some((
            "a `local` cluster needs `spec.local` with its nodes",
            "add `local: {nodes: [{name: node-1, capacity: {cpu: 2, memory: 4Gi}}]}`",
        )),
        Engine::Kubernetes => spec.kubernetes.is_none().then_some((
            "a `kubernetes` cluster needs `spec.kubernetes`",
            "add `kubernetes: {context: my-context}` (or `kubernetes: {}` for the current context)",
        )),
        Engine::Swarm => spec.swarm.is_none().then_some((
            "a `swarm` cluster needs `spec.swarm`",
            "add `swarm: {endpoint: unix:///var/run/docker.sock}` (or `swarm: {}` for `$DOCKER_HOST`)",
        )),
    };
    if let Some((message, hint)) = needs {
        f.at(cluster, "spec.engine", Code::EngineSettings, message.into())
            .hint(hint);
    }
    let settings = [
        (Engine::Local, spec.local.is_some()),
        (Engine::Kubernetes, spec.kubernetes.is_some()),
        (Engine::Swarm, spec.swarm.is_some()),
    ];
    for (other, set) in settings {
        if set && other != spec.engine {
            let (field, engine) = (other.as_str(), spec.engine.as_str());
            f.at(
                cluster,
                &format!("spec.{field}"),
                Code::EngineSettings,
                format!("`spec.{field}` is set but the engine is `{engine}`"),
            )
            .hint(format!("remove it, or set `engine: {field}`"));
        }
    }
    if let Some(kube) = &spec.kubernetes {
        managed_nodes(f, cluster, "kubernetes", &kube.nodes, |name| {
            kubernetes_name_problem(name)
                .map(|p| (p, "write the Node's name as `kubectl get nodes` shows it"))
        });
    }
    if let Some(swarm) = &spec.swarm {
        managed_nodes(f, cluster, "swarm", &swarm.nodes, |name| {
            swarm_node_problem(name).map(|p| {
                (
                    p,
                    "write the node's hostname or ID as `docker node ls` shows it",
                )
            })
        });
        if let Some(endpoint) = &swarm.endpoint
            && let Some(problem) = endpoint_problem(endpoint)
        {
            f.at(
                cluster,
                "spec.swarm.endpoint",
                Code::EngineSettings,
                format!("endpoint `{endpoint}` {problem}"),
            )
            .hint("write `unix:///var/run/docker.sock` or `tcp://HOST:2375`, as `DOCKER_HOST` takes it");
        }
    }
    let Some(local) = &spec.local else { return };
    if local.nodes.is_empty() {
        f.at(
            cluster,
            "spec.local.nodes",
            Code::InvalidNode,
            "a local cluster needs at least one node".into(),
        )
        .hint("add `- name: node-1` with its `capacity`");
    }
    let mut node_names = BTreeSet::new();
    for (i, node) in local.nodes.iter().enumerate() {
        let path = format!("spec.local.nodes[{i}]");
        names::check(f, cluster, &format!("{path}.name"), "node name", &node.name);
        if !node_names.insert(node.name.as_str()) {
            f.at(
                cluster,
                &format!("{path}.name"),
                Code::InvalidNode,
                format!("node `{}` is defined twice", node.name),
            )
            .hint("node names are unique within a cluster; rename one");
        }
        if node.capacity.cpu.millis() == 0 || node.capacity.memory.bytes() == 0 {
            f.at(
                cluster,
                &format!("{path}.capacity"),
                Code::InvalidNode,
                format!(
                    "node `{}` has no CPU or no memory to schedule on",
                    node.name
                ),
            )
            .hint("give it a capacity such as `{cpu: 2, memory: 4Gi}`");
        }
        for key in node.labels.keys() {
            names::reserved_label(f, cluster, &format!("{path}.labels.{key}"), key);
        }
    }

    let mut bound = BTreeSet::new();
    for (i, listener) in local.proxy.listeners.iter().enumerate() {
        let path = format!("spec.local.proxy.listeners[{i}]");
        names::check(
            f,
            cluster,
            &format!("{path}.name"),
            "listener name",
            &listener.name,
        );
        if listener.address.parse::<IpAddr>().is_err() {
            f.at(
                cluster,
                &format!("{path}.address"),
                Code::InvalidAddress,
                format!(
                    "listener address `{}` is not an IP address",
                    listener.address
                ),
            )
            .hint("for example `127.0.0.1`");
        }
        if listener.port != 0 && !bound.insert((listener.address.as_str(), listener.port)) {
            f.at(
                cluster,
                &format!("{path}.port"),
                Code::InvalidAddress,
                format!(
                    "{}:{} is used by two listeners",
                    listener.address, listener.port
                ),
            );
        }
    }

    // One active and at most one backup pool per (region, network).
    let mut roles: BTreeMap<(&str, &str), PoolsByRole> = BTreeMap::new();
    for (i, pool) in local.proxy.address_pools.iter().enumerate() {
        let path = format!("spec.local.proxy.addressPools[{i}]");
        names::check(
            f,
            cluster,
            &format!("{path}.name"),
            "address pool name",
            &pool.name,
        );
        let entry = roles
            .entry((pool.region.as_str(), pool.network.as_str()))
            .or_default();
        match pool.role {
            PoolRole::Active => entry.active.push(i),
            PoolRole::Backup => entry.backup.push(i),
        }
        match parse_cidr(&pool.cidr) {
            Err(why) => {
                f.at(
                    cluster,
                    &format!("{path}.cidr"),
                    Code::InvalidAddress,
                    format!("`{}` is not a CIDR range: {why}", pool.cidr),
                )
                .hint("for example `127.0.1.0/24`");
            }
            Ok((addr, prefix)) => {
                let bits = if addr.is_ipv4() { 32 } else { 128 };
                if bits - prefix < MIN_POOL_ADDRESSES_LOG2 {
                    let largest = bits - MIN_POOL_ADDRESSES_LOG2;
                    f.at(cluster, &format!("{path}.cidr"), Code::AddressPoolTooSmall,
                        format!("address pool `{}` is a /{prefix} ({} addresses); a pool needs at least 64 (/{largest} or shorter)", pool.name, 1u64 << (bits - prefix)))
                        .hint(format!("use a /{largest} or shorter prefix; /{} is recommended", bits - 9));
                }
                let loopback = match addr {
                    IpAddr::V4(v4) => v4.is_loopback() && prefix >= 8,
                    IpAddr::V6(v6) => v6.is_loopback(),
                };
                if spec.engine == Engine::Local && !loopback {
                    f.at(cluster, &format!("{path}.cidr"), Code::InvalidAddress,
                        format!("address pool `{}` ({}) is outside 127.0.0.0/8; the local engine's proxy uses loopback addresses only", pool.name, pool.cidr))
                        .hint("choose a range inside 127.0.0.0/8, for example `127.0.1.0/24`");
                }
            }
        }
    }
    for ((region, network), PoolsByRole { active, backup }) in roles {
        let scope = format!("region `{region}`, network `{network}`");
        if active.is_empty() {
            let first = backup[0];
            f.at(
                cluster,
                &format!("spec.local.proxy.addressPools[{first}].role"),
                Code::AddressPoolRoles,
                format!("{scope} has a backup address pool but no active one"),
            )
            .hint("mark one pool `role: active`");
        }
        for extra in active.iter().skip(1) {
            f.at(
                cluster,
                &format!("spec.local.proxy.addressPools[{extra}].role"),
                Code::AddressPoolRoles,
                format!("{scope} has more than one active address pool"),
            )
            .hint("keep one `active`; make another the `backup`");
        }
        for extra in backup.iter().skip(1) {
            f.at(
                cluster,
                &format!("spec.local.proxy.addressPools[{extra}].role"),
                Code::AddressPoolRoles,
                format!("{scope} has more than one backup address pool"),
            )
            .hint("at most one backup pool per region and network");
        }
    }
}

/// Indexes of the pools of one region and network, by role.
#[derive(Default)]
struct PoolsByRole {
    active: Vec<usize>,
    backup: Vec<usize>,
}

/// Parses `a.b.c.d/n` (or IPv6); the address must be the range's first address.
#[cfg(test)]
mod tests {
    use drover_model::cluster::parse_cidr;

    #[test]
    fn cidr_ranges_must_start_at_their_first_address() {
        assert_eq!(parse_cidr("127.0.1.0/24").unwrap().1, 24);
        assert!(parse_cidr("127.0.1.5/24").is_err());
        assert!(parse_cidr("127.0.1.0").is_err());
        assert!(parse_cidr("127.0.1.0/33").is_err());
        assert_eq!(parse_cidr("::1/128").unwrap().1, 128);
    }
}
