//! Noticing commits in a local repository: a file-system watch on its refs, so a new
//! commit is seen within milliseconds instead of at the next poll.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};

use crate::SourceError;

/// A running watch on a repository's refs. Dropping it stops the watch.
pub struct RefWatch {
    _watcher: notify::RecommendedWatcher,
    changes: Receiver<()>,
}

impl std::fmt::Debug for RefWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefWatch")
    }
}

/// Does this path change what a ref points at? Lock files are the write in progress;
/// the rename that follows them is the change.
fn moves_a_ref(git_dir: &Path, path: &Path) -> bool {
    let Ok(relative) = path.strip_prefix(git_dir) else {
        return false;
    };
    if path.extension().is_some_and(|e| e == "lock") {
        return false;
    }
    relative.starts_with("refs")
        || relative == Path::new("HEAD")
        || relative == Path::new("packed-refs")
}

/// Watches `git_dir` (a `.git` directory or a bare repository) for moved refs.
pub fn watch_refs(git_dir: &Path) -> Result<RefWatch, SourceError> {
    let git_dir: PathBuf = git_dir
        .canonicalize()
        .unwrap_or_else(|_| git_dir.to_owned());
    let error = |e: notify::Error| SourceError::Open {
        location: git_dir.display().to_string(),
        message: format!("cannot watch: {e}"),
    };
    let (tx, changes) = mpsc::channel();
    let root = git_dir.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Reading a ref is an access event; only writes move refs.
        if let Ok(event) = event
            && matches!(
                event.kind,
                EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
            )
            && event.paths.iter().any(|p| moves_a_ref(&root, p))
        {
            let _ = tx.send(());
        }
    })
    .map_err(error)?;
    // HEAD and packed-refs live directly in the git directory; loose refs below refs/.
    watcher
        .watch(&git_dir, RecursiveMode::NonRecursive)
        .map_err(error)?;
    watcher
        .watch(&git_dir.join("refs"), RecursiveMode::Recursive)
        .map_err(error)?;
    Ok(RefWatch {
        _watcher: watcher,
        changes,
    })
}

impl RefWatch {
    /// Waits up to `timeout` for a change; a burst of changes (a commit touches several
    /// files, a push several refs) counts as one. True when something changed.
    pub fn wait(&self, timeout: Duration) -> bool {
        match self.changes.recv_timeout(timeout) {
            Ok(()) => {
                // Coalesce what arrives with it.
                while self.changes.recv_timeout(Duration::from_millis(5)).is_ok() {}
                true
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => false,
        }
    }
}
