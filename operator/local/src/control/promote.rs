//! Promotions as the control plane sees them: how long each promotion source has been
//! healthy, the gate (source healthy at its revision for its soak time, target not in
//! the middle of a release), and the progress of committed promotions, read from the
//! target's releases (level-triggered: recomputed every pass).

use std::collections::{BTreeMap, BTreeSet};

use drover_store::{Promotion, Store, StoreError, now_ms};

use super::{ControlError, ControlPlane};
use crate::instances::Live;
use crate::promotion::Artifact;
use crate::view::{GateView, Lifecycle, Status};

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

/// Why `env` is not healthy now, or `None` when it is: synced, no release open, every
/// service running all its instances ready.
fn unhealthy(status: &Status, env: &str, releasing: bool) -> Option<String> {
    let Some(view) = status.environments.iter().find(|e| e.name == env) else {
        return Some(format!("{env} has not been applied yet"));
    };
    if view.sync != "Synced" {
        return Some(format!("{env} is {}: {}", view.sync, view.message));
    }
    if releasing {
        return Some(format!("{env} is rolling out a release"));
    }
    status
        .services
        .iter()
        .filter(|s| s.environment == env && s.state != Lifecycle::Running)
        .map(|s| {
            let why = if s.message.is_empty() {
                String::new()
            } else {
                format!(" — {}", s.message)
            };
            format!(
                "{env} is not healthy: {} is {:?}, {}/{} ready{why}",
                s.name, s.state, s.ready, s.desired
            )
        })
        .next()
}

fn seconds(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        s if s >= 3600 && s % 3600 / 60 == 0 => format!("{}h", s / 3600),
        s if s >= 3600 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s if s >= 60 => format!("{}m{}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

impl ControlPlane {
    /// Runs `f` on the store (one of the control plane's short critical sections).
    pub fn with_store<T>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError>,
    ) -> Result<T, ControlError> {
        Ok(f(&self.lock().store)?)
    }

    /// After a reconcile pass: how long promotion sources have been healthy, where
    /// committed promotions are, and the autoscaler.
    pub(super) fn after_pass(&self) -> Result<(), ControlError> {
        let (sources, releasing) = {
            let inner = self.lock();
            let releasing: BTreeSet<String> = inner.releases.keys().cloned().collect();
            (inner.promotion_sources.clone(), releasing)
        };
        if !sources.is_empty() {
            let (status, _) = self.observe()?;
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
                    .filter(|r| r.result == "healthy")
                    .and_then(|r| r.ended_ms);
                seeds.insert(env, seed);
            }
            let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
            let now = now_ms();
            for env in &sources {
                health.seen.insert(env.clone());
                if unhealthy(&status, env, releasing.contains(env)).is_some() {
                    health.since.remove(env);
                } else if !health.since.contains_key(env) {
                    let since = seeds.get(env).copied().flatten().unwrap_or(now);
                    health.since.insert(env.clone(), since);
                }
            }
        }
        self.advance_promotions()?;
        self.autoscale()
    }

    /// Whether `to` may take `from`'s versions now; the refusal says why (a
    /// [`ControlError::Conflict`] for a gate not met, [`ControlError::Refused`] for a
    /// promotion the config does not allow).
    pub fn gate(&self, from: &str, to: &str) -> Result<Verified, ControlError> {
        self.gate_on(&self.observe()?.0, from, to)
    }

    /// [`ControlPlane::gate`] with the status already read.
    pub(super) fn gate_on(
        &self,
        status: &Status,
        from: &str,
        to: &str,
    ) -> Result<Verified, ControlError> {
        let inner = self.lock();
        let applied = inner.store.observed()?.objects;
        let live = Live::from_state(&applied);
        let target = live
            .environments
            .get(to)
            .ok_or_else(|| ControlError::NotFound(format!("no environment `{to}`")))?;
        if !live.environments.contains_key(from) {
            return Err(ControlError::NotFound(format!("no environment `{from}`")));
        }
        let Some(policy) = &target.promotion else {
            return Err(ControlError::Refused(format!(
                "{to} does not promote from any environment: add `promotion: {{from: {from}}}` to its Environment"
            )));
        };
        if policy.from != from {
            return Err(ControlError::Refused(format!(
                "{to} promotes from {}, not from {from}",
                policy.from
            )));
        }
        if let Some(why) = unhealthy(status, from, inner.releases.contains_key(from)) {
            return Err(ControlError::Conflict(format!("gate not met: {why}")));
        }
        if inner.releases.contains_key(to) {
            return Err(ControlError::Conflict(format!(
                "gate not met: {to} is rolling out a release; promote when it is done"
            )));
        }
        let soak = policy.soak.to_std().as_millis() as i64;
        let since = self
            .health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .since
            .get(from)
            .copied();
        let healthy_ms = since.map_or(0, |s| now_ms() - s);
        if healthy_ms < soak {
            return Err(ControlError::Conflict(format!(
                "gate not met: {from} has been healthy for {}; the soak time is {} ({} to go)",
                seconds(healthy_ms),
                seconds(soak),
                seconds(soak - healthy_ms)
            )));
        }
        let revision = inner
            .store
            .environments()?
            .into_iter()
            .find(|e| e.name == from)
            .and_then(|e| e.revision)
            .unwrap_or_default();
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
            healthy_ms,
            pull_request: policy.mode == drover_model::environment::PromotionMode::PullRequest,
        })
    }

    /// Each promotion path's gate as `drover status` shows it.
    pub(super) fn gates(&self, status: &Status, live: &Live) -> Vec<GateView> {
        live.environments
            .iter()
            .filter_map(|(to, spec)| {
                let from = &spec.promotion.as_ref()?.from;
                let (open, message) = match self.gate_on(status, from, to) {
                    Ok(v) => (
                        true,
                        format!("{from} healthy for {}", seconds(v.healthy_ms)),
                    ),
                    Err(e) => (
                        false,
                        e.to_string()
                            .trim_start_matches("gate not met: ")
                            .to_owned(),
                    ),
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
        let text = if p.reason.is_empty() {
            format!("promotion #{} {}→{}: {}", p.id, p.source, p.target, p.state)
        } else {
            format!(
                "promotion #{} {}→{}: {} — {}",
                p.id, p.source, p.target, p.state, p.reason
            )
        };
        self.with_store(|s| {
            s.batch(|s| {
                s.update_promotion(p)?;
                s.event(
                    &p.target,
                    &format!("promotion/{}", p.id),
                    "Promotion",
                    &text,
                )
            })
        })?;
        (self.say)(&format!("{}: {text}", p.target));
        self.config.notifier.send(
            &format!("promotion.{}", p.state),
            &p.target,
            p.commit.as_deref(),
            Some(p.id),
            &text,
        );
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
                .find(|r| r.revision == commit && r.trigger != "rollback")
            else {
                continue;
            };
            let (state, reason) = match release.result.as_str() {
                "progressing" => ("deploying", String::new()),
                "healthy" => ("succeeded", String::new()),
                "rolled-back" => ("rolled-back", release.reason.clone()),
                "superseded" => (
                    "failed",
                    format!("superseded before it was healthy: {}", release.reason),
                ),
                _ => ("failed", release.reason.clone()),
            };
            if p.state != state {
                p.state = state.to_owned();
                p.reason = reason;
                self.promotion_moved(&p)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_read_as_people_write_them() {
        let shown: Vec<String> = [0, 12_400, 60_000, 61_000, 300_000, 3_600_000, 5_400_000]
            .into_iter()
            .map(super::seconds)
            .collect();
        assert_eq!(shown, ["0s", "12s", "1m", "1m1s", "5m", "1h", "1h30m"]);
    }
}
