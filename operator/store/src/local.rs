//! The local engine's own state: the objects it has applied and the inventory, its
//! instances and where they run, node availability overrides and redeploy generations.
//! A connection of its own to the state database, beside the controller's [`Store`].

use std::path::Path;

use drover_plan::{Action, Observed};
use rusqlite::{Connection, OptionalExtension, params};

use crate::{Result, connect, now_ms};

/// An instance as the control plane records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRecord {
    pub id: String,
    pub environment: String,
    pub service: String,
    pub slot: String,
    pub node: String,
    pub spec_hash: String,
    pub port: Option<u16>,
    /// Every port allocated to the instance, by name.
    pub ports: std::collections::BTreeMap<String, u16>,
    /// What its node is told to run, as the engine encodes it (JSON).
    pub assignment: Option<String>,
    /// During a start-first update: what ran before, kept running until the new spec is
    /// ready (JSON, as `assignment`).
    pub previous: Option<String>,
    pub pid: Option<u32>,
    /// `starting`, `running`, `exited`, `stopping`.
    pub state: String,
    pub ready: bool,
    pub restarts: u32,
}

/// The name the local engine's applied objects are kept under.
const LOCAL: &str = "local";

/// The local engine's state.
#[derive(Debug)]
pub struct LocalState {
    db: Connection,
}

impl LocalState {
    /// Opens (creating and migrating as needed) the database at `path`.
    pub fn open(path: &Path) -> Result<LocalState> {
        Ok(LocalState { db: connect(path)? })
    }

    pub(crate) fn db(&self) -> &Connection {
        &self.db
    }

    /// Sets (or with `None` clears) an operator's override of a node's availability.
    pub fn set_availability_override(&self, node: &str, availability: Option<&str>) -> Result<()> {
        match availability {
            Some(a) => self.db.execute(
                "INSERT INTO node_overrides (node, availability) VALUES (?1, ?2)
                 ON CONFLICT(node) DO UPDATE SET availability = ?2",
                params![node, a],
            )?,
            None => self
                .db
                .execute("DELETE FROM node_overrides WHERE node = ?1", params![node])?,
        };
        Ok(())
    }

    /// Every availability override, by node.
    pub fn availability_overrides(&self) -> Result<std::collections::BTreeMap<String, String>> {
        let mut stmt = self
            .db
            .prepare("SELECT node, availability FROM node_overrides")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// Asks for every instance of a service to be replaced (same spec); returns the
    /// service's new redeploy generation.
    pub fn redeploy(&self, environment: &str, service: &str) -> Result<u64> {
        self.db.execute(
            "INSERT INTO redeploys (environment, service, generation) VALUES (?1, ?2, 1)
             ON CONFLICT(environment, service) DO UPDATE SET generation = generation + 1",
            params![environment, service],
        )?;
        let generation: i64 = self.db.query_row(
            "SELECT generation FROM redeploys WHERE environment = ?1 AND service = ?2",
            params![environment, service],
            |r| r.get(0),
        )?;
        Ok(generation as u64)
    }

    /// Every service's redeploy generation.
    pub fn redeploys(&self) -> Result<std::collections::BTreeMap<(String, String), u64>> {
        let mut stmt = self
            .db
            .prepare("SELECT environment, service, generation FROM redeploys")?;
        let rows = stmt.query_map([], |r| {
            Ok(((r.get(0)?, r.get(1)?), r.get::<_, i64>(2)? as u64))
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// Records the effect of one plan action on the applied objects (a creation is
    /// recorded as Drover's: it joins the inventory).
    pub fn record(&self, action: &Action) -> Result<()> {
        crate::applied::record(&self.db, LOCAL, action, "[]")
    }

    /// The applied objects and the inventory, as the planner wants them.
    pub fn observed(&self) -> Result<Observed> {
        crate::applied::observed(&self.db, LOCAL)
    }

    /// Inserts or replaces an instance.
    pub fn put_instance(&self, i: &InstanceRecord) -> Result<()> {
        self.db.execute(
            "INSERT INTO instances (id, environment, service, slot, node, spec_hash, port, pid, state, ready, restarts, updated_at, ports, assignment, previous)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
             ON CONFLICT(id) DO UPDATE SET node = ?5, spec_hash = ?6, port = ?7, pid = ?8, state = ?9, ready = ?10, restarts = ?11, updated_at = ?12, ports = ?13, assignment = ?14, previous = ?15",
            params![i.id, i.environment, i.service, i.slot, i.node, i.spec_hash, i.port, i.pid, i.state, i.ready, i.restarts, now_ms(), serde_json::to_string(&i.ports).expect("ports serialize"), i.assignment, i.previous],
        )?;
        Ok(())
    }

    /// Forgets an instance.
    pub fn remove_instance(&self, id: &str) -> Result<()> {
        self.db
            .execute("DELETE FROM instances WHERE id = ?1", params![id])?;
        Ok(())
    }

    /// One instance.
    pub fn instance(&self, id: &str) -> Result<Option<InstanceRecord>> {
        Ok(self
            .db
            .query_row(
                &format!("{INSTANCE_COLUMNS} WHERE id = ?1"),
                params![id],
                instance_row,
            )
            .optional()?)
    }

    /// Every instance, by environment, service and slot.
    pub fn instances(&self) -> Result<Vec<InstanceRecord>> {
        let mut stmt = self.db.prepare(&format!(
            "{INSTANCE_COLUMNS} ORDER BY environment, service, slot"
        ))?;
        let rows = stmt.query_map([], instance_row)?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }
}

const INSTANCE_COLUMNS: &str = "SELECT id, environment, service, slot, node, spec_hash, port, pid, state, ready, restarts, ports, assignment, previous FROM instances";

fn instance_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<InstanceRecord> {
    Ok(InstanceRecord {
        id: r.get(0)?,
        environment: r.get(1)?,
        service: r.get(2)?,
        slot: r.get(3)?,
        node: r.get(4)?,
        spec_hash: r.get(5)?,
        port: r.get(6)?,
        ports: serde_json::from_str(&r.get::<_, String>(11)?).unwrap_or_default(),
        assignment: r.get(12)?,
        previous: r.get(13)?,
        pid: r.get(7)?,
        state: r.get(8)?,
        ready: r.get(9)?,
        restarts: r.get(10)?,
    })
}
