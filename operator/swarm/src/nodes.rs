//! Node availability on a swarm: what `docker node update --availability` sets,
//! kept level-triggered. Git's `nodes:` of a Cluster say what each listed node should
//! be (by hostname or id); `drover node update` sets an override kept on the node
//! itself (its `dev.drover.availability` label), so it outlives Drover's process.
//! Swarm moves the tasks of a drained node by itself.

use std::collections::BTreeMap;

use drover_model::cluster::{Availability, ManagedNode};
use serde_json::Value;

use crate::client::{Swarm, SwarmError};
use crate::types::Node;

/// The node label holding `drover node update`'s override.
pub const OVERRIDE: &str = "dev.drover.availability";

/// One node as `drover status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeState {
    pub id: String,
    pub hostname: String,
    pub role: String,
    /// In force on the node now.
    pub availability: Availability,
    pub overridden: Option<Availability>,
    /// `ready`, `down`, …
    pub state: String,
}

/// Whether `node` is the one `name` (a hostname or an id) means.
fn named(node: &Node, name: &str) -> bool {
    node.hostname() == name || node.id == name
}

fn override_of(node: &Node) -> Option<Availability> {
    Availability::parse(node.spec["Labels"][OVERRIDE].as_str()?)
}

/// The availability a node should have: its override, else Git's, else what it has.
pub fn wanted(node: &Node, git: &[ManagedNode]) -> Option<Availability> {
    override_of(node).or_else(|| {
        git.iter()
            .find(|n| named(node, &n.name))
            .map(|n| n.availability)
    })
}

fn state_of(node: &Node) -> NodeState {
    NodeState {
        id: node.id.clone(),
        hostname: node.hostname().to_owned(),
        role: node.spec["Role"].as_str().unwrap_or_default().to_owned(),
        availability: node.spec["Availability"]
            .as_str()
            .and_then(Availability::parse)
            .unwrap_or_default(),
        overridden: override_of(node),
        state: node.status["State"]
            .as_str()
            .unwrap_or("unknown")
            .to_owned(),
    }
}

/// Sets every node whose availability differs from what it should be; returns each
/// node's state, by hostname.
pub async fn tend(
    swarm: &Swarm,
    git: &[ManagedNode],
) -> Result<BTreeMap<String, NodeState>, SwarmError> {
    let mut states = BTreeMap::new();
    for node in swarm.nodes().await? {
        let mut state = state_of(&node);
        if let Some(want) = wanted(&node, git)
            && want != state.availability
        {
            let mut spec = node.spec.clone();
            spec["Availability"] = Value::from(want.as_str());
            swarm.update_node(&node, &spec).await?;
            tracing::info!(
                "swarm {}: node {} availability {} (was {})",
                swarm.name,
                state.hostname,
                want.as_str(),
                state.availability.as_str()
            );
            state.availability = want;
        }
        states.insert(state.hostname.clone(), state);
    }
    Ok(states)
}

/// Sets (or, `None`, clears) the override on the node `name` means; `false` when the
/// swarm has no such node.
pub async fn set_override(
    swarm: &Swarm,
    name: &str,
    availability: Option<Availability>,
    git: &[ManagedNode],
) -> Result<bool, SwarmError> {
    let Some(node) = swarm.nodes().await?.into_iter().find(|n| named(n, name)) else {
        return Ok(false);
    };
    let mut spec = node.spec.clone();
    if !spec["Labels"].is_object() {
        spec["Labels"] = serde_json::json!({});
    }
    let labels = spec["Labels"]
        .as_object_mut()
        .expect("an object, just made so");
    match availability {
        Some(a) => {
            labels.insert(OVERRIDE.to_owned(), Value::from(a.as_str()));
        }
        None => {
            labels.remove(OVERRIDE);
        }
    }
    let back = git
        .iter()
        .find(|n| named(&node, &n.name))
        .map_or(Availability::Active, |n| n.availability);
    spec["Availability"] = Value::from(availability.unwrap_or(back).as_str());
    swarm.update_node(&node, &spec).await?;
    Ok(true)
}
