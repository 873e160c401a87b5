//! Parsing one document into its typed kind, turning reader errors into diagnostics
//! that name the field, the file position and the likely fix.

use std::sync::Arc;

use drover_diagnostics::{Code, Diagnostic, Location, closest};
use drover_model::{
    API_VERSION, ClusterSpec, EnvironmentSpec, Kind, Manifest, QuotaSpec, SecretSpec, ServiceSpec,
};
use serde::de::DeserializeOwned;

use crate::de::{self, Problem};
use crate::document::Chunk;
use crate::limits::{Limits, bytes_in_words};
use crate::yaml::{self, TreeError};
use crate::{Object, RawObject, Source, stream};

/// One parsed document of a known kind.
#[derive(Debug, Clone)]
pub(crate) enum Doc {
    Cluster(Object<ClusterSpec>),
    Environment(Object<EnvironmentSpec>),
    Service(Object<ServiceSpec>),
    Quota(Object<QuotaSpec>),
    Secret(Object<SecretSpec>),
    Raw(RawObject),
}

impl Doc {
    pub fn kind(&self) -> Kind {
        match self {
            Doc::Cluster(_) => Kind::Cluster,
            Doc::Environment(_) => Kind::Environment,
            Doc::Service(_) => Kind::Service,
            Doc::Quota(_) => Kind::Quota,
            Doc::Secret(_) => Kind::Secret,
            Doc::Raw(_) => Kind::Manifest,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Doc::Cluster(o) => o.name(),
            Doc::Environment(o) => o.name(),
            Doc::Service(o) => o.name(),
            Doc::Quota(o) => o.name(),
            Doc::Secret(o) => o.name(),
            Doc::Raw(o) => &o.name,
        }
    }

    pub fn shared_source(&self) -> Arc<Source> {
        match self {
            Doc::Cluster(o) => o.source.clone(),
            Doc::Environment(o) => o.source.clone(),
            Doc::Service(o) => o.source.clone(),
            Doc::Quota(o) => o.source.clone(),
            Doc::Secret(o) => o.source.clone(),
            Doc::Raw(o) => o.source.clone(),
        }
    }

    pub fn source(&self) -> &Source {
        match self {
            Doc::Cluster(o) => &o.source,
            Doc::Environment(o) => &o.source,
            Doc::Service(o) => &o.source,
            Doc::Quota(o) => &o.source,
            Doc::Secret(o) => &o.source,
            Doc::Raw(o) => &o.source,
        }
    }
}

fn at(file: &Arc<str>, line: u32, column: u32) -> Location {
    Location {
        file: file.clone(),
        line,
        column,
    }
}

/// A document that did not parse: why, and which object it meant to be when that is
/// known (so that rules do not also blame the objects referring to it).
#[derive(Debug, Clone)]
pub(crate) struct Failed {
    /// Every problem of the document (at least one).
    pub diagnostics: Vec<Diagnostic>,
    pub identity: Option<(Kind, String)>,
}

impl From<Box<Diagnostic>> for Failed {
    fn from(diagnostic: Box<Diagnostic>) -> Self {
        Failed {
            diagnostics: vec![*diagnostic],
            identity: None,
        }
    }
}

/// The fast path: typed values straight from the parser's events. `None` when it
/// declines, for anything unusual or wrong; the tree path then reads the document.
pub(crate) fn fast(file: &Arc<str>, chunk: &Chunk<'_>) -> Option<Doc> {
    let mut events = stream::Events::new(chunk.text);
    let kind = stream::header(&mut events)?;
    let (line, column) = events.start?;
    let source = Arc::new(Source::lazy(
        file.clone(),
        chunk.text,
        chunk.line_offset,
        (line + chunk.line_offset, column),
    ));
    fn object<S: DeserializeOwned>(
        events: &mut stream::Events<'_>,
        kind: Kind,
        source: &Arc<Source>,
    ) -> Option<Object<S>> {
        Some(Object {
            manifest: Arc::new(stream::manifest(events, kind)?),
            source: source.clone(),
        })
    }
    Some(match kind {
        Kind::Cluster => Doc::Cluster(object(&mut events, kind, &source)?),
        Kind::Environment => Doc::Environment(object(&mut events, kind, &source)?),
        Kind::Service => Doc::Service(object(&mut events, kind, &source)?),
        Kind::Quota => Doc::Quota(object(&mut events, kind, &source)?),
        Kind::Secret => Doc::Secret(object(&mut events, kind, &source)?),
        // Plain Kubernetes objects are read by the tree path.
        Kind::Manifest => return None,
    })
}

/// Parses one document. `Ok(None)` for a document with nothing in it.
pub(crate) fn parse(file: &Arc<str>, chunk: &Chunk<'_>) -> Result<Option<Doc>, Failed> {
    match fast(file, chunk) {
        Some(doc) => Ok(Some(doc)),
        None => parse_tree(file, chunk),
    }
}

/// The tree path: reads any document, and reports every problem at its exact place.
pub(crate) fn parse_tree(file: &Arc<str>, chunk: &Chunk<'_>) -> Result<Option<Doc>, Failed> {
    let root = match yaml::parse(chunk.text, chunk.line_offset) {
        Ok(Some(root)) => root,
        Ok(None) => return Ok(None),
        Err(TreeError::Syntax {
            line,
            column,
            message,
        }) => {
            return Err(Failed::from(Box::new(
                Diagnostic::new(Code::YamlSyntax, at(file, line, column), format!("invalid YAML: {message}"))
                    .with_hint("check indentation, and quote values that contain `: ` or start with a special character"),
            )));
        }
        Err(TreeError::DuplicateKey {
            line,
            column,
            key,
            path,
        }) => {
            return Err(Failed::from(Box::new(
                Diagnostic::new(
                    Code::DuplicateKey,
                    at(file, line, column),
                    format!("duplicate key `{key}` {}", in_block(&path)),
                )
                .with_hint("a key may appear once per mapping; remove or merge the repeated one"),
            )));
        }
        Err(TreeError::TooLarge { line, column }) => {
            return Err(Failed::from(Box::new(
                Diagnostic::new(
                    Code::LimitExceeded,
                    at(file, line, column),
                    format!(
                        "aliases expand this document too far (beyond {} nodes)",
                        yaml::MAX_EXPANSION
                    ),
                )
                .with_hint("write the repeated parts out, or use fewer aliases"),
            )));
        }
        Err(TreeError::TooDeep { line, column }) => {
            return Err(Failed::from(Box::new(
                Diagnostic::new(
                    Code::LimitExceeded,
                    at(file, line, column),
                    format!(
                        "the document nests deeper than {} levels here",
                        Limits::current().depth
                    ),
                )
                .with_hint(
                    "no Drover field nests this deep; or raise DROVER_MAX_DEPTH (docs/limits.md)",
                ),
            )));
        }
        Err(TreeError::TooLong {
            line,
            column,
            bytes,
        }) => {
            return Err(Failed::from(Box::new(
                Diagnostic::new(
                    Code::LimitExceeded,
                    at(file, line, column),
                    format!(
                        "this string is {}, more than the {} a string may hold",
                        bytes_in_words(bytes as u64),
                        bytes_in_words(Limits::current().string_bytes as u64)
                    ),
                )
                .with_hint("keep large data out of the spec (mount it as a secret or volume), or raise DROVER_MAX_STRING_BYTES (docs/limits.md)"),
            )));
        }
    };
    let source = Arc::new(Source::with_tree(file.clone(), root));
    let root = source.tree().expect("built while parsing");
    match root.get("apiVersion").and_then(yaml::Node::as_str) {
        Some(API_VERSION) => {}
        // Anything outside Drover's group is a plain Kubernetes object.
        Some(other) if !other.starts_with(GROUP_PREFIX) => return raw(source).map(Some),
        Some(other) => {
            return Err(Failed::from(Box::new(
                Diagnostic::new(
                    Code::UnknownKind,
                    source.locate("apiVersion"),
                    format!("unsupported apiVersion `{other}`"),
                )
                .with_hint(format!("use `apiVersion: {API_VERSION}`")),
            )));
        }
        None => {
            return Err(Failed::from(missing_header(
                &source,
                "apiVersion",
                &format!("apiVersion: {API_VERSION}"),
            )));
        }
    }
    let kind = match root.get("kind").and_then(yaml::Node::as_str) {
        None => {
            return Err(Failed::from(missing_header(
                &source,
                "kind",
                "kind: Service",
            )));
        }
        Some(text) => Kind::of_document(text).ok_or_else(|| {
            let names = Kind::DOCUMENTS.map(Kind::as_str);
            let hint = match closest(text, names) {
                Some(k) => format!("did you mean `{k}`?"),
                None => format!("expected one of {}", list(&names)),
            };
            Box::new(
                Diagnostic::new(
                    Code::UnknownKind,
                    source.locate("kind"),
                    format!("unknown kind `{text}`"),
                )
                .with_hint(hint),
            )
        })?,
    };
    let identity = root
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(yaml::Node::as_str)
        .map(|n| (kind, n.to_owned()));
    let failed = |diagnostics| Failed {
        diagnostics,
        identity: identity.clone(),
    };
    Ok(Some(match kind {
        Kind::Cluster => Doc::Cluster(typed(source, kind).map_err(failed)?),
        Kind::Environment => Doc::Environment(typed(source, kind).map_err(failed)?),
        Kind::Service => Doc::Service(typed(source, kind).map_err(failed)?),
        Kind::Quota => Doc::Quota(typed(source, kind).map_err(failed)?),
        Kind::Secret => Doc::Secret(typed(source, kind).map_err(failed)?),
        Kind::Manifest => unreachable!("not a document kind"),
    }))
}

/// The top-level key of SOPS's metadata in an encrypted file.
pub const SOPS_BLOCK: &str = "sops";

/// `drover.dev/` and anything after it: Drover's own documents.
const GROUP_PREFIX: &str = "drover.dev/";

/// A plain Kubernetes object: it needs a `kind` and a `metadata.name` (text), and is
/// kept as written.
fn raw(source: Arc<Source>) -> Result<Doc, Failed> {
    let root = source.tree().expect("built while parsing");
    let text = |path: &str| {
        path.split('.')
            .try_fold(root, |node, key| node.get(key))
            .and_then(yaml::Node::as_str)
            .filter(|t| !t.is_empty())
    };
    let api_version = text("apiVersion").unwrap_or_default();
    let mut problems = Vec::new();
    for (path, example) in [
        ("kind", "kind: ConfigMap"),
        ("metadata.name", "name: settings"),
    ] {
        if text(path).is_none() {
            problems.push(
                Diagnostic::new(
                    Code::MissingField,
                    source.locate(path),
                    format!("this Kubernetes object (`apiVersion: {api_version}`) has no `{path}` text"),
                )
                .with_hint(format!(
                    "plain Kubernetes objects need `kind` and `metadata.name`, e.g. `{example}`; a Drover document starts with `apiVersion: {API_VERSION}`"
                )),
            );
        }
    }
    if !problems.is_empty() {
        return Err(Failed {
            diagnostics: problems,
            identity: None,
        });
    }
    let (kind, name) = (
        text("kind").unwrap_or_default(),
        text("metadata.name").unwrap_or_default(),
    );
    let name = drover_model::manifest_name(api_version, kind, name);
    let value: serde_json::Value = de::from_node(root).map_err(|e| Failed {
        diagnostics: vec![describe(e, &source, Kind::Manifest)],
        identity: Some((Kind::Manifest, name.clone())),
    })?;
    Ok(Doc::Raw(RawObject {
        name,
        value: Arc::new(value),
        source,
    }))
}

fn missing_header(source: &Source, field: &str, example: &str) -> Box<Diagnostic> {
    Box::new(
        Diagnostic::new(
            Code::MissingField,
            source.start(),
            format!("document has no `{field}`"),
        )
        .with_hint(format!(
            "every document starts with `apiVersion` and `kind`, e.g. `{example}`"
        )),
    )
}

/// Most problems one document is read for: past them, the rest wait for a fix.
const MOST_PROBLEMS: usize = 50;

/// Reads the typed object, or every problem of the document: after each problem the
/// offending field is set aside and the document read again, so that a typo and a
/// wrong value are reported together, not one per fix.
fn typed<S: DeserializeOwned>(
    source: Arc<Source>,
    kind: Kind,
) -> Result<Object<S>, Vec<Diagnostic>> {
    let full = source.tree().expect("built while parsing");
    // A Secret encrypted with SOPS carries the file's `sops:` block at the top level:
    // it is read by drover-secrets from the tree, not by the typed model.
    let stripped;
    let tree = if kind == Kind::Secret && full.get(SOPS_BLOCK).is_some() {
        let mut without = full.clone();
        without.remove(SOPS_BLOCK);
        stripped = without;
        &stripped
    } else {
        full
    };
    let first = match de::from_node::<Manifest<S>>(tree) {
        Ok(manifest) => {
            return Ok(Object {
                manifest: Arc::new(manifest),
                source,
            });
        }
        Err(error) => error,
    };
    let mut diagnostics = vec![describe(first.clone(), &source, kind)];
    let mut rest = tree.clone();
    let mut removed: Vec<String> = Vec::new();
    let mut error = first;
    while diagnostics.len() < MOST_PROBLEMS {
        // Only a field can be set aside: a missing field, a problem with the whole
        // document or with a list item (removing it would renumber the items after it)
        // ends the search.
        let Some((_, _, path)) = &error.at else { break };
        let removable = !matches!(error.problem, Problem::MissingField(_))
            && !path.is_empty()
            && !path.ends_with(']');
        if !removable || !rest.remove(path) {
            break;
        }
        removed.push(path.clone());
        error = match de::from_node::<Manifest<S>>(&rest) {
            Ok(_) => break,
            Err(next) => next,
        };
        if let (Problem::MissingField(field), Some((_, _, parent))) = (&error.problem, &error.at) {
            // Missing because it was set aside: already reported.
            let full = if parent.is_empty() {
                (*field).to_owned()
            } else {
                format!("{parent}.{field}")
            };
            if removed.contains(&full) {
                break;
            }
        }
        diagnostics.push(describe(error.clone(), &source, kind));
    }
    Err(diagnostics)
}

fn list(items: &[&str]) -> String {
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn parent_of(path: &str) -> &str {
    path.rfind(['.', '[']).map_or("", |cut| &path[..cut])
}

fn in_block(parent: &str) -> String {
    if parent.is_empty() {
        "at the top level".to_owned()
    } else {
        format!("in `{parent}`")
    }
}

/// Says what serde's "expected" text means in a repo author's words.
fn expected_words(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number (0 or more)".to_owned(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".to_owned(),
        "f32" | "f64" => "a number".to_owned(),
        "a boolean" => "`true` or `false`".to_owned(),
        "a sequence" => "a list".to_owned(),
        "a map" => "a mapping".to_owned(),
        "a string" => "text".to_owned(),
        other if other.starts_with("struct ") => "a mapping of fields".to_owned(),
        other if other.starts_with("u32") || other.starts_with("u16") => {
            "a whole number (0 or more)".to_owned()
        }
        other => other.to_owned(),
    }
}

/// Turns a reader error into a diagnostic naming the field and the fix.
fn describe(error: de::Error, source: &Source, kind: Kind) -> Diagnostic {
    let (location, path) = match error.at {
        Some((line, column, path)) => (at(source.file(), line, column), path),
        None => (source.start(), String::new()),
    };
    // Secrets: never echo a value from the document.
    let show_values = kind != Kind::Secret;
    match error.problem {
        Problem::UnknownField { field, expected } => {
            let hint = match closest(&field, expected.iter().copied()) {
                Some(f) => format!("did you mean `{f}`?"),
                None if expected.is_empty() => "remove it".to_owned(),
                None => format!("expected one of {}", list(expected)),
            };
            Diagnostic::new(
                Code::UnknownField,
                location,
                format!(
                    "unknown field `{field}` {} of {kind}",
                    in_block(parent_of(&path))
                ),
            )
            .with_hint(hint)
        }
        Problem::MissingField(field) => Diagnostic::new(
            Code::MissingField,
            location,
            format!(
                "missing required field `{field}` {} of {kind}",
                in_block(&path)
            ),
        )
        .with_hint(format!(
            "add `{field}:` (docs/model.md lists every field of {kind})"
        )),
        Problem::UnknownVariant { variant, expected } => {
            let hint = match closest(&variant, expected.iter().copied()) {
                Some(v) => format!("did you mean `{v}`?"),
                None => format!("expected one of {}", list(expected)),
            };
            let shown = if show_values {
                format!("`{variant}`")
            } else {
                "the value".to_owned()
            };
            Diagnostic::new(
                Code::UnknownVariant,
                location,
                format!("{shown} is not allowed for `{path}`"),
            )
            .with_hint(hint)
        }
        Problem::Mismatch { expected, found } => {
            let found = if show_values {
                format!(", found {found}")
            } else {
                String::new()
            };
            Diagnostic::new(
                Code::InvalidValue,
                location,
                format!("`{path}` must be {}{found}", expected_words(&expected)),
            )
        }
        Problem::Custom(text) => {
            let text = if show_values {
                text
            } else {
                "invalid value".to_owned()
            };
            Diagnostic::new(Code::InvalidValue, location, format!("`{path}`: {text}"))
        }
    }
}
