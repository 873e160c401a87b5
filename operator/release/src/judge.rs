//! The release verdict: from an open release and each of its services' progress, as
//! an engine reports it, whether the release is healthy, failed (and so rolled back as
//! a whole), or undecided until a given instant — a pure function of its inputs, so
//! every engine gets the same judgement and a restarted controller judges the same.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::state::{ReleaseResult, Trigger};

/// A release being judged: a revision applied to an environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenRelease {
    /// The release's id in the store.
    pub id: i64,
    /// The revision applied (full id).
    pub revision: String,
    /// The services it changed, in the order they were planned.
    pub services: Vec<String>,
    /// Nothing of the environment ran before it (its snapshot, what a rollback would
    /// apply again, is empty). The snapshot itself stays in the store: with a
    /// thousand services it is megabytes, and every pass's orders copy this.
    pub first: bool,
    /// When this controller started judging it.
    pub started: Instant,
    /// How long its services have to become healthy.
    pub deadline: Duration,
    /// Roll the whole release back when it fails.
    pub automatic_rollback: bool,
    /// Write a revert commit to Git after a rollback.
    pub revert_commit: bool,
    /// What started it; a rollback is itself a release, never rolled back again.
    pub trigger: Trigger,
}

/// What the environment's rollback policy says, as a release needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub deadline: Duration,
    pub automatic_rollback: bool,
    pub revert_commit: bool,
}

impl From<&drover_model::environment::RollbackPolicy> for Policy {
    fn from(p: &drover_model::environment::RollbackPolicy) -> Policy {
        Policy {
            deadline: p.progress_deadline.to_std(),
            automatic_rollback: p.automatic,
            revert_commit: p.revert_commit,
        }
    }
}

/// Whether a release's snapshot (what ran before it, as JSON) holds nothing.
pub fn empty_snapshot(snapshot: &str) -> bool {
    snapshot.trim() == "[]"
}

impl OpenRelease {
    /// A release that starts now; `first` when nothing of the environment ran before
    /// it (see [`empty_snapshot`]).
    pub fn start(
        id: i64,
        revision: &str,
        services: Vec<String>,
        first: bool,
        trigger: Trigger,
        policy: Policy,
        now: Instant,
    ) -> OpenRelease {
        OpenRelease {
            id,
            revision: revision.to_owned(),
            services,
            first,
            started: now,
            deadline: policy.deadline,
            automatic_rollback: policy.automatic_rollback,
            revert_commit: policy.revert_commit,
            trigger,
        }
    }

    /// Whether nothing of the environment ran before it (its snapshot is empty).
    pub fn is_first(&self) -> bool {
        self.first
    }

    /// Whether it is the rollback of another release.
    pub fn is_rollback(&self) -> bool {
        self.trigger == Trigger::Rollback
    }

    /// The release that rolls this one back: the same services, judged from `now`,
    /// stored as `id`.
    pub fn rollback(&self, id: i64, now: Instant) -> OpenRelease {
        OpenRelease {
            id,
            started: now,
            trigger: Trigger::Rollback,
            ..self.clone()
        }
    }

    /// The revision's short form, as people read it.
    pub fn short(&self) -> &str {
        drover_model::short_id(&self.revision)
    }
}

/// How a release ends when a newer revision arrives before it was judged.
pub fn supersede(by_short: &str) -> (ReleaseResult, String) {
    (
        ReleaseResult::Superseded,
        format!("revision {by_short} arrived"),
    )
}

/// Where one service of a release is, as its engine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Not started: it waits for the services it depends on (or, in a rollback, those
    /// that depend on it).
    Waiting { on: String },
    /// Instances are moving to the new spec, or not yet ready through their monitor.
    Rolling,
    /// Every instance is on the new spec, ready and past its monitor period.
    Healthy,
    /// The update stopped: why, in a person's words.
    Failed { why: String },
    /// The release removed it: nothing to wait for.
    Absent,
}

/// A service's progress and the state of its instances, which a reason shows:
/// `, 0/3 ready, readiness GET /ready returned 503 (3 times)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceProgress {
    pub progress: Progress,
    pub detail: String,
}

impl ServiceProgress {
    pub fn new(progress: Progress, detail: impl Into<String>) -> ServiceProgress {
        ServiceProgress {
            progress,
            detail: detail.into(),
        }
    }

    fn done(&self) -> bool {
        matches!(self.progress, Progress::Healthy | Progress::Absent)
    }
}

/// What to do about an open release now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Undecided: look again when something changes, and at `until` at the latest
    /// (the progress deadline).
    Wait { until: Instant },
    /// Every service it changed is healthy.
    Healthy,
    /// It failed and stays as it is: a rollback that failed, or automatic rollback off.
    Failed { reason: String },
    /// It failed: roll the whole release back.
    RollBack { reason: String },
}

/// `text` followed by an engine's detail, whether or not the detail starts with its
/// own `, ` (the local engine's does; the Kubernetes engine's reads on its own too).
fn with_detail(text: String, detail: &str) -> String {
    match detail {
        "" => text,
        d if d.starts_with(", ") => text + d,
        d => format!("{text}, {d}"),
    }
}

/// Judges `release` from its services' progress (a service missing from `progress`
/// has not been seen yet and counts as rolling).
pub fn judge(
    release: &OpenRelease,
    progress: &BTreeMap<String, ServiceProgress>,
    now: Instant,
) -> Verdict {
    let of = |service: &String| progress.get(service);
    let failure = release
        .services
        .iter()
        .find_map(|service| match of(service) {
            Some(ServiceProgress {
                progress: Progress::Failed { why },
                detail,
            }) => Some(with_detail(format!("{service}: {why}"), detail)),
            _ => None,
        });
    let pending = release
        .services
        .iter()
        .find(|s| !of(s).is_some_and(ServiceProgress::done));
    let until = release.started + release.deadline;
    let reason = match (failure, pending) {
        (Some(reason), _) => reason,
        (None, None) => return Verdict::Healthy,
        (None, Some(slow)) if now.duration_since(release.started) > release.deadline => {
            with_detail(
                format!(
                    "{slow}: not healthy within the progress deadline ({}s)",
                    release.deadline.as_secs()
                ),
                of(slow).map_or("", |p| p.detail.as_str()),
            )
        }
        (None, Some(_)) => return Verdict::Wait { until },
    };
    if release.is_rollback() || !release.automatic_rollback {
        Verdict::Failed { reason }
    } else if release.is_first() {
        // Rolling back would remove the environment, and reverting would revert the
        // commit that created it: it fails, and a new commit fixes it.
        Verdict::Failed {
            reason: format!(
                "{reason}; it is the environment's first release: nothing ran before it, so there is nothing to roll back to (fix it with a new commit)"
            ),
        }
    } else {
        Verdict::RollBack { reason }
    }
}

/// How a judged release is recorded: its result and the line people read (`None`
/// while it waits). [`ReleaseResult::event_reason`] and
/// [`ReleaseResult::notification`] name its event and notification.
pub fn outcome(release: &OpenRelease, verdict: &Verdict) -> Option<(ReleaseResult, String)> {
    let short = release.short();
    // A rollback is named as one: its revision is the failed release's.
    let what = if release.is_rollback() {
        format!("rollback of release {short}")
    } else {
        format!("release {short}")
    };
    match verdict {
        Verdict::Wait { .. } => None,
        Verdict::Healthy if release.is_rollback() => Some((
            ReleaseResult::Healthy,
            format!("{what} is healthy: back at what ran before"),
        )),
        Verdict::Healthy => Some((ReleaseResult::Healthy, format!("{what} is healthy"))),
        Verdict::Failed { reason } => {
            Some((ReleaseResult::Failed, format!("{what} failed — {reason}")))
        }
        Verdict::RollBack { reason } => Some((
            ReleaseResult::RolledBack,
            format!("release {short} failed — {reason}; rolling back"),
        )),
    }
}
