//! The counters and histograms of things that happen (a reconcile pass, a release
//! ending, a webhook, a Git fetch, an API request), kept for the life of the process.
//! What *is* (sync status, instances, promotions, the proxies' counts) is read fresh at
//! each scrape instead: see [`crate::snapshot`].
//!
//! Names follow Prometheus' conventions: the `drover_` prefix, `_total` on counters,
//! base units (`_seconds`). Labels are bounded by the config repo (environments,
//! services, routes as written in the router, outcomes as enums): never a revision, an
//! instance id or a raw URL.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// A label set: names and values.
type Labels<const N: usize> = [(&'static str, String); N];

/// Latency buckets (seconds) of the control plane's own work and API.
const SECONDS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Clone, Copy)]
struct Buckets;

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(SECONDS)
    }
}

/// How a Git push webhook delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// Signed: a check of the tracked reference follows.
    Accepted,
    /// No signature header.
    Unsigned,
    /// A signature that does not match the body and the secret.
    BadSignature,
    /// Refused: no webhook secret is configured.
    Unconfigured,
}

impl WebhookOutcome {
    fn label(self) -> &'static str {
        match self {
            WebhookOutcome::Accepted => "accepted",
            WebhookOutcome::Unsigned => "unsigned",
            WebhookOutcome::BadSignature => "bad_signature",
            WebhookOutcome::Unconfigured => "unconfigured",
        }
    }
}

/// How a followed revision ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevisionOutcome {
    Accepted,
    /// Invalid: diagnostics with errors.
    Rejected,
    /// Valid, but the environment's change rules do not allow a commit in it.
    Refused,
}

/// The control plane's event metrics. Cheap to clone: every part is shared.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    passes: Family<Labels<1>, Counter>,
    pass_seconds: Histogram,
    releases: Family<Labels<2>, Counter>,
    rollbacks: Family<Labels<2>, Counter>,
    revisions: Family<Labels<1>, Counter>,
    webhooks: Family<Labels<1>, Counter>,
    fetch_seconds: Histogram,
    fetch_errors: Counter,
    requests: Family<Labels<3>, Counter>,
    request_seconds: Family<Labels<2>, Histogram, Buckets>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("drover");
        let passes = Family::default();
        registry.register(
            "reconcile_passes",
            "Reconcile passes, by result (ok, error)",
            passes.clone(),
        );
        let pass_seconds = Histogram::new(SECONDS);
        registry.register_with_unit(
            "reconcile_duration",
            "How long a reconcile pass took",
            Unit::Seconds,
            pass_seconds.clone(),
        );
        let releases = Family::default();
        registry.register(
            "releases",
            "Releases that ended, by environment and result (healthy, failed, rolled-back, superseded)",
            releases.clone(),
        );
        let rollbacks = Family::default();
        registry.register(
            "rollbacks",
            "Rollbacks, by environment and kind (automatic: a failed release; manual: drover rollback)",
            rollbacks.clone(),
        );
        let revisions = Family::default();
        registry.register(
            "revisions",
            "Revisions followed, by outcome (accepted, rejected, refused)",
            revisions.clone(),
        );
        let webhooks = Family::default();
        registry.register(
            "webhook_deliveries",
            "Git push webhook deliveries, by outcome (accepted, unsigned, bad_signature, unconfigured)",
            webhooks.clone(),
        );
        let fetch_seconds = Histogram::new(SECONDS);
        registry.register_with_unit(
            "git_fetch_duration",
            "How long reading the tracked reference took (fetching it, for a remote)",
            Unit::Seconds,
            fetch_seconds.clone(),
        );
        let fetch_errors = Counter::default();
        registry.register(
            "git_fetch_errors",
            "Failed reads or fetches of the tracked reference",
            fetch_errors.clone(),
        );
        let requests = Family::default();
        registry.register(
            "http_requests",
            "API requests, by route (as the router writes it), method and status code",
            requests.clone(),
        );
        let request_seconds = Family::new_with_constructor(Buckets);
        registry.register_with_unit(
            "http_request_duration",
            "How long API requests took, by route and method",
            Unit::Seconds,
            request_seconds.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            passes,
            pass_seconds,
            releases,
            rollbacks,
            revisions,
            webhooks,
            fetch_seconds,
            fetch_errors,
            requests,
            request_seconds,
        }
    }

    /// A reconcile pass ended.
    pub fn pass(&self, ok: bool, took: Duration) {
        let result = if ok { "ok" } else { "error" };
        self.passes
            .get_or_create(&[("result", result.into())])
            .inc();
        self.pass_seconds.observe(took.as_secs_f64());
    }

    /// A release in `environment` ended with `result` (its text form).
    pub fn release(&self, environment: &str, result: &str) {
        self.releases
            .get_or_create(&[
                ("environment", environment.into()),
                ("result", result.into()),
            ])
            .inc();
    }

    /// A rollback in `environment`: `automatic` (a failed release) or manual.
    pub fn rollback(&self, environment: &str, automatic: bool) {
        let kind = if automatic { "automatic" } else { "manual" };
        self.rollbacks
            .get_or_create(&[("environment", environment.into()), ("kind", kind.into())])
            .inc();
    }

    /// A followed revision's outcome.
    pub fn revision(&self, outcome: RevisionOutcome) {
        let outcome = match outcome {
            RevisionOutcome::Accepted => "accepted",
            RevisionOutcome::Rejected => "rejected",
            RevisionOutcome::Refused => "refused",
        };
        self.revisions
            .get_or_create(&[("outcome", outcome.into())])
            .inc();
    }

    /// A webhook delivery's outcome.
    pub fn webhook(&self, outcome: WebhookOutcome) {
        self.webhooks
            .get_or_create(&[("outcome", outcome.label().into())])
            .inc();
    }

    /// A read (or fetch) of the tracked reference, and whether it failed.
    pub fn fetch(&self, took: Duration, failed: bool) {
        self.fetch_seconds.observe(took.as_secs_f64());
        if failed {
            self.fetch_errors.inc();
        }
    }

    /// An API request to `route` (the router's pattern, `-` when none matched).
    pub fn request(&self, route: &str, method: &str, status: u16, took: Duration) {
        self.requests
            .get_or_create(&[
                ("route", route.into()),
                ("method", method.into()),
                ("code", status.to_string()),
            ])
            .inc();
        self.request_seconds
            .get_or_create(&[("route", route.into()), ("method", method.into())])
            .observe(took.as_secs_f64());
    }

    /// The OpenMetrics text of these metrics and of `now` (what is, read at this
    /// scrape), ending with `# EOF`.
    pub fn encode(&self, now: crate::snapshot::Snapshot) -> String {
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let mut text = String::new();
        let mut fresh = Registry::with_prefix("drover");
        fresh.register_collector(Box::new(now));
        // Writing to a String cannot fail.
        let _ = encode_registry(&mut text, &self.registry);
        let _ = encode_registry(&mut text, &fresh);
        let _ = encode_eof(&mut text);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_events_are_written_with_their_labels_and_units() {
        let metrics = Metrics::new();
        metrics.pass(true, Duration::from_millis(20));
        metrics.release("staging", "rolled-back");
        metrics.rollback("staging", true);
        metrics.webhook(WebhookOutcome::BadSignature);
        metrics.request("/api/v1/status", "GET", 200, Duration::from_millis(2));
        let text = metrics.encode(Default::default());
        for line in [
            "drover_reconcile_passes_total{result=\"ok\"} 1",
            "drover_reconcile_duration_seconds_count 1",
            "drover_releases_total{environment=\"staging\",result=\"rolled-back\"} 1",
            "drover_rollbacks_total{environment=\"staging\",kind=\"automatic\"} 1",
            "drover_webhook_deliveries_total{outcome=\"bad_signature\"} 1",
            "drover_http_requests_total{route=\"/api/v1/status\",method=\"GET\",code=\"200\"} 1",
            "drover_http_request_duration_seconds_bucket{le=\"0.005\",route=\"/api/v1/status\",method=\"GET\"} 1",
            "# TYPE drover_git_fetch_duration_seconds histogram",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(text.matches("# EOF").count(), 1);
    }
}
