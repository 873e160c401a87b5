//! The local engine's files in the state directory: where they are ([`LocalPaths`]),
//! process marks that survive a recycled pid, the instance files agents write for
//! each process they start, and the nodes that have a directory.
//!
//! ```text
//! STATE/proxy/CLUSTER-LISTENER/       a listener's proxy process: its table (and
//!                                      version), stats, address and pid
//! STATE/nodes/NODE/agent.pid           the node's agent
//! STATE/nodes/NODE/agent-token         its API token (scope `node:NODE`; 0600)
//! STATE/nodes/NODE/instances/ID@HASH.json   a process the agent started
//! STATE/instances/ID/                  an instance's working directory
//! STATE/logs/ID@HASH.log               an instance process's stdout and stderr (rotated)
//! STATE/volumes/ENV/SERVICE/VOLUME/    a volume without a source: kept across restarts
//! RUNTIME/ID@HASH/secrets/NAME/KEY     a secret's value, for one process (0400 in a
//!                                      0700 directory; removed when it stops)
//! ```
//!
//! RUNTIME is memory, never disk, as Docker's `/run/secrets` is: `$XDG_RUNTIME_DIR`
//! or `/dev/shm`, in a directory of this state directory's own (`drover-HASH`); only
//! where neither exists, `STATE/run`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use drover_control::files::{StateDir, write_atomic};

/// The local engine's paths in the state directory.
pub trait LocalPaths {
    fn proxy_dir(&self, cluster: &str, listener: &str) -> PathBuf;
    fn node_dir(&self, node: &str) -> PathBuf;
    fn agent_pid_file(&self, node: &str) -> PathBuf;
    fn agent_token_file(&self, node: &str) -> PathBuf;
    fn instance_files(&self, node: &str) -> PathBuf;
    fn instance_file(&self, node: &str, id: &str, hash: &str) -> PathBuf;
    fn instance_dir(&self, id: &str) -> PathBuf;
    fn logs(&self) -> PathBuf;
    fn log(&self, id: &str, hash: &str) -> PathBuf;
    fn volumes(&self) -> PathBuf;
    fn runtime(&self) -> PathBuf;
    fn instance_runtime(&self, id: &str, hash: &str) -> PathBuf;
}

impl LocalPaths for StateDir {
    fn proxy_dir(&self, cluster: &str, listener: &str) -> PathBuf {
        self.root().join(format!("proxy/{cluster}-{listener}"))
    }
    fn node_dir(&self, node: &str) -> PathBuf {
        self.root().join("nodes").join(node)
    }
    fn agent_pid_file(&self, node: &str) -> PathBuf {
        self.node_dir(node).join("agent.pid")
    }
    fn agent_token_file(&self, node: &str) -> PathBuf {
        self.node_dir(node).join("agent-token")
    }
    fn instance_files(&self, node: &str) -> PathBuf {
        self.node_dir(node).join("instances")
    }
    fn instance_file(&self, node: &str, id: &str, hash: &str) -> PathBuf {
        self.instance_files(node).join(format!("{id}@{hash}.json"))
    }
    fn instance_dir(&self, id: &str) -> PathBuf {
        self.root().join("instances").join(id)
    }
    fn logs(&self) -> PathBuf {
        self.root().join("logs")
    }
    fn log(&self, id: &str, hash: &str) -> PathBuf {
        // One file per instance process: a replacement (a new spec, started first
        // while the old one still runs) never writes into its predecessor's log.
        let short = &hash[..hash.len().min(8)];
        self.logs().join(format!("{id}@{short}.log"))
    }
    fn volumes(&self) -> PathBuf {
        self.root().join("volumes")
    }
    fn runtime(&self) -> PathBuf {
        use sha2::Digest as _;
        let digest =
            hex::encode(&sha2::Sha256::digest(self.root().to_string_lossy().as_bytes())[..6]);
        match drover_control::files::memory_dir() {
            Some(dir) => dir.join(format!("drover-{digest}")),
            None => self.root().join("run"),
        }
    }
    fn instance_runtime(&self, id: &str, hash: &str) -> PathBuf {
        self.runtime().join(format!("{id}@{hash}"))
    }
}

/// A process, identified so that a recycled pid is never mistaken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessMark {
    pub pid: u32,
    /// Start time in clock ticks since boot (`/proc/PID/stat`, field 22).
    pub start: u64,
}

impl ProcessMark {
    /// The mark of a running process.
    pub fn of(pid: u32) -> Option<ProcessMark> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name (field 2) may hold spaces and parentheses: skip past its end.
        let rest = &stat[stat.rfind(')')? + 2..];
        let start = rest.split(' ').nth(19)?.parse().ok()?;
        Some(ProcessMark { pid, start })
    }

    /// This process.
    pub fn me() -> ProcessMark {
        ProcessMark::of(std::process::id()).unwrap_or(ProcessMark {
            pid: std::process::id(),
            start: 0,
        })
    }

    /// Still the same process, and not a zombie.
    pub fn alive(&self) -> bool {
        let Some(now) = ProcessMark::of(self.pid) else {
            return false;
        };
        let zombie = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .ok()
            .and_then(|s| {
                s.rfind(')')
                    .and_then(|i| s[i + 2..].chars().next())
                    .map(|c| c == 'Z')
            })
            .unwrap_or(false);
        now.start == self.start && !zombie
    }

    /// Reads a mark written with [`ProcessMark::write`].
    pub fn read(path: &Path) -> Option<ProcessMark> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }

    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        write_atomic(path, &serde_json::to_vec(self).expect("a mark serializes"))
    }
}

/// What an agent records about a process it started, so that it (or `drover up` on
/// its way out) can stop it even after the agent itself was killed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceFile {
    pub id: String,
    pub spec_hash: String,
    /// The process (its group has the same id).
    pub process: Option<ProcessMark>,
}

/// Every instance file of a node.
pub fn instance_files(state: &StateDir, node: &str) -> Vec<(PathBuf, InstanceFile)> {
    let Ok(entries) = std::fs::read_dir(state.instance_files(node)) else {
        return Vec::new();
    };
    let mut files: Vec<(PathBuf, InstanceFile)> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter_map(|p| {
            let file = serde_json::from_slice(&std::fs::read(&p).ok()?).ok()?;
            Some((p, file))
        })
        .collect();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files
}

/// The nodes that have a directory in the state directory.
pub fn known_nodes(state: &StateDir) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(state.root().join("nodes")) else {
        return Vec::new();
    };
    let mut nodes: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    nodes.sort();
    nodes
}

/// Stops a process group (SIGTERM, then SIGKILL after `grace`) if its leader is still
/// the process `mark` names. Returns whether there was anything to stop.
pub async fn stop_group(mark: ProcessMark, grace: std::time::Duration) -> bool {
    use nix::sys::signal::{Signal, killpg};
    use nix::unistd::Pid;
    if !mark.alive() {
        return false;
    }
    let group = Pid::from_raw(mark.pid as i32);
    let _ = killpg(group, Signal::SIGTERM);
    let deadline = tokio::time::Instant::now() + grace;
    while mark.alive() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // SIGKILL the group even when the leader has gone: its children may not have.
    let _ = killpg(group, Signal::SIGKILL);
    true
}

/// The token of `node`'s agent, created (random, its owner's alone) on first use and
/// kept, so that an agent a restarted control plane adopts still holds a valid one.
pub fn ensure_agent_token(state: &StateDir, node: &str) -> std::io::Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = state.agent_token_file(node);
    if let Ok(text) = std::fs::read_to_string(&path)
        && !text.trim().is_empty()
    {
        return Ok(text.trim().to_owned());
    }
    let token = drover_control::random_hex(24)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)?;
    file.write_all(token.as_bytes())?;
    Ok(token)
}

/// Removes the log files of instance `id` but the `keep` newest processes' (and their
/// rotated parts): a replaced instance's log stays for a while, as `kubectl logs
/// --previous` expects, without piling up one file per release.
pub fn prune_logs(logs: &Path, id: &str, keep: usize) {
    let Ok(entries) = std::fs::read_dir(logs) else {
        return;
    };
    let prefix = format!("{id}@");
    let mut current: Vec<(std::time::SystemTime, String)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let stem = name.strip_prefix(&prefix)?.strip_suffix(".log")?.to_owned();
            let at = e.metadata().and_then(|m| m.modified()).ok()?;
            Some((at, stem))
        })
        .collect();
    current.sort();
    let drop = current.len().saturating_sub(keep);
    for (_, stem) in current.into_iter().take(drop) {
        let base = logs.join(format!("{prefix}{stem}.log"));
        let _ = std::fs::remove_file(&base);
        for n in 1..=16 {
            let _ = std::fs::remove_file(format!("{}.{n}", base.display()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_mark_tells_a_live_process_from_a_recycled_pid() {
        let me = ProcessMark::me();
        assert!(me.alive());
        let impostor = ProcessMark {
            start: me.start + 1,
            ..me
        };
        assert!(!impostor.alive());
    }

    #[test]
    fn the_token_is_created_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        if std::env::var_os("DROVER_API_TOKEN").is_some() {
            return;
        }
        let token = state.ensure_token().unwrap();
        assert_eq!(token.len(), 48);
        assert_eq!(state.ensure_token().unwrap(), token);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(state.token_file()).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn only_the_newest_processes_logs_of_an_instance_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        for (i, hash) in ["aaaa", "bbbb", "cccc"].iter().enumerate() {
            let path = dir.path().join(format!("staging.web.1@{hash}.log"));
            std::fs::write(&path, "x").unwrap();
            std::fs::write(format!("{}.1", path.display()), "x").unwrap();
            let at = std::time::SystemTime::now() - std::time::Duration::from_secs(100 - i as u64);
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(at)
                .unwrap();
        }
        std::fs::write(dir.path().join("staging.web.2@aaaa.log"), "x").unwrap();
        super::prune_logs(dir.path(), "staging.web.1", 2);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "staging.web.1@bbbb.log",
                "staging.web.1@bbbb.log.1",
                "staging.web.1@cccc.log",
                "staging.web.1@cccc.log.1",
                "staging.web.2@aaaa.log"
            ]
        );
    }
}
