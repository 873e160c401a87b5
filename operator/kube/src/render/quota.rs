//! An environment's limits and secrets: `Quota` → ResourceQuota + LimitRange, `Secret`
//! → Secret.

use drover_diff::ObjectKey;
use drover_model::QuotaSpec;
use serde_json::{Map, Value, json};

use super::workload::resource_list;
use super::{RenderError, Rendered, Target, labels_of, metadata, spec};

pub(super) fn quota(
    key: &ObjectKey,
    value: &Value,
    target: &Target,
) -> Result<Rendered, RenderError> {
    let quota: QuotaSpec = spec(key, value)?;
    let labels = labels_of(value);
    let mut hard = Map::new();
    let counts = [
        ("pods", quota.hard.instances),
        // Each Drover service is one workload; global services are DaemonSets, which
        // a quota cannot count, so Deployments stand for services.
        ("count/deployments.apps", quota.hard.services),
        ("secrets", quota.hard.secrets),
        ("persistentvolumeclaims", quota.hard.volumes),
        ("resourcequotas", quota.hard.quotas),
    ];
    for (name, count) in counts {
        if let Some(n) = count {
            hard.insert(name.into(), Value::from(n.to_string()));
        }
    }
    for (prefix, list) in [
        ("requests", &quota.hard.requests),
        ("limits", &quota.hard.limits),
    ] {
        if let Value::Object(m) = resource_list(list) {
            for (resource, amount) in m {
                hard.insert(format!("{prefix}.{resource}"), amount);
            }
        }
    }
    let mut objects = vec![json!({
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": metadata(&key.name, target, &labels),
        "spec": {"hard": hard},
    })];
    let range = &quota.limit_range;
    if !range.is_empty() {
        let mut limit = json!({"type": "Container"});
        for (field, list) in [
            ("defaultRequest", &range.default_request),
            ("default", &range.default_limit),
            ("min", &range.min),
            ("max", &range.max),
        ] {
            if !list.is_empty() {
                limit[field] = resource_list(list);
            }
        }
        objects.push(json!({
            "apiVersion": "v1",
            "kind": "LimitRange",
            "metadata": metadata(&key.name, target, &labels),
            "spec": {"limits": [limit]},
        }));
    }
    Ok(Rendered {
        objects,
        warnings: Vec::new(),
    })
}

/// A Secret with the same keys. The model holds only fingerprints of the values
/// (nothing Drover renders, logs or stores can show a secret): the rendering carries
/// them as an annotation, and the engine fills `data` from the control plane's memory
/// just before it applies the Secret.
pub(super) fn secret(key: &ObjectKey, value: &Value, target: &Target) -> Rendered {
    let labels = labels_of(value);
    let fingerprints = value["spec"]["data"].clone();
    let mut meta = metadata(&key.name, target, &labels);
    meta["annotations"]["drover.dev/fingerprints"] = Value::from(fingerprints.to_string());
    Rendered {
        objects: vec![json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": meta,
            "type": "Opaque",
        })],
        warnings: Vec::new(),
    }
}
