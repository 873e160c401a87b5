//! Rolling updates (domain notes §5, Swarm's semantics): which instances of a service
//! move to its new spec now. A pure function of the slots' state and the clock; the
//! control plane calls it on every pass and applies what it says.
//!
//! Slots are updated in batches of `parallelism` (0: all at once), `delay` apart. A
//! batch is done when each of its instances is ready on the new spec and stays so for
//! the `monitor` period. An instance that fails meanwhile (exits, crash-loops, fails its
//! readiness probe `failureThreshold` times) is a failure; when failures exceed
//! `maxFailureRatio` of the service's instances, the update stops advancing
//! (`failureAction: pause`; `rollback` is decided per release, above this function)
//! or carries on (`continue`). With the `recreate` strategy every slot moves at once.

use std::time::{Duration, Instant};

use drover_model::service::{FailureAction, Strategy, UpdateConfig};

/// One slot of a service, as the control plane sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub id: String,
    /// Runs (or is assigned) the new spec already.
    pub updated: bool,
    /// On the new spec: ready since this instant.
    pub ready_since: Option<Instant>,
    /// On the new spec: failed (exited, crash-looping or failing readiness).
    pub failed: bool,
}

/// What to do now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Step {
    /// Slots to move to the new spec now.
    pub advance: Vec<String>,
    /// Set when the update stopped advancing, saying why.
    pub paused: Option<String>,
    /// Every slot is on the new spec, ready, and past its monitor period.
    pub done: bool,
}

/// The next step of a service's update. `last_batch` is when the previous batch
/// started.
pub fn next(
    strategy: Strategy,
    update: &UpdateConfig,
    slots: &[Slot],
    last_batch: Option<Instant>,
    now: Instant,
) -> Step {
    let monitor = Duration::from_millis(update.monitor.millis());
    let settled = |s: &Slot| s.updated && s.ready_since.is_some_and(|at| now >= at + monitor);
    let mut step = Step {
        done: slots.iter().all(settled),
        ..Step::default()
    };
    if step.done {
        return step;
    }
    let failed: Vec<&Slot> = slots.iter().filter(|s| s.updated && s.failed).collect();
    let allowed = (update.max_failure_ratio * slots.len() as f64).floor() as usize;
    if failed.len() > allowed && update.failure_action != FailureAction::Continue {
        let ids: Vec<&str> = failed.iter().map(|s| s.id.as_str()).collect();
        step.paused = Some(format!(
            "update stopped: {} of {} instances failed ({})",
            failed.len(),
            slots.len(),
            ids.join(", ")
        ));
        return step;
    }
    let waiting: Vec<&Slot> = slots.iter().filter(|s| !s.updated).collect();
    if waiting.is_empty() {
        return step;
    }
    if strategy == Strategy::Recreate || update.parallelism == 0 {
        step.advance = waiting.iter().map(|s| s.id.clone()).collect();
        return step;
    }
    // Failed instances under `continue` do not hold the update back.
    let in_progress = slots
        .iter()
        .filter(|s| s.updated && !settled(s) && !s.failed)
        .count();
    let delay = Duration::from_millis(update.delay.millis());
    if last_batch.is_some_and(|at| now < at + delay) {
        return step;
    }
    let room = (update.parallelism as usize).saturating_sub(in_progress);
    step.advance = waiting.iter().take(room).map(|s| s.id.clone()).collect();
    step
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(id: &str, updated: bool, ready_for: Option<u64>, failed: bool, now: Instant) -> Slot {
        Slot {
            id: id.into(),
            updated,
            ready_since: ready_for.map(|s| now - Duration::from_secs(s)),
            failed,
        }
    }

    fn config(parallelism: u32, monitor_s: u64) -> UpdateConfig {
        UpdateConfig {
            parallelism,
            monitor: drover_model::Duration::secs(monitor_s),
            ..UpdateConfig::default()
        }
    }

    #[test]
    fn batches_of_parallelism_wait_for_the_previous_to_be_ready_through_its_monitor() {
        let now = Instant::now();
        let c = config(1, 5);
        let fresh = [
            slot("a", false, None, false, now),
            slot("b", false, None, false, now),
        ];
        assert_eq!(
            next(Strategy::Rolling, &c, &fresh, None, now).advance,
            ["a"]
        );
        // a is ready but still within its monitor period: b waits.
        let monitoring = [
            slot("a", true, Some(2), false, now),
            slot("b", false, None, false, now),
        ];
        assert!(
            next(Strategy::Rolling, &c, &monitoring, Some(now), now)
                .advance
                .is_empty()
        );
        let proven = [
            slot("a", true, Some(6), false, now),
            slot("b", false, None, false, now),
        ];
        assert_eq!(
            next(Strategy::Rolling, &c, &proven, Some(now), now).advance,
            ["b"]
        );
        let all = [
            slot("a", true, Some(6), false, now),
            slot("b", true, Some(6), false, now),
        ];
        assert!(next(Strategy::Rolling, &c, &all, Some(now), now).done);
    }

    #[test]
    fn a_failure_beyond_the_ratio_stops_the_update_unless_told_to_continue() {
        let now = Instant::now();
        let slots = [
            slot("a", true, None, true, now),
            slot("b", false, None, false, now),
        ];
        let step = next(Strategy::Rolling, &config(1, 5), &slots, Some(now), now);
        assert!(step.advance.is_empty());
        assert_eq!(
            step.paused.as_deref(),
            Some("update stopped: 1 of 2 instances failed (a)")
        );
        let go_on = UpdateConfig {
            failure_action: FailureAction::Continue,
            ..config(1, 5)
        };
        assert_eq!(
            next(Strategy::Rolling, &go_on, &slots, Some(now), now).advance,
            ["b"]
        );
    }

    #[test]
    fn recreate_and_parallelism_zero_move_every_slot_at_once() {
        let now = Instant::now();
        let slots = [
            slot("a", false, None, false, now),
            slot("b", false, None, false, now),
        ];
        assert_eq!(
            next(Strategy::Recreate, &config(1, 5), &slots, None, now).advance,
            ["a", "b"]
        );
        assert_eq!(
            next(Strategy::Rolling, &config(0, 5), &slots, None, now).advance,
            ["a", "b"]
        );
    }

    #[test]
    fn the_delay_separates_batches() {
        let now = Instant::now();
        let c = UpdateConfig {
            delay: drover_model::Duration::secs(10),
            ..config(1, 0)
        };
        let slots = [
            slot("a", true, Some(1), false, now),
            slot("b", false, None, false, now),
        ];
        let started = now - Duration::from_secs(3);
        assert!(
            next(Strategy::Rolling, &c, &slots, Some(started), now)
                .advance
                .is_empty()
        );
        let long_ago = now - Duration::from_secs(11);
        assert_eq!(
            next(Strategy::Rolling, &c, &slots, Some(long_ago), now).advance,
            ["b"]
        );
    }
}
