//! Plans: the ordered actions that take observed state to desired state.
//!
//! [`plan`] is a pure function of (desired, observed): the same inputs always give the
//! same plan, and after a crash the next reconcile simply plans again from what it
//! observes. Only engines ([`Engine`]) have side effects.
//!
//! Order: clusters, then per environment its `Environment` (the namespace), quotas and
//! secrets, then services in `dependsOn` order. Deletions come after every creation
//! and update, services in reverse dependency order, and only for objects Drover
//! created itself (the inventory), only where the environment's `sync.prune` is on,
//! and never all of an environment's services at once unless `sync.allowEmpty` says so.

use std::collections::{BTreeMap, BTreeSet};

use drover_diff::{ObjectKey, State};
use drover_model::Kind;
use serde::Serialize;
use serde_json::Value;

mod live;

pub use live::Live;

/// What an engine reports: the live objects (normalized like desired ones) and which
/// of them Drover created.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub objects: State,
    /// Objects Drover created: the only ones it may prune.
    pub inventory: BTreeSet<ObjectKey>,
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum Action {
    /// Create an object that does not exist.
    Create { key: ObjectKey, value: Value },
    /// Change an existing object; `patch` turns the live object into the desired one.
    Update {
        key: ObjectKey,
        value: Value,
        patch: json_patch::Patch,
    },
    /// Delete an object Drover created that Git no longer has.
    Delete { key: ObjectKey },
}

impl Action {
    /// The object the action is about.
    pub fn key(&self) -> &ObjectKey {
        match self {
            Action::Create { key, .. } | Action::Update { key, .. } | Action::Delete { key } => key,
        }
    }
}

/// Deletions a plan refused to make, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hold {
    pub environment: String,
    pub reason: String,
    /// The deletions held back.
    pub held: Vec<ObjectKey>,
}

/// The ordered actions, and any deletions held back by the prune guard.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub holds: Vec<Hold>,
}

impl Plan {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }
}

/// The `sync` policy of an environment, read from its normalized `Environment` object.
fn sync_flag(state: &State, environment: &str, flag: &str, default: bool) -> bool {
    let key = ObjectKey {
        environment: environment.to_owned(),
        kind: Kind::Environment,
        name: environment.to_owned(),
    };
    state
        .get(&key)
        .and_then(|v| v["spec"]["sync"][flag].as_bool())
        .unwrap_or(default)
}

/// Services of one environment in dependency order (dependencies first; ties and
/// cycles broken by name, so the order is always defined).
fn dependency_order(state: &State, environment: &str) -> Vec<String> {
    let services: BTreeMap<&str, Vec<String>> = state
        .iter()
        .filter(|(k, _)| k.environment == environment && k.kind == Kind::Service)
        .map(|(k, v)| {
            let deps = v["spec"]["dependsOn"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|d| d.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            (k.name.as_str(), deps)
        })
        .collect();
    let mut ordered = Vec::new();
    let mut placed = BTreeSet::new();
    while placed.len() < services.len() {
        // Every service whose dependencies are placed (or unknown); if none, a cycle:
        // take the first remaining by name.
        let ready: Vec<&str> = services
            .iter()
            .filter(|(name, deps)| {
                !placed.contains(*name)
                    && deps
                        .iter()
                        .all(|d| placed.contains(d.as_str()) || !services.contains_key(d.as_str()))
            })
            .map(|(name, _)| *name)
            .collect();
        let next = if ready.is_empty() {
            vec![
                *services
                    .keys()
                    .find(|n| !placed.contains(**n))
                    .expect("some left"),
            ]
        } else {
            ready
        };
        for name in next {
            placed.insert(name);
            ordered.push(name.to_owned());
        }
    }
    ordered
}

/// The plan that takes `observed` to `desired`.
pub fn plan(desired: &State, observed: &Observed) -> Plan {
    let environments: BTreeSet<&str> = desired
        .keys()
        .chain(observed.objects.keys())
        .map(|k| k.environment.as_str())
        .collect();
    plan_within(desired, observed, &environments)
}

/// The plan that takes environment `env` of `observed` to `env` of `desired`; the
/// other environments in either are left out (not copied out first: a controller
/// plans each environment on its own, over states of thousands of objects).
pub fn plan_environment(env: &str, desired: &State, observed: &Observed) -> Plan {
    plan_within(desired, observed, &BTreeSet::from([env]))
}

fn plan_within(desired: &State, observed: &Observed, environments: &BTreeSet<&str>) -> Plan {
    let mut actions = Vec::new();
    let mut holds = Vec::new();

    // Creations and updates: clusters (environment "") first, then each environment.
    for env in environments {
        let mut keys: Vec<&ObjectKey> = desired
            .keys()
            .filter(|k| k.environment == *env && k.kind != Kind::Service)
            .collect();
        keys.sort_by_key(|k| (Kind::ALL.iter().position(|x| *x == k.kind), k.name.clone()));
        let services = dependency_order(desired, env);
        let service_keys: Vec<ObjectKey> = services
            .into_iter()
            .map(|name| ObjectKey {
                environment: (*env).to_owned(),
                kind: Kind::Service,
                name,
            })
            .collect();
        for key in keys.into_iter().chain(service_keys.iter()) {
            let value = &desired[key];
            match observed.objects.get(key) {
                None => actions.push(Action::Create {
                    key: key.clone(),
                    value: value.clone(),
                }),
                Some(live) if live != value => actions.push(Action::Update {
                    key: key.clone(),
                    value: value.clone(),
                    patch: json_patch::diff(live, value),
                }),
                Some(_) => {}
            }
        }
    }

    // Deletions: environments last-to-first, each in reverse apply order.
    for env in environments.iter().rev() {
        let orphans: Vec<&ObjectKey> = observed
            .objects
            .keys()
            .filter(|k| k.environment == *env && !desired.contains_key(*k))
            .collect();
        if orphans.is_empty() {
            continue;
        }
        // The policy of an environment being removed is the one it had.
        let policy_from = if desired.keys().any(|k| k.environment == *env) {
            desired
        } else {
            &observed.objects
        };
        if !env.is_empty() && !sync_flag(policy_from, env, "prune", true) {
            continue;
        }
        let mut deletions: Vec<&ObjectKey> = orphans
            .into_iter()
            .filter(|k| observed.inventory.contains(*k))
            .collect();
        let live_order = dependency_order(&observed.objects, env);
        deletions.sort_by_key(|k| {
            let kind_rank = Kind::ALL.iter().position(|x| *x == k.kind).unwrap_or(0);
            let service_rank = live_order.iter().position(|n| *n == k.name).unwrap_or(0);
            (
                std::cmp::Reverse(kind_rank),
                std::cmp::Reverse(service_rank),
                k.name.clone(),
            )
        });
        // The guard: never every managed service of an environment at once.
        let managed_services = observed
            .inventory
            .iter()
            .filter(|k| k.environment == *env && k.kind == Kind::Service)
            .count();
        let deleted_services = deletions.iter().filter(|k| k.kind == Kind::Service).count();
        let allow_empty = sync_flag(policy_from, env, "allowEmpty", false);
        if !env.is_empty()
            && managed_services > 0
            && deleted_services == managed_services
            && !allow_empty
        {
            holds.push(Hold {
                environment: (*env).to_owned(),
                reason: format!(
                    "this revision would delete every service of environment `{env}` ({managed_services}); that is held unless `sync.allowEmpty: true`"
                ),
                held: deletions.into_iter().cloned().collect(),
            });
            continue;
        }
        actions.extend(
            deletions
                .into_iter()
                .map(|key| Action::Delete { key: key.clone() }),
        );
    }
    Plan { actions, holds }
}

#[cfg(test)]
mod tests;
