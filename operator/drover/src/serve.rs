//! The controller's process, shared by `drover up` and `drover operator`: the state
//! directory's lock, the controller over an engine with its API, promoter, Git writer
//! and revision checks, and how it stops.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use drover_api::ApiState;
use drover_control::promoter::Promoter;
use drover_control::server::{ServerState, router};
use drover_control::{Config, Controller, DesiredRevision};
use drover_diagnostics::{RenderOptions, render_human, summary};
use drover_local::files::StateDir;
use drover_source::{Follower, GitSource, Redacted, Update, watch_refs};
use drover_telemetry::trace::{Detection, Detections, RevisionTrace};
use tokio::sync::Notify;
use tracing::Instrument;

/// Where the API listens and how often a remote repo is fetched.
#[derive(Debug, Clone, Copy)]
pub struct Serve {
    pub listen: SocketAddr,
    pub poll: Duration,
    /// `GET /metrics` without a token.
    pub metrics_public: bool,
}

/// Holds the state directory's lock while `up` runs: two control planes on one state
/// would fight over every instance.
pub fn lock(state: &StateDir) -> anyhow::Result<nix::fcntl::Flock<std::fs::File>> {
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

/// What every engine's `up` shares, made before the engine is chosen.
pub struct Setup {
    pub state: StateDir,
    pub token: String,
    pub follower: Arc<Mutex<Follower>>,
    pub git_dir: PathBuf,
    pub remote: bool,
    pub notifier: drover_control::notify::Notifier,
    pub trigger: Arc<Notify>,
    /// What signs Git push webhooks.
    pub webhook_secret: Option<Redacted>,
    /// The secret values of accepted revisions, for the engines.
    pub vault: Arc<drover_secrets::Vault>,
    /// What is counted as it happens; the follower and the webhooks count into it too.
    pub metrics: drover_telemetry::Metrics,
    /// What set the next check off (a watch, a poll, a webhook with its trace).
    pub detections: Arc<Detections>,
}

/// The age identities the control plane opens secrets with, where SOPS looks for them
/// (`SOPS_AGE_KEY_FILE`, `SOPS_AGE_KEY`, `~/.config/sops/age/keys.txt`). Says which
/// recipients they are, never the keys.
pub fn age_keys() -> anyhow::Result<Arc<drover_secrets::Keys>> {
    let keys = drover_secrets::Keys::from_env()?;
    if keys.is_empty() {
        tracing::info!(
            "no age key: encrypted secrets cannot be opened (set {} to an age key file)",
            drover_secrets::keys::KEY_FILE_VAR
        );
    } else {
        tracing::info!(
            "age key from {}: secrets encrypted for {} can be opened",
            keys.from(),
            keys.recipients().join(", ")
        );
    }
    Ok(Arc::new(keys))
}

/// A running controller with its API, promoter and Git writer.
pub struct Started<E: drover_control::engine::Engine> {
    pub control: Arc<Controller<E>>,
    pub stop: tokio::sync::watch::Sender<bool>,
    pub reconciler: tokio::task::JoinHandle<()>,
    pub checker: tokio::task::JoinHandle<()>,
    pub quit: Arc<AtomicBool>,
    pub api: String,
    /// The trace exporter, when `OTEL_EXPORTER_OTLP_ENDPOINT` names one.
    pub tracing: Option<drover_telemetry::trace::Tracing>,
}

/// Starts the controller over `engine`, its API (with `extra` routes), the promoter,
/// the Git writer and the revision checks.
pub async fn start<E: drover_control::engine::Engine>(
    serve: &Serve,
    setup: &Setup,
    engine: Arc<E>,
    wake: Arc<Notify>,
    extra: axum::Router<drover_control::server::Shared<E>>,
) -> anyhow::Result<Started<E>> {
    let state = &setup.state;
    let trigger = setup.trigger.clone();
    let tracing = drover_telemetry::trace::Tracing::from_env()?;
    if tracing.is_some() {
        tracing::info!("traces: exported over OTLP/gRPC (OTEL_EXPORTER_OTLP_ENDPOINT)");
    }
    let control = Controller::open(
        engine,
        Config {
            state: state.clone(),
            notifier: setup.notifier.clone(),
            metrics: setup.metrics.clone(),
        },
        wake,
    )?;
    let listener = bind_api(state, serve.listen).await?;
    let api = format!("http://{}", listener.local_addr()?);
    drover_local::files::write_atomic(&state.api_file(), api.as_bytes())?;
    tracing::info!(
        "api: {api} (writes need the token in {})",
        state.token_file().display()
    );
    let webhooks = drover_api::router(Arc::new(ApiState {
        webhook_secret: setup.webhook_secret.clone(),
        on_push: trigger.clone(),
        metrics: setup.metrics.clone(),
        detections: setup.detections.clone(),
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
    let app = drover_control::server::measured(
        router(
            Arc::new(
                ServerState::new(control.clone(), &setup.token, Some(promoter))
                    .with_public_metrics(serve.metrics_public),
            ),
            extra,
        )
        .merge(webhooks),
        setup.metrics.clone(),
    );
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
        let (trigger, period) = (trigger.clone(), serve.poll);
        let detections = setup.detections.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                detections.saw(Detection::Poll, Default::default());
                trigger.notify_one();
            }
        });
    } else {
        let watch = watch_refs(&setup.git_dir)?;
        let (trigger, quit) = (trigger.clone(), quit.clone());
        let detections = setup.detections.clone();
        tokio::task::spawn_blocking(move || {
            while !quit.load(Ordering::Relaxed) {
                if watch.wait(Duration::from_millis(250)) {
                    detections.saw(Detection::Watch, Default::default());
                    trigger.notify_one();
                }
            }
        });
    }
    // Revisions are checked in their own task: a big or slow revision never holds up
    // the agents' tending or a signal.
    let checker = tokio::spawn(follow(
        setup.follower.clone(),
        control.clone(),
        trigger,
        setup.vault.clone(),
        setup.detections.clone(),
    ));
    Ok(Started {
        control,
        stop,
        reconciler,
        checker,
        quit,
        api,
        tracing,
    })
}

impl<E: drover_control::engine::Engine> Started<E> {
    /// Runs `tick` every half second until SIGINT or SIGTERM.
    pub async fn until_stopped(&self, mut tick: impl FnMut()) -> anyhow::Result<()> {
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

    pub async fn stop(self, state: &StateDir) {
        let _ = self.stop.send(true);
        let _ = self.reconciler.await;
        if let Some(tracing) = self.tracing {
            // The export runs on this runtime: flush from a thread of its own.
            let _ = tokio::task::spawn_blocking(move || tracing.shutdown()).await;
        }
        let _ = std::fs::remove_file(state.api_file());
        tracing::info!("stopped");
    }
}

/// The follower of a control plane: Drover's own commits known by the tokens its store
/// recorded, and — after a restart — the commits since the revision last applied
/// judged by that revision's change rules.
pub fn follower(
    source: GitSource,
    state: &StateDir,
    metrics: &drover_telemetry::Metrics,
) -> anyhow::Result<Follower> {
    let store = drover_store::Store::open(&state.database())?;
    let applied = store
        .environments()?
        .into_iter()
        .filter_map(|e| e.revision)
        .next();
    let store = Mutex::new(store);
    let writes: drover_source::DroverWrites = Arc::new(move |token: &str| {
        let store = store.lock().ok()?;
        store.write_by_token(token).ok().flatten().map(|w| w.kind)
    });
    let mut follower = Follower::new(source)
        .with_writes(writes)
        .with_metrics(metrics.clone());
    if let Some(revision) = applied
        && let Err(error) = follower.resume(&revision)
    {
        tracing::warn!("cannot read {revision}, the revision applied before: {error}");
    }
    Ok(follower)
}

/// One line for a revision refused by change rules: how many commits, the first
/// reason, and what stays in force.
pub fn refused_text(
    refusals: &[drover_source::Refusal],
    in_force: Option<&drover_source::Revision>,
) -> String {
    let kept = in_force.map_or("nothing is in force yet".to_owned(), |r| {
        format!("{} stays in force", r.short())
    });
    let first = refusals
        .first()
        .map(|r| format!("; first: {r}"))
        .unwrap_or_default();
    format!(
        "{} commit(s) break the change rules of the environments they touch; {kept}{first}",
        refusals.len()
    )
}

/// Opens the secrets of the revisions the environments were last applied at (from the
/// store): what a control plane restarted on an invalid revision needs to start
/// instances again, since only Git holds the values.
async fn recover_values<E: drover_control::engine::Engine>(
    follower: &Arc<Mutex<Follower>>,
    control: &Controller<E>,
    vault: &drover_secrets::Vault,
) {
    let revisions: std::collections::BTreeSet<String> = control
        .with_store(|s| s.environments())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| e.revision)
        .collect();
    for id in revisions {
        let follower = follower.clone();
        let opened = tokio::task::spawn_blocking(move || {
            let follower = follower.lock().expect("follower lock");
            let revision = follower.source().resolve(&id)?;
            follower.source().desired_at(&revision)
        })
        .await;
        match opened {
            Ok(Ok(desired)) if desired.checked.is_valid() => {
                tracing::info!(
                    "secrets of {} (applied before) opened again",
                    desired.revision.short()
                );
                vault.add(&desired.secrets);
            }
            Ok(Ok(desired)) => tracing::warn!(
                "{} no longer opens: its secrets are not at hand",
                desired.revision.short()
            ),
            Ok(Err(error)) => tracing::warn!("cannot read a revision applied before: {error}"),
            Err(error) => tracing::warn!("cannot read a revision applied before: {error}"),
        }
    }
}

/// Checks the tracked reference at start and each time `trigger` fires, off the main
/// loop, and hands each new revision to the controller: accepted, or rejected with
/// every diagnostic. Each new revision gets its trace (what set the check off, the
/// fetch, the validation); its log lines carry the trace's id.
pub async fn follow<E: drover_control::engine::Engine>(
    follower: Arc<Mutex<Follower>>,
    control: Arc<Controller<E>>,
    trigger: Arc<Notify>,
    vault: Arc<drover_secrets::Vault>,
    detections: Arc<Detections>,
) {
    let mut first = true;
    loop {
        let checking = follower.clone();
        let update = tokio::task::spawn_blocking(move || {
            let mut follower = checking.lock().expect("follower lock");
            follower.check().map(|u| u.map(|u| (u, follower.timings())))
        })
        .await;
        let (how, parent) = detections.take();
        // Nothing said what set this check off: the start, or a commit Drover wrote.
        let how = match how {
            Detection::Start if !first => Detection::Write,
            how => how,
        };
        first = false;
        match update {
            Ok(Ok(Some((update, times)))) => {
                let (revision, outcome) = match &update {
                    Update::Accepted(d) => (&d.revision, "accepted"),
                    Update::Rejected { revision, .. } => (revision, "rejected"),
                    Update::Refused { revision, .. } => (revision, "refused"),
                };
                let trace = RevisionTrace::checked(
                    &revision.id,
                    &revision.summary,
                    how,
                    &parent,
                    times,
                    outcome,
                );
                let span = tracing::info_span!(
                    "revision",
                    trace_id = trace.trace_id().unwrap_or_default()
                );
                handle(update, trace, &follower, &control, &vault)
                    .instrument(span)
                    .await;
            }
            Ok(Ok(None)) => {}
            Ok(Err(error)) => tracing::error!("error: {error}"),
            Err(error) => tracing::error!("error: the revision check stopped: {error}"),
        }
        trigger.notified().await;
    }
}

/// A new revision: accepted (handed to the controller), rejected or refused (reported,
/// the one in force stays).
async fn handle<E: drover_control::engine::Engine>(
    update: Update,
    trace: RevisionTrace,
    follower: &Arc<Mutex<Follower>>,
    control: &Arc<Controller<E>>,
    vault: &Arc<drover_secrets::Vault>,
) {
    match update {
        Update::Accepted(desired) => {
            tracing::info!(
                "revision {} accepted: {} ({})",
                desired.revision.short(),
                desired.revision.summary,
                summary(&desired.checked.diagnostics)
            );
            // The values first: the engines deliver them once the objects apply.
            vault.add(&desired.secrets);
            control
                .set_desired(DesiredRevision {
                    state: drover_diff::normalize(&desired.checked.repo),
                    revision: desired.revision.clone(),
                    trace,
                })
                .await;
        }
        Update::Rejected {
            revision,
            diagnostics,
            in_force,
        } => {
            if in_force.is_none() {
                // Restarted on a rejected revision: the engines still need the
                // values of the one in force before, which only Git holds.
                recover_values(follower, control, vault).await;
            }
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
            // What `drover status` and an Environment's status say in one line:
            // the count, and the first error itself.
            let first = diagnostics
                .iter()
                .find(|d| d.severity == drover_diagnostics::Severity::Error)
                .map(|d| format!("; first: {}: {} {}", d.location, d.code.id(), d.message))
                .unwrap_or_default();
            control.reject(&revision, &format!("{text}{first}")).await;
        }
        Update::Refused {
            revision,
            refusals,
            in_force,
        } => {
            let text = refused_text(&refusals, in_force.as_ref());
            tracing::info!("revision {} refused: {text}", revision.short());
            for refusal in &refusals {
                tracing::info!("  {refusal}");
            }
            control.reject(&revision, &text).await;
        }
    }
}
