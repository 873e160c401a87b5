//! What one swarm runs now, read once per pass (Drover's services, networks and
//! secrets, and every task), and the comparisons with what Drover renders: ids put in
//! place of names, and drift.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::client::{Swarm, SwarmError};
use crate::render::{SecretVersions, Target};
use crate::types::{Service, Task};
use drover_diff::State;
use drover_model::Kind;

/// One swarm's objects, by name.
#[derive(Debug, Default)]
pub(crate) struct Live {
    pub services: BTreeMap<String, Service>,
    pub networks: BTreeMap<String, String>,
    /// Drover's secrets: name → id.
    pub secrets: BTreeMap<String, String>,
    pub tasks: Vec<Task>,
}

impl Live {
    pub async fn read(swarm: &Swarm) -> Result<Live, SwarmError> {
        let (services, networks, secrets, tasks) = futures::try_join!(
            swarm.services(),
            swarm.networks(),
            swarm.secrets(),
            swarm.tasks()
        )?;
        Ok(Live {
            services: services
                .into_iter()
                .map(|s| (s.name().to_owned(), s))
                .collect(),
            networks: networks.into_iter().map(|n| (n.name, n.id)).collect(),
            secrets: secrets.into_iter().map(|s| (s.name, s.id)).collect(),
            tasks,
        })
    }

    /// Only Drover's networks and secrets: what a rendering needs to put ids in place,
    /// without listing every service and task.
    pub async fn ids(swarm: &Swarm) -> Result<Live, SwarmError> {
        let (networks, secrets) = futures::try_join!(swarm.networks(), swarm.secrets())?;
        Ok(Live {
            networks: networks.into_iter().map(|n| (n.name, n.id)).collect(),
            secrets: secrets.into_iter().map(|s| (s.name, s.id)).collect(),
            ..Live::default()
        })
    }

    /// The tasks of service `name`.
    pub fn tasks_of(&self, name: &str) -> Vec<&Task> {
        let Some(service) = self.services.get(name) else {
            return Vec::new();
        };
        self.tasks
            .iter()
            .filter(|t| t.service_id == service.id)
            .collect()
    }

    /// Every secret some service's spec mounts, by id.
    pub fn mounted_secrets(&self) -> BTreeSet<String> {
        self.services
            .values()
            .filter_map(|s| s.spec["TaskTemplate"]["ContainerSpec"]["Secrets"].as_array())
            .flatten()
            .filter_map(|r| r["SecretID"].as_str().map(str::to_owned))
            .collect()
    }
}

/// Puts the ids of the environment's network and of the secrets a rendered service
/// names in place, as the engine stores them; `None` when one does not exist yet.
pub(crate) fn resolve(spec: &mut Value, live: &Live) -> Option<()> {
    for network in spec["TaskTemplate"]["Networks"].as_array_mut()? {
        let name = network["Target"].as_str()?.to_owned();
        network["Target"] = Value::from(live.networks.get(&name)?.clone());
    }
    if let Some(files) = spec["TaskTemplate"]["ContainerSpec"]["Secrets"].as_array_mut() {
        for file in files {
            let name = file["SecretName"].as_str()?;
            file["SecretID"] = Value::from(live.secrets.get(name)?.clone());
        }
    }
    Some(())
}

/// The current version of each key of the secrets `state` holds for `target`'s
/// environment.
pub(crate) fn secret_versions(state: &State, target: &Target) -> SecretVersions {
    state
        .iter()
        .filter(|(k, _)| k.environment == target.environment && k.kind == Kind::Secret)
        .map(|(key, value)| {
            let keys = crate::render::secret_versions(target, &key.name, value)
                .into_iter()
                .map(|v| (v.key, v.name))
                .collect();
            (key.name.clone(), keys)
        })
        .collect()
}

/// How a live service differs from its rendering: `None` when it does not; the replicas
/// alone (someone scaled it) are shown in the model's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Drift {
    Missing,
    Replicas(u64),
    Field(String),
}

pub(crate) fn drift(rendered: &Value, live: Option<&Service>) -> Option<Drift> {
    let Some(live) = live.map(|s| &s.spec) else {
        return Some(Drift::Missing);
    };
    let path = drover_diff::drift::first_difference(rendered, live)?;
    if path == "Mode.Replicated.Replicas" {
        return Some(Drift::Replicas(
            live["Mode"]["Replicated"]["Replicas"].as_u64().unwrap_or(0),
        ));
    }
    Some(Drift::Field(path))
}
