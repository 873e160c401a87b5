//! Health probes: running one check (HTTP GET, TCP connect, or a command) with a
//! timeout, and turning a series of outcomes into a verdict with the thresholds users
//! know from Kubernetes.
//!
//! Liveness starts healthy and turns unhealthy after `failureThreshold` consecutive
//! failures (the instance is then restarted); readiness starts not ready and turns
//! ready after `successThreshold` consecutive passes, unready again after
//! `failureThreshold` failures (the instance leaves load balancing, without a restart).
//! Checks begin `initialDelaySeconds` after start and repeat every `periodSeconds`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use drover_model::service::{PortRef, Probe, Scheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What a probe is for: it decides the starting verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Liveness,
    Readiness,
}

/// One check's result; a failure says why, for status lines such as
/// `readiness GET /ready returned 503`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail(String),
}

/// Where the instance under test is.
#[derive(Debug, Clone)]
pub struct Target {
    pub ip: IpAddr,
    /// The service's ports by name, as assigned to this instance.
    pub ports: BTreeMap<String, u16>,
    /// The port used when a probe names none (the service's first port).
    pub default_port: Option<u16>,
    /// Environment and working directory for `exec` probes.
    pub env: BTreeMap<String, String>,
    pub working_dir: Option<PathBuf>,
}

impl Target {
    fn port(&self, port: Option<&PortRef>) -> Result<u16, String> {
        match port {
            Some(PortRef::Number(n)) => Ok(*n),
            Some(PortRef::Name(name)) => self
                .ports
                .get(name)
                .copied()
                .ok_or_else(|| format!("no port named {name}")),
            None => self
                .default_port
                .ok_or_else(|| "no port to probe".to_owned()),
        }
    }
}

/// Runs the probe's check once, within its timeout.
pub async fn check(probe: &Probe, target: &Target) -> Outcome {
    let timeout = Duration::from_secs(u64::from(probe.timeout_seconds.max(1)));
    let result = if let Some(http) = &probe.http_get {
        match target.port(http.port.as_ref()) {
            Err(e) => Err(e),
            Ok(port) => {
                let what = format!("GET {}", http.path);
                match tokio::time::timeout(
                    timeout,
                    http_status(
                        SocketAddr::new(target.ip, port),
                        &http.path,
                        &http.headers,
                        http.scheme,
                    ),
                )
                .await
                {
                    Err(_) => Err(format!("{what} timed out after {}s", timeout.as_secs())),
                    Ok(Err(e)) => Err(format!("{what} failed: {e}")),
                    Ok(Ok(status)) if (200..=399).contains(&status) => Ok(()),
                    Ok(Ok(status)) => Err(format!("{what} returned {status}")),
                }
            }
        }
    } else if let Some(tcp) = &probe.tcp_socket {
        match target.port(tcp.port.as_ref()) {
            Err(e) => Err(e),
            Ok(port) => match tokio::time::timeout(
                timeout,
                tokio::net::TcpStream::connect((target.ip, port)),
            )
            .await
            {
                Err(_) => Err(format!(
                    "TCP connect to port {port} timed out after {}s",
                    timeout.as_secs()
                )),
                Ok(Err(e)) => Err(format!("TCP connect to port {port} failed: {e}")),
                Ok(Ok(_)) => Ok(()),
            },
        }
    } else if let Some(exec) = &probe.exec {
        run(&exec.command, target, timeout).await
    } else {
        // No check at all: always healthy, as with no probe.
        Ok(())
    };
    match result {
        Ok(()) => Outcome::Pass,
        Err(why) => Outcome::Fail(why),
    }
}

/// One HTTP/1.1 GET; returns the status code. HTTPS checks are not supported by the
/// local engine (instances listen on loopback) and fail with a clear reason.
async fn http_status(
    addr: SocketAddr,
    path: &str,
    headers: &BTreeMap<String, String>,
    scheme: Scheme,
) -> Result<u16, String> {
    if scheme == Scheme::Https {
        return Err("https probes are not supported by the local engine".to_owned());
    }
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: drover-probe\r\nConnection: close\r\n"
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    // The status line is all that matters: read until it is complete.
    let mut head = Vec::with_capacity(64);
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') {
        let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    line.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| "no HTTP status line in the answer".to_owned())
}

/// Runs a command; passes when it exits 0 in time. The command runs in its own
/// process group, and at the timeout the whole group is killed: a script's children
/// must not outlive the check.
async fn run(command: &[String], target: &Target, timeout: Duration) -> Result<(), String> {
    let (program, args) = command.split_first().ok_or("an empty command")?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .envs(&target.env)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .process_group(0);
    if let Some(dir) = &target.working_dir {
        cmd.current_dir(dir);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    match tokio::time::timeout(timeout, child.wait()).await {
        Err(_) => {
            if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = child.wait().await;
            Err(format!(
                "`{}` timed out after {}s",
                command.join(" "),
                timeout.as_secs()
            ))
        }
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(format!(
            "`{}` exited with {}",
            command.join(" "),
            status
                .code()
                .map_or("a signal".to_owned(), |c| c.to_string())
        )),
    }
}

/// The verdict of a probe over time.
#[derive(Debug, Clone)]
pub struct Tracker {
    healthy: bool,
    successes: u32,
    failures: u32,
    success_threshold: u32,
    failure_threshold: u32,
    passed_once: bool,
    /// The probe's period, and when a failure was last counted: before the first
    /// pass, checks come faster than the period (warm-up), but failures count at most
    /// once per period, so "N times" means what the threshold means.
    period: Duration,
    counted_at: Option<Instant>,
    /// The last failure, for status lines.
    pub last_failure: Option<String>,
}

/// A change of verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    BecameHealthy,
    /// With the failure that tipped it and how many in a row.
    BecameUnhealthy {
        reason: String,
        failures: u32,
    },
}

impl Tracker {
    /// A tracker with the probe's thresholds and the purpose's starting verdict.
    pub fn new(probe: &Probe, purpose: Purpose) -> Tracker {
        Tracker {
            healthy: purpose == Purpose::Liveness,
            successes: 0,
            failures: 0,
            success_threshold: probe.success_threshold.max(1),
            failure_threshold: probe.failure_threshold.max(1),
            passed_once: false,
            period: Duration::from_secs(u64::from(probe.period_seconds.max(1))),
            counted_at: None,
            last_failure: None,
        }
    }

    /// Has any check passed yet?
    pub fn passed_once(&self) -> bool {
        self.passed_once
    }

    /// Failing now: unhealthy with at least `failureThreshold` failures in a row (for a
    /// readiness probe that never passed, too), with the last failure and the count.
    pub fn failing(&self) -> Option<(String, u32)> {
        (!self.healthy && self.failures >= self.failure_threshold)
            .then(|| (self.last_failure.clone().unwrap_or_default(), self.failures))
    }

    /// The current verdict.
    pub fn healthy(&self) -> bool {
        self.healthy
    }

    /// Takes one outcome, now; returns the change of verdict it caused, if any.
    pub fn observe(&mut self, outcome: Outcome) -> Option<Change> {
        self.observe_at(outcome, Instant::now())
    }

    /// Takes one outcome seen at `now`.
    pub fn observe_at(&mut self, outcome: Outcome, now: Instant) -> Option<Change> {
        match outcome {
            Outcome::Pass => {
                self.passed_once = true;
                self.failures = 0;
                self.successes += 1;
                if !self.healthy && self.successes >= self.success_threshold {
                    self.healthy = true;
                    return Some(Change::BecameHealthy);
                }
            }
            Outcome::Fail(reason) => {
                self.successes = 0;
                self.last_failure = Some(reason.clone());
                let warm_up_check = !self.passed_once
                    && !self.healthy
                    && self
                        .counted_at
                        .is_some_and(|at| now.saturating_duration_since(at) < self.period);
                if warm_up_check {
                    return None;
                }
                self.counted_at = Some(now);
                self.failures += 1;
                if self.healthy && self.failures >= self.failure_threshold {
                    self.healthy = false;
                    return Some(Change::BecameUnhealthy {
                        reason,
                        failures: self.failures,
                    });
                }
            }
        }
        None
    }
}

/// How often a readiness probe is checked until it first passes.
pub const WARM_UP_PERIOD: Duration = Duration::from_millis(100);

/// When the next check is due: after the initial delay, then every period — except
/// that a readiness probe that has not passed yet since the start is checked every
/// [`WARM_UP_PERIOD`]: a new instance takes traffic as soon as it can, not up to a
/// period later. Passes after the first, and every failure count, keep the period.
pub fn next_check(
    probe: &Probe,
    started: Instant,
    last: Option<Instant>,
    warming_up: bool,
) -> Instant {
    let period = Duration::from_secs(u64::from(probe.period_seconds.max(1)));
    match last {
        None => started + Duration::from_secs(u64::from(probe.initial_delay_seconds)),
        Some(at) if warming_up => at + period.min(WARM_UP_PERIOD),
        Some(at) => at + period,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(success: u32, failure: u32) -> Probe {
        Probe {
            success_threshold: success,
            failure_threshold: failure,
            ..Probe::default()
        }
    }

    fn fail() -> Outcome {
        Outcome::Fail("GET /ready returned 503".into())
    }

    #[test]
    fn readiness_starts_unready_and_needs_consecutive_passes() {
        let mut t = Tracker::new(&probe(2, 3), Purpose::Readiness);
        assert!(!t.healthy());
        assert_eq!(t.observe(Outcome::Pass), None);
        assert_eq!(t.observe(fail()), None, "a failure resets the passes");
        assert_eq!(t.observe(Outcome::Pass), None);
        assert_eq!(t.observe(Outcome::Pass), Some(Change::BecameHealthy));
    }

    #[test]
    fn warm_up_checks_count_a_failure_at_most_once_per_period() {
        // Period 10s (the default), threshold 3: 61 quick warm-up checks over 25s are
        // 3 failures, as 3 checks at the period would be.
        let mut t = Tracker::new(&probe(1, 3), Purpose::Readiness);
        let start = Instant::now();
        for i in 0..61 {
            t.observe_at(fail(), start + Duration::from_millis(i * 410));
        }
        assert_eq!(t.failing(), Some(("GET /ready returned 503".into(), 3)));
    }

    #[test]
    fn liveness_starts_healthy_and_fails_after_the_threshold() {
        let mut t = Tracker::new(&probe(1, 3), Purpose::Liveness);
        assert!(t.healthy());
        assert_eq!(t.observe(fail()), None);
        assert_eq!(t.observe(fail()), None);
        assert_eq!(
            t.observe(fail()),
            Some(Change::BecameUnhealthy {
                reason: "GET /ready returned 503".into(),
                failures: 3
            })
        );
        assert_eq!(t.observe(fail()), None, "reported once");
        assert_eq!(t.observe(Outcome::Pass), Some(Change::BecameHealthy));
    }

    #[test]
    fn readiness_is_checked_quickly_only_until_its_first_pass() {
        let p = Probe {
            period_seconds: 5,
            ..Probe::default()
        };
        let (start, last) = (Instant::now(), Instant::now());
        assert_eq!(
            next_check(&p, start, Some(last), true),
            last + WARM_UP_PERIOD
        );
        let mut t = Tracker::new(&probe(2, 3), Purpose::Readiness);
        assert!(!t.passed_once());
        t.observe(fail());
        assert!(!t.passed_once());
        t.observe(Outcome::Pass);
        assert!(t.passed_once() && !t.healthy(), "one pass of two needed");
        t.observe(fail());
        assert!(
            t.passed_once(),
            "warm-up ends with the first pass, for good"
        );
    }

    #[test]
    fn checks_start_after_the_initial_delay_and_repeat_every_period() {
        let p = Probe {
            initial_delay_seconds: 5,
            period_seconds: 2,
            ..Probe::default()
        };
        let start = Instant::now();
        assert_eq!(
            next_check(&p, start, None, false),
            start + Duration::from_secs(5)
        );
        let last = start + Duration::from_secs(5);
        assert_eq!(
            next_check(&p, start, Some(last), false),
            last + Duration::from_secs(2)
        );
    }
}
