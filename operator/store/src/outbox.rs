//! The Git outbox: every commit Drover is to write (a revert, a restore, a promotion, a
//! deploy) is recorded here before it is attempted, with a token its commit carries as
//! a `Drover-Write:` trailer. After a crash the pending ones are carried out, and the
//! token tells one already in Git from one still to write: never two commits for one.

use rusqlite::{OptionalExtension, params};

use drover_release::{WriteKind, WriteState};

use crate::{Result, Store, Text, now_ms};

/// One queued Git write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitWriteRecord {
    pub id: i64,
    pub kind: WriteKind,
    /// JSON: what to write (the kind's request).
    pub request: String,
    /// What makes it unique, when something does (`promotion:12`, a deploy's
    /// Idempotency-Key): asking again with it finds this write.
    pub key: Option<String>,
    /// Random: the `Drover-Write:` trailer of its commit.
    pub token: String,
    pub state: WriteState,
    /// The commit written, or why it could not be.
    pub result: String,
    pub created_ms: i64,
}

const COLUMNS: &str =
    "SELECT id, kind, request, key, token, state, result, created_at FROM git_writes";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<GitWriteRecord> {
    Ok(GitWriteRecord {
        id: r.get(0)?,
        kind: r.get::<_, Text<WriteKind>>(1)?.0,
        request: r.get(2)?,
        key: r.get(3)?,
        token: r.get(4)?,
        state: r.get::<_, Text<WriteState>>(5)?.0,
        result: r.get(6)?,
        created_ms: r.get(7)?,
    })
}

impl Store {
    /// Records a pending write, or returns the one already recorded under `key`.
    pub fn queue_write(
        &self,
        kind: WriteKind,
        request: &str,
        key: Option<&str>,
        token: &str,
    ) -> Result<GitWriteRecord> {
        if let Some(key) = key
            && let Some(existing) = self.write_by_key(key)?
        {
            return Ok(existing);
        }
        let now = now_ms();
        self.db.execute(
            "INSERT INTO git_writes (kind, request, key, token, state, result, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, '', ?6, ?6)",
            params![Text(kind), request, key, token, Text(WriteState::Pending), now],
        )?;
        let id = self.db.last_insert_rowid();
        Ok(GitWriteRecord {
            id,
            kind,
            request: request.to_owned(),
            key: key.map(str::to_owned),
            token: token.to_owned(),
            state: WriteState::Pending,
            result: String::new(),
            created_ms: now,
        })
    }

    /// The write recorded under `key`.
    pub fn write_by_key(&self, key: &str) -> Result<Option<GitWriteRecord>> {
        Ok(self
            .db
            .query_row(&format!("{COLUMNS} WHERE key = ?1"), params![key], row)
            .optional()?)
    }

    /// The write whose commit carries `token` as its `Drover-Write:` trailer: how a
    /// commit in Git is known to be Drover's own (the token is random and only here).
    pub fn write_by_token(&self, token: &str) -> Result<Option<GitWriteRecord>> {
        Ok(self
            .db
            .query_row(&format!("{COLUMNS} WHERE token = ?1"), params![token], row)
            .optional()?)
    }

    /// Pending writes of these kinds, oldest first.
    pub fn pending_writes(&self, kinds: &[WriteKind]) -> Result<Vec<GitWriteRecord>> {
        let mut stmt = self
            .db
            .prepare(&format!("{COLUMNS} WHERE state = ?1 ORDER BY id"))?;
        let rows = stmt.query_map(params![Text(WriteState::Pending)], row)?;
        let mut pending = Vec::new();
        for r in rows {
            let r = r?;
            if kinds.contains(&r.kind) {
                pending.push(r);
            }
        }
        Ok(pending)
    }

    /// Ends a write: written (the result is its commit) or failed (why).
    pub fn finish_write(&self, id: i64, state: WriteState, result: &str) -> Result<()> {
        self.db.execute(
            "UPDATE git_writes SET state = ?2, result = ?3, updated_at = ?4 WHERE id = ?1",
            params![id, Text(state), result, now_ms()],
        )?;
        // Ended writes are history: keep the last thousand.
        self.db.execute(
            "DELETE FROM git_writes WHERE state != ?1 AND id <= (SELECT MAX(id) FROM git_writes) - 1000",
            params![Text(WriteState::Pending)],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_is_queued_once_per_key_and_pending_until_finished() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        let first = store
            .queue_write(WriteKind::Deploy, "{}", Some("deploy:k1"), "t1")
            .unwrap();
        let again = store
            .queue_write(WriteKind::Deploy, "{\"other\":1}", Some("deploy:k1"), "t2")
            .unwrap();
        assert_eq!(first, again, "the same key is the same write");
        let revert = store
            .queue_write(WriteKind::Revert, "{}", None, "t3")
            .unwrap();
        let pending = store.pending_writes(&[WriteKind::Revert]).unwrap();
        assert_eq!(pending, std::slice::from_ref(&revert));
        store
            .finish_write(revert.id, WriteState::Written, "abc")
            .unwrap();
        assert!(
            store
                .pending_writes(&[WriteKind::Revert])
                .unwrap()
                .is_empty()
        );
        assert_eq!(store.pending_writes(&[WriteKind::Deploy]).unwrap().len(), 1);
    }
}
