//! Reading a config repo's YAML files from a directory.

use std::path::{Path, PathBuf};

/// A file of the repo, already read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Path relative to the repo root, with `/` separators.
    pub path: String,
    /// UTF-8 content.
    pub text: String,
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
    matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
}

/// Reads every `.yaml`/`.yml` file under `clusters/` and `environments/`, sorted by
/// path. Hidden files and folders (starting with `.`) are skipped.
pub fn read_dir(root: &Path) -> Result<Vec<SourceFile>, ReadError> {
    if !root.is_dir() {
        return Err(ReadError::NotADirectory(root.to_owned()));
    }
    let mut files = Vec::new();
    for top in ["clusters", "environments"] {
        let dir = root.join(top);
        if dir.is_dir() {
            walk(root, &dir, &mut files)?;
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ReadError + '_ {
    move |source| ReadError::Io { path: path.to_owned(), source }
}

fn walk(root: &Path, dir: &Path, files: &mut Vec<SourceFile>) -> Result<(), ReadError> {
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let file_type = entry.file_type().map_err(io(&path))?;
        if file_type.is_dir() {
            walk(root, &path, files)?;
        } else if is_yaml(&path) {
            let bytes = std::fs::read(&path).map_err(io(&path))?;
            let text = String::from_utf8(bytes).map_err(|_| ReadError::NotUtf8(path.clone()))?;
            let relative = path.strip_prefix(root).unwrap_or(&path);
            let rel: Vec<String> =
                relative.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
            files.push(SourceFile { path: rel.join("/"), text });
        }
    }
    Ok(())
}
