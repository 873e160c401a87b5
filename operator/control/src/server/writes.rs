//! The API's writes: scale, redeploy, rollback and node availability through the
//! controller; promotions and deploys through the promoter; tokens. Each checks its
//! caller first (before the body is read), then its scope, and is audited.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use drover_release::PromotionState;
use drover_validate::artifact;
use sha2::{Digest, Sha256};

use super::auth::{Caller, audited, valid_scope};
use super::{Answer, Page, Shared, answer, done, error, failed, json};
use crate::engine::Engine;
use crate::one_line;
use crate::promoter::{Asked, DeployRequest, PromotionRequest};
use crate::view::{
    AvailabilityRequest, Done, PromotionView, RollbackRequest, ScaleRequest, TokenRequest,
    TokenView,
};

/// A request body: JSON whatever its `Content-Type` says (`curl -d` sends a form
/// type), parsed by [`parsed`] once the caller is checked.
type Body = axum::body::Bytes;

/// The body, or the 400 that says what is wrong with it.
#[allow(clippy::result_large_err)] // the error is the response
pub fn parsed<T: serde::de::DeserializeOwned>(body: &Body) -> Result<T, Response> {
    Json::from_bytes(body)
        .map(|Json(request)| request)
        .map_err(|rejection| {
            error(
                StatusCode::BAD_REQUEST,
                format!("invalid request body: {}", rejection.body_text()),
            )
        })
}

pub(super) async fn scale<E: Engine>(
    State(s): State<Shared<E>>,
    Path((env, service)): Path<(String, String)>,
    caller: Caller,
    request: Body,
) -> Answer {
    let target = format!("{env}/{service}");
    let caller = caller.require(&s, &format!("scale:{env}"), Some(("scale", &target)))?;
    let request: ScaleRequest = parsed(&request)?;
    let answer = done(s.control.scale(&env, &service, request.replicas).await);
    let detail = format!("replicas {}", request.replicas);
    Ok(audited(&s, &caller, "scale", &target, &detail, answer))
}

pub(super) async fn rollback<E: Engine>(
    State(s): State<Shared<E>>,
    Path(env): Path<String>,
    caller: Caller,
    request: Body,
) -> Answer {
    let caller = caller.require(&s, &format!("rollback:{env}"), Some(("rollback", &env)))?;
    let request: RollbackRequest = parsed(&request)?;
    let detail = format!(
        "to {}",
        request
            .to
            .as_deref()
            .map_or("the last healthy release".into(), one_line)
    );
    if let Some(why) = request.to.as_deref().and_then(revision_problem) {
        let refused = error(StatusCode::BAD_REQUEST, why);
        return Ok(audited(&s, &caller, "rollback", &env, &detail, refused));
    }
    let answer = done(s.control.rollback(&env, request.to.as_deref()).await);
    Ok(audited(&s, &caller, "rollback", &env, &detail, answer))
}

/// Why `revision` cannot name a commit, if it cannot: a commit id, a branch or tag
/// name, or an expression such as `main~2`, and nothing that could forge a line.
fn revision_problem(revision: &str) -> Option<String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._/-~^@{}".contains(c);
    (revision.is_empty() || revision.len() > 200 || !revision.chars().all(allowed)).then(|| {
        "`to` names a revision: a commit id, a branch or tag, or `main~2`; 1 to 200 of letters, digits and `._/-~^@{}`".to_owned()
    })
}

pub(super) async fn redeploy<E: Engine>(
    State(s): State<Shared<E>>,
    Path((env, service)): Path<(String, String)>,
    caller: Caller,
) -> Answer {
    let target = format!("{env}/{service}");
    let scope = format!("redeploy:{env}");
    let caller = caller.require(&s, &scope, Some(("redeploy", &target)))?;
    let answer = done(s.control.redeploy(&env, &service).await);
    Ok(audited(&s, &caller, "redeploy", &target, "", answer))
}

pub(super) async fn availability<E: Engine>(
    State(s): State<Shared<E>>,
    Path(node): Path<String>,
    caller: Caller,
    request: Body,
) -> Answer {
    let caller = caller.require(&s, "nodes", Some(("node-availability", &node)))?;
    let request: AvailabilityRequest = parsed(&request)?;
    let answer = done(
        s.control
            .set_availability(&node, request.availability.as_deref())
            .await,
    );
    let detail = request
        .availability
        .unwrap_or_else(|| "override cleared".into());
    Ok(audited(
        &s,
        &caller,
        "node-availability",
        &node,
        &detail,
        answer,
    ))
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

fn no_promoter() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "this control plane does not write to Git",
    )
}

pub(super) async fn promote<E: Engine>(
    State(s): State<Shared<E>>,
    caller: Caller,
    headers: HeaderMap,
    request: Body,
) -> Answer {
    // The scope names the target, which the body gives: an unknown caller is refused
    // before the body is read.
    caller.known(&s, "promote")?;
    let request: PromotionRequest = parsed(&request)?;
    let target = format!("{}→{}", request.from, request.to);
    let scope = format!("promote:{}", request.to);
    let caller = caller.require(&s, &scope, Some(("promote", &target)))?;
    let Some(promoter) = &s.promoter else {
        return Ok(no_promoter());
    };
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut detail = String::new();
    let mut polled = false;
    let answer = match promoter.promote(request, key, &caller.name).await {
        Ok((promotion, asked)) => {
            polled = asked == Asked::StillGated;
            detail = format!("promotion #{}: {}", promotion.id, promotion.state);
            let status = match promotion.state {
                PromotionState::Gated => StatusCode::CONFLICT,
                PromotionState::Failed => StatusCode::UNPROCESSABLE_ENTITY,
                _ if asked == Asked::New => StatusCode::CREATED,
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
    if polled {
        // Recorded when it was first gated: a poll through the soak adds no row.
        return Ok(answer);
    }
    Ok(audited(&s, &caller, "promote", &target, &detail, answer))
}

pub(super) async fn promotion<E: Engine>(
    State(s): State<Shared<E>>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Answer {
    caller.require(&s, "read", None)?;
    Ok(match s.control.with_store(|st| st.promotion(id)) {
        Ok(Some(p)) => json(StatusCode::OK, &promotion_view(p)),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no promotion #{id}")),
        Err(e) => failed(e),
    })
}

pub(super) async fn promotions<E: Engine>(
    State(s): State<Shared<E>>,
    caller: Caller,
    Query(page): Query<Page>,
) -> Answer {
    caller.require(&s, "read", None)?;
    let limit = page.limit.unwrap_or(50);
    let list = s.control.with_store(|st| st.promotions(limit));
    Ok(answer(list.map(|l| {
        l.into_iter().map(promotion_view).collect::<Vec<_>>()
    })))
}

pub(super) async fn deploy<E: Engine>(
    State(s): State<Shared<E>>,
    Path(env): Path<String>,
    caller: Caller,
    headers: HeaderMap,
    request: Body,
) -> Answer {
    let caller = caller.require(&s, &format!("deploy:{env}"), Some(("deploy", &env)))?;
    let request: DeployRequest = parsed(&request)?;
    let Some(promoter) = &s.promoter else {
        return Ok(no_promoter());
    };
    let detail: Vec<String> = request
        .versions
        .iter()
        .map(|(k, v)| format!("{k}={}", one_line(v)))
        .chain(
            request
                .images
                .iter()
                .map(|(k, v)| format!("{k} image {}", one_line(v))),
        )
        .collect();
    // The rules `drover validate` applies to what is committed, applied to the request.
    let problems: Vec<String> = request
        .versions
        .iter()
        .filter_map(|(k, v)| {
            artifact::version_problem(v).map(|why| format!("{}: {why}", one_line(k)))
        })
        .chain(request.images.iter().filter_map(|(k, v)| {
            artifact::image_problem(v).map(|why| format!("{}: {why}", one_line(k)))
        }))
        .collect();
    if !problems.is_empty() {
        let refused = error(StatusCode::BAD_REQUEST, problems.join("; "));
        return Ok(audited(
            &s,
            &caller,
            "deploy",
            &env,
            &detail.join(", "),
            refused,
        ));
    }
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let answer = match promoter
        .deploy(env.clone(), request, caller.name.clone(), key)
        .await
    {
        Ok(deployed) => json(StatusCode::OK, &deployed),
        Err(e) => failed(e),
    };
    Ok(audited(
        &s,
        &caller,
        "deploy",
        &env,
        &detail.join(", "),
        answer,
    ))
}

pub(super) async fn tokens<E: Engine>(State(s): State<Shared<E>>, caller: Caller) -> Answer {
    caller.require(&s, "admin", None)?;
    let list = s.control.with_store(|st| st.tokens());
    Ok(answer(list.map(|l| {
        l.into_iter()
            .map(|t| TokenView {
                name: t.name,
                scopes: t.scopes,
                created_ms: t.created_ms,
                token: None,
            })
            .collect::<Vec<_>>()
    })))
}

/// Why a new token cannot be made as asked, if it cannot.
fn token_refusal(request: &TokenRequest) -> Option<String> {
    let name_ok = !request.name.is_empty()
        && request
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !name_ok || request.name == "admin" {
        return Some(
            "a token's name is letters, digits, `-`, `_` and `.` (and not `admin`)".into(),
        );
    }
    if let Some(bad) = request.scopes.iter().find(|sc| !valid_scope(sc)) {
        return Some(format!(
            "unknown scope `{bad}`: use read, nodes, admin, or promote|rollback|scale|redeploy|deploy:ENV (ENV may be *)"
        ));
    }
    request
        .scopes
        .is_empty()
        .then(|| "give the token at least one scope".into())
}

pub(super) async fn create_token<E: Engine>(
    State(s): State<Shared<E>>,
    caller: Caller,
    request: Body,
) -> Answer {
    caller.known(&s, "token-create")?;
    let request: TokenRequest = parsed(&request)?;
    let caller = caller.require(&s, "admin", Some(("token-create", &request.name)))?;
    let detail = request.scopes.join(", ");
    let answer = (|| {
        if let Some(why) = token_refusal(&request) {
            return error(StatusCode::UNPROCESSABLE_ENTITY, why);
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
        let Ok(secret) = crate::random_hex(24) else {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "no randomness available");
        };
        let token = format!("drv_{secret}");
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
    Ok(audited(
        &s,
        &caller,
        "token-create",
        &request.name,
        &detail,
        answer,
    ))
}

pub(super) async fn revoke_token<E: Engine>(
    State(s): State<Shared<E>>,
    Path(name): Path<String>,
    caller: Caller,
) -> Answer {
    let caller = caller.require(&s, "admin", Some(("token-revoke", &name)))?;
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
    Ok(audited(&s, &caller, "token-revoke", &name, "", answer))
}
