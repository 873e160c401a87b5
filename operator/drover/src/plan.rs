//! `drover plan --env E`: what `drover up` would do to one environment if the repo's
//! working tree were committed — the changes to Drover's objects against what was last
//! applied, and on Kubernetes each object's change as the API server itself reports it
//! (server-side dry run), with what pruning would delete. Nothing is changed.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use drover_control::files::StateDir;
use drover_diff::State;
use drover_kube::plan::{Change, Planned};
use drover_model::Kind;
use drover_model::cluster::Engine;
use serde_json::json;

use crate::Output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The config repo's folder: its files as they are, committed or not.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// The environment to plan.
    #[arg(long)]
    env: String,
    /// Do not ask the cluster: compare with what Drover last applied only.
    #[arg(long)]
    offline: bool,
    /// The state directory of `drover up` (default `$DROVER_STATE_DIR`, else
    /// `~/.local/state/drover`): what was last applied, and the inventory.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// `human` (default), `json` or `yaml`.
    #[arg(long, short, value_enum, default_value_t = Output::Human)]
    output: Output,
}

/// What was last applied to `env` by the engine of `engine`, from the state database
/// (empty when there is none).
fn applied(database: &std::path::Path, engine: Engine, env: &str) -> anyhow::Result<State> {
    if !database.exists() {
        return Ok(State::new());
    }
    let observed = match engine {
        Engine::Kubernetes => drover_store::Applied::open(database, "kubernetes")?.observed()?,
        Engine::Swarm => drover_store::Applied::open(database, "swarm")?.observed()?,
        _ => drover_store::LocalState::open(database)?.observed()?,
    };
    Ok(observed
        .objects
        .into_iter()
        .filter(|(k, _)| k.environment == env)
        .collect())
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let output = args.output;
    let files = drover_load::read_dir(&args.dir)
        .with_context(|| format!("cannot read {}", args.dir.display()))?;
    let keys = crate::secret::configured_keys()?;
    let (checked, _) = drover_source::check_revision(
        &files,
        &mut drover_load::DocumentCache::default(),
        keys.as_deref(),
    );
    if !checked.is_valid() {
        let text = drover_diagnostics::render_human(
            &checked.diagnostics,
            drover_diagnostics::RenderOptions { color: false },
        );
        anyhow::bail!(
            "{}the repo is invalid: nothing to plan until `drover validate` passes",
            text
        );
    }
    let desired = drover_diff::normalize(&checked.repo);
    let env = args.env.as_str();
    let Some(environment) = checked
        .repo
        .environment(env)
        .and_then(|d| d.environment.as_ref())
    else {
        let known: Vec<&str> = checked
            .repo
            .environments
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        anyhow::bail!(
            "no environment `{env}` in {} (known: {})",
            args.dir.display(),
            known.join(", ")
        );
    };
    let engine = checked
        .repo
        .cluster(&environment.spec().cluster)
        .map_or(Engine::Local, |c| c.spec().engine);
    let state = StateDir::new(
        args.state_dir
            .clone()
            .unwrap_or_else(StateDir::default_root),
    );
    let before = applied(&state.database(), engine, env)?;
    let wanted: State = desired
        .iter()
        .filter(|(k, _)| k.environment == env && k.kind != Kind::Cluster)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let lines: Vec<String> = drover_diff::diff(&before, &wanted, drover_diff::Options::default())
        .changes
        .iter()
        .flat_map(|c| c.summary.iter().cloned())
        .collect();
    let cluster = if engine == Engine::Kubernetes && !args.offline {
        let database = state.database();
        Some(crate::ops::block_on(drover_kube::plan::environment(
            &desired,
            env,
            Some(&database),
        ))??)
    } else {
        None
    };
    let changed = !lines.is_empty()
        || cluster
            .as_ref()
            .is_some_and(|(_, objects)| objects.iter().any(|p| p.change != Change::Unchanged));
    let data = json!({
        "environment": env,
        "changes": lines,
        "cluster": cluster.as_ref().map(|(placement, objects)| json!({
            "name": placement.cluster,
            "namespace": placement.namespace,
            "objects": objects,
        })),
    });
    let mut out = std::io::stdout().lock();
    match output.data(&data)? {
        Some(text) => out.write_all(text.as_bytes())?,
        None => out.write_all(
            human(
                env,
                &lines,
                before.is_empty(),
                &state,
                &cluster,
                args.offline,
            )
            .as_bytes(),
        )?,
    }
    Ok(if changed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn human(
    env: &str,
    lines: &[String],
    nothing_applied: bool,
    state: &StateDir,
    cluster: &Option<(drover_kube::render::Placement, Vec<Planned>)>,
    offline: bool,
) -> String {
    let mut text = String::new();
    let against = if nothing_applied {
        format!("nothing applied yet from {}", state.root().display())
    } else {
        format!(
            "against what was last applied from {}",
            state.root().display()
        )
    };
    text.push_str(&format!("{env}: Drover's objects ({against}):\n"));
    if lines.is_empty() {
        text.push_str("  no change\n");
    }
    for line in lines {
        text.push_str(&format!("  {line}\n"));
    }
    match cluster {
        None if offline => text.push_str("the cluster was not asked (--offline)\n"),
        None => {}
        Some((placement, objects)) => {
            text.push_str(&format!(
                "{env} on cluster {} (namespace {}), by server-side dry run:\n",
                placement.cluster, placement.namespace
            ));
            text.push_str(&objects_text(objects));
        }
    }
    text
}

fn objects_text(objects: &[Planned]) -> String {
    let mut text = String::new();
    let mut unchanged = 0;
    let show = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "unset".to_owned(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    for planned in objects {
        let object = &planned.object;
        match &planned.change {
            Change::Unchanged => unchanged += 1,
            Change::Create { checked: true } => text.push_str(&format!("  + {object}\n")),
            Change::Create { checked: false } => text.push_str(&format!(
                "  + {object} (not checked by the server: its namespace is new too)\n"
            )),
            Change::Update { fields } => {
                text.push_str(&format!("  ~ {object}\n"));
                for f in fields {
                    text.push_str(&format!(
                        "      {}: {} → {}\n",
                        f.path,
                        show(&f.live),
                        show(&f.planned)
                    ));
                }
            }
            Change::Delete => text.push_str(&format!(
                "  - {object} (pruned: Drover made it and no longer renders it)\n"
            )),
            Change::Refused { why } => text.push_str(&format!("  ! {object}: {why}\n")),
        }
    }
    text.push_str(&format!("  {unchanged} unchanged\n"));
    text
}
