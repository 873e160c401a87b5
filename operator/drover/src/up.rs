//! `drover up`: the local engine's control plane — follow the config repo, reconcile,
//! serve the API and the proxy, and keep one agent process per node. Ctrl-C stops it
//! all: agents stop their instances, and whatever an agent killed earlier left behind
//! is stopped from the state directory's records.
//!
//! Agents outlive a control plane that is killed (like Swarm workers outlive a manager):
//! the next `drover up` adopts them through their pid files, and they reconnect.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use drover_control::Controller;
use drover_control::both::Both;
use drover_local::files::{LocalPaths, ProcessMark, StateDir, known_nodes};
use drover_local::{LocalConfig, LocalEngine};
use drover_source::GitSource;
use tokio::sync::Notify;

use crate::logging::LogFormat;
use crate::repo_args::RepoArgs;
use crate::serve::{Serve, Setup, lock, start};

/// Arguments of `drover up`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    repo: RepoArgs,
    /// The state directory (default `$DROVER_STATE_DIR`, else `~/.local/state/drover`).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Where the API listens (by default a free port, the previous one if possible).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// How often to fetch a remote config repo.
    #[arg(long, default_value = "60s", value_parser = crate::watch::parse_duration)]
    poll: Duration,
    /// Serve `GET /metrics` without a token (for a Prometheus that holds none);
    /// otherwise a `read` token is needed.
    #[arg(long)]
    metrics_public: bool,
    /// Start no agents: run `drover agent --node NAME` for each node yourself.
    #[arg(long)]
    no_agents: bool,
    /// Post release and promotion events to this webhook: `URL` (JSON) or
    /// `slack=URL` (Slack-compatible). Repeat for more receivers. Bodies are signed
    /// with HMAC-SHA256 of `$DROVER_NOTIFY_SECRET` in `X-Drover-Signature-256`.
    #[arg(long = "notify", value_name = "[slack=]URL")]
    notify: Vec<drover_control::notify::Receiver>,
}

pub fn run(args: Args, log_format: LogFormat) -> anyhow::Result<std::process::ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(up(args, log_format))?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// One agent process, started by us or adopted from a previous `up`.
struct AgentProcess {
    child: Option<tokio::process::Child>,
    mark: Option<ProcessMark>,
    died: Option<Instant>,
}

impl AgentProcess {
    fn alive(&mut self) -> bool {
        if let Some(child) = &mut self.child {
            return matches!(child.try_wait(), Ok(None));
        }
        self.mark.is_some_and(|m| m.alive())
    }

    fn terminate(&self) {
        if let Some(mark) = self.mark.filter(|m| m.alive()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(mark.pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
}

struct Agents<E: drover_control::engine::Engine> {
    state: StateDir,
    api: String,
    control: Arc<Controller<E>>,
    drover: PathBuf,
    log_format: LogFormat,
    running: BTreeMap<String, AgentProcess>,
}

impl<E: drover_control::engine::Engine> Agents<E> {
    /// The node's agent token, registered with scope `node:NODE` alone.
    fn node_token(&self, node: &str) -> anyhow::Result<String> {
        let token = drover_local::files::ensure_agent_token(&self.state, node)?;
        let record = drover_store::TokenRecord {
            name: format!("agent-{node}"),
            hash: drover_control::token_hash(&token),
            scopes: vec![format!("node:{node}")],
            created_ms: 0,
        };
        self.control.with_store(|s| s.put_token(&record))?;
        Ok(token)
    }

    fn spawn(&mut self, node: &str) {
        let token = match self.node_token(node) {
            Ok(token) => token,
            Err(error) => {
                tracing::error!("cannot make the token of node {node}'s agent: {error}");
                return;
            }
        };
        let mut command = tokio::process::Command::new(&self.drover);
        command
            .arg("agent")
            .arg("--log-format")
            .arg(match self.log_format {
                LogFormat::Human => "human",
                LogFormat::Json => "json",
            })
            .args(["--node", node, "--control", &self.api, "--state-dir"])
            .arg(self.state.root())
            // The token travels in the environment: argv is visible to every user.
            .env("DROVER_API_TOKEN", &token)
            .stdin(std::process::Stdio::null())
            // Its own group, so that Ctrl-C reaches `up` alone and `up` stops agents in
            // order (each stops its instances first).
            .process_group(0);
        match command.spawn() {
            Ok(child) => {
                let mark = child.id().and_then(ProcessMark::of);
                tracing::info!(
                    "agent {node} started (pid {})",
                    child.id().unwrap_or_default()
                );
                self.running.insert(
                    node.to_owned(),
                    AgentProcess {
                        child: Some(child),
                        mark,
                        died: None,
                    },
                );
            }
            Err(error) => tracing::error!("cannot start the agent of node {node}: {error}"),
        }
    }

    /// Keeps one agent per wanted node. A dead agent is restarted only after its
    /// heartbeat timeout, once its node has been marked down and its instances moved:
    /// that is what a node failure means, and the new agent stops the leftovers.
    fn tend(&mut self, wanted: &[(String, String, Duration)]) {
        for (node, _, timeout) in wanted {
            let Some(agent) = self.running.get_mut(node) else {
                self.spawn(node);
                continue;
            };
            if agent.alive() {
                continue;
            }
            match agent.died {
                None => {
                    agent.died = Some(Instant::now());
                    tracing::info!(
                        "agent {node} exited; node {node} will be marked down after {}s without heartbeats, then the agent restarts",
                        timeout.as_secs()
                    );
                }
                Some(at) if at.elapsed() > *timeout + Duration::from_secs(2) => self.spawn(node),
                Some(_) => {}
            }
        }
        let gone: Vec<String> = self
            .running
            .keys()
            .filter(|n| !wanted.iter().any(|(w, _, _)| w == *n))
            .cloned()
            .collect();
        for node in gone {
            if let Some(agent) = self.running.remove(&node) {
                agent.terminate();
                tracing::info!("node {node} left the config: its agent stops");
            }
        }
    }

    /// Stops every agent (each stops its instances), then anything left behind.
    async fn stop_all(&mut self) {
        for agent in self.running.values() {
            agent.terminate();
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && self.running.values_mut().any(|a| a.alive()) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for agent in self.running.values_mut() {
            if agent.alive()
                && let Some(mark) = agent.mark
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(mark.pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            if let Some(child) = &mut agent.child {
                let _ = child.wait().await;
            }
        }
        for node in known_nodes(&self.state) {
            drover_local::agent::stop_leftovers(&self.state, &node).await;
        }
        // The secrets' directory in memory, once the agents emptied it.
        let _ = std::fs::remove_dir(drover_local::files::LocalPaths::runtime(&self.state));
    }
}

async fn up(args: Args, log_format: LogFormat) -> anyhow::Result<()> {
    let state = StateDir::new(
        args.state_dir
            .clone()
            .unwrap_or_else(StateDir::default_root),
    );
    let _lock = lock(&state)?;
    let token = state.ensure_token()?;
    let spec = args.repo.spec();
    let reference = spec.reference.clone();
    let source = GitSource::open(spec, &state.git_cache())?.with_keys(crate::serve::age_keys()?);
    if source.is_remote() {
        source.fetch()?;
    }
    let remote = source.is_remote();
    let git_dir = source.git_dir().to_owned();
    tracing::info!("following {} ({reference})", source.location());
    tracing::info!("state: {}", state.root().display());
    let metrics = drover_telemetry::Metrics::new();
    let follower = Arc::new(Mutex::new(crate::serve::follower(
        source, &state, &metrics,
    )?));
    let notifier = drover_control::notify::Notifier::start(
        args.notify.clone(),
        std::env::var("DROVER_NOTIFY_SECRET").ok(),
    );
    for receiver in &args.notify {
        tracing::info!("notifications: {}", receiver.url);
    }
    let setup = Setup {
        state,
        token,
        follower,
        git_dir,
        remote,
        notifier,
        trigger: Arc::new(Notify::new()),
        webhook_secret: std::env::var("DROVER_WEBHOOK_SECRET")
            .ok()
            .map(drover_source::Redacted),
        vault: drover_secrets::Vault::new(),
        metrics,
        detections: Default::default(),
    };
    up_engines(args, setup, log_format).await
}

/// `drover up`: the controller and its API over every engine, whatever the repo's
/// clusters are now (a commit may add a Kubernetes cluster or a swarm beside local
/// ones, or the reverse), and the local clusters' agents, one process per node.
/// Kubernetes clusters and swarms run their workloads themselves; an engine with no
/// clusters does nothing.
async fn up_engines(args: Args, setup: Setup, log_format: LogFormat) -> anyhow::Result<()> {
    let drover = std::env::current_exe().context("cannot find this program's path")?;
    let state = setup.state.clone();
    let wake = Arc::new(Notify::new());
    let vault = setup.vault.clone();
    let local = LocalEngine::open(
        LocalConfig {
            state: state.clone(),
            drover: drover.clone(),
            proxies: drover_local::ProxyHost::Processes,
            vault: vault.clone(),
        },
        wake.clone(),
    )?;
    let kube = drover_kube::KubeEngine::open(&state.database(), wake.clone(), vault.clone())?;
    let swarm = drover_swarm::SwarmEngine::open(&state.database(), wake.clone(), vault.clone())?;
    let remote = Arc::new(Both::new(kube, swarm));
    let engine = Arc::new(Both::new(local.clone(), remote));
    let serve = Serve {
        listen: args.listen,
        poll: args.poll,
        metrics_public: args.metrics_public,
    };
    let started = start(
        &serve,
        &setup,
        engine,
        wake,
        drover_local::agents::routes(local.clone()),
    )
    .await?;
    let mut agents = Agents {
        state: state.clone(),
        api: started.api.clone(),
        control: started.control.clone(),
        drover,
        log_format,
        running: BTreeMap::new(),
    };
    for node in known_nodes(&state).into_iter().filter(|_| !args.no_agents) {
        if let Some(mark) = ProcessMark::read(&state.agent_pid_file(&node)).filter(|m| m.alive()) {
            tracing::info!("agent {node} adopted (pid {})", mark.pid);
            agents.running.insert(
                node,
                AgentProcess {
                    child: None,
                    mark: Some(mark),
                    died: None,
                },
            );
        }
    }
    started
        .until_stopped(|| {
            if !args.no_agents {
                agents.tend(&local.nodes_wanted());
            }
        })
        .await?;
    tracing::info!(
        "stopping: agents stop their instances (workloads on Kubernetes clusters keep running)"
    );
    if !args.no_agents {
        agents.stop_all().await;
    }
    local.stop_proxies();
    started.stop(&state).await;
    Ok(())
}
