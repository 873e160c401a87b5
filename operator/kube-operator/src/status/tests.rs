//! The conditions each situation gives, as Flux's kstatus tools read them.

use drover_model::environment_status::ConditionStatus;
use drover_release::{ReleaseResult, SyncStatus, Trigger};
use drover_store::{EnvironmentStatus as Record, Release};

use super::*;

const REV: &str = "0123456789abcdef0123456789abcdef01234567";

fn record(status: SyncStatus, message: &str) -> Record {
    Record {
        name: "staging".into(),
        revision: Some(REV.into()),
        summary: Some("web v2".into()),
        status,
        message: message.into(),
    }
}

fn release(result: ReleaseResult, reason: &str) -> Release {
    Release {
        id: 1,
        environment: "staging".into(),
        revision: REV.into(),
        summary: "web v2".into(),
        previous: None,
        trigger: Trigger::Git,
        services: vec!["web".into()],
        snapshot: String::new(),
        started_ms: 1_700_000_000_000,
        ended_ms: (!result.is_open()).then_some(1_700_000_060_000),
        result,
        reason: reason.into(),
        revert: None,
    }
}

fn facts<'a>(record: Option<&'a Record>, releases: &'a [Release]) -> Facts<'a> {
    Facts {
        generation: Some(3),
        requested_at: None,
        record,
        attempted: None,
        rejected: None,
        releases,
        inventory: vec![],
        cluster: Some("kube"),
        history_limit: 20,
        previous: None,
        now_ms: 1_700_000_100_000,
    }
}

fn condition<'a>(status: &'a EnvironmentStatus, type_: &str) -> Option<(ConditionStatus, &'a str)> {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status, c.reason.as_str()))
}

#[test]
fn an_applied_revision_with_a_healthy_release_is_ready_and_healthy() {
    let record = record(SyncStatus::Synced, "");
    let releases = [release(ReleaseResult::Healthy, "")];
    let s = status(&facts(Some(&record), &releases));
    assert_eq!(
        condition(&s, "Ready"),
        Some((ConditionStatus::True, "ReconciliationSucceeded"))
    );
    assert_eq!(
        condition(&s, "Healthy"),
        Some((ConditionStatus::True, "Succeeded"))
    );
    assert_eq!(condition(&s, "Reconciling"), None);
    assert_eq!(condition(&s, "Stalled"), None);
    assert_eq!(s.last_applied_revision.as_deref(), Some(REV));
    assert_eq!(s.observed_generation, Some(3));
    assert_eq!(s.history.len(), 1);
    assert!(s.release.is_none());
}

#[test]
fn an_open_release_is_reconciling_with_ready_unknown() {
    let record = record(SyncStatus::Synced, "");
    let releases = [release(ReleaseResult::Progressing, "")];
    let s = status(&facts(Some(&record), &releases));
    assert_eq!(
        condition(&s, "Ready"),
        Some((ConditionStatus::Unknown, "Progressing"))
    );
    assert_eq!(
        condition(&s, "Reconciling"),
        Some((ConditionStatus::True, "Progressing"))
    );
    assert_eq!(
        condition(&s, "Healthy"),
        Some((ConditionStatus::Unknown, "Progressing"))
    );
    assert_eq!(
        s.release.as_ref().map(|r| r.result.as_str()),
        Some("progressing")
    );
    assert!(s.history.is_empty(), "the open release is not history yet");
}

#[test]
fn a_rolled_back_release_is_stalled_and_says_why() {
    let record = record(SyncStatus::Held, "");
    let releases = [release(
        ReleaseResult::RolledBack,
        "web: readiness probe failed",
    )];
    let s = status(&facts(Some(&record), &releases));
    assert_eq!(
        condition(&s, "Ready"),
        Some((ConditionStatus::False, "RolledBack"))
    );
    assert_eq!(
        condition(&s, "Stalled"),
        Some((ConditionStatus::True, "RolledBack"))
    );
    assert_eq!(
        condition(&s, "Healthy"),
        Some((ConditionStatus::False, "RolledBack"))
    );
    let ready = s.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.message, "web: readiness probe failed");
}

#[test]
fn a_rejected_revision_is_stalled_while_the_last_valid_one_stays_applied() {
    let record = record(SyncStatus::Synced, "");
    let releases = [release(ReleaseResult::Healthy, "")];
    let mut f = facts(Some(&record), &releases);
    f.rejected = Some("revision 89abcde rejected: 1 error");
    f.attempted = Some("89abcdef");
    let s = status(&f);
    assert_eq!(
        condition(&s, "Ready"),
        Some((ConditionStatus::False, "RevisionRejected"))
    );
    assert_eq!(
        condition(&s, "Stalled"),
        Some((ConditionStatus::True, "RevisionRejected"))
    );
    assert_eq!(s.last_applied_revision.as_deref(), Some(REV));
    assert_eq!(s.last_attempted_revision.as_deref(), Some("89abcdef"));
}

#[test]
fn a_failed_apply_says_what_the_engine_said_and_is_not_stalled() {
    let why = "deployments.apps \"web\" is forbidden: cannot patch";
    let record = record(SyncStatus::Failed, why);
    let s = status(&facts(Some(&record), &[]));
    assert_eq!(
        condition(&s, "Ready"),
        Some((ConditionStatus::False, "ReconciliationFailed"))
    );
    assert_eq!(
        condition(&s, "Stalled"),
        None,
        "Drover tries again by itself"
    );
    let ready = s.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.message, why);
}

#[test]
fn before_the_first_pass_ready_is_unknown() {
    let s = status(&facts(None, &[]));
    assert_eq!(
        condition(&s, "Ready"),
        Some((ConditionStatus::Unknown, "Progressing"))
    );
    assert_eq!(
        condition(&s, "Reconciling"),
        Some((ConditionStatus::True, "Progressing"))
    );
}

#[test]
fn a_condition_keeps_its_transition_time_while_its_status_holds() {
    let record = record(SyncStatus::Synced, "");
    let releases = [release(ReleaseResult::Healthy, "")];
    let first = status(&facts(Some(&record), &releases));
    let mut later = facts(Some(&record), &releases);
    later.now_ms += 60_000;
    later.previous = Some(&first);
    let second = status(&later);
    assert_eq!(first, second, "nothing changed, so nothing is written");
    let failed = drover_store::EnvironmentStatus {
        status: SyncStatus::Failed,
        ..record.clone()
    };
    later.record = Some(&failed);
    let third = status(&later);
    let ready = |s: &EnvironmentStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap()
            .last_transition_time
            .clone()
    };
    assert_ne!(ready(&third), ready(&first));
}

#[test]
fn history_is_bounded_by_the_limit_and_by_ten() {
    let record = record(SyncStatus::Synced, "");
    let releases: Vec<_> = (0..15)
        .map(|_| release(ReleaseResult::Healthy, ""))
        .collect();
    assert_eq!(
        status(&facts(Some(&record), &releases)).history.len(),
        HISTORY_KEPT
    );
    let mut f = facts(Some(&record), &releases);
    f.history_limit = 3;
    assert_eq!(status(&f).history.len(), 3);
}

#[test]
fn inventory_ids_are_fluxs() {
    assert_eq!(
        inventory_entry("apps/v1", "Deployment", "staging", "web"),
        InventoryEntry {
            id: "staging_web_apps_Deployment".into(),
            v: "v1".into()
        }
    );
    assert_eq!(
        inventory_entry("v1", "Namespace", "", "staging"),
        InventoryEntry {
            id: "_staging__Namespace".into(),
            v: "v1".into()
        }
    );
}
