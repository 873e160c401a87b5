//! Verifying Git hosting webhooks: a push notification triggers a fetch only when its
//! signature (GitHub, Gitea) or token (GitLab) proves it comes from the host.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Which host sent a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`.
    GitHub,
    /// `X-Gitlab-Token: <the shared secret>`.
    GitLab,
    /// `X-Gitea-Signature: <hex HMAC-SHA256 of the body>`.
    Gitea,
}

/// Why a webhook was refused. The text never includes the secret or the signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// No signature or token header at all.
    #[error("no X-Hub-Signature-256, X-Gitea-Signature or X-Gitlab-Token header")]
    Unsigned,
    /// A signature or token that does not match the secret.
    #[error("the {0:?} signature does not match the configured secret")]
    BadSignature(Provider),
}

fn hmac_matches(secret: &[u8], body: &[u8], hex_signature: &str) -> bool {
    let Ok(expected) = hex::decode(hex_signature.trim()) else {
        return false;
    };
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// Checks a webhook request. `header` looks a header up by lower-case name.
pub fn verify(
    secret: &[u8],
    header: impl Fn(&str) -> Option<String>,
    body: &[u8],
) -> Result<Provider, WebhookError> {
    if let Some(signature) = header("x-gitea-signature") {
        return if hmac_matches(secret, body, &signature) {
            Ok(Provider::Gitea)
        } else {
            Err(WebhookError::BadSignature(Provider::Gitea))
        };
    }
    if let Some(signature) = header("x-hub-signature-256") {
        let valid = signature
            .strip_prefix("sha256=")
            .is_some_and(|hex| hmac_matches(secret, body, hex));
        return if valid {
            Ok(Provider::GitHub)
        } else {
            Err(WebhookError::BadSignature(Provider::GitHub))
        };
    }
    if let Some(token) = header("x-gitlab-token") {
        // Constant time: the comparison must not reveal how much of the token matched.
        let valid = token.len() == secret.len() && bool::from(token.as_bytes().ct_eq(secret));
        return if valid {
            Ok(Provider::GitLab)
        } else {
            Err(WebhookError::BadSignature(Provider::GitLab))
        };
    }
    Err(WebhookError::Unsigned)
}

/// The hex HMAC-SHA256 of `body` under `secret`, as GitHub and Gitea send it
/// (GitHub prefixes `sha256=`). For tests and for signing outgoing notifications.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn each_provider_is_accepted_only_with_the_right_secret() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let good = sign(b"s3cret", body);
        let github = format!("sha256={good}");
        assert_eq!(
            verify(
                b"s3cret",
                headers(&[("x-hub-signature-256", &github)]),
                body
            ),
            Ok(Provider::GitHub)
        );
        assert_eq!(
            verify(b"s3cret", headers(&[("x-gitea-signature", &good)]), body),
            Ok(Provider::Gitea)
        );
        assert_eq!(
            verify(b"s3cret", headers(&[("x-gitlab-token", "s3cret")]), body),
            Ok(Provider::GitLab)
        );

        let wrong = format!("sha256={}", sign(b"other", body));
        assert_eq!(
            verify(b"s3cret", headers(&[("x-hub-signature-256", &wrong)]), body),
            Err(WebhookError::BadSignature(Provider::GitHub))
        );
        assert_eq!(
            verify(b"s3cret", headers(&[("x-gitlab-token", "s3cre")]), body),
            Err(WebhookError::BadSignature(Provider::GitLab))
        );
        assert_eq!(
            verify(b"s3cret", headers(&[]), body),
            Err(WebhookError::Unsigned)
        );
    }

    #[test]
    fn a_signature_over_another_body_is_refused() {
        let signature = format!("sha256={}", sign(b"s3cret", b"original"));
        assert!(
            verify(
                b"s3cret",
                headers(&[("x-hub-signature-256", &signature)]),
                b"tampered"
            )
            .is_err()
        );
    }
}
