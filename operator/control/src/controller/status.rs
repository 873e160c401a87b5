//! What `drover status` and `drover history` show: the environments as the store
//! records them (with why a revision was rejected or a revert not written), the
//! engine's services, instances, nodes, proxies and pools, and each promotion path's
//! gate; and the snapshot the metrics show at each scrape.

use std::collections::BTreeMap;

use drover_plan::Live;
use drover_release::state::TextState;
use drover_release::{PromotionState, SyncStatus};
use drover_telemetry::snapshot::{EnvironmentNow, NodeNow, ServiceNow, Snapshot};

use super::promote::Seen;
use super::{ControlError, Controller};
use crate::engine::Engine;
use crate::view::{EnvironmentView, Status};

impl<E: Engine> Controller<E> {
    /// Everything `drover status` shows.
    pub async fn status(&self) -> Result<Status, ControlError> {
        let seen = self.observe().await?;
        let promotions = self.gates(&seen);
        let mut status = seen.status;
        status.promotions = promotions;
        Ok(status)
    }

    /// Everything [`Controller::status`] shows but the promotion gates (which are
    /// judged from it), with the applied objects and the open releases.
    pub(super) async fn observe(&self) -> Result<Seen, ControlError> {
        let (rejected, revert_failures, releasing): (_, _, std::collections::BTreeSet<String>) = {
            let inner = self.inner.lock().await;
            (
                inner.rejected.clone(),
                inner.revert_failures.clone(),
                inner.releases.keys().cloned().collect(),
            )
        };
        let live = Live::from_state(&self.engine.observe().await?.objects);
        let engine = self.engine.status().await?;
        let traffic = engine.traffic;
        let mut status = Status {
            services: engine.services,
            instances: engine.instances,
            nodes: engine.nodes,
            proxies: engine.proxies,
            pools: engine.pools,
            ..Status::default()
        };
        for env in self.store().environments()? {
            if env.name.is_empty() {
                continue;
            }
            let mut message = env.message.clone();
            if let Some(failure) = revert_failures.get(&env.name) {
                message = format!("{message}; {failure}");
            }
            if let Some(rejected) = &rejected {
                message = if message.is_empty() {
                    rejected.clone()
                } else {
                    format!("{message}; {rejected}")
                };
            }
            let release_open = releasing.contains(&env.name);
            status.environments.push(EnvironmentView {
                cluster: live
                    .environments
                    .get(&env.name)
                    .map(|e| e.cluster.clone())
                    .unwrap_or_default(),
                name: env.name,
                revision: env.revision.map(|r| drover_model::short_id(&r).to_owned()),
                summary: env.summary,
                sync: env.status,
                message,
                release_open,
            });
        }
        Ok(Seen {
            status,
            live,
            releasing,
            traffic,
        })
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

    /// An environment's releases, newest first.
    pub async fn history(&self, env: &str) -> Result<Vec<drover_store::Release>, ControlError> {
        let applied = self.engine.observe().await?.objects;
        let keep = Live::from_state(&applied)
            .environments
            .get(env)
            .map_or(20, |e| e.rollback.history_limit as usize);
        Ok(self.store().releases(env, keep)?)
    }

    /// The last events, newest first.
    pub fn events(&self, limit: usize) -> Result<Vec<drover_store::Event>, ControlError> {
        Ok(self.store().events(limit)?)
    }
}
