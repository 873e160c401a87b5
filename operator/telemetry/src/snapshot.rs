//! What is, read fresh at each scrape: each environment's sync status and open
//! release, the age of the revision in force, each service's desired and ready
//! instances and restarts, nodes, promotions by state, and the local proxies' traffic.
//! Level-based, like everything Drover decides: a restart loses nothing here, and a
//! service that is gone is gone from the next scrape.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

/// The state the control plane is in, as the metrics show it.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Drover's version (`drover_build_info`).
    pub version: String,
    /// Every sync status there is, so each environment has a 0 for the others
    /// (Prometheus' state-set pattern: `drover_environment_sync_status{status="…"} 1`).
    pub sync_states: Vec<&'static str>,
    pub environments: Vec<EnvironmentNow>,
    pub services: Vec<ServiceNow>,
    pub nodes: Vec<NodeNow>,
    /// Promotions in each state (every state, with 0 for none).
    pub promotions: Vec<(&'static str, u64)>,
    pub proxies: Vec<ProxyNow>,
}

#[derive(Debug, Clone)]
pub struct EnvironmentNow {
    pub name: String,
    pub sync: &'static str,
    /// A release is being judged.
    pub release_open: bool,
    /// Seconds since the revision in force was committed.
    pub revision_age: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct ServiceNow {
    pub environment: String,
    pub name: String,
    pub desired: u32,
    pub ready: u32,
    /// Restarts of its current instances.
    pub restarts: u64,
}

#[derive(Debug, Clone)]
pub struct NodeNow {
    pub name: String,
    pub up: bool,
}

/// A local proxy (one per listener) and what it has counted since it started.
#[derive(Debug, Clone)]
pub struct ProxyNow {
    /// `CLUSTER/LISTENER`.
    pub listener: String,
    pub connections: u64,
    pub unrouted: u64,
    pub services: Vec<ProxiedService>,
}

/// One service's traffic through a proxy.
#[derive(Debug, Clone)]
pub struct ProxiedService {
    pub environment: String,
    pub service: String,
    /// The service's port the route names.
    pub port: String,
    /// Responses by status class, 1xx … 5xx.
    pub responses: [u64; 5],
    /// (upper bound, answers in that bucket alone), +Inf last.
    pub latency: Vec<(f64, u64)>,
    pub latency_seconds: f64,
}

type Result = std::result::Result<(), std::fmt::Error>;

fn gauge<'a, L: prometheus_client::encoding::EncodeLabelSet + 'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    values: impl IntoIterator<Item = (L, f64)>,
) -> Result {
    let mut metric = encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    for (labels, value) in values {
        let mut family = metric.encode_family(&labels)?;
        // Whole numbers (most of these) are written as integers.
        if value.fract() == 0.0 && value.abs() < 9e15 {
            family.encode_gauge(&(value as i64))?;
        } else {
            family.encode_gauge(&value)?;
        }
    }
    Ok(())
}

fn counter<L: prometheus_client::encoding::EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: impl IntoIterator<Item = (L, u64)>,
) -> Result {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in values {
        metric
            .encode_family(&labels)?
            .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
    }
    Ok(())
}

fn flag(on: bool) -> f64 {
    if on { 1.0 } else { 0.0 }
}

impl Snapshot {
    fn environments(&self, encoder: &mut DescriptorEncoder) -> Result {
        let envs = &self.environments;
        gauge(
            encoder,
            "environment_sync_status",
            "1 for each environment's sync status now, 0 for the others",
            None,
            envs.iter().flat_map(|e| {
                self.sync_states.iter().map(|&s| {
                    (
                        [("environment", e.name.as_str()), ("status", s)],
                        flag(e.sync == s),
                    )
                })
            }),
        )?;
        gauge(
            encoder,
            "environment_release_open",
            "1 while a release of the environment is being judged",
            None,
            envs.iter()
                .map(|e| ([("environment", e.name.as_str())], flag(e.release_open))),
        )?;
        gauge(
            encoder,
            "desired_revision_age",
            "Seconds since the revision in force was committed",
            Some(&Unit::Seconds),
            envs.iter()
                .filter_map(|e| Some(([("environment", e.name.as_str())], e.revision_age?))),
        )
    }

    fn services(&self, encoder: &mut DescriptorEncoder) -> Result {
        let labels = |s: &ServiceNow| {
            [
                ("environment", s.environment.clone()),
                ("service", s.name.clone()),
            ]
        };
        gauge(
            encoder,
            "service_desired_instances",
            "Instances a service should have",
            None,
            self.services
                .iter()
                .map(|s| (labels(s), f64::from(s.desired))),
        )?;
        gauge(
            encoder,
            "service_ready_instances",
            "Instances of a service that are ready",
            None,
            self.services
                .iter()
                .map(|s| (labels(s), f64::from(s.ready))),
        )?;
        gauge(
            encoder,
            "service_restarts",
            "Restarts of a service's current instances (replaced instances no longer count)",
            None,
            self.services.iter().map(|s| (labels(s), s.restarts as f64)),
        )?;
        gauge(
            encoder,
            "node_up",
            "1 while a node's agent reports",
            None,
            self.nodes
                .iter()
                .map(|n| ([("node", n.name.as_str())], flag(n.up))),
        )?;
        gauge(
            encoder,
            "promotions",
            "Promotions Drover keeps, by state",
            None,
            self.promotions
                .iter()
                .map(|(state, n)| ([("state", *state)], *n as f64)),
        )
    }

    fn proxies(&self, encoder: &mut DescriptorEncoder) -> Result {
        let proxied = || {
            self.proxies
                .iter()
                .flat_map(|p| p.services.iter().map(move |s| (p.listener.as_str(), s)))
        };
        counter(
            encoder,
            "proxy_requests",
            "Requests the local proxy answered, by service and status class (since the proxy started)",
            proxied().flat_map(|(listener, s)| {
                (0..5).map(move |class| {
                    (
                        [
                            ("listener", listener.to_owned()),
                            ("environment", s.environment.clone()),
                            ("service", s.service.clone()),
                            ("port", s.port.clone()),
                            ("code", format!("{}xx", class + 1)),
                        ],
                        s.responses[class],
                    )
                })
            }),
        )?;
        counter(
            encoder,
            "proxy_unrouted_requests",
            "Requests no route of the local proxy matched (answered 404)",
            self.proxies
                .iter()
                .map(|p| ([("listener", p.listener.as_str())], p.unrouted)),
        )?;
        gauge(
            encoder,
            "proxy_active_connections",
            "Client connections open at the local proxy",
            None,
            self.proxies
                .iter()
                .map(|p| ([("listener", p.listener.as_str())], p.connections as f64)),
        )?;
        let mut metric = encoder.encode_descriptor(
            "proxy_upstream_duration",
            "How long instances took to answer the local proxy (to the response's headers)",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (listener, s) in proxied() {
            let labels = [
                ("listener", listener),
                ("environment", s.environment.as_str()),
                ("service", s.service.as_str()),
                ("port", s.port.as_str()),
            ];
            let count = s.latency.iter().map(|(_, n)| n).sum();
            metric
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(s.latency_seconds, count, &s.latency, None)?;
        }
        Ok(())
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result {
        gauge(
            &mut encoder,
            "build_info",
            "Drover's version",
            None,
            [([("version", self.version.as_str())], 1.0)],
        )?;
        self.environments(&mut encoder)?;
        self.services(&mut encoder)?;
        self.proxies(&mut encoder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Metrics;

    #[test]
    fn a_snapshot_writes_state_sets_instances_and_proxy_histograms() {
        let now = Snapshot {
            version: "0.1.0".into(),
            sync_states: vec!["Synced", "Updating"],
            environments: vec![EnvironmentNow {
                name: "staging".into(),
                sync: "Updating",
                release_open: true,
                revision_age: Some(12.5),
            }],
            services: vec![ServiceNow {
                environment: "staging".into(),
                name: "web".into(),
                desired: 3,
                ready: 2,
                restarts: 1,
            }],
            nodes: vec![],
            promotions: vec![("Deploying", 1)],
            proxies: vec![ProxyNow {
                listener: "local/http".into(),
                connections: 4,
                unrouted: 2,
                services: vec![ProxiedService {
                    environment: "staging".into(),
                    service: "web".into(),
                    port: "http".into(),
                    responses: [0, 7, 0, 1, 0],
                    latency: vec![(0.005, 6), (f64::INFINITY, 1)],
                    latency_seconds: 0.02,
                }],
            }],
        };
        let text = Metrics::new().encode(now);
        for line in [
            "drover_build_info{version=\"0.1.0\"} 1",
            "drover_environment_sync_status{environment=\"staging\",status=\"Synced\"} 0",
            "drover_environment_sync_status{environment=\"staging\",status=\"Updating\"} 1",
            "drover_environment_release_open{environment=\"staging\"} 1",
            "drover_desired_revision_age_seconds{environment=\"staging\"} 12.5",
            "drover_service_ready_instances{environment=\"staging\",service=\"web\"} 2",
            "drover_promotions{state=\"Deploying\"} 1",
            "drover_proxy_requests_total{listener=\"local/http\",environment=\"staging\",service=\"web\",port=\"http\",code=\"2xx\"} 7",
            "drover_proxy_unrouted_requests_total{listener=\"local/http\"} 2",
            "drover_proxy_active_connections{listener=\"local/http\"} 4",
            "drover_proxy_upstream_duration_seconds_bucket{le=\"+Inf\",listener=\"local/http\",environment=\"staging\",service=\"web\",port=\"http\"} 7",
            "drover_proxy_upstream_duration_seconds_count{listener=\"local/http\",environment=\"staging\",service=\"web\",port=\"http\"} 7",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }
}
