//! `GET /metrics` (OpenMetrics text: what is counted, and a snapshot of what is), and
//! the layer that counts every API request by route, method and status (RED) and
//! traces it (a server span under the caller's `traceparent`, its id on the request's
//! log lines).

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::IntoResponse;
use drover_telemetry::{Metrics, trace};
use tracing::Instrument;

use super::{Answer, Caller, Shared, failed};
use crate::engine::Engine;

/// The content type Prometheus asks for and gets.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The metrics, with a `read` token unless the server was started with
/// `--metrics-public`.
pub(super) async fn metrics<E: Engine>(State(s): State<Shared<E>>, caller: Caller) -> Answer {
    if !s.metrics_public {
        caller.require(&s, "read", None)?;
    }
    let now = s.control.snapshot().await.map_err(failed)?;
    let text = s.control.metrics().encode(now);
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, OPENMETRICS)], text).into_response())
}

/// `app` with every request counted in `metrics` and traced: by the route's pattern as the router
/// writes it (`/api/v1/services/{env}/{service}/scale`, `-` when none matched, so a
/// scan of random paths adds no series) and by method (`other` for any but the usual).
pub fn measured(app: Router, metrics: Metrics) -> Router {
    app.layer(axum::middleware::from_fn(
        move |mut request: Request, next: Next| {
            let metrics = metrics.clone();
            async move {
                let route = request
                    .extensions()
                    .get::<MatchedPath>()
                    .map_or("-", |p| p.as_str())
                    .to_owned();
                let method = match request.method().as_str() {
                    m @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS") => m,
                    _ => "other",
                }
                .to_owned();
                let parent = trace::parent_of(request.headers());
                let cx = trace::request(&method, &route, &parent);
                request
                    .extensions_mut()
                    .insert(trace::RequestTrace(cx.clone()));
                let span = tracing::info_span!(
                    "request",
                    trace_id = trace::trace_id(&cx).unwrap_or_default()
                );
                let started = Instant::now();
                let response = next.run(request).instrument(span).await;
                let status = response.status().as_u16();
                metrics.request(&route, &method, status, started.elapsed());
                trace::end_request(&cx, status);
                response
            }
        },
    ))
}
