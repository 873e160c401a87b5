//! What a cluster serves: the API versions Drover chooses between, which kinds are
//! cluster-scoped, and how to reach any kind a plain manifest names.

use std::collections::BTreeSet;

use kube::Client;
use kube::api::{ApiResource, GroupVersionKind};
use kube::discovery::Scope;

use crate::cluster::{ClusterError, api_error};
use crate::render::{Apis, ObjectRef, group_of};

/// The kinds Drover renders and always watches, with their resource names.
pub(crate) const RENDERED: [(&str, &str, &str); 9] = [
    ("v1", "Namespace", "namespaces"),
    ("v1", "ResourceQuota", "resourcequotas"),
    ("v1", "LimitRange", "limitranges"),
    ("v1", "Secret", "secrets"),
    ("v1", "Service", "services"),
    ("apps/v1", "Deployment", "deployments"),
    ("apps/v1", "DaemonSet", "daemonsets"),
    ("networking.k8s.io/v1", "Ingress", "ingresses"),
    ("", "HorizontalPodAutoscaler", "horizontalpodautoscalers"),
];

/// How Drover reaches one kind.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub resource: ApiResource,
    pub namespaced: bool,
}

fn gvk(api_version: &str, kind: &str) -> GroupVersionKind {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    GroupVersionKind::gvk(group, version, kind)
}

/// A kind Drover renders, without asking the cluster.
pub(crate) fn rendered(api_version: &str, kind: &str) -> Option<Resolved> {
    let gvk = gvk(api_version, kind);
    let (_, _, plural) = RENDERED.iter().find(|(v, k, _)| {
        // The HorizontalPodAutoscaler's version is discovered; its group is fixed.
        let group = if v.is_empty() {
            "autoscaling"
        } else {
            group_of(v)
        };
        *k == kind && group == gvk.group
    })?;
    Some(Resolved {
        resource: ApiResource::from_gvk_with_plural(&gvk, plural),
        namespaced: kind != "Namespace",
    })
}

/// Any kind, as the cluster serves it (a plain manifest's ConfigMap, Job or custom
/// resource).
pub(crate) async fn resolve(
    cluster: &str,
    client: &Client,
    object: &ObjectRef,
) -> Result<Resolved, ClusterError> {
    if let Some(known) = rendered(&object.api_version, &object.kind) {
        return Ok(known);
    }
    let gvk = gvk(&object.api_version, &object.kind);
    match kube::discovery::pinned_kind(client, &gvk).await {
        Ok((resource, capabilities)) => Ok(Resolved {
            resource,
            namespaced: capabilities.scope == Scope::Namespaced,
        }),
        Err(kube::Error::Api(status)) if status.code == 404 => Err(ClusterError::Api {
            cluster: cluster.to_owned(),
            message: format!(
                "the cluster does not serve `{}` `{}` (is its CustomResourceDefinition installed?)",
                object.api_version, object.kind
            ),
        }),
        Err(kube::Error::Discovery(e)) => Err(ClusterError::Api {
            cluster: cluster.to_owned(),
            message: format!(
                "the cluster does not serve `{}` `{}`: {e}",
                object.api_version, object.kind
            ),
        }),
        Err(e) => Err(api_error(cluster, e)),
    }
}

/// `autoscaling/v2` where the cluster serves it, else `autoscaling/v2beta2`; and every
/// cluster-scoped kind of every group's preferred version. A group that cannot be
/// listed (an aggregated API that is down) is skipped, as kubectl does.
pub(crate) async fn discover(name: &str, client: &Client) -> Result<Apis, ClusterError> {
    let groups = client
        .list_api_groups()
        .await
        .map_err(|e| api_error(name, e))?;
    let served = |group: &str, version: &str| {
        groups
            .groups
            .iter()
            .any(|g| g.name == group && g.versions.iter().any(|v| v.version == version))
    };
    let autoscaling = if served("autoscaling", "v2") {
        "autoscaling/v2"
    } else {
        "autoscaling/v2beta2"
    };
    let mut cluster_scoped = BTreeSet::new();
    let core = client
        .list_core_api_resources("v1")
        .await
        .map_err(|e| api_error(name, e))?;
    let mut lists = vec![("", core)];
    for group in &groups.groups {
        let Some(preferred) = group.preferred_version.as_ref().or(group.versions.first()) else {
            continue;
        };
        match client
            .list_api_group_resources(&preferred.group_version)
            .await
        {
            Ok(list) => lists.push((group.name.as_str(), list)),
            Err(e) => tracing::debug!("cluster {name}: {} not listed: {e}", group.name),
        }
    }
    for (group, list) in lists {
        for resource in list.resources {
            if !resource.namespaced && !resource.name.contains('/') {
                cluster_scoped.insert(format!("{group}/{}", resource.kind));
            }
        }
    }
    Ok(Apis {
        autoscaling: autoscaling.to_owned(),
        cluster_scoped,
    })
}
