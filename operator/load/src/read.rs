//! Reading a config repo's YAML files from a directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A file of the repo, already read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Path relative to the repo root, with `/` separators.
    pub path: String,
    /// UTF-8 content.
    pub text: String,
    /// An id of the content when one is known for free (a Git blob id): a file with the
    /// same path and id as one already parsed is not parsed again.
    pub id: Option<Arc<str>>,
}

impl SourceFile {
    /// A file without a content id.
    pub fn new(path: impl Into<String>, text: impl Into<String>) -> SourceFile {
        SourceFile {
            path: path.into(),
            text: text.into(),
            id: None,
        }
    }
}

/// The repo could not be read at all (as opposed to being invalid).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The path is not a directory.
    #[error("{0} is not a directory")]
    NotADirectory(PathBuf),
    /// A file or directory could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A YAML file is not UTF-8.
    #[error("{0} is not UTF-8 text")]
    NotUtf8(PathBuf),
}

fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

/// Reads every `.yaml`/`.yml` file under `clusters/` and `environments/`, sorted by
/// path. Hidden files and folders (starting with `.`) are skipped.
pub fn read_dir(root: &Path) -> Result<Vec<SourceFile>, ReadError> {
    if !root.is_dir() {
        return Err(ReadError::NotADirectory(root.to_owned()));
    }
    let mut paths = Vec::new();
    for top in ["clusters", "environments"] {
        let dir = root.join(top);
        if dir.is_dir() {
            walk(&dir, &mut paths)?;
        }
    }
    paths.sort();
    // Reading thousands of small files is latency-bound: do it on all cores.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(paths.len().div_ceil(256))
        .max(1);
    let chunk = paths.len().div_ceil(threads).max(1);
    let read = |path: &PathBuf| -> Result<SourceFile, ReadError> {
        let bytes = std::fs::read(path).map_err(io(path))?;
        let text = String::from_utf8(bytes).map_err(|_| ReadError::NotUtf8(path.clone()))?;
        let relative = path.strip_prefix(root).unwrap_or(path);
        let parts: Vec<String> = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        Ok(SourceFile::new(parts.join("/"), text))
    };
    std::thread::scope(|scope| {
        let handles: Vec<_> = paths
            .chunks(chunk)
            .map(|slice| scope.spawn(move || slice.iter().map(read).collect::<Result<Vec<_>, _>>()))
            .collect();
        let mut files = Vec::with_capacity(paths.len());
        for handle in handles {
            files.extend(handle.join().expect("a reader thread does not panic")?);
        }
        Ok(files)
    })
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ReadError + '_ {
    move |source| ReadError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Collects the YAML files below `dir`, skipping hidden entries.
fn walk(dir: &Path, paths: &mut Vec<PathBuf>) -> Result<(), ReadError> {
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if entry.file_type().map_err(io(&path))?.is_dir() {
            walk(&path, paths)?;
        } else if is_yaml(&path) {
            paths.push(path);
        }
    }
    Ok(())
}
