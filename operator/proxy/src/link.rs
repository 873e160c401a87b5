//! The link between a control plane and a proxy running as its own process: two files
//! in the proxy's directory, as Envoy's file-based dynamic configuration does. The
//! control plane writes `table.json` (atomically, with a version); the proxy applies
//! each newer version and writes `stats.json` (the version it runs, requests in flight
//! per instance, requests served per service, the traffic counts of its metrics). Either side may die and restart: the
//! proxy keeps serving its last table, and loads it again when it starts.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::{Backend, Route, Table};

/// The files of one proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyDir(pub PathBuf);

impl ProxyDir {
    /// The routing table the control plane wants.
    pub fn table(&self) -> PathBuf {
        self.0.join("table.json")
    }
    /// The table's version alone, written after the table: the proxy reads this small
    /// file often and the table only when it names a newer version.
    pub fn version(&self) -> PathBuf {
        self.0.join("version")
    }
    /// What the proxy runs and counts.
    pub fn stats(&self) -> PathBuf {
        self.0.join("stats.json")
    }
    /// The address it listens on, once bound.
    pub fn addr(&self) -> PathBuf {
        self.0.join("addr")
    }
}

/// A table as written to its file: instants become wall-clock milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableFile {
    /// Grows with each table written; the proxy applies only newer ones.
    pub version: u64,
    pub routes: Vec<Route>,
    pub backends: BTreeMap<String, Vec<Backend>>,
    pub source: Option<IpAddr>,
    /// A demoted pool's address, usable until this Unix millisecond.
    pub draining_source: Option<(IpAddr, u64)>,
}

/// What a running proxy reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// The table version it serves.
    pub version: u64,
    pub in_flight: BTreeMap<SocketAddr, usize>,
    pub served: BTreeMap<String, usize>,
    /// Responses and latencies per service since the proxy started.
    #[serde(default)]
    pub traffic: BTreeMap<String, crate::traffic::Traffic>,
    /// Requests no route matched since the proxy started.
    #[serde(default)]
    pub unrouted: u64,
    /// Client connections open now.
    #[serde(default)]
    pub connections: u64,
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl TableFile {
    /// The file form of `table`, as version `version`.
    pub fn of(table: &Table, version: u64) -> TableFile {
        let now = Instant::now();
        TableFile {
            version,
            routes: table.routes.clone(),
            backends: table
                .backends
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            source: table.source,
            draining_source: table.draining_source.map(|(ip, until)| {
                let left = until.saturating_duration_since(now);
                (ip, unix_ms(SystemTime::now() + left))
            }),
        }
    }

    /// The table it describes.
    pub fn table(&self) -> Table {
        let now_ms = unix_ms(SystemTime::now());
        Table {
            routes: self.routes.clone(),
            backends: self
                .backends
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            source: self.source,
            draining_source: self.draining_source.and_then(|(ip, until)| {
                (until > now_ms)
                    .then(|| (ip, Instant::now() + Duration::from_millis(until - now_ms)))
            }),
        }
    }
}

impl ProxyDir {
    /// Writes a table for the proxy: the table, then its version.
    pub fn write_table(&self, table: &Table, version: u64) -> std::io::Result<()> {
        let file = TableFile::of(table, version);
        write_atomic(
            &self.table(),
            &serde_json::to_vec(&file).expect("tables serialize"),
        )?;
        write_atomic(&self.version(), version.to_string().as_bytes())
    }

    /// The version the control plane last wrote.
    pub fn written_version(&self) -> u64 {
        std::fs::read_to_string(self.version())
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    }
}

/// Writes `bytes` to `path` so that a reader sees the old file or the new one whole.
/// The directory must exist: a proxy never brings back one that was removed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    std::fs::rename(&tmp, path)
}

/// Reads a JSON file; `None` when it is absent or unreadable (a reader retries).
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_model::service::{Balancing, SessionAffinity};

    #[test]
    fn a_table_survives_its_file_with_its_drain_deadline() {
        let mut table = Table {
            routes: vec![Route {
                host: Some("web.localhost".into()),
                path: "/".into(),
                service: "staging/web:http".into(),
                balancing: Balancing::RoundRobin,
                affinity: SessionAffinity::None,
            }],
            ..Table::default()
        };
        table.backends.insert(
            "staging/web:http".into(),
            vec![Backend {
                id: "staging.web.1".into(),
                addr: "127.0.0.1:4000".parse().unwrap(),
                ready: true,
            }],
        );
        table.draining_source = Some((
            "10.0.0.2".parse().unwrap(),
            Instant::now() + Duration::from_secs(30),
        ));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("table.json");
        write_atomic(
            &path,
            &serde_json::to_vec(&TableFile::of(&table, 7)).unwrap(),
        )
        .unwrap();
        let read: TableFile = read_json(&path).unwrap();
        assert_eq!(read.version, 7);
        let back = read.table();
        assert_eq!((back.routes, back.backends), (table.routes, table.backends));
        let left = back.draining_source.unwrap().1 - Instant::now();
        assert!(
            left > Duration::from_secs(28) && left <= Duration::from_secs(30),
            "{left:?}"
        );
    }
}
