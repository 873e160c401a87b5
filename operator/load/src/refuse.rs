//! Diagnostics for what is refused before any parsing: files that are not readable
//! YAML text, and files or revisions holding more documents than the limits allow.
//! Counting is cheap next to parsing, so an oversized revision costs little.

use std::collections::BTreeSet;

use drover_diagnostics::{Code, Diagnostic, Location};

use crate::limits::{Limits, bytes_in_words};
use crate::read::{FileProblem, SourceFile};
use crate::{DocumentCache, document};

fn start_of(file: &SourceFile, line: u32, column: u32) -> Location {
    Location {
        file: file.path.as_str().into(),
        line,
        column,
    }
}

/// The located diagnostic for a file that was not read.
pub(crate) fn unreadable(file: &SourceFile, problem: &FileProblem, limits: &Limits) -> Diagnostic {
    match problem {
        FileProblem::NotText { line, column } => Diagnostic::new(
            Code::Unreadable,
            start_of(file, *line, *column),
            "the file is not UTF-8 text (a binary file?)",
        )
        .with_hint("YAML files hold UTF-8 text: remove the file, or rename it so it does not end in `.yaml`/`.yml`"),
        FileProblem::TooLarge { bytes } => Diagnostic::new(
            Code::LimitExceeded,
            start_of(file, 1, 1),
            format!(
                "the file is {}, more than the {} a file may hold",
                bytes_in_words(*bytes),
                bytes_in_words(limits.file_bytes)
            ),
        )
        .with_hint("split it into several files, or raise DROVER_MAX_FILE_BYTES (docs/limits.md)"),
        FileProblem::RevisionTooLarge { bytes } => Diagnostic::new(
            Code::LimitExceeded,
            start_of(file, 1, 1),
            format!(
                "the files before this one already hold {}; a revision may hold {} of YAML in all, so this file and those after it are not read",
                bytes_in_words(*bytes),
                bytes_in_words(limits.revision_bytes)
            ),
        )
        .with_hint("split the repo, or raise DROVER_MAX_REVISION_BYTES (docs/limits.md)"),
        FileProblem::Symlink { target } => Diagnostic::new(
            Code::Unreadable,
            start_of(file, 1, 1),
            format!("the file is a symbolic link to `{target}`, which is not a regular file inside the repo"),
        )
        .with_hint("links are never followed out of the repo: commit the file itself, or link to a file in the repo"),
        FileProblem::NotRegular => Diagnostic::new(
            Code::Unreadable,
            start_of(file, 1, 1),
            "the path is not a regular file (a device, pipe or socket)",
        )
        .with_hint("remove it from the repo"),
    }
}

/// What counting found: diagnostics, the files not to parse, and whether the whole
/// revision is refused (nothing is parsed then).
#[derive(Default)]
pub(crate) struct Counted {
    pub diagnostics: Vec<Diagnostic>,
    pub skip: BTreeSet<usize>,
    pub refused: bool,
}

/// Counts the documents of every file (a cached file by its earlier parse) against the
/// per-file and per-revision limits.
pub(crate) fn count(files: &[SourceFile], cache: &DocumentCache, limits: &Limits) -> Counted {
    let mut counted = Counted::default();
    let mut total = 0usize;
    for (i, file) in files.iter().enumerate() {
        let documents = match file
            .id
            .as_ref()
            .and_then(|id| cache.documents(&file.path, id))
        {
            Some(n) => n,
            None => {
                let chunks = document::split(&file.text);
                if chunks.len() > limits.documents_per_file {
                    let first_over = &chunks[limits.documents_per_file];
                    counted.diagnostics.push(
                        Diagnostic::new(
                            Code::LimitExceeded,
                            start_of(file, first_over.line_offset + 1, 1),
                            format!(
                                "the file holds {} documents, more than the {} a file may hold; none of them is read",
                                chunks.len(),
                                limits.documents_per_file
                            ),
                        )
                        .with_hint("split it into several files, or raise DROVER_MAX_DOCUMENTS_PER_FILE (docs/limits.md)"),
                    );
                    counted.skip.insert(i);
                }
                chunks.len()
            }
        };
        total += documents;
        if total > limits.objects && !counted.refused {
            counted.refused = true;
            counted.diagnostics.push(
                Diagnostic::new(
                    Code::LimitExceeded,
                    start_of(file, 1, 1),
                    format!(
                        "the revision holds more than the {} documents a revision may hold (this file passes the limit); nothing in it is read",
                        limits.objects
                    ),
                )
                .with_hint("split the repo, or raise DROVER_MAX_OBJECTS (docs/limits.md)"),
            );
        }
    }
    counted
}
