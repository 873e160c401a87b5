//! The state directory shared by `drover up`, its agents and the CLI: where the
//! database, the API address and token, pid files and instance logs live.
//!
//! ```text
//! STATE/drover.db                      the store (SQLite)
//! STATE/api, STATE/api-token           where the API listens; its write token (0600)
//! STATE/lock                           held by the running control plane
//! STATE/git/                           mirrors of remote config repos
//! ```
//!
//! An engine keeps its own files beside these (the local engine's are in
//! `drover_local::files`).

use std::io::Write;
use std::path::{Path, PathBuf};

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> StateDir {
        StateDir { root: root.into() }
    }

    /// `$DROVER_STATE_DIR`, else `$XDG_STATE_HOME/drover`, else `~/.local/state/drover`.
    pub fn default_root() -> PathBuf {
        if let Some(dir) = std::env::var_os("DROVER_STATE_DIR") {
            return dir.into();
        }
        if let Some(dir) = std::env::var_os("XDG_STATE_HOME") {
            return PathBuf::from(dir).join("drover");
        }
        let home = std::env::var_os("HOME").map_or_else(std::env::temp_dir, PathBuf::from);
        home.join(".local/state/drover")
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn database(&self) -> PathBuf {
        self.root.join("drover.db")
    }
    pub fn git_cache(&self) -> PathBuf {
        self.root.join("git")
    }
    pub fn api_file(&self) -> PathBuf {
        self.root.join("api")
    }
    pub fn token_file(&self) -> PathBuf {
        self.root.join("api-token")
    }
    pub fn lock_file(&self) -> PathBuf {
        self.root.join("lock")
    }
    /// The API's base URL, as the running control plane wrote it.
    pub fn api_url(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.api_file()).ok()?;
        Some(text.trim().to_owned()).filter(|t| !t.is_empty())
    }

    /// The write token: `$DROVER_API_TOKEN`, else the state directory's.
    pub fn token(&self) -> Option<String> {
        if let Ok(token) = std::env::var("DROVER_API_TOKEN") {
            return Some(token);
        }
        let text = std::fs::read_to_string(self.token_file()).ok()?;
        Some(text.trim().to_owned()).filter(|t| !t.is_empty())
    }

    /// The token, created (random, readable by the owner only) on first use.
    pub fn ensure_token(&self) -> std::io::Result<String> {
        if let Some(token) = self.token() {
            return Ok(token);
        }
        let token = crate::random_hex(24)?;
        std::fs::create_dir_all(&self.root)?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode_0600()
            .open(self.token_file())?;
        file.write_all(token.as_bytes())?;
        Ok(token)
    }
}

trait Private {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Private for std::fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::mode(self, 0o600)
    }
}

/// A directory in memory, never on disk, for what must not outlive the machine's
/// uptime (secret values): `$XDG_RUNTIME_DIR`, else `/dev/shm`, when either exists.
pub fn memory_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_dir())
        .or_else(|| Some(PathBuf::from("/dev/shm")).filter(|d| d.is_dir()))
}

/// Writes a file so that readers see the old content or the new, never half.
pub fn write_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents)?;
    std::fs::rename(tmp, path)
}
