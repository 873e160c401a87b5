//! What makes Drover's own commits safe to retry after a crash: finding a commit by
//! its `Drover-Write:` trailer (so a write already in Git is never written twice), and
//! recovering the lock files a write that died left behind (and only those).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use git2::Oid;

use crate::{GitSource, SourceError};

/// The trailer line every commit Drover writes ends with.
pub fn trailer(token: &str) -> String {
    format!("Drover-Write: {token}")
}

/// Commits looked at, from the tip back, for a write's trailer.
const LOOKED_BACK: usize = 500;

/// How long a lock a live `git` holds is waited for before the write is refused.
const LOCK_WAIT: Duration = Duration::from_secs(10);

impl GitSource {
    /// The commit on the tracked branch (at most 500 back from its tip) whose message
    /// carries `token`'s trailer, if one does: the write is already in Git.
    pub fn find_written(&self, token: &str) -> Result<Option<String>, SourceError> {
        let error = |e: git2::Error| SourceError::Read {
            revision: "tip".into(),
            path: "/".into(),
            message: e.message().to_owned(),
        };
        let line = trailer(token);
        let tip = self.tracked()?;
        let mut walk = self.repo.revwalk().map_err(error)?;
        walk.push(Oid::from_str(&tip.id).map_err(error)?)
            .map_err(error)?;
        for id in walk.take(LOOKED_BACK) {
            let commit = self.repo.find_commit(id.map_err(error)?).map_err(error)?;
            let found = commit
                .message()
                .is_ok_and(|m| m.lines().any(|l| l.trim_end() == line));
            if found {
                return Ok(Some(commit.id().to_string()));
            }
        }
        Ok(None)
    }

    /// The lock files a commit on `branch` takes in this repository's Git directory.
    fn locks(&self, branch: Option<&str>) -> Vec<PathBuf> {
        let git = self.repo.path();
        let reference = self.branch_ref(branch);
        let mut locks = vec![
            git.join(format!("{reference}.lock")),
            git.join("HEAD.lock"),
            git.join("index.lock"),
            git.join("packed-refs.lock"),
        ];
        if self.remote
            && let Some(b) = branch
        {
            locks.push(git.join(format!("refs/remotes/origin/{b}.lock")));
        }
        locks
    }

    /// Before a write: a lock older than this process was left by a write that died
    /// (Drover's own, killed mid-commit), and is removed; a newer one is held by a live
    /// `git`, which is waited for, then reported.
    pub(crate) fn clear_stale_locks(&self, branch: Option<&str>) -> Result<(), SourceError> {
        for lock in self.locks(branch) {
            let Ok(meta) = std::fs::metadata(&lock) else {
                continue;
            };
            if meta.modified().is_ok_and(|at| at < self.opened) {
                std::fs::remove_file(&lock).map_err(|e| SourceError::Write {
                    location: self.shown.clone(),
                    message: format!(
                        "cannot remove {}, left by a write that died: {e}",
                        lock.display()
                    ),
                })?;
                tracing::warn!("removed {}, left by a Git write that died", lock.display());
                continue;
            }
            let deadline = Instant::now() + LOCK_WAIT;
            while lock.exists() {
                if Instant::now() > deadline {
                    return Err(SourceError::Write {
                        location: self.shown.clone(),
                        message: format!(
                            "{} is held by another git process for more than {}s; Drover tries again later",
                            lock.display(),
                            LOCK_WAIT.as_secs()
                        ),
                    });
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }
}
