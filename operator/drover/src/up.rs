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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use drover_api::ApiState;
use drover_control::both::Both;
use drover_control::promoter::Promoter;
use drover_control::server::{ServerState, router};
use drover_control::{Config, Controller, DesiredRevision};
use drover_diagnostics::{RenderOptions, render_human, summary};
use drover_local::files::{LocalPaths, ProcessMark, StateDir, known_nodes};
use drover_local::{LocalConfig, LocalEngine};
use drover_source::{Follower, GitSource, Redacted, Update, watch_refs};
use tokio::sync::Notify;

use crate::logging::LogFormat;
use crate::repo_args::RepoArgs;

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

/// Holds the state directory's lock while `up` runs: two control planes on one state
/// would fight over every instance.
fn lock(state: &StateDir) -> anyhow::Result<nix::fcntl::Flock<std::fs::File>> {
    std::fs::create_dir_all(state.root())
        .with_context(|| format!("cannot create {}", state.root().display()))?;
    // The state directory holds the admin token, token hashes, the audit trail and
    // instances' logs: its owner's alone.
    std::fs::set_permissions(
        state.root(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .with_context(|| format!("cannot make {} private", state.root().display()))?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(state.lock_file())?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|_| {
        anyhow::anyhow!(
            "another `drover up` is running on {}; stop it first, or use --state-dir",
            state.root().display()
        )
    })
}

/// Binds the API, on the previous address when it asked for any port, so that agents
/// left running by a control plane that was killed find this one at once.
async fn bind_api(state: &StateDir, listen: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    if listen.port() == 0
        && let Some(previous) = state
            .api_url()
            .and_then(|u| u.strip_prefix("http://").map(str::to_owned))
            .and_then(|a| a.parse::<SocketAddr>().ok())
        && previous.ip() == listen.ip()
        && let Ok(listener) = tokio::net::TcpListener::bind(previous).await
    {
        return Ok(listener);
    }
    tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))
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
    }
}

/// What every engine's `up` shares, made before the engine is chosen.
struct Setup {
    state: StateDir,
    token: String,
    follower: Arc<Mutex<Follower>>,
    git_dir: PathBuf,
    remote: bool,
    notifier: drover_control::notify::Notifier,
    trigger: Arc<Notify>,
}

/// A running controller with its API, promoter and Git writer.
struct Started<E: drover_control::engine::Engine> {
    control: Arc<Controller<E>>,
    stop: tokio::sync::watch::Sender<bool>,
    reconciler: tokio::task::JoinHandle<()>,
    checker: tokio::task::JoinHandle<()>,
    quit: Arc<AtomicBool>,
    api: String,
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
    let source = GitSource::open(spec, &state.git_cache())?;
    if source.is_remote() {
        source.fetch()?;
    }
    let remote = source.is_remote();
    let git_dir = source.git_dir().to_owned();
    tracing::info!("following {} ({reference})", source.location());
    tracing::info!("state: {}", state.root().display());
    let follower = Arc::new(Mutex::new(Follower::new(source)));
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
    };
    up_engines(args, setup, log_format).await
}

/// Starts the controller over `engine`, its API (with `extra` routes), the promoter,
/// the Git writer and the revision checks.
async fn start<E: drover_control::engine::Engine>(
    args: &Args,
    setup: &Setup,
    engine: Arc<E>,
    wake: Arc<Notify>,
    extra: axum::Router<drover_control::server::Shared<E>>,
) -> anyhow::Result<Started<E>> {
    let state = &setup.state;
    let trigger = setup.trigger.clone();
    let control = Controller::open(
        engine,
        Config {
            state: state.clone(),
            notifier: setup.notifier.clone(),
        },
        wake,
    )?;
    let listener = bind_api(state, args.listen).await?;
    let api = format!("http://{}", listener.local_addr()?);
    drover_local::files::write_atomic(&state.api_file(), api.as_bytes())?;
    tracing::info!(
        "api: {api} (writes need the token in {})",
        state.token_file().display()
    );
    let webhooks = drover_api::router(Arc::new(ApiState {
        webhook_secret: std::env::var("DROVER_WEBHOOK_SECRET").ok().map(Redacted),
        on_push: trigger.clone(),
    }));
    let promoter = Arc::new(Promoter::new(
        control.clone(),
        setup.follower.clone(),
        drover_control::git_writer::author(),
        trigger.clone(),
    ));
    // What a stop interrupted is carried on by itself, not left pending.
    tokio::spawn({
        let promoter = promoter.clone();
        async move { promoter.resume().await }
    });
    tokio::spawn(drover_control::git_writer::run(
        control.clone(),
        setup.follower.clone(),
        trigger.clone(),
    ));
    let app = router(
        Arc::new(ServerState::new(
            control.clone(),
            &setup.token,
            Some(promoter),
        )),
        extra,
    )
    .merge(webhooks);
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let reconciler = tokio::spawn(control.clone().run(async move {
        let mut rx = stop_rx;
        let _ = rx.wait_for(|s| *s).await;
    }));
    let quit = Arc::new(AtomicBool::new(false));
    if setup.remote {
        let (trigger, period) = (trigger.clone(), args.poll);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                trigger.notify_one();
            }
        });
    } else {
        let watch = watch_refs(&setup.git_dir)?;
        let (trigger, quit) = (trigger.clone(), quit.clone());
        tokio::task::spawn_blocking(move || {
            while !quit.load(Ordering::Relaxed) {
                if watch.wait(Duration::from_millis(250)) {
                    trigger.notify_one();
                }
            }
        });
    }
    // Revisions are checked in their own task: a big or slow revision never holds up
    // the agents' tending or a signal.
    let checker = tokio::spawn(follow(setup.follower.clone(), control.clone(), trigger));
    Ok(Started {
        control,
        stop,
        reconciler,
        checker,
        quit,
        api,
    })
}

impl<E: drover_control::engine::Engine> Started<E> {
    /// Runs `tick` every half second until SIGINT or SIGTERM.
    async fn until_stopped(&self, mut tick: impl FnMut()) -> anyhow::Result<()> {
        // One stream per signal for the whole run: a signal arriving between two turns
        // of the loop is kept for the next `select!`, never lost.
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut ticks = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = ticks.tick() => tick(),
                _ = interrupt.recv() => break,
                _ = terminate.recv() => break,
            }
        }
        self.checker.abort();
        self.quit.store(true, Ordering::Relaxed);
        Ok(())
    }

    async fn stop(self, state: &StateDir) {
        let _ = self.stop.send(true);
        let _ = self.reconciler.await;
        let _ = std::fs::remove_file(state.api_file());
        tracing::info!("stopped");
    }
}

/// `drover up`: the controller and its API over both engines, whatever the repo's
/// clusters are now (a commit may add a Kubernetes cluster beside local ones, or the
/// reverse), and the local clusters' agents, one process per node. Kubernetes
/// clusters run their workloads themselves; an engine with no clusters does nothing.
async fn up_engines(args: Args, setup: Setup, log_format: LogFormat) -> anyhow::Result<()> {
    let drover = std::env::current_exe().context("cannot find this program's path")?;
    let state = setup.state.clone();
    let wake = Arc::new(Notify::new());
    let local = LocalEngine::open(
        LocalConfig {
            state: state.clone(),
            drover: drover.clone(),
            proxies: drover_local::ProxyHost::Processes,
        },
        wake.clone(),
    )?;
    let kube = drover_kube::KubeEngine::open(&state.database(), wake.clone())?;
    let engine = Arc::new(Both::new(local.clone(), kube));
    let started = start(
        &args,
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

/// Checks the tracked reference at start and each time `trigger` fires, off the main
/// loop, and hands each new revision to the controller: accepted, or rejected with
/// every diagnostic.
async fn follow<E: drover_control::engine::Engine>(
    follower: Arc<Mutex<Follower>>,
    control: Arc<Controller<E>>,
    trigger: Arc<Notify>,
) {
    loop {
        let follower = follower.clone();
        let update =
            tokio::task::spawn_blocking(move || follower.lock().expect("follower lock").check())
                .await;
        match update {
            Ok(Ok(Some(Update::Accepted(desired)))) => {
                tracing::info!(
                    "revision {} accepted: {} ({})",
                    desired.revision.short(),
                    desired.revision.summary,
                    summary(&desired.checked.diagnostics)
                );
                control
                    .set_desired(DesiredRevision {
                        state: drover_diff::normalize(&desired.checked.repo),
                        revision: desired.revision.clone(),
                    })
                    .await;
            }
            Ok(Ok(Some(Update::Rejected {
                revision,
                diagnostics,
                in_force,
            }))) => {
                let kept = in_force.map_or("nothing is in force yet".to_owned(), |r| {
                    format!("{} stays in force", r.short())
                });
                let text = format!("{}; {kept}", summary(&diagnostics));
                tracing::info!("revision {} rejected: {text}", revision.short());
                // The first findings; `drover validate` shows them all.
                const SHOWN: usize = 50;
                let shown = &diagnostics[..diagnostics.len().min(SHOWN)];
                for l in render_human(shown, RenderOptions::default()).lines() {
                    tracing::info!("  {l}");
                }
                if diagnostics.len() > SHOWN {
                    tracing::info!(
                        "  … and {} more (drover validate lists them all)",
                        diagnostics.len() - SHOWN
                    );
                }
                control.reject(&revision, &text).await;
            }
            Ok(Ok(None)) => {}
            Ok(Err(error)) => tracing::error!("error: {error}"),
            Err(error) => tracing::error!("error: the revision check stopped: {error}"),
        }
        trigger.notified().await;
    }
}
