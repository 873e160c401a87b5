//! `drover proxy`: the proxy as a process of its own, so that traffic keeps flowing
//! while the control plane is down or restarting (as Envoy, kube-proxy or Swarm's
//! routing mesh keep the last configuration they were given). It binds its listener,
//! serves the table in its directory (the last one it was given, after a restart too),
//! applies each newer table the control plane writes, and reports what it serves.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::Proxy;
use crate::link::{ProxyDir, Stats, TableFile, read_json, write_atomic};

/// How often stats are written, when they changed; the version file is also looked at
/// this often, should a change notification be missed.
const REPORT: Duration = Duration::from_millis(50);

/// Binds `listen` (port 0: the address it had before, if free, else any) and serves
/// from `dir` until the process is stopped.
pub fn run(dir: ProxyDir, listen: SocketAddr, threads: usize) -> std::io::Result<()> {
    std::fs::create_dir_all(&dir.0)?;
    let previous = (listen.port() == 0)
        .then(|| std::fs::read_to_string(dir.addr()).ok())
        .flatten()
        .and_then(|t| t.trim().parse::<SocketAddr>().ok())
        .filter(|a| a.ip() == listen.ip());
    let listeners = match previous.and_then(|a| Proxy::bind(a, threads).ok()) {
        Some(l) => l,
        None => Proxy::bind(listen, threads)?,
    };
    let addr = listeners[0].local_addr()?;
    let proxy = Proxy::new();
    let mut applied = 0;
    apply_newer(&proxy, &dir, &mut applied);
    proxy.clone().serve_on_threads(listeners)?;
    write_atomic(&dir.addr(), addr.to_string().as_bytes())?;
    // `up` says where it listens; this process speaks only of trouble.
    tracing::debug!("proxy on http://{addr}, table version {applied}");
    // A new table is applied the moment its version file is written (inotify), and
    // looked for at each report in any case.
    let (tx, changed) = std::sync::mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Writes only: reading the file is an access event, and this loop reads it.
        let written = event.is_ok_and(|e| {
            matches!(
                e.kind,
                notify::EventKind::Create(_) | notify::EventKind::Modify(_)
            ) && e.paths.iter().any(|p| p.ends_with("version"))
        });
        if written {
            let _ = tx.send(());
        }
    })
    .map_err(std::io::Error::other)?;
    notify::Watcher::watch(&mut watcher, &dir.0, notify::RecursiveMode::NonRecursive)
        .map_err(std::io::Error::other)?;
    let mut reported = None;
    let mut last_report = std::time::Instant::now() - REPORT;
    loop {
        let _ = changed.recv_timeout(REPORT);
        if !dir.0.exists() {
            // Its state directory is gone: no control plane will come back for it.
            tracing::warn!("{} was removed: the proxy stops", dir.0.display());
            return Ok(());
        }
        apply_newer(&proxy, &dir, &mut applied);
        if last_report.elapsed() >= REPORT {
            last_report = std::time::Instant::now();
            let stats = Stats {
                version: applied,
                in_flight: proxy.in_flight_all(),
                served: proxy.served().into_iter().collect(),
                traffic: proxy.traffic(),
                unrouted: proxy.unrouted(),
                connections: proxy.connections(),
            };
            if reported.as_ref() != Some(&stats) {
                let bytes = serde_json::to_vec(&stats).expect("stats serialize");
                if write_atomic(&dir.stats(), &bytes).is_ok() {
                    reported = Some(stats);
                }
            }
        }
    }
}

/// Applies the table file when the version file names a newer version than the one
/// served (or nothing is served yet).
fn apply_newer(proxy: &Arc<Proxy>, dir: &ProxyDir, applied: &mut u64) {
    let wanted = dir.written_version();
    if wanted <= *applied && *applied != 0 {
        return;
    }
    let Some(file) = read_json::<TableFile>(&dir.table()) else {
        return;
    };
    // The table is written first: an older one here is replaced in a moment.
    if file.version > *applied || *applied == 0 {
        proxy.update(file.table());
        *applied = file.version;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxy_serves_its_table_file_and_stops_when_its_directory_is_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ProxyDir(tmp.path().join("proxy"));
        std::fs::create_dir_all(&dir.0).unwrap();
        dir.write_table(&crate::Table::default(), 3).unwrap();
        let served = dir.clone();
        let running = std::thread::spawn(move || run(served, "127.0.0.1:0".parse().unwrap(), 1));
        // The version it serves shows in its stats.
        let mut stats = Stats::default();
        for _ in 0..200 {
            stats = read_json(&dir.stats()).unwrap_or_default();
            if stats.version == 3 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(stats.version, 3);
        std::fs::remove_dir_all(&dir.0).unwrap();
        for _ in 0..200 {
            if running.is_finished() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(running.is_finished(), "the proxy stopped");
        running.join().unwrap().unwrap();
    }
}
