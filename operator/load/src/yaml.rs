//! A YAML document as a tree of positioned nodes, built in one pass over
//! granit-parser's events. Anchors, aliases and `<<` merge keys are resolved here;
//! duplicate keys are rejected here. Typed values are read from the tree by `de`, and
//! diagnostics find a field's position by walking it.

use std::collections::HashMap;

use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle};

use crate::limits::Limits;

/// What aliases may expand to, in total, per document, counted as one per node plus
/// one per 64 bytes of text: a guard against "billion laughs" documents, whether their
/// laughs are many small nodes or a few long strings.
pub(crate) const MAX_EXPANSION: usize = 250_000;

/// A node and where it starts (line and column from 1, in the file).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub line: u32,
    pub column: u32,
}

/// The three kinds of YAML node.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Text, and whether it was written plain (unquoted), which decides whether it
    /// may be read as a number, boolean or null.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The scalar text, if this is a scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// The value under `key`, if this is a mapping holding it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// Where the node at a path such as `spec.routes[0].host` is; when part of the
    /// path is absent, where the deepest node on the way is (a missing field is
    /// reported at its parent).
    ///
    /// For mapping entries the position is the key's: that is where an editor should
    /// put the cursor.
    pub fn locate(&self, path: &str) -> (u32, u32) {
        let parts: Vec<&str> = path.split('.').filter(|s| !s.is_empty()).collect();
        let mut node = self;
        let mut at = (self.line, self.column);
        let mut i = 0;
        'parts: while i < parts.len() {
            // Longest key first: label keys such as `drover.dev/owner` hold dots.
            for j in (i + 1..=parts.len()).rev() {
                let joined = parts[i..j].join(".");
                let (key, indexes) = split_indexes(&joined);
                let Some((key_node, child)) = node.entry(key) else {
                    continue;
                };
                at = (key_node.line, key_node.column);
                node = child;
                for index in indexes {
                    match &node.value {
                        Value::Seq(items) if index < items.len() => {
                            node = &items[index];
                            at = (node.line, node.column);
                        }
                        _ => break 'parts,
                    }
                }
                i = j;
                continue 'parts;
            }
            break;
        }
        at
    }

    /// Removes the mapping entry at a path such as `spec.routes[0].host`. False when
    /// there is none (or the path ends in a list index).
    pub fn remove(&mut self, path: &str) -> bool {
        let parts: Vec<&str> = path.split('.').filter(|s| !s.is_empty()).collect();
        remove_parts(self, &parts)
    }

    fn entry(&self, key: &str) -> Option<(&Node, &Node)> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(k, v)| (k, v)),
            _ => None,
        }
    }
}

fn remove_parts(node: &mut Node, parts: &[&str]) -> bool {
    // Longest key first, as in `locate`.
    for j in (1..=parts.len()).rev() {
        let joined = parts[..j].join(".");
        let (key, indexes) = split_indexes(&joined);
        let Value::Map(entries) = &mut node.value else {
            return false;
        };
        let Some(at) = entries.iter().position(|(k, _)| k.as_str() == Some(key)) else {
            continue;
        };
        if j == parts.len() {
            if !indexes.is_empty() {
                return false;
            }
            entries.remove(at);
            return true;
        }
        let mut child = &mut entries[at].1;
        for index in indexes {
            match &mut child.value {
                Value::Seq(items) if index < items.len() => child = &mut items[index],
                _ => return false,
            }
        }
        return remove_parts(child, &parts[j..]);
    }
    false
}

/// Splits `routes[0][1]` into `routes` and its indexes.
fn split_indexes(part: &str) -> (&str, Vec<usize>) {
    match part.find('[') {
        Some(i) if part.ends_with(']') => {
            let indexes = part[i..]
                .split(['[', ']'])
                .filter(|s| !s.is_empty())
                .filter_map(|s| s.parse().ok())
                .collect();
            (&part[..i], indexes)
        }
        _ => (part, Vec::new()),
    }
}

/// Why a document could not become a tree.
#[derive(Debug)]
pub enum TreeError {
    /// Not YAML.
    Syntax {
        line: u32,
        column: u32,
        message: String,
    },
    /// A key repeated in one mapping.
    DuplicateKey {
        line: u32,
        column: u32,
        key: String,
        path: String,
    },
    /// Aliases expand to too many nodes.
    TooLarge { line: u32, column: u32 },
    /// Nested deeper than the limit.
    TooDeep { line: u32, column: u32 },
    /// A key or value longer than the limit.
    TooLong {
        line: u32,
        column: u32,
        bytes: usize,
    },
}

enum Partial {
    Seq {
        node: Node,
        anchor: usize,
    },
    Map {
        node: Node,
        anchor: usize,
        key: Option<Node>,
    },
}

/// Parses one document (a chunk whose first line is line `line_offset + 1` of its
/// file) within this process's limits. `Ok(None)` when it holds no node.
pub fn parse(text: &str, line_offset: u32) -> Result<Option<Node>, TreeError> {
    parse_within(text, line_offset, &Limits::current())
}

/// Like [`parse`], within `limits` (string length and nesting depth).
pub fn parse_within(
    text: &str,
    line_offset: u32,
    limits: &Limits,
) -> Result<Option<Node>, TreeError> {
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Partial> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut root = None;
    let mut budget = MAX_EXPANSION;
    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|e| {
            let (line, column) = (
                e.marker().line() as u32 + line_offset,
                e.marker().col() as u32 + 1,
            );
            // The scanner has its own bound on flow nesting, met before ours when
            // brackets open faster than events arrive: the same problem.
            if e.info().contains("recursion limit") {
                TreeError::TooDeep { line, column }
            } else {
                TreeError::Syntax {
                    line,
                    column,
                    message: e.info(),
                }
            }
        })?;
        let line = span.start.line() as u32 + line_offset;
        let column = span.start.col() as u32 + 1;
        match &event {
            Event::Scalar(text, ..) if text.len() > limits.string_bytes => {
                return Err(TreeError::TooLong {
                    line,
                    column,
                    bytes: text.len(),
                });
            }
            Event::SequenceStart(..) | Event::MappingStart(..) if stack.len() >= limits.depth => {
                return Err(TreeError::TooDeep { line, column });
            }
            _ => {}
        }
        let done = match event {
            Event::Scalar(text, style, anchor, _) => {
                let plain = matches!(style, ScalarStyle::Plain);
                Some((
                    Node {
                        value: Value::Scalar {
                            text: text.into_owned(),
                            plain,
                        },
                        line,
                        column,
                    },
                    anchor,
                ))
            }
            Event::SequenceStart(_, anchor, _) => {
                stack.push(Partial::Seq {
                    node: Node {
                        value: Value::Seq(Vec::new()),
                        line,
                        column,
                    },
                    anchor,
                });
                None
            }
            Event::MappingStart(_, anchor, _) => {
                stack.push(Partial::Map {
                    node: Node {
                        value: Value::Map(Vec::new()),
                        line,
                        column,
                    },
                    anchor,
                    key: None,
                });
                None
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Partial::Seq { node, anchor }) => Some((node, anchor)),
                _ => None,
            },
            Event::MappingEnd => match stack.pop() {
                Some(Partial::Map {
                    mut node, anchor, ..
                }) => {
                    merge_keys(&mut node);
                    Some((node, anchor))
                }
                _ => None,
            },
            Event::Alias(id) => {
                let target = anchors.get(&id).ok_or_else(|| TreeError::Syntax {
                    line,
                    column,
                    message: "alias to an unknown anchor".to_owned(),
                })?;
                let size = count(target);
                if size > budget {
                    return Err(TreeError::TooLarge { line, column });
                }
                budget -= size;
                let mut node = target.clone();
                node.line = line;
                node.column = column;
                Some((node, 0))
            }
            _ => None,
        };
        let Some((node, anchor)) = done else { continue };
        if anchor != 0 {
            anchors.insert(anchor, node.clone());
        }
        match stack.last_mut() {
            None => root = Some(node),
            Some(Partial::Seq { node: parent, .. }) => {
                if let Value::Seq(items) = &mut parent.value {
                    items.push(node);
                }
            }
            Some(Partial::Map {
                key: key @ None, ..
            }) => *key = Some(node),
            Some(Partial::Map {
                node: parent,
                key: key @ Some(_),
                ..
            }) => {
                let key_node = key.take().expect("matched Some");
                if let Value::Map(entries) = &mut parent.value {
                    if let Some(text) = key_node.as_str()
                        && text != "<<"
                        && entries.iter().any(|(k, _)| k.as_str() == Some(text))
                    {
                        let (line, column) = (key_node.line, key_node.column);
                        return Err(TreeError::DuplicateKey {
                            line,
                            column,
                            key: text.to_owned(),
                            path: open_path(&stack),
                        });
                    }
                    entries.push((key_node, node));
                }
            }
        }
    }
    Ok(root)
}

/// The path of the innermost mapping being built, for duplicate-key messages.
fn open_path(stack: &[Partial]) -> String {
    let mut path = String::new();
    for (i, partial) in stack.iter().enumerate() {
        let is_last = i + 1 == stack.len();
        match partial {
            Partial::Seq { node, .. } => {
                if let Value::Seq(items) = &node.value {
                    path.push_str(&format!("[{}]", items.len()));
                }
            }
            Partial::Map { key, .. } if !is_last => {
                if let Some(text) = key.as_ref().and_then(Node::as_str) {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(text);
                }
            }
            Partial::Map { .. } => {}
        }
    }
    path
}

fn count(node: &Node) -> usize {
    1 + match &node.value {
        Value::Scalar { text, .. } => text.len() / 64,
        Value::Seq(items) => items.iter().map(count).sum(),
        Value::Map(entries) => entries.iter().map(|(k, v)| count(k) + count(v)).sum(),
    }
}

/// Applies YAML merge keys: `<<: *base` (or a list of them) adds the base's entries
/// that the mapping does not set itself.
fn merge_keys(node: &mut Node) {
    let Value::Map(entries) = &mut node.value else {
        return;
    };
    if !entries.iter().any(|(k, _)| is_merge_key(k)) {
        return;
    }
    let (merges, mut own): (Vec<_>, Vec<_>) = std::mem::take(entries)
        .into_iter()
        .partition(|(k, _)| is_merge_key(k));
    for (_, source) in merges {
        let sources = match source.value {
            Value::Seq(items) => items,
            other => vec![Node {
                value: other,
                ..source
            }],
        };
        for source in sources {
            if let Value::Map(base) = source.value {
                for (k, v) in base {
                    if !own
                        .iter()
                        .any(|(o, _)| o.as_str().is_some() && o.as_str() == k.as_str())
                    {
                        own.push((k, v));
                    }
                }
            }
        }
    }
    *entries = own;
}

fn is_merge_key(key: &Node) -> bool {
    matches!(&key.value, Value::Scalar { text, plain: true } if text == "<<")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(text: &str) -> Node {
        parse(text, 0).unwrap().unwrap()
    }

    #[test]
    fn positions_are_one_based_and_point_at_keys() {
        let t = tree("spec:\n  routes:\n    - host: a\n      path: /x\n");
        assert_eq!(t.locate("spec.routes"), (2, 3));
        assert_eq!(t.locate("spec.routes[0]"), (3, 7));
        assert_eq!(t.locate("spec.routes[0].path"), (4, 7));
        assert_eq!(t.locate("spec.routes[0].missing"), (3, 7));
        assert_eq!(t.locate("spec.replicas"), (1, 1));
    }

    #[test]
    fn keys_with_dots_are_found_whole() {
        let t = tree("metadata:\n  labels:\n    drover.dev/owner: me\n");
        assert_eq!(t.locate("metadata.labels.drover.dev/owner"), (3, 5));
    }

    #[test]
    fn anchors_aliases_and_merge_keys_resolve() {
        let t = tree("base: &b {cpu: 1, memory: 2}\nother:\n  <<: *b\n  cpu: 3\n");
        let other = t.get("other").unwrap();
        assert_eq!(other.get("cpu").unwrap().as_str(), Some("3"));
        assert_eq!(other.get("memory").unwrap().as_str(), Some("2"));
    }

    #[test]
    fn duplicate_keys_name_the_key_and_its_mapping() {
        match parse("spec:\n  a: 1\n  a: 2\n", 10) {
            Err(TreeError::DuplicateKey {
                line,
                column,
                key,
                path,
            }) => {
                assert_eq!(
                    (line, column, key.as_str(), path.as_str()),
                    (13, 3, "a", "spec")
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..8 {
            let prev = i - 1;
            text.push_str(&format!("a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"));
        }
        assert!(matches!(parse(&text, 0), Err(TreeError::TooLarge { .. })));
    }

    #[test]
    fn aliases_of_long_strings_are_counted_by_their_length() {
        let long = "x".repeat(100_000);
        let mut text = format!("a: &a \"{long}\"\nb: [");
        text.push_str(&vec!["*a"; 200].join(", "));
        text.push_str("]\n");
        assert!(matches!(parse(&text, 0), Err(TreeError::TooLarge { .. })));
    }

    #[test]
    fn nesting_and_string_length_are_bounded_where_they_pass_the_limit() {
        let limits = Limits {
            depth: 3,
            string_bytes: 8,
            ..Limits::default()
        };
        let deep = "a:\n  b:\n    c:\n      d: 1\n";
        assert!(matches!(
            parse_within(deep, 10, &limits),
            Err(TreeError::TooDeep {
                line: 14,
                column: 7
            })
        ));
        assert!(parse_within("a:\n  b:\n    c: 1\n", 0, &limits).is_ok());
        assert!(matches!(
            parse_within("a: 123456789\n", 0, &limits),
            Err(TreeError::TooLong {
                line: 1,
                column: 4,
                bytes: 9
            })
        ));
        let flow = "[".repeat(100_000);
        assert!(matches!(
            parse(&flow, 0),
            Err(TreeError::TooDeep { .. } | TreeError::Syntax { .. })
        ));
    }

    #[test]
    fn quoted_and_plain_scalars_are_told_apart() {
        let t = tree("a: '80'\nb: 80\n");
        assert_eq!(
            t.get("a").unwrap().value,
            Value::Scalar {
                text: "80".into(),
                plain: false
            }
        );
        assert_eq!(
            t.get("b").unwrap().value,
            Value::Scalar {
                text: "80".into(),
                plain: true
            }
        );
    }
}
