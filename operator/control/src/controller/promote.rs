//! Promotions as the control plane sees them: how long each promotion source has been
//! healthy, the gate (source healthy at its revision for its soak time, target not in
//! the middle of a release), and the progress of committed promotions, read from the
//! target's releases (level-triggered: recomputed every pass).

use std::collections::{BTreeMap, BTreeSet};

use drover_plan::Live;
use drover_release::gate::{self, EnvironmentFacts, Input, ServiceFacts, human_duration};
use drover_release::promotion::Artifact;
use drover_release::{PromotionState, ReleaseResult, Trigger};
use drover_store::{Database, Promotion, now_ms};

use super::recorder::Transition;
use super::{ControlError, Controller};
use crate::engine::Engine;
use crate::view::{GateView, Status};

/// Since when each promotion source has been healthy (Unix ms).
#[derive(Debug, Default)]
pub(super) struct Health {
    /// Environments seen since start: the first sighting may take the time its last
    /// release became healthy, so a restart does not restart every soak.
    seen: BTreeSet<String>,
    since: BTreeMap<String, i64>,
}

/// A source environment that passed the gate, and what it runs.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The revision the source runs (full id).
    pub revision: String,
    pub artifacts: BTreeMap<String, Artifact>,
    /// How long it has been healthy.
    pub healthy_ms: i64,
    /// The target's mode: a pull request instead of a commit to the tracked branch.
    pub pull_request: bool,
}

/// What the gate sees of `env` in `status`, or `None` before it is applied.
fn facts(status: &Status, env: &str, releasing: bool) -> Option<EnvironmentFacts> {
    let view = status.environments.iter().find(|e| e.name == env)?;
    Some(EnvironmentFacts {
        sync: view.sync,
        message: view.message.clone(),
        releasing,
        services: status
            .services
            .iter()
            .filter(|s| s.environment == env)
            .map(|s| ServiceFacts {
                name: s.name.clone(),
                state: s.state,
                ready: s.ready,
                desired: s.desired,
                message: s.message.clone(),
            })
            .collect(),
    })
}

/// What the gate is judged from: the status, the applied objects, and the
/// environments with a release open.
pub(super) struct Seen {
    pub status: Status,
    pub live: Live,
    pub releasing: BTreeSet<String>,
    /// What the engine's proxies counted.
    pub traffic: Vec<drover_telemetry::snapshot::ProxyNow>,
}

impl<E: Engine> Controller<E> {
    /// After a pass: how long promotion sources have been healthy, and where committed
    /// promotions are.
    pub(super) async fn after_pass(&self) -> Result<(), ControlError> {
        let sources = self.inner.lock().await.promotion_sources.clone();
        if !sources.is_empty() {
            let Seen {
                status, releasing, ..
            } = self.observe().await?;
            // The time a source's last release became healthy matters only at its
            // first sighting: read it for those alone.
            let unseen: Vec<String> = {
                let health = self.health.lock().unwrap_or_else(|e| e.into_inner());
                sources
                    .iter()
                    .filter(|e| !health.seen.contains(*e))
                    .cloned()
                    .collect()
            };
            let mut seeds = BTreeMap::new();
            for env in unseen {
                let last = self.with_store(|s| s.releases(&env, 1))?;
                let seed = last
                    .first()
                    .filter(|r| r.result == ReleaseResult::Healthy)
                    .and_then(|r| r.ended_ms);
                seeds.insert(env, seed);
            }
            let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
            let now = now_ms();
            for env in &sources {
                health.seen.insert(env.clone());
                let facts = facts(&status, env, releasing.contains(env));
                if gate::unhealthy(env, facts.as_ref()).is_some() {
                    health.since.remove(env);
                } else if !health.since.contains_key(env) {
                    let since = seeds.get(env).copied().flatten().unwrap_or(now);
                    health.since.insert(env.clone(), since);
                }
            }
        }
        self.advance_promotions()
    }

    /// Whether `to` may take `from`'s versions now; the refusal says why (a
    /// [`ControlError::Gate`] for a gate not met, [`ControlError::Refused`] for a
    /// promotion the config does not allow).
    pub async fn gate(&self, from: &str, to: &str) -> Result<Verified, ControlError> {
        self.gate_on(&self.observe().await?, from, to)
    }

    /// [`Controller::gate`] with what it is judged from already read.
    pub(super) fn gate_on(
        &self,
        seen: &Seen,
        from: &str,
        to: &str,
    ) -> Result<Verified, ControlError> {
        let live = &seen.live;
        let target = live
            .environments
            .get(to)
            .ok_or_else(|| ControlError::NotFound(format!("no environment `{to}`")))?;
        if !live.environments.contains_key(from) {
            return Err(ControlError::NotFound(format!("no environment `{from}`")));
        }
        let since = self
            .health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .since
            .get(from)
            .copied();
        let source = facts(&seen.status, from, seen.releasing.contains(from));
        let open = gate::check(Input {
            from,
            to,
            policy: target.promotion.as_ref(),
            source: source.as_ref(),
            target_releasing: seen.releasing.contains(to),
            healthy_since_ms: since,
            now_ms: now_ms(),
        })
        .map_err(|refused| ControlError::Refused(refused.to_string()))?
        .map_err(ControlError::Gate)?;
        // The commit whose release the source verified: its last healthy release's,
        // not the newest revision (which may only have touched other environments).
        let store = self.store();
        let released = store
            .releases(from, 20)?
            .into_iter()
            .find(|r| r.trigger != Trigger::Rollback && r.result == ReleaseResult::Healthy)
            .map(|r| r.revision);
        let revision = match released {
            Some(r) => r,
            None => store
                .environments()?
                .into_iter()
                .find(|e| e.name == from)
                .and_then(|e| e.revision)
                .unwrap_or_default(),
        };
        drop(store);
        let artifacts = live
            .services
            .iter()
            .filter(|((env, _), _)| env == from)
            .map(|((_, name), spec)| {
                (
                    name.clone(),
                    Artifact {
                        version: spec.version.clone(),
                        image: spec.image.clone(),
                    },
                )
            })
            .collect();
        Ok(Verified {
            revision,
            artifacts,
            healthy_ms: open.healthy_ms,
            pull_request: open.pull_request,
        })
    }

    /// Each promotion path's gate as `drover status` shows it.
    pub(super) fn gates(&self, seen: &Seen) -> Vec<GateView> {
        seen.live
            .environments
            .iter()
            .filter_map(|(to, spec)| {
                let from = &spec.promotion.as_ref()?.from;
                let (open, message) = match self.gate_on(seen, from, to) {
                    Ok(v) => (
                        true,
                        format!("{from} healthy for {}", human_duration(v.healthy_ms)),
                    ),
                    Err(ControlError::Gate(closed)) => (false, closed.to_string()),
                    Err(e) => (false, e.to_string()),
                };
                Some(GateView {
                    from: from.clone(),
                    to: to.clone(),
                    open,
                    message,
                })
            })
            .collect()
    }

    /// Records a promotion's new state: store, event, notification.
    pub fn promotion_moved(&self, p: &Promotion) -> Result<(), ControlError> {
        let said = Transition::promotion(p);
        self.with_store(|s| {
            s.batch(|s| {
                s.update_promotion(p)?;
                self.recorder.event(s, &said)
            })
        })?;
        self.recorder.tell(&said);
        Ok(())
    }

    /// Each committed promotion follows the target's release of its commit.
    fn advance_promotions(&self) -> Result<(), ControlError> {
        for mut p in self.with_store(|s| s.open_promotions())? {
            let Some(commit) = p.commit.clone() else {
                continue;
            };
            let releases = self.with_store(|s| s.releases(&p.target, 50))?;
            let Some(release) = releases
                .iter()
                .find(|r| r.revision == commit && r.trigger != Trigger::Rollback)
            else {
                continue;
            };
            let (state, reason) = PromotionState::of_release(release.result, &release.reason);
            if p.state != state {
                p.state = state;
                p.reason = reason;
                self.promotion_moved(&p)?;
            }
        }
        Ok(())
    }
}
