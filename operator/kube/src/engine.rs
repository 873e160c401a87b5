//! `impl Engine for KubeEngine`: what the controller asks, carried out on Kubernetes.
//! Applied Drover objects and what was made for each (the inventory of Kubernetes
//! objects) are kept in Drover's store; live objects come from the watches. Observing
//! compares each rendering with what is live, so `kubectl scale` or `kubectl edit`
//! shows as drift; applying is server-side apply, and pruning deletes only what the
//! inventory says Drover made.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use drover_control::engine::{
    Capabilities, Engine, EngineError, EngineStatus, Orders, ServiceKey, Usage,
};
use drover_control::view::{InstanceView, NodeView, ServiceView};
use drover_diff::{ObjectKey, State};
use drover_model::Kind;
use drover_model::cluster::{Availability, Engine as EngineKind, KubernetesCluster};
use drover_plan::{Action, Observed};
use drover_release::{Health, Lifecycle, Progress, ServiceProgress};
use drover_store::Applied;
use serde_json::Value;
use tokio::sync::Notify;

use crate::cluster::{Cluster, ClusterError};
use crate::nodes::NodeState;
use crate::render::{self, ObjectRef, Target};
use crate::secrets;

impl From<ClusterError> for EngineError {
    fn from(e: ClusterError) -> EngineError {
        match e {
            ClusterError::NotOurs { .. } => EngineError::Refused(e.to_string()),
            _ => EngineError::Failed(e.to_string()),
        }
    }
}

/// The engine's name in the state database's rows.
pub(crate) const NAME: &str = "kubernetes";

/// The Kubernetes engine.
#[derive(Debug)]
pub struct KubeEngine {
    applied: Mutex<Applied>,
    clusters: tokio::sync::Mutex<BTreeMap<String, (KubernetesCluster, Arc<Cluster>)>>,
    wake: Arc<Notify>,
    /// Each tended Node as the last pass found it, by (cluster, node).
    nodes: Mutex<BTreeMap<(String, String), NodeState>>,
    /// Nodes Git does not list that `drover node update` set: tended too.
    overridden: Mutex<BTreeSet<(String, String)>>,
    /// Nodes whose tending fails (said once).
    failing: Mutex<BTreeSet<(String, String)>>,
    /// The decrypted values Secrets are filled with.
    vault: Arc<drover_secrets::Vault>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where one environment's objects go.
#[derive(Clone)]
struct Place {
    cluster: Arc<Cluster>,
    target: Target,
}

impl KubeEngine {
    /// Opens the engine's records in the state database at `database`. `wake` is the
    /// controller's: every watch event notifies it.
    pub fn open(
        database: &std::path::Path,
        wake: Arc<Notify>,
        vault: Arc<drover_secrets::Vault>,
    ) -> Result<Arc<KubeEngine>, EngineError> {
        Ok(Arc::new(KubeEngine {
            vault,
            applied: Mutex::new(Applied::open(database, NAME)?),
            clusters: tokio::sync::Mutex::new(BTreeMap::new()),
            wake,
            nodes: Mutex::new(BTreeMap::new()),
            overridden: Mutex::new(BTreeSet::new()),
            failing: Mutex::new(BTreeSet::new()),
        }))
    }

    /// Keeps every Node Git lists (or `drover node update` set) as available as it
    /// should be: cordoned, uncordoned, drained. A Node that cannot be tended is said
    /// once, not at every pass; releases go on.
    async fn tend_nodes(&self) {
        let clusters: Vec<(String, KubernetesCluster, Arc<Cluster>)> = self
            .clusters
            .lock()
            .await
            .iter()
            .map(|(name, (spec, cluster))| (name.clone(), spec.clone(), cluster.clone()))
            .collect();
        let extra = lock(&self.overridden).clone();
        for (name, spec, cluster) in clusters {
            let mut wanted: Vec<(String, Availability)> = spec
                .nodes
                .iter()
                .map(|n| (n.name.clone(), n.availability))
                .collect();
            for (_, node) in extra.iter().filter(|(c, _)| *c == name) {
                if !wanted.iter().any(|(w, _)| w == node) {
                    wanted.push((node.clone(), Availability::Active));
                }
            }
            for (node, git) in wanted {
                let key = (name.clone(), node.clone());
                match cluster.tend_node(&node, git).await {
                    Ok(state) => {
                        lock(&self.failing).remove(&key);
                        lock(&self.nodes).insert(key, state);
                    }
                    Err(error) => {
                        lock(&self.nodes).remove(&key);
                        if lock(&self.failing).insert(key) {
                            tracing::warn!("{error}");
                        }
                    }
                }
            }
        }
    }

    fn applied(&self) -> MutexGuard<'_, Applied> {
        self.applied.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The connected cluster `name`, connecting (again, if its spec changed) as needed.
    async fn cluster(
        &self,
        name: &str,
        spec: &KubernetesCluster,
    ) -> Result<Arc<Cluster>, EngineError> {
        let mut clusters = self.clusters.lock().await;
        // Only another context needs another connection: a namespace prefix or a
        // node's availability is read from the spec kept here.
        if let Some((known, cluster)) = clusters.get_mut(name)
            && known.context == spec.context
        {
            *known = spec.clone();
            return Ok(cluster.clone());
        }
        let cluster = Arc::new(
            Cluster::connect(name, spec.context.as_deref(), Some(self.wake.clone())).await?,
        );
        clusters.insert(name.to_owned(), (spec.clone(), cluster.clone()));
        Ok(cluster)
    }

    /// Where `env`'s objects go, from its Environment and Cluster as `lookup` finds
    /// them (applied, or about to be).
    async fn place(
        &self,
        env: &str,
        lookup: impl Fn(&ObjectKey) -> Option<Value>,
    ) -> Result<Place, EngineError> {
        let placement = render::Placement::of(env, lookup).map_err(EngineError::NotFound)?;
        let connected = self.cluster(&placement.cluster, &placement.spec).await?;
        let target = placement.target(connected.apis.clone());
        Ok(Place {
            cluster: connected,
            target,
        })
    }

    /// Every environment's place in `state`, each connected and watched once.
    async fn places(&self, state: &State) -> Result<BTreeMap<String, Place>, EngineError> {
        let mut places = BTreeMap::new();
        for env in state
            .keys()
            .filter(|k| k.kind != Kind::Cluster)
            .map(|k| &k.environment)
        {
            if !places.contains_key(env) {
                let place = self.place(env, |k| state.get(k).cloned()).await?;
                place.cluster.ready().await?;
                places.insert(env.clone(), place);
            }
        }
        Ok(places)
    }

    /// Every Kubernetes object Drover made for `env`'s objects (its inventory).
    pub fn inventory(&self, env: &str) -> Result<Vec<ObjectRef>, EngineError> {
        let made = self.applied().made_in(env)?;
        Ok(made
            .iter()
            .flat_map(|t| serde_json::from_str::<Vec<ObjectRef>>(t).unwrap_or_default())
            .collect())
    }

    /// Records `state` as applied without applying anything: what another replica
    /// applied before this one took over (its objects as that revision renders them,
    /// with what each rendering made). Clusters first, so each object finds its place.
    pub async fn adopt(&self, state: &State) -> Result<(), EngineError> {
        let mut keys: Vec<&ObjectKey> = state.keys().collect();
        keys.sort_by_key(|k| k.kind != Kind::Cluster);
        for key in keys {
            let value = &state[key];
            let made = if key.kind == Kind::Cluster {
                Vec::new()
            } else {
                let place = self
                    .place(&key.environment, |k| state.get(k).cloned())
                    .await?;
                render::render(key, value, &place.target)
                    .map_err(|e| EngineError::Refused(e.to_string()))?
                    .objects
                    .iter()
                    .map(ObjectRef::of)
                    .collect()
            };
            let action = Action::Create {
                key: key.clone(),
                value: value.clone(),
            };
            let made = serde_json::to_string(&made).unwrap_or_else(|_| "[]".to_owned());
            self.applied().record(&action, &made)?;
        }
        Ok(())
    }

    fn made(&self, key: &ObjectKey) -> Result<Vec<ObjectRef>, EngineError> {
        let text = self.applied().made(key)?;
        Ok(text
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default())
    }

    /// Applies the objects `key` renders to, then prunes what it made before and no
    /// longer renders; returns what it made.
    async fn apply_rendered(
        &self,
        place: &Place,
        key: &ObjectKey,
        value: &Value,
        lookup: &(dyn Fn(&ObjectKey) -> Option<Value> + Sync),
    ) -> Result<Vec<ObjectRef>, EngineError> {
        let mut rendered = render::render(key, value, &place.target)
            .map_err(|e| EngineError::Refused(e.to_string()))?;
        for object in &mut rendered.objects {
            match key.kind {
                Kind::Secret if object["kind"] == "Secret" => {
                    secrets::fill(&self.vault, key, value, object)?
                }
                Kind::Service => {
                    if let Some(sum) = secrets::checksum(lookup, &key.environment, value) {
                        secrets::annotate(object, &sum);
                    }
                }
                _ => {}
            }
        }
        for warning in &rendered.warnings {
            tracing::warn!("{}: {warning}", key.environment);
        }
        let before = self.made(key)?;
        let mut made = Vec::new();
        for object in &rendered.objects {
            let r = ObjectRef::of(object);
            let ours = before.iter().any(|b| b.same_object(&r));
            place.cluster.apply(object, ours).await?;
            if key.kind == Kind::Manifest {
                // Seen live from now on: drift and health.
                place.cluster.watch_kind(&r).await?;
            }
            made.push(r);
        }
        for old in before
            .iter()
            .filter(|b| !made.iter().any(|m| m.same_object(b)))
        {
            place.cluster.delete(old).await?;
        }
        Ok(made)
    }

    /// The observed value of an applied object: as applied, or with what drifted.
    fn observe_one(&self, place: &Place, key: &ObjectKey, value: &Value) -> Value {
        let Ok(rendered) = render::render(key, value, &place.target) else {
            return value.clone();
        };
        let mut observed = value.clone();
        for object in &rendered.objects {
            let r = ObjectRef::of(object);
            let live = place.cluster.live(&r);
            let drift = match &live {
                None => format!("{r} is missing"),
                Some(live) => match crate::drift::drifted(object, live) {
                    None if key.kind == Kind::Secret => {
                        match secrets::changed_key(&self.vault, key, value, live) {
                            Some(k) => format!("{r}: data.{k} changed"),
                            None => continue,
                        }
                    }
                    None => continue,
                    Some(path) => format!("{r}: {path} changed"),
                },
            };
            // Replicas, which people change by hand, show in the model's own terms.
            let replicas = live.as_ref().map(|l| &l["spec"]["replicas"]);
            match replicas {
                Some(n)
                    if key.kind == Kind::Service && drift.ends_with(": spec.replicas changed") =>
                {
                    observed["spec"]["replicas"] = n.clone();
                }
                _ => {
                    observed["metadata"]["annotations"][drover_diff::DRIFT_ANNOTATION] =
                        Value::from(drift)
                }
            }
        }
        observed
    }

    /// Watches the kinds of the plain manifests `state` holds, so that what they made
    /// is seen live (a kind the cluster no longer serves is left to show as missing).
    async fn watch_manifests(
        &self,
        state: &State,
        places: &BTreeMap<String, Place>,
    ) -> Result<(), EngineError> {
        for key in state.keys().filter(|k| k.kind == Kind::Manifest) {
            let Some(place) = places.get(&key.environment) else {
                continue;
            };
            for object in self.made(key)? {
                if let Err(e) = place.cluster.watch_kind(&object).await {
                    tracing::debug!("{}: {object} not watched: {e}", key.environment);
                }
            }
        }
        Ok(())
    }

    /// Every service's and plain manifest's progress, from one read of the Pods.
    fn progress(
        &self,
        state: &State,
        places: &BTreeMap<String, Place>,
    ) -> Result<BTreeMap<ObjectKey, (ServiceProgress, Vec<Value>)>, EngineError> {
        let mut pods: BTreeMap<String, BTreeMap<(String, String), Vec<Value>>> = BTreeMap::new();
        let mut progress = BTreeMap::new();
        for (key, value) in state {
            let Some(place) = places.get(&key.environment) else {
                continue;
            };
            let (p, service_pods) = match key.kind {
                Kind::Service => {
                    let by_service = pods
                        .entry(place.cluster.name.clone())
                        .or_insert_with(|| place.cluster.service_pods());
                    let mine = by_service
                        .remove(&(place.target.namespace.clone(), key.name.clone()))
                        .unwrap_or_default();
                    (progress_of(place, key, value, &mine), mine)
                }
                Kind::Manifest => {
                    let made = self.made(key)?;
                    let live = made.first().and_then(|r| place.cluster.live(r));
                    (crate::health::object_progress(live.as_ref()), Vec::new())
                }
                _ => continue,
            };
            progress.insert(key.clone(), (p, service_pods));
        }
        Ok(progress)
    }
}

/// The workload a service renders to: its DaemonSet in global mode, else its
/// Deployment.
fn workload_ref(place: &Place, key: &ObjectKey, value: &Value) -> ObjectRef {
    let kind = if value["spec"]["mode"] == "global" {
        "DaemonSet"
    } else {
        "Deployment"
    };
    ObjectRef {
        api_version: "apps/v1".into(),
        kind: kind.into(),
        namespace: place.target.namespace.clone(),
        name: key.name.clone(),
    }
}

fn progress_of(place: &Place, key: &ObjectKey, value: &Value, pods: &[Value]) -> ServiceProgress {
    let live = place.cluster.live(&workload_ref(place, key, value));
    let pods: Vec<&Value> = pods.iter().collect();
    crate::health::progress(live.as_ref(), &pods)
}

fn node_view(cluster: &str, n: &NodeState) -> NodeView {
    let mut state = if n.ready { "ready" } else { "not-ready" }.to_owned();
    if let Some(waiting) = &n.waiting {
        state = format!("{state}; draining: {waiting}");
    }
    NodeView {
        name: n.name.clone(),
        cluster: cluster.to_owned(),
        role: "kubernetes".into(),
        availability: n.availability.as_str().into(),
        availability_override: n.overridden.map(|a| a.as_str().to_owned()),
        status: state,
        instances: n.pods,
        agent_pid: None,
        cpu: String::new(),
        memory: String::new(),
        cpu_used_millis: 0,
        memory_used_bytes: 0,
    }
}

fn instance_view(env: &str, service: &str, pod: &Value) -> InstanceView {
    let statuses = pod["status"]["containerStatuses"].as_array();
    let ready = statuses.is_some_and(|s| !s.is_empty() && s.iter().all(|c| c["ready"] == true));
    let restarts = statuses.map_or(0, |s| {
        s.iter()
            .map(|c| c["restartCount"].as_u64().unwrap_or(0) as u32)
            .sum()
    });
    InstanceView {
        id: pod["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        environment: env.to_owned(),
        service: service.to_owned(),
        node: pod["spec"]["nodeName"].as_str().unwrap_or("-").to_owned(),
        state: pod["status"]["phase"]
            .as_str()
            .unwrap_or("Pending")
            .to_lowercase(),
        ready,
        pid: None,
        port: None,
        restarts,
        cpu_millis: 0,
        memory_bytes: 0,
        current: true,
        last_failure: None,
    }
}

impl Engine for KubeEngine {
    fn kinds(&self) -> &[EngineKind] {
        &[EngineKind::Kubernetes]
    }

    fn capabilities(&self, _: EngineKind) -> Capabilities {
        Capabilities {
            own_rolling_update: true,
            node_availability: true,
            // Each apply waits on the API server (and etcd's fsync): a few at once
            // keep it busy without flooding it.
            concurrent_applies: 8,
        }
    }

    async fn observe(&self) -> Result<Observed, EngineError> {
        let mut observed = self.applied().observed()?;
        let places = self.places(&observed.objects).await?;
        self.watch_manifests(&observed.objects, &places).await?;
        for (key, value) in observed.objects.iter_mut() {
            if let Some(place) = places.get(&key.environment) {
                *value = self.observe_one(place, key, value);
            }
        }
        Ok(observed)
    }

    async fn apply(&self, _: EngineKind, action: &Action) -> Result<(), EngineError> {
        let key = action.key();
        // The action's own value stands in for what is applied: an Environment is
        // placed by the spec it is about to get.
        let incoming = match action {
            Action::Create { value, .. } | Action::Update { value, .. } => Some(value),
            Action::Delete { .. } => None,
        };
        let lookup = |k: &ObjectKey| match incoming {
            Some(value) if k == key => Some(value.clone()),
            _ => self.applied().value(k).ok().flatten(),
        };
        let made = match (incoming, key.kind) {
            (Some(value), Kind::Cluster) => {
                let spec: KubernetesCluster =
                    serde_json::from_value(value["spec"]["kubernetes"].clone()).unwrap_or_default();
                self.cluster(&key.name, &spec).await?;
                Vec::new()
            }
            (Some(value), _) => {
                let place = self.place(&key.environment, lookup).await?;
                let made = self.apply_rendered(&place, key, value, &lookup).await?;
                if key.kind == Kind::Secret {
                    // A new value rolls the Deployments that mount it: the state as it
                    // will be once this is recorded.
                    let mut state = self.applied().observed()?.objects;
                    state.insert(key.clone(), value.clone());
                    let in_state = |k: &ObjectKey| state.get(k).cloned();
                    for (user, user_value) in secrets::users(&state, &key.environment, &key.name) {
                        self.apply_rendered(&place, user, user_value, &in_state)
                            .await?;
                    }
                }
                made
            }
            (None, Kind::Cluster) => {
                self.clusters.lock().await.remove(&key.name);
                Vec::new()
            }
            (None, _) => {
                let place = self.place(&key.environment, lookup).await?;
                for object in self.made(key)? {
                    place.cluster.delete(&object).await?;
                }
                Vec::new()
            }
        };
        let made = serde_json::to_string(&made).unwrap_or_else(|_| "[]".to_owned());
        Ok(self.applied().record(action, &made)?)
    }

    async fn converge(
        &self,
        _: EngineKind,
        _orders: &Orders,
    ) -> Result<BTreeMap<ServiceKey, ServiceProgress>, EngineError> {
        let state = self.applied().observed()?.objects;
        let places = self.places(&state).await?;
        // No release is judged from what failing watches last saw (an API server that
        // went away); `drover status` still answers from it.
        for place in places.values() {
            if let Some(trouble) = place.cluster.trouble() {
                return Err(trouble.into());
            }
        }
        self.tend_nodes().await;
        // Plain manifests' kinds are watched already: by this pass's `observe`, and by
        // `apply` for a kind first applied since.
        Ok(self
            .progress(&state, &places)?
            .into_iter()
            .map(|(key, (progress, _))| ((key.environment, key.name), progress))
            .collect())
    }

    async fn status(&self) -> Result<EngineStatus, EngineError> {
        let state = self.applied().observed()?.objects;
        let places = self.places(&state).await?;
        let mut status = EngineStatus::default();
        for (key, (progress, pods)) in self.progress(&state, &places)? {
            let value = &state[&key];
            let instances: Vec<InstanceView> = pods
                .iter()
                .map(|p| instance_view(&key.environment, &key.name, p))
                .collect();
            let ready = match key.kind {
                Kind::Manifest => u32::from(progress.progress == Progress::Healthy),
                _ => instances.iter().filter(|i| i.ready).count() as u32,
            };
            let state = Lifecycle::of(&progress.progress, ready);
            status.services.push(ServiceView {
                version: value["spec"]["version"].as_str().map(str::to_owned),
                state,
                health: Health::of(state, instances.len().max(ready as usize)),
                ready,
                desired: value["spec"]["replicas"].as_u64().unwrap_or(1) as u32,
                message: match &progress.progress {
                    Progress::Failed { why } => why.clone(),
                    _ => progress.detail.clone(),
                },
                environment: key.environment,
                name: key.name,
            });
            status.instances.extend(instances);
        }
        status.nodes = lock(&self.nodes)
            .iter()
            .map(|((cluster, _), n)| node_view(cluster, n))
            .collect();
        Ok(status)
    }

    async fn usage(&self, _env: &str, _service: &str) -> Option<Usage> {
        // A HorizontalPodAutoscaler scales services on Kubernetes.
        None
    }

    async fn redeploy(&self, env: &str, service: &str) -> Result<String, EngineError> {
        let key = ObjectKey {
            environment: env.to_owned(),
            kind: Kind::Service,
            name: service.to_owned(),
        };
        let lookup = |k: &ObjectKey| self.applied().value(k).ok().flatten();
        let Some(value) = lookup(&key) else {
            return Err(EngineError::NotFound(format!(
                "no service {service} in {env}"
            )));
        };
        let place = self.place(env, lookup).await?;
        let workload = workload_ref(&place, &key, &value);
        let at = format!("{}", drover_store::now_ms());
        place.cluster.restart(&workload, &at).await?;
        Ok(format!("{workload}: every Pod is replaced"))
    }

    async fn set_availability(
        &self,
        node: &str,
        availability: Option<Availability>,
    ) -> Result<String, EngineError> {
        let clusters: Vec<(String, Arc<Cluster>)> = self
            .clusters
            .lock()
            .await
            .iter()
            .map(|(name, (_, cluster))| (name.clone(), cluster.clone()))
            .collect();
        for (name, cluster) in clusters {
            if cluster.override_node(node, availability).await? {
                lock(&self.overridden).insert((name.clone(), node.to_owned()));
                self.wake.notify_one();
                return Ok(match availability {
                    Some(a) => format!(
                        "node {node} (cluster {name}): availability {} until cleared",
                        a.as_str()
                    ),
                    None => format!("node {node} (cluster {name}): back to what Git says"),
                });
            }
        }
        Err(EngineError::NotFound(format!(
            "no Kubernetes cluster Drover drives has a node {node}"
        )))
    }

    fn due(&self) -> Option<Instant> {
        // Watches wake the controller; its own resync is the safety net.
        None
    }
}
