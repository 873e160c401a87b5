//! Splitting a file into YAML documents and indexing where every field of each is.

use std::sync::Arc;

use drover_diagnostics::SourceMap;
use serde_saphyr::granit_parser::{Event, Parser};

/// One `---`-separated document of a file.
#[derive(Debug)]
pub(crate) struct Chunk<'a> {
    /// The document's text, starting with its `---` line if it has one.
    pub text: &'a str,
    /// Lines before the chunk in its file (add to chunk-relative line numbers).
    pub line_offset: u32,
}

/// Splits a multi-document stream at `---` lines. Splitting by line, before parsing,
/// keeps a syntax error in one document from hiding the errors in the others.
pub(crate) fn split(text: &str) -> Vec<Chunk<'_>> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut start_line = 0u32;
    let mut offset = 0;
    for (line_no, line) in text.split_inclusive('\n').enumerate() {
        let is_marker = line.starts_with("---")
            && line[3..].chars().next().is_none_or(|c| c.is_whitespace());
        if is_marker && offset > start {
            chunks.push(Chunk { text: &text[start..offset], line_offset: start_line });
            start = offset;
            start_line = line_no as u32;
        }
        offset += line.len();
    }
    if start < text.len() {
        chunks.push(Chunk { text: &text[start..], line_offset: start_line });
    }
    chunks
}

/// What the event pass learned about one document.
#[derive(Debug)]
pub(crate) struct Indexed {
    /// Where each field is.
    pub map: SourceMap,
    /// The top-level `apiVersion:` scalar, if any.
    pub api_version: Option<String>,
    /// The top-level `kind:` scalar, if any.
    pub kind: Option<String>,
    /// True when the document holds no node at all (only comments or blank lines).
    pub empty: bool,
}

/// A YAML syntax error: line and column (from 1) in the file, and what is wrong.
#[derive(Debug)]
pub(crate) struct SyntaxError {
    pub line: u32,
    pub column: u32,
    pub message: String,
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, next: usize },
}

fn join_key(parent: &str, key: &str) -> String {
    if parent.is_empty() { key.to_owned() } else { format!("{parent}.{key}") }
}

/// Walks the parser's events once, recording the position of every mapping key and
/// sequence item under its path (`spec.routes[0].host`).
pub(crate) fn index(file: &Arc<str>, chunk: &Chunk<'_>) -> Result<Indexed, SyntaxError> {
    let mut map = None;
    let mut stack: Vec<Frame> = Vec::new();
    let (mut api_version, mut kind) = (None, None);
    let mut parser = Parser::new_from_str(chunk.text);
    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|e| SyntaxError {
            line: e.marker().line() as u32 + chunk.line_offset,
            column: e.marker().col() as u32 + 1,
            message: e.info(),
        })?;
        let line = span.start.line() as u32 + chunk.line_offset;
        let column = span.start.col() as u32 + 1;
        let is_node = matches!(
            event,
            Event::Scalar(..) | Event::MappingStart(..) | Event::SequenceStart(..) | Event::Alias(..)
        );
        if is_node {
            let map = map.get_or_insert_with(|| SourceMap::new(file.clone(), line, column));
            // The path of this node, and whether it is a mapping key.
            let (path, is_key) = match stack.last_mut() {
                None => (String::new(), false),
                Some(Frame::Seq { path, next }) => {
                    let p = format!("{path}[{next}]");
                    *next += 1;
                    map.insert(&p, line, column);
                    (p, false)
                }
                Some(Frame::Map { path, key: key @ None }) => {
                    let name = match &event {
                        Event::Scalar(text, ..) => text.to_string(),
                        _ => "?".to_owned(),
                    };
                    let p = join_key(path, &name);
                    map.insert(&p, line, column);
                    // A complex (non-scalar) key is recorded as `?`; its map then
                    // waits for the key's value like any other.
                    *key = Some(name);
                    (p, true)
                }
                Some(Frame::Map { path, key: key @ Some(_) }) => {
                    let p = join_key(path, key.as_deref().unwrap_or("?"));
                    *key = None;
                    (p, false)
                }
            };
            if stack.len() == 1
                && !is_key
                && let Event::Scalar(text, ..) = &event
            {
                match path.as_str() {
                    "apiVersion" => api_version = Some(text.to_string()),
                    "kind" => kind = Some(text.to_string()),
                    _ => {}
                }
            }
            match event {
                Event::MappingStart(..) => stack.push(Frame::Map { path, key: None }),
                Event::SequenceStart(..) => stack.push(Frame::Seq { path, next: 0 }),
                _ => {}
            }
        } else if matches!(event, Event::MappingEnd | Event::SequenceEnd) {
            stack.pop();
        }
    }
    let empty = map.is_none();
    let map = map.unwrap_or_else(|| SourceMap::new(file.clone(), chunk.line_offset + 1, 1));
    Ok(Indexed { map, api_version, kind, empty })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_line_offsets_of_every_document() {
        let text = "a: 1\n---\nb: 2\n--- # note\nc: 3\n";
        let chunks = split(text);
        assert_eq!(chunks.len(), 3);
        assert_eq!((chunks[0].text, chunks[0].line_offset), ("a: 1\n", 0));
        assert_eq!((chunks[1].text, chunks[1].line_offset), ("---\nb: 2\n", 1));
        assert_eq!(chunks[2].line_offset, 3);
    }

    #[test]
    fn split_ignores_dashes_that_are_not_document_markers() {
        assert_eq!(split("a: ----x\nb: |\n  ---\n").len(), 1);
    }

    #[test]
    fn index_records_keys_and_sequence_items_by_path() {
        let file: Arc<str> = "f.yaml".into();
        let text = "---\nkind: Service\nspec:\n  routes:\n    - host: a\n      path: /x\n";
        let chunks = split(text);
        let indexed = index(&file, &chunks[0]).unwrap();
        assert_eq!(indexed.kind.as_deref(), Some("Service"));
        let at = |p: &str| {
            let l = indexed.map.locate(p);
            (l.line, l.column)
        };
        assert_eq!(at("spec.routes"), (4, 3));
        assert_eq!(at("spec.routes[0]"), (5, 7));
        assert_eq!(at("spec.routes[0].path"), (6, 7));
    }

    #[test]
    fn index_reports_syntax_errors_with_file_lines() {
        let file: Arc<str> = "f.yaml".into();
        let text = "a: 1\n---\nb: [1, 2\nc: 3\n";
        let chunks = split(text);
        let err = index(&file, &chunks[1]).unwrap_err();
        assert!(err.line >= 3, "{err:?}");
    }
}
