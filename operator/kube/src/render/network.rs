//! How a service is reached and scaled on Kubernetes: a `Service` whose type follows the
//! access mode, an `Ingress` for its routes and a `HorizontalPodAutoscaler`.

use std::collections::BTreeMap;

use drover_diff::ObjectKey;
use drover_model::service::{Access, Balancing, MetricKind, ServiceSpec, SessionAffinity};
use serde_json::{Value, json};

use super::workload::{container_ports, protocol};
use super::{SERVICE_LABEL, Target, metadata};

/// Annotations that make a LoadBalancer internal on the common clouds (each cloud reads
/// its own and ignores the others).
const INTERNAL_LOAD_BALANCER: [(&str, &str); 3] = [
    ("networking.gke.io/load-balancer-type", "Internal"),
    (
        "service.beta.kubernetes.io/aws-load-balancer-internal",
        "true",
    ),
    (
        "service.beta.kubernetes.io/azure-load-balancer-internal",
        "true",
    ),
];

pub(super) fn objects(
    key: &ObjectKey,
    service: &ServiceSpec,
    labels: &BTreeMap<String, String>,
    target: &Target,
    warnings: &mut Vec<String>,
) -> Vec<Value> {
    let mut objects = Vec::new();
    if service.access != Access::None {
        objects.push(kube_service(key, service, labels, target));
        if !service.routes.is_empty() {
            objects.push(ingress(key, service, labels, target));
        }
    } else if !service.routes.is_empty() {
        warnings.push(format!(
            "service {}: routes need an access mode other than `none`; no Ingress is made",
            key.name
        ));
    }
    if let Some(hpa) = autoscaler(key, service, labels, target, warnings) {
        objects.push(hpa);
    }
    objects
}

/// none: no Service · internal: ClusterIP · private: internal LoadBalancer ·
/// public: LoadBalancer.
fn kube_service(
    key: &ObjectKey,
    service: &ServiceSpec,
    labels: &BTreeMap<String, String>,
    target: &Target,
) -> Value {
    let kind = match service.access {
        Access::Private | Access::Public => "LoadBalancer",
        Access::None | Access::Internal => "ClusterIP",
    };
    let mut meta = metadata(&key.name, target, labels);
    if service.access == Access::Private {
        for (k, v) in INTERNAL_LOAD_BALANCER {
            meta["annotations"][k] = Value::from(v);
        }
    }
    let ports: Vec<Value> = container_ports(service)
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "port": p.published.or(p.target),
                "targetPort": p.name,
                "protocol": protocol(p.protocol),
            })
        })
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "type": kind,
            "selector": {SERVICE_LABEL: key.name},
            "ports": ports,
        },
    })
}

/// Routes as one Ingress; balancing and cookie affinity as ingress-nginx reads them.
fn ingress(
    key: &ObjectKey,
    service: &ServiceSpec,
    labels: &BTreeMap<String, String>,
    target: &Target,
) -> Value {
    let ports = container_ports(service);
    let first = ports.first().map(|p| p.name.clone()).unwrap_or_default();
    let mut hosts: BTreeMap<Option<String>, Vec<Value>> = BTreeMap::new();
    for route in &service.routes {
        hosts.entry(route.host.clone()).or_default().push(json!({
            "path": route.path,
            "pathType": "Prefix",
            "backend": {"service": {
                "name": key.name,
                "port": {"name": route.port.clone().unwrap_or_else(|| first.clone())},
            }},
        }));
    }
    let rules: Vec<Value> = hosts
        .into_iter()
        .map(|(host, paths)| {
            let mut rule = json!({"http": {"paths": paths}});
            if let Some(host) = host {
                rule["host"] = Value::from(host);
            }
            rule
        })
        .collect();
    let mut meta = metadata(&key.name, target, labels);
    if service
        .routes
        .iter()
        .any(|r| r.balancing == Balancing::LeastConnections)
    {
        meta["annotations"]["nginx.ingress.kubernetes.io/load-balance"] = Value::from("ewma");
    }
    if service
        .routes
        .iter()
        .any(|r| r.session_affinity == SessionAffinity::Cookie)
    {
        meta["annotations"]["nginx.ingress.kubernetes.io/affinity"] = Value::from("cookie");
    }
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": meta,
        "spec": {"rules": rules},
    })
}

/// The autoscaling settings as an HPA: CPU and memory as utilization of requests;
/// request rate and bandwidth as per-Pod custom metrics, which need a metrics adapter.
fn autoscaler(
    key: &ObjectKey,
    service: &ServiceSpec,
    labels: &BTreeMap<String, String>,
    target: &Target,
    warnings: &mut Vec<String>,
) -> Option<Value> {
    let scaling = service.autoscaling.as_ref()?;
    let metrics: Vec<Value> = scaling
        .metrics
        .iter()
        .map(|m| {
            let name = match m.kind {
                MetricKind::Cpu => "cpu",
                MetricKind::Memory => "memory",
                MetricKind::RequestRate => "requests_per_second",
                MetricKind::InboundBandwidth => "inbound_bytes_per_second",
                MetricKind::OutboundBandwidth => "outbound_bytes_per_second",
            };
            if m.kind.is_utilization() {
                json!({"type": "Resource", "resource": {
                    "name": name,
                    "target": {"type": "Utilization", "averageUtilization": m.target},
                }})
            } else {
                warnings.push(format!(
                    "service {}: the {name} metric is a custom metric on Kubernetes: the HPA reads it only where a metrics adapter (prometheus-adapter) serves it",
                    key.name
                ));
                json!({"type": "Pods", "pods": {
                    "metric": {"name": name},
                    "target": {"type": "AverageValue", "averageValue": m.target.to_string()},
                }})
            }
        })
        .collect();
    Some(json!({
        "apiVersion": target.apis.autoscaling,
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(&key.name, target, labels),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": key.name},
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
            "metrics": metrics,
            "behavior": {"scaleDown": {
                "stabilizationWindowSeconds": scaling.evaluation_period.0 / 1000,
            }},
        },
    }))
}
