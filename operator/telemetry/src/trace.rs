//! OpenTelemetry traces, exported over OTLP/gRPC when `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, and free when it is not (the
//! global tracer is then a no-op).
//!
//! One trace per revision ([`RevisionTrace`]): its root span `revision` runs from the
//! moment a check began (a webhook, a ref watch, a poll) to the end of its
//! validation, with `fetch` and `validate` under it; the controller adds `plan` and
//! `apply` per environment, and `release` when the release is judged. Those steps are
//! recorded with the times they took, once they are over, so nothing has to stay open
//! across restarts. A webhook's (or any API call's) W3C `traceparent` is honoured: the
//! revision it announced, or the request's own span, hangs under it.

use std::sync::Mutex;
use std::time::SystemTime;

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{
    Span as _, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue, global};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;

/// Why the exporter could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot export traces to {endpoint}: {message}")]
pub struct TraceError {
    pub endpoint: String,
    pub message: String,
}

/// The exporter while it runs; [`Tracing::shutdown`] sends what is left.
#[derive(Debug)]
pub struct Tracing {
    provider: SdkTracerProvider,
}

/// The name spans are recorded under.
const TRACER: &str = "drover";

impl Tracing {
    /// Starts exporting when the standard variables name an endpoint; `None` when they
    /// do not (no trace is made). Call it inside a Tokio runtime: the gRPC client
    /// lives there.
    pub fn from_env() -> Result<Option<Tracing>, TraceError> {
        let endpoint = [
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|e| !e.is_empty()));
        let Some(endpoint) = endpoint else {
            return Ok(None);
        };
        if std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|e| e == "none") {
            return Ok(None);
        }
        use opentelemetry_otlp::WithExportConfig;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .build()
            .map_err(|e| TraceError {
                endpoint: endpoint.clone(),
                message: e.to_string(),
            })?;
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(
                std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "drover".to_owned()),
            )
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        global::set_tracer_provider(provider.clone());
        global::set_text_map_propagator(TraceContextPropagator::new());
        Ok(Some(Tracing { provider }))
    }

    /// Sends the spans not yet sent, and stops.
    pub fn shutdown(self) {
        let _ = self.provider.force_flush();
        let _ = self.provider.shutdown();
    }
}

fn tracer() -> global::BoxedTracer {
    global::tracer_provider().tracer(TRACER)
}

/// How a check that found a revision was set off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Detection {
    /// The first check, as the control plane starts.
    #[default]
    Start,
    /// A ref of a local repository moved.
    Watch,
    /// The periodic fetch of a remote.
    Poll,
    /// A signed push webhook.
    Webhook,
    /// A commit Drover wrote itself (a promotion, a deploy, a revert).
    Write,
}

impl Detection {
    pub fn as_str(self) -> &'static str {
        match self {
            Detection::Start => "start",
            Detection::Watch => "watch",
            Detection::Poll => "poll",
            Detection::Webhook => "webhook",
            Detection::Write => "write",
        }
    }
}

/// The last thing that set a check off, and the trace context it came with: the
/// revision the check finds hangs under it.
#[derive(Debug, Default)]
pub struct Detections {
    last: Mutex<Option<(Detection, Context)>>,
}

impl Detections {
    /// `how` set a check off; `parent` is the trace it belongs to (a webhook's
    /// `traceparent`; an empty context for none).
    pub fn saw(&self, how: Detection, parent: Context) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some((how, parent));
    }

    /// What set the current check off (a start, when nothing has).
    pub fn take(&self) -> (Detection, Context) {
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_default()
    }
}

/// The trace of one revision; what happens to the revision later is added to it.
#[derive(Debug, Clone, Default)]
pub struct RevisionTrace {
    cx: Context,
}

/// When a revision's check began, its reference was read, and its validation ended.
#[derive(Debug, Clone, Copy)]
pub struct CheckTimes {
    pub started: SystemTime,
    pub fetched: SystemTime,
    pub checked: SystemTime,
}

fn attributes(pairs: &[(&'static str, &str)]) -> Vec<KeyValue> {
    pairs
        .iter()
        .map(|(k, v)| KeyValue::new(*k, v.to_string()))
        .collect()
}

impl RevisionTrace {
    /// The trace of a revision a check found: `revision` (its root) with `fetch` and
    /// `validate`, under `parent`. `outcome`: accepted, rejected or refused.
    pub fn checked(
        revision: &str,
        summary: &str,
        how: Detection,
        parent: &Context,
        times: CheckTimes,
        outcome: &str,
    ) -> RevisionTrace {
        let tracer = tracer();
        let mut root = tracer
            .span_builder("revision")
            .with_kind(SpanKind::Internal)
            .with_start_time(times.started)
            .with_attributes(attributes(&[
                ("drover.revision", revision),
                ("drover.revision.summary", summary),
                ("drover.detection", how.as_str()),
                ("drover.revision.outcome", outcome),
            ]))
            .start_with_context(&tracer, parent);
        if outcome != "accepted" {
            root.set_status(Status::error(format!("revision {outcome}")));
        }
        let cx = parent.with_span(root);
        let trace = RevisionTrace { cx };
        trace.step("fetch", times.started, times.fetched, &[], None);
        trace.step("validate", times.fetched, times.checked, &[], None);
        trace.cx.span().end_with_timestamp(times.checked);
        trace
    }

    /// A step of the revision, over once it is recorded; a failed one (`error`)
    /// carries its error.
    pub fn step(
        &self,
        name: &'static str,
        start: SystemTime,
        end: SystemTime,
        pairs: &[(&'static str, &str)],
        error: Option<&str>,
    ) {
        let tracer = tracer();
        let mut span = tracer
            .span_builder(name)
            .with_start_time(start)
            .with_attributes(attributes(pairs))
            .start_with_context(&tracer, &self.cx);
        if let Some(error) = error {
            span.set_status(Status::error(error.to_owned()));
        }
        span.end_with_timestamp(end);
    }

    /// The trace's id in hex, for log lines (none when nothing is traced).
    pub fn trace_id(&self) -> Option<String> {
        trace_id(&self.cx)
    }
}

/// The trace id of `cx`'s span in hex, when it has a valid one.
pub fn trace_id(cx: &Context) -> Option<String> {
    let span = cx.span();
    let context = span.span_context();
    context.is_valid().then(|| context.trace_id().to_string())
}

/// Reads a `traceparent` (and `tracestate`) from HTTP headers.
struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The W3C trace context a request carries (an empty context without one).
pub fn parent_of(headers: &http::HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&Headers(headers))
}

/// The span of the API request being served, kept in the request's extensions: what
/// the request sets off (a webhook's revision) hangs under it.
#[derive(Debug, Clone)]
pub struct RequestTrace(pub Context);

/// A server span for an API request under `parent`; `end_request` closes it.
pub fn request(method: &str, route: &str, parent: &Context) -> Context {
    let tracer = tracer();
    let span = tracer
        .span_builder(format!("{method} {route}"))
        .with_kind(SpanKind::Server)
        .with_attributes(vec![
            KeyValue::new("http.request.method", method.to_owned()),
            KeyValue::new("http.route", route.to_owned()),
        ])
        .start_with_context(&tracer, parent);
    parent.with_span(span)
}

/// Ends a request's span with the status it answered.
pub fn end_request(cx: &Context, status: u16) {
    let span = cx.span();
    span.set_attribute(KeyValue::new(
        "http.response.status_code",
        i64::from(status),
    ));
    if status >= 500 {
        span.set_status(Status::error(format!("HTTP {status}")));
    }
    span.end();
}
