//! The `Environment` resources: one per environment Git places on a Kubernetes
//! cluster, made from Git's spec (so `kubectl get environments` lists what Git says)
//! and pruned when Git drops it; and kube-runtime's `Controller` over them, whose
//! reconcile writes each one's status ([`crate::status`]) after every pass of Drover's
//! controller, when a workload Drover made changes, and when someone asks with the
//! `reconcile.fluxcd.io/requestedAt` annotation (as `flux reconcile` does).

use std::sync::Arc;
use std::time::Duration;

use drover_control::Controller;
use drover_control::controller::Placements;
use drover_diff::State;
use drover_kube::KubeEngine;
use drover_kube::render::{ENVIRONMENT_LABEL, MANAGED_BY};
use drover_model::Kind;
use drover_model::cluster::Engine as EngineKind;
use drover_model::environment::Environment;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::status::{self, Facts, HISTORY_KEPT};

/// The annotation `flux reconcile` sets to ask for a reconcile now.
pub const REQUESTED_AT: &str = "reconcile.fluxcd.io/requestedAt";
/// The field manager of the resources' spec (Git's).
const MANAGER: &str = "drover";
/// The field manager of their status: its own, so that applying the spec never takes
/// the status's fields away (API servers before 1.22 track both in one list).
const STATUS_MANAGER: &str = "drover-status";

/// What the operator's status writer failed at.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error(transparent)]
    Control(#[from] drover_control::ControlError),
    #[error(transparent)]
    Engine(#[from] drover_control::EngineError),
    #[error(transparent)]
    Store(#[from] drover_store::StoreError),
}

fn selector() -> String {
    format!("{}={}", MANAGED_BY.0, MANAGED_BY.1)
}

/// The environments of `desired` whose cluster is a Kubernetes one, with their spec.
pub fn on_kubernetes(desired: &State) -> Vec<(String, serde_json::Value)> {
    let placements = Placements::of(desired);
    desired
        .iter()
        .filter(|(k, _)| k.kind == Kind::Environment)
        .filter(|(k, _)| placements.engine_of(&k.environment) == Some(EngineKind::Kubernetes))
        .map(|(k, v)| (k.environment.clone(), v["spec"].clone()))
        .collect()
}

/// Makes the Environment resources say what Git says: each one applied with Git's
/// spec, and those Drover made that Git no longer has deleted.
pub async fn mirror(client: &Client, desired: &State) -> Result<(), kube::Error> {
    let api: Api<Environment> = Api::all(client.clone());
    let wanted = on_kubernetes(desired);
    for (name, spec) in &wanted {
        let resource = json!({
            "apiVersion": "drover.dev/v1alpha1",
            "kind": "Environment",
            "metadata": {"name": name, "labels": {MANAGED_BY.0: MANAGED_BY.1}},
            "spec": spec,
        });
        api.patch(
            name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&resource),
        )
        .await?;
    }
    for existing in api.list(&ListParams::default().labels(&selector())).await? {
        let name = existing.name_any();
        if !wanted.iter().any(|(w, _)| *w == name) {
            tracing::info!("environment {name}: no longer in Git, its resource is deleted");
            api.delete(&name, &DeleteParams::default()).await?;
        }
    }
    Ok(())
}

/// What each reconcile needs.
pub struct Context {
    pub control: Arc<Controller<KubeEngine>>,
    pub client: Client,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Context")
    }
}

/// Writes `resource`'s status from what Drover knows of it, if it changed.
async fn reconcile(resource: Arc<Environment>, ctx: Arc<Context>) -> Result<Action, StatusError> {
    let name = resource.name_any();
    let requested = resource.annotations().get(REQUESTED_AT).cloned();
    let previous = resource.status.as_ref();
    if requested.is_some()
        && requested.as_deref() != previous.and_then(|p| p.last_handled_reconcile_at.as_deref())
    {
        ctx.control.wake();
    }
    let followed = ctx.control.followed().await;
    let (record, releases) = ctx.control.with_store(|s| {
        let record = s.environment(&name)?;
        Ok((record, s.releases(&name, HISTORY_KEPT + 1)?))
    })?;
    let inventory = ctx
        .control
        .engine()
        .inventory(&name)?
        .iter()
        .map(|r| status::inventory_entry(&r.api_version, &r.kind, &r.namespace, &r.name))
        .collect();
    let history_limit = resource.spec.rollback.history_limit as usize;
    let next = status::status(&Facts {
        generation: resource.metadata.generation,
        requested_at: requested.as_deref(),
        record: record.as_ref(),
        attempted: followed.attempted.as_deref(),
        rejected: followed.rejected.as_deref(),
        releases: &releases,
        inventory,
        cluster: Some(&resource.spec.cluster),
        history_limit,
        previous,
        now_ms: drover_store::now_ms(),
    });
    if previous != Some(&next) {
        let api: Api<Environment> = Api::all(ctx.client.clone());
        // Applied, not merged: a field the new status leaves out (the release once it
        // is judged) goes away.
        let status = json!({
            "apiVersion": "drover.dev/v1alpha1",
            "kind": "Environment",
            "status": next,
        });
        api.patch_status(
            &name,
            &PatchParams::apply(STATUS_MANAGER).force(),
            &Patch::Apply(&status),
        )
        .await?;
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

fn error_policy(_: Arc<Environment>, error: &StatusError, _: Arc<Context>) -> Action {
    tracing::warn!("environment status: {error}");
    Action::requeue(Duration::from_secs(5))
}

/// Runs the status writer until `shutdown`: kube-runtime's Controller over the
/// Environment resources Drover made, the Deployments it made, and every pass of
/// Drover's controller.
pub async fn run_status(
    ctx: Arc<Context>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let passes = futures::stream::unfold(ctx.control.passes(), |mut rx| async move {
        rx.changed().await.ok()?;
        Some(((), rx))
    });
    let owned = watcher::Config::default().labels(&selector());
    kube::runtime::Controller::new(Api::<Environment>::all(client.clone()), owned.clone())
        .watches(Api::<Deployment>::all(client), owned, |d: Deployment| {
            d.labels()
                .get(ENVIRONMENT_LABEL)
                .map(|env| ObjectRef::<Environment>::new(env))
        })
        .reconcile_all_on(passes)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}
