//! `drover operator`: Drover inside a Kubernetes cluster (or outside it, with a
//! kubeconfig). It follows the config repo named by its flags (credentials and the
//! webhook secret from Secrets), drives the environments Git places on Kubernetes
//! clusters, keeps an `Environment` resource per environment with its status, passes
//! its events on as Kubernetes Events, and with several replicas acts only while it
//! holds the Lease.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use drover_control::Controller;
use drover_kube::KubeEngine;
use drover_kube_operator::environments::{self, on_kubernetes};
use drover_kube_operator::{events, lease, takeover};
use drover_local::files::StateDir;
use drover_source::{Credentials, Follower, GitSource, Redacted, Reference, RepoSpec};
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;
use tokio::sync::Notify;

use crate::serve::{Serve, Setup, lock, start};

/// Arguments of `drover operator`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The config repo's URL (`https://`, `ssh://`, `git://`, `file://`).
    #[arg(long)]
    repo: String,
    /// The branch to follow.
    #[arg(long, default_value = "main")]
    branch: String,
    /// The config's directory inside the repository.
    #[arg(long, default_value = "")]
    path: String,
    /// A Secret in the operator's namespace with the repo's credentials: `username`
    /// and `password` (a token), or `identity` (an SSH private key), as Flux reads them.
    #[arg(long)]
    git_secret: Option<String>,
    /// A Secret in the operator's namespace whose `secret` key signs Git push webhooks.
    #[arg(long)]
    webhook_secret: Option<String>,
    /// The operator's namespace (its Secrets and its Lease).
    #[arg(long, env = "POD_NAMESPACE", default_value = "drover-system")]
    namespace: String,
    /// Where the API listens (API, webhooks, `/healthz`).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The state directory (in a cluster, an emptyDir: what must outlive a replica is
    /// in the Environment resources' status).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// How often to fetch the config repo (a signed webhook fetches at once).
    #[arg(long, default_value = "60s", value_parser = crate::watch::parse_duration)]
    poll: Duration,
    /// Serve `GET /metrics` without a token (for a Prometheus that holds none);
    /// otherwise a `read` token is needed.
    #[arg(long)]
    metrics_public: bool,
    /// How long a leader that stops renewing keeps the Lease: the longest hand-over.
    #[arg(long, default_value = "15s", value_parser = crate::watch::parse_duration)]
    lease_duration: Duration,
    /// This replica's name in the Lease (default: `$POD_NAME`, else the host name and
    /// process id).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Act without electing a leader (one replica only).
    #[arg(long)]
    no_leader_election: bool,
}

pub fn run(args: Args) -> anyhow::Result<std::process::ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(operate(args))
}

/// The repo's credentials from the Secret named `name`.
async fn credentials(
    client: &Client,
    args: &Args,
    state: &StateDir,
) -> anyhow::Result<Credentials> {
    let Some(name) = &args.git_secret else {
        return Ok(Credentials::default());
    };
    let secret = read_secret(client, &args.namespace, name).await?;
    let text = |key: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
    };
    let ssh_key = match text("identity") {
        Some(key) => {
            let path = state.root().join("git-identity");
            write_private(&path, key.as_bytes())?;
            Some(path)
        }
        None => None,
    };
    Ok(Credentials {
        username: text("username"),
        token: text("password").map(Redacted),
        ssh_key,
    })
}

async fn read_secret(client: &Client, namespace: &str, name: &str) -> anyhow::Result<Secret> {
    Api::<Secret>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .with_context(|| format!("cannot read Secret {namespace}/{name}"))
}

fn write_private(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(bytes)?;
    Ok(())
}

async fn webhook_secret(client: &Client, args: &Args) -> anyhow::Result<Option<Redacted>> {
    let Some(name) = &args.webhook_secret else {
        return Ok(None);
    };
    let secret = read_secret(client, &args.namespace, name).await?;
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get("secret"))
        .map(|b| String::from_utf8_lossy(&b.0).trim().to_owned())
        .with_context(|| format!("Secret {}/{name} has no `secret` key", args.namespace))?;
    Ok(Some(Redacted(value)))
}

fn identity(args: &Args) -> String {
    args.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    })
}

async fn operate(args: Args) -> anyhow::Result<std::process::ExitCode> {
    let client = Client::try_default()
        .await
        .context("cannot connect to Kubernetes (in-cluster config or $KUBECONFIG)")?;
    let state = StateDir::new(
        args.state_dir
            .clone()
            .unwrap_or_else(StateDir::default_root),
    );
    let _lock = lock(&state)?;
    let leadership = if args.no_leader_election {
        None
    } else {
        let election = lease::Election {
            namespace: args.namespace.clone(),
            lease: drover_kube_operator::install::LEASE.to_owned(),
            identity: identity(&args),
            duration: args.lease_duration,
        };
        tracing::info!(
            "waiting for the Lease {}/{} as {}",
            election.namespace,
            election.lease,
            election.identity
        );
        let won = lease::lead(client.clone(), &election)
            .await
            .context("leader election")?;
        tracing::info!("leading: this replica acts");
        Some(won)
    };
    let token = state.ensure_token()?;
    let spec = RepoSpec {
        location: args.repo.clone(),
        reference: Reference::Branch(args.branch.clone()),
        credentials: credentials(&client, &args, &state).await?,
        path: args.path.clone(),
    };
    let source = GitSource::open(spec, &state.git_cache())?.with_keys(crate::serve::age_keys()?);
    source.fetch()?;
    tracing::info!("following {} ({})", source.location(), args.branch);
    let git_dir = source.git_dir().to_owned();
    let metrics = drover_telemetry::Metrics::new();
    let follower = Arc::new(Mutex::new(crate::serve::follower(
        source, &state, &metrics,
    )?));
    let wake = Arc::new(Notify::new());
    let vault = drover_secrets::Vault::new();
    let engine = KubeEngine::open(&state.database(), wake.clone(), vault.clone())?;
    let events_after = take_over(&engine, &client, &follower, &state).await?;
    let setup = Setup {
        state: state.clone(),
        token,
        follower: follower.clone(),
        git_dir,
        remote: true,
        notifier: drover_control::notify::Notifier::start(Vec::new(), None),
        trigger: Arc::new(Notify::new()),
        webhook_secret: webhook_secret(&client, &args).await?,
        vault,
        metrics,
        detections: Default::default(),
    };
    let serve = Serve {
        listen: args.listen,
        poll: args.poll,
        metrics_public: args.metrics_public,
    };
    let started = start(&serve, &setup, engine, wake, axum::Router::new()).await?;
    let control = started.control.clone();
    let publisher = events::Publisher::new(
        events::Reporter {
            client: client.clone(),
            instance: identity(&args),
        },
        events_after,
    );
    tokio::spawn(after_passes(control.clone(), client.clone(), publisher));
    let (stop_status, stopped) = tokio::sync::oneshot::channel::<()>();
    let status = tokio::spawn(environments::run_status(
        Arc::new(environments::Context {
            control: control.clone(),
            client: client.clone(),
        }),
        async move {
            let _ = stopped.await;
        },
    ));
    let mut leadership = leadership;
    tokio::select! {
        stopped = started.until_stopped(|| {}) => stopped?,
        () = async {
            match &mut leadership {
                Some(l) => l.lost().await,
                None => std::future::pending().await,
            }
        } => {
            // Another replica may act from now on: this one must not, not even once.
            tracing::error!("the Lease is lost: stopping at once");
            std::process::exit(1);
        }
    }
    let _ = stop_status.send(());
    let _ = status.await;
    started.stop(&state).await;
    if let Some(leadership) = leadership {
        leadership.release().await;
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Reads where the previous leader stopped, from the Environment resources; returns
/// the number of the last event in the store then (events from there on are passed on:
/// a replica that takes over does not repeat the last one's).
async fn take_over(
    engine: &Arc<KubeEngine>,
    client: &Client,
    follower: &Arc<Mutex<Follower>>,
    state: &StateDir,
) -> anyhow::Result<i64> {
    let store = drover_store::Store::open(&state.database())?;
    let desired_at = |revision: &str| {
        let follower = follower.lock().ok()?;
        let source = follower.source();
        let revision = source.resolve(revision).ok()?;
        let desired = source.desired_at(&revision).ok()?;
        Some(drover_diff::normalize(&desired.checked.repo))
    };
    let taken = takeover::take_over(engine, &store, client, desired_at).await?;
    if !taken.is_empty() {
        tracing::info!("took over {}", taken.join(", "));
    }
    Ok(store.last_event_id()?)
}

/// After each pass: the Environment resources made to say what Git says (when the
/// revision is new, with a warning for each environment this operator cannot run),
/// then the pass's events passed on (so they find their resource).
async fn after_passes(
    control: Arc<Controller<KubeEngine>>,
    client: Client,
    mut publisher: events::Publisher,
) {
    let mut passes = control.passes();
    let mut mirrored: Option<String> = None;
    while passes.changed().await.is_ok() {
        if let Some(desired) = control.followed().await.desired
            && mirrored.as_deref() != Some(desired.revision.id.as_str())
        {
            warn_unsupported(&desired.state);
            match environments::mirror(&client, &desired.state).await {
                Ok(()) => mirrored = Some(desired.revision.id.clone()),
                Err(error) => tracing::warn!("cannot update the Environment resources: {error}"),
            }
        }
        publisher.publish_new(&control).await;
    }
}

fn warn_unsupported(desired: &drover_diff::State) {
    let kube: Vec<String> = on_kubernetes(desired)
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    for (key, value) in desired.iter() {
        if key.kind == drover_model::Kind::Environment && !kube.contains(&key.environment) {
            tracing::warn!(
                "environment {}: its cluster {} is not a Kubernetes cluster; `drover operator` runs only Kubernetes clusters (run `drover up` for it)",
                key.environment,
                value["spec"]["cluster"].as_str().unwrap_or_default()
            );
        }
    }
}
