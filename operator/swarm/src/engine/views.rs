//! What `drover status` shows of a swarm: services with their tasks' counts, tasks as
//! instances (with the host port Swarm published), nodes.

use std::collections::BTreeMap;

use drover_control::engine::EngineStatus;
use drover_control::view::{InstanceView, NodeView, ServiceView};
use drover_diff::{ObjectKey, State};
use drover_model::Kind;
use drover_release::{Health, Lifecycle, Progress, ServiceProgress};

use super::Place;
use super::live::Live;
use crate::nodes::NodeState;
use crate::types::{Task, TaskState};

fn instance(
    env: &str,
    service: &str,
    task: &Task,
    current: bool,
    nodes: &BTreeMap<String, String>,
) -> InstanceView {
    let state = task.status.state;
    InstanceView {
        id: task.id.clone(),
        environment: env.to_owned(),
        service: service.to_owned(),
        node: task
            .node_id
            .as_ref()
            .and_then(|id| nodes.get(id).cloned())
            .unwrap_or_else(|| "-".to_owned()),
        state: state.as_str().to_owned(),
        ready: state == TaskState::Running,
        pid: None,
        port: task.published_port(),
        restarts: 0,
        cpu_millis: 0,
        memory_bytes: 0,
        current,
        last_failure: crate::health::failure(task),
    }
}

/// Services and their live tasks.
pub(super) fn services(
    state: &State,
    places: &BTreeMap<String, Place>,
    lives: &BTreeMap<String, Live>,
    progress: &BTreeMap<ObjectKey, ServiceProgress>,
    hosts: &BTreeMap<String, String>,
) -> EngineStatus {
    let mut status = EngineStatus::default();
    for (key, value) in state.iter().filter(|(k, _)| k.kind == Kind::Service) {
        let (Some(place), Some(p)) = (places.get(&key.environment), progress.get(key)) else {
            continue;
        };
        let Some(live) = lives.get(&place.swarm.name) else {
            continue;
        };
        let name = place.target.service_name(&key.name);
        let service = live.services.get(&name);
        let instances: Vec<InstanceView> = live
            .tasks_of(&name)
            .into_iter()
            .filter(|t| crate::health::live(t))
            .map(|t| {
                let current = service.is_some_and(|s| crate::health::current(s, t));
                instance(&key.environment, &key.name, t, current, hosts)
            })
            .collect();
        let ready = instances.iter().filter(|i| i.ready && i.current).count() as u32;
        let lifecycle = Lifecycle::of(&p.progress, ready);
        status.services.push(ServiceView {
            environment: key.environment.clone(),
            name: key.name.clone(),
            version: value["spec"]["version"].as_str().map(str::to_owned),
            state: lifecycle,
            health: Health::of(lifecycle, instances.len()),
            ready,
            desired: service.map_or(0, crate::health::desired) as u32,
            message: match &p.progress {
                Progress::Failed { why } => why.clone(),
                _ => p.detail.clone(),
            },
        });
        status.instances.extend(instances);
    }
    status
}

/// A node, with the tasks that run on it (any service's).
pub(super) fn node(cluster: &str, n: &NodeState, live: Option<&Live>) -> NodeView {
    let tasks = live.map_or(0, |l| {
        l.tasks
            .iter()
            .filter(|t| t.node_id.as_ref() == Some(&n.id) && crate::health::live(t))
            .count()
    });
    NodeView {
        name: n.hostname.clone(),
        cluster: cluster.to_owned(),
        role: format!("swarm {}", n.role),
        availability: n.availability.as_str().into(),
        availability_override: n.overridden.map(|a| a.as_str().to_owned()),
        status: n.state.clone(),
        instances: tasks as u32,
        agent_pid: None,
        cpu: String::new(),
        memory: String::new(),
        cpu_used_millis: 0,
        memory_used_bytes: 0,
    }
}
