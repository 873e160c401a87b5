//! The promotion gate: whether a target environment may take its source's versions
//! now — the target promotes from that source, the source is synced with no release
//! open and every service running, it has been healthy for its soak time, and the
//! target is not in the middle of a release. Every reason the gate is closed is a
//! value, so callers choose their answer (409, a status line) without reading text.

use std::fmt;

use drover_model::environment::{Promotion, PromotionMode};

use crate::state::{Lifecycle, SyncStatus};

/// An environment as the gate needs to see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvironmentFacts {
    pub sync: SyncStatus,
    /// Why it is not synced, when it is not.
    pub message: String,
    /// A release of it is open.
    pub releasing: bool,
    pub services: Vec<ServiceFacts>,
}

/// A service as the gate needs to see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceFacts {
    pub name: String,
    pub state: Lifecycle,
    pub ready: u32,
    pub desired: u32,
    /// Why it is abnormal, when it is.
    pub message: String,
}

/// Why the gate is closed now: a promotion could pass later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    /// The source has never been applied.
    NotApplied { env: String },
    /// The source is not synced with Git.
    NotSynced {
        env: String,
        sync: SyncStatus,
        message: String,
    },
    /// The source is rolling out a release.
    Releasing { env: String },
    /// A service of the source is not running all its instances ready.
    Unhealthy { env: String, service: ServiceFacts },
    /// The target is rolling out a release.
    TargetReleasing { env: String },
    /// The source has not been healthy for its soak time yet.
    Soaking {
        env: String,
        healthy_ms: i64,
        soak_ms: i64,
    },
}

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Closed::NotApplied { env } => write!(f, "{env} has not been applied yet"),
            Closed::NotSynced { env, sync, message } => write!(f, "{env} is {sync}: {message}"),
            Closed::Releasing { env } => write!(f, "{env} is rolling out a release"),
            Closed::Unhealthy { env, service: s } => {
                write!(
                    f,
                    "{env} is not healthy: {} is {}, {}/{} ready",
                    s.name, s.state, s.ready, s.desired
                )?;
                if !s.message.is_empty() {
                    write!(f, " — {}", s.message)?;
                }
                Ok(())
            }
            Closed::TargetReleasing { env } => {
                write!(f, "{env} is rolling out a release; promote when it is done")
            }
            Closed::Soaking {
                env,
                healthy_ms,
                soak_ms,
            } => write!(
                f,
                "{env} has been healthy for {}; the soak time is {} ({} to go)",
                human_duration(*healthy_ms),
                human_duration(*soak_ms),
                human_duration(soak_ms - healthy_ms)
            ),
        }
    }
}

/// Why a promotion can never pass as asked: the config does not allow it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error(
        "{to} does not promote from any environment: add `promotion: {{from: {from}}}` to its Environment"
    )]
    NotPromoted { to: String, from: String },
    #[error("{to} promotes from {expected}, not from {from}")]
    OtherSource {
        to: String,
        from: String,
        expected: String,
    },
}

/// A gate that is open: how long the source has been healthy, and how the target
/// takes promotions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Open {
    pub healthy_ms: i64,
    pub pull_request: bool,
}

/// Why `env` is not healthy now, or `None` when it is: synced, no release open, every
/// service running with all its instances ready. (`None` facts: never applied.)
pub fn unhealthy(env: &str, facts: Option<&EnvironmentFacts>) -> Option<Closed> {
    let env = env.to_owned();
    let Some(facts) = facts else {
        return Some(Closed::NotApplied { env });
    };
    if facts.sync != SyncStatus::Synced {
        return Some(Closed::NotSynced {
            env,
            sync: facts.sync,
            message: facts.message.clone(),
        });
    }
    if facts.releasing {
        return Some(Closed::Releasing { env });
    }
    let service = facts
        .services
        .iter()
        .find(|s| s.state != Lifecycle::Running)?;
    Some(Closed::Unhealthy {
        env,
        service: service.clone(),
    })
}

/// What the gate is judged from.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub from: &'a str,
    pub to: &'a str,
    /// The target's `promotion` policy.
    pub policy: Option<&'a Promotion>,
    pub source: Option<&'a EnvironmentFacts>,
    pub target_releasing: bool,
    /// Since when the source has been healthy (Unix ms), if it is.
    pub healthy_since_ms: Option<i64>,
    pub now_ms: i64,
}

/// The gate: `Ok(Err(closed))` while it is closed, `Err` when the promotion is not
/// allowed at all.
pub fn check(input: Input<'_>) -> Result<Result<Open, Closed>, Refused> {
    let (from, to) = (input.from.to_owned(), input.to.to_owned());
    let Some(policy) = input.policy else {
        return Err(Refused::NotPromoted { to, from });
    };
    if policy.from != input.from {
        return Err(Refused::OtherSource {
            to,
            from,
            expected: policy.from.clone(),
        });
    }
    if let Some(closed) = unhealthy(input.from, input.source) {
        return Ok(Err(closed));
    }
    if input.target_releasing {
        return Ok(Err(Closed::TargetReleasing { env: to }));
    }
    let soak_ms = policy.soak.to_std().as_millis() as i64;
    let healthy_ms = input.healthy_since_ms.map_or(0, |s| input.now_ms - s);
    if healthy_ms < soak_ms {
        return Ok(Err(Closed::Soaking {
            env: from,
            healthy_ms,
            soak_ms,
        }));
    }
    Ok(Ok(Open {
        healthy_ms,
        pull_request: policy.mode == PromotionMode::PullRequest,
    }))
}

/// A duration as people write it: `0s`, `12s`, `1m1s`, `5m`, `1h30m`.
pub fn human_duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        s if s >= 3600 && s % 3600 / 60 == 0 => format!("{}h", s / 3600),
        s if s >= 3600 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s if s >= 60 => format!("{}m{}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}
