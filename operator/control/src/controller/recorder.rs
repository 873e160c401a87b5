//! The recorder: a transition (a release healthy, failed or rolled back, a promotion
//! moving on) recorded three ways (and counted in the metrics) with one stable reason — its event in the store, its
//! notification to the receivers, its log line. The event goes into the same write as
//! the state it records ([`Recorder::event`] inside a batch); the notification and the
//! line follow once that write has landed ([`Recorder::tell`]).

use drover_release::ReleaseResult;
use drover_store::{Database, Promotion, StoreError};

use crate::notify::Notifier;
use drover_telemetry::Metrics;

/// One transition, as all three records say it.
#[derive(Debug, Clone)]
pub struct Transition<'a> {
    pub environment: &'a str,
    /// What the event is about: the environment, `promotion/ID`.
    pub object: String,
    /// The event's stable reason (`ReleaseHealthy`, `RollingBack`, `Promotion`, …).
    pub reason: &'static str,
    /// The notification's kind (`release.succeeded`, `promotion.committed`, …).
    pub kind: String,
    pub revision: Option<&'a str>,
    pub promotion: Option<i64>,
    /// What people read.
    pub text: String,
    /// The result a release reached, for a release's transition (its metrics).
    pub result: Option<ReleaseResult>,
}

impl<'a> Transition<'a> {
    /// A release of `revision` in `env` reaching `result`.
    pub fn release(env: &'a str, result: ReleaseResult, revision: &'a str, text: &str) -> Self {
        Transition {
            environment: env,
            object: env.to_owned(),
            reason: result.event_reason(),
            kind: result.notification().to_owned(),
            revision: Some(revision),
            promotion: None,
            text: text.to_owned(),
            result: Some(result),
        }
    }

    /// A promotion in its new state.
    pub fn promotion(p: &'a Promotion) -> Self {
        let text = if p.reason.is_empty() {
            format!("promotion #{} {}→{}: {}", p.id, p.source, p.target, p.state)
        } else {
            format!(
                "promotion #{} {}→{}: {} — {}",
                p.id, p.source, p.target, p.state, p.reason
            )
        };
        Transition {
            environment: &p.target,
            object: format!("promotion/{}", p.id),
            reason: "Promotion",
            kind: format!("promotion.{}", p.state),
            revision: p.commit.as_deref(),
            promotion: Some(p.id),
            text,
            result: None,
        }
    }
}

/// Records transitions.
#[derive(Debug, Clone)]
pub struct Recorder {
    notifier: Notifier,
    metrics: Metrics,
}

impl Recorder {
    pub fn new(notifier: Notifier, metrics: Metrics) -> Recorder {
        Recorder { notifier, metrics }
    }

    /// The transition's event, written with whatever else `store`'s batch writes.
    pub fn event(&self, store: &impl Database, t: &Transition<'_>) -> Result<(), StoreError> {
        store.event(t.environment, &t.object, t.reason, &t.text)
    }

    /// Its notification, its log line and its metrics, once its event has landed.
    pub fn tell(&self, t: &Transition<'_>) {
        if let Some(result) = t.result.filter(|r| !r.is_open()) {
            self.metrics.release(t.environment, result.as_str());
            if result == ReleaseResult::RolledBack {
                self.metrics.rollback(t.environment, true);
            }
        }
        self.notifier
            .send(&t.kind, t.environment, t.revision, t.promotion, &t.text);
        tracing::info!(
            environment = t.environment,
            reason = t.reason,
            "{}: {}",
            t.environment,
            t.text
        );
    }

    /// The event, then the notification and the line.
    pub fn record(&self, store: &impl Database, t: &Transition<'_>) -> Result<(), StoreError> {
        self.event(store, t)?;
        self.tell(t);
        Ok(())
    }
}
