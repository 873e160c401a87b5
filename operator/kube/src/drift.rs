//! Drift, pure: a live object has drifted when a field Drover renders has another value
//! live. Fields Drover does not render (defaults the API server fills in, status,
//! replicas an autoscaler owns) are never drift.

use serde_json::Value;

/// The first path where `live` does not hold what `rendered` says, if any.
pub fn drifted(rendered: &Value, live: &Value) -> Option<String> {
    walk(rendered, live, String::new())
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
            want.iter()
                .zip(have)
                .enumerate()
                .find_map(|(i, (w, h))| walk(w, h, format!("{path}[{i}]")))
        }
        (want, have) if same_scalar(want, have) => None,
        _ => Some(path),
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
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
    fn an_added_or_removed_list_item_is_drift() {
        let rendered = json!({"env": [{"name": "A"}]});
        assert!(drifted(&rendered, &json!({"env": [{"name": "A"}, {"name": "B"}]})).is_some());
        assert!(drifted(&json!({"env": []}), &json!({})).is_none());
    }
}
