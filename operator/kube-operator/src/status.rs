//! An Environment's status as a pure function of what Drover knows of it (the store's
//! record, its releases, a rejected revision, what it made): the conditions of Flux's
//! contract with stable reasons, so `kubectl wait --for=condition=Ready` and kstatus
//! tools read Drover as they read Flux.

use drover_model::environment_status::{
    Condition, ConditionStatus, EnvironmentStatus, Inventory, InventoryEntry, ReleaseRecord,
};
use drover_release::{ReleaseResult, SyncStatus};
use drover_store::Release;

/// At most this many releases in `status.history`: the status is read on every
/// `kubectl get`, and `drover history` has them all.
pub const HISTORY_KEPT: usize = 10;

/// A condition's stable reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Ready: the revision is applied and its release healthy.
    ReconciliationSucceeded,
    /// Ready false: the engine could not apply or observe (the message says why).
    ReconciliationFailed,
    /// A release is being judged, or nothing was applied yet.
    Progressing,
    /// The newest revision is invalid; the last valid one stays in force.
    RevisionRejected,
    /// The release failed its health checks and was rolled back.
    RolledBack,
    /// The release failed its health checks and stays (automatic rollback off).
    HealthCheckFailed,
    /// Drover keeps live as it is on purpose (the prune guard, a held revision).
    Held,
    /// Live differs from Git and Drover does not change it (manual sync, self-heal off).
    OutOfSync,
    /// The operator does not drive this environment's cluster.
    Unsupported,
    /// Healthy: the last release is healthy.
    Succeeded,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ReconciliationSucceeded => "ReconciliationSucceeded",
            Reason::ReconciliationFailed => "ReconciliationFailed",
            Reason::Progressing => "Progressing",
            Reason::RevisionRejected => "RevisionRejected",
            Reason::RolledBack => "RolledBack",
            Reason::HealthCheckFailed => "HealthCheckFailed",
            Reason::Held => "Held",
            Reason::OutOfSync => "OutOfSync",
            Reason::Unsupported => "Unsupported",
            Reason::Succeeded => "Succeeded",
        }
    }
}

/// Everything an Environment's status is computed from.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    /// The resource's `metadata.generation`.
    pub generation: Option<i64>,
    /// Its `reconcile.fluxcd.io/requestedAt` annotation.
    pub requested_at: Option<&'a str>,
    /// The store's record of the environment (none before its first pass).
    pub record: Option<&'a drover_store::EnvironmentStatus>,
    /// The newest revision followed (accepted or rejected).
    pub attempted: Option<&'a str>,
    /// Why the newest revision was rejected, if it was.
    pub rejected: Option<&'a str>,
    /// Its releases, newest first.
    pub releases: &'a [Release],
    /// What Drover made for it.
    pub inventory: Vec<InventoryEntry>,
    pub cluster: Option<&'a str>,
    /// `rollback.historyLimit`.
    pub history_limit: usize,
    /// The status written before, whose transition times are kept where a condition's
    /// status did not change.
    pub previous: Option<&'a EnvironmentStatus>,
    pub now_ms: i64,
}

/// The status `facts` describe.
pub fn status(facts: &Facts<'_>) -> EnvironmentStatus {
    let (ready, ready_reason, message) = ready(facts);
    let open = facts.releases.first().filter(|r| r.result.is_open());
    let mut conditions = vec![("Ready", ready, ready_reason, message.clone())];
    if ready_reason == Reason::Progressing {
        conditions.push((
            "Reconciling",
            ConditionStatus::True,
            Reason::Progressing,
            message.clone(),
        ));
    }
    if matches!(
        ready_reason,
        Reason::RevisionRejected | Reason::RolledBack | Reason::Unsupported
    ) {
        conditions.push((
            "Stalled",
            ConditionStatus::True,
            ready_reason,
            message.clone(),
        ));
    }
    let (healthy, healthy_reason, healthy_message) = healthy(facts.releases);
    conditions.push(("Healthy", healthy, healthy_reason, healthy_message));
    let at = rfc3339(facts.now_ms);
    let conditions = conditions
        .into_iter()
        .map(|(type_, status, reason, message)| {
            let since = facts
                .previous
                .and_then(|p| p.conditions.iter().find(|c| c.type_ == type_))
                .filter(|c| c.status == status)
                .map_or_else(|| at.clone(), |c| c.last_transition_time.clone());
            Condition {
                type_: type_.to_owned(),
                status,
                reason: reason.as_str().to_owned(),
                message,
                last_transition_time: since,
                observed_generation: facts.generation,
            }
        })
        .collect();
    let mut entries = facts.inventory.clone();
    entries.sort();
    entries.dedup();
    EnvironmentStatus {
        observed_generation: facts.generation,
        conditions,
        last_applied_revision: facts.record.and_then(|r| r.revision.clone()),
        last_attempted_revision: facts
            .attempted
            .map(str::to_owned)
            .or_else(|| facts.record.and_then(|r| r.revision.clone())),
        last_handled_reconcile_at: facts.requested_at.map(str::to_owned),
        cluster: facts.cluster.map(str::to_owned),
        inventory: Some(Inventory { entries }),
        release: open.map(record),
        history: facts
            .releases
            .iter()
            .filter(|r| !r.result.is_open())
            .take(facts.history_limit.min(HISTORY_KEPT))
            .map(record)
            .collect(),
    }
}

/// The Ready condition and the one line that says why.
fn ready(facts: &Facts<'_>) -> (ConditionStatus, Reason, String) {
    use ConditionStatus::{False, True, Unknown};
    if let Some(why) = facts.rejected {
        return (False, Reason::RevisionRejected, why.to_owned());
    }
    let Some(record) = facts.record else {
        return (
            Unknown,
            Reason::Progressing,
            "waiting for the first pass".into(),
        );
    };
    let last = facts.releases.first();
    match record.status {
        SyncStatus::Failed => (False, Reason::ReconciliationFailed, record.message.clone()),
        SyncStatus::Unsupported => (False, Reason::Unsupported, record.message.clone()),
        SyncStatus::OutOfSync => (False, Reason::OutOfSync, record.message.clone()),
        SyncStatus::Pending => (Unknown, Reason::Progressing, "nothing applied yet".into()),
        _ if last.is_some_and(|r| r.result.is_open()) => {
            let r = last.expect("checked");
            let text = format!(
                "release of {} in progress: {}",
                drover_model::short_id(&r.revision),
                r.services.join(", ")
            );
            (Unknown, Reason::Progressing, text)
        }
        SyncStatus::Held => match last.map(|r| r.result) {
            Some(ReleaseResult::RolledBack) => {
                (False, Reason::RolledBack, with_reason(record, last))
            }
            Some(ReleaseResult::Failed) => {
                (False, Reason::HealthCheckFailed, with_reason(record, last))
            }
            _ => (False, Reason::Held, record.message.clone()),
        },
        SyncStatus::Synced => match last.map(|r| r.result) {
            Some(ReleaseResult::Failed) => {
                (False, Reason::HealthCheckFailed, with_reason(record, last))
            }
            _ => {
                let revision = record.revision.as_deref().unwrap_or("nothing");
                (
                    True,
                    Reason::ReconciliationSucceeded,
                    format!("Applied revision {revision}"),
                )
            }
        },
    }
}

fn with_reason(record: &drover_store::EnvironmentStatus, last: Option<&Release>) -> String {
    match last.map(|r| r.reason.as_str()).filter(|r| !r.is_empty()) {
        Some(reason) if record.message.is_empty() => reason.to_owned(),
        Some(reason) => format!("{reason}; {}", record.message),
        None => record.message.clone(),
    }
}

/// The Healthy condition: the last release's verdict.
fn healthy(releases: &[Release]) -> (ConditionStatus, Reason, String) {
    use ConditionStatus::{False, True, Unknown};
    let Some(last) = releases
        .iter()
        .find(|r| r.result != ReleaseResult::Superseded)
    else {
        return (True, Reason::Succeeded, "no release yet".into());
    };
    let short = drover_model::short_id(&last.revision);
    match last.result {
        ReleaseResult::Progressing => (
            Unknown,
            Reason::Progressing,
            format!("release of {short} is being judged"),
        ),
        ReleaseResult::Healthy | ReleaseResult::Superseded => (
            True,
            Reason::Succeeded,
            format!("release of {short} is healthy"),
        ),
        ReleaseResult::Failed => (False, Reason::HealthCheckFailed, last.reason.clone()),
        ReleaseResult::RolledBack => (False, Reason::RolledBack, last.reason.clone()),
    }
}

fn record(r: &Release) -> ReleaseRecord {
    ReleaseRecord {
        revision: r.revision.clone(),
        summary: r.summary.clone(),
        previous: r.previous.clone(),
        trigger: r.trigger.to_string(),
        result: r.result.to_string(),
        services: r.services.clone(),
        started_at: rfc3339(r.started_ms),
        ended_at: r.ended_ms.map(rfc3339),
        reason: r.reason.clone(),
        revert: r.revert.clone(),
    }
}

/// Milliseconds since the epoch as RFC 3339, to the second (as Kubernetes writes times).
pub fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_second(ms.div_euclid(1000))
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Flux's inventory id of an object: `namespace_name_group_Kind`.
pub fn inventory_entry(
    api_version: &str,
    kind: &str,
    namespace: &str,
    name: &str,
) -> InventoryEntry {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    InventoryEntry {
        id: format!("{namespace}_{name}_{group}_{kind}"),
        v: version.to_owned(),
    }
}

#[cfg(test)]
mod tests;
