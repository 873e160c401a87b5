//! Change sets for people: a terminal report, and the Markdown of a pull-request
//! preview. (JSON output is the change set itself, serialized.)

use std::fmt::Write as _;

use drover_diagnostics::{Diagnostic, Location};

use crate::{Change, ChangeSet, ObjectChange};

fn environment_title(name: &str) -> String {
    if name.is_empty() {
        "clusters".to_owned()
    } else {
        format!("environment {name}")
    }
}

fn paint(color: bool, code: &str, text: &str) -> String {
    if color {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

/// The terminal report: per environment its semantic lines, then every unified diff.
pub fn text(set: &ChangeSet, color: bool) -> String {
    if set.is_empty() {
        return "no changes\n".to_owned();
    }
    let mut out = String::new();
    for env in set.environments() {
        let _ = writeln!(out, "{}", paint(color, "1", &environment_title(env)));
        for change in set.in_environment(env) {
            for line in &change.summary {
                let _ = writeln!(out, "  {line}");
            }
        }
    }
    for change in &set.changes {
        out.push('\n');
        for line in change.diff.lines() {
            let code = match line.as_bytes().first() {
                Some(b'+') => "32",
                Some(b'-') => "31",
                Some(b'@') => "36",
                _ => "",
            };
            let _ = writeln!(
                out,
                "{}",
                if code.is_empty() {
                    line.to_owned()
                } else {
                    paint(color, code, line)
                }
            );
        }
    }
    out
}

/// What a pull-request preview shows besides the changes.
#[derive(Debug, Clone, Default)]
pub struct Preview<'a> {
    /// The base revision (short id and subject).
    pub base: String,
    /// The head revision (short id and subject).
    pub head: String,
    /// Diagnostics of the head revision: its errors and warnings.
    pub diagnostics: &'a [Diagnostic],
}

/// A code fence longer than any run of backticks in `text`, so content never closes it.
fn fence(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    "`".repeat(longest.max(2) + 1)
}

fn count(changes: &[&ObjectChange], kind: Change) -> usize {
    changes.iter().filter(|c| c.change == kind).count()
}

fn location(l: &Location) -> String {
    format!("{}:{}:{}", l.file, l.line, l.column)
}

/// The Markdown of a pull-request comment: a summary table, the semantic lines and a
/// collapsible full diff per environment, then the head revision's diagnostics.
pub fn markdown(set: &ChangeSet, preview: &Preview<'_>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Drover preview: {} → {}\n",
        preview.base, preview.head
    );
    let errors = preview.diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = preview.diagnostics.len() - errors;
    if errors > 0 {
        let _ = writeln!(
            out,
            "❌ **The head revision is invalid** ({errors} errors, {warnings} warnings): Drover will not apply it.\n"
        );
    } else {
        let _ = writeln!(
            out,
            "✅ The head revision is valid ({warnings} warnings).\n"
        );
    }
    if set.is_empty() && errors == 0 {
        out.push_str("No changes to any environment.\n");
    } else if !set.is_empty() {
        out.push_str("| Environment | Added | Changed | Removed |\n|---|---:|---:|---:|\n");
        for env in set.environments() {
            let changes: Vec<&ObjectChange> = set.in_environment(env).collect();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                if env.is_empty() { "*(clusters)*" } else { env },
                count(&changes, Change::Added),
                count(&changes, Change::Changed),
                count(&changes, Change::Removed)
            );
        }
        for env in set.environments() {
            let changes: Vec<&ObjectChange> = set.in_environment(env).collect();
            let _ = writeln!(out, "\n#### {}\n", environment_title(env));
            for change in &changes {
                for line in &change.summary {
                    let _ = writeln!(out, "- `{}`", line.replace('`', "'"));
                }
            }
            let diff: String = changes
                .iter()
                .map(|c| c.diff.as_str())
                .collect::<Vec<_>>()
                .join("\n");
            let fence = fence(&diff);
            let objects = if changes.len() == 1 {
                "1 object".to_owned()
            } else {
                format!("{} objects", changes.len())
            };
            let _ = write!(
                out,
                "\n<details><summary>Full diff of {} ({objects})</summary>\n\n{fence}diff\n{diff}{fence}\n\n</details>\n",
                environment_title(env)
            );
        }
    }
    if !preview.diagnostics.is_empty() {
        out.push_str("\n#### Validation\n\n| Where | Code | Message |\n|---|---|---|\n");
        for d in preview.diagnostics {
            let hint = d
                .hint
                .as_deref()
                .map(|h| format!(" — {h}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "| `{}` | {} {} | {}{} |",
                location(&d.location),
                d.severity,
                d.code.id(),
                d.message.replace('|', "\\|"),
                hint.replace('|', "\\|")
            );
        }
    }
    out
}
