//! Running one instance as an OS process: in its own process group (so stopping it
//! stops everything it started), its output piped through the agent into a log file
//! that is rotated by size, stopped with SIGTERM and, after a grace period, SIGKILL.
//! Plus the restart policy: whether an exited instance starts again, and after how
//! long (exponential back-off).

use std::collections::BTreeMap;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drover_model::service::RestartPolicy;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

/// What to run.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Program and arguments (`command` followed by `args`).
    pub argv: Vec<String>,
    /// The complete environment: nothing is inherited from the agent, whose own
    /// credentials must never reach an instance. Include `PATH`.
    pub env: BTreeMap<String, String>,
    /// Created when missing.
    pub working_dir: PathBuf,
    /// The instance's log file.
    pub log: PathBuf,
    /// Rotate the log when it grows past this many bytes.
    pub log_max_bytes: u64,
    /// Rotated files kept (`log.1` … `log.N`).
    pub log_keep: usize,
}

/// A log file rotated by size: `name` is current, `name.1` the previous one, and so on.
#[derive(Debug)]
pub struct RotatingLog {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    file: std::fs::File,
    written: u64,
}

impl RotatingLog {
    /// Opens (appending to) `path`.
    pub fn open(path: &Path, max_bytes: u64, keep: usize) -> std::io::Result<RotatingLog> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // What an instance prints may be private: its log is its owner's alone.
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        let written = file.metadata()?.len();
        Ok(RotatingLog {
            path: path.to_owned(),
            max_bytes,
            keep,
            file,
            written,
        })
    }

    /// Appends one line, rotating first when the file is full.
    pub fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        if self.written > 0 && self.written + line.len() as u64 + 1 > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(line)?;
        self.file.write_all(b"\n")?;
        self.written += line.len() as u64 + 1;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let numbered = |n: usize| PathBuf::from(format!("{}.{n}", self.path.display()));
        if self.keep == 0 {
            self.file.set_len(0)?;
        } else {
            let _ = std::fs::remove_file(numbered(self.keep));
            for n in (1..self.keep).rev() {
                let _ = std::fs::rename(numbered(n), numbered(n + 1));
            }
            std::fs::rename(&self.path, numbered(1))?;
            self.file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&self.path)?;
        }
        self.written = 0;
        Ok(())
    }
}

/// A running instance.
#[derive(Debug)]
pub struct Process {
    child: Child,
    pid: u32,
}

/// Copies a stream into the log, line by line.
fn pump(stream: impl AsyncRead + Unpin + Send + 'static, log: Arc<Mutex<RotatingLog>>) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).split(b'\n');
        while let Ok(Some(line)) = lines.next_segment().await {
            if log.lock().expect("log lock").write_line(&line).is_err() {
                break;
            }
        }
    });
}

/// Starts an instance.
pub fn spawn(spec: &Spec) -> std::io::Result<Process> {
    let (program, args) = spec
        .argv
        .split_first()
        .ok_or_else(|| std::io::Error::other("nothing to run"))?;
    std::fs::create_dir_all(&spec.working_dir)?;
    let log = Arc::new(Mutex::new(RotatingLog::open(
        &spec.log,
        spec.log_max_bytes,
        spec.log_keep,
    )?));
    let mut child = Command::new(program)
        .args(args)
        .env_clear()
        .envs(&spec.env)
        .current_dir(&spec.working_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()?;
    let pid = child
        .id()
        .ok_or_else(|| std::io::Error::other("the process exited at once"))?;
    if let Some(out) = child.stdout.take() {
        pump(out, log.clone());
    }
    if let Some(err) = child.stderr.take() {
        pump(err, log);
    }
    Ok(Process { child, pid })
}

impl Process {
    /// The process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits for the process to exit by itself.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// The exit status, if it has exited.
    pub fn try_exit(&mut self) -> std::io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    fn signal_group(&self, signal: Signal) {
        if let Ok(pid) = i32::try_from(self.pid) {
            let _ = killpg(Pid::from_raw(pid), signal);
        }
    }

    /// Stops the whole process group: SIGTERM, then SIGKILL if it is still running
    /// after `grace`. Returns how it ended.
    pub async fn stop(&mut self, grace: Duration) -> std::io::Result<ExitStatus> {
        if let Some(status) = self.child.try_wait()? {
            // The leader is gone; make sure nothing it started lingers.
            self.signal_group(Signal::SIGKILL);
            return Ok(status);
        }
        self.signal_group(Signal::SIGTERM);
        let status = match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => status?,
            Err(_) => {
                self.signal_group(Signal::SIGKILL);
                self.child.wait().await?
            }
        };
        // Children that ignored SIGTERM after their leader exited go too.
        self.signal_group(Signal::SIGKILL);
        Ok(status)
    }
}

/// Does an instance that exited with `status` start again under `policy`?
pub fn restarts(policy: RestartPolicy, status: ExitStatus) -> bool {
    match policy {
        RestartPolicy::Always => true,
        RestartPolicy::OnFailure => !status.success(),
        RestartPolicy::Never => false,
    }
}

/// Exponential back-off between restarts: `base`, doubling per consecutive crash, up
/// to `cap`; an instance that ran at least `reset_after` starts the count again.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
    pub reset_after: Duration,
}

impl Default for Backoff {
    /// 1 s, 2 s, 4 s … up to 60 s; reset after 30 s of running.
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
            reset_after: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The wait before restart number `crashes` (1 for the first) after a run of `ran`.
    /// A run of at least `reset_after` waits only `base`; the caller then counts
    /// crashes from 1 again.
    pub fn delay(&self, crashes: u32, ran: Duration) -> Duration {
        if ran >= self.reset_after {
            return self.base;
        }
        let factor = 1u32
            .checked_shl(crashes.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }
}
