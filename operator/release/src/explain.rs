//! "Why isn't it deployed": a service's lifecycle and the one line that says where its
//! instances are, from facts any engine can count (instances, ready, restarts, an old
//! spec still serving, problems it found), so every engine explains itself alike.

use crate::state::Lifecycle;

/// What an engine counts of one service's instances.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Instances {
    /// How many instances Git asks for (for a global service: one per eligible node).
    pub desired: u32,
    /// How many exist, on any spec.
    pub running: u32,
    pub ready: u32,
    /// Some instance has restarted.
    pub restarted: bool,
    /// An instance of an older spec still runs (a start-first update in progress), or
    /// a slot is still to move to the new spec.
    pub updating: bool,
    /// What is wrong, one line each: failing instances, slots that cannot be placed, an
    /// update that stopped.
    pub problems: Vec<String>,
}

/// Where the service is in its life.
pub fn lifecycle(i: &Instances) -> Lifecycle {
    if !i.problems.is_empty() {
        Lifecycle::Abnormal
    } else if i.updating {
        Lifecycle::Updating
    } else if i.ready >= i.desired && i.running == i.desired {
        Lifecycle::Running
    } else if i.restarted || i.ready > 0 {
        Lifecycle::Updating
    } else {
        Lifecycle::Starting
    }
}

/// `, 0/3 ready, readiness GET /ready returned 503 (3 times)`: the instances' state,
/// as it follows a release's failure reason.
pub fn detail(ready: usize, instances: usize, failure: Option<&str>) -> String {
    match failure {
        Some(f) => format!(", {ready}/{instances} ready, {f}"),
        None => format!(", {ready}/{instances} ready"),
    }
}
