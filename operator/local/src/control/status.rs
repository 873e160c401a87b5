//! What `drover status` shows, read from the store, the agents' reports and the proxies.

use drover_release::Health;
use drover_release::explain::{Instances, lifecycle};

use super::*;

impl ControlPlane {
    /// Everything `drover status` shows.
    pub fn status(&self) -> Result<Status, ControlError> {
        let (mut status, live) = self.observe()?;
        status.promotions = self.gates(&status, &live);
        Ok(status)
    }

    /// Everything [`ControlPlane::status`] shows but the promotion gates (which are
    /// judged from it), and the applied objects it was read from.
    pub(super) fn observe(&self) -> Result<(Status, Live), ControlError> {
        let inner = self.lock();
        let applied = inner.store.observed()?.objects;
        let live = Live::from_state(&applied);
        let records = inner.store.instances()?;
        let overrides = inner.store.availability_overrides()?;
        let mut status = Status::default();
        for env in inner.store.environments()? {
            if env.name.is_empty() {
                continue;
            }
            let mut message = env.message.clone();
            if let Some(failure) = inner.revert_failures.get(&env.name) {
                message = format!("{message}; {failure}");
            }
            if let Some(rejected) = &inner.rejected {
                message = if message.is_empty() {
                    rejected.clone()
                } else {
                    format!("{message}; {rejected}")
                };
            }
            status.environments.push(EnvironmentView {
                cluster: live
                    .environments
                    .get(&env.name)
                    .map(|e| e.cluster.clone())
                    .unwrap_or_default(),
                name: env.name,
                revision: env.revision.map(|r| r[..r.len().min(7)].to_owned()),
                summary: env.summary,
                sync: env.status,
                message,
            });
        }
        for record in &records {
            let report = inner.nodes.get(&record.node).and_then(|n| {
                n.reports
                    .get(&(record.id.clone(), record.spec_hash.clone()))
            });
            status.instances.push(InstanceView {
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
            let mine: Vec<&InstanceView> = status
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
            status.services.push(ServiceView {
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
                status.nodes.push(NodeView {
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
            status.pools.push(PoolView {
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
        drop(inner);
        status.proxies = self.proxies();
        Ok((status, live))
    }
}
