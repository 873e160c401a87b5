//! The route the local engine's agents report to: `POST /api/v1/agents/{node}/report`
//! with the node's instances, answered (held up to a long poll) with its assignments.
//! Merged into the controller's API; it needs the node's scope, `node:NAME` (each
//! agent gets a token of its own with just that), or `nodes`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use drover_control::Engine;
use drover_control::server::{Caller, Shared, error, json, parsed};
use std::sync::Arc;

use crate::engine::LocalEngine;
use crate::protocol::Report;

/// The agents' routes, for `drover_control::server::router`'s `extra`: they report to
/// `local`, whichever engine the controller holds it in (alone, or beside another).
pub fn routes<E: Engine>(local: Arc<LocalEngine>) -> Router<Shared<E>> {
    Router::new()
        .route("/api/v1/agents/{node}/report", post(report::<E>))
        .layer(Extension(local))
}

async fn report<E: Engine>(
    State(s): State<Shared<E>>,
    Extension(engine): Extension<Arc<LocalEngine>>,
    Path(node): Path<String>,
    caller: Caller,
    body: Bytes,
) -> Result<Response, Response> {
    // A node's agent holds a token for that node alone; a refusal is audited.
    caller.require(&s, &format!("node:{node}"), Some(("report", &node)))?;
    let report: Report = parsed(&body)?;
    let (known, hold) = (report.generation, !report.urgent);
    if !engine.report(&node, report) {
        return Err(error(
            StatusCode::NOT_FOUND,
            format!("no node `{node}` in the applied clusters (yet)"),
        ));
    }
    let assignments = engine.assignments(&node, known, hold).await;
    Ok(json(StatusCode::OK, &assignments))
}
