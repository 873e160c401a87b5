//! The control plane's HTTP API on 127.0.0.1. Every call but `/healthz` needs
//! `Authorization: Bearer TOKEN`: the state directory's token (every scope; agents use
//! it), or a named token made with `drover token create` whose scopes allow the call
//! (`read`, `promote:ENV`, `rollback:ENV`, `scale:ENV`, `redeploy:ENV`, `deploy:ENV`,
//! `nodes`, `admin`; `ENV` may be `*`). Only SHA-256 hashes of tokens are kept, and
//! they are compared in constant time. Every write is recorded in the audit trail:
//! who, what, when, from where, and how it ended.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Router};
use drover_release::PromotionState;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::control::{ControlError, ControlPlane};
use crate::promoter::{DeployRequest, Promoter, PromotionRequest};
use crate::protocol::Report;
use crate::view::{
    AvailabilityRequest, Done, PromotionView, ReleaseView, RollbackRequest, ScaleRequest,
    TokenRequest, TokenView,
};

/// What the API serves from.
#[derive(Debug)]
pub struct ServerState {
    pub control: Arc<ControlPlane>,
    /// SHA-256 of the state directory's token.
    pub admin_hash: [u8; 32],
    /// Writes promotions and deploys to Git (absent: those calls answer 503).
    pub promoter: Option<Arc<Promoter>>,
}

impl ServerState {
    pub fn new(
        control: Arc<ControlPlane>,
        admin_token: &str,
        promoter: Option<Arc<Promoter>>,
    ) -> ServerState {
        ServerState {
            control,
            admin_hash: Sha256::digest(admin_token.as_bytes()).into(),
            promoter,
        }
    }
}

type Shared = Arc<ServerState>;

/// The control plane's routes (merge with `drover_api::router` for webhooks). Serve
/// them with `into_make_service_with_connect_info::<SocketAddr>()`: the audit trail
/// records callers' addresses.
pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/environments", get(environments))
        .route("/api/v1/services", get(services))
        .route("/api/v1/instances", get(instances))
        .route("/api/v1/nodes", get(nodes))
        .route("/api/v1/events", get(events))
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/environments/{env}/history", get(history))
        .route("/api/v1/environments/{env}/rollback", post(rollback))
        .route("/api/v1/environments/{env}/deploy", post(deploy))
        .route("/api/v1/promotions", get(promotions).post(promote))
        .route("/api/v1/promotions/{id}", get(promotion))
        .route("/api/v1/tokens", get(tokens).post(create_token))
        .route("/api/v1/tokens/{name}", delete(revoke_token))
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
        ControlError::Conflict(_) | ControlError::Gate(_) => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e.to_string())
}

/// Who is calling: a token's name and scopes.
#[derive(Debug, Clone)]
struct Caller {
    name: String,
    /// Address and user agent, for the audit trail.
    origin: String,
}

/// Whether `scopes` allow `wanted` (`read`, `nodes`, `admin`, or `VERB:ENV`).
pub fn allows(scopes: &[String], wanted: &str) -> bool {
    scopes.iter().any(|s| {
        s == "admin"
            || s == wanted
            || wanted
                .split_once(':')
                .is_some_and(|(verb, _)| s.strip_suffix(":*") == Some(verb))
    })
}

/// A scope as `drover token create --scope` accepts it.
pub fn valid_scope(scope: &str) -> bool {
    match scope.split_once(':') {
        None => matches!(scope, "read" | "nodes" | "admin"),
        Some((verb, env)) => {
            matches!(
                verb,
                "promote" | "rollback" | "scale" | "redeploy" | "deploy"
            ) && (env == "*"
                || (!env.is_empty()
                    && env
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')))
        }
    }
}

fn origin(peer: Option<SocketAddr>, headers: &HeaderMap) -> String {
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let peer = peer.map_or_else(|| "-".to_owned(), |p| p.to_string());
    format!("{peer} ({agent})")
}

/// Finds the caller by the hash of their bearer token (each stored hash is compared in
/// constant time, and all of them are compared), then checks `scope`. A refusal is
/// audited when it is a write.
#[allow(clippy::result_large_err)] // the error is the response, built once per refused call
fn authorize(
    s: &ServerState,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    scope: &str,
    write: Option<(&str, &str)>,
) -> Result<Caller, Response> {
    let origin = origin(peer, headers);
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let refuse = |who: &str, status: StatusCode, message: String| {
        if let Some((action, target)) = write {
            let _ = s.control.with_store(|st| {
                st.audit(&drover_store::AuditEntry {
                    at_ms: 0,
                    who: who.to_owned(),
                    origin: origin.clone(),
                    action: action.to_owned(),
                    target: target.to_owned(),
                    outcome: "refused".into(),
                    detail: message.clone(),
                })
            });
        }
        error(status, message)
    };
    let Some(given) = given else {
        return Err(refuse(
            "-",
            StatusCode::UNAUTHORIZED,
            "this call needs `Authorization: Bearer TOKEN` (the state directory's api-token, or one made with `drover token create`)".into(),
        ));
    };
    let hash: [u8; 32] = Sha256::digest(given.as_bytes()).into();
    let mut found: Option<(String, Vec<String>)> = None;
    if bool::from(hash.ct_eq(&s.admin_hash)) {
        found = Some(("admin".into(), vec!["admin".into()]));
    } else {
        // Not the admin token (agents' heartbeats use it: no store read for them).
        let tokens = s.control.with_store(|st| st.tokens()).unwrap_or_default();
        for token in tokens {
            let stored = hex::decode(&token.hash).unwrap_or_default();
            if bool::from(stored.as_slice().ct_eq(&hash)) && found.is_none() {
                found = Some((token.name, token.scopes));
            }
        }
    }
    let Some((name, scopes)) = found else {
        return Err(refuse(
            "-",
            StatusCode::UNAUTHORIZED,
            "unknown or revoked token".into(),
        ));
    };
    if !allows(&scopes, scope) {
        return Err(refuse(
            &name,
            StatusCode::FORBIDDEN,
            format!(
                "token `{name}` lacks scope `{scope}` (it has: {})",
                scopes.join(", ")
            ),
        ));
    }
    Ok(Caller { name, origin })
}

/// Records a write and how it ended (from the answer's status), then answers.
fn audited(
    s: &ServerState,
    caller: &Caller,
    action: &str,
    target: &str,
    detail: &str,
    response: Response,
) -> Response {
    let outcome = match response.status() {
        c if c.is_success() => "ok",
        StatusCode::FORBIDDEN => "refused",
        StatusCode::CONFLICT | StatusCode::UNPROCESSABLE_ENTITY | StatusCode::NOT_FOUND => {
            "rejected"
        }
        _ => "error",
    };
    let _ = s.control.with_store(|st| {
        st.audit(&drover_store::AuditEntry {
            at_ms: 0,
            who: caller.name.clone(),
            origin: caller.origin.clone(),
            action: action.to_owned(),
            target: target.to_owned(),
            outcome: outcome.to_owned(),
            detail: detail.to_owned(),
        })
    });
    response
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

type Peer = Option<Extension<ConnectInfo<SocketAddr>>>;

fn peer(p: Peer) -> Option<SocketAddr> {
    p.map(|Extension(ConnectInfo(a))| a)
}

/// The caller of a write, or the refusal returned from the handler.
macro_rules! caller {
    ($s:expr, $headers:expr, $peer:expr, $scope:expr, $action:expr, $target:expr) => {
        match authorize(
            &$s,
            &$headers,
            peer($peer),
            $scope,
            Some(($action, $target)),
        ) {
            Ok(c) => c,
            Err(r) => return r,
        }
    };
}

/// The request body, or the 400 returned from the handler.
macro_rules! parse {
    ($bytes:expr) => {
        match body(&$bytes) {
            Ok(r) => r,
            Err(r) => return r,
        }
    };
}

/// Checks the `read` scope for a read.
macro_rules! read {
    ($s:expr, $headers:expr, $peer:expr) => {
        if let Err(r) = authorize(&$s, &$headers, peer($peer), "read", None) {
            return r;
        }
    };
}

async fn status(State(s): State<Shared>, p: Peer, h: HeaderMap) -> Response {
    read!(s, h, p);
    match s.control.status() {
        Ok(v) => json(StatusCode::OK, &v),
        Err(e) => failed(e),
    }
}

async fn environments(State(s): State<Shared>, p: Peer, h: HeaderMap) -> Response {
    read!(s, h, p);
    match s.control.status() {
        Ok(v) => json(StatusCode::OK, &v.environments),
        Err(e) => failed(e),
    }
}

async fn services(State(s): State<Shared>, p: Peer, h: HeaderMap) -> Response {
    read!(s, h, p);
    match s.control.status() {
        Ok(v) => json(StatusCode::OK, &v.services),
        Err(e) => failed(e),
    }
}

async fn instances(State(s): State<Shared>, p: Peer, h: HeaderMap) -> Response {
    read!(s, h, p);
    match s.control.status() {
        Ok(v) => json(StatusCode::OK, &v.instances),
        Err(e) => failed(e),
    }
}

async fn nodes(State(s): State<Shared>, p: Peer, h: HeaderMap) -> Response {
    read!(s, h, p);
    match s.control.status() {
        Ok(v) => json(StatusCode::OK, &v.nodes),
        Err(e) => failed(e),
    }
}

fn limit(query: Option<&str>, default: usize) -> usize {
    query
        .unwrap_or_default()
        .split('&')
        .find_map(|p| p.strip_prefix("limit="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

#[derive(Serialize)]
struct EventView {
    at_ms: i64,
    environment: String,
    object: String,
    reason: String,
    message: String,
}

async fn events(
    State(s): State<Shared>,
    p: Peer,
    h: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    read!(s, h, p);
    match s.control.events(limit(query.as_deref(), 100)) {
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

async fn audit(
    State(s): State<Shared>,
    p: Peer,
    h: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    read!(s, h, p);
    match s
        .control
        .with_store(|st| st.audit_trail(limit(query.as_deref(), 100)))
    {
        Ok(entries) => json(StatusCode::OK, &entries),
        Err(e) => failed(e),
    }
}

async fn history(
    State(s): State<Shared>,
    p: Peer,
    h: HeaderMap,
    Path(env): Path<String>,
) -> Response {
    read!(s, h, p);
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
    p: Peer,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    if let Err(r) = authorize(&s, &headers, peer(p), "nodes", None) {
        return r;
    }
    let report: Report = parse!(bytes);
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
    p: Peer,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let target = format!("{env}/{service}");
    let caller = caller!(s, headers, p, &format!("scale:{env}"), "scale", &target);
    let request: ScaleRequest = parse!(bytes);
    let answer = done(s.control.scale(&env, &service, request.replicas));
    let detail = format!("replicas {}", request.replicas);
    audited(&s, &caller, "scale", &target, &detail, answer)
}

async fn rollback(
    State(s): State<Shared>,
    Path(env): Path<String>,
    p: Peer,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let caller = caller!(s, headers, p, &format!("rollback:{env}"), "rollback", &env);
    let request: RollbackRequest = parse!(bytes);
    let answer = done(s.control.rollback(&env, request.to.as_deref()));
    let detail = format!(
        "to {}",
        request.to.as_deref().unwrap_or("the last healthy release")
    );
    audited(&s, &caller, "rollback", &env, &detail, answer)
}

async fn redeploy(
    State(s): State<Shared>,
    Path((env, service)): Path<(String, String)>,
    p: Peer,
    headers: HeaderMap,
) -> Response {
    let target = format!("{env}/{service}");
    let caller = caller!(
        s,
        headers,
        p,
        &format!("redeploy:{env}"),
        "redeploy",
        &target
    );
    let answer = done(s.control.redeploy(&env, &service));
    audited(&s, &caller, "redeploy", &target, "", answer)
}

async fn availability(
    State(s): State<Shared>,
    Path(node): Path<String>,
    p: Peer,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let caller = caller!(s, headers, p, "nodes", "node-availability", &node);
    let request: AvailabilityRequest = parse!(bytes);
    let answer = done(
        s.control
            .set_availability(&node, request.availability.as_deref()),
    );
    let detail = request
        .availability
        .unwrap_or_else(|| "override cleared".into());
    audited(&s, &caller, "node-availability", &node, &detail, answer)
}

fn promotion_view(p: drover_store::Promotion) -> PromotionView {
    PromotionView {
        id: p.id,
        from: p.source,
        to: p.target,
        services: p.services,
        state: p.state,
        reason: p.reason,
        source_revision: p.source_revision,
        changes: serde_json::from_str(&p.changes).unwrap_or_default(),
        commit: p.commit,
        branch: p.branch,
        preview: p.preview,
        requested_by: p.requested_by,
        created_ms: p.created_ms,
        updated_ms: p.updated_ms,
    }
}

async fn promote(State(s): State<Shared>, p: Peer, headers: HeaderMap, bytes: Bytes) -> Response {
    let request: PromotionRequest = parse!(bytes);
    let target = format!("{}→{}", request.from, request.to);
    let caller = caller!(
        s,
        headers,
        p,
        &format!("promote:{}", request.to),
        "promote",
        &target
    );
    let Some(promoter) = &s.promoter else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "this control plane does not write to Git",
        );
    };
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut detail = String::new();
    let answer = match promoter.promote(request, key, &caller.name).await {
        Ok((promotion, created)) => {
            detail = format!("promotion #{}: {}", promotion.id, promotion.state);
            let status = match promotion.state {
                PromotionState::Gated => StatusCode::CONFLICT,
                PromotionState::Failed => StatusCode::UNPROCESSABLE_ENTITY,
                _ if created => StatusCode::CREATED,
                _ => StatusCode::OK,
            };
            let mut view =
                serde_json::to_value(promotion_view(promotion)).expect("views serialize");
            if !status.is_success() {
                view["error"] = view["reason"].clone();
            }
            json(status, &view)
        }
        Err(e) => failed(e),
    };
    audited(&s, &caller, "promote", &target, &detail, answer)
}

async fn promotion(
    State(s): State<Shared>,
    p: Peer,
    h: HeaderMap,
    Path(id): Path<i64>,
) -> Response {
    read!(s, h, p);
    match s.control.with_store(|st| st.promotion(id)) {
        Ok(Some(p)) => json(StatusCode::OK, &promotion_view(p)),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no promotion #{id}")),
        Err(e) => failed(e),
    }
}

async fn promotions(
    State(s): State<Shared>,
    p: Peer,
    h: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    read!(s, h, p);
    match s
        .control
        .with_store(|st| st.promotions(limit(query.as_deref(), 50)))
    {
        Ok(list) => json(
            StatusCode::OK,
            &list.into_iter().map(promotion_view).collect::<Vec<_>>(),
        ),
        Err(e) => failed(e),
    }
}

async fn deploy(
    State(s): State<Shared>,
    Path(env): Path<String>,
    p: Peer,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let caller = caller!(s, headers, p, &format!("deploy:{env}"), "deploy", &env);
    let request: DeployRequest = parse!(bytes);
    let Some(promoter) = &s.promoter else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "this control plane does not write to Git",
        );
    };
    let detail: Vec<String> = request
        .versions
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .chain(request.images.iter().map(|(k, v)| format!("{k} image {v}")))
        .collect();
    let answer = match promoter
        .deploy(env.clone(), request, caller.name.clone())
        .await
    {
        Ok(deployed) => json(StatusCode::OK, &deployed),
        Err(e) => failed(e),
    };
    audited(&s, &caller, "deploy", &env, &detail.join(", "), answer)
}

async fn tokens(State(s): State<Shared>, p: Peer, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&s, &headers, peer(p), "admin", None) {
        return r;
    }
    match s.control.with_store(|st| st.tokens()) {
        Ok(list) => json(
            StatusCode::OK,
            &list
                .into_iter()
                .map(|t| TokenView {
                    name: t.name,
                    scopes: t.scopes,
                    created_ms: t.created_ms,
                    token: None,
                })
                .collect::<Vec<_>>(),
        ),
        Err(e) => failed(e),
    }
}

async fn create_token(
    State(s): State<Shared>,
    p: Peer,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let request: TokenRequest = parse!(bytes);
    let caller = caller!(s, headers, p, "admin", "token-create", &request.name);
    let detail = request.scopes.join(", ");
    let answer = (|| {
        let name_ok = !request.name.is_empty()
            && request
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !name_ok || request.name == "admin" {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "a token's name is letters, digits, `-`, `_` and `.` (and not `admin`)",
            );
        }
        if let Some(bad) = request.scopes.iter().find(|sc| !valid_scope(sc)) {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "unknown scope `{bad}`: use read, nodes, admin, or promote|rollback|scale|redeploy|deploy:ENV (ENV may be *)"
                ),
            );
        }
        if request.scopes.is_empty() {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "give the token at least one scope",
            );
        }
        match s.control.with_store(|st| st.has_token(&request.name)) {
            Ok(true) => {
                return error(
                    StatusCode::CONFLICT,
                    format!("a token named `{}` exists; revoke it first", request.name),
                );
            }
            Ok(false) => {}
            Err(e) => return failed(e),
        }
        let mut bytes = [0u8; 24];
        if std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
            .is_err()
        {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "no randomness available");
        }
        let token = format!("drv_{}", hex::encode(bytes));
        let record = drover_store::TokenRecord {
            name: request.name.clone(),
            hash: hex::encode(Sha256::digest(token.as_bytes())),
            scopes: request.scopes.clone(),
            created_ms: 0,
        };
        match s.control.with_store(|st| st.add_token(&record)) {
            Ok(()) => json(
                StatusCode::CREATED,
                &TokenView {
                    name: record.name,
                    scopes: record.scopes,
                    created_ms: 0,
                    token: Some(token),
                },
            ),
            Err(e) => failed(e),
        }
    })();
    audited(&s, &caller, "token-create", &request.name, &detail, answer)
}

async fn revoke_token(
    State(s): State<Shared>,
    Path(name): Path<String>,
    p: Peer,
    headers: HeaderMap,
) -> Response {
    let caller = caller!(s, headers, p, "admin", "token-revoke", &name);
    let answer = match s.control.with_store(|st| st.remove_token(&name)) {
        Ok(true) => json(
            StatusCode::OK,
            &Done {
                message: format!("token `{name}` revoked"),
            },
        ),
        Ok(false) => error(StatusCode::NOT_FOUND, format!("no token `{name}`")),
        Err(e) => failed(e),
    };
    audited(&s, &caller, "token-revoke", &name, "", answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_allow_their_verb_on_their_environment_or_all() {
        let scopes = vec![
            "read".to_owned(),
            "promote:production".to_owned(),
            "rollback:*".to_owned(),
        ];
        assert!(allows(&scopes, "promote:production"));
        assert!(!allows(&scopes, "promote:staging"));
        assert!(allows(&scopes, "rollback:staging"));
        assert!(!allows(&scopes, "scale:staging"));
        assert!(allows(&["admin".to_owned()], "nodes"));
        assert!(valid_scope("deploy:staging") && valid_scope("read") && !valid_scope("delete:x"));
    }
}
