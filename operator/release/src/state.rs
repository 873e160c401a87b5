//! The states Drover keeps, as enums: parsed once where they enter (the store, the API,
//! the CLI) and compared as values everywhere else. Each has one text form, the one
//! stored, shown and sent in JSON.

/// A text that names none of an enum's states.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{text}`: expected one of {expected}")]
pub struct UnknownState {
    pub kind: &'static str,
    pub text: String,
    pub expected: String,
}

/// A state with one text form each way.
pub trait TextState: Copy + Sized + 'static {
    /// What it is called in errors: `release result`.
    const KIND: &'static str;
    /// Every state, in declaration order.
    const ALL: &'static [Self];
    fn as_str(self) -> &'static str;
    /// The state `text` names.
    fn parse(text: &str) -> Result<Self, UnknownState> {
        Self::ALL
            .iter()
            .copied()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| UnknownState {
                kind: Self::KIND,
                text: text.to_owned(),
                expected: Self::ALL
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

macro_rules! text_state {
    ($(#[$meta:meta])* $name:ident = $kind:literal { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant,)+
        }

        impl TextState for $name {
            const KIND: &'static str = $kind;
            const ALL: &'static [Self] = &[$($name::$variant),+];
            fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl $name {
            /// Its text form.
            pub fn as_str(self) -> &'static str {
                TextState::as_str(self)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownState;
            fn from_str(text: &str) -> Result<Self, UnknownState> {
                <$name as TextState>::parse(text)
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    };
}

text_state! {
    /// How a release ended, or that it has not yet.
    ReleaseResult = "release result" {
        /// Applied; being judged.
        Progressing = "progressing",
        /// Every service it changed is updated, ready and past its monitor period.
        Healthy = "healthy",
        /// It failed and stays as it is (automatic rollback off, or a failed rollback).
        Failed = "failed",
        /// It failed and the whole release was rolled back.
        RolledBack = "rolled-back",
        /// A newer revision arrived before it was judged.
        Superseded = "superseded",
    }
}

impl ReleaseResult {
    /// Not judged yet.
    pub fn is_open(self) -> bool {
        self == ReleaseResult::Progressing
    }

    /// The stable reason of the event that records a release reaching this result.
    pub fn event_reason(self) -> &'static str {
        match self {
            ReleaseResult::Progressing => "ReleaseStarted",
            ReleaseResult::Healthy => "ReleaseHealthy",
            ReleaseResult::Failed => "ReleaseFailed",
            ReleaseResult::RolledBack => "RollingBack",
            ReleaseResult::Superseded => "ReleaseSuperseded",
        }
    }

    /// The kind of notification receivers get for it.
    pub fn notification(self) -> &'static str {
        match self {
            ReleaseResult::Progressing => "release.started",
            ReleaseResult::Healthy => "release.succeeded",
            ReleaseResult::Failed => "release.failed",
            ReleaseResult::RolledBack => "release.rolled-back",
            ReleaseResult::Superseded => "release.superseded",
        }
    }
}

text_state! {
    /// What started a release.
    Trigger = "release trigger" {
        /// A commit followed from Git.
        Git = "git",
        /// Drover rolling back a failed release.
        Rollback = "rollback",
        /// `drover rollback`: a commit Drover wrote because a person asked.
        Manual = "manual",
    }
}

text_state! {
    /// Whether an environment's live objects are what Git says.
    #[derive(Default)]
    SyncStatus = "sync status" {
        /// Live is what Git says.
        Synced = "Synced",
        /// Live differs and Drover does not change it (manual sync, or self-heal off).
        OutOfSync = "OutOfSync",
        /// Drover keeps live as it is on purpose (a failed revision, the prune guard).
        Held = "Held",
        /// No engine of this Drover drives the environment's cluster: nothing of it is
        /// deployed.
        Unsupported = "Unsupported",
        /// The engine could not observe or change the environment's cluster (refused
        /// credentials, an unreachable API server); the message says why.
        Failed = "Failed",
        /// Nothing applied yet.
        #[default]
        Pending = "Pending",
    }
}

text_state! {
    /// What a queued Git write is.
    WriteKind = "git write kind" {
        /// The revert commit of a rolled-back release.
        Revert = "revert",
        /// A manual rollback's commit restoring an environment's folder.
        Restore = "restore",
        /// A promotion's commit.
        Promotion = "promotion",
        /// A deploy's commit (new versions from CI).
        Deploy = "deploy",
    }
}

text_state! {
    /// Where a queued Git write is.
    WriteState = "git write state" {
        /// Recorded; not yet known to be in Git.
        Pending = "pending",
        /// In Git: its commit is the result.
        Written = "written",
        /// It could not be written: the result says why.
        Failed = "failed",
    }
}

text_state! {
    /// Where a promotion is.
    #[derive(Default)]
    PromotionState = "promotion state" {
        /// Asked for; not yet checked against the gate.
        #[default]
        Pending = "pending",
        /// The gate was not met; nothing written.
        Gated = "gated",
        /// The versions are committed to the target's files.
        Committed = "committed",
        /// The target is releasing the commit.
        Deploying = "deploying",
        /// The target's release of the commit is healthy.
        Succeeded = "succeeded",
        /// It could not be written, or its release failed.
        Failed = "failed",
        /// The target's release failed and was rolled back (and reverted).
        RolledBack = "rolled-back",
    }
}

impl PromotionState {
    /// Nothing more will happen to it.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            PromotionState::Succeeded | PromotionState::Failed | PromotionState::RolledBack
        )
    }

    /// Where a committed promotion is, from the target's release of its commit, and
    /// why when it did not succeed.
    pub fn of_release(result: ReleaseResult, reason: &str) -> (PromotionState, String) {
        match result {
            ReleaseResult::Progressing => (PromotionState::Deploying, String::new()),
            ReleaseResult::Healthy => (PromotionState::Succeeded, String::new()),
            ReleaseResult::RolledBack => (PromotionState::RolledBack, reason.to_owned()),
            ReleaseResult::Superseded => (
                PromotionState::Failed,
                format!("superseded before it was healthy: {reason}"),
            ),
            ReleaseResult::Failed => (PromotionState::Failed, reason.to_owned()),
        }
    }
}

text_state! {
    /// Where a service is in its life (the words Swarm and Kubernetes users read).
    Lifecycle = "service state" {
        /// No instance has become ready yet.
        Starting = "Starting",
        /// Every instance runs the current spec and is ready.
        Running = "Running",
        /// Some instances still run an older spec.
        Updating = "Updating",
        /// Instances fail, crash or cannot be placed.
        Abnormal = "Abnormal",
    }
}

text_state! {
    /// A service's health as Argo CD users read it.
    Health = "health" {
        Healthy = "Healthy",
        Progressing = "Progressing",
        Degraded = "Degraded",
        /// Git has it; nothing of it runs.
        Missing = "Missing",
    }
}

impl Lifecycle {
    /// Where a service is, from its progress and how many of its instances are ready
    /// (for engines that roll services out themselves).
    pub fn of(progress: &crate::judge::Progress, ready: u32) -> Lifecycle {
        use crate::judge::Progress;
        match progress {
            Progress::Healthy | Progress::Absent => Lifecycle::Running,
            Progress::Failed { .. } => Lifecycle::Abnormal,
            Progress::Rolling | Progress::Waiting { .. } if ready == 0 => Lifecycle::Starting,
            Progress::Rolling | Progress::Waiting { .. } => Lifecycle::Updating,
        }
    }
}

impl Health {
    /// The health of a service in `lifecycle` with `instances` instances.
    pub fn of(lifecycle: Lifecycle, instances: usize) -> Health {
        match lifecycle {
            Lifecycle::Running => Health::Healthy,
            Lifecycle::Abnormal => Health::Degraded,
            Lifecycle::Starting if instances == 0 => Health::Missing,
            Lifecycle::Starting | Lifecycle::Updating => Health::Progressing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trips<T: TextState + PartialEq + std::fmt::Debug + serde::Serialize>() {
        for state in T::ALL {
            assert_eq!(T::parse(state.as_str()).as_ref(), Ok(state));
            assert_eq!(
                serde_json::to_value(state).unwrap(),
                serde_json::Value::from(state.as_str())
            );
        }
    }

    #[test]
    fn every_state_reads_back_from_its_text_and_json() {
        round_trips::<ReleaseResult>();
        round_trips::<Trigger>();
        round_trips::<SyncStatus>();
        round_trips::<WriteKind>();
        round_trips::<WriteState>();
        round_trips::<PromotionState>();
        round_trips::<Lifecycle>();
        round_trips::<Health>();
    }

    #[test]
    fn an_unknown_text_says_what_was_expected() {
        let error = "rolledback".parse::<ReleaseResult>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown release result `rolledback`: expected one of progressing, healthy, failed, rolled-back, superseded"
        );
    }

    #[test]
    fn a_promotion_follows_its_release() {
        let cases = [
            (ReleaseResult::Progressing, PromotionState::Deploying, ""),
            (ReleaseResult::Healthy, PromotionState::Succeeded, ""),
            (
                ReleaseResult::RolledBack,
                PromotionState::RolledBack,
                "web: boom",
            ),
            (
                ReleaseResult::Superseded,
                PromotionState::Failed,
                "superseded before it was healthy: web: boom",
            ),
            (ReleaseResult::Failed, PromotionState::Failed, "web: boom"),
        ];
        for (result, state, reason) in cases {
            assert_eq!(
                PromotionState::of_release(result, "web: boom"),
                (state, reason.to_owned()),
                "{result}"
            );
        }
    }
}
