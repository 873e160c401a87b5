//! The autoscaler's loop: once per evaluation period, each autoscaled service is
//! measured — CPU and memory from its instances' usage as agents report it, request
//! rate from what the proxies forwarded to it — and its replica count set by
//! [`drover_release::autoscale::decide`]. The count lives outside Git (within Git's bounds), so
//! it is never drift; a service in the middle of an update is left alone.

use std::time::Instant;

use drover_diff::ObjectKey;
use drover_model::Kind;
use drover_model::service::MetricKind;
use serde_json::Value;

use super::objects::write_replicas;
use super::{ControlError, ControlPlane};
use drover_release::autoscale::{Observed, decide};

impl ControlPlane {
    /// Evaluates the autoscaled services whose period has passed.
    pub(super) fn autoscale(&self) -> Result<(), ControlError> {
        let inner = &mut *self.lock();
        if inner.autoscaled.is_empty() {
            inner.scaled_at.clear();
            return Ok(());
        }
        let served: Vec<(String, usize)> = inner
            .proxies
            .values()
            .flat_map(|l| l.proxy.served())
            .collect();
        let records = inner.store.instances()?;
        let mut changed = false;
        for (env, name, spec) in inner.autoscaled.clone() {
            let id = (env.clone(), name.clone());
            let prefix = format!("{env}/{name}:");
            let total: usize = served
                .iter()
                .filter(|(k, _)| k.starts_with(&prefix))
                .map(|(_, n)| n)
                .sum();
            let now = Instant::now();
            let Some(&(then, total_then)) = inner.scaled_at.get(&id) else {
                inner.scaled_at.insert(id, (now, total));
                continue;
            };
            let elapsed = now.duration_since(then);
            if elapsed < spec.evaluation_period.to_std() {
                continue;
            }
            inner.scaled_at.insert(id.clone(), (now, total));
            let updating = inner
                .rollouts
                .get(&id)
                .is_some_and(|(step, u)| *u || !step.done)
                || inner
                    .releases
                    .get(&env)
                    .is_some_and(|r| r.services.contains(&name));
            if updating {
                continue;
            }
            let key = ObjectKey {
                environment: env.clone(),
                kind: Kind::Service,
                name: name.clone(),
            };
            let observed = inner.store.observed()?;
            let Some(value) = observed.objects.get(&key) else {
                continue;
            };
            let service: drover_model::service::ServiceSpec =
                match serde_json::from_value(value["spec"].clone()) {
                    Ok(s) => s,
                    Err(_) => continue,
                };
            let current = service.replicas.unwrap_or(1);
            // What each ready instance of the current spec uses now.
            let usage: Vec<crate::protocol::Usage> = records
                .iter()
                .filter(|r| r.environment == env && r.service == name && r.ready)
                .filter_map(|r| {
                    inner
                        .nodes
                        .get(&r.node)?
                        .reports
                        .get(&(r.id.clone(), r.spec_hash.clone()))
                        .map(|report| report.usage)
                })
                .collect();
            let ready = usage.len();
            let average = |f: &dyn Fn(&crate::protocol::Usage) -> u64, per: Option<u64>| {
                let per = per.filter(|p| *p > 0)?;
                (ready > 0).then(|| {
                    let sum: u64 = usage.iter().map(f).sum();
                    sum as f64 / ready as f64 / per as f64 * 100.0
                })
            };
            let requests = &service.resources.requests;
            let observed: Vec<Observed> = spec
                .metrics
                .iter()
                .map(|m| Observed {
                    kind: m.kind,
                    value: match m.kind {
                        MetricKind::Cpu => {
                            average(&|u| u.cpu_millis, requests.cpu.map(|c| c.millis()))
                        }
                        MetricKind::Memory => {
                            average(&|u| u.memory_bytes, requests.memory.map(|m| m.bytes()))
                        }
                        MetricKind::RequestRate => (ready > 0).then(|| {
                            (total - total_then) as f64 / elapsed.as_secs_f64() / ready as f64
                        }),
                        // Not measured by the local engine yet.
                        MetricKind::InboundBandwidth | MetricKind::OutboundBandwidth => None,
                    },
                })
                .collect();
            let Some(decision) = decide(current, &spec, &observed) else {
                continue;
            };
            if decision.replicas == current {
                continue;
            }
            let mut value = value.clone();
            value["spec"]["replicas"] = Value::from(decision.replicas);
            let text = format!(
                "replicas {current} → {} ({})",
                decision.replicas, decision.reason
            );
            write_replicas(&inner.store, &key, value, "Autoscaled", &text)?;
            (self.say)(&format!("{env}/{name}: autoscaled: {text}"));
            changed = true;
        }
        if changed {
            self.wake();
        }
        Ok(())
    }
}
