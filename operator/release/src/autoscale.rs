//! The autoscaler's decision, as a pure function: for each metric,
//! `ceil(replicas × current / target)`, unless current/target is within the tolerance;
//! the largest over the metrics, clamped to the bounds (Kubernetes' HPA formula, as
//! Swarm-style services expect it).

use drover_model::service::{Autoscaling, MetricKind};

/// One metric's value now, per instance, in its target's unit (percent of the request
/// for cpu and memory, per second otherwise); `None` when it cannot be measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observed {
    pub kind: MetricKind,
    pub value: Option<f64>,
}

/// What the autoscaler wants, and why in one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub replicas: u32,
    pub reason: String,
}

fn unit(kind: MetricKind) -> &'static str {
    match kind {
        MetricKind::Cpu | MetricKind::Memory => "%",
        MetricKind::RequestRate => " req/s",
        MetricKind::InboundBandwidth | MetricKind::OutboundBandwidth => " B/s",
    }
}

fn name(kind: MetricKind) -> &'static str {
    match kind {
        MetricKind::Cpu => "cpu",
        MetricKind::Memory => "memory",
        MetricKind::RequestRate => "request-rate",
        MetricKind::InboundBandwidth => "inbound-bandwidth",
        MetricKind::OutboundBandwidth => "outbound-bandwidth",
    }
}

/// The replica count for a service running `current` instances (`None`: no change,
/// because nothing could be measured or the service is scaled to zero).
pub fn decide(current: u32, spec: &Autoscaling, observed: &[Observed]) -> Option<Decision> {
    if current == 0 {
        return None;
    }
    let mut best: Option<(u32, String)> = None;
    for metric in &spec.metrics {
        let Some(value) = observed
            .iter()
            .find(|o| o.kind == metric.kind)
            .and_then(|o| o.value)
        else {
            continue;
        };
        let target = metric.target.max(1) as f64;
        let ratio = value / target;
        let wanted = if (ratio - 1.0).abs() <= spec.tolerance {
            current
        } else {
            (f64::from(current) * ratio).ceil() as u32
        };
        let why = format!(
            "{} {:.0}{u} / target {}{u}",
            name(metric.kind),
            value,
            metric.target,
            u = unit(metric.kind)
        );
        if best.as_ref().is_none_or(|(n, _)| wanted > *n) {
            best = Some((wanted, why));
        }
    }
    let (wanted, why) = best?;
    Some(Decision {
        replicas: wanted.clamp(spec.min_replicas, spec.max_replicas.max(spec.min_replicas)),
        reason: why,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_model::service::Metric;

    fn spec(min: u32, max: u32, metrics: &[(MetricKind, u64)]) -> Autoscaling {
        Autoscaling {
            min_replicas: min,
            max_replicas: max,
            metrics: metrics
                .iter()
                .map(|&(kind, target)| Metric { kind, target })
                .collect(),
            tolerance: 0.1,
            evaluation_period: drover_model::quantity::Duration::secs(30),
        }
    }

    fn seen(kind: MetricKind, value: f64) -> Observed {
        Observed {
            kind,
            value: Some(value),
        }
    }

    #[test]
    fn two_replicas_at_90_percent_cpu_with_a_60_percent_target_become_three() {
        let d = decide(
            2,
            &spec(1, 10, &[(MetricKind::Cpu, 60)]),
            &[seen(MetricKind::Cpu, 90.0)],
        );
        assert_eq!(
            d.unwrap(),
            Decision {
                replicas: 3,
                reason: "cpu 90% / target 60%".into()
            }
        );
    }

    #[test]
    fn within_the_tolerance_nothing_changes() {
        let s = spec(1, 10, &[(MetricKind::Cpu, 60)]);
        assert_eq!(
            decide(4, &s, &[seen(MetricKind::Cpu, 65.0)])
                .unwrap()
                .replicas,
            4
        );
        assert_eq!(
            decide(4, &s, &[seen(MetricKind::Cpu, 54.1)])
                .unwrap()
                .replicas,
            4
        );
        assert_eq!(
            decide(4, &s, &[seen(MetricKind::Cpu, 30.0)])
                .unwrap()
                .replicas,
            2
        );
    }

    #[test]
    fn the_largest_metric_wins_and_the_bounds_hold() {
        let s = spec(
            2,
            5,
            &[(MetricKind::Cpu, 50), (MetricKind::RequestRate, 10)],
        );
        let d = decide(
            2,
            &s,
            &[
                seen(MetricKind::Cpu, 50.0),
                seen(MetricKind::RequestRate, 40.0),
            ],
        );
        assert_eq!(
            d.unwrap(),
            Decision {
                replicas: 5,
                reason: "request-rate 40 req/s / target 10 req/s".into()
            }
        );
        let idle = decide(
            3,
            &s,
            &[
                seen(MetricKind::Cpu, 0.0),
                seen(MetricKind::RequestRate, 0.0),
            ],
        );
        assert_eq!(idle.unwrap().replicas, 2);
    }

    #[test]
    fn nothing_measured_or_zero_replicas_means_no_decision() {
        let s = spec(1, 5, &[(MetricKind::InboundBandwidth, 1000)]);
        assert_eq!(
            decide(
                2,
                &s,
                &[Observed {
                    kind: MetricKind::InboundBandwidth,
                    value: None
                }]
            ),
            None
        );
        assert_eq!(
            decide(
                0,
                &spec(1, 5, &[(MetricKind::Cpu, 50)]),
                &[seen(MetricKind::Cpu, 99.0)]
            ),
            None
        );
    }
}
