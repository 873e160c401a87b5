//! Traces end to end: `drover up` exports over OTLP/gRPC (set by the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT`) to a test receiver in this process — no OpenTelemetry
//! collector can be installed here, so the receiver is the protocol's own generated
//! gRPC service (opentelemetry-proto), keeping every span it is sent. A signed
//! webhook carrying a W3C `traceparent` announces a commit; its revision's whole
//! trace — the webhook request, detection, fetch, validation, plan, apply and the
//! release's verdict — arrives under the caller's trace, and an API call's
//! `traceparent` is honoured too.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drover_source::webhook::sign;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;

use crate::platform::{Platform, fixture};
use crate::support::http;

/// Every span it was sent.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut kept = self.0.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                kept.extend(scope.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// The test receiver: an OTLP/gRPC trace service on 127.0.0.1, on a runtime of its
/// own; it stops with the runtime when dropped.
struct TestReceiver {
    received: Received,
    addr: String,
    _runtime: tokio::runtime::Runtime,
}

impl TestReceiver {
    fn start() -> TestReceiver {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let received = Received::default();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let service = TraceServiceServer::new(received.clone());
        runtime.spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        TestReceiver {
            received,
            addr,
            _runtime: runtime,
        }
    }

    /// The spans of trace `trace_id` (hex), once `test` holds for them.
    fn trace(&self, trace_id: &str, what: &str, test: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let spans: Vec<Span> = self
                .received
                .0
                .lock()
                .unwrap()
                .iter()
                .filter(|s| hex::encode(&s.trace_id) == trace_id)
                .cloned()
                .collect();
            if test(&spans) {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "not within 60s: {what}; spans of the trace: {:?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn named<'a>(spans: &'a [Span], name: &str) -> Option<&'a Span> {
    spans.iter().find(|s| s.name == name)
}

/// A string attribute of a span.
fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes.iter().find(|a| a.key == key).and_then(|a| {
        match a.value.as_ref()?.value.as_ref()? {
            AnyValue::StringValue(s) => Some(s.clone()),
            AnyValue::IntValue(i) => Some(i.to_string()),
            _ => None,
        }
    })
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER: &str = "00f067aa0ba902b7";

#[test]
fn a_webhooks_revision_is_one_trace_from_detection_to_verdict() {
    let receiver = TestReceiver::start();
    let endpoint = format!("http://{}", receiver.addr);
    let platform = Platform::start_from(
        &fixture(),
        true,
        // Only the webhook makes this test see the push.
        &["--poll", "1h"],
        &[
            ("DROVER_WEBHOOK_SECRET", "hook-secret"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    platform.wait_for(Duration::from_secs(60), "web ready", |s| {
        Platform::ready(s, "web", 1)
    });
    let commit = platform.commit_web_v2(1, "  update: {monitor: 1s}\n", "web v2");
    let body = br#"{"ref":"refs/heads/main"}"#;
    let signature = format!("sha256={}", sign(b"hook-secret", body));
    let traceparent = format!("00-{TRACE}-{CALLER}-01");
    let (code, answer) = http(
        "POST",
        &platform.api,
        "/api/v1/webhooks/git",
        &[
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature-256", &signature),
            ("traceparent", &traceparent),
        ],
        body,
    );
    assert_eq!(code, 202, "{answer}");

    let spans = receiver.trace(TRACE, "the release's verdict", |spans| {
        named(spans, "release").is_some()
    });
    let webhook = named(&spans, "POST /api/v1/webhooks/git").expect("the webhook's span");
    assert_eq!(
        hex::encode(&webhook.parent_span_id),
        CALLER,
        "under the caller"
    );
    assert_eq!(
        attribute(webhook, "http.response.status_code").as_deref(),
        Some("202")
    );
    let revision = named(&spans, "revision").expect("the revision's span");
    assert_eq!(
        revision.parent_span_id, webhook.span_id,
        "set off by the webhook"
    );
    assert_eq!(attribute(revision, "drover.revision"), Some(commit.clone()));
    assert_eq!(
        attribute(revision, "drover.detection").as_deref(),
        Some("webhook")
    );
    assert_eq!(
        attribute(revision, "drover.revision.outcome").as_deref(),
        Some("accepted")
    );
    for step in ["fetch", "validate", "plan", "apply", "release"] {
        let span = named(&spans, step).unwrap_or_else(|| panic!("no {step} span"));
        assert_eq!(
            span.parent_span_id, revision.span_id,
            "{step} is the revision's"
        );
        assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
    }
    let apply = named(&spans, "apply").unwrap();
    assert_eq!(
        attribute(apply, "drover.environment").as_deref(),
        Some("staging")
    );
    let release = named(&spans, "release").unwrap();
    assert_eq!(
        attribute(release, "drover.release.result").as_deref(),
        Some("healthy")
    );
    assert_eq!(
        attribute(release, "drover.services").as_deref(),
        Some("web")
    );
    assert!(
        revision.start_time_unix_nano <= named(&spans, "fetch").unwrap().start_time_unix_nano
            && release.end_time_unix_nano > revision.end_time_unix_nano,
        "the steps follow one another"
    );

    // Any API call's traceparent is honoured.
    let other = "0af7651916cd43dd8448eb211c80319c";
    let auth = format!("Bearer {}", platform.token());
    let parent = format!("00-{other}-b7ad6b7169203331-01");
    let (code, _) = http(
        "GET",
        &platform.api,
        "/api/v1/status",
        &[("Authorization", &auth), ("traceparent", &parent)],
        b"",
    );
    assert_eq!(code, 200);
    let spans = receiver.trace(other, "the API call's span", |spans| !spans.is_empty());
    assert_eq!(spans[0].name, "GET /api/v1/status");
    assert_eq!(hex::encode(&spans[0].parent_span_id), "b7ad6b7169203331");
}
