//! A node agent: runs the instances the control plane assigns to its node, reports how
//! they are doing, and never leaves a duplicate behind.
//!
//! The loop is level-triggered: post a report (the heartbeat), receive the complete
//! assignment set, make the node match it. The control plane holds the request until
//! the assignments change or a heartbeat interval passes (long poll), and a status
//! change of any instance cuts the wait short, so news travels both ways at once.
//!
//! Each process the agent starts is recorded in the state directory (pid and start
//! time). An agent that starts finds the records of its predecessor — which was killed,
//! or it would have stopped them — and stops those processes before anything else: it
//! cannot adopt them (their output pipes died with the old agent), and running them
//! twice is the one thing that must never happen.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use drover_agent::probe::Target;
use drover_agent::process::{Backoff, Spec};
use drover_agent::supervise::{Handle, InstanceSpec, Phase, Status, supervise};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::files::{InstanceFile, LocalPaths, ProcessMark, StateDir, instance_files, stop_group};
use crate::mounts;
use crate::protocol::{Assignment, Assignments, InstanceReport, Report, Usage};
use drover_control::client::{Client, ClientError};

/// Instance logs rotate at this size, keeping this many old files.
const LOG_MAX_BYTES: u64 = 10 * 1024 * 1024;
const LOG_KEEP: usize = 3;

/// How an agent is set up.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub node: String,
    /// The control plane's base URL. When it stops answering, the agent also tries the
    /// address in the state directory: a restarted control plane may listen elsewhere.
    pub control: String,
    pub state: StateDir,
    pub token: Option<String>,
}

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot write to the state directory {path}: {source}")]
    State {
        path: PathBuf,
        source: std::io::Error,
    },
}

struct Running {
    spec_hash: String,
    /// Its secret files (memory, not disk), removed when it stops.
    runtime: PathBuf,
    ports: BTreeMap<String, u16>,
    handle: Handle,
    file: PathBuf,
    /// The last CPU reading: (pid, ticks, when).
    cpu: Option<(u32, u64, std::time::Instant)>,
    /// When this agent first saw it failing (Unix milliseconds).
    failing_since: Option<i64>,
}

fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Starting => "starting",
        Phase::Running => "running",
        Phase::BackingOff => "backing-off",
        Phase::Exited => "exited",
        Phase::Failed => "failed",
        Phase::Stopped => "stopped",
    }
}

/// Linux reports process CPU time in ticks of 1/100 s to user space (USER_HZ).
const TICKS_PER_SECOND: u64 = 100;

/// CPU time (ticks) and resident memory (bytes) of a process, from /proc.
fn process_usage(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let pages: u64 = fields.get(21)?.parse().ok()?;
    Some((ticks, pages * 4096))
}

/// The machine: its cores (as millicores) and memory.
fn machine() -> Usage {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0);
    Usage {
        cpu_millis: cores * 1000,
        memory_bytes: memory * 1024,
    }
}

fn report_of(id: &str, running: &mut Running) -> InstanceReport {
    let status: Status = running.handle.status.borrow().clone();
    let mut usage = Usage::default();
    if let Some((ticks, memory)) = status.pid.and_then(process_usage) {
        let now = std::time::Instant::now();
        if let Some((pid, before, at)) = running.cpu
            && Some(pid) == status.pid
            && ticks >= before
        {
            let elapsed = now.duration_since(at).as_millis().max(1) as u64;
            usage.cpu_millis = (ticks - before) * 1000 * 1000 / TICKS_PER_SECOND / elapsed;
        }
        running.cpu = status.pid.map(|pid| (pid, ticks, now));
        usage.memory_bytes = memory;
    }
    InstanceReport {
        id: id.to_owned(),
        spec_hash: running.spec_hash.clone(),
        phase: phase_name(status.phase).to_owned(),
        ready: status.ready,
        pid: status.pid,
        ports: running.ports.clone(),
        restarts: status.restarts,
        last_failure: status.last_failure,
        failing: status.failing,
        failing_since_ms: {
            if !status.failing {
                running.failing_since = None;
            } else if running.failing_since.is_none() {
                running.failing_since = Some(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as i64),
                );
            }
            running.failing_since
        },
        usage,
    }
}

/// A free port on 127.0.0.1, as the kernel hands them out.
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `PORT_<NAME>` for a port name.
fn port_variable(name: &str) -> String {
    let upper: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("PORT_{upper}")
}

/// Stops every process a previous agent of this node left running.
pub async fn stop_leftovers(state: &StateDir, node: &str) -> usize {
    let mut stops = JoinSet::new();
    for (path, file) in instance_files(state, node) {
        let runtime = state.instance_runtime(&file.id, &file.spec_hash);
        stops.spawn(async move {
            let stopped = match file.process {
                Some(mark) => stop_group(mark, Duration::from_secs(10)).await,
                None => false,
            };
            let _ = std::fs::remove_dir_all(runtime);
            let _ = std::fs::remove_file(path);
            stopped
        });
    }
    stops
        .join_all()
        .await
        .into_iter()
        .filter(|stopped| *stopped)
        .count()
}

struct Agent {
    config: AgentConfig,
    /// By (instance id, spec hash).
    running: BTreeMap<(String, String), Running>,
    /// Pinged by every instance's status watcher.
    news: Arc<Notify>,
    stopping: JoinSet<()>,
    seq: u64,
    /// Instances that could not start, and why (said once per reason).
    waiting: BTreeMap<(String, String), String>,
}

impl Agent {
    /// Starts an instance: its secrets and volumes first, then its process. An
    /// instance whose secret values have not arrived waits (Err says why).
    fn start(&mut self, assignment: &Assignment, values: &mounts::Values) -> Result<(), String> {
        let spec = &assignment.spec;
        let runtime = self
            .config
            .state
            .instance_runtime(&assignment.id, &assignment.spec_hash);
        let delivered = mounts::deliver(spec, &runtime, values)?;
        let mut ports = assignment.ports.clone();
        for name in &spec.ports {
            if !ports.contains_key(name)
                && let Ok(port) = free_port()
            {
                ports.insert(name.clone(), port);
            }
        }
        let mut env = delivered.env;
        if let Some(first) = spec.ports.first().and_then(|n| ports.get(n)) {
            env.insert("PORT".into(), first.to_string());
        }
        for (name, port) in &ports {
            env.insert(port_variable(name), port.to_string());
        }
        env.insert("DROVER_INSTANCE".into(), assignment.id.clone());
        env.insert("DROVER_NODE".into(), self.config.node.clone());
        env.entry("PATH".into())
            .or_insert_with(|| "/usr/local/bin:/usr/bin:/bin".into());
        let home = self.config.state.instance_dir(&assignment.id);
        let _ = std::fs::create_dir_all(&home);
        let working_dir = match &spec.working_dir {
            Some(dir) => home.join(dir),
            None => home,
        };
        let target = Target {
            ip: std::net::Ipv4Addr::LOCALHOST.into(),
            ports: ports.clone(),
            default_port: spec.ports.first().and_then(|n| ports.get(n)).copied(),
            env: env.clone(),
            working_dir: Some(working_dir.clone()),
        };
        crate::files::prune_logs(&self.config.state.logs(), &assignment.id, 2);
        let handle = supervise(InstanceSpec {
            process: Spec {
                argv: spec.argv.clone(),
                env,
                working_dir,
                log: self.config.state.log(&assignment.id, &assignment.spec_hash),
                log_max_bytes: LOG_MAX_BYTES,
                log_keep: LOG_KEEP,
            },
            restart: spec.restart,
            liveness: spec.liveness.clone(),
            readiness: spec.readiness.clone(),
            target,
            backoff: Backoff::default(),
            grace: Duration::from_millis(spec.grace_ms),
        });
        let file = self.config.state.instance_file(
            &self.config.node,
            &assignment.id,
            &assignment.spec_hash,
        );
        // Record the process on every change of pid (restarts), and tell the loop.
        let mut status = handle.status.clone();
        let (news, path) = (self.news.clone(), file.clone());
        let record = InstanceFile {
            id: assignment.id.clone(),
            spec_hash: assignment.spec_hash.clone(),
            process: None,
        };
        tokio::spawn(async move {
            let mut pid = None;
            loop {
                let now = status.borrow_and_update().pid;
                if now != pid && status.borrow().phase != Phase::Stopped {
                    pid = now;
                    let record = InstanceFile {
                        process: pid.and_then(ProcessMark::of),
                        ..record.clone()
                    };
                    let _ = crate::files::write_atomic(
                        &path,
                        &serde_json::to_vec(&record).expect("serializes"),
                    );
                }
                news.notify_one();
                if status.changed().await.is_err() {
                    break;
                }
            }
        });
        self.running.insert(
            (assignment.id.clone(), assignment.spec_hash.clone()),
            Running {
                spec_hash: assignment.spec_hash.clone(),
                runtime,
                ports,
                handle,
                file,
                cpu: None,
                failing_since: None,
            },
        );
        Ok(())
    }

    /// Stops an instance in the background, so heartbeats go on during its grace period.
    fn stop(&mut self, key: &(String, String)) {
        if let Some(running) = self.running.remove(key) {
            self.stopping.spawn(async move {
                running.handle.stop().await;
                let _ = std::fs::remove_dir_all(&running.runtime);
                let _ = std::fs::remove_file(&running.file);
            });
        }
    }

    /// Makes the node run exactly the assigned instances. An instance is an id and a
    /// spec: one id may be assigned twice during a start-first update (the new spec
    /// starts, the old keeps serving until the control plane lets it go). True when
    /// anything changed.
    fn apply(&mut self, assignments: &Assignments, log: &impl Fn(&str)) -> bool {
        let wanted: BTreeMap<(String, String), &Assignment> = assignments
            .instances
            .iter()
            .map(|a| ((a.id.clone(), a.spec_hash.clone()), a))
            .collect();
        let stale: Vec<(String, String)> = self
            .running
            .keys()
            .filter(|key| !wanted.contains_key(*key))
            .cloned()
            .collect();
        let mut changed = !stale.is_empty();
        for key in stale {
            self.stop(&key);
        }
        let values: mounts::Values = assignments.values.iter().cloned().collect();
        self.waiting.retain(|key, _| wanted.contains_key(key));
        for (key, assignment) in wanted {
            if self.running.contains_key(&key) {
                continue;
            }
            match self.start(assignment, &values) {
                Ok(()) => {
                    self.waiting.remove(&key);
                    changed = true;
                }
                Err(why) => {
                    if self.waiting.get(&key) != Some(&why) {
                        log(&format!("instance {} waits: {why}", assignment.id));
                        self.waiting.insert(key, why);
                    }
                }
            }
        }
        changed
    }

    fn report(&mut self, generation: u64, urgent: bool) -> Report {
        self.seq += 1;
        Report {
            generation,
            pid: std::process::id(),
            seq: self.seq,
            instances: self
                .running
                .iter_mut()
                .map(|((id, _), r)| report_of(id, r))
                .collect(),
            machine: machine(),
            urgent,
        }
    }

    async fn shutdown(mut self) {
        let keys: Vec<(String, String)> = self.running.keys().cloned().collect();
        for key in keys {
            self.stop(&key);
        }
        while self.stopping.join_next().await.is_some() {}
    }
}

/// Runs an agent until `shutdown` completes; then stops its instances and returns.
pub async fn run(
    config: AgentConfig,
    shutdown: impl Future<Output = ()>,
    log: impl Fn(&str),
) -> Result<(), AgentError> {
    let state_error = |path: PathBuf| {
        move |source| AgentError::State {
            path: path.clone(),
            source,
        }
    };
    let pid_file = config.state.agent_pid_file(&config.node);
    std::fs::create_dir_all(config.state.instance_files(&config.node))
        .map_err(state_error(config.state.instance_files(&config.node)))?;
    std::fs::create_dir_all(config.state.logs()).map_err(state_error(config.state.logs()))?;
    ProcessMark::me()
        .write(&pid_file)
        .map_err(state_error(pid_file.clone()))?;
    let stopped = stop_leftovers(&config.state, &config.node).await;
    if stopped > 0 {
        log(&format!(
            "stopped {stopped} instance(s) a previous agent of node {} left running",
            config.node
        ));
    }

    let mut client = Client::new(&config.control, config.token.clone());
    let mut agent = Agent {
        config,
        running: BTreeMap::new(),
        news: Arc::new(Notify::new()),
        stopping: JoinSet::new(),
        seq: 0,
        waiting: BTreeMap::new(),
    };
    let path = format!("/api/v1/agents/{}/report", agent.config.node);
    let (mut generation, mut urgent, mut unreachable) = (0u64, true, false);
    tokio::pin!(shutdown);
    loop {
        let report = agent.report(generation, urgent);
        let news = agent.news.clone();
        tokio::select! {
            answer = client.post::<_, Assignments>(&path, &report) => match answer {
                Ok(assignments) => {
                    if unreachable {
                        log(&format!("control plane at {} answers again", client.base()));
                        unreachable = false;
                    }
                    urgent = agent.apply(&assignments, &log);
                    generation = assignments.generation;
                }
                Err(error) => {
                    if !unreachable {
                        log(&format!("{error}; instances keep running, retrying"));
                        unreachable = true;
                    }
                    if let ClientError::Refused { status: 401, .. } = error {
                        log("the control plane refuses this agent's token; stopping");
                        break;
                    }
                    // A restarted control plane may listen on another address.
                    if let Some(url) = agent.config.state.api_url()
                        && url != client.base()
                    {
                        client = Client::new(&url, agent.config.token.clone());
                    }
                    urgent = true;
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                        _ = &mut shutdown => break,
                    }
                }
            },
            _ = news.notified() => urgent = true,
            _ = &mut shutdown => break,
        }
        // Reap background stops that finished.
        while agent.stopping.try_join_next().is_some() {}
    }
    agent.shutdown().await;
    let _ = std::fs::remove_file(pid_file);
    Ok(())
}
