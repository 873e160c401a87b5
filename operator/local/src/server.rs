//! The control plane's HTTP API on 127.0.0.1. Reads are open to local users; writes
//! (agents' reports, scaling, node availability) need the token from the state
//! directory as `Authorization: Bearer TOKEN`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use crate::control::{ControlError, ControlPlane};
use crate::protocol::Report;
use crate::view::{AvailabilityRequest, Done, ReleaseView, RollbackRequest, ScaleRequest};

/// What the API serves from.
#[derive(Debug)]
pub struct ServerState {
    pub control: Arc<ControlPlane>,
    pub token: String,
}

type Shared = Arc<ServerState>;

/// The control plane's routes (merge with `drover_api::router` for webhooks).
pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/environments", get(environments))
        .route("/api/v1/services", get(services))
        .route("/api/v1/instances", get(instances))
        .route("/api/v1/nodes", get(nodes))
        .route("/api/v1/events", get(events))
        .route("/api/v1/environments/{env}/history", get(history))
        .route("/api/v1/environments/{env}/rollback", post(rollback))
        .route("/api/v1/agents/{node}/report", post(report))
        .route("/api/v1/services/{env}/{service}/scale", post(scale))
        .route("/api/v1/services/{env}/{service}/redeploy", post(redeploy))
        .route("/api/v1/nodes/{node}/availability", post(availability))
        .with_state(state)
}

fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    let mut text = serde_json::to_string(body).expect("API answers serialize");
    text.push('\n');
    (status, [(header::CONTENT_TYPE, "application/json")], text).into_response()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    json(status, &serde_json::json!({ "error": message.into() }))
}

/// The answer to a write: its sentence, or the error.
fn done(result: Result<String, ControlError>) -> Response {
    match result {
        Ok(message) => json(StatusCode::OK, &Done { message }),
        Err(e) => failed(e),
    }
}

fn failed(e: ControlError) -> Response {
    let status = match e {
        ControlError::NotFound(_) => StatusCode::NOT_FOUND,
        ControlError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e.to_string())
}

/// Checks the bearer token in constant time.
#[allow(clippy::result_large_err)] // the error is the response, built once per refused call
fn authorized(state: &ServerState, headers: &HeaderMap) -> Result<(), Response> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if bool::from(given.as_bytes().ct_eq(state.token.as_bytes())) {
        Ok(())
    } else {
        Err(error(
            StatusCode::UNAUTHORIZED,
            "writes need `Authorization: Bearer TOKEN` (the token is in the state directory's api-token file)",
        ))
    }
}

#[allow(clippy::result_large_err)]
fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, Response> {
    serde_json::from_slice(bytes).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!("invalid request body: {e}"),
        )
    })
}

async fn status(State(s): State<Shared>) -> Response {
    match s.control.status() {
        Ok(v) => json(StatusCode::OK, &v),
        Err(e) => failed(e),
    }
}

async fn environments(State(s): State<Shared>) -> Response {
    match s.control.status() {
        Ok(v) => json(StatusCode::OK, &v.environments),
        Err(e) => failed(e),
    }
}

async fn services(State(s): State<Shared>) -> Response {
    match s.control.status() {
        Ok(v) => json(StatusCode::OK, &v.services),
        Err(e) => failed(e),
    }
}

async fn instances(State(s): State<Shared>) -> Response {
    match s.control.status() {
        Ok(v) => json(StatusCode::OK, &v.instances),
        Err(e) => failed(e),
    }
}

async fn nodes(State(s): State<Shared>) -> Response {
    match s.control.status() {
        Ok(v) => json(StatusCode::OK, &v.nodes),
        Err(e) => failed(e),
    }
}

#[derive(Serialize)]
struct EventView {
    at_ms: i64,
    environment: String,
    object: String,
    reason: String,
    message: String,
}

async fn events(State(s): State<Shared>, RawQuery(query): RawQuery) -> Response {
    let limit = query
        .as_deref()
        .unwrap_or_default()
        .split('&')
        .find_map(|p| p.strip_prefix("limit="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(100usize);
    match s.control.events(limit) {
        Ok(events) => {
            let views: Vec<EventView> = events
                .into_iter()
                .map(|e| EventView {
                    at_ms: e.at_ms,
                    environment: e.environment,
                    object: e.object,
                    reason: e.reason,
                    message: e.message,
                })
                .collect();
            json(StatusCode::OK, &views)
        }
        Err(e) => failed(e),
    }
}

async fn history(State(s): State<Shared>, Path(env): Path<String>) -> Response {
    match s.control.history(&env) {
        Ok(releases) => {
            let views: Vec<ReleaseView> = releases
                .into_iter()
                .map(|r| ReleaseView {
                    revision: r.revision,
                    summary: r.summary,
                    previous: r.previous,
                    trigger: r.trigger,
                    services: r.services,
                    started_ms: r.started_ms,
                    ended_ms: r.ended_ms,
                    result: r.result,
                    reason: r.reason,
                    revert: r.revert,
                })
                .collect();
            json(StatusCode::OK, &views)
        }
        Err(e) => failed(e),
    }
}

async fn report(
    State(s): State<Shared>,
    Path(node): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    if let Err(r) = authorized(&s, &headers) {
        return r;
    }
    let report: Report = match body(&bytes) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let (known, hold) = (report.generation, !report.urgent);
    if !s.control.report(&node, report) {
        return error(
            StatusCode::NOT_FOUND,
            format!("no node `{node}` in the applied clusters (yet)"),
        );
    }
    let assignments = s.control.assignments(&node, known, hold).await;
    json(StatusCode::OK, &assignments)
}

async fn scale(
    State(s): State<Shared>,
    Path((env, service)): Path<(String, String)>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    if let Err(r) = authorized(&s, &headers) {
        return r;
    }
    let request: ScaleRequest = match body(&bytes) {
        Ok(r) => r,
        Err(r) => return r,
    };
    done(s.control.scale(&env, &service, request.replicas))
}

async fn rollback(
    State(s): State<Shared>,
    Path(env): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    if let Err(r) = authorized(&s, &headers) {
        return r;
    }
    let request: RollbackRequest = match body(&bytes) {
        Ok(r) => r,
        Err(r) => return r,
    };
    done(s.control.rollback(&env, request.to.as_deref()))
}

async fn redeploy(
    State(s): State<Shared>,
    Path((env, service)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorized(&s, &headers) {
        return r;
    }
    done(s.control.redeploy(&env, &service))
}

async fn availability(
    State(s): State<Shared>,
    Path(node): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    if let Err(r) = authorized(&s, &headers) {
        return r;
    }
    let request: AvailabilityRequest = match body(&bytes) {
        Ok(r) => r,
        Err(r) => return r,
    };
    done(
        s.control
            .set_availability(&node, request.availability.as_deref()),
    )
}
