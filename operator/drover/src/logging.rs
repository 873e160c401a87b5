//! Log lines, through `tracing`: `human` (the default) writes each event's message
//! alone on its line, as people read a running `drover up`; `json` writes one JSON
//! object per event with its level, time, target and fields, for machines.

use std::fmt;

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// The message alone.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// The message of an event, nothing else.
struct MessageOnly;

impl<S, N> FormatEvent<S, N> for MessageOnly
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut visitor = Message(&mut writer, Ok(()));
        event.record(&mut visitor);
        visitor.1?;
        writeln!(writer)
    }
}

/// Writes the `message` field.
struct Message<'a, 'w>(&'a mut Writer<'w>, fmt::Result);

impl tracing::field::Visit for Message<'_, '_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.1 = write!(self.0, "{value:?}");
        }
    }
}

/// Standard output or error, where a failed write (a reader that went away) is
/// dropped silently: a log line is never worth an error of its own.
#[derive(Debug, Clone, Copy)]
struct Quiet(bool);

impl std::io::Write for Quiet {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = if self.0 {
            std::io::stderr().write_all(buf)
        } else {
            std::io::stdout().write_all(buf)
        };
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the subscriber for this process: lines go to standard output, or to
/// standard error with `to_stderr` (agents, whose standard output is their parent's).
pub fn init(format: LogFormat, to_stderr: bool) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // kube's client logs every failed request and dropped connection itself (a line
    // per retry while an API server is down), and warns on every connection of a
    // kubeconfig that skips TLS verification. Each error also reaches Drover as a
    // result, which it reports once, in its own words, in the log and the status.
    let filter = tracing_subscriber::filter::Targets::new()
        .with_default(tracing::Level::INFO)
        .with_target("kube_client", tracing_subscriber::filter::LevelFilter::OFF)
        // OpenTelemetry's own lines: only trouble (a collector that cannot be reached).
        .with_target(
            "opentelemetry",
            tracing_subscriber::filter::LevelFilter::WARN,
        )
        .with_target(
            "opentelemetry_sdk",
            tracing_subscriber::filter::LevelFilter::WARN,
        )
        .with_target(
            "opentelemetry_otlp",
            tracing_subscriber::filter::LevelFilter::WARN,
        );
    let writer = move || Quiet(to_stderr);
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(writer);
    let installed = match format {
        LogFormat::Human => tracing_subscriber::registry()
            .with(layer.event_format(MessageOnly))
            .with(filter)
            .try_init(),
        LogFormat::Json => tracing_subscriber::registry()
            .with(layer.json())
            .with(filter)
            .try_init(),
    };
    // A second call (tests) keeps the first subscriber.
    let _ = installed;
}
