//! `drover proxy`: one proxy listener as its own process, normally started by the
//! local engine; it keeps serving its last table while the control plane is away.

use std::net::SocketAddr;
use std::path::PathBuf;

use drover_proxy::link::ProxyDir;

/// Arguments of `drover proxy`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Its directory: the table it serves, its version, its stats and its address.
    #[arg(long)]
    dir: PathBuf,
    /// Where to listen (port 0: the previous address if free, else any).
    #[arg(long)]
    listen: SocketAddr,
}

pub fn run(args: Args) -> anyhow::Result<std::process::ExitCode> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    drover_proxy::process::run(ProxyDir(args.dir), args.listen, threads)?;
    Ok(std::process::ExitCode::SUCCESS)
}
