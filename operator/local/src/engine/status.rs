//! What the local engine shows in `drover status`: each service's lifecycle (through
//! `drover_release::explain`), its instances with what their agents report, the
//! nodes with their usage, the proxies' addresses and the address pools; and what a
//! service's instances use, for the autoscaler.

use drover_control::engine::{EngineStatus, Usage};
use drover_control::view::{InstanceView, NodeView, PoolView, ProxyView, ServiceView};
use drover_model::cluster::PoolRole;
use drover_release::Health;
use drover_release::explain::{Instances, lifecycle};
use drover_telemetry::snapshot::{ProxiedService, ProxyNow};

use super::{LocalEngine, LocalError};
use crate::instances::{Blocked, Live, LocalClusters};

impl LocalEngine {
    /// Services, instances, nodes, proxies and pools.
    pub(super) fn engine_status(&self) -> Result<EngineStatus, LocalError> {
        let inner = self.lock();
        let applied = inner.state.observed()?.objects;
        let live = Live::from_state(&applied);
        let records = inner.state.instances()?;
        let overrides = inner.state.availability_overrides()?;
        let mut out = EngineStatus::default();
        for record in &records {
            let report = inner.nodes.get(&record.node).and_then(|n| {
                n.reports
                    .get(&(record.id.clone(), record.spec_hash.clone()))
            });
            out.instances.push(InstanceView {
                id: record.id.clone(),
                environment: record.environment.clone(),
                service: record.service.clone(),
                node: record.node.clone(),
                state: record.state.clone(),
                ready: record.ready,
                pid: record.pid,
                port: record.port,
                restarts: record.restarts,
                cpu_millis: report.map_or(0, |r| r.usage.cpu_millis),
                memory_bytes: report.map_or(0, |r| r.usage.memory_bytes),
                current: record.previous.is_none(),
                last_failure: report.and_then(|r| r.last_failure.clone()),
            });
        }
        for ((env, name), service) in &live.services {
            if live.local_cluster_of(env).is_none() {
                continue;
            }
            let mine: Vec<&InstanceView> = out
                .instances
                .iter()
                .filter(|i| i.environment == *env && i.service == *name)
                .collect();
            let blocked: Vec<&Blocked> = inner
                .blocked
                .iter()
                .filter(|b| b.environment == *env && b.service == *name)
                .collect();
            let desired = match service.mode {
                drover_model::service::Mode::Replicated => service.replicas.unwrap_or(1),
                drover_model::service::Mode::Global => (mine.len() + blocked.len()) as u32,
            };
            let ready = mine.iter().filter(|i| i.ready).count() as u32;
            let failing: Vec<String> = mine
                .iter()
                .filter(|i| matches!(i.state.as_str(), "backing-off" | "failed" | "exited"))
                .map(|i| {
                    format!(
                        "{}: {}",
                        i.id,
                        i.last_failure.clone().unwrap_or_else(|| i.state.clone())
                    )
                })
                .chain(blocked.iter().map(|b| match &b.slot {
                    Some(slot) => format!("slot {slot}: {}", b.reason),
                    None => b.reason.clone(),
                }))
                .collect();
            let rollout = inner.rollouts.get(&(env.clone(), name.clone()));
            let paused = rollout.and_then(|(step, _)| step.paused.clone());
            let failing: Vec<String> = paused.into_iter().chain(failing).collect();
            let counted = Instances {
                desired,
                running: mine.len() as u32,
                ready,
                restarted: mine.iter().any(|i| i.restarts > 0),
                updating: mine.iter().any(|i| !i.current)
                    || rollout.is_some_and(|(_, updating)| *updating),
                problems: failing,
            };
            let state = lifecycle(&counted);
            out.services.push(ServiceView {
                environment: env.clone(),
                name: name.clone(),
                version: service.version.clone(),
                state,
                health: Health::of(state, mine.len()),
                ready,
                desired,
                message: counted.problems.join("; "),
            });
        }
        for (cluster, spec) in live.local_clusters() {
            let local = spec.local.as_ref().expect("local clusters have nodes");
            for node in &local.nodes {
                let seen = inner.nodes.get(&node.name);
                let o = overrides.get(&node.name).cloned();
                let git = format!("{:?}", node.availability).to_lowercase();
                let used = seen.map(|s| {
                    s.reports.values().fold((0, 0), |(c, m), r| {
                        (c + r.usage.cpu_millis, m + r.usage.memory_bytes)
                    })
                });
                out.nodes.push(NodeView {
                    name: node.name.clone(),
                    cluster: cluster.clone(),
                    role: format!("{:?}", node.role).to_lowercase(),
                    availability: o.clone().unwrap_or(git),
                    availability_override: o,
                    status: if seen.is_some_and(|s| s.up && s.last_seen.is_some()) {
                        "ready".into()
                    } else {
                        "down".into()
                    },
                    instances: records.iter().filter(|r| r.node == node.name).count() as u32,
                    agent_pid: seen.and_then(|s| s.agent),
                    cpu: node.capacity.cpu.to_string(),
                    memory: node.capacity.memory.to_string(),
                    cpu_used_millis: used.map_or(0, |u| u.0),
                    memory_used_bytes: used.map_or(0, |u| u.1),
                });
            }
        }
        for ((cluster, name), pool) in &inner.pools {
            let active = pool.spec.role == PoolRole::Active;
            let listeners = live
                .clusters
                .get(cluster)
                .and_then(|c| c.local.as_ref())
                .map_or(0, |l| l.proxy.listeners.len() as u64);
            out.pools.push(PoolView {
                cluster: cluster.clone(),
                name: name.clone(),
                cidr: pool.spec.cidr.clone(),
                role: if active { "active" } else { "backup" }.into(),
                status: if active {
                    "ACTIVE"
                } else if pool.draining_until.is_some() {
                    "DRAINING"
                } else {
                    "READY"
                }
                .into(),
                used: if active || pool.draining_until.is_some() {
                    listeners
                } else {
                    0
                },
                capacity: pool.spec.capacity(),
            });
        }
        out.proxies = inner
            .proxies
            .iter()
            .map(|((cluster, listener), l)| ProxyView {
                cluster: cluster.clone(),
                listener: listener.clone(),
                address: format!("http://{}", l.addr),
            })
            .collect();
        out.traffic = inner
            .proxies
            .iter()
            .map(|((cluster, listener), l)| {
                traffic(&format!("{cluster}/{listener}"), &l.link.stats())
            })
            .collect();
        Ok(out)
    }

    /// What a service's ready instances use now, and the requests the proxies have
    /// forwarded to it so far.
    pub(super) fn usage_of(&self, env: &str, service: &str) -> Usage {
        let inner = self.lock();
        let prefix = format!("{env}/{service}:");
        let requests = inner
            .proxies
            .values()
            .flat_map(|l| l.link.stats().served)
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(_, n)| n)
            .sum();
        let records = inner.state.instances().unwrap_or_default();
        let instances = records
            .iter()
            .filter(|r| r.environment == env && r.service == service && r.ready)
            .filter_map(|r| {
                let report = inner
                    .nodes
                    .get(&r.node)?
                    .reports
                    .get(&(r.id.clone(), r.spec_hash.clone()))?;
                Some((report.usage.cpu_millis, report.usage.memory_bytes))
            })
            .collect();
        Usage {
            instances,
            requests,
        }
    }
}

/// A proxy's counts as the metrics show them: its route keys (`ENV/SERVICE:PORT`) as
/// environment, service and port.
fn traffic(listener: &str, stats: &drover_proxy::link::Stats) -> ProxyNow {
    ProxyNow {
        listener: listener.to_owned(),
        connections: stats.connections,
        unrouted: stats.unrouted,
        services: stats
            .traffic
            .iter()
            .map(|(key, t)| {
                let (environment, rest) = key.split_once('/').unwrap_or(("", key));
                let (service, port) = rest.split_once(':').unwrap_or((rest, ""));
                ProxiedService {
                    environment: environment.to_owned(),
                    service: service.to_owned(),
                    port: port.to_owned(),
                    responses: t.responses,
                    latency: t.buckets(),
                    latency_seconds: t.latency_micros as f64 / 1e6,
                }
            })
            .collect(),
    }
}
