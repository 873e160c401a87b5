//! What the controller tells about itself: its metrics (what is counted as it happens,
//! and the snapshot of what is that each scrape reads) and the desired revision's
//! trace, which a release's verdict is added to.

use std::collections::BTreeMap;

use drover_release::state::TextState;
use drover_release::{PromotionState, SyncStatus};
use drover_telemetry::snapshot::{EnvironmentNow, NodeNow, ServiceNow, Snapshot};

use super::{ControlError, Controller};
use crate::engine::Engine;

impl<E: Engine> Controller<E> {
    /// What is counted as it happens.
    pub fn metrics(&self) -> &drover_telemetry::Metrics {
        &self.config.metrics
    }

    /// The trace of `revision`, when it is the desired one.
    pub(super) fn trace_of(
        &self,
        revision: &str,
    ) -> Option<drover_telemetry::trace::RevisionTrace> {
        self.traced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .filter(|(id, _)| id == revision)
            .map(|(_, trace)| trace.clone())
    }

    /// What the metrics show at a scrape: the status, the age of the revision in
    /// force, promotions by state and the proxies' counts.
    pub async fn snapshot(&self) -> Result<Snapshot, ControlError> {
        let seen = self.observe().await?;
        let committed_s = self
            .inner
            .lock()
            .await
            .desired
            .as_ref()
            .map(|d| d.revision.committed_s);
        let now_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let mut promotions: BTreeMap<PromotionState, u64> =
            PromotionState::ALL.iter().map(|s| (*s, 0)).collect();
        for p in self.store().promotions(10_000)? {
            *promotions.entry(p.state).or_default() += 1;
        }
        let status = seen.status;
        let mut restarts: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        for i in status.instances.iter().filter(|i| i.current) {
            *restarts
                .entry((i.environment.as_str(), i.service.as_str()))
                .or_default() += u64::from(i.restarts);
        }
        Ok(Snapshot {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            sync_states: SyncStatus::ALL.iter().map(|s| s.as_str()).collect(),
            environments: status
                .environments
                .iter()
                .map(|e| EnvironmentNow {
                    name: e.name.clone(),
                    sync: e.sync.as_str(),
                    release_open: e.release_open,
                    revision_age: e
                        .revision
                        .as_ref()
                        .and(committed_s)
                        .map(|c| (now_s - c as f64).max(0.0)),
                })
                .collect(),
            services: status
                .services
                .iter()
                .map(|s| ServiceNow {
                    environment: s.environment.clone(),
                    name: s.name.clone(),
                    desired: s.desired,
                    ready: s.ready,
                    restarts: restarts
                        .get(&(s.environment.as_str(), s.name.as_str()))
                        .copied()
                        .unwrap_or(0),
                })
                .collect(),
            nodes: status
                .nodes
                .iter()
                .map(|n| NodeNow {
                    name: n.name.clone(),
                    up: n.status == "ready",
                })
                .collect(),
            promotions: promotions
                .into_iter()
                .map(|(s, n)| (s.as_str(), n))
                .collect(),
            proxies: seen.traffic,
        })
    }
}
