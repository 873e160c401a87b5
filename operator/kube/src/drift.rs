//! Drift, pure: a live object has drifted when a field Drover renders has another value
//! live. Fields Drover does not render (defaults the API server fills in, status,
//! replicas an autoscaler owns) are never drift.

use serde_json::Value;

/// The first path where `live` does not hold what `rendered` says, if any.
pub fn drifted(rendered: &Value, live: &Value) -> Option<String> {
    // Objects listed by a watch carry no apiVersion or kind: those are the watch's.
    let mut rendered = rendered.clone();
    if let Value::Object(m) = &mut rendered {
        m.remove("apiVersion");
        m.remove("kind");
    }
    walk(&rendered, live, String::new())
}

fn walk(rendered: &Value, live: &Value, path: String) -> Option<String> {
    match (rendered, live) {
        (Value::Object(want), Value::Object(have)) => want.iter().find_map(|(k, v)| {
            let at = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            match have.get(k) {
                Some(h) => walk(v, h, at),
                // An empty map or list rendered is the same as one left out live.
                None if is_empty(v) => None,
                None => Some(at),
            }
        }),
        (Value::Array(want), Value::Array(have)) => {
            if want.len() != have.len() {
                return Some(path);
            }
            let in_order = want
                .iter()
                .zip(have)
                .enumerate()
                .find_map(|(i, (w, h))| walk(w, h, format!("{path}[{i}]")));
            // Some lists come back reordered (an HPA's metrics, converted through its
            // storage version): the same items in another order are not drift.
            let reordered = in_order.is_some()
                && want
                    .iter()
                    .all(|w| have.iter().any(|h| walk(w, h, String::new()).is_none()));
            if reordered { None } else { in_order }
        }
        (want, have) if same_scalar(want, have) => None,
        _ => Some(path),
    }
}

/// What the API server leaves out when written back: zero, false, empty.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Bool(b) => !b,
        Value::Null => true,
    }
}

/// Scalars compare as the API server writes them back: `8080` and `"8080"` differ in
/// type only where Kubernetes keeps the type, so numbers and their text are the same.
fn same_scalar(want: &Value, have: &Value) -> bool {
    match (want, have) {
        (Value::Number(a), Value::String(b)) | (Value::String(b), Value::Number(a)) => {
            a.to_string() == *b
        }
        (a, b) => a == b,
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
    fn an_added_or_removed_list_item_is_drift() {
        let rendered = json!({"env": [{"name": "A"}]});
        assert!(drifted(&rendered, &json!({"env": [{"name": "A"}, {"name": "B"}]})).is_some());
        assert!(drifted(&json!({"env": []}), &json!({})).is_none());
    }
}
