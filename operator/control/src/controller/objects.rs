//! Step 1 of a pass: each environment's plan (desired vs observed) is applied through
//! the engine when a new revision arrives, drift is reverted (self-heal) or reported,
//! and a release opens for every revision that changes services.
//!
//! The order makes a crash at any instant safe: a release is recorded before its
//! objects are applied (a restarted controller finds it open and goes on applying the
//! same revision), and the environment's revision is recorded after. An environment
//! whose revision was rolled back is held: it converges to what it ran before that
//! release (the release's snapshot), so a rollback interrupted by a crash completes.

use drover_diff::{ObjectKey, State};
use drover_model::Kind;
use drover_model::cluster::Engine as EngineKind;
use drover_model::environment::RollbackPolicy;
use drover_model::environment::SyncMode;
use drover_plan::{Observed, plan, plan_environment};
use drover_release::judge::{Policy, supersede};
use drover_release::{OpenRelease, ReleaseResult, SyncStatus, Trigger};
use drover_store::{Database, EnvironmentStatus, Release};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use super::{ControlError, Controller, DesiredRevision, Inner, observed_in, subset};
use crate::engine::Engine;

pub(crate) fn sync_policy(state: &State, env: &str) -> drover_model::environment::SyncPolicy {
    state
        .iter()
        .find(|(k, _)| k.environment == env && k.kind == Kind::Environment)
        .and_then(|(_, v)| serde_json::from_value(v["spec"]["sync"].clone()).ok())
        .unwrap_or_default()
}

/// One object of a snapshot, borrowed: a snapshot of a thousand services is written
/// without copying them first.
#[derive(serde::Serialize)]
struct SnapshotItem<'a> {
    environment: &'a str,
    kind: &'a str,
    name: &'a str,
    value: &'a Value,
}

/// Objects as JSON, for a release's snapshot.
pub(crate) fn snapshot<'a>(objects: impl Iterator<Item = (&'a ObjectKey, &'a Value)>) -> String {
    let items: Vec<SnapshotItem<'a>> = objects
        .map(|(k, v)| SnapshotItem {
            environment: &k.environment,
            kind: k.kind.as_str(),
            name: &k.name,
            value: v,
        })
        .collect();
    serde_json::to_string(&items).unwrap_or_else(|_| "[]".to_owned())
}

/// Reads a [`snapshot`] back.
pub(crate) fn from_snapshot(text: &str) -> State {
    let items: Vec<Value> = serde_json::from_str(text).unwrap_or_default();
    items
        .into_iter()
        .filter_map(|item| {
            let kind = Kind::ALL
                .into_iter()
                .find(|k| item["kind"].as_str() == Some(k.as_str()))?;
            let key = ObjectKey {
                environment: item["environment"].as_str()?.to_owned(),
                kind,
                name: item["name"].as_str()?.to_owned(),
            };
            Some((key, item["value"].clone()))
        })
        .collect()
}

/// The object a release member names: a service, or a plain Kubernetes object (whose
/// name says its kind, `Job.batch/migrate`).
pub(crate) fn member_key(env: &str, member: &str) -> ObjectKey {
    ObjectKey {
        environment: env.to_owned(),
        kind: if drover_model::is_manifest_name(member) {
            Kind::Manifest
        } else {
            Kind::Service
        },
        name: member.to_owned(),
    }
}

/// The lines of a change set, for events: `service web: replicas 5 → 2`.
fn describe(from: &State, to: &State) -> String {
    let set = drover_diff::diff(from, to, drover_diff::Options::default());
    let lines: Vec<String> = set
        .changes
        .iter()
        .flat_map(|c| c.summary.iter().cloned())
        .collect();
    lines.join("; ")
}

/// Where the desired state puts each environment: its cluster, and each cluster's
/// engine, read from those objects alone (not every service parsed, as
/// `Live::from_state` does).
#[derive(Debug, Default)]
pub struct Placements {
    pub clusters: BTreeMap<String, EngineKind>,
    pub environments: BTreeMap<String, String>,
}

impl Placements {
    pub fn of(state: &State) -> Placements {
        let mut placements = Placements::default();
        for (key, value) in state {
            match key.kind {
                Kind::Cluster => {
                    let engine =
                        serde_json::from_value(value["spec"]["engine"].clone()).unwrap_or_default();
                    placements.clusters.insert(key.name.clone(), engine);
                }
                Kind::Environment => {
                    let cluster = value["spec"]["cluster"].as_str().unwrap_or_default();
                    placements
                        .environments
                        .insert(key.environment.clone(), cluster.to_owned());
                }
                _ => {}
            }
        }
        placements
    }

    /// The engine of the cluster `env` runs on.
    pub fn engine_of(&self, env: &str) -> Option<EngineKind> {
        self.clusters.get(self.environments.get(env)?).copied()
    }

    /// Whether an engine of `kind` runs the object `key`: a cluster of that engine,
    /// or an object of an environment on one.
    fn runs(&self, kind: EngineKind, key: &ObjectKey) -> bool {
        match key.kind {
            Kind::Cluster => self.clusters.get(&key.name) == Some(&kind),
            _ => self.engine_of(&key.environment) == Some(kind),
        }
    }
}

/// Replicas an autoscaler owns stay as they are live (within its bounds): never drift.
fn keep_autoscaled(want: &mut State, observed: &State) {
    for (key, value) in want.iter_mut() {
        if key.kind != Kind::Service {
            continue;
        }
        let Some(scaling) = value["spec"].get("autoscaling").cloned() else {
            continue;
        };
        let live_replicas = observed
            .get(key)
            .and_then(|v| v["spec"]["replicas"].as_u64());
        let (min, max) = (
            scaling["minReplicas"].as_u64().unwrap_or(1),
            scaling["maxReplicas"].as_u64().unwrap_or(u64::MAX),
        );
        if let Some(n) = live_replicas {
            value["spec"]["replicas"] = Value::from(n.clamp(min, max));
        }
    }
}

/// What every environment's step reads once per pass.
struct Pass<'a> {
    /// The kind of cluster this step is for.
    kind: EngineKind,
    desired: &'a DesiredRevision,
    placements: Placements,
    observed: &'a Observed,
    statuses: BTreeMap<String, EnvironmentStatus>,
}

impl Pass<'_> {
    /// What Git wants of `env` on this kind of cluster (nothing, for an environment
    /// elsewhere), with the replicas autoscalers own as they are live.
    fn wanted(&self, env: &str) -> State {
        let mut wanted: State = self
            .desired
            .state
            .iter()
            .filter(|(k, _)| k.environment == env && self.placements.runs(self.kind, k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        keep_autoscaled(&mut wanted, &self.observed.objects);
        wanted
    }

    /// Whether this kind's engine runs anything of `env` now.
    fn observes(&self, env: &str) -> bool {
        self.observed.objects.keys().any(|k| k.environment == env)
    }
}

impl<E: Engine> Controller<E> {
    /// Applies a plan's actions in its order. Consecutive actions of one kind and one
    /// direction (creating or updating; deleting) go together, as many at once as the
    /// engine takes; each group finishes whole (nothing is cut off mid-apply) before
    /// the next starts, and the first error is returned after it. A release's
    /// rollback (`back`) updates its services through [`Engine::roll_back`].
    async fn apply_all(
        &self,
        kind: EngineKind,
        actions: &[drover_plan::Action],
        back: bool,
    ) -> Result<(), ControlError> {
        use drover_plan::Action;
        use futures::StreamExt;
        let width = self.engine.capabilities(kind).concurrent_applies.max(1);
        let deleting = |a: &Action| matches!(a, Action::Delete { .. });
        for group in
            actions.chunk_by(|a, b| a.key().kind == b.key().kind && deleting(a) == deleting(b))
        {
            // The futures are made first (they start when polled): a stream that maps
            // with a closure would not be provably `Send`.
            let applies: Vec<_> = group
                .iter()
                .map(|action| match action {
                    Action::Update { key, .. } if back && key.kind == Kind::Service => {
                        futures::future::Either::Left(self.engine.roll_back(kind, action))
                    }
                    _ => futures::future::Either::Right(self.engine.apply(kind, action)),
                })
                .collect();
            let results: Vec<Result<(), crate::engine::EngineError>> =
                futures::stream::iter(applies)
                    .buffer_unordered(width)
                    .collect()
                    .await;
            results.into_iter().collect::<Result<(), _>>()?;
        }
        Ok(())
    }

    /// Step 1 on the clusters of one `kind`, from what the engine runs there: apply
    /// new revisions, revert (or report) drift. Returns whether anything was applied.
    pub(super) async fn sync_objects(
        &self,
        inner: &mut Inner,
        desired: &DesiredRevision,
        kind: EngineKind,
        observed: &Observed,
    ) -> Result<bool, ControlError> {
        let placements = Placements::of(&desired.state);
        let environments: BTreeSet<String> = desired
            .state
            .keys()
            .filter(|k| placements.runs(kind, k))
            .chain(observed.objects.keys())
            .map(|k| k.environment.clone())
            .collect();
        let statuses = self
            .store()
            .environments()?
            .into_iter()
            .map(|s| (s.name.clone(), s))
            .collect();
        let pass = Pass {
            kind,
            desired,
            placements,
            observed,
            statuses,
        };
        self.mark_unsupported(&pass)?;
        let mut applied = false;
        for env in &environments {
            if let Some(to) = pass
                .placements
                .engine_of(env)
                .filter(|to| *to != kind && self.engine.kinds().contains(to) && !env.is_empty())
            {
                applied |= self.leave(&pass, env, to).await?;
                continue;
            }
            let wanted = pass.wanted(env);
            applied |= match self.rolled_back_release(env, &desired.revision.id, &wanted)? {
                Some(failed) => self.hold(inner, &pass, env, &failed).await?,
                None => self.sync_environment(inner, &pass, env, wanted).await?,
            };
        }
        Ok(applied)
    }

    /// An environment Git moved to a cluster of another engine (`to`, run here too)
    /// leaves this one: what Drover made for it here is pruned, all of it at once —
    /// the guard against deleting every service is for environments emptied, not
    /// moved — unless its sync policy says not to prune. Its status is the other
    /// engine's to say. Returns whether anything was deleted.
    async fn leave(
        &self,
        pass: &Pass<'_>,
        env: &str,
        to: EngineKind,
    ) -> Result<bool, ControlError> {
        let mut leaving = observed_in(pass.observed, env);
        for (key, value) in leaving.objects.iter_mut() {
            if key.kind == Kind::Environment {
                value["spec"]["sync"]["allowEmpty"] = Value::Bool(true);
            }
        }
        let gone = plan(&State::new(), &leaving);
        if gone.is_empty() {
            return Ok(false);
        }
        self.apply_all(pass.kind, &gone.actions, false).await?;
        let text = format!(
            "moved to a {} cluster: {} object(s) Drover made for it on its {} cluster deleted",
            to.as_str(),
            gone.actions.len(),
            pass.kind.as_str()
        );
        self.store().event(env, env, "Moved", &text)?;
        tracing::info!("{env}: {text}");
        Ok(true)
    }

    /// Environments on clusters no engine here drives are recorded as `Unsupported`,
    /// loudly: they are valid, but nothing deploys them.
    fn mark_unsupported(&self, pass: &Pass<'_>) -> Result<(), ControlError> {
        for (env, cluster) in &pass.placements.environments {
            let Some(engine) = pass.placements.clusters.get(cluster) else {
                continue;
            };
            if self.engine.kinds().contains(engine) {
                continue;
            }
            let engine = engine.as_str();
            let next = EnvironmentStatus {
                name: env.clone(),
                revision: Some(pass.desired.revision.id.clone()),
                summary: Some(pass.desired.revision.summary.clone()),
                status: SyncStatus::Unsupported,
                message: format!(
                    "not deployed: cluster `{cluster}` uses the `{engine}` engine, which this build of Drover cannot drive yet"
                ),
            };
            if pass.statuses.get(env) != Some(&next) {
                if pass.statuses.get(env).map(|s| s.status) != Some(SyncStatus::Unsupported) {
                    self.store().event(env, env, "Unsupported", &next.message)?;
                    tracing::warn!("{env}: {}", next.message);
                }
                self.store().set_environment(&next)?;
            }
        }
        Ok(())
    }

    /// The rolled-back release `env` is held for at `revision`, if any: the release
    /// of this very revision, or the environment's last release when `want` still
    /// carries its change to one of its services (a commit landed before the revert
    /// did). A revision judged failed is never applied again, whatever arrives.
    fn rolled_back_release(
        &self,
        env: &str,
        revision: &str,
        want: &State,
    ) -> Result<Option<Release>, ControlError> {
        if env.is_empty() {
            return Ok(None);
        }
        let releases = self.store().releases(env, 50)?;
        if let Some(same) = releases
            .iter()
            .find(|r| r.revision == revision && r.result == ReleaseResult::RolledBack)
        {
            return Ok(Some(same.clone()));
        }
        // The newest release that is not a rollback; its rollback (newer) recorded
        // what the failed revision had applied.
        let Some(at) = releases.iter().position(|r| r.trigger != Trigger::Rollback) else {
            return Ok(None);
        };
        let last = &releases[at];
        if last.result != ReleaseResult::RolledBack {
            return Ok(None);
        }
        let Some(rollback) = releases[..at]
            .iter()
            .rev()
            .find(|r| r.trigger == Trigger::Rollback && r.revision == last.revision)
        else {
            return Ok(None);
        };
        let bad = from_snapshot(&rollback.snapshot);
        let carried = last.services.iter().any(|member| {
            let key = member_key(env, member);
            bad.get(&key)
                .is_some_and(|spec| want.get(&key) == Some(spec))
        });
        Ok(carried.then(|| last.clone()))
    }

    /// An environment held at what it ran before `failed`: it converges there while
    /// the rollback runs, and afterwards when self-heal reverts drift. Returns whether
    /// anything was applied.
    async fn hold(
        &self,
        inner: &Inner,
        pass: &Pass<'_>,
        env: &str,
        failed: &Release,
    ) -> Result<bool, ControlError> {
        let revision = &pass.desired.revision;
        let mut before = subset(&from_snapshot(&failed.snapshot), env);
        keep_autoscaled(&mut before, &pass.observed.objects);
        let back = plan_environment(env, &before, pass.observed);
        let rolling = inner
            .releases
            .get(env)
            .is_some_and(|r| r.is_rollback() && r.revision == failed.revision);
        let apply = !back.is_empty() && (rolling || sync_policy(&before, env).self_heal);
        if apply {
            let changes = describe(&subset(&pass.observed.objects, env), &before);
            self.apply_all(pass.kind, &back.actions, rolling).await?;
            if !rolling {
                let text = format!("drift reverted to the held revision: {changes}");
                self.store().event(env, env, "DriftReverted", &text)?;
                tracing::info!("{env}: {text}");
            }
        }
        let held = failed
            .previous
            .as_deref()
            .map_or("-", drover_model::short_id);
        let next = EnvironmentStatus {
            name: env.to_owned(),
            revision: failed.previous.clone(),
            summary: None,
            status: SyncStatus::Held,
            message: if failed.revision == revision.id {
                format!(
                    "held at {held}: release {} failed — {}",
                    revision.short(),
                    failed.reason
                )
            } else {
                format!(
                    "held at {held}: release {} failed — {}; {} still carries its change (until the revert lands)",
                    drover_model::short_id(&failed.revision),
                    failed.reason,
                    revision.short()
                )
            },
        };
        if pass.statuses.get(env) != Some(&next) {
            self.store().set_environment(&next)?;
        }
        Ok(apply)
    }

    /// One environment's plan, applied or reported. Returns whether anything was
    /// applied.
    async fn sync_environment(
        &self,
        inner: &mut Inner,
        pass: &Pass<'_>,
        env: &str,
        wanted: State,
    ) -> Result<bool, ControlError> {
        let revision = &pass.desired.revision;
        let planning = std::time::SystemTime::now();
        let plan = plan_environment(env, &wanted, pass.observed);
        let planned = std::time::SystemTime::now();
        let before = pass.statuses.get(env);
        let new_revision = before.and_then(|s| s.revision.as_deref()) != Some(&revision.id);
        let policy = sync_policy(
            if wanted.is_empty() {
                &pass.observed.objects
            } else {
                &wanted
            },
            env,
        );
        let label = if env.is_empty() { "clusters" } else { env };
        let held = || match plan.holds.first() {
            Some(hold) => (SyncStatus::Held, hold.reason.clone()),
            None => (SyncStatus::Synced, String::new()),
        };
        let mut applied = false;
        let (status, message) = if plan.is_empty() {
            // Nothing to apply, but maybe something the plan refused to do.
            held()
        } else if env.is_empty()
            || (policy.mode == SyncMode::Automatic && (new_revision || policy.self_heal))
        {
            let changes = describe(&subset(&pass.observed.objects, env), &wanted);
            // A release's members: its services and plain Kubernetes objects (a Job,
            // a StatefulSet), each judged by its health.
            let mut services: Vec<String> = plan
                .actions
                .iter()
                .filter(|a| matches!(a.key().kind, Kind::Service | Kind::Manifest))
                .map(|a| a.key().name.clone())
                .collect();
            // A changed secret rolls the services that mount it: they are members too.
            for user in secret_users(&plan, &wanted, env) {
                if !services.contains(&user) {
                    services.push(user);
                }
            }
            if new_revision && !env.is_empty() && !services.is_empty() {
                self.open_release(inner, pass, env, services, &wanted)?;
            }
            let applied_all = self.apply_all(pass.kind, &plan.actions, false).await;
            if new_revision && !env.is_empty() {
                let trace = &pass.desired.trace;
                let actions = plan.actions.len().to_string();
                let pairs = [("drover.environment", env), ("drover.actions", &actions)];
                trace.step("plan", planning, planned, &pairs, None);
                let error = applied_all.as_ref().err().map(ToString::to_string);
                let now = std::time::SystemTime::now();
                trace.step("apply", planned, now, &pairs, error.as_deref());
            }
            applied_all?;
            applied = true;
            let (reason, text) = if new_revision {
                (
                    "Synced",
                    format!("revision {} applied: {changes}", revision.short()),
                )
            } else {
                ("DriftReverted", format!("drift reverted to Git: {changes}"))
            };
            self.store().event(env, label, reason, &text)?;
            tracing::info!("{label}: {text}");
            held()
        } else {
            let changes = describe(&subset(&pass.observed.objects, env), &wanted);
            let why = if policy.mode == SyncMode::Manual {
                "manual sync"
            } else {
                "self-heal is off"
            };
            (SyncStatus::OutOfSync, format!("{why}: {changes}"))
        };
        if wanted.is_empty() && !pass.observes(env) {
            return Ok(applied);
        }
        let next = EnvironmentStatus {
            name: env.to_owned(),
            revision: Some(revision.id.clone()),
            summary: Some(revision.summary.clone()),
            status,
            message,
        };
        if before != Some(&next) {
            let store = self.store();
            if status == SyncStatus::OutOfSync {
                store.event(env, label, "OutOfSync", &next.message)?;
                tracing::info!("{label}: out of sync ({})", next.message);
            }
            if status == SyncStatus::Held {
                store.event(env, label, "Held", &next.message)?;
                tracing::info!("{label}: held ({})", next.message);
            }
            store.set_environment(&next)?;
        }
        Ok(applied)
    }

    /// Opens the release of a new revision that changes `services`, superseding the
    /// one open; a release already open for this revision (recorded before a crash)
    /// goes on as it is. Its snapshot is what `env` runs now.
    fn open_release(
        &self,
        inner: &mut Inner,
        pass: &Pass<'_>,
        env: &str,
        services: Vec<String>,
        wanted: &State,
    ) -> Result<(), ControlError> {
        let revision = &pass.desired.revision;
        if inner
            .releases
            .get(env)
            .is_some_and(|r| r.revision == revision.id && !r.is_rollback())
        {
            return Ok(());
        }
        let policy: RollbackPolicy = wanted
            .iter()
            .find(|(k, _)| k.environment == env && k.kind == Kind::Environment)
            .and_then(|(_, v)| serde_json::from_value(v["spec"]["rollback"].clone()).ok())
            .unwrap_or_default();
        let snapshot = snapshot(
            pass.observed
                .objects
                .iter()
                .filter(|(k, _)| k.environment == env),
        );
        let first = drover_release::judge::empty_snapshot(&snapshot);
        let trigger = if inner.manual_commits.get(env) == Some(&revision.id) {
            Trigger::Manual
        } else {
            Trigger::Git
        };
        let previous = pass.statuses.get(env).and_then(|s| s.revision.clone());
        let open = inner.releases.get(env).map(|r| r.id);
        let id = self.store().batch(|store| {
            if let Some(open) = open {
                let (result, reason) = supersede(revision.short());
                store.end_release(open, result, &reason)?;
            }
            store.start_release(
                &drover_store::NewRelease {
                    environment: env.to_owned(),
                    revision: revision.id.clone(),
                    summary: revision.summary.clone(),
                    previous,
                    trigger,
                    services: services.clone(),
                    snapshot,
                },
                policy.history_limit as usize,
            )
        })?;
        self.config.notifier.send(
            ReleaseResult::Progressing.notification(),
            env,
            Some(&revision.id),
            None,
            &format!(
                "release {} started: {} ({})",
                revision.short(),
                revision.summary,
                services.join(", ")
            ),
        );
        for service in &services {
            inner
                .rolling_back
                .remove(&(env.to_owned(), service.clone()));
        }
        let release = OpenRelease::start(
            id,
            &revision.id,
            services,
            first,
            trigger,
            Policy::from(&policy),
            Instant::now(),
        );
        inner.releases.insert(env.to_owned(), release);
        Ok(())
    }
}

/// The services of `env` in `wanted` that mount a secret the plan changes.
fn secret_users(plan: &drover_plan::Plan, wanted: &State, env: &str) -> Vec<String> {
    let changed: Vec<&str> = plan
        .actions
        .iter()
        .filter(|a| a.key().kind == Kind::Secret)
        .map(|a| a.key().name.as_str())
        .collect();
    if changed.is_empty() {
        return Vec::new();
    }
    wanted
        .iter()
        .filter(|(k, _)| k.environment == env && k.kind == Kind::Service)
        .filter(|(_, v)| {
            v["spec"]["secrets"].as_array().is_some_and(|mounts| {
                mounts
                    .iter()
                    .any(|m| changed.contains(&m["name"].as_str().unwrap_or_default()))
            })
        })
        .map(|(k, _)| k.name.clone())
        .collect()
}
