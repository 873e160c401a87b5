//! Which instance runs where: from the applied objects, the nodes and the instances
//! that exist now, the complete set of instance records there should be. A pure
//! function; the control plane stores its result and hands each node its share.

use std::collections::{BTreeMap, BTreeSet};

use drover_model::cluster::Engine;
use drover_model::placement::Constraint;
use drover_model::service::Mode;
use drover_model::{ClusterSpec, Cpu, Memory};
pub use drover_plan::Live;
use drover_scheduler::{Demand, NodeState, Placement, schedule};
use drover_store::InstanceRecord;

use crate::run_spec::{Context, Paths, RunSpec, run_spec};

/// The local engine's clusters in a typed view of applied objects.
pub trait LocalClusters {
    /// The clusters the local engine runs.
    fn local_clusters(&self) -> impl Iterator<Item = (&String, &ClusterSpec)>;
    /// The environments placed on a cluster.
    fn environments_on<'a>(&'a self, cluster: &'a str) -> impl Iterator<Item = &'a String>;
    /// The cluster an environment runs on, when the local engine runs it.
    fn local_cluster_of(&self, environment: &str) -> Option<&str>;
}

impl LocalClusters for Live {
    fn local_clusters(&self) -> impl Iterator<Item = (&String, &ClusterSpec)> {
        self.clusters
            .iter()
            .filter(|(_, c)| c.engine == Engine::Local && c.local.is_some())
    }

    fn environments_on<'a>(&'a self, cluster: &'a str) -> impl Iterator<Item = &'a String> {
        self.environments
            .iter()
            .filter(move |(_, e)| e.cluster == cluster)
            .map(|(name, _)| name)
    }

    fn local_cluster_of(&self, environment: &str) -> Option<&str> {
        self.cluster_of(environment, Engine::Local)
            .filter(|cluster| self.clusters[*cluster].local.is_some())
    }
}

/// One instance that should exist, and what it runs.
#[derive(Debug, Clone)]
pub struct Wanted {
    pub record: InstanceRecord,
    pub spec: RunSpec,
}

/// A service (or one of its slots) that cannot run, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Blocked {
    pub environment: String,
    pub service: String,
    pub slot: Option<String>,
    pub reason: String,
}

/// The outcome of [`instances`].
#[derive(Debug, Clone, Default)]
pub struct Instances {
    pub wanted: Vec<Wanted>,
    pub blocked: Vec<Blocked>,
}

/// The instance id of a slot: `ENV.SERVICE.SLOT`.
pub fn instance_id(environment: &str, service: &str, slot: &str) -> String {
    format!("{environment}.{service}.{slot}")
}

/// The scheduler's name for a service: unique across the environments of a cluster.
fn scheduled_name(environment: &str, service: &str) -> String {
    format!("{environment}/{service}")
}

/// The ports instances get: a range the control plane owns, outside the kernel's
/// ephemeral range (as Nomad does), so that no two instances on the machine — even on
/// different agents — and no outgoing connection ever get the same port.
#[derive(Debug, Clone, Copy)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
    /// Where to start when no instance has a port yet: control planes of different
    /// state directories on one machine start at different places.
    pub start: u16,
}

/// Hands out ports of a range that no record holds and `free` accepts, continuing
/// after the highest one in use, so that a port just given up (by an instance still
/// shutting down) is not handed out again at once.
struct Ports<'f> {
    range: PortRange,
    used: BTreeSet<u16>,
    cursor: u16,
    free: &'f dyn Fn(u16) -> bool,
}

impl Ports<'_> {
    fn take(&mut self) -> Option<u16> {
        let size = u32::from(self.range.last - self.range.first) + 1;
        for _ in 0..size {
            let port = self.cursor;
            self.cursor = if port >= self.range.last {
                self.range.first
            } else {
                port + 1
            };
            if !self.used.contains(&port) && (self.free)(port) {
                self.used.insert(port);
                return Some(port);
            }
        }
        None
    }
}

/// The instances there should be. `nodes` are per cluster, as the control plane sees
/// them now (availability, liveness); `current` are the instance records that exist;
/// new instances get ports of `range` that `free` accepts.
pub fn instances(
    live: &Live,
    nodes: &BTreeMap<String, Vec<NodeState>>,
    current: &[InstanceRecord],
    paths: &Paths<'_>,
    range: PortRange,
    free: &dyn Fn(u16) -> bool,
) -> Instances {
    let used: BTreeSet<u16> = current
        .iter()
        .flat_map(|r| r.ports.values().copied())
        .collect();
    let cursor = used
        .iter()
        .copied()
        .filter(|p| (range.first..range.last).contains(p))
        .max()
        .map_or(range.start.clamp(range.first, range.last), |p| p + 1);
    let mut ports = Ports {
        range,
        used,
        cursor,
        free,
    };
    let mut out = Instances::default();
    let by_id: BTreeMap<&str, &InstanceRecord> =
        current.iter().map(|r| (r.id.as_str(), r)).collect();
    for (cluster, _) in live.local_clusters() {
        let cluster_nodes = nodes.get(cluster).map(Vec::as_slice).unwrap_or_default();
        let mut demands = Vec::new();
        let mut specs: BTreeMap<String, (String, String, RunSpec)> = BTreeMap::new();
        for env in live.environments_on(cluster) {
            let services = live.services.iter().filter(|((e, _), _)| e == env);
            for ((_, name), service) in services {
                let context = Context {
                    paths: *paths,
                    secrets: &live.secrets,
                };
                let run = match run_spec(env, name, service, &context) {
                    Ok(mut run) => {
                        // A redeploy changes the spec's hash, so every instance is
                        // replaced, with the service's update settings.
                        if let Some(generation) = live.redeploys.get(&(env.clone(), name.clone())) {
                            run.env
                                .insert("DROVER_REDEPLOY".into(), generation.to_string());
                        }
                        run
                    }
                    Err(error) => {
                        out.blocked.push(Blocked {
                            environment: env.clone(),
                            service: name.clone(),
                            slot: None,
                            reason: error.to_string(),
                        });
                        continue;
                    }
                };
                let constraints: Result<Vec<Constraint>, _> = service
                    .placement
                    .constraints
                    .iter()
                    .map(|c| Constraint::parse(c))
                    .collect();
                let Ok(constraints) = constraints else {
                    // Validation rejects these before they are applied; be safe anyway.
                    out.blocked.push(Blocked {
                        environment: env.clone(),
                        service: name.clone(),
                        slot: None,
                        reason: "has an invalid placement constraint".into(),
                    });
                    continue;
                };
                let defaults = live.quotas.get(env).map(|q| q.limit_range.default_request);
                let requests = service.resources.requests;
                demands.push(Demand {
                    service: scheduled_name(env, name),
                    mode: service.mode,
                    replicas: match service.mode {
                        Mode::Replicated => service.replicas.unwrap_or(1),
                        Mode::Global => 0,
                    },
                    cpu: requests
                        .cpu
                        .or(defaults.and_then(|d| d.cpu))
                        .unwrap_or(Cpu(0)),
                    memory: requests
                        .memory
                        .or(defaults.and_then(|d| d.memory))
                        .unwrap_or(Memory(0)),
                    constraints,
                    spread: service.placement.spread_labels(),
                });
                specs.insert(scheduled_name(env, name), (env.clone(), name.clone(), run));
            }
        }
        let placements: Vec<Placement> = current
            .iter()
            .filter(|r| specs.contains_key(&scheduled_name(&r.environment, &r.service)))
            .filter(|r| cluster_nodes.iter().any(|n| n.name == r.node))
            .map(|r| Placement {
                service: scheduled_name(&r.environment, &r.service),
                slot: r.slot.clone(),
                node: r.node.clone(),
            })
            .collect();
        let schedule = schedule(cluster_nodes, &demands, &placements);
        for placement in schedule.keep.iter().chain(&schedule.start) {
            let (env, name, run) = &specs[&placement.service];
            let id = instance_id(env, name, &placement.slot);
            let mut record = InstanceRecord {
                id: id.clone(),
                environment: env.clone(),
                service: name.clone(),
                slot: placement.slot.clone(),
                node: placement.node.clone(),
                spec_hash: run.hash(),
                port: None,
                ports: BTreeMap::new(),
                assignment: None,
                previous: None,
                pid: None,
                state: "pending".into(),
                ready: false,
                restarts: 0,
            };
            let old = by_id.get(id.as_str()).filter(|o| o.node == record.node);
            // What is known about an instance stays with it while it stays on its node.
            if let Some(old) = old {
                record.port = old.port;
                record.pid = old.pid;
                record.state = old.state.clone();
                record.ready = old.ready;
                record.restarts = old.restarts;
            }
            // Its ports too, while its spec stays the same; a replacement gets new ones,
            // so that it can start while the instance it replaces is still stopping.
            match old.filter(|o| {
                o.spec_hash == record.spec_hash && run.ports.iter().all(|p| o.ports.contains_key(p))
            }) {
                Some(old) => record.ports = old.ports.clone(),
                None => {
                    for port_name in &run.ports {
                        if let Some(port) = ports.take() {
                            record.ports.insert(port_name.clone(), port);
                        }
                    }
                }
            }
            out.wanted.push(Wanted {
                record,
                spec: run.clone(),
            });
        }
        for u in schedule.unschedulable {
            let (env, name, _) = &specs[&u.service];
            out.blocked.push(Blocked {
                environment: env.clone(),
                service: name.clone(),
                slot: Some(u.slot),
                reason: u.reason,
            });
        }
    }
    out.wanted.sort_by(|a, b| a.record.id.cmp(&b.record.id));
    out
}

#[cfg(test)]
mod tests;
