//! What Drover tells about itself: Prometheus metrics ([`Metrics`], counted as things
//! happen, and a [`Snapshot`] of what is, read at each scrape) and OpenTelemetry
//! traces of revisions and API requests ([`trace`]).

pub mod metrics;
pub mod snapshot;
pub mod trace;

pub use metrics::{Metrics, RevisionOutcome, WebhookOutcome};
pub use snapshot::Snapshot;
