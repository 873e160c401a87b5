//! Who is calling, and whether they may: the [`Caller`] extractor finds the caller by
//! the hash of their bearer token before anything else of the request is read, and
//! [`Caller::require`] checks a scope. Every refusal of a write is audited, with who
//! (`-` when unknown), from where, what and why; every write's outcome is audited by
//! [`audited`].

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::Response;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{ServerState, error};
use crate::engine::Engine;

/// A caller: the token's name and scopes, or why it is not known.
#[derive(Debug, Clone)]
pub struct Caller {
    /// `None`: no token, or one nobody holds.
    known: Option<(String, Vec<String>)>,
    /// Why it is not known.
    why: &'static str,
    /// Address and user agent, for the audit trail.
    pub origin: String,
}

/// A caller whose scope was checked.
#[derive(Debug, Clone)]
pub struct Allowed {
    pub name: String,
    pub origin: String,
}

/// Whether `scopes` allow `wanted` (`read`, `nodes`, `admin`, or `VERB:ENV`).
pub fn allows(scopes: &[String], wanted: &str) -> bool {
    scopes.iter().any(|s| {
        s == "admin"
            || s == wanted
            // `nodes`: every node's agent (`node:NAME` is one node's).
            || (s == "nodes" && wanted.starts_with("node:"))
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
                "promote" | "rollback" | "scale" | "redeploy" | "deploy" | "node"
            ) && (env == "*"
                || (!env.is_empty()
                    && env
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')))
        }
    }
}

impl<E: Engine> FromRequestParts<Arc<ServerState<E>>> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        s: &Arc<ServerState<E>>,
    ) -> Result<Caller, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(|| "-".to_owned(), |ConnectInfo(a)| a.to_string());
        let agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        // A header is the caller's to write: one line, bounded, in the audit trail.
        let agent: String = crate::one_line(agent).chars().take(120).collect();
        let origin = format!("{peer} ({agent})");
        let given = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let Some(given) = given else {
            return Ok(Caller {
                known: None,
                why: "this call needs `Authorization: Bearer TOKEN` (the state directory's api-token, or one made with `drover token create`)",
                origin,
            });
        };
        Ok(Caller {
            known: s.lookup(given),
            why: "unknown or revoked token",
            origin,
        })
    }
}

impl<E: Engine> ServerState<E> {
    /// The token's holder and scopes. Every stored hash is compared, each in constant
    /// time; the admin token (agents' heartbeats use it) needs no store read.
    fn lookup(&self, token: &str) -> Option<(String, Vec<String>)> {
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if bool::from(hash.ct_eq(&self.admin_hash)) {
            return Some(("admin".into(), vec!["admin".into()]));
        }
        let tokens = self
            .control
            .with_store(|st| st.tokens())
            .unwrap_or_default();
        let mut found = None;
        for token in tokens {
            let stored = hex::decode(&token.hash).unwrap_or_default();
            if bool::from(stored.as_slice().ct_eq(&hash)) && found.is_none() {
                found = Some((token.name, token.scopes));
            }
        }
        found
    }

    /// Records one line of the audit trail.
    fn audit(
        &self,
        who: &str,
        origin: &str,
        action: &str,
        target: &str,
        outcome: &str,
        detail: &str,
    ) {
        let _ = self.control.with_store(|st| {
            st.audit(&drover_store::AuditEntry {
                at_ms: 0,
                who: who.to_owned(),
                origin: origin.to_owned(),
                action: action.to_owned(),
                target: target.to_owned(),
                outcome: outcome.to_owned(),
                detail: detail.to_owned(),
            })
        });
    }
}

impl Caller {
    /// The token's name and scopes, when it is known.
    pub fn identity(&self) -> Option<(String, Vec<String>)> {
        self.known.clone()
    }

    /// The caller, when they hold `scope`; otherwise the refusal (401 or 403), which
    /// is audited when `write` names the action and its target.
    #[allow(clippy::result_large_err)] // the error is the response, built once per refusal
    pub fn require<E: Engine>(
        &self,
        s: &ServerState<E>,
        scope: &str,
        write: Option<(&str, &str)>,
    ) -> Result<Allowed, Response> {
        let refuse = |who: &str, status: StatusCode, message: String| {
            if let Some((action, target)) = write {
                s.audit(who, &self.origin, action, target, "refused", &message);
            }
            error(status, message)
        };
        let Some((name, scopes)) = &self.known else {
            return Err(refuse("-", StatusCode::UNAUTHORIZED, self.why.to_owned()));
        };
        if !allows(scopes, scope) {
            return Err(refuse(
                name,
                StatusCode::FORBIDDEN,
                format!(
                    "token `{name}` lacks scope `{scope}` (it has: {})",
                    scopes.join(", ")
                ),
            ));
        }
        Ok(Allowed {
            name: name.clone(),
            origin: self.origin.clone(),
        })
    }

    /// The caller when their token is known at all (the scope depends on what the body
    /// asks); otherwise the 401, audited as a refused `action`.
    #[allow(clippy::result_large_err)]
    pub fn known<E: Engine>(&self, s: &ServerState<E>, action: &str) -> Result<(), Response> {
        match self.known {
            Some(_) => Ok(()),
            None => {
                s.audit("-", &self.origin, action, "-", "refused", self.why);
                Err(error(StatusCode::UNAUTHORIZED, self.why))
            }
        }
    }
}

/// Records a write and how it ended (from the answer's status), then answers.
pub fn audited<E: Engine>(
    s: &ServerState<E>,
    caller: &Allowed,
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
    s.audit(
        &caller.name,
        &caller.origin,
        action,
        target,
        outcome,
        detail,
    );
    response
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
