//! What an engine has applied: each Drover object as last applied (normalized), whether
//! Drover created it (the inventory: the only objects it may prune) and what the engine
//! made for it in the world (its own inventory, such as Kubernetes objects). Every
//! engine keeps its own rows, by the name it gives.

use drover_diff::ObjectKey;
use drover_plan::{Action, Observed};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use crate::{Result, StoreError, connect, kind_of};

/// One engine's applied objects, on a connection of its own.
#[derive(Debug)]
pub struct Applied {
    db: Connection,
    engine: &'static str,
}

impl Applied {
    /// Opens (creating and migrating as needed) the database at `path`, for the
    /// engine named `engine`.
    pub fn open(path: &std::path::Path, engine: &'static str) -> Result<Applied> {
        Ok(Applied {
            db: connect(path)?,
            engine,
        })
    }

    /// Records the effect of one plan action; `made` is what the engine made for the
    /// object, kept as given (JSON text).
    pub fn record(&self, action: &Action, made: &str) -> Result<()> {
        record(&self.db, self.engine, action, made)
    }

    /// The applied objects and the inventory.
    pub fn observed(&self) -> Result<Observed> {
        observed(&self.db, self.engine)
    }

    /// One applied object's value, if the engine has applied it.
    pub fn value(&self, key: &ObjectKey) -> Result<Option<Value>> {
        let text: Option<String> = self
            .db
            .query_row(
                "SELECT value FROM objects WHERE engine = ?1 AND environment = ?2 AND kind = ?3 AND name = ?4",
                params![self.engine, key.environment, key.kind.as_str(), key.name],
                |r| r.get(0),
            )
            .optional()?;
        text.map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()
    }

    /// What the engine made for each of `environment`'s objects, as recorded with them.
    pub fn made_in(&self, environment: &str) -> Result<Vec<String>> {
        let mut stmt = self.db.prepare(
            "SELECT made FROM objects WHERE engine = ?1 AND environment = ?2 AND made IS NOT NULL",
        )?;
        let rows = stmt.query_map(params![self.engine, environment], |r| r.get(0))?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// What the engine made for an object, as recorded with it.
    pub fn made(&self, key: &ObjectKey) -> Result<Option<String>> {
        Ok(self
            .db
            .query_row(
                "SELECT made FROM objects WHERE engine = ?1 AND environment = ?2 AND kind = ?3 AND name = ?4",
                params![self.engine, key.environment, key.kind.as_str(), key.name],
                |r| r.get(0),
            )
            .optional()?)
    }
}

pub(crate) fn record(db: &Connection, engine: &str, action: &Action, made: &str) -> Result<()> {
    let k = action.key();
    match action {
        Action::Create { value, .. } | Action::Update { value, .. } => {
            db.execute(
                "INSERT INTO objects (environment, kind, name, value, managed, engine, made)
                 VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6)
                 ON CONFLICT(engine, environment, kind, name) DO UPDATE SET value = ?4, made = ?6",
                params![
                    k.environment,
                    k.kind.as_str(),
                    k.name,
                    value.to_string(),
                    engine,
                    made
                ],
            )?;
        }
        Action::Delete { .. } => {
            db.execute(
                "DELETE FROM objects WHERE environment = ?1 AND kind = ?2 AND name = ?3 AND engine = ?4",
                params![k.environment, k.kind.as_str(), k.name, engine],
            )?;
        }
    }
    Ok(())
}

pub(crate) fn observed(db: &Connection, engine: &str) -> Result<Observed> {
    let mut stmt = db
        .prepare("SELECT environment, kind, name, value, managed FROM objects WHERE engine = ?1")?;
    let mut observed = Observed::default();
    let rows = stmt.query_map([engine], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, bool>(4)?,
        ))
    })?;
    for row in rows {
        let (environment, kind, name, value, managed) = row?;
        let key = ObjectKey {
            environment,
            kind: kind_of(&kind)?,
            name,
        };
        let value: Value =
            serde_json::from_str(&value).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        if managed {
            observed.inventory.insert(key.clone());
        }
        observed.objects.insert(key, value);
    }
    Ok(observed)
}
