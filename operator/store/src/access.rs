//! API tokens (only their SHA-256 hashes are kept) and the audit trail of writes.

use rusqlite::{OptionalExtension, params};

use crate::{Result, Store, now_ms};

/// A named API token: its hash and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub name: String,
    /// Hex SHA-256 of the token; the token itself is never stored.
    pub hash: String,
    /// `read`, `promote:production`, `rollback:*`, `admin`, …
    pub scopes: Vec<String>,
    pub created_ms: i64,
}

/// One write through the API: who did what, when, from where, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditEntry {
    pub at_ms: i64,
    /// The token's name (`admin` for the state directory's token).
    pub who: String,
    /// The caller's address and user agent.
    pub origin: String,
    /// `promote`, `rollback`, `scale`, `redeploy`, `deploy`, `node-availability`, `token-create`, …
    pub action: String,
    /// What it acted on (`staging/web`, `staging→production`, …).
    pub target: String,
    /// `ok`, `refused` (403), `rejected` (409/422) or `error`.
    pub outcome: String,
    pub detail: String,
}

impl Store {
    /// Adds a token; fails when the name or hash is taken.
    pub fn add_token(&self, t: &TokenRecord) -> Result<()> {
        self.insert_token(t, "")
    }

    /// Adds a token, or replaces the one of the same name (an agent's, at each start).
    pub fn put_token(&self, t: &TokenRecord) -> Result<()> {
        self.insert_token(
            t,
            " ON CONFLICT(name) DO UPDATE SET hash = excluded.hash, scopes = excluded.scopes",
        )
    }

    fn insert_token(&self, t: &TokenRecord, on_conflict: &str) -> Result<()> {
        self.db.execute(
            &format!(
                "INSERT INTO tokens (name, hash, scopes, created_at) VALUES (?1, ?2, ?3, ?4){on_conflict}"
            ),
            params![
                t.name,
                t.hash,
                serde_json::to_string(&t.scopes).expect("scopes serialize"),
                now_ms()
            ],
        )?;
        Ok(())
    }

    /// Removes a token; whether it existed.
    pub fn remove_token(&self, name: &str) -> Result<bool> {
        Ok(self
            .db
            .execute("DELETE FROM tokens WHERE name = ?1", params![name])?
            > 0)
    }

    /// Every token, by name.
    pub fn tokens(&self) -> Result<Vec<TokenRecord>> {
        let mut stmt = self
            .db
            .prepare("SELECT name, hash, scopes, created_at FROM tokens ORDER BY name")?;
        let rows = stmt.query_map([], |r| {
            Ok(TokenRecord {
                name: r.get(0)?,
                hash: r.get(1)?,
                scopes: serde_json::from_str(&r.get::<_, String>(2)?).unwrap_or_default(),
                created_ms: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// Whether a token of this name exists.
    pub fn has_token(&self, name: &str) -> Result<bool> {
        Ok(self
            .db
            .query_row(
                "SELECT 1 FROM tokens WHERE name = ?1",
                params![name],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Appends to the audit trail (never trimmed: it is the record of who did what).
    pub fn audit(&self, e: &AuditEntry) -> Result<()> {
        self.db.execute(
            "INSERT INTO audit (at, who, origin, action, target, outcome, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![now_ms(), e.who, e.origin, e.action, e.target, e.outcome, e.detail],
        )?;
        Ok(())
    }

    /// The newest `limit` audit entries, newest first.
    pub fn audit_trail(&self, limit: usize) -> Result<Vec<AuditEntry>> {
        let mut stmt = self.db.prepare(
            "SELECT at, who, origin, action, target, outcome, detail FROM audit ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![limit as i64], |r| {
            Ok(AuditEntry {
                at_ms: r.get(0)?,
                who: r.get(1)?,
                origin: r.get(2)?,
                action: r.get(3)?,
                target: r.get(4)?,
                outcome: r.get(5)?,
                detail: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }
}
