//! One connected Kubernetes cluster: its client, what discovery found, a watch
//! (reflector) per kind Drover renders — and per kind of the plain manifests it
//! applied, started on first use — and server-side apply, dry run and delete.
//! Watches wake the controller; nothing here polls.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
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

use crate::discovery::{self, RENDERED, Resolved};
use crate::render::{Apis, FIELD_MANAGER, MANAGED_BY, ObjectRef, SERVICE_LABEL};

/// The watch of services' Pods (by their service label, not by Drover's mark: Pods
/// are made by Deployments, not by Drover).
const SERVICE_PODS: &str = "service Pods";

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

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

/// A watched kind: its reflector's store.
#[derive(Clone)]
struct Watched {
    store: Store<DynamicObject>,
    resource: ApiResource,
    namespaced: bool,
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
    /// The same, without retries (see [`Cluster::connect`]).
    evictions: Client,
    pub apis: Apis,
    /// By `group/Kind` (see [`ObjectRef::kind_key`]), and [`SERVICE_PODS`].
    watched: Mutex<BTreeMap<String, Watched>>,
    /// Kinds of plain manifests, by `apiVersion/Kind`, as discovery resolved them.
    resolved: Mutex<BTreeMap<String, Resolved>>,
    /// The last error a watch saw (a refused token, an unreachable server).
    trouble: Arc<Mutex<Option<String>>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    wake: Arc<Notify>,
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
        for task in lock(&self.tasks).iter() {
            task.abort();
        }
    }
}

pub(crate) fn api_error(cluster: &str, e: impl std::fmt::Display) -> ClusterError {
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
    /// The client it talks through.
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// The client evictions go through: an answer of 429 comes back as it is.
    pub(crate) fn evictions(&self) -> &Client {
        &self.evictions
    }

    /// Connects to the cluster of a kubeconfig `context` (the current one if `None`;
    /// in a Pod, the in-cluster config) and discovers what it serves; with `wake`, it
    /// watches what Drover makes and wakes the controller on every change (without,
    /// it only answers requests: `drover plan`).
    pub async fn connect(
        name: &str,
        context: Option<&str>,
        wake: Option<Arc<Notify>>,
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
        // Evictions answer 429 while a PodDisruptionBudget holds: that is an answer,
        // not a failure to retry (kube's default retries 429 for up to 1000 s), so
        // they go through a client of their own that does not retry.
        let mut once = config.clone();
        once.default_retry = false;
        let evictions = Client::try_from(once).map_err(|e| config_error(e.to_string()))?;
        let client = Client::try_from(config).map_err(|e| config_error(e.to_string()))?;
        let apis = discovery::discover(name, &client).await?;
        let cluster = Cluster {
            name: name.to_owned(),
            client,
            evictions,
            apis,
            watched: Mutex::new(BTreeMap::new()),
            resolved: Mutex::new(BTreeMap::new()),
            trouble: Arc::new(Mutex::new(None)),
            tasks: Mutex::new(Vec::new()),
            wake: wake.clone().unwrap_or_default(),
        };
        if wake.is_none() {
            return Ok(cluster);
        }
        for (api_version, kind, _) in RENDERED {
            let api_version = if api_version.is_empty() {
                cluster.apis.autoscaling.as_str()
            } else {
                api_version
            };
            let resolved = discovery::rendered(api_version, kind).expect("a rendered kind");
            let key = ObjectRef::key_of(api_version, kind);
            cluster.watch(key, resolved, &managed_by(), trim);
        }
        let pods = Resolved {
            resource: ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk("", "v1", "Pod"),
                "pods",
            ),
            namespaced: true,
        };
        cluster.watch(SERVICE_PODS.to_owned(), pods, SERVICE_LABEL, trim_pod);
        Ok(cluster)
    }

    fn watch(&self, key: String, resolved: Resolved, selector: &str, trim: fn(&mut DynamicObject)) {
        let ar = resolved.resource.clone();
        let writer = Writer::new(ar.clone());
        let store = writer.as_reader();
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &ar);
        let config = watcher::Config::default().labels(selector);
        let trouble = self.trouble.clone();
        let wake = self.wake.clone();
        let stream =
            reflector::reflector(writer, watcher(api, config).modify(trim)).default_backoff();
        lock(&self.tasks).push(tokio::spawn(async move {
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                match event {
                    Ok(_) => {
                        *lock(&trouble) = None;
                        wake.notify_one();
                    }
                    Err(e) => *lock(&trouble) = Some(e.to_string()),
                }
            }
        }));
        lock(&self.watched).insert(
            key,
            Watched {
                store,
                resource: ar,
                namespaced: resolved.namespaced,
            },
        );
    }

    /// Watches the kind of `object` (a plain manifest's) if nothing does yet, and waits
    /// until the watch has listed once, so its objects are never taken for missing.
    pub async fn watch_kind(&self, object: &ObjectRef) -> Result<(), ClusterError> {
        let key = object.kind_key();
        let known = lock(&self.watched).get(&key).cloned();
        let watched = match known {
            Some(w) => w,
            None => {
                let resolved = self.resolve(object).await?;
                self.watch(key.clone(), resolved, &managed_by(), trim);
                lock(&self.watched)[&key].clone()
            }
        };
        self.wait_listed(&watched).await
    }

    async fn wait_listed(&self, watched: &Watched) -> Result<(), ClusterError> {
        let waited =
            tokio::time::timeout(Duration::from_secs(5), watched.store.wait_until_ready()).await;
        if matches!(waited, Ok(Ok(()))) {
            return Ok(());
        }
        let why = lock(&self.trouble)
            .clone()
            .unwrap_or_else(|| "the API server does not answer".to_owned());
        Err(api_error(&self.name, format!("not watched yet: {why}")))
    }

    async fn resolve(&self, object: &ObjectRef) -> Result<Resolved, ClusterError> {
        let key = format!("{}/{}", object.api_version, object.kind);
        if let Some(known) = lock(&self.resolved).get(&key) {
            return Ok(known.clone());
        }
        let resolved = discovery::resolve(&self.name, &self.client, object).await?;
        lock(&self.resolved).insert(key, resolved.clone());
        Ok(resolved)
    }

    /// Waits (a little) until every watch has listed once; an error says why not.
    pub async fn ready(&self) -> Result<(), ClusterError> {
        let watched: Vec<Watched> = lock(&self.watched).values().cloned().collect();
        for w in &watched {
            self.wait_listed(w).await?;
        }
        Ok(())
    }

    /// What the watches last failed with, while they fail (an API server that went
    /// away): what they show is stale until they recover.
    pub fn trouble(&self) -> Option<ClusterError> {
        lock(&self.trouble)
            .clone()
            .map(|why| api_error(&self.name, format!("its watches fail: {why}")))
    }

    /// A live object as last watched, as JSON (a lookup by key, not a scan).
    pub fn live(&self, object: &ObjectRef) -> Option<Value> {
        let watched = lock(&self.watched).get(&object.kind_key()).cloned()?;
        let mut key =
            reflector::ObjectRef::<DynamicObject>::new_with(&object.name, watched.resource.clone());
        if watched.namespaced && !object.namespace.is_empty() {
            key = key.within(&object.namespace);
        }
        let mut live = serde_json::to_value(watched.store.get(&key)?.as_ref()).ok()?;
        // Objects a list returned carry no apiVersion or kind; health rules read them.
        live["apiVersion"] = Value::from(watched.resource.api_version.clone());
        live["kind"] = Value::from(watched.resource.kind.clone());
        Some(live)
    }

    /// Services' Pods as last watched, by namespace and service: one pass over the
    /// store, however many services ask.
    pub fn service_pods(&self) -> BTreeMap<(String, String), Vec<Value>> {
        let Some(watched) = lock(&self.watched).get(SERVICE_PODS).cloned() else {
            return BTreeMap::new();
        };
        let mut pods: BTreeMap<(String, String), Vec<Value>> = BTreeMap::new();
        for pod in watched.store.state() {
            let service = pod
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_LABEL));
            let (Some(service), Some(namespace)) = (service, &pod.metadata.namespace) else {
                continue;
            };
            if let Ok(value) = serde_json::to_value(pod.as_ref()) {
                pods.entry((namespace.clone(), service.clone()))
                    .or_default()
                    .push(value);
            }
        }
        pods
    }

    async fn api(&self, object: &ObjectRef) -> Result<Api<DynamicObject>, ClusterError> {
        let resolved = self.resolve(object).await?;
        let ar = &resolved.resource;
        Ok(if resolved.namespaced && !object.namespace.is_empty() {
            Api::namespaced_with(self.client.clone(), &object.namespace, ar)
        } else {
            Api::all_with(self.client.clone(), ar)
        })
    }

    /// Applies one rendered object server-side, as Drover's field manager. An object
    /// of that name that Drover did not make is refused, never taken over.
    pub async fn apply(
        &self,
        manifest: &Value,
        created_by_drover: bool,
    ) -> Result<(), ClusterError> {
        self.apply_as(manifest, created_by_drover, false)
            .await
            .map(drop)
    }

    /// What applying would make of `manifest`, asked of the API server (a server-side
    /// dry run): the object as it would be, with the cluster's defaults and admission.
    pub async fn dry_run(&self, manifest: &Value) -> Result<Value, ClusterError> {
        self.apply_as(manifest, true, true).await
    }

    async fn apply_as(
        &self,
        manifest: &Value,
        created_by_drover: bool,
        dry_run: bool,
    ) -> Result<Value, ClusterError> {
        let object = ObjectRef::of(manifest);
        let api = self.api(&object).await?;
        if !created_by_drover {
            let existing = api
                .get_opt(&object.name)
                .await
                .map_err(|e| api_error(&self.name, format!("{object}: {e}")))?;
            if let Some(existing) = existing {
                let existing = serde_json::to_value(existing).unwrap_or_default();
                if !crate::plan::managed_by_drover(&existing) {
                    return Err(ClusterError::NotOurs {
                        cluster: self.name.clone(),
                        object: object.to_string(),
                    });
                }
            }
        }
        let mut params = PatchParams::apply(FIELD_MANAGER).force();
        params.dry_run = dry_run;
        let applied = api
            .patch(&object.name, &params, &Patch::Apply(manifest))
            .await
            .map_err(|e| api_error(&self.name, format!("{object}: {e}")))?;
        Ok(serde_json::to_value(applied).unwrap_or_default())
    }

    /// An object as the API server has it now (not as watched), if it exists.
    pub async fn get(&self, object: &ObjectRef) -> Result<Option<Value>, ClusterError> {
        let api = self.api(object).await?;
        let found = api
            .get_opt(&object.name)
            .await
            .map_err(|e| api_error(&self.name, format!("{object}: {e}")))?;
        Ok(found.and_then(|o| serde_json::to_value(o).ok()))
    }

    /// Deletes an object Drover made (already gone is fine).
    pub async fn delete(&self, object: &ObjectRef) -> Result<(), ClusterError> {
        let api = self.api(object).await?;
        match api.delete(&object.name, &DeleteParams::background()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(e) => Err(api_error(&self.name, format!("{object}: {e}"))),
        }
    }

    /// Restarts a workload's Pods as `kubectl rollout restart` does: a new template
    /// annotation, under a field manager of its own so it is never seen as drift.
    pub async fn restart(&self, object: &ObjectRef, at: &str) -> Result<(), ClusterError> {
        let api = self.api(object).await?;
        let patch = serde_json::json!({"spec": {"template": {"metadata": {"annotations": {
            "drover.dev/restartedAt": at,
        }}}}});
        api.patch(&object.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| api_error(&self.name, format!("{object}: {e}")))?;
        Ok(())
    }
}

/// What a watch keeps of an object: everything but what Drover never reads from a
/// watch — who applied which field, and kubectl's copy of the last applied object —
/// which is most of an object's size (a Pod's managed fields alone are a third of it).
/// Ownership is read from the API server itself, never from a watch.
fn trim(object: &mut DynamicObject) {
    object.metadata.managed_fields = None;
    if let Some(annotations) = &mut object.metadata.annotations {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// What a watch keeps of a service's Pod: what health and `drover status` read (its
/// containers' identity, its node, its phase and its containers' statuses), not the
/// rest of a Pod (volumes, tolerations, conditions…): with a thousand services, Pods
/// are most of what Drover holds.
fn trim_pod(pod: &mut DynamicObject) {
    trim(pod);
    pod.metadata.owner_references = None;
    let data = &mut pod.data;
    let containers: Vec<serde_json::Value> = data["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let mut kept = serde_json::Map::new();
            for field in ["name", "image", "command", "args", "env"] {
                if let Some(v) = c.get(field) {
                    kept.insert(field.to_owned(), v.clone());
                }
            }
            Value::Object(kept)
        })
        .collect();
    let node = data["spec"]["nodeName"].take();
    let phase = data["status"]["phase"].take();
    let statuses = data["status"]["containerStatuses"].take();
    *data = serde_json::json!({
        "spec": {"containers": containers, "nodeName": node},
        "status": {"phase": phase, "containerStatuses": statuses},
    });
}

fn managed_by() -> String {
    format!("{}={}", MANAGED_BY.0, MANAGED_BY.1)
}
