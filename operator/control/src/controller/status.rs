//! What `drover status` and `drover history` show: the environments as the store
//! records them (with why a revision was rejected or a revert not written), the
//! engine's services, instances, nodes, proxies and pools, and each promotion path's
//! gate.

use drover_plan::Live;

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
