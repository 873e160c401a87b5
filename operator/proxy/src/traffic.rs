//! What the proxy counts of the traffic it carries, for the autoscaler and the control
//! plane's metrics: requests forwarded, responses by status class and upstream latency
//! per route's service (here), requests no route matched and open client connections
//! (on the proxy). Counting is a few relaxed atomic adds
//! per request, so it costs the proxy nothing it would notice.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Upper bounds (seconds) of the upstream latency histogram's buckets, as Prometheus'
/// client libraries default them; one more bucket counts everything slower.
pub const LATENCY_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A service's counters, shared by every table version that routes to it.
#[derive(Debug, Default)]
pub struct RouteTraffic {
    /// Requests forwarded to an instance (the autoscaler's request rate).
    forwarded: AtomicUsize,
    /// Responses by status class: 1xx … 5xx.
    classes: [AtomicU64; 5],
    /// Responses an instance gave, by latency bucket (not cumulative; the last is +Inf).
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    latency_micros: AtomicU64,
}

impl RouteTraffic {
    /// Counts a request forwarded to an instance.
    pub fn forward(&self) {
        self.forwarded.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests forwarded so far.
    pub fn forwarded(&self) -> usize {
        self.forwarded.load(Ordering::Relaxed)
    }

    /// Counts a response of `status`; `upstream` is how long the instance took to
    /// answer (none when the proxy answered itself: no ready instance, or it failed).
    pub fn record(&self, status: u16, upstream: Option<Duration>) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.classes[class].fetch_add(1, Ordering::Relaxed);
        if let Some(took) = upstream {
            let seconds = took.as_secs_f64();
            let bucket = LATENCY_BUCKETS
                .iter()
                .position(|&bound| seconds <= bound)
                .unwrap_or(LATENCY_BUCKETS.len());
            self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
            self.latency_micros
                .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        }
    }

    /// The counts now.
    pub fn snapshot(&self) -> Traffic {
        Traffic {
            responses: self.classes.each_ref().map(|c| c.load(Ordering::Relaxed)),
            latency_buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            latency_micros: self.latency_micros.load(Ordering::Relaxed),
        }
    }
}

/// A service's counts since the proxy started, as its stats file carries them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Traffic {
    /// Responses by status class: 1xx … 5xx.
    pub responses: [u64; 5],
    /// Instance answers per bucket of [`LATENCY_BUCKETS`] (the last: slower than all).
    pub latency_buckets: Vec<u64>,
    /// The sum of those answers' latencies, in microseconds.
    pub latency_micros: u64,
}

impl Traffic {
    /// The histogram's buckets: (upper bound, answers in that bucket alone), +Inf last.
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        LATENCY_BUCKETS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(self.latency_buckets.iter().chain(std::iter::repeat(&0)))
            .map(|(bound, n)| (bound, *n))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_counted_by_class_and_instance_answers_by_latency() {
        let route = RouteTraffic::default();
        route.record(200, Some(Duration::from_millis(3)));
        route.record(204, Some(Duration::from_millis(30)));
        route.record(503, None);
        route.record(502, Some(Duration::from_secs(20)));
        let counted = route.snapshot();
        assert_eq!(counted.responses, [0, 2, 0, 0, 2]);
        assert_eq!(counted.latency_micros, 3_000 + 30_000 + 20_000_000);
        let histogram = counted.buckets();
        assert_eq!(histogram[0], (0.005, 1));
        assert_eq!(histogram[3], (0.05, 1));
        assert_eq!(histogram.last(), Some(&(f64::INFINITY, 1)));
        assert_eq!(histogram.len(), LATENCY_BUCKETS.len() + 1);
    }
}
