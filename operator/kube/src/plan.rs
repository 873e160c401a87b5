//! `drover plan` on Kubernetes: what applying an environment would change, asked of
//! the API server by server-side dry run object by object (so defaults, admission and
//! quotas are the cluster's own), and what pruning by the inventory would delete.

use serde::Serialize;
use serde_json::Value;

use crate::cluster::{Cluster, ClusterError};
use crate::drift::{FieldChange, changes};
use crate::render::{FIELD_MANAGER, ObjectRef};

/// What applying would do to one Kubernetes object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "action")]
pub enum Change {
    /// It does not exist: it would be created (`checked` when the dry run could ask
    /// the server; not when its namespace is new too).
    Create {
        checked: bool,
    },
    /// These fields would change.
    Update {
        fields: Vec<FieldChange>,
    },
    Unchanged,
    /// Drover made it and no longer renders it: pruned.
    Delete,
    /// The server would refuse it, or it is not Drover's to touch: why.
    Refused {
        why: String,
    },
}

/// One object of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Planned {
    pub object: ObjectRef,
    #[serde(flatten)]
    pub change: Change,
}

/// Whether a live object carries fields applied by Drover's field manager.
pub(crate) fn managed_by_drover(live: &Value) -> bool {
    live["metadata"]["managedFields"]
        .as_array()
        .is_some_and(|fields| fields.iter().any(|f| f["manager"] == FIELD_MANAGER))
}

/// The plan of applying `rendered` (an environment's objects, in apply order) where
/// Drover's inventory holds `inventory`. Nothing is changed: every apply is a dry run.
pub async fn dry_run(
    cluster: &Cluster,
    rendered: &[Value],
    inventory: &[ObjectRef],
) -> Result<Vec<Planned>, ClusterError> {
    let mut plan = Vec::new();
    let mut new_namespace = false;
    for object in rendered {
        let r = ObjectRef::of(object);
        let live = cluster.get(&r).await?;
        let ours = inventory.iter().any(|i| i.same_object(&r));
        let change = match &live {
            Some(live) if !ours && !managed_by_drover(live) => Change::Refused {
                why: "exists and was not created by Drover; Drover never touches it".to_owned(),
            },
            None if new_namespace && !r.namespace.is_empty() => Change::Create { checked: false },
            _ => match cluster.dry_run(object).await {
                Err(e) => Change::Refused { why: e.to_string() },
                Ok(planned) => match &live {
                    None => Change::Create { checked: true },
                    Some(live) => {
                        let fields = changes(object, live, &planned);
                        if fields.is_empty() {
                            Change::Unchanged
                        } else {
                            Change::Update { fields }
                        }
                    }
                },
            },
        };
        new_namespace |= r.kind == "Namespace" && matches!(change, Change::Create { .. });
        plan.push(Planned { object: r, change });
    }
    for old in inventory {
        if !plan.iter().any(|p| p.object.same_object(old)) {
            plan.push(Planned {
                object: old.clone(),
                change: Change::Delete,
            });
        }
    }
    Ok(plan)
}

/// Why an environment could not be planned against its cluster.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{0}")]
    Placement(String),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("{0}")]
    Render(String),
    #[error("the state database: {0}")]
    Store(#[from] drover_store::StoreError),
}

/// The plan of environment `env` of `desired` (a normalized repo) on the cluster it
/// names, against the inventory Drover recorded in the state database at `database`
/// (none: nothing recorded, so nothing to prune).
pub async fn environment(
    desired: &drover_diff::State,
    env: &str,
    database: Option<&std::path::Path>,
) -> Result<(crate::render::Placement, Vec<Planned>), PlanError> {
    let placement = crate::render::Placement::of(env, |k| desired.get(k).cloned())
        .map_err(PlanError::Placement)?;
    let cluster =
        Cluster::connect(&placement.cluster, placement.spec.context.as_deref(), None).await?;
    let objects = desired
        .iter()
        .filter(|(k, _)| k.environment == env)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let target = placement.target(cluster.apis.clone());
    let (rendered, errors) = crate::render::render_environment(&objects, &target);
    if !errors.is_empty() {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        return Err(PlanError::Render(lines.join("; ")));
    }
    let mut inventory = Vec::new();
    if let Some(database) = database.filter(|d| d.exists()) {
        let applied = drover_store::Applied::open(database, crate::engine::NAME)?;
        for key in applied.observed()?.objects.keys() {
            if key.environment != env {
                continue;
            }
            let made: Vec<ObjectRef> = applied
                .made(key)?
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default();
            inventory.extend(made);
        }
    }
    Ok((
        placement,
        dry_run(&cluster, &rendered.objects, &inventory).await?,
    ))
}
