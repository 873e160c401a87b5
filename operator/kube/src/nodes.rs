//! Node availability on Kubernetes, as Swarm users know it from `docker node update
//! --availability`: `pause` cordons the Node (nothing new is scheduled there),
//! `drain` cordons it and evicts its Pods through the Eviction API, so
//! PodDisruptionBudgets are respected (as `kubectl drain --ignore-daemonsets` does),
//! `active` uncordons it. Git's `nodes:` of a Cluster say what each listed Node
//! should be; `drover node update` sets an override kept on the Node itself (the
//! `drover.dev/availability` annotation), so it outlives any replica. Level-triggered:
//! every pass cordons or uncordons what differs and evicts what is still on a
//! draining Node.

use drover_model::cluster::Availability;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, EvictParams, ListParams, Patch, PatchParams};
use serde_json::json;

use crate::cluster::{Cluster, ClusterError, api_error};

/// The annotation holding `drover node update`'s override.
pub const OVERRIDE: &str = "drover.dev/availability";

/// What a pass found and did on one Node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeState {
    pub name: String,
    /// In force: the override when there is one, else Git's.
    pub availability: Availability,
    pub overridden: Option<Availability>,
    /// Its `Ready` condition is true.
    pub ready: bool,
    /// Pods on it, DaemonSets' included.
    pub pods: u32,
    /// Why a drain is not finished (a PodDisruptionBudget in the way), if it is not.
    pub waiting: Option<String>,
}

/// Whether a Pod is left where it is by a drain: a DaemonSet's (it would come back at
/// once), a static Pod's mirror, or one that has finished.
fn stays(pod: &Pod) -> bool {
    let daemon = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.kind == "DaemonSet");
    let mirror = pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
    let done = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Succeeded" || p == "Failed");
    daemon || mirror || done
}

impl Cluster {
    /// Makes Node `name` what `git` says (or its override says): cordoned or not, and
    /// emptied while draining.
    pub async fn tend_node(
        &self,
        name: &str,
        git: Availability,
    ) -> Result<NodeState, ClusterError> {
        let nodes: Api<Node> = Api::all(self.client().clone());
        let node = nodes
            .get(name)
            .await
            .map_err(|e| api_error(&self.name, format!("node {name}: {e}")))?;
        let overridden = node
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(OVERRIDE))
            .and_then(|v| Availability::parse(v));
        let availability = overridden.unwrap_or(git);
        let cordoned = node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false);
        let wanted = availability != Availability::Active;
        if cordoned != wanted {
            let patch = json!({"spec": {"unschedulable": wanted}});
            nodes
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| api_error(&self.name, format!("node {name}: {e}")))?;
            tracing::info!(
                "cluster {}: node {name} {}",
                self.name,
                if wanted { "cordoned" } else { "uncordoned" }
            );
        }
        let pods: Api<Pod> = Api::all(self.client().clone());
        let on_it = pods
            .list(&ListParams::default().fields(&format!("spec.nodeName={name}")))
            .await
            .map_err(|e| api_error(&self.name, format!("pods on node {name}: {e}")))?;
        let mut waiting = None;
        if availability == Availability::Drain {
            // A Pod already being deleted is on its way out.
            let leaving = |p: &&Pod| p.metadata.deletion_timestamp.is_some();
            for pod in on_it.items.iter().filter(|p| !stays(p) && !leaving(p)) {
                let namespace = pod.metadata.namespace.clone().unwrap_or_default();
                let pod_name = pod.metadata.name.clone().unwrap_or_default();
                let api: Api<Pod> = Api::namespaced(self.evictions().clone(), &namespace);
                match api.evict(&pod_name, &EvictParams::default()).await {
                    Ok(_) => tracing::info!(
                        "cluster {}: node {name} draining: evicted {namespace}/{pod_name}",
                        self.name
                    ),
                    // The API's answer when a PodDisruptionBudget allows no more.
                    Err(kube::Error::Api(e)) if e.code == 429 => {
                        waiting = Some(format!(
                            "{namespace}/{pod_name} waits for its PodDisruptionBudget"
                        ));
                    }
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => {
                        return Err(api_error(
                            &self.name,
                            format!("evicting {namespace}/{pod_name}: {e}"),
                        ));
                    }
                }
            }
        }
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        Ok(NodeState {
            name: name.to_owned(),
            availability,
            overridden,
            ready,
            pods: on_it.items.len() as u32,
            waiting,
        })
    }

    /// Sets (or with `None` clears) the override of Node `name`; `Ok(false)` when
    /// this cluster has no such Node.
    pub async fn override_node(
        &self,
        name: &str,
        availability: Option<Availability>,
    ) -> Result<bool, ClusterError> {
        let nodes: Api<Node> = Api::all(self.client().clone());
        let found = nodes
            .get_opt(name)
            .await
            .map_err(|e| api_error(&self.name, format!("node {name}: {e}")))?;
        if found.is_none() {
            return Ok(false);
        }
        let patch = json!({"metadata": {"annotations": {OVERRIDE: availability.map(Availability::as_str)}}});
        nodes
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| api_error(&self.name, format!("node {name}: {e}")))?;
        Ok(true)
    }
}
