//! The Git half of GitOps: a config repo at any revision, read from Git's object
//! database and validated, plus the signals that say it changed — a watch on a local
//! repository's refs, and verified push webhooks from Git hosts.

mod changes;
mod check;
mod follow;
mod git;
mod signature;
mod watch;
pub mod webhook;
mod written;

pub use changes::{DroverWrites, Refusal, Rules};
pub use check::check_revision;
pub use follow::{Follower, Update};
pub use git::{
    Credentials, Desired, GitSource, Redacted, Reference, RepoSpec, Revision, SourceError,
    redact_url,
};
pub use watch::{RefWatch, watch_refs};
pub use written::trailer;
