//! The commands that talk to a running control plane: `drover status`, `drover logs`,
//! `drover scale` and `drover node update`.

use std::io::{Read, Seek, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use drover_control::client::Client;
use drover_control::files::StateDir;
use drover_control::view::{
    AvailabilityRequest, Done, ReleaseView, ScaleRequest, ServiceView, Status,
};
use drover_local::files::LocalPaths;
use drover_model::Cpu;

use crate::Output;

/// How to reach the control plane.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// The state directory of `drover up` (default `$DROVER_STATE_DIR`, else
    /// `~/.local/state/drover`).
    #[arg(long, global = true)]
    state_dir: Option<PathBuf>,
    /// The API's URL (default `$DROVER_API`, else the one in the state directory).
    /// The token is `$DROVER_API_TOKEN`, else the state directory's.
    #[arg(long, global = true, env = "DROVER_API")]
    api: Option<String>,
}

impl Target {
    fn state(&self) -> StateDir {
        StateDir::new(
            self.state_dir
                .clone()
                .unwrap_or_else(StateDir::default_root),
        )
    }

    pub(crate) fn client(&self) -> anyhow::Result<Client> {
        let state = self.state();
        let url = self.api.clone().or_else(|| state.api_url()).with_context(|| {
            format!(
                "no control plane is running on {} (start one with `drover up DIR`, or pass --api)",
                state.root().display()
            )
        })?;
        Ok(Client::new(&url, state.token()))
    }
}

pub(crate) fn block_on<T>(future: impl std::future::Future<Output = T>) -> anyhow::Result<T> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(future))
}

/// Arguments of `drover status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    target: Target,
    /// `human` (default) or `json`.
    #[arg(long, short, value_enum, default_value_t = Output::Human)]
    output: Output,
}

/// Left-aligned columns, two spaces apart.
pub(crate) fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Resident memory as people read it: `23Mi`.
fn mebibytes(bytes: u64) -> String {
    format!("{}Mi", bytes.div_ceil(1024 * 1024))
}

/// The status as tables; `wide` adds health, whether each instance runs the current
/// spec, and its last failure.
fn render(status: &Status, wide: bool) -> String {
    let mut out = String::new();
    let envs = status
        .environments
        .iter()
        .map(|e| {
            vec![
                e.name.clone(),
                e.cluster.clone(),
                e.revision.clone().unwrap_or_else(|| "-".into()),
                e.sync.to_string(),
                e.message.clone(),
            ]
        })
        .collect();
    out += &table(
        &["ENVIRONMENT", "CLUSTER", "REVISION", "SYNC", "MESSAGE"],
        envs,
    );
    out.push('\n');
    if !status.promotions.is_empty() {
        let gates = status
            .promotions
            .iter()
            .map(|g| {
                vec![
                    format!("{} → {}", g.from, g.to),
                    if g.open { "open" } else { "closed" }.to_owned(),
                    g.message.clone(),
                ]
            })
            .collect();
        out += &table(&["PROMOTION", "GATE", "WHY"], gates);
        out.push('\n');
    }
    let services = status
        .services
        .iter()
        .map(|s| {
            let mut row = vec![
                s.environment.clone(),
                s.name.clone(),
                s.version.clone().unwrap_or_else(|| "-".into()),
                format!("{:?}", s.state),
                format!("{}/{}", s.ready, s.desired),
            ];
            if wide {
                row.push(format!("{:?}", s.health));
            }
            row.push(s.message.clone());
            row
        })
        .collect();
    let mut headers = vec!["ENVIRONMENT", "SERVICE", "VERSION", "STATE", "READY"];
    if wide {
        headers.push("HEALTH");
    }
    headers.push("MESSAGE");
    out += &table(&headers, services);
    out.push('\n');
    let instances = status
        .instances
        .iter()
        .map(|i| {
            let mut row = vec![
                i.id.clone(),
                i.node.clone(),
                i.state.clone(),
                if i.ready { "yes" } else { "no" }.into(),
                i.port.map_or("-".into(), |p| p.to_string()),
                i.pid.map_or("-".into(), |p| p.to_string()),
                i.restarts.to_string(),
                Cpu(i.cpu_millis).to_string(),
                mebibytes(i.memory_bytes),
            ];
            if wide {
                row.push(if i.current { "yes" } else { "no" }.into());
                row.push(i.last_failure.clone().unwrap_or_else(|| "-".into()));
            }
            row
        })
        .collect();
    let mut headers = vec![
        "INSTANCE", "NODE", "STATE", "READY", "PORT", "PID", "RESTARTS", "CPU", "MEMORY",
    ];
    if wide {
        headers.extend(["CURRENT", "LAST FAILURE"]);
    }
    out += &table(&headers, instances);
    out.push('\n');
    let nodes = status
        .nodes
        .iter()
        .map(|n| {
            let availability = match &n.availability_override {
                Some(_) => format!("{} (override)", n.availability),
                None => n.availability.clone(),
            };
            vec![
                n.name.clone(),
                n.cluster.clone(),
                n.role.clone(),
                n.status.clone(),
                availability,
                n.instances.to_string(),
                // A Kubernetes Node declares no capacity to Drover: nothing to show.
                if n.cpu.is_empty() {
                    "-".to_owned()
                } else {
                    format!("{}/{}", Cpu(n.cpu_used_millis), n.cpu)
                },
                if n.memory.is_empty() {
                    "-".to_owned()
                } else {
                    format!("{}/{}", mebibytes(n.memory_used_bytes), n.memory)
                },
            ]
        })
        .collect();
    out += &table(
        &[
            "NODE",
            "CLUSTER",
            "ROLE",
            "STATUS",
            "AVAILABILITY",
            "INSTANCES",
            "CPU",
            "MEMORY",
        ],
        nodes,
    );
    out.push('\n');
    let proxies = status
        .proxies
        .iter()
        .map(|p| vec![p.cluster.clone(), p.listener.clone(), p.address.clone()])
        .collect();
    out += &table(&["CLUSTER", "LISTENER", "ADDRESS"], proxies);
    if !status.pools.is_empty() {
        out.push('\n');
        let pools = status
            .pools
            .iter()
            .map(|p| {
                vec![
                    p.cluster.clone(),
                    p.name.clone(),
                    p.cidr.clone(),
                    p.role.clone(),
                    p.status.clone(),
                    format!("{}/{}", p.used, p.capacity),
                ]
            })
            .collect();
        out += &table(
            &["CLUSTER", "POOL", "CIDR", "ROLE", "STATUS", "USED"],
            pools,
        );
    }
    out
}

pub fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let client = args.target.client()?;
    let status: Status = block_on(client.get("/api/v1/status"))??;
    let text = match args.output.data(&status)? {
        Some(text) => text,
        None => render(&status, args.output == Output::Wide),
    };
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `drover logs`.
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    #[command(flatten)]
    target: Target,
    /// `SERVICE` (in every environment) or `ENV/SERVICE`.
    service: String,
    /// Keep printing new lines as they are written.
    #[arg(long, short)]
    follow: bool,
    /// Start with the last N lines of each instance (default: all).
    #[arg(long)]
    tail: Option<usize>,
}

/// The log files of a service's instances (`ENV.SERVICE.SLOT@HASH.log`, one per
/// process), oldest first, each named by its instance id.
fn log_files(state: &StateDir, service: &str) -> Vec<(String, PathBuf)> {
    let (env, name) = match service.split_once('/') {
        Some((e, s)) => (Some(e), s),
        None => (None, service),
    };
    let Ok(entries) = std::fs::read_dir(state.logs()) else {
        return Vec::new();
    };
    let mut files: Vec<(std::time::SystemTime, String, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let file = e.file_name().into_string().ok()?;
            let stem = file.strip_suffix(".log")?;
            let id = stem.split_once('@').map_or(stem, |(id, _)| id).to_owned();
            let mut parts = id.splitn(3, '.');
            let (e_name, s_name) = (parts.next()?, parts.next()?);
            parts.next()?;
            let at = e.metadata().and_then(|m| m.modified()).ok()?;
            (s_name == name && env.is_none_or(|e| e == e_name)).then(|| (at, id, e.path()))
        })
        .collect();
    // A replaced process's lines before its replacement's.
    files.sort();
    files.into_iter().map(|(_, id, path)| (id, path)).collect()
}

pub fn logs(args: LogsArgs) -> anyhow::Result<ExitCode> {
    let state = args.target.state();
    let files = log_files(&state, &args.service);
    if files.is_empty() && !args.follow {
        bail!(
            "no logs for `{}` in {} (is it a service of a running `drover up`?)",
            args.service,
            state.logs().display()
        );
    }
    let mut offsets: std::collections::BTreeMap<PathBuf, u64> = Default::default();
    let mut out = std::io::stdout().lock();
    for (id, path) in &files {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let skip = args.tail.map_or(0, |n| lines.len().saturating_sub(n));
        for line in &lines[skip..] {
            writeln!(out, "{id} | {line}")?;
        }
        offsets.insert(path.clone(), text.len() as u64);
    }
    out.flush()?;
    if !args.follow {
        return Ok(ExitCode::SUCCESS);
    }
    loop {
        std::thread::sleep(Duration::from_millis(200));
        for (id, path) in log_files(&state, &args.service) {
            let Ok(mut file) = std::fs::File::open(&path) else {
                continue;
            };
            let len = file.metadata().map_or(0, |m| m.len());
            let offset = offsets.entry(path.clone()).or_insert(0);
            // A shorter file was rotated: read the new one from its start.
            if len < *offset {
                *offset = 0;
            }
            if len == *offset {
                continue;
            }
            file.seek(std::io::SeekFrom::Start(*offset))?;
            let mut text = String::new();
            file.read_to_string(&mut text)?;
            // Only whole lines; the rest is read next time.
            let whole = text.rfind('\n').map_or(0, |i| i + 1);
            for line in text[..whole].lines() {
                writeln!(out, "{id} | {line}")?;
            }
            *offset += whole as u64;
            out.flush()?;
        }
    }
}

/// `ENV/SERVICE`, or a `SERVICE` that runs in one environment only.
fn which(
    services: &[ServiceView],
    service: &str,
    example: &str,
) -> anyhow::Result<(String, String)> {
    if let Some((e, s)) = service.split_once('/') {
        return Ok((e.to_owned(), s.to_owned()));
    }
    let envs: Vec<&str> = services
        .iter()
        .filter(|s| s.name == service)
        .map(|s| s.environment.as_str())
        .collect();
    match envs.as_slice() {
        [env] => Ok(((*env).to_owned(), service.to_owned())),
        [] => bail!("no service `{service}` runs"),
        many => bail!(
            "`{service}` runs in {}: say which, like {}/{service}{example}",
            many.join(" and "),
            many[0]
        ),
    }
}

/// Arguments of `drover redeploy`.
#[derive(Debug, clap::Args)]
pub struct RedeployArgs {
    #[command(flatten)]
    target: Target,
    /// `human` (default), `wide`, `json` or `yaml`.
    #[arg(long, short, value_enum, default_value_t = Output::Human)]
    output: Output,
    /// `SERVICE` or `ENV/SERVICE`.
    service: String,
}

pub fn redeploy(args: RedeployArgs) -> anyhow::Result<ExitCode> {
    let client = args.target.client()?;
    let done: Done = block_on(async {
        let services: Vec<ServiceView> = client.get("/api/v1/services").await?;
        let (env, name) = which(&services, &args.service, "")?;
        let done: Done = client
            .post(&format!("/api/v1/services/{env}/{name}/redeploy"), &())
            .await?;
        anyhow::Ok(done)
    })??;
    say_done(args.output, &done)
}

/// Arguments of `drover scale`.
#[derive(Debug, clap::Args)]
pub struct ScaleArgs {
    #[command(flatten)]
    target: Target,
    /// `human` (default), `wide`, `json` or `yaml`.
    #[arg(long, short, value_enum, default_value_t = Output::Human)]
    output: Output,
    /// `SERVICE=N` or `ENV/SERVICE=N`, one or more.
    #[arg(required = true)]
    changes: Vec<String>,
}

pub fn scale(args: ScaleArgs) -> anyhow::Result<ExitCode> {
    let client = args.target.client()?;
    block_on(async {
        let services: Vec<ServiceView> = client.get("/api/v1/services").await?;
        for change in &args.changes {
            let Some((service, replicas)) = change.split_once('=') else {
                bail!("`{change}`: expected SERVICE=N, like web=3");
            };
            let replicas: u32 = replicas
                .parse()
                .with_context(|| format!("`{change}`: {replicas} is not a number of replicas"))?;
            let (env, name) = which(&services, service, &format!("={replicas}"))?;
            let done: Done = client
                .post(
                    &format!("/api/v1/services/{env}/{name}/scale"),
                    &ScaleRequest { replicas },
                )
                .await?;
            say_done(args.output, &done)?;
        }
        anyhow::Ok(())
    })??;
    Ok(ExitCode::SUCCESS)
}

/// `drover node …`.
#[derive(Debug, clap::Subcommand)]
pub enum NodeCommand {
    /// Change a node's availability: `active`, `pause` (nothing new arrives, nothing
    /// moves), `drain` (its instances move elsewhere), or `git` (follow the config
    /// again).
    Update {
        #[command(flatten)]
        target: Target,
        /// `human` (default), `wide`, `json` or `yaml`.
        #[arg(long, short, value_enum, default_value_t = Output::Human)]
        output: Output,
        #[arg(long, value_parser = ["active", "pause", "drain", "git"])]
        availability: String,
        node: String,
    },
}

pub fn node(command: NodeCommand) -> anyhow::Result<ExitCode> {
    let NodeCommand::Update {
        target,
        output,
        availability,
        node,
    } = command;
    let client = target.client()?;
    let request = AvailabilityRequest {
        availability: (availability != "git").then_some(availability),
    };
    let done: Done =
        block_on(client.post(&format!("/api/v1/nodes/{node}/availability"), &request))??;
    say_done(output, &done)
}

/// Arguments of `drover history`.
#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    target: Target,
    /// The environment.
    env: String,
    /// `human` (default) or `json`.
    #[arg(long, short, value_enum, default_value_t = Output::Human)]
    output: Output,
}

pub fn history(args: HistoryArgs) -> anyhow::Result<ExitCode> {
    let client = args.target.client()?;
    let releases: Vec<ReleaseView> =
        block_on(client.get(&format!("/api/v1/environments/{}/history", args.env)))??;
    let text = match args.output.data(&releases)? {
        Some(text) => text,
        None => {
            let short = |r: &str| drover_model::short_id(r).to_owned();
            let rows = releases
                .iter()
                .map(|r| {
                    vec![
                        short(&r.revision),
                        r.trigger.to_string(),
                        r.result.to_string(),
                        r.services.join(","),
                        r.revert.as_deref().map_or("-".into(), short),
                        if r.reason.is_empty() {
                            r.summary.clone()
                        } else {
                            r.reason.clone()
                        },
                    ]
                })
                .collect();
            table(
                &[
                    "REVISION", "TRIGGER", "RESULT", "SERVICES", "REVERT", "REASON",
                ],
                rows,
            )
        }
    };
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `drover rollback`.
#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    target: Target,
    /// `human` (default), `wide`, `json` or `yaml`.
    #[arg(long, short, value_enum, default_value_t = Output::Human)]
    output: Output,
    /// The environment.
    env: String,
    /// The revision to go back to (default: the last healthy release before the one in
    /// force).
    #[arg(long)]
    to: Option<String>,
}

pub fn rollback(args: RollbackArgs) -> anyhow::Result<ExitCode> {
    let client = args.target.client()?;
    let request = drover_control::view::RollbackRequest { to: args.to };
    let done: Done = block_on(client.post(
        &format!("/api/v1/environments/{}/rollback", args.env),
        &request,
    ))??;
    say_done(args.output, &done)
}

/// A write's answer: its sentence, or the answer as data.
fn say_done(output: Output, done: &Done) -> anyhow::Result<ExitCode> {
    match output.data(done)? {
        Some(text) => print!("{text}"),
        None => println!("{}", done.message),
    }
    Ok(ExitCode::SUCCESS)
}
