//! The web dashboard: a page and its script and style, built into the binary (nothing
//! is fetched at run time), served at `/`; and what it reads beyond the API's other
//! routes — who the caller is (`/api/v1/whoami`, so it offers only the buttons their
//! scopes allow), the status as a live stream of Server-Sent Events (`/api/v1/stream`,
//! a new status after each reconcile pass), and what a revision changed
//! (`/api/v1/revisions/{rev}/diff`). The page signs in with a token like any client:
//! every call carries it as a bearer token, so the stream is read with `fetch`, not
//! `EventSource` (which cannot send one).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;

use super::{Answer, Caller, Shared, answer, error, json};
use crate::engine::Engine;

const INDEX: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/app.js");
const STYLE: &str = include_str!("dashboard/style.css");

/// The least time between two statuses sent on a stream: passes come in bursts.
const STREAM_GAP: Duration = Duration::from_millis(500);

/// One of the page's files, which the page may load only from here.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response();
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    response.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

pub(super) async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

pub(super) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

pub(super) async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// The caller's token name and scopes.
pub(super) async fn whoami<E: Engine>(State(s): State<Shared<E>>, caller: Caller) -> Answer {
    caller.known(&s, "whoami")?;
    let (name, scopes) = caller.identity().unwrap_or_default();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "name": name, "scopes": scopes }),
    ))
}

/// What a revision changed against its first parent.
pub(super) async fn diff<E: Engine>(
    State(s): State<Shared<E>>,
    caller: Caller,
    Path(revision): Path<String>,
) -> Answer {
    caller.require(&s, "read", None)?;
    let Some(promoter) = &s.promoter else {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "this control plane reads no Git history",
        ));
    };
    Ok(answer(promoter.diff(&revision).await))
}

/// The status now, and again after each reconcile pass (at most every
/// [`STREAM_GAP`]), as `status` events; a failed read is an `error` event.
pub(super) async fn stream<E: Engine>(
    State(s): State<Shared<E>>,
    caller: Caller,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Response> {
    caller.require(&s, "read", None)?;
    let passes = s.control.passes();
    let events = futures::stream::unfold((s, passes, true), |(s, mut passes, first)| async move {
        if !first {
            tokio::time::sleep(STREAM_GAP).await;
            // The sender lives as long as the controller: an error means it is gone.
            passes.changed().await.ok()?;
        }
        let event = match s.control.status().await {
            Ok(status) => Event::default()
                .event("status")
                .json_data(&status)
                .unwrap_or_else(|e| Event::default().event("error").data(e.to_string())),
            Err(e) => Event::default().event("error").data(format!(
                "status unavailable: {}",
                crate::one_line(&e.to_string())
            )),
        };
        Some((Ok(event), (s, passes, false)))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
