//! The commands of continuous delivery: `drover deploy` (CI sets new versions in an
//! environment's files), `drover wait` (until an environment runs them, healthy),
//! `drover promote` (carry what one environment verified to the next), and the
//! administration around them: `drover token` and `drover audit`.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use drover_control::client::{Client, ClientError};
use drover_control::promoter::{DeployRequest, Deployed, PromotionRequest};
use drover_control::view::{
    AuditView, Done, Lifecycle, PromotionView, ReleaseView, Status, TokenRequest, TokenView,
};
use drover_release::{PromotionState, ReleaseResult, SyncStatus, Trigger};

use crate::Output;
use crate::ops::{Target, block_on, table};

/// Arguments of `drover promote`.
#[derive(Debug, clap::Args)]
pub struct PromoteArgs {
    #[command(flatten)]
    target: Target,
    /// The environment whose verified versions travel.
    from: String,
    /// The environment they go to (its `promotion.from` must name FROM).
    to: String,
    /// Only these services (comma-separated; default: all both environments have).
    #[arg(long, value_delimiter = ',')]
    services: Vec<String>,
    /// Wait until TO is healthy at the promotion (exit 0) or it failed or was rolled
    /// back (exit 1).
    #[arg(long)]
    wait: bool,
    /// How long `--wait` waits.
    #[arg(long, default_value = "15m", value_parser = crate::watch::parse_duration)]
    timeout: Duration,
    /// While the gate is not met (FROM not healthy or not soaked yet), ask again for up
    /// to this long instead of failing at once.
    #[arg(long, value_parser = crate::watch::parse_duration)]
    gate_timeout: Option<Duration>,
    /// The request's `Idempotency-Key` (default: a new random one). A retry with the
    /// same key is the same promotion: pass your CI's build id.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// `human` (default) or `json` (the promotion as the API shows it).
    #[arg(long, short, value_enum, default_value_t = Output::Human)]
    output: Output,
}

/// A fresh Idempotency-Key for a request asked without one.
fn random_key() -> String {
    // Without randomness, a key from the clock still names this one request.
    let random = drover_control::random_hex(16).unwrap_or_else(|_| format!("{:x}", clock_nanos()));
    format!("cli-{random}")
}

fn clock_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn say(output: Output, text: &str) {
    if output.for_people() {
        println!("{text}");
    } else {
        eprintln!("{text}");
    }
}

pub fn promote(args: PromoteArgs) -> anyhow::Result<ExitCode> {
    let client = args.target.client()?;
    let key = args.idempotency_key.clone().unwrap_or_else(random_key);
    let request = PromotionRequest {
        from: args.from.clone(),
        to: args.to.clone(),
        services: args.services.clone(),
    };
    let gate_deadline = Instant::now() + args.gate_timeout.unwrap_or_default();
    let mut said = String::new();
    let promotion: PromotionView = loop {
        let answer: Result<PromotionView, ClientError> = block_on(client.post_with(
            "/api/v1/promotions",
            &request,
            &[("idempotency-key", &key)],
        ))?;
        match answer {
            Ok(p) => break p,
            Err(ClientError::Refused {
                status: 409,
                message,
            }) if Instant::now() < gate_deadline => {
                if message != said {
                    say(args.output, &format!("waiting: {message}"));
                    said = message;
                }
                std::thread::sleep(Duration::from_secs(2));
            }
            Err(ClientError::Refused { status, message }) if status == 409 || status == 422 => {
                eprintln!("promotion refused: {message}");
                return Ok(ExitCode::from(1));
            }
            Err(other) => return Err(other.into()),
        }
    };
    say(args.output, &describe(&promotion));
    let promotion = if args.wait {
        follow(&client, promotion, args.timeout, args.output)?
    } else {
        promotion
    };
    if let Some(text) = args.output.data(&promotion)? {
        print!("{text}");
    }
    Ok(match promotion.state {
        PromotionState::Succeeded | PromotionState::Committed | PromotionState::Deploying => {
            ExitCode::SUCCESS
        }
        _ => ExitCode::from(1),
    })
}

fn describe(p: &PromotionView) -> String {
    let changes: Vec<String> = p.changes.iter().map(|c| c.line()).collect();
    let commit = p
        .commit
        .as_deref()
        .map(|c| format!(" (commit {})", drover_model::short_id(c)))
        .unwrap_or_default();
    let why = if p.reason.is_empty() {
        changes.join(", ")
    } else {
        p.reason.clone()
    };
    format!(
        "promotion #{} {} → {}: {}{commit}{}",
        p.id,
        p.from,
        p.to,
        p.state,
        if why.is_empty() {
            String::new()
        } else {
            format!(" — {why}")
        }
    )
}

/// Polls a promotion until it ends (or, in pull-request mode, its branch is written).
fn follow(
    client: &Client,
    mut p: PromotionView,
    timeout: Duration,
    output: Output,
) -> anyhow::Result<PromotionView> {
    let deadline = Instant::now() + timeout;
    loop {
        let done = p.state.is_final() || p.state == PromotionState::Gated || p.branch.is_some();
        if done {
            return Ok(p);
        }
        if Instant::now() > deadline {
            bail!(
                "promotion #{} is still {} after {}s",
                p.id,
                p.state,
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
        let next: PromotionView = block_on(client.get(&format!("/api/v1/promotions/{}", p.id)))??;
        if next.state != p.state {
            say(output, &describe(&next));
        }
        p = next;
    }
}

/// Arguments of `drover promotions`.
#[derive(Debug, clap::Args)]
pub struct PromotionsArgs {
    #[command(flatten)]
    target: Target,
    /// How many, newest first.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// `human` (default) or `json`.
    #[arg(long, short, value_enum, default_value_t = Output::Human)]
    output: Output,
}

pub fn promotions(args: PromotionsArgs) -> anyhow::Result<ExitCode> {
    let client = args.target.client()?;
    let list: Vec<PromotionView> =
        block_on(client.get(&format!("/api/v1/promotions?limit={}", args.limit)))??;
    let text = match args.output.data(&list)? {
        Some(text) => text,
        None => table(
            &["ID", "FROM", "TO", "STATE", "COMMIT", "BY", "WHEN", "WHAT"],
            list.iter()
                .map(|p| {
                    let changes: Vec<String> = p.changes.iter().map(|c| c.line()).collect();
                    vec![
                        p.id.to_string(),
                        p.from.clone(),
                        p.to.clone(),
                        p.state.to_string(),
                        p.commit
                            .as_deref()
                            .map_or("-".into(), |c| drover_model::short_id(c).to_owned()),
                        p.requested_by.clone(),
                        utc(p.created_ms),
                        if p.reason.is_empty() {
                            changes.join(", ")
                        } else {
                            p.reason.clone()
                        },
                    ]
                })
                .collect(),
        ),
    };
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `drover deploy`.
#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    #[command(flatten)]
    target: Target,
    /// The environment.
    env: String,
    /// `SERVICE=VERSION`: the version to run (an image tagged with the old version is
    /// re-tagged). Repeatable.
    #[arg(
        long = "set",
        value_name = "SERVICE=VERSION",
        required_unless_present = "image"
    )]
    set: Vec<String>,
    /// `SERVICE=IMAGE`: the image to run. Repeatable.
    #[arg(long, value_name = "SERVICE=IMAGE")]
    image: Vec<String>,
    /// The request's `Idempotency-Key` (default: a new random one). A retry with the
    /// same key answers what the first did and never commits twice: pass your CI's
    /// build id.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// `human` (default) or `json`.
    #[arg(long, short, value_enum, default_value_t = Output::Human)]
    output: Output,
}

fn pairs(list: &[String], what: &str) -> anyhow::Result<BTreeMap<String, String>> {
    list.iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .with_context(|| format!("`{p}`: expected SERVICE={what}"))
        })
        .collect()
}

pub fn deploy(args: DeployArgs) -> anyhow::Result<ExitCode> {
    let client = args.target.client()?;
    let request = DeployRequest {
        versions: pairs(&args.set, "VERSION")?,
        images: pairs(&args.image, "IMAGE")?,
    };
    let key = args.idempotency_key.clone().unwrap_or_else(random_key);
    let deployed: Deployed = block_on(client.post_with(
        &format!("/api/v1/environments/{}/deploy", args.env),
        &request,
        &[("idempotency-key", &key)],
    ))??;
    match args.output.data(&deployed)? {
        Some(text) => print!("{text}"),
        None => println!("{}", deployed.message),
    }
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `drover wait`.
#[derive(Debug, clap::Args)]
pub struct WaitArgs {
    #[command(flatten)]
    target: Target,
    /// The environment.
    env: String,
    /// `SERVICE=VERSION` that must be running. Repeatable.
    #[arg(long = "running", value_name = "SERVICE=VERSION")]
    versions: Vec<String>,
    /// Give up (exit 1) after this long.
    #[arg(long, default_value = "10m", value_parser = crate::watch::parse_duration)]
    timeout: Duration,
}

/// Waits until an environment is synced, no release is open, every service runs all
/// instances ready, and the named services run the named versions. Exits 1 when the
/// environment is held after a failed release, or at the timeout.
pub fn wait(args: WaitArgs) -> anyhow::Result<ExitCode> {
    let client = args.target.client()?;
    let wanted = pairs(&args.versions, "VERSION")?;
    let deadline = Instant::now() + args.timeout;
    let mut last = String::new();
    loop {
        let status: Status = block_on(client.get("/api/v1/status"))??;
        let history: Vec<ReleaseView> =
            block_on(client.get(&format!("/api/v1/environments/{}/history", args.env)))??;
        let env = status.environments.iter().find(|e| e.name == args.env);
        let newest = history.iter().find(|r| r.trigger != Trigger::Rollback);
        let waiting_for = match env {
            None => Some(format!("{} is not applied yet", args.env)),
            Some(e) if e.sync == SyncStatus::Held => {
                eprintln!("{} is held: {}", args.env, e.message);
                return Ok(ExitCode::from(1));
            }
            Some(_) if newest.is_some_and(|r| r.result == ReleaseResult::Failed) => {
                let r = newest.expect("checked");
                eprintln!(
                    "release {} failed: {}",
                    drover_model::short_id(&r.revision),
                    r.reason
                );
                return Ok(ExitCode::from(1));
            }
            Some(e) if e.sync != SyncStatus::Synced => Some(format!("{} is {}", args.env, e.sync)),
            Some(_) if history.first().is_some_and(|r| r.result.is_open()) => {
                Some("a release is rolling out".to_owned())
            }
            Some(_) => status
                .services
                .iter()
                .filter(|s| s.environment == args.env)
                .find_map(|s| match wanted.get(&s.name) {
                    Some(v) if s.version.as_deref() != Some(v) => Some(format!(
                        "{} runs {}, not {v}",
                        s.name,
                        s.version.as_deref().unwrap_or("-")
                    )),
                    _ if s.state != Lifecycle::Running => Some(format!(
                        "{} is {:?} ({}/{} ready)",
                        s.name, s.state, s.ready, s.desired
                    )),
                    _ => None,
                })
                .or_else(|| {
                    wanted
                        .keys()
                        .find(|n| {
                            !status
                                .services
                                .iter()
                                .any(|s| s.environment == args.env && &s.name == *n)
                        })
                        .map(|n| format!("{} has no service {n} yet", args.env))
                }),
        };
        let Some(why) = waiting_for else {
            println!("{} is healthy", args.env);
            return Ok(ExitCode::SUCCESS);
        };
        if why != last {
            println!("waiting: {why}");
            last = why;
        }
        if Instant::now() > deadline {
            eprintln!("gave up after {}s: {last}", args.timeout.as_secs());
            return Ok(ExitCode::from(1));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Arguments of `drover audit`.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    #[command(flatten)]
    target: Target,
    /// How many entries, newest first.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// `human` (default) or `json`.
    #[arg(long, short, value_enum, default_value_t = Output::Human)]
    output: Output,
}

/// `2026-11-22T08:51:22Z` from Unix milliseconds.
pub fn utc(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(
        |_| "-".to_owned(),
        |t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

pub fn audit(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let client = args.target.client()?;
    let entries: Vec<AuditView> =
        block_on(client.get(&format!("/api/v1/audit?limit={}", args.limit)))??;
    let text = match args.output.data(&entries)? {
        Some(text) => text,
        None => table(
            &[
                "TIME", "WHO", "FROM", "ACTION", "TARGET", "OUTCOME", "DETAIL",
            ],
            entries
                .iter()
                .map(|e| {
                    vec![
                        utc(e.at_ms),
                        e.who.clone(),
                        e.origin.clone(),
                        e.action.clone(),
                        e.target.clone(),
                        e.outcome.clone(),
                        e.detail.clone(),
                    ]
                })
                .collect(),
        ),
    };
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// `drover token …`: named API tokens with scopes (needs the admin token).
#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Make a token and print it (once: only its hash is kept).
    Create {
        #[command(flatten)]
        target: Target,
        /// Its name, recorded in the audit trail as who acted.
        name: String,
        /// What it may do: `read`, `promote:ENV`, `rollback:ENV`, `scale:ENV`,
        /// `redeploy:ENV`, `deploy:ENV`, `nodes`, `admin` (`ENV` may be `*`). Repeatable.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
    },
    /// List tokens (names and scopes).
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Revoke a token.
    Revoke {
        #[command(flatten)]
        target: Target,
        name: String,
    },
}

pub fn token(command: TokenCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokenCommand::Create {
            target,
            name,
            scopes,
        } => {
            let client = target.client()?;
            let made: TokenView =
                block_on(client.post("/api/v1/tokens", &TokenRequest { name, scopes }))??;
            println!("{}", made.token.unwrap_or_default());
        }
        TokenCommand::List { target } => {
            let client = target.client()?;
            let list: Vec<TokenView> = block_on(client.get("/api/v1/tokens"))??;
            let rows = list
                .iter()
                .map(|t| vec![t.name.clone(), t.scopes.join(","), utc(t.created_ms)])
                .collect();
            print!("{}", table(&["NAME", "SCOPES", "CREATED"], rows));
        }
        TokenCommand::Revoke { target, name } => {
            let client = target.client()?;
            let done: Done = block_on(client.delete(&format!("/api/v1/tokens/{name}")))??;
            println!("{}", done.message);
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_renders_unix_milliseconds_as_iso_8601() {
        assert_eq!(super::utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::utc(1_795_337_482_000), "2026-11-22T08:51:22Z");
    }
}
