//! Following the tracked reference: each time something may have changed (a ref moved,
//! a poll, a webhook), fetch if remote, resolve the reference, and when it names a new
//! commit, compute that commit's desired state. An invalid revision is rejected and
//! the last valid one stays in force: nothing invalid ever reaches an engine.

use drover_load::{Diagnostic, DocumentCache};

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
}

impl Follower {
    /// Follows `source`; nothing is in force until the first check.
    pub fn new(source: GitSource) -> Follower {
        Follower {
            source,
            seen: None,
            in_force: None,
            cache: DocumentCache::default(),
        }
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
        self.source.fetch()?;
        let revision = self.source.tracked()?;
        if self.seen.as_deref() == Some(revision.id.as_str()) {
            return Ok(None);
        }
        self.seen = Some(revision.id.clone());
        let desired = self.source.desired_at_cached(&revision, &mut self.cache)?;
        if desired.checked.is_valid() {
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
