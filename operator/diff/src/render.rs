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

/// Characters a preview may hold: GitHub's limit for a comment is 65,536; the rest is
/// margin for what a CI job adds around it.
pub const PREVIEW_LIMIT: usize = 60_000;

/// Room kept for the note saying what was left out.
const NOTE_ROOM: usize = 400;

/// A string that stops growing at its limit and counts what did not fit.
struct Capped {
    out: String,
    limit: usize,
    left_out: Vec<String>,
}

impl Capped {
    fn room(&self) -> usize {
        self.limit.saturating_sub(self.out.len())
    }

    /// Appends `text` whole, or not at all.
    fn push(&mut self, text: &str) -> bool {
        let fits = text.len() <= self.room();
        if fits {
            self.out.push_str(text);
        }
        fits
    }
}

/// `text` cut at a line boundary to at most `room` bytes, and the lines cut.
fn cut_lines(text: &str, room: usize) -> (&str, usize) {
    if text.len() <= room {
        return (text, 0);
    }
    let end = text[..room].rfind('\n').map_or(0, |i| i + 1);
    (&text[..end], text[end..].lines().count())
}

/// The Markdown of a pull-request comment: a summary table, the semantic lines and a
/// collapsible full diff per environment, then the head revision's diagnostics. It
/// fits one comment ([`PREVIEW_LIMIT`]): what does not fit is left out, and a last
/// line says what.
pub fn markdown(set: &ChangeSet, preview: &Preview<'_>) -> String {
    markdown_within(set, preview, PREVIEW_LIMIT)
}

fn markdown_within(set: &ChangeSet, preview: &Preview<'_>, limit: usize) -> String {
    let mut out = Capped {
        out: String::new(),
        limit: limit.saturating_sub(NOTE_ROOM),
        left_out: Vec::new(),
    };
    let errors = preview.diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = preview.diagnostics.len() - errors;
    let verdict = if errors > 0 {
        format!(
            "❌ **The head revision is invalid** ({errors} errors, {warnings} warnings): Drover will not apply it.\n"
        )
    } else {
        format!("✅ The head revision is valid ({warnings} warnings).\n")
    };
    out.push(&format!(
        "### Drover preview: {} → {}\n\n{verdict}\n",
        preview.base, preview.head
    ));
    if set.is_empty() && errors == 0 {
        out.push("No changes to any environment.\n");
    } else if !set.is_empty() {
        changes_markdown(&mut out, set);
    }
    if !preview.diagnostics.is_empty() {
        diagnostics_markdown(&mut out, preview.diagnostics);
    }
    let Capped {
        mut out, left_out, ..
    } = out;
    if !left_out.is_empty() {
        let _ = writeln!(
            out,
            "\n> ✂️ Cut to fit a pull-request comment ({PREVIEW_LIMIT} characters): left out {}. `drover preview --format json` shows everything.",
            left_out.join(", ")
        );
    }
    out
}

fn changes_markdown(out: &mut Capped, set: &ChangeSet) {
    out.push("| Environment | Added | Changed | Removed |\n|---|---:|---:|---:|\n");
    let environments = set.environments();
    let mut rows_left = 0;
    for env in &environments {
        let changes: Vec<&ObjectChange> = set.in_environment(env).collect();
        let row = format!(
            "| {} | {} | {} | {} |\n",
            if env.is_empty() { "*(clusters)*" } else { env },
            count(&changes, Change::Added),
            count(&changes, Change::Changed),
            count(&changes, Change::Removed)
        );
        if !out.push(&row) {
            rows_left += 1;
        }
    }
    if rows_left > 0 {
        out.left_out
            .push(format!("{rows_left} rows of the summary table"));
    }
    let mut lines_left = 0;
    let mut diffs_cut = 0;
    for env in &environments {
        let changes: Vec<&ObjectChange> = set.in_environment(env).collect();
        if !out.push(&format!("\n#### {}\n\n", environment_title(env))) {
            lines_left += changes.iter().map(|c| c.summary.len()).sum::<usize>();
            diffs_cut += 1;
            continue;
        }
        for change in &changes {
            for line in &change.summary {
                if !out.push(&format!("- `{}`\n", line.replace('`', "'"))) {
                    lines_left += 1;
                }
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
        let open = format!(
            "\n<details><summary>Full diff of {} ({objects})</summary>\n\n{fence}diff\n",
            environment_title(env)
        );
        let close = format!("{fence}\n\n</details>\n");
        let room = out.room().saturating_sub(open.len() + close.len() + 60);
        let (shown, cut) = cut_lines(&diff, room);
        if shown.is_empty() && cut > 0 {
            diffs_cut += 1;
            continue;
        }
        let mut section = format!("{open}{shown}");
        if cut > 0 {
            diffs_cut += 1;
            let _ = writeln!(section, "… {cut} more lines left out");
        }
        section.push_str(&close);
        out.push(&section);
    }
    if lines_left > 0 {
        out.left_out.push(format!("{lines_left} change lines"));
    }
    if diffs_cut > 0 {
        out.left_out
            .push(format!("all or part of {diffs_cut} full diffs"));
    }
}

fn diagnostics_markdown(out: &mut Capped, diagnostics: &[Diagnostic]) {
    let mut left = diagnostics.len();
    if out.push("\n#### Validation\n\n| Where | Code | Message |\n|---|---|---|\n") {
        for d in diagnostics {
            let hint = d
                .hint
                .as_deref()
                .map(|h| format!(" — {h}"))
                .unwrap_or_default();
            let row = format!(
                "| `{}` | {} {} | {}{} |\n",
                location(&d.location),
                d.severity,
                d.code.id(),
                d.message.replace('|', "\\|"),
                hint.replace('|', "\\|")
            );
            if !out.push(&row) {
                break;
            }
            left -= 1;
        }
    }
    if left > 0 {
        out.left_out
            .push(format!("{left} of {} findings", diagnostics.len()));
    }
}
