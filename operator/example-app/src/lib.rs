//! `drover example-app`: a small HTTP service shipped inside the `drover` binary, so
//! the examples run on a fresh machine with nothing downloaded. It reports its version
//! and can be told to fail readiness or liveness, or to crash, to show what rollouts
//! and rollbacks do. `/received` shows a checksum of each secret it was given (files
//! named by `*_FILE` variables, and the variables `$SECRET_ENV` names), never a value.
//!
//! Every switch is a flag and an environment variable (the flag wins), so a config
//! repo can flip one by editing `env:` or `args:`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use clap::builder::BoolishValueParser;

/// Arguments of `drover example-app`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Address to listen on. Default: `$HOST` (else 127.0.0.1; a container image sets
    /// `0.0.0.0`) and `$PORT` (set by every engine), or any free port.
    #[arg(long, env = "EXAMPLE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// The version reported (`$DROVER_VERSION` is set by the local engine).
    #[arg(long, env = "DROVER_VERSION", default_value = "v0.0.0")]
    pub app_version: String,
    /// A message included in every answer of `/`.
    #[arg(
        long,
        env = "EXAMPLE_MESSAGE",
        default_value = "hello from drover example-app"
    )]
    pub message: String,
    /// Answer `/ready` with 503 (the instance never becomes ready).
    #[arg(long, env = "EXAMPLE_FAIL_READINESS", value_parser = BoolishValueParser::new())]
    pub fail_readiness: bool,
    /// Answer `/ready` with 503 when the version is one of these (comma-separated):
    /// what an environment-specific breakage looks like, for demos of a release that
    /// passes staging and fails production.
    #[arg(long, env = "EXAMPLE_BROKEN_VERSIONS", value_delimiter = ',')]
    pub broken_versions: Vec<String>,
    /// Answer `/healthz` with 500 (liveness fails: the instance gets restarted).
    #[arg(long, env = "EXAMPLE_FAIL_LIVENESS", value_parser = BoolishValueParser::new())]
    pub fail_liveness: bool,
    /// Become ready only this many seconds after start.
    #[arg(long, env = "EXAMPLE_READY_AFTER", default_value_t = 0.0)]
    pub ready_after: f64,
    /// Exit with status 1 at once, before listening.
    #[arg(long, env = "EXAMPLE_CRASH_ON_START", value_parser = BoolishValueParser::new())]
    pub crash_on_start: bool,
    /// Exit with status 1 this many seconds after start.
    #[arg(long, env = "EXAMPLE_CRASH_AFTER")]
    pub crash_after: Option<f64>,
}

struct App {
    args: Args,
    started: Instant,
    /// `/sleep` requests being served now: printed on SIGTERM, which shows whether the
    /// platform drained this instance before stopping it.
    sleeping: std::sync::atomic::AtomicUsize,
}

impl App {
    fn ready(&self) -> bool {
        !self.args.fail_readiness
            && !self.args.broken_versions.contains(&self.args.app_version)
            && self.started.elapsed() >= Duration::from_secs_f64(self.args.ready_after.max(0.0))
    }
}

async fn index(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> impl IntoResponse {
    let body = serde_json::json!({
        "message": app.args.message,
        "version": app.args.app_version,
        "pid": std::process::id(),
        "port": std::env::var("PORT").ok(),
        // Who connected: behind Drover's proxy, an address of the active proxy pool.
        "client": peer.ip().to_string(),
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string() + "\n",
    )
}

async fn healthz(State(app): State<Arc<App>>) -> impl IntoResponse {
    if app.args.fail_liveness {
        (StatusCode::INTERNAL_SERVER_ERROR, "failing liveness\n")
    } else {
        (StatusCode::OK, "ok\n")
    }
}

async fn ready(State(app): State<Arc<App>>) -> impl IntoResponse {
    if app.ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

/// `/sleep?ms=N`: answers after N milliseconds (at most a minute), like a slow request.
async fn sleep(State(app): State<Arc<App>>, RawQuery(query): RawQuery) -> impl IntoResponse {
    use std::sync::atomic::Ordering;
    let ms: u64 = query
        .as_deref()
        .unwrap_or_default()
        .split('&')
        .find_map(|p| p.strip_prefix("ms="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000)
        .min(60_000);
    app.sleeping.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    app.sleeping.fetch_sub(1, Ordering::SeqCst);
    format!("slept {ms} ms in {}\n", std::process::id())
}

/// `/received`: SHA-256 of what each `*_FILE` variable's file holds, and of each
/// variable named in `$SECRET_ENV` (comma-separated): proof of delivery that shows no
/// secret.
async fn received() -> impl IntoResponse {
    use sha2::Digest as _;
    let sum = |bytes: &[u8]| format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)));
    let mut files = serde_json::Map::new();
    let mut variables = serde_json::Map::new();
    for (name, value) in std::env::vars() {
        if name.ends_with("_FILE") {
            let shown = match std::fs::read(&value) {
                Ok(bytes) => sum(&bytes),
                Err(e) => format!("unreadable: {}", e.kind()),
            };
            files.insert(name, shown.into());
        }
    }
    let named = std::env::var("SECRET_ENV").unwrap_or_default();
    for name in named.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let shown = std::env::var(name).map_or("unset".to_owned(), |v| sum(v.as_bytes()));
        variables.insert(name.to_owned(), shown.into());
    }
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({"files": files, "env": variables}).to_string() + "\n",
    )
}

async fn version(State(app): State<Arc<App>>) -> impl IntoResponse {
    format!("{}\n", app.args.app_version)
}

/// The service's routes.
fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/healthz", get(healthz))
        .route("/ready", get(ready))
        .route("/version", get(version))
        .route("/sleep", get(sleep))
        .route("/received", get(received))
        .with_state(app)
}

/// Runs the service until SIGTERM or Ctrl-C (clean exit, in-flight requests finish)
/// or until a crash switch fires (exit status 1). Returns the exit status.
pub fn run(args: Args) -> std::io::Result<u8> {
    if args.crash_on_start {
        eprintln!("example-app: crashing on start, as asked");
        return Ok(1);
    }
    let listen = args.listen.unwrap_or_else(|| {
        let port = std::env::var("PORT")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let host = std::env::var("HOST")
            .ok()
            .and_then(|h| h.parse::<std::net::IpAddr>().ok())
            .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
        SocketAddr::new(host, port)
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        println!("example-app {} listening on http://{}", args.app_version, listener.local_addr()?);
        let crash_after = args.crash_after;
        let app = Arc::new(App {
            args,
            started: Instant::now(),
            sleeping: Default::default(),
        });
        let version = app.args.app_version.clone();
        let counted = app.clone();
        let crash = async move {
            match crash_after {
                Some(seconds) => tokio::time::sleep(Duration::from_secs_f64(seconds.max(0.0))).await,
                None => std::future::pending().await,
            }
        };
        let stop = async move {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            let sleeping = counted.sleeping.load(std::sync::atomic::Ordering::SeqCst);
            println!("example-app {version} stopping with {sleeping} slow request(s) in flight");
            Ok::<(), std::io::Error>(())
        };
        let server = axum::serve(
            listener,
            router(app).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async {
            let _ = stop.await;
        });
        tokio::select! {
            result = server => result.map(|()| 0),
            () = crash => {
                eprintln!("example-app: crashing after {:.1}s, as asked", crash_after.unwrap_or_default());
                Ok(1)
            }
        }
    })
}
