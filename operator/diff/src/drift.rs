//! Drift, pure: where a live object does not hold what Drover rendered for it. Only the
//! fields Drover renders count: what an API server fills in (defaults, status, ids) or
//! leaves out when zero is never drift. Every engine that compares a rendering with
//! live state uses this one comparison.

use serde_json::Value;

/// The first path (`spec.replicas`, `containers[0].image`) where `live` does not hold
/// what `rendered` says, if any.
pub fn first_difference(rendered: &Value, live: &Value) -> Option<String> {
    walk(rendered, live, String::new())
}

/// [`first_difference`] below `path`.
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
pub fn is_empty(v: &Value) -> bool {
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
        // `0.0` written, `0` read back (Go omits a float's fraction).
        (Value::Number(a), Value::Number(b)) => a == b || a.as_f64() == b.as_f64(),
        (a, b) => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_float_written_and_an_integer_read_back_are_the_same_number() {
        let rendered = json!({"UpdateConfig": {"MaxFailureRatio": 0.0, "Parallelism": 1}});
        let live = json!({"UpdateConfig": {"MaxFailureRatio": 0, "Parallelism": 1, "Order": "stop-first"}});
        assert_eq!(first_difference(&rendered, &live), None);
        let changed = json!({"UpdateConfig": {"MaxFailureRatio": 0.5, "Parallelism": 1}});
        assert_eq!(
            first_difference(&rendered, &changed).as_deref(),
            Some("UpdateConfig.MaxFailureRatio")
        );
    }
}
