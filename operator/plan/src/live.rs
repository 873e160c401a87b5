//! The applied (or desired) objects of a normalized state, typed: clusters,
//! environments, services and quotas read back into the model, for decisions that
//! need their fields (policies, dependencies, placement).

use std::collections::BTreeMap;

use drover_diff::State;
use drover_model::cluster::Engine;
use drover_model::{ClusterSpec, EnvironmentSpec, Kind, QuotaSpec, ServiceSpec};
use serde::de::DeserializeOwned;

/// The applied objects, typed.
#[derive(Debug, Default, Clone)]
pub struct Live {
    pub clusters: BTreeMap<String, ClusterSpec>,
    pub environments: BTreeMap<String, EnvironmentSpec>,
    /// By (environment, name).
    pub services: BTreeMap<(String, String), ServiceSpec>,
    /// By environment (at most one quota per environment counts; the first by name).
    pub quotas: BTreeMap<String, QuotaSpec>,
    /// `drover redeploy` generations by (environment, service): not in Git, kept by the
    /// control plane.
    pub redeploys: BTreeMap<(String, String), u64>,
    /// Each secret's fingerprints (key → `sha256:…`, as the normalized object holds
    /// them), by (environment, name): what instances mount, never the values.
    pub secrets: BTreeMap<(String, String), BTreeMap<String, String>>,
}

fn spec<S: DeserializeOwned>(value: &serde_json::Value) -> Option<S> {
    serde_json::from_value(value.get("spec")?.clone()).ok()
}

impl Live {
    /// Both views as one (the first's entries win where both have one: an
    /// environment moving from the first's engine to the second's, mid-move).
    pub fn merge(mut self, other: Live) -> Live {
        for (k, v) in other.clusters {
            self.clusters.entry(k).or_insert(v);
        }
        for (k, v) in other.environments {
            self.environments.entry(k).or_insert(v);
        }
        for (k, v) in other.services {
            self.services.entry(k).or_insert(v);
        }
        for (k, v) in other.quotas {
            self.quotas.entry(k).or_insert(v);
        }
        for (k, v) in other.redeploys {
            self.redeploys.entry(k).or_insert(v);
        }
        for (k, v) in other.secrets {
            self.secrets.entry(k).or_insert(v);
        }
        self
    }

    /// Reads the applied objects (normalized manifests) back into the model.
    pub fn from_state(state: &State) -> Live {
        let mut live = Live::default();
        for (key, value) in state {
            let name = key.name.clone();
            let env = key.environment.clone();
            match key.kind {
                Kind::Cluster => {
                    if let Some(s) = spec(value) {
                        live.clusters.insert(name, s);
                    }
                }
                Kind::Environment => {
                    if let Some(s) = spec(value) {
                        live.environments.insert(env, s);
                    }
                }
                Kind::Service => {
                    if let Some(s) = spec(value) {
                        live.services.insert((env, name), s);
                    }
                }
                Kind::Quota => {
                    if let Some(s) = spec(value) {
                        live.quotas.entry(env).or_insert(s);
                    }
                }
                Kind::Secret => {
                    if let Some(s) = spec::<drover_model::SecretSpec>(value) {
                        live.secrets.insert((env, name), s.data);
                    }
                }
                Kind::Manifest => {}
            }
        }
        live
    }

    /// The engine of the cluster an environment runs on.
    pub fn engine_of(&self, environment: &str) -> Option<Engine> {
        let cluster = &self.environments.get(environment)?.cluster;
        Some(self.clusters.get(cluster)?.engine)
    }

    /// The cluster an environment runs on, when an engine of `kind` runs it.
    pub fn cluster_of(&self, environment: &str, kind: Engine) -> Option<&str> {
        let cluster = &self.environments.get(environment)?.cluster;
        (self.clusters.get(cluster)?.engine == kind).then_some(cluster.as_str())
    }
}
