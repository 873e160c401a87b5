//! `Cluster`: where environments run — the local engine's nodes and proxy, a
//! Kubernetes context, or a Docker swarm's Engine API.

use std::collections::BTreeMap;
use std::net::IpAddr;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::defaults;
use crate::quantity::{Cpu, Duration, Memory};

/// The desired state of one cluster.
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "drover.dev",
    version = "v1alpha1",
    kind = "Cluster",
    plural = "clusters",
    doc = "Where Drover environments run: the local engine's nodes and proxy, a Kubernetes context, or a Docker swarm."
)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterSpec {
    /// `local` (default: Drover's own scheduler, node agents and proxy on this machine),
    /// `kubernetes` or `swarm`.
    #[serde(default)]
    pub engine: Engine,
    /// Settings of the local engine; required when `engine: local`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalCluster>,
    /// Settings of the Kubernetes engine; required when `engine: kubernetes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesCluster>,
    /// Settings of the Docker Swarm engine; required when `engine: swarm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swarm: Option<SwarmCluster>,
}

/// Which engine drives a cluster.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "kebab-case")]
pub enum Engine {
    #[default]
    Local,
    Kubernetes,
    Swarm,
}

impl Engine {
    /// As `engine:` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Local => "local",
            Engine::Kubernetes => "kubernetes",
            Engine::Swarm => "swarm",
        }
    }
}

/// A cluster on this machine, run by Drover itself.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalCluster {
    /// The nodes; each gets its own node agent process.
    #[cfg_attr(feature = "proptest", proptest(strategy = "crate::arb::few()"))]
    pub nodes: Vec<Node>,
    /// The HTTP reverse proxy in front of the services.
    #[serde(default)]
    pub proxy: Proxy,
    /// A node that misses heartbeats this long is marked down and its instances are
    /// rescheduled (default 10s).
    #[serde(default = "defaults::heartbeat_timeout")]
    pub heartbeat_timeout: Duration,
}

/// One node of a local cluster.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Node {
    /// Node name, unique in the cluster.
    pub name: String,
    /// `manager` or `worker` (default).
    #[serde(default)]
    pub role: NodeRole,
    /// `active` (default: gets new instances), `pause` (keeps what runs, gets nothing
    /// new) or `drain` (its instances move to active nodes).
    #[serde(default)]
    pub availability: Availability,
    /// What the scheduler may reserve on this node.
    pub capacity: Capacity,
    /// Labels placement constraints match (`node.labels.zone == a`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[cfg_attr(feature = "proptest", proptest(strategy = "crate::arb::small_map()"))]
    pub labels: BTreeMap<String, String>,
}

/// Schedulable capacity of a node.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Capacity {
    /// Cores.
    pub cpu: Cpu,
    /// Bytes.
    pub memory: Memory,
}

/// A node's role in the control plane.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "kebab-case")]
pub enum NodeRole {
    Manager,
    #[default]
    Worker,
}

/// Whether a node takes new instances (Docker Swarm's node availability).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "kebab-case")]
pub enum Availability {
    /// Gets new instances.
    #[default]
    Active,
    /// Keeps its instances, gets no new ones.
    Pause,
    /// Gets no new instances; its instances move to active nodes.
    Drain,
}

impl Availability {
    /// As `availability:` (and `docker node update --availability`) spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Availability::Active => "active",
            Availability::Pause => "pause",
            Availability::Drain => "drain",
        }
    }

    /// Reads what [`Availability::as_str`] writes.
    pub fn parse(text: &str) -> Option<Availability> {
        [
            Availability::Active,
            Availability::Pause,
            Availability::Drain,
        ]
        .into_iter()
        .find(|a| a.as_str() == text)
    }
}

/// The local engine's HTTP reverse proxy.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Proxy {
    /// Addresses and ports the proxy accepts connections on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "proptest", proptest(strategy = "crate::arb::few()"))]
    pub listeners: Vec<Listener>,
    /// Address ranges reserved for the proxy's own outgoing connections: one `active`
    /// and at most one `backup` per region and network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "proptest", proptest(strategy = "crate::arb::few()"))]
    pub address_pools: Vec<AddressPool>,
}

/// One proxy listener.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Listener {
    /// Listener name routes may refer to.
    pub name: String,
    /// IP address to bind (default `127.0.0.1`).
    #[serde(default = "defaults::loopback")]
    pub address: String,
    /// TCP port; 0 picks a free one at start.
    pub port: u16,
}

/// A proxy-only address range (a "proxy-only subnet").
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddressPool {
    /// Pool name.
    pub name: String,
    /// The range, `/26` or shorter (at least 64 addresses); `/23` recommended. On the
    /// local engine it must lie in 127.0.0.0/8.
    pub cidr: String,
    /// `active` (new connections use it) or `backup`.
    pub role: PoolRole,
    /// Region the pool serves (default `local`).
    #[serde(default = "defaults::local_region")]
    pub region: String,
    /// Network the pool serves (default `default`).
    #[serde(default = "defaults::default_network")]
    pub network: String,
    /// After a promotion, how long the demoted pool drains existing connections
    /// (default 30s).
    #[serde(default = "defaults::pool_drain_timeout")]
    pub drain_timeout: Duration,
}

/// Role of an address pool.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "kebab-case")]
pub enum PoolRole {
    #[default]
    Active,
    Backup,
}

/// A Kubernetes cluster reached through a kubeconfig.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubernetesCluster {
    /// kubeconfig context (default: the current context).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// Prefix of the namespaces Drover creates (default none).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace_prefix: String,
    /// Nodes whose availability Drover keeps, as `docker node update --availability`
    /// does: `pause` cordons, `drain` cordons and evicts (respecting
    /// PodDisruptionBudgets), `active` uncordons. Nodes not listed are left alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "proptest", proptest(strategy = "crate::arb::few()"))]
    pub nodes: Vec<ManagedNode>,
}

/// A Docker swarm, driven through a manager's Engine API (1.41 or newer).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SwarmCluster {
    /// The manager's Engine API: `unix:///var/run/docker.sock` or `tcp://HOST:2375`
    /// (default: `$DOCKER_HOST` of the Drover process, else the local socket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Nodes whose availability Drover keeps (`docker node update --availability`),
    /// by hostname or node ID. Nodes not listed are left alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "proptest", proptest(strategy = "crate::arb::few()"))]
    pub nodes: Vec<ManagedNode>,
}

/// A node of a Kubernetes cluster or a swarm whose availability Drover keeps.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManagedNode {
    /// The node's name (a swarm node's hostname or ID).
    pub name: String,
    /// `active` (default), `pause` or `drain`.
    #[serde(default)]
    pub availability: Availability,
}

/// Reads `ADDRESS/PREFIX` (IPv4 or IPv6); the host bits must be zero.
pub fn parse_cidr(text: &str) -> Result<(IpAddr, u8), String> {
    let (addr, prefix) = text.split_once('/').ok_or("the `/prefix` is missing")?;
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("`{addr}` is not an IP address"))?;
    let bits = if addr.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| *p <= bits)
        .ok_or(format!("the prefix must be 0 to {bits}"))?;
    let host_bits = u32::from(bits - prefix);
    let host_part = match addr {
        IpAddr::V4(v4) => u128::from(u32::from(v4)) & ((1u128 << host_bits) - 1),
        IpAddr::V6(v6) => {
            if host_bits == 128 {
                u128::from(v6)
            } else {
                u128::from(v6) & ((1u128 << host_bits) - 1)
            }
        }
    };
    if host_part != 0 {
        return Err("host bits are set below the prefix".to_owned());
    }
    Ok((addr, prefix))
}

impl AddressPool {
    /// The `n`th address of the pool after its network address (`n` from 1), if the
    /// CIDR is valid and the pool is that large.
    pub fn address(&self, n: u32) -> Option<IpAddr> {
        let (network, prefix) = parse_cidr(&self.cidr).ok()?;
        match network {
            IpAddr::V4(v4) => {
                let size = 1u64 << (32 - u32::from(prefix));
                (u64::from(n) < size.saturating_sub(1))
                    .then(|| IpAddr::V4((u32::from(v4) + n).into()))
            }
            IpAddr::V6(v6) => Some(IpAddr::V6((u128::from(v6) + u128::from(n)).into())),
        }
    }

    /// How many addresses the pool has for proxies (network and broadcast excluded).
    pub fn capacity(&self) -> u64 {
        match parse_cidr(&self.cidr) {
            Ok((IpAddr::V4(_), prefix)) => (1u64 << (32 - u32::from(prefix))).saturating_sub(2),
            Ok((IpAddr::V6(_), prefix)) => 1u64
                .checked_shl(128 - u32::from(prefix))
                .unwrap_or(u64::MAX),
            Err(_) => 0,
        }
    }
}
