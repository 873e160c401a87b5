//! `impl Engine for SwarmEngine`: what the controller asks, carried out on Docker
//! swarms. Applied Drover objects and what was made for each (the inventory: services,
//! networks, secrets) are kept in Drover's store; live objects are read from the
//! Engine API each pass, and its event stream wakes the controller. Observing compares
//! each rendering with what runs, so `docker service scale` or `docker service update`
//! shows as drift; pruning removes only what the inventory says Drover made, and only
//! while it still carries Drover's label.

mod live;
mod views;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use drover_control::engine::{
    Capabilities, Engine, EngineError, EngineStatus, Orders, ServiceKey, Usage,
};
use drover_diff::{DRIFT_ANNOTATION, ObjectKey, State};
use drover_model::Kind;
use drover_model::cluster::{Availability, Engine as EngineKind, SwarmCluster};
use drover_model::service::ServiceSpec;
use drover_plan::{Action, Observed};
use drover_release::{Progress, ServiceProgress};
use drover_store::Applied;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Notify;

use crate::client::{Swarm, SwarmError, endpoint_of};
use crate::nodes::NodeState;
use crate::render::{self, Target};
use crate::types::is_ours;
use live::{Drift, Live};

impl From<SwarmError> for EngineError {
    fn from(e: SwarmError) -> EngineError {
        match e {
            SwarmError::NotOurs { .. } => EngineError::Refused(e.to_string()),
            _ => EngineError::Failed(e.to_string()),
        }
    }
}

/// The engine's name in the state database's rows.
const NAME: &str = "swarm";

/// Something Drover made on a swarm for one of its objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "lowercase")]
enum Made {
    Service(String),
    Network(String),
    Secret(String),
}

/// A connected swarm and the task that turns its events into passes.
#[derive(Debug)]
struct Connected {
    spec: SwarmCluster,
    swarm: Arc<Swarm>,
    events: tokio::task::JoinHandle<()>,
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.events.abort();
    }
}

/// The Docker Swarm engine.
#[derive(Debug)]
pub struct SwarmEngine {
    applied: Mutex<Applied>,
    swarms: tokio::sync::Mutex<BTreeMap<String, Connected>>,
    wake: Arc<Notify>,
    /// Each node as the last pass found it, by (cluster, hostname).
    nodes: Mutex<BTreeMap<(String, String), NodeState>>,
    /// Problems said once, not at every pass.
    said: Mutex<BTreeSet<String>>,
    /// Some service was still rolling at the last pass.
    rolling: AtomicBool,
    /// The decrypted values secrets are created with.
    vault: Arc<drover_secrets::Vault>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where one environment's objects go.
#[derive(Debug, Clone)]
struct Place {
    swarm: Arc<Swarm>,
    target: Target,
}

/// Wakes the controller at each event of `swarm`, reconnecting after a second when the
/// stream ends (dockerd restarting).
async fn follow_events(swarm: Arc<Swarm>, wake: Arc<Notify>) {
    loop {
        let ended = swarm.events(|| wake.notify_one()).await;
        tracing::debug!("swarm {}: events: {ended:?}", swarm.name);
        wake.notify_one();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Removes a network once the tasks of the services removed before it have left it
/// (the engine refuses while they hold endpoints on it: a few seconds at most).
async fn remove_network(swarm: &Swarm, id: &str) -> Result<(), SwarmError> {
    let mut tries = 0;
    loop {
        match swarm.remove_network(id).await {
            Err(e) if e.to_string().contains("active endpoints") && tries < 60 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            done => return done,
        }
    }
}

impl SwarmEngine {
    /// Opens the engine's records in the state database at `database`. `wake` is the
    /// controller's: every event of a swarm notifies it.
    pub fn open(
        database: &std::path::Path,
        wake: Arc<Notify>,
        vault: Arc<drover_secrets::Vault>,
    ) -> Result<Arc<SwarmEngine>, EngineError> {
        Ok(Arc::new(SwarmEngine {
            vault,
            applied: Mutex::new(Applied::open(database, NAME)?),
            swarms: tokio::sync::Mutex::new(BTreeMap::new()),
            wake,
            nodes: Mutex::new(BTreeMap::new()),
            said: Mutex::new(BTreeSet::new()),
            rolling: AtomicBool::new(false),
        }))
    }

    fn applied(&self) -> MutexGuard<'_, Applied> {
        lock(&self.applied)
    }

    /// Says `text` once (until `unsay`).
    fn say_once(&self, text: String) {
        if lock(&self.said).insert(text.clone()) {
            tracing::warn!("{text}");
        }
    }

    /// The connected swarm `name`, connecting (again, if its endpoint changed).
    async fn swarm(&self, name: &str, spec: &SwarmCluster) -> Result<Arc<Swarm>, EngineError> {
        let mut swarms = self.swarms.lock().await;
        if let Some(known) = swarms.get_mut(name)
            && known.spec.endpoint == spec.endpoint
        {
            known.spec = spec.clone();
            return Ok(known.swarm.clone());
        }
        let endpoint = endpoint_of(spec.endpoint.as_deref());
        let swarm = Arc::new(Swarm::connect(name, &endpoint)?);
        let events = tokio::spawn(follow_events(swarm.clone(), self.wake.clone()));
        swarms.insert(
            name.to_owned(),
            Connected {
                spec: spec.clone(),
                swarm: swarm.clone(),
                events,
            },
        );
        Ok(swarm)
    }

    /// Where `env`'s objects go, from its Environment and Cluster as `lookup` finds
    /// them (applied, or about to be).
    async fn place(
        &self,
        env: &str,
        lookup: impl Fn(&ObjectKey) -> Option<Value>,
    ) -> Result<Place, EngineError> {
        let find = |kind, environment: &str, name: &str| {
            lookup(&ObjectKey {
                environment: environment.to_owned(),
                kind,
                name: name.to_owned(),
            })
        };
        let environment = find(Kind::Environment, env, env).ok_or_else(|| {
            EngineError::NotFound(format!("environment {env} is not applied yet"))
        })?;
        let cluster = environment["spec"]["cluster"].as_str().unwrap_or_default();
        let cluster_value = find(Kind::Cluster, "", cluster).ok_or_else(|| {
            EngineError::NotFound(format!("cluster {cluster} is not applied yet"))
        })?;
        let spec: SwarmCluster =
            serde_json::from_value(cluster_value["spec"]["swarm"].clone()).unwrap_or_default();
        Ok(Place {
            swarm: self.swarm(cluster, &spec).await?,
            target: Target::of(env, &environment),
        })
    }

    /// Every environment's place in `state`, and each swarm's live objects, read once.
    async fn places(
        &self,
        state: &State,
    ) -> Result<(BTreeMap<String, Place>, BTreeMap<String, Live>), EngineError> {
        let mut places = BTreeMap::new();
        let mut lives = BTreeMap::new();
        for env in state
            .keys()
            .filter(|k| k.kind != Kind::Cluster)
            .map(|k| &k.environment)
        {
            if places.contains_key(env) {
                continue;
            }
            let place = self.place(env, |k| state.get(k).cloned()).await?;
            if !lives.contains_key(&place.swarm.name) {
                place.swarm.ready().await?;
                lives.insert(place.swarm.name.clone(), Live::read(&place.swarm).await?);
            }
            places.insert(env.clone(), place);
        }
        Ok((places, lives))
    }

    fn made(&self, key: &ObjectKey) -> Result<Vec<Made>, EngineError> {
        let text = self.applied().made(key)?;
        Ok(text
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default())
    }

    /// A service's spec as it should run now, ids in place; `None` while its network
    /// or a secret it mounts is not there yet.
    fn rendered(
        &self,
        place: &Place,
        key: &ObjectKey,
        value: &Value,
        secrets: &render::SecretVersions,
        live: &Live,
    ) -> Result<(Option<Value>, Vec<String>), EngineError> {
        let spec: ServiceSpec = serde_json::from_value(value["spec"].clone())
            .map_err(|e| EngineError::Refused(format!("service {}: {e}", key.name)))?;
        let rendered = render::service(&place.target, &key.name, &spec, secrets);
        let mut out = rendered.spec;
        Ok((
            live::resolve(&mut out, live).map(|()| out),
            rendered.warnings,
        ))
    }

    /// Creates or updates one service (Swarm's own rollback when `back`), mounting
    /// the `secrets` versions.
    async fn apply_service(
        &self,
        place: &Place,
        key: &ObjectKey,
        value: &Value,
        secrets: &render::SecretVersions,
        back: bool,
    ) -> Result<Vec<Made>, EngineError> {
        let live = Live::ids(&place.swarm).await?;
        let (spec, warnings) = self.rendered(place, key, value, secrets, &live)?;
        for warning in warnings {
            self.say_once(format!("{}: {warning}", key.environment));
        }
        let name = place.target.service_name(&key.name);
        let Some(spec) = spec else {
            return Err(EngineError::Failed(format!(
                "service {name}: its network or a secret it mounts is not on swarm {} yet",
                place.swarm.name
            )));
        };
        match place.swarm.service(&name).await? {
            None => place.swarm.create_service(&spec).await?,
            Some(existing) if !is_ours(existing.labels()) => {
                return Err(SwarmError::NotOurs {
                    cluster: place.swarm.name.clone(),
                    kind: "service",
                    name,
                }
                .into());
            }
            Some(_) if back => {
                if let Err(e) = place.swarm.update_service(&name, &spec, true).await {
                    // No previous spec to go back to: the snapshot's, with the update
                    // settings it has.
                    tracing::info!(
                        "{name}: Swarm's rollback refused ({e}); updating to the release's previous spec"
                    );
                    place.swarm.update_service(&name, &spec, false).await?;
                }
            }
            Some(_) => place.swarm.update_service(&name, &spec, false).await?,
        }
        Ok(vec![Made::Service(name)])
    }

    /// Creates each key's version of a secret, then moves the services that mount it
    /// to the new versions (the old ones go once nothing mounts them).
    async fn apply_secret(
        &self,
        place: &Place,
        key: &ObjectKey,
        value: &Value,
    ) -> Result<Vec<Made>, EngineError> {
        let mut made = Vec::new();
        for version in render::secret_versions(&place.target, &key.name, value) {
            let plain = self
                .vault
                .get(&key.environment, &key.name, &version.key, &version.fingerprint)
                .ok_or_else(|| {
                    EngineError::Failed(format!(
                        "secret {}: the value of key `{}` is not decrypted (the control plane holds no key that opens it)",
                        key.name, version.key
                    ))
                })?;
            if plain.expose().is_empty() {
                return Err(EngineError::Refused(format!(
                    "secret {}: key `{}` is empty, and Swarm refuses empty secrets",
                    key.name, version.key
                )));
            }
            place
                .swarm
                .ensure_secret(&version.name, &version.labels, plain.expose())
                .await?;
            made.push(Made::Secret(version.name));
        }
        // The services render with the new versions: the state as it will be once
        // this secret is recorded.
        let mut state = self.applied().observed()?.objects;
        state.insert(key.clone(), value.clone());
        let versions = live::secret_versions(&state, &place.target);
        let mounts = |v: &Value| {
            v["spec"]["secrets"]
                .as_array()
                .is_some_and(|s| s.iter().any(|m| m["name"] == key.name.as_str()))
        };
        for (service, service_value) in state.iter().filter(|(k, v)| {
            k.environment == key.environment && k.kind == Kind::Service && mounts(v)
        }) {
            self.apply_service(place, service, service_value, &versions, false)
                .await?;
        }
        Ok(made)
    }

    /// Removes what Drover made for `key`, where it still carries Drover's label.
    async fn remove(&self, place: &Place, key: &ObjectKey) -> Result<(), EngineError> {
        for made in self.made(key)? {
            match made {
                Made::Service(name) => {
                    if let Some(s) = place.swarm.service(&name).await?
                        && is_ours(s.labels())
                    {
                        place.swarm.remove_service(&name).await?;
                    }
                }
                Made::Network(name) => {
                    let live = Live::ids(&place.swarm).await?;
                    if let Some(id) = live.networks.get(&name) {
                        remove_network(&place.swarm, id).await?;
                    }
                }
                // Unused versions go at the next pass (`collect_secrets`): a service
                // being removed may still mount one.
                Made::Secret(_) => {}
            }
        }
        Ok(())
    }

    /// Removes Drover's secret versions that no service mounts and no applied Secret
    /// names (the versions a new value replaced).
    async fn collect_secrets(
        &self,
        state: &State,
        swarm: &Swarm,
        live: &Live,
    ) -> Result<(), EngineError> {
        let current: BTreeSet<String> = state
            .keys()
            .filter(|k| k.kind == Kind::Secret)
            .flat_map(|k| self.made(k).unwrap_or_default())
            .filter_map(|m| match m {
                Made::Secret(name) => Some(name),
                _ => None,
            })
            .collect();
        let mounted = live.mounted_secrets();
        for (name, id) in &live.secrets {
            if current.contains(name) || mounted.contains(id) {
                continue;
            }
            match swarm.remove_secret(id).await {
                Ok(()) => tracing::info!(
                    "swarm {}: secret {name} removed: no service mounts it",
                    swarm.name
                ),
                // Still in use by a task on its way out: next pass.
                Err(e) => tracing::debug!("secret {name} stays for now: {e}"),
            }
        }
        Ok(())
    }

    /// The observed value of an applied object: as applied, or with what drifted.
    fn observe_one(
        &self,
        place: &Place,
        key: &ObjectKey,
        value: &Value,
        live: &Live,
        secrets: &render::SecretVersions,
    ) -> Value {
        let mut observed = value.clone();
        let drift = match key.kind {
            Kind::Service => {
                let name = place.target.service_name(&key.name);
                match self.rendered(place, key, value, secrets, live) {
                    Ok((Some(spec), _)) => live::drift(&spec, live.services.get(&name)),
                    Ok((None, _)) => Some(Drift::Field("its network or a secret".into())),
                    Err(_) => None,
                }
                .map(|d| (name, d))
            }
            Kind::Environment => {
                let name = place.target.network_name();
                (!live.networks.contains_key(&name)).then_some((name, Drift::Missing))
            }
            Kind::Secret => self
                .made(key)
                .unwrap_or_default()
                .into_iter()
                .find_map(|m| match m {
                    Made::Secret(name) if !live.secrets.contains_key(&name) => {
                        Some((name, Drift::Missing))
                    }
                    _ => None,
                }),
            _ => None,
        };
        match drift {
            None => {}
            Some((_, Drift::Replicas(n))) => observed["spec"]["replicas"] = Value::from(n),
            Some((name, d)) => {
                let text = match d {
                    Drift::Missing => format!("{name} is missing"),
                    Drift::Field(path) => format!("{name}: {path} changed"),
                    Drift::Replicas(_) => unreachable!("handled above"),
                };
                observed["metadata"]["annotations"][DRIFT_ANNOTATION] = Value::from(text);
            }
        }
        observed
    }

    /// Every service's progress.
    fn progress(
        &self,
        state: &State,
        places: &BTreeMap<String, Place>,
        lives: &BTreeMap<String, Live>,
    ) -> BTreeMap<ObjectKey, ServiceProgress> {
        let mut out = BTreeMap::new();
        for key in state.keys().filter(|k| k.kind == Kind::Service) {
            let Some(place) = places.get(&key.environment) else {
                continue;
            };
            let Some(live) = lives.get(&place.swarm.name) else {
                continue;
            };
            let name = place.target.service_name(&key.name);
            let progress = match live.services.get(&name) {
                Some(service) => crate::health::progress(service, &live.tasks_of(&name)),
                None => ServiceProgress::new(Progress::Rolling, "its service is not created yet"),
            };
            out.insert(key.clone(), progress);
        }
        out
    }

    /// Every connected swarm with its Git nodes.
    async fn connected(&self) -> Vec<(Arc<Swarm>, SwarmCluster)> {
        self.swarms
            .lock()
            .await
            .values()
            .map(|c| (c.swarm.clone(), c.spec.clone()))
            .collect()
    }

    /// Keeps every swarm's nodes as available as they should be; a swarm whose nodes
    /// cannot be tended is said once.
    async fn tend_nodes(&self) {
        for (swarm, spec) in self.connected().await {
            match crate::nodes::tend(&swarm, &spec.nodes).await {
                Ok(states) => {
                    let mut nodes = lock(&self.nodes);
                    nodes.retain(|(cluster, _), _| *cluster != swarm.name);
                    for (host, state) in states {
                        nodes.insert((swarm.name.clone(), host), state);
                    }
                }
                Err(e) => self.say_once(e.to_string()),
            }
        }
    }
}

impl Engine for SwarmEngine {
    fn kinds(&self) -> &[EngineKind] {
        &[EngineKind::Swarm]
    }

    fn capabilities(&self, _: EngineKind) -> Capabilities {
        Capabilities {
            own_rolling_update: true,
            node_availability: true,
            concurrent_applies: 4,
        }
    }

    async fn observe(&self) -> Result<Observed, EngineError> {
        let mut observed = self.applied().observed()?;
        let (places, lives) = self.places(&observed.objects).await?;
        let versions: BTreeMap<&String, render::SecretVersions> = places
            .iter()
            .map(|(env, place)| (env, live::secret_versions(&observed.objects, &place.target)))
            .collect();
        for (key, value) in observed.objects.iter_mut() {
            if let Some(place) = places.get(&key.environment)
                && let Some(live) = lives.get(&place.swarm.name)
            {
                *value = self.observe_one(place, key, value, live, &versions[&key.environment]);
            }
        }
        Ok(observed)
    }

    async fn apply(&self, _: EngineKind, action: &Action) -> Result<(), EngineError> {
        self.apply_action(action, false).await
    }

    async fn roll_back(&self, _: EngineKind, action: &Action) -> Result<(), EngineError> {
        self.apply_action(action, true).await
    }

    async fn converge(
        &self,
        _: EngineKind,
        _orders: &Orders,
    ) -> Result<BTreeMap<ServiceKey, ServiceProgress>, EngineError> {
        let state = self.applied().observed()?.objects;
        let (places, lives) = self.places(&state).await?;
        self.tend_nodes().await;
        for (swarm, _) in self.connected().await {
            if let Some(live) = lives.get(&swarm.name) {
                self.collect_secrets(&state, &swarm, live).await?;
            }
        }
        let progress = self.progress(&state, &places, &lives);
        let rolling = progress.values().any(|p| p.progress == Progress::Rolling);
        self.rolling.store(rolling, Ordering::Relaxed);
        Ok(progress
            .into_iter()
            .map(|(key, p)| ((key.environment, key.name), p))
            .collect())
    }

    async fn status(&self) -> Result<EngineStatus, EngineError> {
        let state = self.applied().observed()?.objects;
        let (places, lives) = self.places(&state).await?;
        let progress = self.progress(&state, &places, &lives);
        let nodes = lock(&self.nodes).clone();
        let hosts = nodes
            .values()
            .map(|n| (n.id.clone(), n.hostname.clone()))
            .collect();
        let mut status = views::services(&state, &places, &lives, &progress, &hosts);
        status.nodes = nodes
            .iter()
            .map(|((cluster, _), n)| views::node(cluster, n, lives.get(cluster)))
            .collect();
        Ok(status)
    }

    async fn usage(&self, _env: &str, _service: &str) -> Option<Usage> {
        // Not measured on Swarm: the render warns that autoscaling is not built here.
        None
    }

    async fn redeploy(&self, env: &str, service: &str) -> Result<String, EngineError> {
        let key = ObjectKey {
            environment: env.to_owned(),
            kind: Kind::Service,
            name: service.to_owned(),
        };
        let lookup = |k: &ObjectKey| self.applied().value(k).ok().flatten();
        if lookup(&key).is_none() {
            return Err(EngineError::NotFound(format!(
                "no service {service} in {env}"
            )));
        }
        let place = self.place(env, lookup).await?;
        let name = place.target.service_name(service);
        place.swarm.force_update(&name).await?;
        Ok(format!(
            "service {name}: every task is replaced (docker service update --force)"
        ))
    }

    async fn set_availability(
        &self,
        node: &str,
        availability: Option<Availability>,
    ) -> Result<String, EngineError> {
        for (swarm, spec) in self.connected().await {
            if crate::nodes::set_override(&swarm, node, availability, &spec.nodes).await? {
                self.wake.notify_one();
                let name = &swarm.name;
                return Ok(match availability {
                    Some(a) => format!(
                        "node {node} (swarm {name}): availability {} until cleared",
                        a.as_str()
                    ),
                    None => format!("node {node} (swarm {name}): back to what Git says"),
                });
            }
        }
        Err(EngineError::NotFound(format!(
            "no swarm Drover drives has a node {node}"
        )))
    }

    fn due(&self) -> Option<Instant> {
        // Events wake the controller; while an update rolls, it looks every second too
        // (a task's health changes emit no service event).
        self.rolling
            .load(Ordering::Relaxed)
            .then(|| Instant::now() + Duration::from_secs(1))
    }
}

impl SwarmEngine {
    async fn apply_action(&self, action: &Action, back: bool) -> Result<(), EngineError> {
        let key = action.key();
        let incoming = match action {
            Action::Create { value, .. } | Action::Update { value, .. } => Some(value),
            Action::Delete { .. } => None,
        };
        let lookup = |k: &ObjectKey| match incoming {
            Some(value) if k == key => Some(value.clone()),
            _ => self.applied().value(k).ok().flatten(),
        };
        let made = match (incoming, key.kind) {
            (_, Kind::Manifest) => {
                return Err(EngineError::Refused(format!(
                    "{}: plain Kubernetes objects cannot run on a swarm",
                    key.name
                )));
            }
            (Some(value), Kind::Cluster) => {
                let spec: SwarmCluster =
                    serde_json::from_value(value["spec"]["swarm"].clone()).unwrap_or_default();
                self.swarm(&key.name, &spec).await?.ready().await?;
                Vec::new()
            }
            (None, Kind::Cluster) => {
                self.swarms.lock().await.remove(&key.name);
                Vec::new()
            }
            (Some(value), Kind::Environment) => {
                let place = self.place(&key.environment, lookup).await?;
                let network = render::network(&Target::of(&key.environment, value));
                let _ = place.swarm.ensure_network(&network).await?;
                vec![Made::Network(place.target.network_name())]
            }
            (Some(value), Kind::Secret) => {
                let place = self.place(&key.environment, lookup).await?;
                self.apply_secret(&place, key, value).await?
            }
            (Some(value), Kind::Service) => {
                let place = self.place(&key.environment, lookup).await?;
                let state = self.applied().observed()?.objects;
                let versions = live::secret_versions(&state, &place.target);
                self.apply_service(&place, key, value, &versions, back)
                    .await?
            }
            (Some(_), _) => {
                self.say_once(format!(
                    "{}: {} {}: not enforced on Swarm (Swarm has no quotas)",
                    key.environment, key.kind, key.name
                ));
                Vec::new()
            }
            (None, _) => {
                let place = self.place(&key.environment, lookup).await?;
                self.remove(&place, key).await?;
                Vec::new()
            }
        };
        let made = serde_json::to_string(&made).unwrap_or_else(|_| "[]".to_owned());
        Ok(self.applied().record(action, &made)?)
    }
}
