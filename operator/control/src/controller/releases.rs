//! Step 3 of a pass: each open release is judged by [`drover_release::judge`] from its
//! services' progress as the engine reports it. A healthy or failed release is
//! recorded; a failed one is rolled back as a whole — recorded here, and carried out
//! by the objects step, which holds the environment at what it ran before — with its
//! revert asked of the Git writer.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use drover_plan::Live;
use drover_release::judge::{Policy, outcome};
use drover_release::{OpenRelease, ReleaseResult, ServiceProgress, Trigger, Verdict, judge};
use drover_store::Database;

use super::objects::snapshot;
use super::recorder::Transition;
use super::{ControlError, Controller, GitWrite, Inner, RevertRequest, subset};
use crate::engine::Engine;

impl<E: Engine> Controller<E> {
    /// Step 3: judge each open release, but for those of the environments in
    /// `unknown` (their clusters failed this pass); returns the earliest deadline of
    /// those still undecided.
    pub(super) async fn judge(
        &self,
        inner: &mut Inner,
        live: &Live,
        unknown: &BTreeSet<String>,
    ) -> Result<Option<Instant>, ControlError> {
        let now = Instant::now();
        let mut earliest: Option<Instant> = None;
        let open: Vec<(String, OpenRelease)> = inner
            .releases
            .iter()
            .filter(|(e, _)| !unknown.contains(*e))
            .map(|(e, r)| (e.clone(), r.clone()))
            .collect();
        for (env, release) in open {
            let progress: BTreeMap<String, ServiceProgress> = release
                .services
                .iter()
                .filter_map(|s| {
                    let p = inner.progress.get(&(env.clone(), s.clone()))?;
                    Some((s.clone(), p.clone()))
                })
                .collect();
            let verdict = judge(&release, &progress, now);
            let Some((result, text)) = outcome(&release, &verdict) else {
                if let Verdict::Wait { until } = verdict {
                    earliest = earliest.into_iter().chain([until]).min();
                }
                continue;
            };
            inner.releases.remove(&env);
            match &verdict {
                Verdict::Wait { .. } => {}
                Verdict::Healthy => {
                    self.end(&env, &release, result, "", &text)?;
                    for service in &release.services {
                        inner.rolling_back.remove(&(env.clone(), service.clone()));
                    }
                }
                Verdict::Failed { reason } => {
                    self.end(&env, &release, result, reason, &text)?;
                }
                Verdict::RollBack { reason } => {
                    self.roll_back(inner, live, &env, release, reason, &text)
                        .await?;
                }
            }
        }
        Ok(earliest)
    }

    /// Ends a release with its result, recorded with its event in one write, then told.
    fn end(
        &self,
        env: &str,
        release: &OpenRelease,
        result: ReleaseResult,
        reason: &str,
        text: &str,
    ) -> Result<(), ControlError> {
        let said = Transition::release(env, result, &release.revision, text);
        self.store().batch(|store| {
            store.end_release(release.id, result, reason)?;
            self.recorder.event(store, &said)
        })?;
        self.recorder.tell(&said);
        self.trace_verdict(env, release, result, reason);
        Ok(())
    }

    /// The release's span in its revision's trace: from when it was opened to its
    /// verdict.
    fn trace_verdict(&self, env: &str, release: &OpenRelease, result: ReleaseResult, reason: &str) {
        let Some(trace) = self.trace_of(&release.revision) else {
            return;
        };
        let now = std::time::SystemTime::now();
        let started = now - release.started.elapsed();
        let services = release.services.join(",");
        let pairs = [
            ("drover.environment", env),
            ("drover.release.result", result.as_str()),
            ("drover.services", services.as_str()),
        ];
        let error = (result != ReleaseResult::Healthy).then_some(reason);
        trace.step("release", started, now, &pairs, error);
    }

    /// A release left open by a controller that stopped is judged again, from now.
    /// Checked once per environment: afterwards this controller knows its releases.
    pub(super) fn resume_releases(
        &self,
        inner: &mut Inner,
        live: &Live,
    ) -> Result<(), ControlError> {
        for (env, spec) in &live.environments {
            if !self.runs(live, env)
                || !inner.restored.insert(env.clone())
                || inner.releases.contains_key(env)
            {
                continue;
            }
            let Some(r) = self.store().releases(env, 1)?.into_iter().next() else {
                continue;
            };
            if !r.result.is_open() {
                continue;
            }
            let release = OpenRelease::start(
                r.id,
                &r.revision,
                r.services,
                drover_release::judge::empty_snapshot(&r.snapshot),
                r.trigger,
                Policy::from(&spec.rollback),
                Instant::now(),
            );
            if release.is_rollback() {
                for service in &release.services {
                    inner.rolling_back.insert((env.clone(), service.clone()));
                }
            }
            inner.releases.insert(env.clone(), release);
        }
        Ok(())
    }

    /// Rolls back the whole release: recorded in one write (the release ends
    /// rolled back, its rollback starts), after which the environment is held at what
    /// it ran before, which the objects step applies — in the planner's reverse
    /// dependency order, the services with their `rollback` settings.
    async fn roll_back(
        &self,
        inner: &mut Inner,
        live: &Live,
        env: &str,
        release: OpenRelease,
        reason: &str,
        text: &str,
    ) -> Result<(), ControlError> {
        let applied = subset(&self.engine.observe().await?.objects, env);
        let keep = live
            .environments
            .get(env)
            .map_or(20, |e| e.rollback.history_limit as usize);
        let said = Transition::release(env, ReleaseResult::RolledBack, &release.revision, text);
        let rollback_id = self.store().batch(|store| {
            store.end_release(release.id, ReleaseResult::RolledBack, reason)?;
            self.recorder.event(store, &said)?;
            let id = store.start_release(
                &drover_store::NewRelease {
                    environment: env.to_owned(),
                    revision: release.revision.clone(),
                    summary: format!("rollback of {}", release.short()),
                    previous: Some(release.revision.clone()),
                    trigger: Trigger::Rollback,
                    services: release.services.clone(),
                    snapshot: snapshot(applied.iter()),
                },
                keep,
            )?;
            // In the same write as the rollback: a crash now cannot lose the revert.
            let revert = release
                .revert_commit
                .then(|| {
                    Self::queue_git_write(
                        store,
                        GitWrite::Revert(RevertRequest {
                            release: release.id,
                            environment: env.to_owned(),
                            revision: release.revision.clone(),
                            reason: reason.to_owned(),
                        }),
                    )
                })
                .transpose()?;
            Ok((id, revert))
        })?;
        let (rollback_id, revert) = rollback_id;
        self.recorder.tell(&said);
        self.trace_verdict(env, &release, ReleaseResult::RolledBack, reason);
        if let Some(revert) = revert {
            self.send_git_write(revert);
        }
        for service in &release.services {
            inner.rolling_back.insert((env.to_owned(), service.clone()));
        }
        inner.releases.insert(
            env.to_owned(),
            release.rollback(rollback_id, Instant::now()),
        );
        self.wake();
        Ok(())
    }
}
