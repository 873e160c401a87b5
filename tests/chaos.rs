//! Chaos: rolling updates under load while the control plane, an agent or an instance
//! is killed with SIGKILL at a random moment. After each fault the platform must have
//! converged to what Git says, with one agent per node, no duplicate instance and no
//! release left open; and a control-plane kill must fail no request at all (the proxy
//! and the instances outlive it).
//!
//! Bounded: `DROVER_CHAOS_ROUNDS` rounds (default 2), each one update per fault kind;
//! `DROVER_CHAOS_SEED` replays a run (the seed is printed).

use std::time::{Duration, Instant};

use drover_testkit::git::git;
use serde_json::Value;

use crate::platform::{Load, Platform, processes_of};

const CONVERGED: Duration = Duration::from_secs(60);

/// A small deterministic generator (xorshift64*): the same seed, the same run.
struct Chance(u64);

impl Chance {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A duration in `[0, most)`.
    fn within(&mut self, most: Duration) -> Duration {
        Duration::from_millis(self.next() % most.as_millis().max(1) as u64)
    }
}

fn kill9(pid: u64) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// What is faulted during an update.
#[derive(Debug, Clone, Copy)]
enum Fault {
    ControlPlane,
    Agent,
    Instance,
}

/// Sets web's version to `to` (whatever it was: a failed release may have been
/// reverted), commits it, and returns the commit.
fn release(platform: &Platform, to: u32) -> String {
    git(&platform.repo.dir, &["reset", "-q", "--hard", "HEAD"]);
    let path = platform.repo.dir.join("environments/staging/web.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let edited: String = text
        .lines()
        .map(|l| {
            if l.starts_with("  version: ") {
                format!("  version: v{to}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&path, edited).unwrap();
    platform.commit(&format!("web v{to}"))
}

/// What Git says now: the tip (Drover's revert, after a failed release) and web's
/// version there.
fn in_git(platform: &Platform) -> (String, String) {
    let commit = git(&platform.repo.dir, &["rev-parse", "HEAD"])
        .trim()
        .to_owned();
    let text = git(
        &platform.repo.dir,
        &["show", "HEAD:environments/staging/web.yaml"],
    );
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("  version: "))
        .unwrap()
        .to_owned();
    (commit, version)
}

/// Waits until staging runs what Git says with every web instance ready on it, and
/// no release is open; returns Git's version. A fault may fail a release: then
/// Drover's revert is what Git says.
fn converged(platform: &Platform) -> String {
    let deadline = Instant::now() + CONVERGED;
    let mut last = Value::Null;
    while Instant::now() < deadline {
        let (commit, version) = in_git(platform);
        let s = platform.status();
        let env = &s["environments"][0];
        let web = &s["services"][0];
        let instances = Platform::instances(&s, "web");
        let done = env["sync"] == "Synced"
            && env["revision"] == commit[..7]
            && web["version"] == version.as_str()
            && web["ready"] == 3
            && web["desired"] == 3
            && instances.len() == 3
            && instances
                .iter()
                .all(|i| i["ready"] == true && i["current"] == true);
        if done && no_release_open(platform) {
            return version;
        }
        last = s;
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "not converged to Git within {CONVERGED:?}: {last:#}\n{}",
        platform.drover(&["history", "staging"])
    );
}

/// No release of staging is still progressing.
fn no_release_open(platform: &Platform) -> bool {
    let history: Value =
        serde_json::from_str(&platform.drover(&["history", "staging", "-o", "json"])).unwrap();
    !history
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["result"] == "progressing")
}

/// Agents by node, and instance processes, of the platform's state directory.
fn processes(platform: &Platform) -> (std::collections::BTreeMap<String, usize>, usize) {
    let mut agents = std::collections::BTreeMap::<String, usize>::new();
    let mut instances = 0;
    for pid in processes_of(&platform.state) {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<String> = String::from_utf8_lossy(&cmdline)
            .split('\0')
            .map(str::to_owned)
            .collect();
        if args.iter().any(|a| a == "agent") {
            let node = args
                .iter()
                .skip_while(|a| *a != "--node")
                .nth(1)
                .cloned()
                .unwrap_or_default();
            *agents.entry(node).or_default() += 1;
        }
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
        if cwd.to_string_lossy().contains("/instances/") {
            instances += 1;
        }
    }
    (agents, instances)
}

/// One agent per node and one process per instance, nothing more, once replaced
/// instances have finished stopping (their drain and stop grace).
fn no_duplicates(platform: &Platform) {
    let expected: std::collections::BTreeMap<String, usize> =
        [("node-1".to_owned(), 1), ("node-2".to_owned(), 1)].into();
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let (agents, instances) = processes(platform);
        if agents == expected && instances == 3 {
            return;
        }
        if Instant::now() > deadline {
            assert_eq!(agents, expected, "one agent per node");
            assert_eq!(instances, 3, "no duplicate instances");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Git and live agree: the version in the repo is the version served.
fn git_is_live(platform: &Platform, version: &str) {
    let text =
        std::fs::read_to_string(platform.repo.dir.join("environments/staging/web.yaml")).unwrap();
    assert!(text.contains(&format!("version: {version}\n")), "{text}");
    let answer = platform.get_json("web.dev.localhost", "/");
    assert_eq!(answer["version"], version, "{answer}");
}

fn pid_of(status: &Value, what: Fault, chance: &mut Chance) -> Option<u64> {
    match what {
        Fault::ControlPlane => None,
        Fault::Agent => {
            let nodes = status["nodes"].as_array()?;
            let node = &nodes[(chance.next() % nodes.len() as u64) as usize];
            node["agent_pid"].as_u64()
        }
        Fault::Instance => {
            let instances = Platform::instances(status, "web");
            let i = instances.get((chance.next() % instances.len().max(1) as u64) as usize)?;
            i["pid"].as_u64()
        }
    }
}

#[test]
fn faults_at_random_moments_of_rolling_updates_leave_git_and_live_in_agreement() {
    let rounds: u32 = std::env::var("DROVER_CHAOS_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(2);
    let seed = std::env::var("DROVER_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    eprintln!("chaos: DROVER_CHAOS_SEED={seed} DROVER_CHAOS_ROUNDS={rounds}");
    let mut chance = Chance(seed);
    let mut platform = Platform::start();
    platform.wait_for(CONVERGED, "web ready", |s| Platform::ready(s, "web", 1));
    platform.repo.edit(
        "environments/staging/web.yaml",
        "  replicas: 1\n",
        "  replicas: 3\n  update: {parallelism: 1, order: start-first, monitor: 500ms}\n",
    );
    platform.commit("web: 3 replicas, start-first");
    converged(&platform);
    let mut version = 1;
    for round in 0..rounds {
        for fault in [Fault::ControlPlane, Fault::Agent, Fault::Instance] {
            let load = Load::start(&platform);
            let started = Instant::now();
            version += 1;
            release(&platform, version);
            let wanted = format!("v{version}");
            let at = chance.within(Duration::from_millis(3000));
            std::thread::sleep(at);
            eprintln!("chaos: round {round}, {fault:?} at {at:?} into the update to {wanted}");
            match fault {
                Fault::ControlPlane => {
                    platform.kill_up();
                    std::thread::sleep(
                        Duration::from_millis(300) + chance.within(Duration::from_millis(1500)),
                    );
                    platform.start_up();
                }
                other => {
                    let status = platform.status();
                    if let Some(pid) = pid_of(&status, other, &mut chance) {
                        kill9(pid);
                    }
                }
            }
            let running = converged(&platform);
            // Requests in flight when the update ended, then a moment of quiet.
            std::thread::sleep(Duration::from_millis(200));
            let seen = load.finish();
            no_duplicates(&platform);
            git_is_live(&platform, &running);
            if running != wanted {
                eprintln!("chaos: the release of {wanted} failed and was reverted to {running}");
            }
            assert!(seen.len() > 10, "the load ran ({:?})", started.elapsed());
            if matches!(fault, Fault::ControlPlane) {
                let failed: Vec<&String> = seen.iter().filter(|a| !a.starts_with("200 ")).collect();
                assert!(
                    failed.is_empty(),
                    "round {round}: {} of {} requests failed through a control-plane kill: {:?}",
                    failed.len(),
                    seen.len(),
                    &failed[..failed.len().min(5)]
                );
            }
        }
    }
}
