//! Reading a config repo's YAML files from a directory, and the checks every file
//! passes however it is read (from a directory or a Git revision): it is text, within
//! the size limits, and not a link out of the repo.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::limits::Limits;

/// A file of the repo, already read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Path relative to the repo root, with `/` separators.
    pub path: String,
    /// UTF-8 content (empty when `problem` is set).
    pub text: String,
    /// An id of the content when one is known for free (a Git blob id): a file with the
    /// same path and id as one already parsed is not parsed again.
    pub id: Option<Arc<str>>,
    /// Why the file could not be read as YAML text, if it could not.
    pub problem: Option<FileProblem>,
}

/// Why a file of the repo is not read: each becomes a located diagnostic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileProblem {
    /// Not UTF-8 text (a binary file): where the first bad byte is.
    NotText { line: u32, column: u32 },
    /// Larger than the per-file limit.
    TooLarge { bytes: u64 },
    /// The revision's files together passed the revision limit before this one.
    RevisionTooLarge { bytes: u64 },
    /// A symbolic link whose target is outside the repo or not a regular file in it.
    Symlink { target: String },
    /// Neither a regular file nor a link (a device, a pipe, a socket).
    NotRegular,
}

impl SourceFile {
    /// A file without a content id.
    pub fn new(path: impl Into<String>, text: impl Into<String>) -> SourceFile {
        SourceFile {
            path: path.into(),
            text: text.into(),
            id: None,
            problem: None,
        }
    }

    /// A file that is not read, for `problem`.
    pub fn unreadable(path: impl Into<String>, problem: FileProblem) -> SourceFile {
        SourceFile {
            path: path.into(),
            text: String::new(),
            id: None,
            problem: Some(problem),
        }
    }

    /// A file from its bytes: text when they are UTF-8 within the size limit,
    /// otherwise a file with its problem.
    pub fn from_bytes(path: String, bytes: Vec<u8>, limits: &Limits) -> SourceFile {
        if bytes.len() as u64 > limits.file_bytes {
            return SourceFile::unreadable(
                path,
                FileProblem::TooLarge {
                    bytes: bytes.len() as u64,
                },
            );
        }
        match String::from_utf8(bytes) {
            Ok(text) => SourceFile::new(path, text),
            Err(error) => {
                let good = &error.as_bytes()[..error.utf8_error().valid_up_to()];
                // Valid up to there, so the prefix is text.
                let before = std::str::from_utf8(good).unwrap_or_default();
                let line = before.matches('\n').count() as u32 + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u32 + 1;
                SourceFile::unreadable(path, FileProblem::NotText { line, column })
            }
        }
    }

    /// The same file with a content id.
    pub fn with_id(mut self, id: impl Into<Arc<str>>) -> SourceFile {
        self.id = Some(id.into());
        self
    }
}

/// Where a symbolic link at `link` (a repo path) pointing at `target` leads, as a repo
/// path; `None` when it leads out of the repo (absolute, or `..` past the root).
/// Resolved by its text alone, as Git stores it: nothing on disk is followed.
pub fn resolve_link(link: &str, target: &str) -> Option<String> {
    if target.starts_with('/') || target.contains('\\') || target.contains('\0') {
        return None;
    }
    let mut parts: Vec<&str> = link.split('/').collect();
    parts.pop();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            name => parts.push(name),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
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
}

fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

/// A YAML file found by the walk, before it is read.
struct Found {
    /// Its repo path, with `/` separators.
    relative: String,
    /// What to do with it: read this file (itself, or a link's target in the repo),
    /// or report this problem.
    read: Result<PathBuf, FileProblem>,
    bytes: u64,
}

/// The folders of a config repo Drover reads: the model's, and the repo's own policies.
pub const FOLDERS: [&str; 3] = ["clusters", "environments", "policies"];

/// Reads every `.yaml`/`.yml` file under [`FOLDERS`], sorted by
/// path, within [`Limits::current`]. Hidden files and folders (starting with `.`) are
/// skipped; links are resolved by their text and never followed out of the repo.
pub fn read_dir(root: &Path) -> Result<Vec<SourceFile>, ReadError> {
    read_dir_within(root, &Limits::current())
}

/// Like [`read_dir`], within `limits`.
pub fn read_dir_within(root: &Path, limits: &Limits) -> Result<Vec<SourceFile>, ReadError> {
    if !root.is_dir() {
        return Err(ReadError::NotADirectory(root.to_owned()));
    }
    let mut paths = Vec::new();
    for top in FOLDERS {
        let dir = root.join(top);
        if dir.is_dir() {
            walk(&dir, &mut paths)?;
        }
    }
    paths.sort();
    let mut found = Vec::with_capacity(paths.len());
    let mut total = 0u64;
    for path in paths {
        let mut file = find(root, path)?;
        if file.read.is_ok() {
            if file.bytes > limits.file_bytes {
                file.read = Err(FileProblem::TooLarge { bytes: file.bytes });
            } else if total + file.bytes > limits.revision_bytes {
                file.read = Err(FileProblem::RevisionTooLarge { bytes: total });
            } else {
                total += file.bytes;
            }
        }
        found.push(file);
    }
    // Reading thousands of small files is latency-bound: do it on all cores.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(found.len().div_ceil(256))
        .max(1);
    let chunk = found.len().div_ceil(threads).max(1);
    let read = |file: &Found| -> Result<SourceFile, ReadError> {
        match &file.read {
            Ok(path) => {
                let bytes = std::fs::read(path).map_err(io(path))?;
                Ok(SourceFile::from_bytes(file.relative.clone(), bytes, limits))
            }
            Err(problem) => Ok(SourceFile::unreadable(
                file.relative.clone(),
                problem.clone(),
            )),
        }
    };
    std::thread::scope(|scope| {
        let handles: Vec<_> = found
            .chunks(chunk)
            .map(|slice| scope.spawn(move || slice.iter().map(read).collect::<Result<Vec<_>, _>>()))
            .collect();
        let mut files = Vec::with_capacity(found.len());
        for handle in handles {
            files.extend(handle.join().expect("a reader thread does not panic")?);
        }
        Ok(files)
    })
}

/// Looks at one walked path: a regular file is read as itself, a link as its target
/// when that is a regular file inside the repo, anything else is a problem.
fn find(root: &Path, path: PathBuf) -> Result<Found, ReadError> {
    let relative = path
        .strip_prefix(root)
        .unwrap_or(&path)
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/");
    let meta = std::fs::symlink_metadata(&path).map_err(io(&path))?;
    let (read, bytes) = if meta.file_type().is_symlink() {
        let target = std::fs::read_link(&path).map_err(io(&path))?;
        let text = target.to_string_lossy().into_owned();
        let inside = resolve_link(&relative, &text)
            .map(|r| root.join(r))
            .and_then(|p| std::fs::symlink_metadata(&p).ok().map(|m| (p, m)))
            .filter(|(_, m)| m.file_type().is_file());
        match inside {
            Some((target, meta)) => (Ok(target), meta.len()),
            None => (Err(FileProblem::Symlink { target: text }), 0),
        }
    } else if meta.file_type().is_file() {
        (Ok(path), meta.len())
    } else {
        (Err(FileProblem::NotRegular), 0)
    };
    Ok(Found {
        relative,
        read,
        bytes,
    })
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ReadError + '_ {
    move |source| ReadError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Collects the YAML files below `dir`, skipping hidden entries. Links are collected,
/// not followed: a linked folder is not walked.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_resolve_by_their_text_and_never_leave_the_repo() {
        let link = "environments/staging/web.yaml";
        assert_eq!(
            resolve_link(link, "../shared/web.yaml").as_deref(),
            Some("environments/shared/web.yaml")
        );
        assert_eq!(
            resolve_link(link, "./api.yaml").as_deref(),
            Some("environments/staging/api.yaml")
        );
        assert_eq!(resolve_link(link, "/etc/passwd"), None);
        assert_eq!(resolve_link(link, "../../../outside.yaml"), None);
        assert_eq!(resolve_link(link, "../../.."), None);
    }

    #[test]
    fn binary_text_is_located_at_its_first_bad_byte() {
        let file = SourceFile::from_bytes(
            "environments/a/x.yaml".into(),
            b"kind: Service\nname: \xff\xfe".to_vec(),
            &Limits::default(),
        );
        assert_eq!(
            file.problem,
            Some(FileProblem::NotText { line: 2, column: 7 })
        );
    }
}
