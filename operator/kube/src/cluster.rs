//! One connected Kubernetes cluster: its client, the API versions discovery found, a
//! watch (reflector) per kind Drover renders, and server-side apply and delete of
//! rendered objects. Watches wake the controller; nothing here polls.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::reflector::{self, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Config};
use serde_json::Value;
use tokio::sync::Notify;

use crate::render::{Apis, FIELD_MANAGER, MANAGED_BY, ObjectRef, SERVICE_LABEL};

/// Why a cluster could not be reached or refused what Drover asked.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster {cluster}: cannot read its kubeconfig: {message}")]
    Config { cluster: String, message: String },
    #[error("cluster {cluster}: {message}")]
    Api { cluster: String, message: String },
    #[error(
        "cluster {cluster}: {object} exists and was not created by Drover; Drover never touches it (rename Drover's object, or delete that one)"
    )]
    NotOurs { cluster: String, object: String },
}

/// The kinds Drover renders and watches, with their resource names.
const KINDS: [(&str, &str, &str); 9] = [
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

fn resource(api_version: &str, kind: &str) -> Option<ApiResource> {
    let (_, _, plural) = KINDS.iter().find(|(_, k, _)| *k == kind)?;
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    Some(ApiResource::from_gvk_with_plural(&gvk, plural))
}

/// A watched kind: its reflector's store.
#[derive(Clone)]
struct Watched {
    store: Store<DynamicObject>,
    resource: ApiResource,
}

impl std::fmt::Debug for Watched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Watched")
    }
}

/// A connected cluster.
pub struct Cluster {
    pub name: String,
    client: Client,
    pub apis: Apis,
    watched: BTreeMap<String, Watched>,
    /// The last error a watch saw (a refused token, an unreachable server).
    trouble: Arc<Mutex<Option<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("name", &self.name)
            .field("apis", &self.apis)
            .finish_non_exhaustive()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn api_error(cluster: &str, e: impl std::fmt::Display) -> ClusterError {
    let message = e.to_string();
    let message = if message.contains("401") || message.contains("Unauthorized") {
        format!(
            "the API server refused Drover's credentials ({message}); check the kubeconfig's token or certificate"
        )
    } else if message.contains("403") || message.contains("Forbidden") {
        format!("the API server forbids what Drover asked ({message})")
    } else {
        message
    };
    ClusterError::Api {
        cluster: cluster.to_owned(),
        message,
    }
}

impl Cluster {
    /// Connects to the cluster of a kubeconfig `context` (the current one if `None`;
    /// in a Pod, the in-cluster config), discovers API versions and starts watching.
    pub async fn connect(
        name: &str,
        context: Option<&str>,
        wake: Arc<Notify>,
    ) -> Result<Cluster, ClusterError> {
        let config_error = |message: String| ClusterError::Config {
            cluster: name.to_owned(),
            message,
        };
        let config = match context {
            Some(context) => {
                let kubeconfig = Kubeconfig::read().map_err(|e| config_error(e.to_string()))?;
                let options = KubeConfigOptions {
                    context: Some(context.to_owned()),
                    ..KubeConfigOptions::default()
                };
                Config::from_custom_kubeconfig(kubeconfig, &options)
                    .await
                    .map_err(|e| config_error(e.to_string()))?
            }
            None => Config::infer()
                .await
                .map_err(|e| config_error(e.to_string()))?,
        };
        let client = Client::try_from(config).map_err(|e| config_error(e.to_string()))?;
        let apis = discover(name, &client).await?;
        let mut cluster = Cluster {
            name: name.to_owned(),
            client,
            apis,
            watched: BTreeMap::new(),
            trouble: Arc::new(Mutex::new(None)),
            tasks: Vec::new(),
        };
        for (api_version, kind, _) in KINDS {
            let api_version = if kind == "HorizontalPodAutoscaler" {
                cluster.apis.autoscaling.clone()
            } else {
                api_version.to_owned()
            };
            let ar = resource(&api_version, kind).expect("a known kind");
            let selector = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
            cluster.watch(kind, ar, &selector, wake.clone());
        }
        let pods =
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "Pod"), "pods");
        cluster.watch("Pod", pods, SERVICE_LABEL, wake);
        Ok(cluster)
    }

    fn watch(&mut self, kind: &str, ar: ApiResource, selector: &str, wake: Arc<Notify>) {
        let writer = Writer::new(ar.clone());
        let dyntype = ar.clone();
        let store = writer.as_reader();
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &dyntype);
        let config = watcher::Config::default().labels(selector);
        let trouble = self.trouble.clone();
        let stream = reflector::reflector(writer, watcher(api, config)).default_backoff();
        self.tasks.push(tokio::spawn(async move {
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                match event {
                    Ok(_) => {
                        *trouble.lock().unwrap_or_else(|e| e.into_inner()) = None;
                        wake.notify_one();
                    }
                    Err(e) => {
                        *trouble.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
                    }
                }
            }
        }));
        self.watched.insert(
            kind.to_owned(),
            Watched {
                store,
                resource: ar,
            },
        );
    }

    /// Waits (a little) until every watch has listed once; an error says why not.
    pub async fn ready(&self) -> Result<(), ClusterError> {
        for watched in self.watched.values() {
            let waited =
                tokio::time::timeout(Duration::from_secs(5), watched.store.wait_until_ready())
                    .await;
            if !matches!(waited, Ok(Ok(()))) {
                let why = self
                    .trouble
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
                    .unwrap_or_else(|| "the API server does not answer".to_owned());
                return Err(api_error(&self.name, format!("not watched yet: {why}")));
            }
        }
        Ok(())
    }

    /// A live object as last watched, as JSON (a lookup by key, not a scan).
    pub fn live(&self, object: &ObjectRef) -> Option<Value> {
        let watched = self.watched.get(&object.kind)?;
        let mut key =
            reflector::ObjectRef::<DynamicObject>::new_with(&object.name, watched.resource.clone());
        if !object.namespace.is_empty() {
            key = key.within(&object.namespace);
        }
        watched
            .store
            .get(&key)
            .and_then(|o| serde_json::to_value(o.as_ref()).ok())
    }

    /// Every live object of a kind in a namespace whose label `key` is `value`.
    pub fn labelled(&self, kind: &str, namespace: &str, key: &str, value: &str) -> Vec<Value> {
        let Some(watched) = self.watched.get(kind) else {
            return Vec::new();
        };
        watched
            .store
            .state()
            .into_iter()
            .filter(|o| {
                o.metadata.namespace.as_deref().unwrap_or_default() == namespace
                    && o.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(key))
                        .is_some_and(|v| v == value)
            })
            .filter_map(|o| serde_json::to_value(o.as_ref()).ok())
            .collect()
    }

    fn api(&self, object: &ObjectRef) -> Result<Api<DynamicObject>, ClusterError> {
        let ar = resource(&object.api_version, &object.kind).ok_or_else(|| ClusterError::Api {
            cluster: self.name.clone(),
            message: format!("{object}: Drover does not apply this kind"),
        })?;
        Ok(if object.namespace.is_empty() {
            Api::all_with(self.client.clone(), &ar)
        } else {
            Api::namespaced_with(self.client.clone(), &object.namespace, &ar)
        })
    }

    /// Applies one rendered object server-side, as Drover's field manager. An object
    /// of that name that Drover did not make is refused, never taken over.
    pub async fn apply(
        &self,
        manifest: &Value,
        created_by_drover: bool,
    ) -> Result<(), ClusterError> {
        let object = ObjectRef::of(manifest);
        let api = self.api(&object)?;
        if !created_by_drover {
            let existing = api
                .get_opt(&object.name)
                .await
                .map_err(|e| api_error(&self.name, format!("{object}: {e}")))?;
            if let Some(existing) = existing {
                let ours = existing
                    .metadata
                    .managed_fields
                    .iter()
                    .flatten()
                    .any(|f| f.manager.as_deref() == Some(FIELD_MANAGER));
                if !ours {
                    return Err(ClusterError::NotOurs {
                        cluster: self.name.clone(),
                        object: object.to_string(),
                    });
                }
            }
        }
        let params = PatchParams::apply(FIELD_MANAGER).force();
        api.patch(&object.name, &params, &Patch::Apply(manifest))
            .await
            .map_err(|e| api_error(&self.name, format!("{object}: {e}")))?;
        Ok(())
    }

    /// Deletes an object Drover made (already gone is fine).
    pub async fn delete(&self, object: &ObjectRef) -> Result<(), ClusterError> {
        let api = self.api(object)?;
        match api.delete(&object.name, &DeleteParams::background()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(e) => Err(api_error(&self.name, format!("{object}: {e}"))),
        }
    }

    /// Restarts a workload's Pods as `kubectl rollout restart` does: a new template
    /// annotation, under a field manager of its own so it is never seen as drift.
    pub async fn restart(&self, object: &ObjectRef, at: &str) -> Result<(), ClusterError> {
        let api = self.api(object)?;
        let patch = serde_json::json!({"spec": {"template": {"metadata": {"annotations": {
            "drover.dev/restartedAt": at,
        }}}}});
        api.patch(&object.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| api_error(&self.name, format!("{object}: {e}")))?;
        Ok(())
    }
}

/// `autoscaling/v2` where the cluster serves it, else `autoscaling/v2beta2`.
async fn discover(name: &str, client: &Client) -> Result<Apis, ClusterError> {
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
    Ok(Apis {
        autoscaling: autoscaling.to_owned(),
    })
}
