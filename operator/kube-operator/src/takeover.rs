//! Taking over from another replica: a new leader starts with an empty state
//! directory, so it reads where the last one stopped from the Environment resources'
//! status — the revision applied (whose objects it renders from Git again, with what
//! each made), the release being judged (judged on from where it is) and the history.
//! Its first pass then finds nothing to do where nothing changed: nothing is applied
//! twice, no release is opened twice, and the history goes on.

use drover_control::controller::{snapshot_of, subset};
use drover_diff::State;
use drover_kube::KubeEngine;
use drover_model::environment::Environment;
use drover_model::environment_status::{ConditionStatus, EnvironmentStatus, ReleaseRecord};
use drover_release::{ReleaseResult, SyncStatus, Trigger};
use drover_store::{Database, NewRelease, Store};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

use crate::environments::StatusError;

/// Takes over every environment whose resource has a status and which this replica's
/// store does not know yet (before the controller starts); `desired_at` is the desired state at a revision (from
/// Git). Returns the environments taken over.
pub async fn take_over(
    engine: &KubeEngine,
    store: &Store,
    client: &Client,
    desired_at: impl Fn(&str) -> Option<State>,
) -> Result<Vec<String>, StatusError> {
    let api: Api<Environment> = Api::all(client.clone());
    let selector = format!(
        "{}={}",
        drover_kube::render::MANAGED_BY.0,
        drover_kube::render::MANAGED_BY.1
    );
    let known: Vec<String> = store.environments()?.into_iter().map(|e| e.name).collect();
    let mut taken = Vec::new();
    for resource in api.list(&ListParams::default().labels(&selector)).await? {
        let name = resource.name_any();
        let Some(status) = resource.status.as_ref() else {
            continue;
        };
        let Some(revision) = status.last_applied_revision.as_deref() else {
            continue;
        };
        if known.contains(&name) {
            continue;
        }
        let Some(state) = desired_at(revision) else {
            tracing::warn!("environment {name}: revision {revision} is not in Git: not taken over");
            continue;
        };
        engine
            .adopt(&environment_and_clusters(&state, &name))
            .await?;
        let keep = resource.spec.rollback.history_limit as usize;
        store.batch(|store| {
            for record in status.history.iter().rev() {
                restore(store, &name, record, String::from("[]"), keep)?;
            }
            if let Some(open) = &status.release {
                let before = open
                    .previous
                    .as_deref()
                    .and_then(&desired_at)
                    .map(|s| snapshot_of(&subset(&s, &name)))
                    .unwrap_or_else(|| String::from("[]"));
                restore(store, &name, open, before, keep)?;
            }
            store.set_environment(&drover_store::EnvironmentStatus {
                name: name.clone(),
                revision: Some(revision.to_owned()),
                summary: status.history.first().map(|r| r.summary.clone()),
                status: sync_of(status),
                message: String::new(),
            })
        })?;
        tracing::info!("environment {name}: taken over at revision {revision}");
        taken.push(name);
    }
    Ok(taken)
}

/// The sync status the resource's Ready condition implies.
fn sync_of(status: &EnvironmentStatus) -> SyncStatus {
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready");
    match ready {
        Some(c) if c.status == ConditionStatus::False && c.reason != "ReconciliationFailed" => {
            SyncStatus::Held
        }
        _ => SyncStatus::Synced,
    }
}

/// `env`'s objects and the clusters (which place them).
fn environment_and_clusters(state: &State, env: &str) -> State {
    state
        .iter()
        .filter(|(k, _)| k.environment == env || k.kind == drover_model::Kind::Cluster)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// One release of the resource's record back in the store.
fn restore(
    store: &Store,
    env: &str,
    record: &ReleaseRecord,
    snapshot: String,
    keep: usize,
) -> Result<(), drover_store::StoreError> {
    let result: ReleaseResult = record.result.parse().unwrap_or(ReleaseResult::Healthy);
    let id = store.start_release(
        &NewRelease {
            environment: env.to_owned(),
            revision: record.revision.clone(),
            summary: record.summary.clone(),
            previous: record.previous.clone(),
            trigger: record.trigger.parse().unwrap_or(Trigger::Git),
            services: record.services.clone(),
            snapshot,
        },
        keep,
    )?;
    if !result.is_open() {
        store.end_release(id, result, &record.reason)?;
    }
    let ms = |t: &str| {
        t.parse::<jiff::Timestamp>()
            .ok()
            .map(|t| t.as_millisecond())
    };
    if let Some(started) = ms(&record.started_at) {
        let ended = record.ended_at.as_deref().and_then(ms);
        store.set_release_times(id, started, if result.is_open() { None } else { ended })?;
    }
    if let Some(revert) = &record.revert {
        store.set_revert(id, revert)?;
    }
    Ok(())
}
