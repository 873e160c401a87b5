//! Promotions: a request to carry one environment's verified artifact versions to
//! another, and where it got to.

use rusqlite::{OptionalExtension, params};

use drover_release::PromotionState;

use crate::{Result, Store, Text, now_ms};

/// One promotion and its state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Promotion {
    pub id: i64,
    /// The caller's `Idempotency-Key`: a retry with the same key is the same promotion.
    pub key: Option<String>,
    pub source: String,
    pub target: String,
    /// The services asked for (empty: all the source has).
    pub services: Vec<String>,
    pub state: PromotionState,
    pub reason: String,
    /// The source's revision whose versions travel.
    pub source_revision: Option<String>,
    /// JSON: what changes in the target, per service.
    pub changes: String,
    /// The commit that carries the versions into the target's files.
    pub commit: Option<String>,
    /// With `mode: pull-request`, the branch holding that commit.
    pub branch: Option<String>,
    /// The `drover preview` Markdown of the change.
    pub preview: Option<String>,
    pub requested_by: String,
    pub created_ms: i64,
    pub updated_ms: i64,
}

const COLUMNS: &str = "SELECT id, idempotency_key, source, target, services, state, reason, source_revision, changes, commit_id, branch, preview, requested_by, created_at, updated_at FROM promotions";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Promotion> {
    Ok(Promotion {
        id: r.get(0)?,
        key: r.get(1)?,
        source: r.get(2)?,
        target: r.get(3)?,
        services: serde_json::from_str(&r.get::<_, String>(4)?).unwrap_or_default(),
        state: r.get::<_, Text<PromotionState>>(5)?.0,
        reason: r.get(6)?,
        source_revision: r.get(7)?,
        changes: r.get(8)?,
        commit: r.get(9)?,
        branch: r.get(10)?,
        preview: r.get(11)?,
        requested_by: r.get(12)?,
        created_ms: r.get(13)?,
        updated_ms: r.get(14)?,
    })
}

impl Store {
    /// Records a new promotion (`pending`) and returns its id.
    pub fn add_promotion(&self, p: &Promotion) -> Result<i64> {
        let now = now_ms();
        self.db.execute(
            "INSERT INTO promotions (idempotency_key, source, target, services, state, reason, requested_by, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
            params![
                p.key,
                p.source,
                p.target,
                serde_json::to_string(&p.services).expect("names serialize"),
                Text(p.state),
                p.reason,
                p.requested_by,
                now
            ],
        )?;
        Ok(self.db.last_insert_rowid())
    }

    /// Writes a promotion's state and what it produced.
    pub fn update_promotion(&self, p: &Promotion) -> Result<()> {
        self.db.execute(
            "UPDATE promotions SET state = ?2, reason = ?3, source_revision = ?4, changes = ?5, commit_id = ?6, branch = ?7, preview = ?8, updated_at = ?9 WHERE id = ?1",
            params![
                p.id,
                Text(p.state),
                p.reason,
                p.source_revision,
                p.changes,
                p.commit,
                p.branch,
                p.preview,
                now_ms()
            ],
        )?;
        Ok(())
    }

    pub fn promotion(&self, id: i64) -> Result<Option<Promotion>> {
        Ok(self
            .db
            .query_row(&format!("{COLUMNS} WHERE id = ?1"), params![id], row)
            .optional()?)
    }

    pub fn promotion_by_key(&self, key: &str) -> Result<Option<Promotion>> {
        Ok(self
            .db
            .query_row(
                &format!("{COLUMNS} WHERE idempotency_key = ?1"),
                params![key],
                row,
            )
            .optional()?)
    }

    /// The newest `limit` promotions, newest first.
    pub fn promotions(&self, limit: usize) -> Result<Vec<Promotion>> {
        let mut stmt = self
            .db
            .prepare(&format!("{COLUMNS} ORDER BY id DESC LIMIT ?1"))?;
        let rows = stmt.query_map(params![limit as i64], row)?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// Promotions still `pending`: asked for, neither gated nor written (a stop
    /// interrupted them), oldest first.
    pub fn pending_promotions(&self) -> Result<Vec<Promotion>> {
        let mut stmt = self
            .db
            .prepare(&format!("{COLUMNS} WHERE state = ?1 ORDER BY id"))?;
        let rows = stmt.query_map(params![Text(PromotionState::Pending)], row)?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// Promotions whose commit is written but whose outcome is not known yet.
    pub fn open_promotions(&self) -> Result<Vec<Promotion>> {
        let mut stmt = self
            .db
            .prepare(&format!("{COLUMNS} WHERE state IN (?1, ?2) ORDER BY id"))?;
        let open = [PromotionState::Committed, PromotionState::Deploying].map(Text);
        let rows = stmt.query_map(params![open[0], open[1]], row)?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }
}
