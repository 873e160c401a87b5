//! Health, pure: a Swarm service's progress from its update status and its tasks, in
//! the release core's vocabulary (`Rolling`, `Healthy`, `Failed`), with the detail a
//! person needs (`1/2 running, 1 on the previous spec`). A task with a health check
//! is `starting` until the check passes, so `running` means healthy.

use drover_release::{Progress, ServiceProgress};

use crate::types::{Service, Task, TaskState, UpdateState};

/// Failed tasks of the current spec after which the release has failed, as the local
/// engine's restart back-off and the Kubernetes engine's restarts count them.
pub const FAILED_TASKS: usize = 3;

/// What tasks that cannot start say, which waiting does not cure.
const STUCK: [&str; 3] = ["No such image", "invalid mount config", "secret not found"];

/// How many tasks the service should run: its replicas, or (global) what Swarm counts.
pub fn desired(service: &Service) -> u64 {
    match service.spec["Mode"]["Replicated"]["Replicas"].as_u64() {
        Some(replicas) => replicas,
        None if service.spec["Mode"]["Replicated"].is_object() => 1,
        None => service.service_status.map_or(0, |s| s.desired_tasks),
    }
}

/// Whether `task` runs the service's current spec. The engine shows the template with
/// `Runtime` filled in, which the tasks' copies leave out.
pub fn current(service: &Service, task: &Task) -> bool {
    let mut template = service.spec["TaskTemplate"].clone();
    if let Some(fields) = template.as_object_mut() {
        fields.remove("Runtime");
    }
    let same = |a: &serde_json::Value, b: &serde_json::Value| {
        drover_diff::drift::first_difference(a, b).is_none()
    };
    same(&task.spec, &template) && same(&template, &task.spec)
}

/// Whether the task runs, or is on its way to (it holds a slot).
pub fn live(task: &Task) -> bool {
    task.desired_state == TaskState::Running
        || matches!(task.status.state, TaskState::Running | TaskState::Starting)
}

/// What a failed task says: its error, else its message.
pub fn failure(task: &Task) -> Option<String> {
    if !matches!(task.status.state, TaskState::Failed | TaskState::Rejected) {
        return None;
    }
    task.status
        .err
        .clone()
        .filter(|e| !e.is_empty())
        .or_else(|| Some(task.status.message.clone()))
}

/// `service`'s progress; `tasks` are its own.
pub fn progress(service: &Service, tasks: &[&Task]) -> ServiceProgress {
    let desired = desired(service);
    let mut newest: Vec<&Task> = tasks.to_vec();
    // Newest first (the times are RFC 3339 in one zone), so the last failure leads.
    newest.sort_by(|a, b| b.status.timestamp.cmp(&a.status.timestamp));
    let on_spec: Vec<&Task> = newest
        .iter()
        .copied()
        .filter(|t| current(service, t))
        .collect();
    let running = on_spec
        .iter()
        .filter(|t| t.status.state == TaskState::Running && t.desired_state == TaskState::Running)
        .count() as u64;
    let previous = tasks
        .iter()
        .filter(|t| !current(service, t) && t.status.state == TaskState::Running)
        .count();
    let mut detail = format!("{running}/{desired} running");
    if previous > 0 {
        detail.push_str(&format!(", {previous} on the previous spec"));
    }
    let failures: Vec<String> = on_spec.iter().filter_map(|t| failure(t)).collect();
    if let Some(last) = failures.first() {
        detail.push_str(&format!(", last task failed: {last}"));
    }
    // Why a task waits to be placed (`no suitable node (insufficient resources…)`).
    if let Some(why) = on_spec
        .iter()
        .filter(|t| t.status.state == TaskState::Pending)
        .find_map(|t| t.status.err.as_ref().filter(|e| !e.is_empty()))
    {
        detail.push_str(&format!(", a task waits: {why}"));
    }
    let update = service.update_status.clone().unwrap_or_default();
    let why = match update.state {
        UpdateState::Paused => Some(format!("Swarm paused the update: {}", update.message)),
        UpdateState::RollbackPaused => {
            Some(format!("Swarm paused the rollback: {}", update.message))
        }
        UpdateState::Updating | UpdateState::RollbackStarted => {
            return ServiceProgress::new(Progress::Rolling, detail);
        }
        _ => None,
    };
    if let Some(why) = why {
        return ServiceProgress::new(Progress::Failed { why }, detail);
    }
    if running >= desired && previous == 0 {
        return ServiceProgress::new(Progress::Healthy, detail);
    }
    if let Some(stuck) = failures
        .iter()
        .find(|f| STUCK.iter().any(|s| f.contains(s)))
    {
        let why = format!("its tasks cannot start: {stuck}");
        return ServiceProgress::new(Progress::Failed { why }, detail);
    }
    if failures.len() >= FAILED_TASKS {
        let why = format!(
            "{} tasks of the new spec failed; the last: {}",
            failures.len(),
            failures[0]
        );
        return ServiceProgress::new(Progress::Failed { why }, detail);
    }
    ServiceProgress::new(Progress::Rolling, detail)
}

#[cfg(test)]
mod tests;
