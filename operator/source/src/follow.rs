//! Following the tracked reference: each time something may have changed (a ref moved,
//! a poll, a webhook), fetch if remote, resolve the reference, and when it names a new
//! commit, compute that commit's desired state. An invalid revision is rejected and
//! the last valid one stays in force: nothing invalid ever reaches an engine.

use std::time::{Instant, SystemTime};

use drover_load::{Diagnostic, DocumentCache};
use drover_telemetry::RevisionOutcome;
use drover_telemetry::trace::CheckTimes;

use crate::changes::{DroverWrites, Refusal, Rules};
use crate::{Desired, GitSource, Revision, SourceError};

/// What a check of the source found.
#[derive(Debug)]
pub enum Update {
    /// The tracked reference names a new, valid revision: this is the desired state now.
    Accepted(Box<Desired>),
    /// The tracked reference names a new revision that is invalid; `in_force` (if any)
    /// stays the desired state.
    Rejected {
        revision: Revision,
        /// Its errors and warnings, each at `path:line:column`.
        diagnostics: Vec<Diagnostic>,
        in_force: Option<Revision>,
    },
    /// The tracked reference names a new, valid revision, but commits on the way to it
    /// break the change rules of environments they touch; `in_force` stays.
    Refused {
        revision: Revision,
        refusals: Vec<Refusal>,
        in_force: Option<Revision>,
    },
}

/// Follows one source's tracked reference.
#[derive(Debug)]
pub struct Follower {
    source: GitSource,
    /// The last commit looked at, valid or not (so an invalid one is reported once).
    seen: Option<String>,
    /// The desired state in force: the last valid revision.
    in_force: Option<Revision>,
    /// Parsed files of the last revision looked at: a commit re-parses only what it
    /// changed.
    cache: DocumentCache,
    /// The change rules of the revision in force: what new commits are judged by.
    rules: Rules,
    /// How Drover's own commits are recognized.
    writes: Option<Writes>,
    /// Fetches and outcomes are counted here.
    metrics: Option<drover_telemetry::Metrics>,
    /// When the last check that found a new revision started, fetched and finished
    /// (wall clock, for its trace).
    timings: CheckTimes,
}

/// [`DroverWrites`], shown as whether there is one.
#[derive(Clone)]
struct Writes(DroverWrites);

impl std::fmt::Debug for Writes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DroverWrites")
    }
}

impl Follower {
    /// Follows `source`; nothing is in force until the first check.
    pub fn new(source: GitSource) -> Follower {
        Follower {
            source,
            seen: None,
            in_force: None,
            cache: DocumentCache::default(),
            rules: Rules::default(),
            writes: None,
            metrics: None,
            timings: CheckTimes {
                started: SystemTime::UNIX_EPOCH,
                fetched: SystemTime::UNIX_EPOCH,
                checked: SystemTime::UNIX_EPOCH,
            },
        }
    }

    /// Counts fetches (their duration and failures) and revisions' outcomes in
    /// `metrics`.
    pub fn with_metrics(mut self, metrics: drover_telemetry::Metrics) -> Follower {
        self.metrics = Some(metrics);
        self
    }

    /// When the steps of the last check that found a new revision happened.
    pub fn timings(&self) -> CheckTimes {
        self.timings
    }

    /// Recognizes Drover's own commits (promotions, deploys, reverts) with `writes`.
    pub fn with_writes(mut self, writes: DroverWrites) -> Follower {
        self.writes = Some(Writes(writes));
        self
    }

    /// Takes `revision` (applied before this process started) as the one in force, so
    /// the commits after it are judged by its change rules.
    pub fn resume(&mut self, revision: &str) -> Result<(), SourceError> {
        let revision = self.source.resolve(revision)?;
        let desired = self.source.desired_at_cached(&revision, &mut self.cache)?;
        if desired.checked.is_valid() {
            self.rules = Rules::of(&desired.checked.repo);
            self.in_force = Some(revision);
        }
        Ok(())
    }

    /// The source being followed.
    pub fn source(&self) -> &GitSource {
        &self.source
    }

    /// The revision whose desired state is in force.
    pub fn in_force(&self) -> Option<&Revision> {
        self.in_force.as_ref()
    }

    /// Fetches (remotes only) and looks at the tracked reference. `None` when it still
    /// names the commit last looked at.
    pub fn check(&mut self) -> Result<Option<Update>, SourceError> {
        let started = SystemTime::now();
        let clock = Instant::now();
        let tracked = self.source.fetch().and_then(|()| self.source.tracked());
        if let Some(metrics) = &self.metrics {
            metrics.fetch(clock.elapsed(), tracked.is_err());
        }
        let revision = tracked?;
        if self.seen.as_deref() == Some(revision.id.as_str()) {
            return Ok(None);
        }
        let fetched = SystemTime::now();
        self.seen = Some(revision.id.clone());
        let update = self.judge(revision);
        self.timings = CheckTimes {
            started,
            fetched,
            checked: SystemTime::now(),
        };
        if let (Some(metrics), Ok(Some(update))) = (&self.metrics, &update) {
            metrics.revision(match update {
                Update::Accepted(_) => RevisionOutcome::Accepted,
                Update::Rejected { .. } => RevisionOutcome::Rejected,
                Update::Refused { .. } => RevisionOutcome::Refused,
            });
        }
        update
    }

    /// A new revision checked: accepted, rejected or refused.
    fn judge(&mut self, revision: Revision) -> Result<Option<Update>, SourceError> {
        let desired = self.source.desired_at_cached(&revision, &mut self.cache)?;
        if desired.checked.is_valid() {
            // The first revision is judged by its own rules; every later one by those
            // in force.
            let own = Rules::of(&desired.checked.repo);
            let judged_by = if self.in_force.is_some() {
                &self.rules
            } else {
                &own
            };
            let refusals = self.source.refusals(
                self.in_force.as_ref(),
                &revision,
                judged_by,
                self.writes.as_ref().map(|w| &w.0),
            )?;
            if !refusals.is_empty() {
                return Ok(Some(Update::Refused {
                    revision,
                    refusals,
                    in_force: self.in_force.clone(),
                }));
            }
            self.rules = own;
            self.in_force = Some(revision);
            Ok(Some(Update::Accepted(Box::new(desired))))
        } else {
            Ok(Some(Update::Rejected {
                revision,
                diagnostics: desired.checked.diagnostics,
                in_force: self.in_force.clone(),
            }))
        }
    }
}
