//! Outgoing notifications: release and promotion events posted to webhooks (a generic
//! JSON body or a Slack-compatible one), signed with HMAC-SHA256, delivered in order
//! per receiver and retried with back-off. Sending never waits: the reconcile loop
//! hands an event to a queue and goes on.

use std::time::Duration;

use hmac::{KeyInit, Mac};
use http_body_util::Full;
use hyper::Request;
use hyper::body::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// The header carrying `sha256=HEX`, the HMAC-SHA256 of the body under the shared secret.
pub const SIGNATURE_HEADER: &str = "x-drover-signature-256";
/// Attempts per event and receiver before it is given up (and said so).
const ATTEMPTS: u32 = 8;

/// The body format a receiver wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The [`Notification`] as JSON.
    Generic,
    /// `{"text": …}`, what Slack's (and Mattermost's, Rocket.Chat's) incoming webhooks read.
    Slack,
}

/// Where notifications go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receiver {
    pub url: String,
    pub format: Format,
}

impl std::str::FromStr for Receiver {
    type Err = String;

    /// `URL`, `generic=URL` or `slack=URL`.
    fn from_str(text: &str) -> Result<Receiver, String> {
        let (format, url) = match text.split_once('=') {
            Some(("slack", url)) => (Format::Slack, url),
            Some(("generic", url)) => (Format::Generic, url),
            _ => (Format::Generic, text),
        };
        if !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(format!(
                "`{url}`: a receiver is `https://HOST[:PORT]/PATH` or `http://…`, optionally after `slack=` or `generic=`"
            ));
        }
        Ok(Receiver {
            url: url.to_owned(),
            format,
        })
    }
}

/// One event, as receivers get it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// Counts up from 1 per control plane run: receivers can order and de-duplicate.
    pub sequence: u64,
    /// `release.started`, `release.succeeded`, `release.failed`, `release.rolled-back`,
    /// `promotion.gated`, `promotion.committed`, `promotion.deploying`,
    /// `promotion.succeeded`, `promotion.failed`, `promotion.rolled-back`.
    pub event: String,
    pub at_ms: i64,
    pub environment: String,
    pub revision: Option<String>,
    pub promotion: Option<i64>,
    /// One line for people.
    pub message: String,
}

/// The sending side: cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub struct Notifier {
    queues: Vec<mpsc::UnboundedSender<Notification>>,
    sequence: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Notifier {
    /// Starts one delivery task per receiver (on the current tokio runtime; none, and
    /// no runtime needed, without receivers).
    pub fn start(receivers: Vec<Receiver>, secret: Option<String>) -> Notifier {
        let mut queues = Vec::new();
        for receiver in receivers {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(deliver(receiver, secret.clone(), rx));
            queues.push(tx);
        }
        Notifier {
            queues,
            sequence: Default::default(),
        }
    }

    /// A notifier that sends nowhere.
    pub fn none() -> Notifier {
        Notifier::start(Vec::new(), None)
    }

    /// Queues an event for every receiver.
    pub fn send(
        &self,
        event: &str,
        environment: &str,
        revision: Option<&str>,
        promotion: Option<i64>,
        message: &str,
    ) {
        if self.queues.is_empty() {
            return;
        }
        let sequence = self
            .sequence
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let notification = Notification {
            sequence,
            event: event.to_owned(),
            at_ms: drover_store::now_ms(),
            environment: environment.to_owned(),
            revision: revision.map(str::to_owned),
            promotion,
            message: message.to_owned(),
        };
        for queue in &self.queues {
            let _ = queue.send(notification.clone());
        }
    }
}

/// `sha256=HEX` of `body` under `secret`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn body(format: Format, n: &Notification) -> Vec<u8> {
    match format {
        Format::Generic => serde_json::to_vec(n).expect("notifications serialize"),
        Format::Slack => {
            let icon = match n.event.rsplit('.').next().unwrap_or_default() {
                "succeeded" => ":white_check_mark:",
                "failed" | "rolled-back" => ":x:",
                "gated" => ":no_entry:",
                _ => ":arrow_forward:",
            };
            serde_json::to_vec(&serde_json::json!({
                "text": format!("{icon} *{}* {}: {}", n.environment, n.event, n.message),
            }))
            .expect("notifications serialize")
        }
    }
}

/// Delivers one receiver's events in order; an event is retried (100 ms, doubling up
/// to 10 s) before the next is sent, and given up after [`ATTEMPTS`].
async fn deliver(
    receiver: Receiver,
    secret: Option<String>,
    mut queue: mpsc::UnboundedReceiver<Notification>,
) {
    let client = crate::http::client(Duration::from_secs(2));
    while let Some(n) = queue.recv().await {
        let payload = body(receiver.format, &n);
        let mut wait = Duration::from_millis(100);
        for attempt in 1..=ATTEMPTS {
            let mut request = Request::post(&receiver.url)
                .header("content-type", "application/json")
                .header("user-agent", "drover")
                .header("x-drover-event", &n.event)
                .header("x-drover-delivery", n.sequence.to_string());
            if let Some(secret) = &secret {
                request = request.header(SIGNATURE_HEADER, sign(secret, &payload));
            }
            let request = request
                .body(Full::new(Bytes::from(payload.clone())))
                .expect("a valid request");
            let sent = tokio::time::timeout(Duration::from_secs(5), client.request(request)).await;
            match sent {
                Ok(Ok(response)) if response.status().is_success() => break,
                _ if attempt == ATTEMPTS => {
                    tracing::warn!(
                        "notification {} ({}) to {} given up after {ATTEMPTS} attempts",
                        n.sequence,
                        n.event,
                        receiver.url
                    );
                }
                _ => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receivers_name_their_format_before_the_url() {
        let slack: Receiver = "slack=http://127.0.0.1:9/hook".parse().unwrap();
        assert_eq!(slack.format, Format::Slack);
        let plain: Receiver = "http://127.0.0.1:9/hook".parse().unwrap();
        assert_eq!(
            (plain.format, plain.url.as_str()),
            (Format::Generic, "http://127.0.0.1:9/hook")
        );
        assert!("ftp://x".parse::<Receiver>().is_err());
    }

    #[test]
    fn slack_receivers_get_one_line_of_text() {
        let n = Notification {
            sequence: 3,
            event: "release.rolled-back".into(),
            at_ms: 0,
            environment: "production".into(),
            revision: Some("9bd41e2".into()),
            promotion: None,
            message: "release 9bd41e2 failed — web: update stopped; rolling back".into(),
        };
        let slack: serde_json::Value = serde_json::from_slice(&body(Format::Slack, &n)).unwrap();
        assert_eq!(
            slack,
            serde_json::json!({"text": ":x: *production* release.rolled-back: release 9bd41e2 failed — web: update stopped; rolling back"})
        );
        let generic: Notification = serde_json::from_slice(&body(Format::Generic, &n)).unwrap();
        assert_eq!(generic, n);
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
