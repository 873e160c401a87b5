//! Local and Kubernetes clusters in one repo, under one `drover up`: the platform
//! fixture's `staging` on a local cluster (real agents, a real instance behind the
//! real proxy) beside examples/repo's staging, as `shop`, on the test cluster.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::Kube;
use crate::platform::{Platform, fixture, processes_of};
use crate::support::repo_root;

const SOON: Duration = Duration::from_secs(60);

/// The platform fixture plus `shop` on the Kubernetes cluster `kube`, namespace `ns`.
fn mixed_fixture(into: &Path, ns: &str) {
    for dir in ["clusters", "environments/staging"] {
        std::fs::create_dir_all(into.join(dir)).unwrap();
        for entry in std::fs::read_dir(fixture().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, into.join(dir).join(path.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(
        into.join("clusters/kube.yaml"),
        "apiVersion: drover.dev/v1alpha1\nkind: Cluster\nmetadata:\n  name: kube\nspec:\n  engine: kubernetes\n  kubernetes: {}\n",
    )
    .unwrap();
    let shop = into.join("environments/shop");
    std::fs::create_dir_all(&shop).unwrap();
    let staging = repo_root().join("examples/repo/environments/staging");
    for entry in std::fs::read_dir(&staging).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("  name: staging\n", "  name: shop\n")
            .replace(
                "cluster: local-staging",
                &format!("cluster: kube\n  namespace: {ns}"),
            );
        std::fs::write(shop.join(path.file_name().unwrap()), text).unwrap();
    }
}

/// The environment `env` in a status, once it is there.
fn environment<'s>(status: &'s Value, env: &str) -> Option<&'s Value> {
    status["environments"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == env)
}

/// Local staging's web: one instance, ready, running `version`.
fn local_web(status: &Value, version: &str) -> bool {
    let web: Vec<&Value> = Platform::instances(status, "web")
        .into_iter()
        .filter(|i| i["environment"] == "staging")
        .collect();
    let synced = environment(status, "staging").is_some_and(|e| e["sync"] == "Synced");
    synced
        && web.len() == 1
        && web[0]["ready"] == true
        && status["services"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["environment"] == "staging" && s["name"] == "web" && s["version"] == version)
}

pub(crate) fn one_up_drives_a_local_cluster_and_a_kubernetes_one_from_one_repo(kube: &Kube) {
    let tmp = tempfile::tempdir().unwrap();
    mixed_fixture(tmp.path(), "mixed");
    let kubeconfig = kube.kubeconfig.to_str().unwrap();
    let mut platform = Platform::start_from(tmp.path(), false, &[], &[("KUBECONFIG", kubeconfig)]);
    let image = |w: &Value| w["spec"]["template"]["spec"]["containers"][0]["image"].clone();
    let web = ["get", "deployment", "web", "-n", "mixed"];

    // Each environment on its own engine, from one revision.
    platform.wait_for(SOON, "local web ready", |s| local_web(s, "v1"));
    let (code, body) = platform.get("web.dev.localhost", "/");
    assert_eq!(code, 200, "{body}");
    kube.until(&web, SOON, |w| {
        image(w) == "ghcr.io/example/shop-web:v1.4.0"
    });
    let status = platform.status();
    assert_eq!(
        environment(&status, "shop").map(|e| e["sync"].clone()),
        Some("Synced".into()),
        "{status}"
    );

    // One commit changing both: each engine applies its part.
    platform
        .repo
        .edit(
            "environments/staging/web.yaml",
            "version: v1",
            "version: v2",
        )
        .edit(
            "environments/shop/web.yaml",
            "shop-web:v1.4.0",
            "shop-web:v1.5.0",
        );
    platform.commit("web: v2 on the local cluster, v1.5.0 on Kubernetes");
    kube.until(&web, SOON, |w| {
        image(w) == "ghcr.io/example/shop-web:v1.5.0"
    });
    platform.wait_for(SOON, "local web v2 ready", |s| local_web(s, "v2"));

    // Stopping `up` stops the local instances; Kubernetes keeps its workloads.
    assert_eq!(platform.interrupt(), Some(0));
    assert!(processes_of(&platform.state).is_empty());
    kube.until(&web, SOON, |w| {
        image(w) == "ghcr.io/example/shop-web:v1.5.0"
    });
}
