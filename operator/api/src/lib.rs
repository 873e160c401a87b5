//! Git push webhooks: `POST /api/v1/webhooks/git`, where Git hosts announce pushes,
//! and `GET /healthz`. `drover watch` serves these alone; `drover up` merges them into the
//! control plane's API (drover-local).
//!
//! A webhook only ever triggers a fetch, and only when its signature checks out: a
//! request without one, or with a wrong one, gets 401 and changes nothing.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use drover_source::Redacted;
use drover_source::webhook::{self, WebhookError};
use drover_telemetry::trace::{Detection, Detections, RequestTrace, parent_of};
use drover_telemetry::{Metrics, WebhookOutcome};
use tokio::sync::Notify;

/// What the API needs from the rest of Drover.
#[derive(Debug)]
pub struct ApiState {
    /// The shared secret Git hosts sign webhooks with; with none, every webhook is refused.
    pub webhook_secret: Option<Redacted>,
    /// Woken on each verified push. Several pushes before the fetch runs wake it once.
    pub on_push: Arc<Notify>,
    /// Deliveries are counted by outcome.
    pub metrics: Metrics,
    /// A signed push is recorded as what set the next check off, with the trace
    /// context it came with (its `traceparent`).
    pub detections: Arc<Detections>,
}

/// The API's routes.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/api/v1/webhooks/git", post(git_webhook))
        .with_state(state)
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string() + "\n",
    )
        .into_response()
}

async fn git_webhook(
    State(state): State<Arc<ApiState>>,
    request_trace: Option<Extension<RequestTrace>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(secret) = &state.webhook_secret else {
        state.metrics.webhook(WebhookOutcome::Unconfigured);
        return json(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"error": "no webhook secret is configured (DROVER_WEBHOOK_SECRET)"}),
        );
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    match webhook::verify(secret.0.as_bytes(), header, &body) {
        Ok(provider) => {
            state.metrics.webhook(WebhookOutcome::Accepted);
            // Under this request's span when it is traced, else under its caller's.
            let parent = request_trace.map_or_else(|| parent_of(&headers), |t| t.0.0);
            state.detections.saw(Detection::Webhook, parent);
            state.on_push.notify_one();
            json(
                StatusCode::ACCEPTED,
                serde_json::json!({"accepted": true, "provider": format!("{provider:?}").to_lowercase()}),
            )
        }
        Err(error @ (WebhookError::Unsigned | WebhookError::BadSignature(_))) => {
            state.metrics.webhook(match error {
                WebhookError::Unsigned => WebhookOutcome::Unsigned,
                WebhookError::BadSignature(_) => WebhookOutcome::BadSignature,
            });
            json(
                StatusCode::UNAUTHORIZED,
                serde_json::json!({"error": error.to_string()}),
            )
        }
    }
}
