//! `drover agent`: one node's agent, normally started by `drover up`, able to run on
//! its own (`drover up --no-agents`).

use std::path::PathBuf;

use drover_local::agent::{AgentConfig, run as run_agent};
use drover_local::files::StateDir;

/// Arguments of `drover agent`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The node this agent runs (a node of a local cluster in the config).
    #[arg(long)]
    node: String,
    /// The control plane's API (default: the address in the state directory).
    #[arg(long)]
    control: Option<String>,
    /// The state directory shared with the control plane.
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<std::process::ExitCode> {
    let state = StateDir::new(args.state_dir.unwrap_or_else(StateDir::default_root));
    let control = args.control.or_else(|| state.api_url()).ok_or_else(|| {
        anyhow::anyhow!(
            "no --control given and no control plane has written its address to {}",
            state.api_file().display()
        )
    })?;
    let config = AgentConfig {
        node: args.node.clone(),
        control,
        token: state.token(),
        state,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let node = args.node;
    runtime.block_on(async move {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let shutdown = async move {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        };
        run_agent(config, shutdown, |text| {
            tracing::info!(node = %node, "agent {node}: {text}");
        })
        .await?;
        anyhow::Ok(())
    })?;
    Ok(std::process::ExitCode::SUCCESS)
}
