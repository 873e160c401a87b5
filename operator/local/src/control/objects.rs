//! Step 1 of a pass: each environment's plan (desired vs applied) is applied to the
//! store when a new revision arrives, drift is reverted (self-heal) or reported, and a
//! release starts for every revision that changes services.

use drover_release::judge::{Policy, supersede};

use super::*;

pub(super) fn sync_policy(state: &State, env: &str) -> drover_model::environment::SyncPolicy {
    state
        .iter()
        .find(|(k, _)| k.environment == env && k.kind == Kind::Environment)
        .and_then(|(_, v)| serde_json::from_value(v["spec"]["sync"].clone()).ok())
        .unwrap_or_default()
}

/// An environment's objects as JSON, for a release's snapshot.
pub(super) fn snapshot(state: &State) -> String {
    let items: Vec<Value> = state
        .iter()
        .map(|(k, v)| {
            serde_json::json!({
                "environment": k.environment,
                "kind": k.kind.as_str(),
                "name": k.name,
                "value": v,
            })
        })
        .collect();
    Value::Array(items).to_string()
}

/// Reads a [`snapshot`] back.
pub(super) fn from_snapshot(text: &str) -> State {
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

/// Records a service's new replica count (outside Git: the API or the autoscaler) and
/// its event, as one write.
pub(super) fn write_replicas(
    store: &Store,
    key: &ObjectKey,
    value: Value,
    reason: &str,
    message: &str,
) -> Result<(), StoreError> {
    store.batch(|store| {
        store.record(&drover_plan::Action::Update {
            key: key.clone(),
            value,
            patch: json_patch::Patch(Vec::new()),
        })?;
        store.event(&key.environment, &key.name, reason, message)
    })
}

pub(super) fn subset(state: &State, env: &str) -> State {
    state
        .iter()
        .filter(|(k, _)| k.environment == env)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The lines of a change set, for events: `service web: replicas 5 → 2`.
pub(super) fn describe(from: &State, to: &State) -> String {
    let set = drover_diff::diff(from, to, drover_diff::Options::default());
    let lines: Vec<String> = set
        .changes
        .iter()
        .flat_map(|c| c.summary.iter().cloned())
        .collect();
    lines.join("; ")
}

impl ControlPlane {
    /// Step 1: apply new revisions, revert (or report) drift.
    pub(super) fn sync_objects(
        &self,
        inner: &mut Inner,
        desired: &DesiredRevision,
    ) -> Result<(), ControlError> {
        let observed = inner.store.observed()?;
        let desired_live = Live::from_state(&desired.state);
        // Only what the local engine runs: its clusters and their environments.
        let mut want: State = desired
            .state
            .iter()
            .filter(|(k, _)| match k.kind {
                Kind::Cluster => desired_live
                    .clusters
                    .get(&k.name)
                    .is_some_and(|c| c.engine == drover_model::cluster::Engine::Local),
                _ => desired_live.local_cluster_of(&k.environment).is_some(),
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // Replicas an autoscaler owns stay as they are live (within its bounds).
        for (key, value) in want.iter_mut() {
            if key.kind != Kind::Service {
                continue;
            }
            let Some(scaling) = value["spec"].get("autoscaling").cloned() else {
                continue;
            };
            let live_replicas = observed
                .objects
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
        let environments: BTreeSet<String> = want
            .keys()
            .chain(observed.objects.keys())
            .map(|k| k.environment.clone())
            .collect();
        let statuses: BTreeMap<String, EnvironmentStatus> = inner
            .store
            .environments()?
            .into_iter()
            .map(|s| (s.name.clone(), s))
            .collect();
        let revision = &desired.revision;
        let desired_envs = Live::from_state(&want).environments;
        let mut started: Vec<(String, OpenRelease)> = Vec::new();
        let open_releases = inner.releases.clone();
        let manual = inner.manual_commits.clone();
        inner.store.batch(|store| {
            for env in &environments {
                // A revision whose release was rolled back is never applied again by
                // itself: the environment stays held at what it returned to.
                if !env.is_empty()
                    && let Some(failed) = store.releases(env, 50)?.into_iter().find(|r| {
                        r.revision == revision.id && r.result == ReleaseResult::RolledBack
                    })
                {
                    let held = failed
                        .previous
                        .as_deref()
                        .map_or("-", |p| &p[..p.len().min(7)]);
                    let next = EnvironmentStatus {
                        name: env.clone(),
                        revision: failed.previous.clone(),
                        summary: None,
                        status: SyncStatus::Held,
                        message: format!(
                            "held at {held}: release {} failed — {}",
                            revision.short(),
                            failed.reason
                        ),
                    };
                    if statuses.get(env) != Some(&next) {
                        store.set_environment(&next)?;
                    }
                    continue;
                }
                let wanted = subset(&want, env);
                let applied = Observed {
                    objects: subset(&observed.objects, env),
                    inventory: observed
                        .inventory
                        .iter()
                        .filter(|k| &k.environment == env)
                        .cloned()
                        .collect(),
                };
                let plan = plan(&wanted, &applied);
                let before = statuses.get(env);
                let new_revision = before.and_then(|s| s.revision.as_deref()) != Some(&revision.id);
                let policy = sync_policy(
                    if wanted.is_empty() {
                        &applied.objects
                    } else {
                        &wanted
                    },
                    env,
                );
                let label = if env.is_empty() {
                    "clusters"
                } else {
                    env.as_str()
                };
                let (status, message) = if plan.is_empty() {
                    (SyncStatus::Synced, String::new())
                } else if env.is_empty()
                    || (policy.mode == drover_model::environment::SyncMode::Automatic
                        && (new_revision || policy.self_heal))
                {
                    let changes = describe(&applied.objects, &wanted);
                    let services: Vec<String> = plan
                        .actions
                        .iter()
                        .filter(|a| a.key().kind == Kind::Service)
                        .map(|a| a.key().name.clone())
                        .collect();
                    if new_revision && !env.is_empty() && !services.is_empty() {
                        if let Some(open) = open_releases.get(env) {
                            let (result, reason) = supersede(revision.short());
                            store.end_release(open.id, result, &reason)?;
                        }
                        let policy = desired_envs
                            .get(env)
                            .map(|e| e.rollback.clone())
                            .unwrap_or_default();
                        let snapshot = snapshot(&applied.objects);
                        let trigger = if manual.get(env) == Some(&revision.id) {
                            Trigger::Manual
                        } else {
                            Trigger::Git
                        };
                        let id = store.start_release(
                            &drover_store::NewRelease {
                                environment: env.clone(),
                                revision: revision.id.clone(),
                                summary: revision.summary.clone(),
                                previous: before.and_then(|s| s.revision.clone()),
                                trigger,
                                services: services.clone(),
                                snapshot: snapshot.clone(),
                            },
                            policy.history_limit as usize,
                        )?;
                        started.push((
                            env.clone(),
                            OpenRelease::start(
                                id,
                                &revision.id,
                                services.clone(),
                                snapshot,
                                trigger,
                                Policy::from(&policy),
                                Instant::now(),
                            ),
                        ));
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
                    }
                    for action in &plan.actions {
                        store.record(action)?;
                    }
                    let (reason, text) = if new_revision {
                        (
                            "Synced",
                            format!("revision {} applied: {changes}", revision.short()),
                        )
                    } else {
                        ("DriftReverted", format!("drift reverted to Git: {changes}"))
                    };
                    if !plan.actions.is_empty() {
                        store.event(env, label, reason, &text)?;
                        (self.say)(&format!("{label}: {text}"));
                    }
                    match plan.holds.first() {
                        Some(hold) => (SyncStatus::Held, hold.reason.clone()),
                        None => (SyncStatus::Synced, String::new()),
                    }
                } else {
                    let changes = describe(&applied.objects, &wanted);
                    let why = if policy.mode == drover_model::environment::SyncMode::Manual {
                        "manual sync"
                    } else {
                        "self-heal is off"
                    };
                    (SyncStatus::OutOfSync, format!("{why}: {changes}"))
                };
                if wanted.is_empty() && applied.objects.is_empty() {
                    continue;
                }
                let next = EnvironmentStatus {
                    name: env.clone(),
                    revision: Some(revision.id.clone()),
                    summary: Some(revision.summary.clone()),
                    status,
                    message,
                };
                if before != Some(&next) {
                    if status == SyncStatus::OutOfSync {
                        store.event(env, label, "OutOfSync", &next.message)?;
                        (self.say)(&format!("{label}: out of sync ({})", next.message));
                    }
                    store.set_environment(&next)?;
                }
            }
            Ok(())
        })?;
        for (env, release) in started {
            for service in &release.services {
                inner.rolling_back.remove(&(env.clone(), service.clone()));
            }
            inner.releases.insert(env, release);
        }
        Ok(())
    }
}
