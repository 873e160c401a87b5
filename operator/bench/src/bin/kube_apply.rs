//! Commit → every object applied on Kubernetes, end to end through `drover up` against
//! a real API server, with Drover's memory while it drives the environment; beside it,
//! the peer: `kubectl apply --server-side` of the same kinds of objects (what Argo CD's
//! and Flux's appliers do underneath), on the same cluster in the same run.
//!
//!   kube_apply DROVER_BINARY KUBECONFIG SERVICES [COMMITS]
//!
//! Each service renders to a Deployment and a ClusterIP Service; every commit changes
//! all of them (a new version), so each measures a whole environment applied.

use std::path::Path;
use std::process::Command;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use drover_testkit::git::TestRepo;

fn service(i: usize, version: usize) -> String {
    format!(
        "apiVersion: drover.dev/v1alpha1\nkind: Service\nmetadata:\n  name: svc-{i:04}\nspec:\n  version: v{version}\n  image: registry.example/svc-{i:04}:v{version}\n  replicas: 1\n  access: internal\n  ports:\n    - {{name: http, target: 8080}}\n  resources:\n    requests: {{cpu: 10m, memory: 16Mi}}\n"
    )
}

/// The same objects as plain Kubernetes YAML, for the peer.
fn plain(i: usize, version: usize, namespace: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: svc-{i:04}, namespace: {namespace}}}\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: svc-{i:04}}}}}\n  template:\n    metadata: {{labels: {{app: svc-{i:04}}}}}\n    spec:\n      containers:\n        - name: svc\n          image: registry.example/svc-{i:04}:v{version}\n          ports: [{{name: http, containerPort: 8080, protocol: TCP}}]\n          resources: {{requests: {{cpu: 10m, memory: 16Mi}}}}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: svc-{i:04}, namespace: {namespace}}}\nspec:\n  selector: {{app: svc-{i:04}}}\n  ports: [{{name: http, port: 8080, protocol: TCP}}]\n---\n"
    )
}

fn wait_line(lines: &Receiver<String>, wanted: &str, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(wanted) => return Ok(()),
            Ok(line) if line.contains("rejected") => bail!("{line}"),
            Ok(line) if line.contains("failed") => eprintln!("  {line}"),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    bail!("no line with {wanted:?} within {timeout:?}")
}

fn drover(binary: &str, kubeconfig: &str, n: usize, commits: usize) -> anyhow::Result<()> {
    let work = tempfile::tempdir()?;
    let repo = TestRepo::init(&work.path().join("repo"));
    repo.write("clusters/kube.yaml", "apiVersion: drover.dev/v1alpha1\nkind: Cluster\nmetadata:\n  name: kube\nspec:\n  engine: kubernetes\n  kubernetes: {}\n");
    let namespace = format!("drover-{n}");
    repo.write("environments/bench/environment.yaml", &format!(
        "apiVersion: drover.dev/v1alpha1\nkind: Environment\nmetadata:\n  name: bench\nspec:\n  cluster: kube\n  namespace: {namespace}\n  rollback:\n    automatic: false\n    progressDeadline: 1h\n"));
    for i in 0..n {
        repo.write(
            &format!("environments/bench/svc-{i:04}.yaml"),
            &service(i, 1),
        );
    }
    let first = repo.commit("bench");
    let state = work.path().join("state");
    let start = Instant::now();
    let (mut child, lines) = drover_bench::spawn_lines(
        Command::new(binary)
            .args([
                "up",
                repo.dir.as_path().to_str().context("UTF-8 path")?,
                "--state-dir",
            ])
            .arg(&state)
            .env("KUBECONFIG", kubeconfig),
    )?;
    let result = (|| {
        wait_line(
            &lines,
            &format!("bench: revision {} applied", &first[..7]),
            Duration::from_secs(600),
        )?;
        println!(
            "drover: start → {n} services applied (creating {} objects): {:.0} ms",
            2 * n + 1,
            start.elapsed().as_secs_f64() * 1000.0
        );
        let mut samples = Vec::new();
        for c in 0..commits {
            for i in 0..n {
                repo.write(
                    &format!("environments/bench/svc-{i:04}.yaml"),
                    &service(i, c + 2),
                );
            }
            let revision = repo.commit("every service: a new version");
            let t = Instant::now();
            wait_line(
                &lines,
                &format!("bench: revision {} applied", &revision[..7]),
                Duration::from_secs(600),
            )?;
            samples.push(t.elapsed());
        }
        println!(
            "{}",
            drover_bench::report(
                &format!("drover: commit → {n} services applied"),
                &mut samples
            )
        );
        std::thread::sleep(Duration::from_secs(2));
        let (rss, peak, anon, file) = drover_bench::memory(child.id());
        println!(
            "drover: memory with {n} services applied and watched: RSS {rss:.1} MiB ({anon:.1} MiB anonymous, {file:.1} MiB mapped files), peak {peak:.1} MiB"
        );
        Ok(())
    })();
    drover_bench::stop_up(&mut child, &state);
    result
}

fn kubectl(kubeconfig: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("kubectl")
        .env("KUBECONFIG", kubeconfig)
        .args(args)
        .output()?;
    if !out.status.success() {
        let errors = String::from_utf8_lossy(&out.stderr);
        bail!(
            "kubectl {args:?}: {}",
            errors.lines().next().unwrap_or_default()
        );
    }
    Ok(())
}

fn peer(kubeconfig: &str, n: usize, commits: usize, dir: &Path) -> anyhow::Result<()> {
    let namespace = format!("kubectl-{n}");
    kubectl(kubeconfig, &["create", "namespace", &namespace])?;
    let file = dir.join("objects.yaml");
    let apply = |version: usize| -> anyhow::Result<Duration> {
        let text: String = (0..n).map(|i| plain(i, version, &namespace)).collect();
        std::fs::write(&file, text)?;
        let t = Instant::now();
        kubectl(
            kubeconfig,
            &[
                "apply",
                "--server-side",
                "--field-manager",
                "bench",
                "-f",
                file.to_str().context("UTF-8 path")?,
            ],
        )?;
        Ok(t.elapsed())
    };
    println!(
        "kubectl apply --server-side: {n} services created: {:.0} ms",
        apply(1)?.as_secs_f64() * 1000.0
    );
    let mut samples = Vec::new();
    for c in 0..commits {
        samples.push(apply(c + 2)?);
    }
    println!(
        "{}",
        drover_bench::report(
            &format!("kubectl apply --server-side: {n} services changed"),
            &mut samples
        )
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (binary, kubeconfig) = (
        args.get(1).context("DROVER_BINARY")?,
        args.get(2).context("KUBECONFIG")?,
    );
    let n: usize = args.get(3).map_or(Ok(100), |n| n.parse())?;
    let commits: usize = args.get(4).map_or(Ok(5), |n| n.parse())?;
    drover(binary, kubeconfig, n, commits)?;
    let dir = tempfile::tempdir()?;
    peer(kubeconfig, n, commits, dir.path())
}
