//! `drover`: the command-line entry point. Each subcommand lives in its own module;
//! this file only parses arguments and maps results to exit codes.

/// mimalloc, not the system's malloc: a controller's passes make and drop copies of
/// large states, and glibc keeps most of what they freed (with 1,000 services on
/// Kubernetes, RSS was twice the heap's peak); mimalloc gives it back — at once, with
/// [`LEAN_ALLOCATOR`].
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's settings for long-running commands, read from the environment when the
/// process starts: freed memory goes back to the system at once, and arenas are
/// committed as used (with mimalloc's defaults, `up` with 1,000 services on Kubernetes
/// held 103 MiB, with these 78 MiB; four idle agents 88 MiB, with these 54 MiB;
/// BENCHMARKS.md). A value the user set is kept.
const LEAN_ALLOCATOR: [(&str, &str); 2] = [
    ("MIMALLOC_PURGE_DELAY", "0"),
    ("MIMALLOC_ARENA_EAGER_COMMIT", "0"),
];

/// Runs this same command again (the same process: `exec`) with [`LEAN_ALLOCATOR`]
/// set, which mimalloc reads only at start; processes it starts inherit it. Returns
/// (having done nothing) when it is set, or when `exec` fails.
fn with_lean_allocator() {
    use std::os::unix::process::CommandExt;
    let missing: Vec<(&str, &str)> = LEAN_ALLOCATOR
        .into_iter()
        .filter(|(name, _)| std::env::var_os(name).is_none())
        .collect();
    if missing.is_empty() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let error = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .envs(missing)
        .exec();
    eprintln!("warning: cannot restart with lean allocator settings ({error}); going on");
}

mod agent;
mod crds;
mod diff;
mod install;
mod logging;
mod operator;
mod ops;
mod plan;
mod promote;
mod proxy;
mod repo_args;
mod secret;
mod serve;
mod up;
mod validate;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Drover keeps clusters, services and routes as a Git repository says: every commit is
/// checked, released and verified, and a release that fails its health checks is rolled
/// back — with the revert committed, so Git and what runs agree.
#[derive(Debug, Parser)]
#[command(
    name = "drover",
    version,
    about,
    propagate_version = true,
    after_help = "\
Getting started:
  drover validate examples/repo        check a config repo (every problem at once)
  drover up examples/repo              run it on this machine: scheduler, agents, proxy, API
  drover status                        what runs, where, and whether it matches Git

Every day:
  drover diff --from main~1 --to main  what a change does, before it is applied
  drover preview --base main --head pr the pull-request comment for a change
  drover logs -f staging/web           follow a service's logs
  drover history staging               releases, failures, rollbacks and reverts
  drover promote staging production    carry what staging verified to production

Output: -o human (default), wide, json or yaml. Shell completion: drover completion bash.
Limits on what a repo may hold: docs/limits.md. Every error code: docs/errors.md."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How log lines are written: `human` (the message alone) or `json` (one object
    /// per line, with level, time and fields).
    #[arg(long, global = true, value_enum, default_value_t = logging::LogFormat::Human)]
    log_format: logging::LogFormat,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a config repo: exit 0 when valid (warnings allowed), 1 when invalid,
    /// 2 when it cannot be read.
    Validate {
        /// The config repo's root folder.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// `human` (default) or `json`.
        #[arg(long, short, value_enum, default_value_t = Output::Human)]
        output: Output,
        /// Colour the human output: `auto` (on a terminal, unless NO_COLOR is set),
        /// `always` or `never`.
        #[arg(long, value_enum, default_value_t = Color::Auto)]
        color: Color,
    },
    /// Show what changes between two revisions of a config repo: exit 0 when nothing
    /// changes, 1 when something does, 2 on errors (an invalid revision included).
    Diff {
        /// The config repo: a local Git repository, or a URL.
        #[arg(default_value = ".")]
        repo: String,
        /// The old revision (branch, tag, commit, `HEAD~1`, …).
        #[arg(long)]
        from: String,
        /// The new revision.
        #[arg(long, default_value = "HEAD")]
        to: String,
        /// Only this environment.
        #[arg(long)]
        env: Option<String>,
        /// `text` (default), `markdown` or `json`.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Colour for `text`: `auto`, `always` or `never`.
        #[arg(long, value_enum, default_value_t = Color::Auto)]
        color: Color,
    },
    /// Show what `drover up` would change in one environment if the repo's files were
    /// committed: Drover's objects against what was last applied and, on Kubernetes,
    /// each object as a server-side dry run reports it. Exit 0 when nothing changes,
    /// 1 when something does, 2 on errors.
    Plan(plan::Args),
    /// Print a pull-request comment showing what merging `head` into `base` changes,
    /// with validation results. Needs no cluster access. Exit 0 when the head is valid,
    /// 1 when it is invalid, 2 on errors.
    Preview {
        /// The config repo: a local Git repository, or a URL.
        #[arg(default_value = ".")]
        repo: String,
        /// The target branch's revision.
        #[arg(long)]
        base: String,
        /// The pull request's revision.
        #[arg(long)]
        head: String,
        /// `markdown` (default) or `json`.
        #[arg(long, value_enum, default_value_t = Format::Markdown)]
        format: Format,
    },
    /// Follow a config repo: print each new revision's desired state as it arrives
    /// (a commit in a local repo, a poll or a signed webhook for a remote), and reject
    /// invalid revisions while the last valid one stays in force. Ctrl-C stops.
    Watch(watch::Args),
    /// Run the local engine for the config repo in DIR: follow its commits, and run
    /// the scheduler, one agent per node, the proxy and the API. Ctrl-C stops all.
    Up(up::Args),
    /// Run Drover inside a Kubernetes cluster (or outside it, with a kubeconfig): follow
    /// the config repo, drive the environments on Kubernetes clusters, and keep an
    /// `Environment` resource with its status for each; replicas elect a leader.
    Operator(operator::Args),
    /// Install the operator into the cluster of `$KUBECONFIG`: CRDs, namespace,
    /// ServiceAccount, least-privilege RBAC, Deployment, Service, NetworkPolicy, applied
    /// server-side; `--print` prints them instead (`| kubectl apply --server-side -f -`).
    Install(install::Args),
    /// Run one node's agent (`drover up` starts these itself).
    Agent(agent::Args),
    /// Run one proxy listener as its own process (`drover up` starts these itself).
    #[command(hide = true)]
    Proxy(proxy::Args),
    /// Show environments, services, instances, nodes and proxies of the running
    /// control plane.
    Status(ops::StatusArgs),
    /// Print a service's logs (`ENV/SERVICE` or `SERVICE`), `-f` to follow.
    Logs(ops::LogsArgs),
    /// Set replicas out of band, like `docker service scale web=5`: reported as drift
    /// and reverted by self-heal, unless an autoscaler owns the count.
    Scale(ops::ScaleArgs),
    /// Replace every instance of a service with the same spec, rolling as an update
    /// does (like `docker service update --force`).
    Redeploy(ops::RedeployArgs),
    /// Roll an environment back to an earlier revision: Drover commits the
    /// environment's directory as it was (and pushes it), then applies it.
    Rollback(ops::RollbackArgs),
    /// An environment's releases, newest first: revision, trigger, result, reason.
    History(ops::HistoryArgs),
    /// Commit new artifact versions to an environment's files, as CI does after a
    /// build: `drover deploy staging --set web=v1.5.0`.
    Deploy(promote::DeployArgs),
    /// Wait until an environment is healthy (optionally running given versions); exit
    /// 1 if it is held after a failed release or at the timeout.
    Wait(promote::WaitArgs),
    /// Promote what one environment verified to the next (`drover promote staging
    /// production`): a commit writing the source's artifact versions into the
    /// target's files, once the source has been healthy for its soak time.
    Promote(promote::PromoteArgs),
    /// Recent promotions, newest first: state, commit, who asked, what changed.
    Promotions(promote::PromotionsArgs),
    /// Who did what through the API, newest first: promotions, rollbacks, scaling, …
    Audit(promote::AuditArgs),
    /// Manage API tokens: `drover token create jenkins --scope promote:production`.
    #[command(subcommand)]
    Token(promote::TokenCommand),
    /// Encrypted secrets: `drover secret encrypt FILE --age age1…`, `edit`, `rotate`,
    /// `keygen` (the SOPS file format, with age).
    #[command(subcommand)]
    Secret(secret::SecretCommand),
    /// Manage nodes: `drover node update --availability drain NODE`.
    #[command(subcommand)]
    Node(ops::NodeCommand),
    /// Run the demo HTTP service the examples use: `/` (JSON with the version),
    /// `/healthz`, `/ready`, `/version`, with switches to fail or crash.
    ExampleApp(drover_example_app::Args),
    /// Print a shell completion script: `drover completion bash > /etc/bash_completion.d/drover`
    /// (also `zsh`, `fish`, `elvish`, `powershell`).
    Completion { shell: clap_complete::Shell },
    /// Print the CustomResourceDefinitions generated from the model, or write them
    /// (with the editor JSON Schema) into a folder.
    Crds {
        /// Write the files into this folder instead of printing the CRDs.
        #[arg(long)]
        write: Option<PathBuf>,
    },
    /// Regenerate every file derived from the model in a Drover checkout: `crds/`,
    /// `docs/reference.md` and `docs/errors.md`. Used by Drover's developers.
    #[command(hide = true)]
    Generate {
        /// The checkout's root.
        #[arg(default_value = ".")]
        root: PathBuf,
    },
}

/// `-o`: one output flag for every command, as kubectl and argocd have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    /// Tables and sentences for people (the default).
    #[value(alias = "table")]
    Human,
    /// Tables with more columns.
    Wide,
    /// The API's JSON, for scripts.
    Json,
    /// The same data as YAML.
    Yaml,
}

impl Output {
    /// `value` in a machine form (JSON or YAML), or `None` for the forms for people.
    fn data<T: serde::Serialize>(self, value: &T) -> anyhow::Result<Option<String>> {
        Ok(match self {
            Output::Json => Some(serde_json::to_string_pretty(value)? + "\n"),
            Output::Yaml => {
                // Through JSON, so that both forms hold the same fields.
                let json = serde_json::to_value(value)?;
                Some(serde_saphyr::to_string(&json)?)
            }
            Output::Human | Output::Wide => None,
        })
    }

    /// For people (a table or a sentence), rather than a machine form.
    fn for_people(self) -> bool {
        matches!(self, Output::Human | Output::Wide)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Markdown,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Color {
    Auto,
    Always,
    Never,
}

impl Color {
    /// Whether to colour standard output.
    fn enabled(self) -> bool {
        use std::io::IsTerminal;
        match self {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => {
                std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
            }
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(
        cli.command,
        Command::Up(_) | Command::Operator(_) | Command::Agent(_) | Command::Proxy(_)
    ) {
        with_lean_allocator();
    }
    // `up` logs what it does on standard output; every other command keeps standard
    // output for its answer.
    logging::init(
        cli.log_format,
        !matches!(cli.command, Command::Up(_) | Command::Operator(_)),
    );
    // What a config repo may hold, read once: every command reads within the same
    // bounds (docs/limits.md).
    match drover_load::Limits::from_env() {
        Ok(limits) => limits.install(),
        Err(error) => {
            eprintln!("error: {error} (docs/limits.md)");
            return ExitCode::from(2);
        }
    }
    let result = match cli.command {
        Command::Validate { dir, output, color } => validate::run(&dir, output, color),
        Command::Plan(args) => plan::run(args),
        Command::Secret(command) => secret::run(command),
        Command::Diff {
            repo,
            from,
            to,
            env,
            format,
            color,
        } => diff::diff(&repo, &from, &to, env.as_deref(), format, color),
        Command::Preview {
            repo,
            base,
            head,
            format,
        } => diff::preview(&repo, &base, &head, format),
        Command::Watch(args) => watch::run(args),
        Command::Up(args) => up::run(args, cli.log_format),
        Command::Operator(args) => operator::run(args),
        Command::Install(args) => install::run(args),
        Command::Agent(args) => agent::run(args),
        Command::Proxy(args) => proxy::run(args),
        Command::Status(args) => ops::status(args),
        Command::Logs(args) => ops::logs(args),
        Command::Scale(args) => ops::scale(args),
        Command::Node(command) => ops::node(command),
        Command::History(args) => ops::history(args),
        Command::Redeploy(args) => ops::redeploy(args),
        Command::Rollback(args) => ops::rollback(args),
        Command::Deploy(args) => promote::deploy(args),
        Command::Wait(args) => promote::wait(args),
        Command::Promote(args) => promote::promote(args),
        Command::Audit(args) => promote::audit(args),
        Command::Promotions(args) => promote::promotions(args),
        Command::Token(command) => promote::token(command),
        Command::ExampleApp(args) => drover_example_app::run(args)
            .map(ExitCode::from)
            .map_err(Into::into),
        Command::Completion { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "drover", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Crds { write } => crds::run(write.as_deref()),
        Command::Generate { root } => crds::generate(&root),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
