//! Supervising one instance: start it, probe it on schedule, restart it when it exits
//! (per its restart policy, with back-off) or fails liveness, and publish its status —
//! running or not, ready or not, restarts, the last failure — for the control plane.

use std::time::{Duration, Instant};

use drover_model::service::{Probe, RestartPolicy};
use tokio::sync::{oneshot, watch};

use crate::probe::{self, Change, Purpose, Target, Tracker};
use crate::process::{self, Backoff, Spec};

/// Everything needed to run one instance.
#[derive(Debug, Clone)]
pub struct InstanceSpec {
    pub process: Spec,
    pub restart: RestartPolicy,
    pub liveness: Option<Probe>,
    pub readiness: Option<Probe>,
    pub target: Target,
    pub backoff: Backoff,
    /// How long a stop waits after SIGTERM before SIGKILL.
    pub grace: Duration,
}

/// Where an instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Starting,
    Running,
    /// Exited; waiting before the next start.
    BackingOff,
    /// Exited and, by its restart policy, not started again.
    Exited,
    /// Could not be started at all (the program is missing, …).
    Failed,
    Stopped,
}

/// What the supervisor publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub phase: Phase,
    /// Passing readiness (always true without a readiness probe, once running).
    pub ready: bool,
    pub pid: Option<u32>,
    pub restarts: u32,
    /// Why it last stopped being healthy or running, in one line.
    pub last_failure: Option<String>,
    /// Its readiness probe fails `failureThreshold` times in a row or more.
    pub failing: bool,
}

/// A supervised instance. Dropping the handle without [`Handle::stop`] stops it too.
#[derive(Debug)]
pub struct Handle {
    pub status: watch::Receiver<Status>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Handle {
    /// Stops the instance (SIGTERM, then SIGKILL after the grace period) and waits.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Starts supervising an instance on the current tokio runtime.
pub fn supervise(spec: InstanceSpec) -> Handle {
    let (tx, status) = watch::channel(Status {
        phase: Phase::Starting,
        ready: false,
        pid: None,
        restarts: 0,
        last_failure: None,
        failing: false,
    });
    let (stop_tx, stop_rx) = oneshot::channel();
    let task = tokio::spawn(run(spec, tx, stop_rx));
    Handle {
        status,
        stop: Some(stop_tx),
        task,
    }
}

/// Why one run of the process ended.
enum Ended {
    Exited(std::process::ExitStatus),
    LivenessFailed(String),
    Stop,
}

async fn run(spec: InstanceSpec, tx: watch::Sender<Status>, mut stop: oneshot::Receiver<()>) {
    let mut crashes = 0u32;
    loop {
        let mut child = match process::spawn(&spec.process) {
            Ok(child) => child,
            Err(error) => {
                tx.send_modify(|s| {
                    s.phase = Phase::Failed;
                    s.ready = false;
                    s.last_failure = Some(format!("cannot start: {error}"));
                });
                return;
            }
        };
        let started = Instant::now();
        tx.send_modify(|s| {
            s.phase = Phase::Running;
            s.failing = false;
            s.pid = Some(child.pid());
            s.ready = spec.readiness.is_none();
        });
        let mut liveness = spec
            .liveness
            .as_ref()
            .map(|p| (p, Tracker::new(p, Purpose::Liveness), None::<Instant>));
        let mut readiness = spec
            .readiness
            .as_ref()
            .map(|p| (p, Tracker::new(p, Purpose::Readiness), None::<Instant>));

        let ended = loop {
            // The next probe due, of either kind.
            let due = [
                liveness
                    .as_ref()
                    .map(|(p, _, last)| probe::next_check(p, started, *last, false)),
                readiness
                    .as_ref()
                    .map(|(p, t, last)| probe::next_check(p, started, *last, !t.passed_once())),
            ]
            .into_iter()
            .flatten()
            .min();
            let sleep = async {
                match due {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                status = child.wait() => break match status {
                    Ok(status) => Ended::Exited(status),
                    Err(_) => Ended::Exited(std::os::unix::process::ExitStatusExt::from_raw(1 << 8)),
                },
                _ = &mut stop => break Ended::Stop,
                () = sleep => {
                    let now = Instant::now();
                    if let Some((p, tracker, last)) = liveness.as_mut()
                        && probe::next_check(p, started, *last, false) <= now
                    {
                        *last = Some(now);
                        if let Some(Change::BecameUnhealthy { reason, failures }) = tracker.observe(probe::check(p, &spec.target).await) {
                            break Ended::LivenessFailed(format!("liveness {reason} ({failures} times)"));
                        }
                    }
                    if let Some((p, tracker, last)) = readiness.as_mut()
                        && probe::next_check(p, started, *last, !tracker.passed_once()) <= now
                    {
                        *last = Some(now);
                        let change = tracker.observe(probe::check(p, &spec.target).await);
                        // Failing beyond the threshold, ready before or not: rollouts
                        // count such an instance as failed.
                        // Only once the probe had the time to fail that often at its
                        // period: the quick warm-up checks of a slow starter never count.
                        let grace = Duration::from_secs(u64::from(
                            p.initial_delay_seconds
                                + p.period_seconds.max(1) * p.failure_threshold.max(1),
                        ));
                        let failing = tracker.failing().filter(|_| started.elapsed() >= grace);
                        if failing.is_some() != tx.borrow().failing {
                            tx.send_modify(|s| {
                                s.failing = failing.is_some();
                                if let Some((reason, failures)) = &failing {
                                    s.last_failure = Some(format!("readiness {reason} ({failures} times)"));
                                }
                            });
                        }
                        match change {
                            Some(Change::BecameHealthy) => tx.send_modify(|s| s.ready = true),
                            Some(Change::BecameUnhealthy { reason, failures }) => tx.send_modify(|s| {
                                s.ready = false;
                                s.last_failure = Some(format!("readiness {reason} ({failures} times)"));
                            }),
                            None => {}
                        }
                    }
                }
            }
        };

        let (restart, failure) = match ended {
            Ended::Stop => {
                let _ = child.stop(spec.grace).await;
                tx.send_modify(|s| {
                    s.phase = Phase::Stopped;
                    s.ready = false;
                    s.pid = None;
                });
                return;
            }
            Ended::LivenessFailed(reason) => {
                let _ = child.stop(spec.grace).await;
                (spec.restart != RestartPolicy::Never, reason)
            }
            Ended::Exited(status) => {
                // The leader is gone; nothing it started may linger.
                let _ = child.stop(Duration::ZERO).await;
                let code = status
                    .code()
                    .map_or("a signal".to_owned(), |c| format!("status {c}"));
                (
                    process::restarts(spec.restart, status),
                    format!("exited with {code}"),
                )
            }
        };
        let ran = started.elapsed();
        crashes = if ran >= spec.backoff.reset_after {
            1
        } else {
            crashes + 1
        };
        tx.send_modify(|s| {
            s.ready = false;
            s.pid = None;
            s.last_failure = Some(failure);
            s.phase = if restart {
                Phase::BackingOff
            } else {
                Phase::Exited
            };
        });
        if !restart {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(spec.backoff.delay(crashes, ran)) => {}
            _ = &mut stop => {
                tx.send_modify(|s| s.phase = Phase::Stopped);
                return;
            }
        }
        tx.send_modify(|s| {
            s.restarts += 1;
            s.phase = Phase::Starting;
        });
    }
}
