//! The release core: every decision about releases, rollbacks and promotions that does
//! not depend on where services run, as pure functions of (desired, observed, now).
//! Engines report what they see in this crate's vocabulary; the controller asks these
//! functions what to do and carries it out. Nothing here does I/O.
//!
//! - [`state`]: the states Drover keeps (release result and trigger, sync status,
//!   promotion state, service lifecycle, health), as enums with one text form each;
//! - [`judge`]: an open release's [`Verdict`] from its services' [`Progress`];
//! - [`waves`]: `dependsOn` order within a release, reversed for a rollback;
//! - [`gate`]: the promotion gate and soak;
//! - [`explain`]: a service's lifecycle and "why isn't it deployed";
//! - [`autoscale`]: the autoscaler's formula;
//! - [`promotion`]: what a promotion carries, as edits of the target's files.

pub mod autoscale;
pub mod explain;
pub mod gate;
pub mod judge;
pub mod promotion;
pub mod state;
pub mod waves;

pub use judge::{OpenRelease, Policy, Progress, ServiceProgress, Verdict, judge};
pub use state::{
    Health, Lifecycle, PromotionState, ReleaseResult, SyncStatus, TextState, Trigger, UnknownState,
    WriteKind, WriteState,
};

#[cfg(test)]
mod tests;
