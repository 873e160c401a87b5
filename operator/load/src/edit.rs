//! Surgical edits of YAML text: set one scalar field of one document and keep every
//! other byte (comments, key order, quoting) as it was. Promotions and `drover deploy`
//! write artifact versions into config files this way, so a reviewer's diff is the
//! one line that changed.

use crate::Source;
use crate::yaml::{Node, Value};

/// Why a field could not be edited in place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: cannot set `{path}`: {message}")]
pub struct EditError {
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub path: String,
    pub message: String,
}

/// One change to a file's text, at a line (1-based, in the file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Replace the characters `[from, to)` (0-based) of `line` with `text`.
    Replace {
        line: u32,
        from: usize,
        to: usize,
        text: String,
    },
    /// Insert `text` as a whole new line before `line`.
    Insert { line: u32, text: String },
}

impl Edit {
    fn line(&self) -> u32 {
        match self {
            Edit::Replace { line, .. } | Edit::Insert { line, .. } => *line,
        }
    }
}

/// The edit that sets the scalar at `path` (`spec.version`: mapping keys only) of the
/// document `source` came from to `value`. A missing field is added as the first key of
/// its parent mapping, which must exist and be written in block style.
pub fn set_scalar(text: &str, source: &Source, path: &str, value: &str) -> Result<Edit, EditError> {
    let fail = |(line, column): (u32, u32), message: &str| EditError {
        file: source.file().to_string(),
        line,
        column,
        path: path.to_owned(),
        message: message.to_owned(),
    };
    let root = source
        .tree()
        .ok_or_else(|| fail((0, 0), "the document does not parse"))?;
    let (parent_path, key) = path.rsplit_once('.').unwrap_or(("", path));
    let mut parent = root;
    for part in parent_path.split('.').filter(|p| !p.is_empty()) {
        parent = parent
            .get(part)
            .ok_or_else(|| fail((root.line, root.column), &format!("`{part}` is missing")))?;
    }
    let Value::Map(entries) = &parent.value else {
        return Err(fail(
            (parent.line, parent.column),
            "its parent is not a mapping",
        ));
    };
    let lines: Vec<&str> = text.lines().collect();
    let line_of = |n: u32| lines.get(n as usize - 1).copied().unwrap_or_default();
    if let Some((k, node)) = entries.iter().find(|(k, _)| k.as_str() == Some(key)) {
        let one_line = node.line == k.line;
        return one_line
            .then(|| replace(line_of(node.line), node, value))
            .flatten()
            .ok_or_else(|| {
                fail(
                    (k.line, k.column),
                    "only a scalar written on one line can be edited; write it as `key: value`",
                )
            });
    }
    let Some((first, _)) = entries.first() else {
        return Err(fail(
            (parent.line, parent.column),
            "its parent mapping is empty",
        ));
    };
    let opener = line_of(first.line)
        .chars()
        .take(first.column as usize - 1)
        .collect::<String>();
    if !opener.trim().is_empty() {
        return Err(fail(
            (first.line, first.column),
            "its parent mapping is written in flow style (`{…}`); write it in block style",
        ));
    }
    Ok(Edit::Insert {
        line: first.line,
        text: format!("{opener}{key}: {}", quote(value, None)),
    })
}

/// Replaces a one-line scalar, keeping its quoting style.
fn replace(line_text: &str, node: &Node, value: &str) -> Option<Edit> {
    if !matches!(node.value, Value::Scalar { .. }) {
        return None;
    }
    let chars: Vec<char> = line_text.chars().collect();
    let from = node.column as usize - 1;
    let rest = chars.get(from..)?;
    let (len, style) = match rest.first()? {
        '"' => (closing(rest, '"')? + 1, Some('"')),
        '\'' => (closing(rest, '\'')? + 1, Some('\'')),
        '|' | '>' => return None,
        _ => {
            // A plain scalar ends at a comment or the end of the line.
            let mut end = rest.len();
            for i in 1..rest.len() {
                if rest[i] == '#' && rest[i - 1].is_whitespace() {
                    end = i;
                    break;
                }
            }
            while end > 0 && rest[end - 1].is_whitespace() {
                end -= 1;
            }
            (end, None)
        }
    };
    Some(Edit::Replace {
        line: node.line,
        from,
        to: from + len,
        text: quote(value, style),
    })
}

/// The index of the quote closing a quoted scalar that starts at `text[0]`.
fn closing(text: &[char], quote: char) -> Option<usize> {
    let mut i = 1;
    while i < text.len() {
        match text[i] {
            '\\' if quote == '"' => i += 1,
            '\'' if quote == '\'' && text.get(i + 1) == Some(&'\'') => i += 1,
            c if c == quote => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// `value` as a YAML scalar: in the given quotes, else plain when it reads back as the
/// same string, else double-quoted.
fn quote(value: &str, style: Option<char>) -> String {
    let double = || {
        let mut out = String::from('"');
        for c in value.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    };
    match style {
        Some('"') => double(),
        Some(_) => format!("'{}'", value.replace('\'', "''")),
        None => {
            let plain_chars = value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._/:@+-".contains(c));
            let first_ok = value
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric());
            let lower = value.to_ascii_lowercase();
            let special = value.parse::<f64>().is_ok()
                || ["true", "false", "null", "yes", "no", "on", "off", "y", "n"]
                    .contains(&lower.as_str());
            if plain_chars && first_ok && !special {
                value.to_owned()
            } else {
                double()
            }
        }
    }
}

/// Applies edits to a file's text (any order; at most one edit per line).
pub fn apply(text: &str, mut edits: Vec<Edit>) -> String {
    edits.sort_by_key(|e| std::cmp::Reverse(e.line()));
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for edit in edits {
        match edit {
            Edit::Replace {
                line,
                from,
                to,
                text,
            } => {
                let Some(l) = lines.get_mut(line as usize - 1) else {
                    continue;
                };
                let chars: Vec<char> = l.chars().collect();
                *l = chars[..from]
                    .iter()
                    .chain(text.chars().collect::<Vec<_>>().iter())
                    .chain(chars[to.min(chars.len())..].iter())
                    .collect();
            }
            Edit::Insert { line, text } => {
                let at = (line as usize - 1).min(lines.len());
                lines.insert(at, text);
            }
        }
    }
    let mut out = lines.join("\n");
    if text.ends_with('\n') {
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SourceFile, load};

    fn set(text: &str, path: &str, value: &str) -> Result<String, EditError> {
        let loaded = load(&[SourceFile::new("environments/prod/web.yaml", text)]);
        let service = &loaded.repo.environments[0].services[0];
        let edit = set_scalar(text, &service.source, path, value)?;
        Ok(apply(text, vec![edit]))
    }

    const WEB: &str = "# web\napiVersion: drover.dev/v1alpha1\nkind: Service\nmetadata:\n  name: web\nspec:\n  version: v1.4.0   # the release\n  image: \"ghcr.io/x/web:v1.4.0\"\n  command: [drover, example-app]\n";

    #[test]
    fn a_plain_version_is_replaced_and_its_comment_kept() {
        let out = set(WEB, "spec.version", "v1.5.0").unwrap();
        assert_eq!(out, WEB.replace("v1.4.0   #", "v1.5.0   #"));
    }

    #[test]
    fn a_quoted_image_stays_quoted() {
        let out = set(WEB, "spec.image", "ghcr.io/x/web:v1.5.0").unwrap();
        assert!(out.contains("  image: \"ghcr.io/x/web:v1.5.0\"\n"), "{out}");
    }

    #[test]
    fn a_missing_field_becomes_the_first_key_of_its_parent() {
        let text = WEB.replace("  version: v1.4.0   # the release\n", "");
        let out = set(&text, "spec.version", "1.5").unwrap();
        assert!(out.contains("spec:\n  version: \"1.5\"\n  image:"), "{out}");
    }

    #[test]
    fn a_block_scalar_is_refused_with_its_position() {
        let text = WEB.replace("v1.4.0   # the release", "|\n    v1.4.0");
        let error = set(&text, "spec.version", "v2").unwrap_err();
        assert_eq!((error.line, error.column), (7, 3), "{error}");
        assert!(
            error
                .to_string()
                .starts_with("environments/prod/web.yaml:7:3: cannot set `spec.version`")
        );
    }
}
