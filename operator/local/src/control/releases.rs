//! Step 3b of a pass: each open release is judged by [`drover_release::judge`] from
//! its services' progress as this engine sees it; a healthy or failed one is recorded,
//! and a failed one is rolled back as a whole, with its revert asked of the Git writer.

use drover_release::judge::{Policy, outcome};
use drover_release::{Progress, ServiceProgress, Verdict, judge};

use super::objects::{from_snapshot, snapshot, subset};
use super::*;

impl ControlPlane {
    /// Step 3b: judge each open release. A failed release is rolled back as a whole,
    /// and its revision is not applied again.
    pub(super) fn judge(&self, inner: &mut Inner, live: &Live) -> Result<(), ControlError> {
        self.resume_releases(inner, live)?;
        if inner.releases.is_empty() {
            return Ok(());
        }
        let records = inner.store.instances()?;
        let now = Instant::now();
        let open: Vec<(String, OpenRelease)> = inner
            .releases
            .iter()
            .map(|(e, r)| (e.clone(), r.clone()))
            .collect();
        for (env, release) in open {
            let progress = progress(inner, live, &records, &env, &release);
            let verdict = judge(&release, &progress, now);
            let Some((result, text)) = outcome(&release, &verdict) else {
                continue;
            };
            inner.releases.remove(&env);
            match &verdict {
                Verdict::Wait { .. } => {}
                Verdict::Healthy | Verdict::Failed { .. } => {
                    let why = match &verdict {
                        Verdict::Failed { reason } => reason.as_str(),
                        _ => "",
                    };
                    inner.store.end_release(release.id, result, why)?;
                    self.announce(&inner.store, &env, result, &release.revision, &text)?;
                    if verdict == Verdict::Healthy {
                        for service in &release.services {
                            inner.rolling_back.remove(&(env.clone(), service.clone()));
                        }
                    }
                }
                Verdict::RollBack { reason } => {
                    self.roll_back(inner, live, &env, release, reason, &text)?;
                }
            }
        }
        Ok(())
    }

    /// A release left open by a control plane that stopped is judged again, from now.
    /// Checked once per environment: afterwards this control plane knows its releases.
    fn resume_releases(&self, inner: &mut Inner, live: &Live) -> Result<(), ControlError> {
        for (env, spec) in &live.environments {
            if live.local_cluster_of(env).is_none()
                || !inner.restored.insert(env.clone())
                || inner.releases.contains_key(env)
            {
                continue;
            }
            let Some(r) = inner.store.releases(env, 1)?.into_iter().next() else {
                continue;
            };
            if !r.result.is_open() {
                continue;
            }
            let release = OpenRelease::start(
                r.id,
                &r.revision,
                r.services,
                r.snapshot,
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

    /// Rolls back the whole release: every object of the environment returns to what
    /// it was before, in the planner's (reverse dependency) order, as one write; the
    /// rollback is itself a release, judged like any other.
    fn roll_back(
        &self,
        inner: &mut Inner,
        live: &Live,
        env: &str,
        release: OpenRelease,
        reason: &str,
        text: &str,
    ) -> Result<(), ControlError> {
        let before = from_snapshot(&release.snapshot);
        let observed = inner.store.observed()?;
        let applied = Observed {
            objects: subset(&observed.objects, env),
            inventory: observed
                .inventory
                .iter()
                .filter(|k| k.environment == env)
                .cloned()
                .collect(),
        };
        let back = plan(&before, &applied);
        let keep = live
            .environments
            .get(env)
            .map_or(20, |e| e.rollback.history_limit as usize);
        let rollback_id = inner.store.batch(|store| {
            for action in &back.actions {
                store.record(action)?;
            }
            store.end_release(release.id, ReleaseResult::RolledBack, reason)?;
            store.event(env, env, ReleaseResult::RolledBack.event_reason(), text)?;
            store.start_release(
                &drover_store::NewRelease {
                    environment: env.to_owned(),
                    revision: release.revision.clone(),
                    summary: format!("rollback of {}", release.short()),
                    previous: Some(release.revision.clone()),
                    trigger: Trigger::Rollback,
                    services: release.services.clone(),
                    snapshot: snapshot(&applied.objects),
                },
                keep,
            )
        })?;
        self.tell(env, ReleaseResult::RolledBack, &release.revision, text);
        if release.revert_commit {
            self.write_to_git(GitWrite::Revert(RevertRequest {
                release: release.id,
                environment: env.to_owned(),
                revision: release.revision.clone(),
                reason: reason.to_owned(),
            }));
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

/// Each service of `release` as this engine sees it now: gone, waiting for the
/// services before it, rolling, healthy, or stopped on failures.
fn progress(
    inner: &Inner,
    live: &Live,
    records: &[InstanceRecord],
    env: &str,
    release: &OpenRelease,
) -> BTreeMap<String, ServiceProgress> {
    release
        .services
        .iter()
        .map(|service| {
            let key = (env.to_owned(), service.clone());
            let state = if !live.services.contains_key(&key) {
                Progress::Absent
            } else {
                match inner.rollouts.get(&key) {
                    None => Progress::Rolling,
                    Some((step, _)) if step.paused.is_some() => Progress::Failed {
                        why: step.paused.clone().unwrap_or_default(),
                    },
                    Some((step, updating)) if step.done && !updating => Progress::Healthy,
                    Some(_) => match inner.waiting.get(&key) {
                        Some(on) => Progress::Waiting { on: on.clone() },
                        None => Progress::Rolling,
                    },
                }
            };
            let detail = match state {
                Progress::Absent | Progress::Healthy => String::new(),
                _ => why(inner, records, env, service),
            };
            (service.clone(), ServiceProgress::new(state, detail))
        })
        .collect()
}

/// `, 0/3 ready, readiness GET /ready returned 503 (3 times)`: the state of a
/// service's instances, for a release's failure reason.
fn why(inner: &Inner, records: &[InstanceRecord], env: &str, service: &str) -> String {
    let mine: Vec<&InstanceRecord> = records
        .iter()
        .filter(|r| r.environment == env && r.service == service)
        .collect();
    let ready = mine.iter().filter(|r| r.ready).count();
    let failure = mine.iter().find_map(|r| {
        inner
            .nodes
            .get(&r.node)?
            .reports
            .get(&(r.id.clone(), r.spec_hash.clone()))?
            .last_failure
            .clone()
    });
    drover_release::explain::detail(ready, mine.len(), failure.as_deref())
}
