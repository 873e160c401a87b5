//! `drover operator` with many Environments against a real API server: how long from
//! a commit to every environment applied (the operator's log) and to every
//! Environment resource's status saying so (what `kubectl get environments` shows),
//! how long one environment's change takes among them all, and the operator's memory.
//!
//!   operator_envs DROVER_BINARY KUBECONFIG [ENVIRONMENTS] [SERVICES_EACH] [COMMITS]

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use drover_testkit::git::{GitDaemon, TestRepo, bare, git};

fn environment(e: usize) -> String {
    format!(
        "apiVersion: drover.dev/v1alpha1\nkind: Environment\nmetadata:\n  name: env-{e:03}\nspec:\n  cluster: kube\n  namespace: bench-env-{e:03}\n  rollback:\n    automatic: false\n    progressDeadline: 1h\n"
    )
}

fn service(s: usize, version: usize) -> String {
    format!(
        "apiVersion: drover.dev/v1alpha1\nkind: Service\nmetadata:\n  name: svc-{s}\nspec:\n  version: v{version}\n  image: registry.example/svc-{s}:v{version}\n  replicas: 1\n  access: internal\n  ports:\n    - {{name: http, target: 8080}}\n  resources:\n    requests: {{cpu: 10m, memory: 16Mi}}\n"
    )
}

fn kubectl(kubeconfig: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("kubectl")
        .env("KUBECONFIG", kubeconfig)
        .args(args)
        .output()?;
    if !out.status.success() {
        bail!("kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Waits until the operator has logged `revision R applied` for every environment in
/// `envs`.
fn applied(
    lines: &Receiver<String>,
    revision: &str,
    envs: &BTreeSet<String>,
) -> anyhow::Result<()> {
    let mut left = envs.clone();
    let deadline = Instant::now() + Duration::from_secs(600);
    let wanted = format!(": revision {} applied", &revision[..7]);
    while !left.is_empty() {
        let rest = deadline
            .checked_duration_since(Instant::now())
            .context("timed out")?;
        let line = lines.recv_timeout(rest)?;
        if let Some((env, _)) = line.split_once(&wanted) {
            left.remove(env);
        }
    }
    Ok(())
}

/// Waits until every Environment resource in `envs` says `revision` was applied.
fn statuses(kubeconfig: &str, revision: &str, envs: &BTreeSet<String>) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let text = kubectl(
            kubeconfig,
            &[
                "get",
                "environments",
                "-o",
                "jsonpath={range .items[*]}{.metadata.name} {.status.lastAppliedRevision}{\"\\n\"}{end}",
            ],
        )?;
        let done = text
            .lines()
            .filter(|l| l.ends_with(revision))
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| envs.contains(*n))
            .count();
        if done == envs.len() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{done} of {} statuses at {revision}", envs.len());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (binary, kubeconfig) = (
        args.get(1).context("DROVER_BINARY")?,
        args.get(2).context("KUBECONFIG")?,
    );
    let n: usize = args.get(3).map_or(Ok(100), |n| n.parse())?;
    let each: usize = args.get(4).map_or(Ok(2), |n| n.parse())?;
    let commits: usize = args.get(5).map_or(Ok(5), |n| n.parse())?;
    let work = tempfile::tempdir()?;
    let served = work.path().join("served");
    let remote = bare(&served, "config.git");
    let daemon = GitDaemon::serve(&served);
    let repo = TestRepo::init(&work.path().join("repo"));
    repo.write("clusters/kube.yaml", "apiVersion: drover.dev/v1alpha1\nkind: Cluster\nmetadata:\n  name: kube\nspec:\n  engine: kubernetes\n  kubernetes: {}\n");
    let envs: BTreeSet<String> = (0..n).map(|e| format!("env-{e:03}")).collect();
    for e in 0..n {
        repo.write(
            &format!("environments/env-{e:03}/environment.yaml"),
            &environment(e),
        );
        for s in 0..each {
            repo.write(
                &format!("environments/env-{e:03}/svc-{s}.yaml"),
                &service(s, 1),
            );
        }
    }
    let push = || {
        git(
            &repo.dir,
            &["push", "-q", "-f", remote.to_str().unwrap(), "main"],
        )
    };
    let first = repo.commit("bench");
    push();
    let install = Command::new(binary)
        .args(["install", "--print", "--repo", "unused"])
        .output()?;
    let file = work.path().join("install.yaml");
    std::fs::write(&file, install.stdout)?;
    kubectl(
        kubeconfig,
        &["apply", "--server-side", "-f", file.to_str().unwrap()],
    )?;
    let state = work.path().join("state");
    let start = Instant::now();
    let (mut child, lines) = drover_bench::spawn_lines(
        Command::new(binary)
            .args([
                "operator",
                "--repo",
                &daemon.url("config.git"),
                "--poll",
                "1s",
            ])
            .args(["--identity", "bench", "--state-dir"])
            .arg(&state)
            .env("KUBECONFIG", kubeconfig),
    )?;
    let result = (|| -> anyhow::Result<()> {
        applied(&lines, &first, &envs)?;
        let logged = start.elapsed();
        statuses(kubeconfig, &first, &envs)?;
        println!(
            "operator: start → {n} environments ({} services) applied: {:.0} ms; every status written: {:.0} ms",
            n * each,
            logged.as_secs_f64() * 1000.0,
            start.elapsed().as_secs_f64() * 1000.0
        );
        let (mut all_applied, mut all_status, mut one) = (Vec::new(), Vec::new(), Vec::new());
        for c in 0..commits {
            for e in 0..n {
                repo.write(
                    &format!("environments/env-{e:03}/svc-0.yaml"),
                    &service(0, c + 2),
                );
            }
            let revision = repo.commit("every environment: a new version");
            push();
            let t = Instant::now();
            applied(&lines, &revision, &envs)?;
            all_applied.push(t.elapsed());
            statuses(kubeconfig, &revision, &envs)?;
            all_status.push(t.elapsed());
            // One environment among them all.
            repo.write("environments/env-000/svc-1.yaml", &service(1, c + 100));
            let revision = repo.commit("one environment: a new version");
            push();
            let t = Instant::now();
            let only: BTreeSet<String> = ["env-000".to_owned()].into();
            statuses(kubeconfig, &revision, &only)?;
            one.push(t.elapsed());
        }
        let label = |what: &str| format!("operator: push → {what} (poll 1 s)");
        println!(
            "{}",
            drover_bench::report(
                &label(&format!("{n} environments applied")),
                &mut all_applied
            )
        );
        println!(
            "{}",
            drover_bench::report(
                &label(&format!("{n} statuses at the revision")),
                &mut all_status
            )
        );
        println!(
            "{}",
            drover_bench::report(&label("1 of them changed, its status"), &mut one)
        );
        std::thread::sleep(Duration::from_secs(3));
        let (now, peak, anon, file) = drover_bench::memory(child.id());
        println!(
            "operator: memory with {n} Environments: RSS {now:.1} MiB ({anon:.1} MiB anonymous, {file:.1} MiB mapped files), peak {peak:.1} MiB"
        );
        Ok(())
    })();
    drover_bench::stop_up(&mut child, &state);
    result
}
