//! Writes a positioned tree back as block YAML, the way SOPS and `kubectl` write files
//! (two-space indent, `- ` list items, literal blocks for multi-line text such as age
//! armor), so `drover secret` can rewrite a Secret file. The file's leading comment
//! lines are kept; comments inside the document are not.

use drover_load::{YamlNode, YamlValue};

use crate::document::Scalar;

/// The document as YAML text, after `header` (comment lines, each ending in `\n`).
pub fn document(root: &YamlNode, header: &str) -> String {
    let mut out = String::from(header);
    out.push_str(&block(root, 0));
    out
}

/// The comment lines a file starts with.
pub fn header(text: &str) -> String {
    text.lines()
        .take_while(|l| l.starts_with('#') || l.trim().is_empty())
        .filter(|l| l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn pad(indent: usize) -> String {
    " ".repeat(indent)
}

/// A node written at `indent`, each line ending in `\n`.
fn block(node: &YamlNode, indent: usize) -> String {
    match &node.value {
        YamlValue::Map(entries) if entries.is_empty() => format!("{}{{}}\n", pad(indent)),
        YamlValue::Seq(items) if items.is_empty() => format!("{}[]\n", pad(indent)),
        YamlValue::Map(entries) => entries
            .iter()
            .map(|(k, v)| {
                let key = key_text(k.as_str().unwrap_or_default());
                match &v.value {
                    YamlValue::Scalar { text, plain } => {
                        format!("{}{key}:{}", pad(indent), scalar(text, *plain, indent + 2))
                    }
                    YamlValue::Map(e) if e.is_empty() => format!("{}{key}: {{}}\n", pad(indent)),
                    YamlValue::Seq(i) if i.is_empty() => format!("{}{key}: []\n", pad(indent)),
                    YamlValue::Map(_) => format!("{}{key}:\n{}", pad(indent), block(v, indent + 2)),
                    // Lists under a key are indented as SOPS and yaml.v3 write them.
                    YamlValue::Seq(_) => format!("{}{key}:\n{}", pad(indent), block(v, indent + 2)),
                }
            })
            .collect(),
        YamlValue::Seq(items) => items
            .iter()
            .map(|item| {
                let inner = match &item.value {
                    YamlValue::Scalar { text, plain } => {
                        format!(
                            "{}{}",
                            pad(indent + 2),
                            scalar(text, *plain, indent + 2).trim_start()
                        )
                    }
                    _ => block(item, indent + 2),
                };
                format!("{}- {}", pad(indent), &inner[indent + 2..])
            })
            .collect(),
        YamlValue::Scalar { text, plain } => {
            format!(
                "{}{}",
                pad(indent),
                scalar(text, *plain, indent).trim_start()
            )
        }
    }
}

/// A scalar after `key:` (with its leading space), ending in `\n`; a multi-line text
/// is a literal block indented at `indent`.
fn scalar(text: &str, plain: bool, indent: usize) -> String {
    if text.contains('\n') && literal_safe(text) {
        let chomp = if text.ends_with("\n\n") {
            "+"
        } else if text.ends_with('\n') {
            ""
        } else {
            "-"
        };
        let body: String = text
            .strip_suffix('\n')
            .unwrap_or(text)
            .split('\n')
            .map(|l| {
                if l.is_empty() {
                    "\n".to_owned()
                } else {
                    format!("{}{l}\n", pad(indent))
                }
            })
            .collect();
        return format!(" |{chomp}\n{body}");
    }
    // YAML 1.1 readers (SOPS's among them) take `2026-12-03T05:00:00Z` for a
    // timestamp: quote text that looks like one, as SOPS does.
    let keeps_its_type = plain
        || (matches!(Scalar::of(text, true), Some(Scalar::Str(_))) && !looks_like_a_date(text));
    if keeps_its_type && plain_safe(text) {
        format!(" {text}\n")
    } else {
        format!(" {}\n", quoted(text))
    }
}

fn looks_like_a_date(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() >= 10 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && b[7] == b'-'
}

fn key_text(key: &str) -> String {
    if plain_safe(key) && matches!(Scalar::of(key, true), Some(Scalar::Str(_))) {
        key.to_owned()
    } else {
        quoted(key)
    }
}

/// JSON's double-quoted string is YAML's too.
fn quoted(text: &str) -> String {
    serde_json::to_string(text).expect("a string serializes")
}

fn literal_safe(text: &str) -> bool {
    !text.starts_with([' ', '\t', '\n'])
        && !text.contains('\r')
        && text
            .chars()
            .all(|c| c == '\n' || c == '\t' || !c.is_control())
}

/// Text that reads back as the same string when written without quotes.
fn plain_safe(text: &str) -> bool {
    !text.is_empty()
        && !text.starts_with(|c: char| c.is_whitespace() || "-?:,[]{}#&*!|>'\"%@`".contains(c))
        && !text.ends_with(char::is_whitespace)
        && !text.ends_with(':')
        && !text.contains(": ")
        && !text.contains(" #")
        && !text.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(text: &str) -> String {
        let tree = drover_load::parse_document(text).unwrap().unwrap();
        let written = document(&tree, &header(text));
        let again = drover_load::parse_document(&written).unwrap().unwrap();
        assert_eq!(strip(&again), strip(&tree), "{written}");
        written
    }

    /// The tree without positions.
    fn strip(node: &YamlNode) -> String {
        match &node.value {
            YamlValue::Scalar { text, plain } => {
                format!("{:?}", Scalar::of(text, *plain))
            }
            YamlValue::Seq(items) => format!(
                "[{}]",
                items.iter().map(strip).collect::<Vec<_>>().join(",")
            ),
            YamlValue::Map(entries) => format!(
                "{{{}}}",
                entries
                    .iter()
                    .map(|(k, v)| format!("{}={}", strip(k), strip(v)))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        }
    }

    #[test]
    fn a_secret_file_is_written_back_as_it_reads() {
        let text = "# db credentials\napiVersion: drover.dev/v1alpha1\nkind: Secret\nmetadata:\n  name: db\n  labels: {app: shop}\nspec:\n  data:\n    password: \"true\"\n    note: 'a: b'\n    count: \"42\"\n    cert: |\n      line one\n      line two\nsops:\n  age:\n    - recipient: age1abc\n      enc: |\n        -----BEGIN AGE ENCRYPTED FILE-----\n        YWJj\n        -----END AGE ENCRYPTED FILE-----\n  lastmodified: \"2026-12-03T05:00:00Z\"\n  version: 3.13.2\n  list: [1, two, {three: 3}]\n  empty: []\n";
        let written = round_trip(text);
        assert!(
            written.starts_with("# db credentials\napiVersion: drover.dev/v1alpha1\n"),
            "{written}"
        );
        assert!(written.contains("    password: \"true\"\n"), "{written}");
        assert!(
            written.contains("  lastmodified: \"2026-12-03T05:00:00Z\"\n"),
            "{written}"
        );
        assert!(
            written.contains("    - recipient: age1abc\n      enc: |\n        -----BEGIN"),
            "{written}"
        );
    }

    #[test]
    fn awkward_strings_are_quoted() {
        for text in [
            "- x",
            "a #b",
            " lead",
            "x:",
            "null",
            "0x1F",
            "",
            "tab\there",
            "trail\n\n",
        ] {
            let doc = format!("k: {}\n", quoted(text));
            round_trip(&doc);
        }
    }
}
