//! The autoscaler's loop: once per evaluation period, each autoscaled service is
//! measured through its engine — CPU and memory of its ready instances against their
//! requests, and its request rate from the engine's request counter — and its replica
//! count set by [`drover_release::autoscale::decide`]. The count lives outside Git
//! (within Git's bounds), so it is never drift; a service in the middle of an update
//! or a release is left alone.

use std::time::Instant;

use drover_diff::ObjectKey;
use drover_model::Kind;
use drover_model::service::{MetricKind, ServiceSpec};
use drover_release::Progress;
use drover_release::autoscale::{Observed, decide};
use serde_json::Value;

use super::{ControlError, Controller, Inner};
use crate::engine::{Engine, Usage};

/// Each metric's value per ready instance, in its target's unit.
fn measure(
    spec: &drover_model::service::Autoscaling,
    service: &ServiceSpec,
    usage: &Usage,
    requests_then: usize,
    seconds: f64,
) -> Vec<Observed> {
    let ready = usage.instances.len();
    let average = |f: &dyn Fn(&(u64, u64)) -> u64, per: Option<u64>| {
        let per = per.filter(|p| *p > 0)?;
        (ready > 0).then(|| {
            let sum: u64 = usage.instances.iter().map(f).sum();
            sum as f64 / ready as f64 / per as f64 * 100.0
        })
    };
    let requests = &service.resources.requests;
    spec.metrics
        .iter()
        .map(|m| Observed {
            kind: m.kind,
            value: match m.kind {
                MetricKind::Cpu => average(&|u| u.0, requests.cpu.map(|c| c.millis())),
                MetricKind::Memory => average(&|u| u.1, requests.memory.map(|m| m.bytes())),
                MetricKind::RequestRate => (ready > 0).then(|| {
                    usage.requests.saturating_sub(requests_then) as f64 / seconds / ready as f64
                }),
                // No engine measures bandwidth yet.
                MetricKind::InboundBandwidth | MetricKind::OutboundBandwidth => None,
            },
        })
        .collect()
}

impl<E: Engine> Controller<E> {
    /// Evaluates the autoscaled services whose period has passed; returns when the
    /// next one is due.
    pub(super) async fn autoscale(
        &self,
        inner: &mut Inner,
    ) -> Result<Option<Instant>, ControlError> {
        if inner.autoscaled.is_empty() {
            inner.scaled_at.clear();
            return Ok(None);
        }
        let mut changed = false;
        let mut next: Option<Instant> = None;
        for (env, name, spec) in inner.autoscaled.clone() {
            let id = (env.clone(), name.clone());
            let period = spec.evaluation_period.to_std();
            let seen = inner.scaled_at.get(&id).copied();
            // Not due yet: nothing to measure.
            if let Some((then, _)) = seen
                && then.elapsed() < period
            {
                next = next.into_iter().chain([then + period]).min();
                continue;
            }
            let Some(usage) = self.engine.usage(&env, &name).await else {
                continue;
            };
            let now = Instant::now();
            inner.scaled_at.insert(id.clone(), (now, usage.requests));
            next = next.into_iter().chain([now + period]).min();
            // The first sighting only starts the request count.
            let Some((then, requests_then)) = seen else {
                continue;
            };
            let elapsed = now.duration_since(then);
            next = next.into_iter().chain([now + period]).min();
            let updating = inner
                .progress
                .get(&id)
                .is_some_and(|p| p.progress != Progress::Healthy)
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
            let observed = self.engine.observe().await?;
            let Some(value) = observed.objects.get(&key) else {
                continue;
            };
            let Ok(service) = serde_json::from_value::<ServiceSpec>(value["spec"].clone()) else {
                continue;
            };
            let current = service.replicas.unwrap_or(1);
            let measured = measure(
                &spec,
                &service,
                &usage,
                requests_then,
                elapsed.as_secs_f64(),
            );
            let Some(decision) = decide(current, &spec, &measured) else {
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
            self.write_replicas(&key, value, "Autoscaled", &text)
                .await?;
            tracing::info!("{env}/{name}: autoscaled: {text}");
            changed = true;
        }
        if changed {
            self.wake();
        }
        Ok(next)
    }
}
