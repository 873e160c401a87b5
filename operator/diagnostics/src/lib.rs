//! Errors and warnings about a config repo, each located at `path:line:column`, with
//! a stable code and a hint, rendered for people (optionally coloured) or as JSON.

use std::fmt::{self, Write as _};
use std::sync::Arc;

use serde::Serialize;

mod code;

pub use code::{Code, catalogue_markdown};

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The repo is invalid; nothing from it may reach an engine.
    Error,
    /// Allowed, but probably not what was meant.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// A position in a file of the repo. Lines and columns count from 1, as editors do.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Location {
    /// Path relative to the repo root, with `/` separators.
    pub file: Arc<str>,
    /// Line, from 1.
    pub line: u32,
    /// Column, from 1.
    pub column: u32,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// One finding about a repo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Stable identifier (`E012`), documented in docs/errors.md.
    pub code: Code,
    /// Error or warning (derived from the code).
    pub severity: Severity,
    /// Where it is.
    pub location: Location,
    /// What is wrong, in one sentence. Never contains a secret value.
    pub message: String,
    /// How to fix it, when there is something useful to say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Diagnostic {
    /// A diagnostic with the code's severity.
    pub fn new(code: Code, location: Location, message: impl Into<String>) -> Self {
        Diagnostic {
            code,
            severity: code.severity(),
            location,
            message: message.into(),
            hint: None,
        }
    }

    /// The same, with a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Is this an error (as opposed to a warning)?
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Sorts by file, line, column, then code, so output is stable and reads top-down.
pub fn sort(diagnostics: &mut [Diagnostic]) {
    diagnostics
        .sort_by(|a, b| (&a.location, a.code, &a.message).cmp(&(&b.location, b.code, &b.message)));
}

/// Options for human-readable output.
#[derive(Debug, Clone, Copy, Default)]
pub struct RenderOptions {
    /// Use ANSI colours (for a terminal).
    pub color: bool,
}

/// Renders diagnostics the way compilers do:
///
/// ```text
/// environments/staging/api.yaml:12:5: error[E002]: unknown field `readinesProbe` in Service spec
///   = hint: did you mean `readinessProbe`?
/// ```
///
/// followed by a one-line summary.
pub fn render_human(diagnostics: &[Diagnostic], options: RenderOptions) -> String {
    let paint = |code: &str, text: &str| {
        if options.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    };
    let mut out = String::new();
    for d in diagnostics {
        let severity = match d.severity {
            Severity::Error => paint("1;31", &format!("error[{}]", d.code.id())),
            Severity::Warning => paint("1;33", &format!("warning[{}]", d.code.id())),
        };
        let _ = writeln!(
            out,
            "{}: {}: {}",
            paint("1", &d.location.to_string()),
            severity,
            d.message
        );
        if let Some(hint) = &d.hint {
            let _ = writeln!(out, "  {} {}", paint("1;36", "= hint:"), hint);
        }
    }
    out
}

/// One line saying how many errors and warnings there were.
pub fn summary(diagnostics: &[Diagnostic]) -> String {
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = diagnostics.len() - errors;
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    format!(
        "{}, {}",
        plural(errors, "error"),
        plural(warnings, "warning")
    )
}

/// Renders diagnostics as one JSON document for machines.
pub fn render_json(diagnostics: &[Diagnostic], valid: bool) -> String {
    #[derive(Serialize)]
    struct Report<'a> {
        valid: bool,
        errors: usize,
        warnings: usize,
        diagnostics: &'a [Diagnostic],
    }
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    let report = Report {
        valid,
        errors,
        warnings: diagnostics.len() - errors,
        diagnostics,
    };
    serde_json::to_string_pretty(&report).expect("diagnostics serialize to JSON") + "\n"
}

/// The candidate closest to `input` by edit distance, if it is close enough to be a
/// likely typo (for "did you mean …?" hints).
pub fn closest<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let input_lower = input.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (edit_distance(&input_lower, &c.to_ascii_lowercase()), c))
        .filter(|(d, c)| *d <= (c.len().max(input.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: u32) -> Location {
        Location {
            file: "a.yaml".into(),
            line,
            column: 3,
        }
    }

    #[test]
    fn closest_suggests_a_typo_fix_and_nothing_for_unrelated_words() {
        let fields = ["readinessProbe", "livenessProbe", "replicas"];
        assert_eq!(closest("readinesProbe", fields), Some("readinessProbe"));
        assert_eq!(closest("replica", fields), Some("replicas"));
        assert_eq!(closest("colour", fields), None);
    }

    #[test]
    fn human_output_names_file_line_column_code_and_hint() {
        let d =
            Diagnostic::new(Code::UnknownField, at(7), "unknown field `x`").with_hint("remove it");
        assert_eq!(
            render_human(&[d], RenderOptions::default()),
            "a.yaml:7:3: error[E002]: unknown field `x`\n  = hint: remove it\n"
        );
    }

    #[test]
    fn summary_counts_errors_and_warnings_separately() {
        let e = Diagnostic::new(Code::UnknownField, at(1), "e");
        let w = Diagnostic::new(Code::MemoryRequestNotLimit, at(2), "w");
        assert_eq!(summary(&[e.clone(), w]), "1 error, 1 warning");
        assert_eq!(summary(&[e.clone(), e]), "2 errors, 0 warnings");
    }
}
