//! The controller's HTTP API and its web dashboard ([`dashboard`]): status, history,
//! events, the audit trail, diffs and the metrics to read (scope `read`); scale, redeploy, rollback, node availability, promotions, deploys
//! and tokens to write, each with its scope and audited ([`auth`]). An engine adds
//! its own routes (the local engine's agents report here) with [`router`]'s `extra`.
//! Serve it with `into_make_service_with_connect_info::<SocketAddr>()`: the audit trail
//! records callers' addresses.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::controller::{ControlError, Controller};
use crate::engine::Engine;
use crate::promoter::Promoter;
use crate::view::{Done, ReleaseView, Status};

pub mod auth;
mod dashboard;
mod metrics;
mod writes;

pub use metrics::measured;

pub use writes::parsed;

pub use auth::{Allowed, Caller, allows, audited, valid_scope};

/// What the API serves from.
#[derive(Debug)]
pub struct ServerState<E: Engine> {
    pub control: Arc<Controller<E>>,
    /// SHA-256 of the state directory's token.
    admin_hash: [u8; 32],
    /// Writes promotions and deploys to Git (absent: those calls answer 503).
    pub promoter: Option<Arc<Promoter<E>>>,
    /// `GET /metrics` answers without a token (`--metrics-public`).
    pub metrics_public: bool,
}

impl<E: Engine> ServerState<E> {
    pub fn new(
        control: Arc<Controller<E>>,
        admin_token: &str,
        promoter: Option<Arc<Promoter<E>>>,
    ) -> ServerState<E> {
        ServerState {
            control,
            admin_hash: Sha256::digest(admin_token.as_bytes()).into(),
            promoter,
            metrics_public: false,
        }
    }

    /// Serves `GET /metrics` to anyone (Prometheus without a token), or only with a
    /// `read` token.
    pub fn with_public_metrics(mut self, public: bool) -> ServerState<E> {
        self.metrics_public = public;
        self
    }
}

/// The state every handler gets.
pub type Shared<E> = Arc<ServerState<E>>;

/// The controller's routes, with `extra` (an engine's) merged in.
pub fn router<E: Engine>(state: Shared<E>, extra: Router<Shared<E>>) -> Router {
    Router::new()
        .route("/", get(dashboard::index))
        .route("/ui/app.js", get(dashboard::script))
        .route("/ui/style.css", get(dashboard::style))
        .route("/api/v1/whoami", get(dashboard::whoami))
        .route("/api/v1/stream", get(dashboard::stream))
        .route("/api/v1/revisions/{rev}/diff", get(dashboard::diff))
        .route("/metrics", get(metrics::metrics))
        .route("/api/v1/status", read_status(|s| s))
        .route("/api/v1/environments", read_status(|s| s.environments))
        .route("/api/v1/services", read_status(|s| s.services))
        .route("/api/v1/instances", read_status(|s| s.instances))
        .route("/api/v1/nodes", read_status(|s| s.nodes))
        .route("/api/v1/events", get(events))
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/environments/{env}/history", get(history))
        .route(
            "/api/v1/environments/{env}/rollback",
            post(writes::rollback),
        )
        .route("/api/v1/environments/{env}/deploy", post(writes::deploy))
        .route(
            "/api/v1/promotions",
            get(writes::promotions).post(writes::promote),
        )
        .route("/api/v1/promotions/{id}", get(writes::promotion))
        .route(
            "/api/v1/tokens",
            get(writes::tokens).post(writes::create_token),
        )
        .route("/api/v1/tokens/{name}", delete(writes::revoke_token))
        .route(
            "/api/v1/services/{env}/{service}/scale",
            post(writes::scale),
        )
        .route(
            "/api/v1/services/{env}/{service}/redeploy",
            post(writes::redeploy),
        )
        .route(
            "/api/v1/nodes/{node}/availability",
            post(writes::availability),
        )
        .merge(extra)
        .with_state(state)
}

/// A JSON answer.
pub fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    let mut text = serde_json::to_string(body).expect("API answers serialize");
    text.push('\n');
    (status, [(header::CONTENT_TYPE, "application/json")], text).into_response()
}

/// An error answer: `{"error": "…"}`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
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
        ControlError::Invalid(_) => StatusCode::BAD_REQUEST,
        ControlError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
        ControlError::Gate(_) => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e.to_string())
}

/// A read's answer: the value as JSON, or the error.
fn answer<T: Serialize>(result: Result<T, ControlError>) -> Response {
    match result {
        Ok(value) => json(StatusCode::OK, &value),
        Err(e) => failed(e),
    }
}

/// A handler's answer: a refusal returns early with `?`.
type Answer = Result<Response, Response>;

/// A read of (part of) the status.
fn read_status<E: Engine, T: Serialize + 'static>(
    pick: fn(Status) -> T,
) -> MethodRouter<Shared<E>> {
    get(
        move |State(s): State<Shared<E>>, caller: Caller| async move {
            caller.require(&s, "read", None)?;
            Ok::<_, Response>(answer(s.control.status().await.map(pick)))
        },
    )
}

/// `?limit=N` of a listing.
#[derive(Debug, Deserialize)]
struct Page {
    limit: Option<usize>,
}

#[derive(Serialize)]
struct EventView {
    at_ms: i64,
    environment: String,
    object: String,
    reason: String,
    message: String,
}

async fn events<E: Engine>(
    State(s): State<Shared<E>>,
    caller: Caller,
    Query(page): Query<Page>,
) -> Answer {
    caller.require(&s, "read", None)?;
    let events = s.control.events(page.limit.unwrap_or(100)).map(|events| {
        events
            .into_iter()
            .map(|e| EventView {
                at_ms: e.at_ms,
                environment: e.environment,
                object: e.object,
                reason: e.reason,
                message: e.message,
            })
            .collect::<Vec<_>>()
    });
    Ok(answer(events))
}

async fn audit<E: Engine>(
    State(s): State<Shared<E>>,
    caller: Caller,
    Query(page): Query<Page>,
) -> Answer {
    caller.require(&s, "read", None)?;
    let limit = page.limit.unwrap_or(100);
    Ok(answer(s.control.with_store(|st| st.audit_trail(limit))))
}

async fn history<E: Engine>(
    State(s): State<Shared<E>>,
    caller: Caller,
    Path(env): Path<String>,
) -> Answer {
    caller.require(&s, "read", None)?;
    let releases = s.control.history(&env).await.map(|releases| {
        releases
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
            .collect::<Vec<_>>()
    });
    Ok(answer(releases))
}
