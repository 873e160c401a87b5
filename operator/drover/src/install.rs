//! `drover install`: the objects that install `drover operator` into a cluster —
//! applied to the cluster of `$KUBECONFIG` by server-side apply, or with `--print` as
//! one YAML stream for `kubectl apply` (charts/drover renders the same).

use std::process::ExitCode;

use drover_kube_operator::install::{Settings, objects, yaml};

/// Arguments of `drover install`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the objects (as YAML) instead of applying them to the cluster of
    /// `$KUBECONFIG` (its current context).
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
    /// A Secret (in the operator's namespace) whose `age.agekey` is the age identity
    /// encrypted secrets are opened with (`kubectl create secret generic sops-age
    /// --from-file=age.agekey=KEYFILE`), mounted read-only as `SOPS_AGE_KEY_FILE`.
    #[arg(long)]
    age_key_secret: Option<String>,
    /// Serve `GET /metrics` without a token and annotate the pods for Prometheus
    /// (`prometheus.io/scrape`); otherwise a scrape needs a `read` token.
    #[arg(long)]
    metrics_public: bool,
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
    let print = args.print;
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
        age_key_secret: args.age_key_secret,
        metrics_public: args.metrics_public,
        ..defaults
    };
    let objects = objects(&settings);
    if print {
        print!("{}", yaml(&objects));
        return Ok(ExitCode::SUCCESS);
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(apply(&objects))?;
    Ok(ExitCode::SUCCESS)
}

/// Applies `objects` in order, server-side, as field manager `drover-install`.
async fn apply(objects: &[serde_json::Value]) -> anyhow::Result<()> {
    use anyhow::Context;
    use kube::api::{Api, DynamicObject, Patch, PatchParams};
    use kube::core::GroupVersionKind;
    use kube::discovery::Scope;
    let client = kube::Client::try_default()
        .await
        .context("cannot connect to Kubernetes ($KUBECONFIG or the in-cluster config)")?;
    let params = PatchParams::apply("drover-install").force();
    for object in objects {
        let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
        let (api_version, kind) = (text(&object["apiVersion"]), text(&object["kind"]));
        let name = text(&object["metadata"]["name"]);
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", &api_version));
        let gvk = GroupVersionKind::gvk(group, version, &kind);
        let (resource, caps) = kube::discovery::pinned_kind(&client, &gvk)
            .await
            .with_context(|| format!("the cluster does not serve {api_version} {kind}"))?;
        let api: Api<DynamicObject> = match (&caps.scope, object["metadata"]["namespace"].as_str())
        {
            (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, &resource),
            _ => Api::all_with(client.clone(), &resource),
        };
        api.patch(&name, &params, &Patch::Apply(object))
            .await
            .with_context(|| format!("cannot apply {kind} {name}"))?;
        println!("{kind}/{name} applied");
    }
    Ok(())
}
