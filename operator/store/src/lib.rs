//! Drover's state on disk: one SQLite database in the state directory.
//!
//! [`Store`] is what every engine needs and the controller keeps: per environment the
//! revision in force and its sync status, releases, a bounded log of events,
//! promotions, API token hashes and the audit trail. [`LocalState`] is what only the
//! local engine keeps: every object it has applied (normalized, so secret values are
//! only fingerprints) and whether Drover created it (the inventory pruning relies on),
//! the instances and where they run, node availability overrides and redeploys. Both
//! are connections to the same database; every write is one transaction, so a crash
//! leaves either the old state or the new one.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use drover_model::Kind;
use drover_release::{ReleaseResult, SyncStatus, Trigger};
use rusqlite::{Connection, params};

mod access;
mod applied;
mod local;
mod outbox;
mod promotions;
mod text;

use text::Text;

pub use access::{AuditEntry, TokenRecord};
pub use applied::Applied;
pub use local::{InstanceRecord, LocalState};
pub use outbox::GitWriteRecord;

/// Writes both connections make: transactions and events.
pub trait Database: sealed::Connected + Sized {
    /// Runs `f` as one transaction: all of its writes land, or none (a crash or an
    /// error in between leaves the state as it was).
    fn batch<T>(&self, f: impl FnOnce(&Self) -> Result<T>) -> Result<T> {
        let tx = self.connection().unchecked_transaction()?;
        let value = f(self)?;
        tx.commit()?;
        Ok(value)
    }

    /// Appends an event, dropping the oldest beyond the bound.
    fn event(&self, environment: &str, object: &str, reason: &str, message: &str) -> Result<()> {
        self.event_at(now_ms(), environment, object, reason, message)
    }

    /// [`Database::event`] for something that happened at `at_ms` (Unix milliseconds).
    fn event_at(
        &self,
        at_ms: i64,
        environment: &str,
        object: &str,
        reason: &str,
        message: &str,
    ) -> Result<()> {
        // No transaction of its own, so that it can be part of a batch; a crash between
        // the two statements leaves one event too many, which the next one trims.
        let db = self.connection();
        db.execute(
            "INSERT INTO events (at, environment, object, reason, message) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![at_ms, environment, object, reason, message],
        )?;
        db.execute(
            "DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?1",
            params![self.events_kept()],
        )?;
        Ok(())
    }
}

impl<T: sealed::Connected> Database for T {}

mod sealed {
    /// A connection to the state database, and how many events it keeps.
    pub trait Connected {
        fn connection(&self) -> &rusqlite::Connection;
        fn events_kept(&self) -> i64;
    }

    impl Connected for super::Store {
        fn connection(&self) -> &rusqlite::Connection {
            &self.db
        }
        fn events_kept(&self) -> i64 {
            self.events_kept
        }
    }

    impl Connected for super::LocalState {
        fn connection(&self) -> &rusqlite::Connection {
            self.db()
        }
        fn events_kept(&self) -> i64 {
            super::EVENTS_KEPT
        }
    }
}
pub use promotions::Promotion;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("state database holds an unreadable value: {0}")]
    Corrupt(String),
}

type Result<T> = std::result::Result<T, StoreError>;

/// The schema, one migration per entry; `PRAGMA user_version` counts those applied.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE environments (
    name TEXT PRIMARY KEY,
    revision TEXT,
    summary TEXT,
    status TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    updated_at INTEGER NOT NULL
);
CREATE TABLE objects (
    environment TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    managed INTEGER NOT NULL,
    PRIMARY KEY (environment, kind, name)
);
CREATE TABLE instances (
    id TEXT PRIMARY KEY,
    environment TEXT NOT NULL,
    service TEXT NOT NULL,
    slot TEXT NOT NULL,
    node TEXT NOT NULL,
    spec_hash TEXT NOT NULL,
    port INTEGER,
    pid INTEGER,
    state TEXT NOT NULL,
    ready INTEGER NOT NULL DEFAULT 0,
    restarts INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL
);
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    environment TEXT NOT NULL,
    object TEXT NOT NULL,
    reason TEXT NOT NULL,
    message TEXT NOT NULL
);
"#,
    r#"
CREATE TABLE node_overrides (
    node TEXT PRIMARY KEY,
    availability TEXT NOT NULL
);
"#,
    r#"
ALTER TABLE instances ADD COLUMN ports TEXT NOT NULL DEFAULT '{}';
"#,
    r#"
ALTER TABLE instances ADD COLUMN assignment TEXT;
ALTER TABLE instances ADD COLUMN previous TEXT;
"#,
    r#"
CREATE TABLE releases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    environment TEXT NOT NULL,
    revision TEXT NOT NULL,
    summary TEXT NOT NULL,
    previous TEXT,
    trigger TEXT NOT NULL,
    services TEXT NOT NULL,
    snapshot TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at INTEGER,
    result TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    revert TEXT
);
CREATE INDEX releases_by_environment ON releases (environment, id);
"#,
    r#"
CREATE TABLE redeploys (
    environment TEXT NOT NULL,
    service TEXT NOT NULL,
    generation INTEGER NOT NULL,
    PRIMARY KEY (environment, service)
);
"#,
    r#"
CREATE TABLE tokens (
    name TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    scopes TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    who TEXT NOT NULL,
    origin TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE promotions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT UNIQUE,
    source TEXT NOT NULL,
    target TEXT NOT NULL,
    services TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    source_revision TEXT,
    changes TEXT NOT NULL DEFAULT '[]',
    commit_id TEXT,
    branch TEXT,
    preview TEXT,
    requested_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
"#,
    r#"
CREATE TABLE git_writes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    request TEXT NOT NULL,
    key TEXT UNIQUE,
    token TEXT NOT NULL,
    state TEXT NOT NULL,
    result TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
"#,
    // Applied objects are each engine's own; an engine may keep what it made for an
    // object (its inventory) beside it.
    r#"
ALTER TABLE objects ADD COLUMN engine TEXT NOT NULL DEFAULT 'local';
ALTER TABLE objects ADD COLUMN made TEXT NOT NULL DEFAULT '[]';
"#,
    // Keyed by engine too: one process runs several engines, and an environment
    // moving from one to another is, for a pass, applied by both.
    r#"
CREATE TABLE objects_by_engine (
    engine TEXT NOT NULL,
    environment TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    managed INTEGER NOT NULL,
    made TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (engine, environment, kind, name)
);
INSERT INTO objects_by_engine (engine, environment, kind, name, value, managed, made)
    SELECT engine, environment, kind, name, value, managed, made FROM objects;
DROP TABLE objects;
ALTER TABLE objects_by_engine RENAME TO objects;
"#,
];

/// Events kept by default; older ones are dropped as new ones arrive.
const EVENTS_KEPT: i64 = 10_000;

/// Now, in Unix milliseconds (what every time in the store is).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// An environment's sync state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvironmentStatus {
    pub name: String,
    /// The revision in force, if any.
    pub revision: Option<String>,
    pub summary: Option<String>,
    pub status: SyncStatus,
    /// One line saying why, for `drover status`.
    pub message: String,
}

/// What is known of a release when it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRelease {
    pub environment: String,
    pub revision: String,
    pub summary: String,
    pub previous: Option<String>,
    pub trigger: Trigger,
    pub services: Vec<String>,
    pub snapshot: String,
}

/// One release: a revision applied to an environment, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub id: i64,
    pub environment: String,
    pub revision: String,
    pub summary: String,
    /// The revision in force before (the one a rollback returns to).
    pub previous: Option<String>,
    pub trigger: Trigger,
    /// The services the release changed.
    pub services: Vec<String>,
    /// The environment's applied objects before the release (normalized JSON), which a
    /// rollback applies again.
    pub snapshot: String,
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
    pub result: ReleaseResult,
    pub reason: String,
    /// The revert commit written to Git after a rollback.
    pub revert: Option<String>,
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub at_ms: i64,
    pub environment: String,
    pub object: String,
    pub reason: String,
    pub message: String,
}

/// The state database.
#[derive(Debug)]
pub struct Store {
    db: Connection,
    events_kept: i64,
}

/// Opens (creating and migrating as needed) the database at `path`. The controller's
/// [`Store`] and the local engine's [`LocalState`] each hold a connection to it.
fn connect(path: &Path) -> Result<Connection> {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    // Token hashes and the audit trail are the owner's alone: the database is 0600,
    // and SQLite gives its -wal and -shm files the database file's mode.
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path);
        if let Ok(file) = file {
            let _ = file.set_permissions(std::fs::Permissions::from_mode(0o600));
        }
    }
    let db = Connection::open(path)?;
    // WAL: readers never block the writer; `synchronous=NORMAL` is crash-safe in WAL.
    db.pragma_update(None, "journal_mode", "WAL")?;
    db.pragma_update(None, "synchronous", "NORMAL")?;
    db.busy_timeout(std::time::Duration::from_secs(5))?;
    // Two connections may open it at once: the migrations run in one immediate
    // transaction, so only one of them migrates.
    let tx = rusqlite::Transaction::new_unchecked(&db, rusqlite::TransactionBehavior::Immediate)?;
    let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(migration)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
    }
    tx.commit()?;
    Ok(db)
}

fn kind_of(text: &str) -> Result<Kind> {
    Kind::parse(text).ok_or_else(|| StoreError::Corrupt(format!("unknown kind {text}")))
}

impl Store {
    /// Opens (creating and migrating as needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Store> {
        Ok(Store {
            db: connect(path)?,
            events_kept: EVENTS_KEPT,
        })
    }

    /// Records a release that starts now (`progressing`) and keeps the environment's
    /// newest `keep` releases; returns its id.
    pub fn start_release(&self, r: &NewRelease, keep: usize) -> Result<i64> {
        self.db.execute(
            "INSERT INTO releases (environment, revision, summary, previous, trigger, services, snapshot, started_at, result, reason)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, '')",
            params![r.environment, r.revision, r.summary, r.previous, Text(r.trigger),
                serde_json::to_string(&r.services).expect("names serialize"), r.snapshot, now_ms(),
                Text(ReleaseResult::Progressing)],
        )?;
        let id = self.db.last_insert_rowid();
        self.db.execute(
            "DELETE FROM releases WHERE environment = ?1 AND id NOT IN
               (SELECT id FROM releases WHERE environment = ?1 ORDER BY id DESC LIMIT ?2)",
            params![r.environment, keep.max(1) as i64],
        )?;
        Ok(id)
    }

    /// Ends a release with its result and why.
    pub fn end_release(&self, id: i64, result: ReleaseResult, reason: &str) -> Result<()> {
        self.db.execute(
            "UPDATE releases SET ended_at = ?2, result = ?3, reason = ?4 WHERE id = ?1",
            params![id, now_ms(), Text(result), reason],
        )?;
        Ok(())
    }

    /// Sets when a release started and ended, as another record says (a release
    /// carried over from another replica keeps its times).
    pub fn set_release_times(&self, id: i64, started_ms: i64, ended_ms: Option<i64>) -> Result<()> {
        self.db.execute(
            "UPDATE releases SET started_at = ?2, ended_at = ?3 WHERE id = ?1",
            params![id, started_ms, ended_ms],
        )?;
        Ok(())
    }

    /// Records the revert commit of a rolled-back release.
    pub fn set_revert(&self, id: i64, commit: &str) -> Result<()> {
        self.db.execute(
            "UPDATE releases SET revert = ?2 WHERE id = ?1",
            params![id, commit],
        )?;
        Ok(())
    }

    /// An environment's newest `limit` releases, newest first.
    pub fn releases(&self, environment: &str, limit: usize) -> Result<Vec<Release>> {
        let mut stmt = self.db.prepare(
            "SELECT id, environment, revision, summary, previous, trigger, services, snapshot, started_at, ended_at, result, reason, revert
             FROM releases WHERE environment = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![environment, limit as i64], |r| {
            Ok(Release {
                id: r.get(0)?,
                environment: r.get(1)?,
                revision: r.get(2)?,
                summary: r.get(3)?,
                previous: r.get(4)?,
                trigger: r.get::<_, Text<Trigger>>(5)?.0,
                services: serde_json::from_str(&r.get::<_, String>(6)?).unwrap_or_default(),
                snapshot: r.get(7)?,
                started_ms: r.get(8)?,
                ended_ms: r.get(9)?,
                result: r.get::<_, Text<ReleaseResult>>(10)?.0,
                reason: r.get(11)?,
                revert: r.get(12)?,
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// Keeps at most `n` events (default 10,000).
    pub fn keep_events(mut self, n: usize) -> Store {
        self.events_kept = n as i64;
        self
    }

    /// Records an environment's sync state.
    pub fn set_environment(&self, status: &EnvironmentStatus) -> Result<()> {
        self.db.execute(
            "INSERT INTO environments (name, revision, summary, status, message, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(name) DO UPDATE SET revision = ?2, summary = ?3, status = ?4, message = ?5, updated_at = ?6",
            params![status.name, status.revision, status.summary, Text(status.status), status.message, now_ms()],
        )?;
        Ok(())
    }

    /// Every environment's sync state, by name.
    pub fn environments(&self) -> Result<Vec<EnvironmentStatus>> {
        self.environments_named(None)
    }

    /// The record of the environment `name`, if there is one.
    pub fn environment(&self, name: &str) -> Result<Option<EnvironmentStatus>> {
        Ok(self.environments_named(Some(name))?.pop())
    }

    /// Every environment's record, or `name`'s alone.
    fn environments_named(&self, name: Option<&str>) -> Result<Vec<EnvironmentStatus>> {
        let mut stmt = self.db.prepare(
            "SELECT name, revision, summary, status, message FROM environments
             WHERE ?1 IS NULL OR name = ?1 ORDER BY name",
        )?;
        let rows = stmt.query_map(params![name], |r| {
            Ok(EnvironmentStatus {
                name: r.get(0)?,
                revision: r.get(1)?,
                summary: r.get(2)?,
                status: r.get::<_, Text<SyncStatus>>(3)?.0,
                message: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// The newest events, newest first.
    pub fn events(&self, limit: usize) -> Result<Vec<Event>> {
        Ok(self
            .events_where("1 ORDER BY id DESC LIMIT ?1", limit as i64)?
            .into_iter()
            .map(|(_, e)| e)
            .collect())
    }

    /// The events recorded after the one numbered `after` (0: all kept), oldest first,
    /// with their numbers: for whoever passes them on (Kubernetes Events).
    pub fn events_after(&self, after: i64) -> Result<Vec<(i64, Event)>> {
        self.events_where("id > ?1 ORDER BY id", after)
    }

    /// The number of the newest event (0 when there is none).
    pub fn last_event_id(&self) -> Result<i64> {
        Ok(self
            .db
            .query_row("SELECT COALESCE(MAX(id), 0) FROM events", [], |r| r.get(0))?)
    }

    fn events_where(&self, clause: &str, value: i64) -> Result<Vec<(i64, Event)>> {
        let mut stmt = self.db.prepare(&format!(
            "SELECT id, at, environment, object, reason, message FROM events WHERE {clause}"
        ))?;
        let rows = stmt.query_map(params![value], |r| {
            Ok((
                r.get(0)?,
                Event {
                    at_ms: r.get(1)?,
                    environment: r.get(2)?,
                    object: r.get(3)?,
                    reason: r.get(4)?,
                    message: r.get(5)?,
                },
            ))
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }
}
