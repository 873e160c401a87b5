//! `drover watch`: follow a config repo and print each new desired state. Commits in a
//! local repository are seen through a watch on its refs; remotes are polled (with
//! jitter) and fetched at once when a signed webhook announces a push.

use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use drover_api::{ApiState, router};
use drover_diagnostics::{RenderOptions, render_human, summary};
use drover_source::{Follower, GitSource, Redacted, Update, watch_refs};
use tokio::sync::Notify;

use crate::diff::cache_dir;
use crate::repo_args::RepoArgs;

/// Arguments of `drover watch`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    repo: RepoArgs,
    /// How often to fetch a remote (with up to 10% jitter).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    poll: Duration,
    /// Where the API (webhooks) listens.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    text.parse::<drover_model::Duration>()
        .map(|d| d.to_std())
        .map_err(|e| e.to_string())
}

fn line(text: impl AsRef<str>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", text.as_ref());
    let _ = out.flush();
}

/// A pseudo-random fraction in [0, 1) for jitter, without a random-number crate.
fn jitter() -> f64 {
    let n = std::collections::hash_map::RandomState::new().hash_one(std::time::Instant::now());
    (n % 10_000) as f64 / 10_000.0
}

fn report(update: Update) {
    match update {
        Update::Accepted(desired) => {
            let repo = &desired.checked.repo;
            line(format!(
                "revision {} accepted: {} ({} services in {} environments; {})",
                desired.revision.short(),
                desired.revision.summary,
                repo.service_count(),
                repo.environments.len(),
                summary(&desired.checked.diagnostics)
            ));
        }
        Update::Rejected {
            revision,
            diagnostics,
            in_force,
        } => {
            let kept = in_force.map_or("nothing is in force yet".to_owned(), |r| {
                format!("{} stays in force", r.short())
            });
            line(format!(
                "revision {} rejected: {}; {kept}",
                revision.short(),
                summary(&diagnostics)
            ));
            for text in render_human(&diagnostics, RenderOptions::default()).lines() {
                line(format!("  {text}"));
            }
        }
        Update::Refused {
            revision,
            refusals,
            in_force,
        } => {
            line(format!(
                "revision {} refused: {}",
                revision.short(),
                crate::serve::refused_text(&refusals, in_force.as_ref())
            ));
            for refusal in &refusals {
                line(format!("  {refusal}"));
            }
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<std::process::ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(watch(args))?;
    Ok(std::process::ExitCode::SUCCESS)
}

async fn watch(args: Args) -> anyhow::Result<()> {
    let spec = args.repo.spec();
    let reference = spec.reference.clone();
    let source = GitSource::open(spec, &cache_dir())?;
    let remote = source.is_remote();
    let git_dir = source.git_dir().to_owned();
    line(format!("watching {} ({reference})", source.location()));
    let follower = Arc::new(Mutex::new(Follower::new(source)));

    let trigger = Arc::new(Notify::new());
    let state = Arc::new(ApiState {
        webhook_secret: std::env::var("DROVER_WEBHOOK_SECRET").ok().map(Redacted),
        on_push: trigger.clone(),
        // `drover watch` serves no metrics; the webhook counts into nothing read.
        metrics: drover_telemetry::Metrics::new(),
        detections: Default::default(),
    });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    line(format!(
        "webhook: POST http://{}/api/v1/webhooks/git",
        listener.local_addr()?
    ));
    tokio::spawn(async move { axum::serve(listener, router(state)).await });

    let stop = Arc::new(AtomicBool::new(false));
    if remote {
        let (trigger, period) = (trigger.clone(), args.poll);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period.mul_f64(1.0 + 0.1 * jitter())).await;
                trigger.notify_one();
            }
        });
    } else {
        let watch = watch_refs(&git_dir)?;
        let (trigger, stop) = (trigger.clone(), stop.clone());
        tokio::task::spawn_blocking(move || {
            while !stop.load(Ordering::Relaxed) {
                if watch.wait(Duration::from_millis(250)) {
                    trigger.notify_one();
                }
            }
        });
    }

    loop {
        let follower = follower.clone();
        let checked =
            tokio::task::spawn_blocking(move || follower.lock().expect("follower lock").check())
                .await?;
        match checked {
            Ok(Some(update)) => report(update),
            Ok(None) => {}
            Err(error) => eprintln!("error: {error}"),
        }
        tokio::select! {
            _ = trigger.notified() => {}
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    stop.store(true, Ordering::Relaxed);
    Ok(())
}
