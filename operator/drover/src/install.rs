//! `drover install --print`: the objects that install `drover operator` into a
//! cluster, as one YAML stream for `kubectl apply` (charts/drover renders the same).

use std::process::ExitCode;

use drover_kube_operator::install::{Settings, objects, yaml};

/// Arguments of `drover install`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the objects (as YAML) instead of applying them.
    #[arg(long)]
    print: bool,
    /// The config repo the operator follows.
    #[arg(long, default_value = "")]
    repo: String,
    /// Its branch.
    #[arg(long, default_value = "main")]
    branch: String,
    /// The config's directory in the repo.
    #[arg(long, default_value = "")]
    path: String,
    /// A Secret (in the operator's namespace) with the repo's credentials.
    #[arg(long)]
    git_secret: Option<String>,
    /// A Secret (in the operator's namespace) whose `secret` key signs webhooks.
    #[arg(long)]
    webhook_secret: Option<String>,
    /// The operator's namespace.
    #[arg(long, default_value = "drover-system")]
    namespace: String,
    /// The operator's image.
    #[arg(long)]
    image: Option<String>,
    /// Replicas (they elect a leader; the others wait to take over).
    #[arg(long, default_value_t = 2)]
    replicas: u32,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if !args.print {
        anyhow::bail!(
            "applying from Drover itself is not built yet: run `drover install --print | kubectl apply --server-side -f -`, or use the Helm chart in charts/drover"
        );
    }
    let defaults = Settings::default();
    let settings = Settings {
        namespace: args.namespace,
        image: args.image.unwrap_or(defaults.image.clone()),
        replicas: args.replicas,
        repo: args.repo,
        branch: args.branch,
        path: args.path,
        git_secret: args.git_secret,
        webhook_secret: args.webhook_secret,
        ..defaults
    };
    print!("{}", yaml(&objects(&settings)));
    Ok(ExitCode::SUCCESS)
}
