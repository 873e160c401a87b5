//! Rules for plain Kubernetes objects in an environment's folder: they go where the
//! environment's namespace is, never carry secret values in plain text, and only a
//! Kubernetes cluster can run them.

use drover_diagnostics::Code;
use drover_load::{EnvironmentDir, Repo};
use drover_model::API_VERSION;
use drover_model::cluster::Engine;

use crate::{Findings, Hint};

pub(crate) fn check(f: &mut Findings<'_>, repo: &Repo, dir: &EnvironmentDir) {
    let cluster = dir
        .environment
        .as_ref()
        .and_then(|env| repo.cluster(&env.spec().cluster));
    for raw in &dir.manifests {
        let value = &raw.value;
        if let Some(cluster) = cluster
            && cluster.spec().engine != Engine::Kubernetes
        {
            f.at_raw(
                raw,
                "apiVersion",
                Code::InvalidManifest,
                format!(
                    "{} is a plain Kubernetes object, but environment `{}` runs on cluster `{}`, whose engine runs Drover's own kinds only",
                    raw.name,
                    dir.name,
                    cluster.name()
                ),
            )
            .hint(format!(
                "run this environment on a cluster with `engine: kubernetes`; or, if this is meant as a Drover document, write `apiVersion: {API_VERSION}`"
            ));
        }
        if value["metadata"].get("namespace").is_some() {
            f.at_raw(
                raw,
                "metadata.namespace",
                Code::InvalidManifest,
                format!(
                    "{} names a namespace: an environment's objects all go into its own namespace",
                    raw.name
                ),
            )
            .hint("remove `metadata.namespace` (the environment's `spec.namespace` sets it)");
        }
        if value["apiVersion"] == "v1" && value["kind"] == "Secret" {
            f.at_raw(
                raw,
                "kind",
                Code::InvalidManifest,
                format!(
                    "{} is a Kubernetes Secret: its values would be in Git for every reader of the repo, and in every diff",
                    raw.name
                ),
            )
            .hint(format!(
                "declare it as Drover's `Secret` kind (`apiVersion: {API_VERSION}`), which the Kubernetes engine renders to a Secret"
            ));
        }
    }
}
