//! Steps 2, 3 and 5 of a pass: the nodes as the scheduler sees them, every slot placed
//! and moved through its rolling update, and each node's assignments published.

use drover_release::waves::{self, Dependencies};

use drover_model::service::UpdateOrder;
use drover_scheduler::NodeState;
use drover_store::InstanceRecord;

use super::*;
use crate::instances::instances;

/// The service of `env`'s open release that `service` must wait for now (the
/// release's `dependsOn` waves, reversed in a rollback).
fn waits_for(
    inner: &Inner,
    live: &Live,
    unsettled: &BTreeSet<(String, String)>,
    env: &str,
    service: &str,
) -> Option<String> {
    let release = inner.releases.get(env)?;
    let dependencies: Dependencies = release
        .services
        .iter()
        .filter_map(|name| {
            let spec = live.services.get(&(env.to_owned(), name.clone()))?;
            Some((name.clone(), spec.depends_on.clone()))
        })
        .collect();
    let settled = |other: &str| !unsettled.contains(&(env.to_owned(), other.to_owned()));
    waves::waits_for(release, &dependencies, settled, service).map(str::to_owned)
}

impl LocalEngine {
    /// Step 2: the nodes as the scheduler should see them, per cluster.
    pub(super) fn node_states(
        &self,
        inner: &mut Inner,
        live: &Live,
    ) -> Result<BTreeMap<String, Vec<NodeState>>, LocalError> {
        let overrides = inner.state.availability_overrides()?;
        let mut out = BTreeMap::new();
        for (cluster, spec) in live.local_clusters() {
            let local = spec.local.as_ref().expect("local clusters have nodes");
            let timeout = local.heartbeat_timeout.to_std();
            let mut states = Vec::new();
            for node in &local.nodes {
                let seen = inner.nodes.entry(node.name.clone()).or_default();
                seen.timeout = timeout;
                // Until a node is first heard from, it gets one timeout from our start.
                let up = match seen.last_seen {
                    Some(at) => at.elapsed() < timeout,
                    None => self.started.elapsed() < timeout,
                };
                if up != seen.up && (seen.last_seen.is_some() || !up) {
                    let (reason, text) = if up {
                        ("NodeReady", format!("node {} is ready", node.name))
                    } else {
                        (
                            "NodeDown",
                            format!(
                                "node {} is down: no heartbeat for {}; its instances move",
                                node.name, local.heartbeat_timeout
                            ),
                        )
                    };
                    inner
                        .state
                        .event("", &format!("node/{}", node.name), reason, &text)?;
                    tracing::info!("{text}");
                }
                seen.up = up;
                if !up {
                    seen.reports.clear();
                }
                let availability = match overrides.get(&node.name).map(String::as_str) {
                    Some("active") => Availability::Active,
                    Some("pause") => Availability::Pause,
                    Some("drain") => Availability::Drain,
                    _ => node.availability,
                };
                states.push(NodeState {
                    name: node.name.clone(),
                    role: node.role,
                    availability,
                    labels: node.labels.clone(),
                    cpu: node.capacity.cpu,
                    memory: node.capacity.memory,
                    up,
                });
            }
            out.insert(cluster.clone(), states);
        }
        Ok(out)
    }

    /// Step 3: instance records and assignments.
    pub(super) fn place(
        &self,
        inner: &mut Inner,
        live: &Live,
        nodes: &BTreeMap<String, Vec<NodeState>>,
    ) -> Result<BTreeMap<String, Vec<Assignment>>, LocalError> {
        let current = inner.state.instances()?;
        let free = |port: u16| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
        let placed = instances(
            live,
            nodes,
            &current,
            &crate::run_spec::Paths {
                drover: &self.config.drover,
                volumes: &self.config.state.volumes(),
            },
            self.ports,
            &free,
        );
        let mut by_node: BTreeMap<String, Vec<Assignment>> = nodes
            .values()
            .flatten()
            .map(|n| (n.name.clone(), Vec::new()))
            .collect();
        let now = Instant::now();
        let by_id: BTreeMap<&str, &InstanceRecord> =
            current.iter().map(|r| (r.id.as_str(), r)).collect();
        let report_of = |inner: &Inner, node: &str, id: &str, hash: &str| {
            inner
                .nodes
                .get(node)
                .and_then(|n| n.reports.get(&(id.to_owned(), hash.to_owned())))
                .cloned()
        };
        // Group the wanted instances by service: each service rolls on its own.
        let mut services: BTreeMap<(String, String), Vec<&crate::instances::Wanted>> =
            BTreeMap::new();
        for wanted in &placed.wanted {
            services
                .entry((
                    wanted.record.environment.clone(),
                    wanted.record.service.clone(),
                ))
                .or_default()
                .push(wanted);
        }
        // Services whose update is not finished: a slot still to move to the new spec, a
        // previous instance still kept, or one not yet ready through its monitor period.
        let unsettled: BTreeSet<(String, String)> = services
            .iter()
            .filter(|((env, name), wanted)| {
                let monitor = live
                    .services
                    .get(&(env.clone(), name.clone()))
                    .map_or(Duration::ZERO, |s| s.update.monitor.to_std());
                wanted.iter().any(|w| {
                    let current = by_id
                        .get(w.record.id.as_str())
                        .filter(|c| c.node == w.record.node);
                    current
                        .is_none_or(|c| c.spec_hash != w.record.spec_hash || c.previous.is_some())
                        || inner
                            .ready_since
                            .get(&(w.record.id.clone(), w.record.spec_hash.clone()))
                            .is_none_or(|at| now < *at + monitor)
                })
            })
            .map(|(key, _)| key.clone())
            .collect();
        let mut records = Vec::new();
        let mut rollouts = BTreeMap::new();
        let mut waiting = BTreeMap::new();
        for ((env, name), wanted) in services {
            let service = live.services.get(&(env.clone(), name.clone()));
            // A slot still running an older spec on the same node is to be updated; a
            // new slot, or one that moves, starts on the new spec at once.
            let old_of = |w: &crate::instances::Wanted| {
                by_id
                    .get(w.record.id.as_str())
                    .filter(|o| o.node == w.record.node && o.assignment.is_some())
                    .filter(|o| o.spec_hash != w.record.spec_hash)
                    .copied()
            };
            let slots: Vec<rollout::Slot> = wanted
                .iter()
                .map(|w| {
                    let report =
                        report_of(inner, &w.record.node, &w.record.id, &w.record.spec_hash);
                    let key = (w.record.id.clone(), w.record.spec_hash.clone());
                    let ready = report.as_ref().is_some_and(|r| r.ready);
                    if ready {
                        inner.ready_since.entry(key).or_insert(now);
                    } else {
                        inner.ready_since.remove(&key);
                    }
                    rollout::Slot {
                        id: w.record.id.clone(),
                        updated: old_of(w).is_none(),
                        ready_since: inner
                            .ready_since
                            .get(&(w.record.id.clone(), w.record.spec_hash.clone()))
                            .copied(),
                        failed: report.is_some_and(|r| {
                            r.failing
                                || matches!(r.phase.as_str(), "backing-off" | "failed" | "exited")
                        }),
                    }
                })
                .collect();
            let rolling_back = inner.rolling_back.contains(&(env.clone(), name.clone()));
            let (strategy, update, order) = service.map_or(
                (Default::default(), Default::default(), Default::default()),
                |s| {
                    let config = if rolling_back { &s.rollback } else { &s.update };
                    (s.strategy, config.clone(), config.order)
                },
            );
            let mut step = rollout::next(
                strategy,
                &update,
                &slots,
                inner.last_batch.get(&(env.clone(), name.clone())).copied(),
                now,
            );
            // Within a release, services roll in `dependsOn` order (a rollback in the
            // reverse order): a service waits until those it follows are done.
            if let Some(on) = waits_for(inner, live, &unsettled, &env, &name) {
                step.advance.clear();
                step.done = false;
                waiting.insert((env.clone(), name.clone()), on);
            }
            if !step.advance.is_empty() {
                inner.last_batch.insert((env.clone(), name.clone()), now);
            }
            let updating = slots.iter().any(|s| !s.updated) || !step.advance.is_empty();
            rollouts.insert((env.clone(), name.clone()), (step.clone(), updating));
            for w in wanted {
                let old = old_of(w);
                let advancing = step.advance.contains(&w.record.id);
                let mut record = match old {
                    // Not its turn yet: the slot keeps what it runs.
                    Some(old) if !advancing => old.clone(),
                    // Back to what still runs beside it (a start-first update rolled
                    // back): that instance simply stays, and the new one goes.
                    Some(old)
                        if old
                            .previous
                            .as_deref()
                            .and_then(|p| serde_json::from_str::<Assignment>(p).ok())
                            .is_some_and(|p| p.spec_hash == w.record.spec_hash) =>
                    {
                        let previous: Assignment =
                            serde_json::from_str(old.previous.as_deref().unwrap_or_default())
                                .expect("checked above");
                        let mut record = w.record.clone();
                        record.ports = previous.ports.clone();
                        record.assignment = old.previous.clone();
                        record.previous = None;
                        record
                    }
                    _ => {
                        let mut record = w.record.clone();
                        let target = Assignment {
                            id: record.id.clone(),
                            spec_hash: record.spec_hash.clone(),
                            spec: w.spec.clone(),
                            ports: record.ports.clone(),
                        };
                        record.assignment =
                            Some(serde_json::to_string(&target).expect("serializes"));
                        record.previous = match (old, order) {
                            (Some(old), UpdateOrder::StartFirst) => old.assignment.clone(),
                            (Some(_), UpdateOrder::StopFirst) => None,
                            (None, _) => by_id
                                .get(record.id.as_str())
                                .filter(|o| o.node == record.node)
                                .and_then(|o| o.previous.clone()),
                        };
                        record
                    }
                };
                let report = report_of(inner, &record.node, &record.id, &record.spec_hash);
                // Record when an instance started failing (the agent's time), once.
                let failing_key = (record.id.clone(), record.spec_hash.clone());
                match report
                    .as_ref()
                    .and_then(|r| r.failing_since_ms.map(|at| (at, r)))
                {
                    Some((at, r)) if inner.said_failing.insert(failing_key.clone()) => {
                        inner.state.event_at(
                            at,
                            &record.environment,
                            &record.id,
                            "InstanceFailing",
                            r.last_failure.as_deref().unwrap_or("failing"),
                        )?;
                    }
                    Some(_) => {}
                    None => {
                        inner.said_failing.remove(&failing_key);
                    }
                }
                match &report {
                    Some(r) => {
                        record.pid = r.pid;
                        record.state = r.phase.clone();
                        record.ready = r.ready;
                        record.restarts = r.restarts;
                        record.port = r.ports.values().next().copied();
                    }
                    None if by_id.get(record.id.as_str()).is_none_or(|o| {
                        o.node != record.node || o.spec_hash != record.spec_hash
                    }) =>
                    {
                        record.state = "pending".into();
                        record.ready = false;
                        record.pid = None;
                    }
                    // Nothing heard from its node since this control plane started: what
                    // the store says is from before, and nobody vouches for it now.
                    None if inner
                        .nodes
                        .get(&record.node)
                        .is_none_or(|n| n.last_seen.is_none()) =>
                    {
                        record.state = "unknown".into();
                        record.ready = false;
                    }
                    None => {}
                }
                // The new spec has been ready through its monitor period: what it
                // replaces may go (drained first). Until then the old one serves.
                let settled = inner
                    .ready_since
                    .get(&(record.id.clone(), record.spec_hash.clone()))
                    .is_some_and(|at| now >= *at + Duration::from_millis(update.monitor.millis()));
                if record.ready && settled {
                    record.previous = None;
                }
                let list = by_node.entry(record.node.clone()).or_default();
                for json in [&record.assignment, &record.previous].into_iter().flatten() {
                    if let Ok(assignment) = serde_json::from_str::<Assignment>(json) {
                        list.push(assignment);
                    }
                }
                records.push(record);
            }
        }
        inner.rollouts = rollouts;
        inner.waiting = waiting;
        inner
            .ready_since
            .retain(|(id, hash), _| records.iter().any(|r| r.id == *id && r.spec_hash == *hash));
        let wanted_ids: BTreeSet<&str> = records.iter().map(|r| r.id.as_str()).collect();
        let old: BTreeMap<&str, &InstanceRecord> =
            current.iter().map(|r| (r.id.as_str(), r)).collect();
        inner.state.batch(|state| {
            for record in &records {
                if old.get(record.id.as_str()) != Some(&record) {
                    state.put_instance(record)?;
                }
            }
            for gone in current
                .iter()
                .filter(|r| !wanted_ids.contains(r.id.as_str()))
            {
                state.remove_instance(&gone.id)?;
            }
            Ok(())
        })?;
        for record in &records {
            let said = inner.said_ready.insert(record.id.clone(), record.ready);
            if said != Some(record.ready) && (record.ready || said == Some(true)) {
                let text = if record.ready {
                    format!(
                        "instance {} ready on {} (127.0.0.1:{})",
                        record.id,
                        record.node,
                        record.port.unwrap_or_default()
                    )
                } else {
                    format!("instance {} on {} is not ready", record.id, record.node)
                };
                tracing::info!("{text}");
            }
        }
        inner
            .said_ready
            .retain(|id, _| wanted_ids.contains(id.as_str()));
        inner.blocked = placed.blocked;
        Ok(by_node)
    }

    /// Step 5: each node's assignments — what it should run, plus instances that left
    /// and still finish requests the proxy sent them (drained, up to [`DRAIN_TIMEOUT`]).
    pub(super) fn publish(
        &self,
        inner: &mut Inner,
        mut by_node: BTreeMap<String, Vec<Assignment>>,
    ) {
        // Instances that were assigned and are no longer (same id on the same node with
        // another spec is a replacement, which the agent does in place).
        for (node, (_, old)) in &inner.assignments {
            let new = by_node.get(node);
            for assignment in old {
                let same =
                    |a: &Assignment| a.id == assignment.id && a.spec_hash == assignment.spec_hash;
                let still = new.is_some_and(|list| list.iter().any(same));
                let key = (
                    node.clone(),
                    format!("{}@{}", assignment.id, assignment.spec_hash),
                );
                if !still && !inner.draining.contains_key(&key) {
                    let ports: Vec<u16> = inner
                        .nodes
                        .get(node)
                        .filter(|n| n.up)
                        .and_then(|n| {
                            n.reports
                                .get(&(assignment.id.clone(), assignment.spec_hash.clone()))
                        })
                        .filter(|r| r.ready)
                        .map(|r| r.ports.values().copied().collect())
                        .unwrap_or_default();
                    if !ports.is_empty() {
                        inner.draining.insert(
                            key,
                            Draining {
                                assignment: assignment.clone(),
                                ports,
                                since: Instant::now(),
                            },
                        );
                    }
                }
            }
        }
        // A proxy that has not applied the last table may still send requests anywhere
        // the one before did. Its stats are a file: read only while something drains.
        let proxies: Vec<(drover_proxy::link::Stats, u64)> = if inner.draining.is_empty() {
            Vec::new()
        } else {
            inner
                .proxies
                .values()
                .map(|l| (l.link.stats(), l.link.version()))
                .collect()
        };
        inner.draining.retain(|(node, _), d| {
            let back = by_node.get(node).is_some_and(|list| {
                list.iter()
                    .any(|a| a.id == d.assignment.id && a.spec_hash == d.assignment.spec_hash)
            });
            let busy = d.ports.iter().any(|port| {
                let addr = SocketAddr::from(([127, 0, 0, 1], *port));
                proxies.iter().any(|(stats, written)| {
                    stats.version < *written || stats.in_flight.get(&addr).is_some_and(|n| *n > 0)
                })
            });
            !back && busy && d.since.elapsed() < DRAIN_TIMEOUT
        });
        for ((node, _), d) in &inner.draining {
            by_node
                .entry(node.clone())
                .or_default()
                .push(d.assignment.clone());
        }
        let mut changed = false;
        for (node, list) in by_node {
            let entry = inner.assignments.entry(node).or_default();
            if entry.1 != list || entry.0 == 0 {
                inner.generation += 1;
                *entry = (inner.generation, list);
                changed = true;
            }
        }
        if changed {
            self.generation.send_replace(inner.generation);
        }
    }
}
