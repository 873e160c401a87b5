//! Drift, pure: a live object has drifted when a field Drover renders has another value
//! live. Fields Drover does not render (defaults the API server fills in, status,
//! replicas an autoscaler owns) are never drift.

use drover_diff::drift::{first_difference, is_empty};
use serde_json::Value;

/// The first path where `live` does not hold what `rendered` says, if any.
pub fn drifted(rendered: &Value, live: &Value) -> Option<String> {
    // Objects listed by a watch carry no apiVersion or kind: those are the watch's.
    let mut rendered = rendered.clone();
    if let Value::Object(m) = &mut rendered {
        m.remove("apiVersion");
        m.remove("kind");
    }
    first_difference(&rendered, live)
}

/// One field a plan would change: where, what is live, what would be.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldChange {
    pub path: String,
    pub live: Value,
    pub planned: Value,
}

/// Every field Drover renders whose value `planned` (a server-side dry run of the
/// rendering) has and `live` does not: a plan's lines for one object.
pub fn changes(rendered: &Value, live: &Value, planned: &Value) -> Vec<FieldChange> {
    let mut out = Vec::new();
    collect(rendered, live, planned, String::new(), &mut out);
    out
}

fn collect(
    rendered: &Value,
    live: &Value,
    planned: &Value,
    path: String,
    out: &mut Vec<FieldChange>,
) {
    match rendered {
        Value::Object(fields) => {
            for (k, v) in fields {
                if path.is_empty() && matches!(k.as_str(), "apiVersion" | "kind") {
                    continue;
                }
                let at = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                collect(v, &live[k], &planned[k], at, out);
            }
        }
        // A list is one field: its items are shown whole when it changes.
        _ => {
            let same =
                first_difference(planned, live).is_none() || (live.is_null() && is_empty(planned));
            if !same {
                out.push(FieldChange {
                    path,
                    live: live.clone(),
                    planned: planned.clone(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_the_server_adds_are_not_drift() {
        let rendered = json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "web"}]}}}});
        let live = json!({"spec": {"replicas": 2, "revisionHistoryLimit": 10,
            "template": {"spec": {"containers": [{"name": "web", "imagePullPolicy": "Always"}]}}},
            "status": {"readyReplicas": 1}});
        assert_eq!(drifted(&rendered, &live), None);
    }

    #[test]
    fn a_changed_rendered_field_is_drift_with_its_path() {
        let rendered = json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [{"image": "web:2"}]}}}});
        let scaled = json!({"spec": {"replicas": 5, "template": {"spec": {"containers": [{"image": "web:2"}]}}}});
        assert_eq!(
            drifted(&rendered, &scaled).as_deref(),
            Some("spec.replicas")
        );
        let edited = json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [{"image": "web:1"}]}}}});
        assert_eq!(
            drifted(&rendered, &edited).as_deref(),
            Some("spec.template.spec.containers[0].image")
        );
    }

    #[test]
    fn zeros_the_server_omits_and_reordered_lists_are_not_drift() {
        let rendered = json!({"apiVersion": "v1", "probe": {"initialDelaySeconds": 0, "periodSeconds": 2},
            "metrics": [{"type": "Resource"}, {"type": "Pods"}]});
        let live = json!({"probe": {"periodSeconds": 2},
            "metrics": [{"type": "Pods"}, {"type": "Resource"}]});
        assert_eq!(drifted(&rendered, &live), None);
        let changed = json!({"probe": {"periodSeconds": 2}, "metrics": [{"type": "Pods"}, {"type": "Object"}]});
        assert!(drifted(&rendered, &changed).is_some());
    }

    #[test]
    fn a_plan_lists_each_rendered_field_the_dry_run_changes() {
        let rendered = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "spec": {"replicas": 3, "template": {"spec": {"containers": [{"image": "web:2"}]}}}});
        let live = json!({"spec": {"replicas": 2, "paused": false,
            "template": {"spec": {"containers": [{"image": "web:1", "imagePullPolicy": "Always"}]}}}});
        let planned = json!({"spec": {"replicas": 3, "paused": false,
            "template": {"spec": {"containers": [{"image": "web:2", "imagePullPolicy": "Always"}]}}}});
        let found = changes(&rendered, &live, &planned);
        let paths: Vec<&str> = found.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, ["spec.replicas", "spec.template.spec.containers"]);
        assert_eq!(found[0].live, json!(2));
        assert_eq!(found[0].planned, json!(3));
        assert!(changes(&rendered, &planned, &planned).is_empty());
    }

    #[test]
    fn an_added_or_removed_list_item_is_drift() {
        let rendered = json!({"env": [{"name": "A"}]});
        assert!(drifted(&rendered, &json!({"env": [{"name": "A"}, {"name": "B"}]})).is_some());
        assert!(drifted(&json!({"env": []}), &json!({})).is_none());
    }
}
