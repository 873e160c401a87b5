//! The local engine's proxy processes: one `drover proxy` per listener, started (or,
//! after a control-plane restart, adopted) by the engine and fed through its files
//! (`drover_proxy::link`). A proxy outlives a control plane that dies, serving its last
//! table; the next one adopts it and carries on from its table's version.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use drover_proxy::Table;
use drover_proxy::link::{ProxyDir, Stats, read_json};

use crate::ProxyHost;
use crate::files::ProcessMark;

/// How long a new proxy may take to bind its listener.
const BIND_WAIT: Duration = Duration::from_secs(10);

/// A proxy process and the link to it.
#[derive(Debug)]
pub(crate) struct ProxyLink {
    dir: ProxyDir,
    /// The table version last written.
    version: u64,
    mark: Option<ProcessMark>,
    /// Set when this control plane started it (so its exit is reaped).
    child: Option<std::process::Child>,
    /// Set when it runs as a thread of this process ([`ProxyHost::Threads`]).
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl ProxyLink {
    fn mark_file(dir: &Path) -> PathBuf {
        dir.join("proxy.pid")
    }

    /// The proxy of `dir`: adopted when one runs there, else started on `listen` (a
    /// previous address is preferred for port 0). Returns it and its address.
    pub fn open(
        host: ProxyHost,
        drover: &Path,
        dir: &Path,
        listen: SocketAddr,
    ) -> std::io::Result<(ProxyLink, SocketAddr)> {
        let link = ProxyDir(dir.to_owned());
        if host == ProxyHost::Threads {
            return Self::in_thread(link, listen);
        }
        let mark = ProcessMark::read(&Self::mark_file(dir)).filter(ProcessMark::alive);
        let addr = std::fs::read_to_string(link.addr())
            .ok()
            .and_then(|t| t.trim().parse::<SocketAddr>().ok());
        if let (Some(mark), Some(addr)) = (mark, addr) {
            let version = link.written_version();
            tracing::info!(
                "proxy on http://{addr} adopted (pid {}, table version {version})",
                mark.pid
            );
            let adopted = ProxyLink {
                dir: link,
                version,
                mark: Some(mark),
                child: None,
                thread: None,
            };
            return Ok((adopted, addr));
        }
        std::fs::create_dir_all(dir)?;
        let started_at = std::fs::metadata(link.addr())
            .and_then(|m| m.modified())
            .ok();
        let child = std::process::Command::new(drover)
            .arg("proxy")
            .arg("--dir")
            .arg(dir)
            .arg("--listen")
            .arg(listen.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            // Its own group: Ctrl-C reaches `up` alone, which stops it in order.
            .process_group(0)
            .spawn()?;
        let mark = ProcessMark::of(child.id());
        if let Some(mark) = mark {
            mark.write(&Self::mark_file(dir))?;
        }
        let mut link = ProxyLink {
            version: link.written_version(),
            dir: link,
            mark,
            child: Some(child),
            thread: None,
        };
        let addr = link.wait_bound(started_at)?;
        Ok((link, addr))
    }

    /// The proxy on a thread of this process.
    fn in_thread(dir: ProxyDir, listen: SocketAddr) -> std::io::Result<(ProxyLink, SocketAddr)> {
        std::fs::create_dir_all(&dir.0)?;
        let started_at = std::fs::metadata(dir.addr())
            .and_then(|m| m.modified())
            .ok();
        let served = dir.clone();
        let thread = std::thread::Builder::new()
            .name("drover-proxy-link".into())
            .spawn(move || drover_proxy::process::run(served, listen, 1))?;
        let mut link = ProxyLink {
            version: dir.written_version(),
            dir,
            mark: None,
            child: None,
            thread: Some(thread),
        };
        let addr = link.wait_bound(started_at)?;
        Ok((link, addr))
    }

    /// Waits until the new process has written its address.
    fn wait_bound(&mut self, before: Option<std::time::SystemTime>) -> std::io::Result<SocketAddr> {
        let deadline = Instant::now() + BIND_WAIT;
        loop {
            let fresh = std::fs::metadata(self.dir.addr())
                .and_then(|m| m.modified())
                .is_ok_and(|at| Some(at) != before);
            if fresh
                && let Some(addr) = std::fs::read_to_string(self.dir.addr())
                    .ok()
                    .and_then(|t| t.trim().parse().ok())
            {
                return Ok(addr);
            }
            if !self.alive() {
                return Err(std::io::Error::other(
                    "the proxy process exited before listening (see its message above)",
                ));
            }
            if Instant::now() > deadline {
                return Err(std::io::Error::other(
                    "the proxy process did not listen in time",
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Gives the proxy a new table.
    pub fn update(&mut self, table: &Table) -> std::io::Result<()> {
        self.version += 1;
        self.dir.write_table(table, self.version)
    }

    /// What it reports it serves.
    pub fn stats(&self) -> Stats {
        read_json(&self.dir.stats()).unwrap_or_default()
    }

    /// The table version last written: until the stats show it applied, the proxy
    /// may still send new requests where the table before sent them.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Whether the process still runs.
    pub fn alive(&mut self) -> bool {
        if let Some(thread) = &self.thread {
            return !thread.is_finished();
        }
        if let Some(child) = &mut self.child {
            return matches!(child.try_wait(), Ok(None));
        }
        self.mark.is_some_and(|m| m.alive())
    }

    /// Stops the process (when `up` stops, or its listener left the config).
    pub fn stop(&mut self) {
        if let Some(mark) = self.mark.filter(ProcessMark::alive) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(mark.pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        if let Some(child) = &mut self.child {
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(Self::mark_file(&self.dir.0));
    }
}
