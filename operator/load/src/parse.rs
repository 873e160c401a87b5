//! Parsing one document into its typed kind, turning serde's errors into diagnostics
//! that name the field, the file position and the likely fix.

use std::sync::Arc;

use drover_diagnostics::{Code, Diagnostic, Location, SourceMap, closest};
use drover_model::{
    API_VERSION, ClusterSpec, EnvironmentSpec, Kind, Manifest, QuotaSpec, SecretSpec, ServiceSpec,
};
use serde::de::DeserializeOwned;
use serde_saphyr::Error as YamlError;

use crate::Object;
use crate::document::{self, Chunk};

/// One parsed document of a known kind.
#[derive(Debug)]
pub(crate) enum Doc {
    Cluster(Object<ClusterSpec>),
    Environment(Object<EnvironmentSpec>),
    Service(Object<ServiceSpec>),
    Quota(Object<QuotaSpec>),
    Secret(Object<SecretSpec>),
}

impl Doc {
    pub fn kind(&self) -> Kind {
        match self {
            Doc::Cluster(_) => Kind::Cluster,
            Doc::Environment(_) => Kind::Environment,
            Doc::Service(_) => Kind::Service,
            Doc::Quota(_) => Kind::Quota,
            Doc::Secret(_) => Kind::Secret,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Doc::Cluster(o) => o.name(),
            Doc::Environment(o) => o.name(),
            Doc::Service(o) => o.name(),
            Doc::Quota(o) => o.name(),
            Doc::Secret(o) => o.name(),
        }
    }

    pub fn source(&self) -> &SourceMap {
        match self {
            Doc::Cluster(o) => &o.source,
            Doc::Environment(o) => &o.source,
            Doc::Service(o) => &o.source,
            Doc::Quota(o) => &o.source,
            Doc::Secret(o) => &o.source,
        }
    }
}

/// Parses one document. `Ok(None)` for a document with nothing in it.
pub(crate) fn parse(file: &Arc<str>, chunk: &Chunk<'_>) -> Result<Option<Doc>, Box<Diagnostic>> {
    let indexed = document::index(file, chunk).map_err(|e| {
        Box::new(
            Diagnostic::new(
                Code::YamlSyntax,
                Location { file: file.clone(), line: e.line, column: e.column },
                format!("invalid YAML: {}", e.message),
            )
            .with_hint("check indentation, and quote values that contain `: ` or start with a special character"),
        )
    })?;
    if indexed.empty {
        return Ok(None);
    }
    let map = Arc::new(indexed.map);
    match indexed.api_version.as_deref() {
        Some(API_VERSION) => {}
        Some(other) => {
            return Err(Box::new(
                Diagnostic::new(
                    Code::UnknownKind,
                    map.locate("apiVersion"),
                    format!("unsupported apiVersion `{other}`"),
                )
                .with_hint(format!("use `apiVersion: {API_VERSION}`")),
            ));
        }
        None => return Err(missing_header(&map, "apiVersion", &format!("apiVersion: {API_VERSION}"))),
    }
    let kind = match indexed.kind.as_deref() {
        None => return Err(missing_header(&map, "kind", "kind: Service")),
        Some(text) => Kind::parse(text).ok_or_else(|| {
            let names = Kind::ALL.map(Kind::as_str);
            let hint = match closest(text, names) {
                Some(k) => format!("did you mean `{k}`?"),
                None => format!("expected one of {}", list(&names)),
            };
            Box::new(
                Diagnostic::new(Code::UnknownKind, map.locate("kind"), format!("unknown kind `{text}`"))
                    .with_hint(hint),
            )
        })?,
    };
    Ok(Some(match kind {
        Kind::Cluster => Doc::Cluster(typed(chunk, map, kind)?),
        Kind::Environment => Doc::Environment(typed(chunk, map, kind)?),
        Kind::Service => Doc::Service(typed(chunk, map, kind)?),
        Kind::Quota => Doc::Quota(typed(chunk, map, kind)?),
        Kind::Secret => Doc::Secret(typed(chunk, map, kind)?),
    }))
}

fn missing_header(map: &SourceMap, field: &str, example: &str) -> Box<Diagnostic> {
    Box::new(
        Diagnostic::new(Code::MissingField, map.start(), format!("document has no `{field}`"))
            .with_hint(format!("every document starts with `apiVersion` and `kind`, e.g. `{example}`")),
    )
}

fn typed<S: DeserializeOwned>(
    chunk: &Chunk<'_>,
    map: Arc<SourceMap>,
    kind: Kind,
) -> Result<Object<S>, Box<Diagnostic>> {
    // Legacy octal (`0644` = 420) as kubectl reads it; duplicate keys stay errors.
    let options = serde_saphyr::options! { legacy_octal_numbers: true };
    match serde_saphyr::from_str_with_options::<Manifest<S>>(chunk.text, options) {
        Ok(manifest) => Ok(Object { manifest, source: map }),
        Err(error) => Err(Box::new(describe(&error, chunk, &map, kind))),
    }
}

fn list(items: &[&str]) -> String {
    items.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", ")
}

fn parent_of(path: &str) -> &str {
    path.rfind(['.', '[']).map_or("", |cut| &path[..cut])
}

fn in_block(parent: &str) -> String {
    if parent.is_empty() { "at the top level".to_owned() } else { format!("in `{parent}`") }
}

/// Says in words what a scalar type expects.
fn describe_type(ty: &str) -> String {
    match ty {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number (0 or more)".to_owned(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".to_owned(),
        "f32" | "f64" => "a number".to_owned(),
        "bool" => "`true` or `false`".to_owned(),
        other => format!("a value of type {other}"),
    }
}

/// Turns a serde-saphyr error into a diagnostic naming the field and the fix.
fn describe(error: &YamlError, chunk: &Chunk<'_>, map: &SourceMap, kind: Kind) -> Diagnostic {
    let (line, column) = error
        .location()
        .map(|l| (l.line() as u32 + chunk.line_offset, l.column() as u32))
        .unwrap_or_else(|| {
            let start = map.start();
            (start.line, start.column)
        });
    let at = Location { file: map.file().clone(), line, column };
    let path = map.path_at(line, column).unwrap_or_default();
    // Secrets: never echo a value from the document.
    let show_values = kind != Kind::Secret;
    match error.without_snippet() {
        YamlError::SerdeUnknownField { field, expected, .. } => {
            let hint = match closest(field, expected.iter().copied()) {
                Some(f) => format!("did you mean `{f}`?"),
                None if expected.is_empty() => "remove it".to_owned(),
                None => format!("expected one of {}", list(expected)),
            };
            Diagnostic::new(
                Code::UnknownField,
                at,
                format!("unknown field `{field}` {} of {kind}", in_block(parent_of(&path))),
            )
            .with_hint(hint)
        }
        YamlError::SerdeMissingField { field, .. } => {
            // The error points at the first key of the incomplete mapping.
            let block = parent_of(&path);
            Diagnostic::new(
                Code::MissingField,
                at,
                format!("missing required field `{field}` {} of {kind}", in_block(block)),
            )
            .with_hint(format!("add `{field}:` (docs/model.md lists every field of {kind})"))
        }
        YamlError::SerdeUnknownVariant { variant, expected, .. } => {
            let hint = match closest(variant, expected.iter().copied()) {
                Some(v) => format!("did you mean `{v}`?"),
                None => format!("expected one of {}", list(expected)),
            };
            let shown = if show_values { format!("`{variant}`") } else { "the value".to_owned() };
            Diagnostic::new(Code::UnknownVariant, at, format!("{shown} is not allowed for `{path}`"))
                .with_hint(hint)
        }
        YamlError::DuplicateMappingKey { key, .. } => {
            let key = key.as_deref().unwrap_or("?");
            Diagnostic::new(
                Code::DuplicateKey,
                at,
                format!("duplicate key `{key}` {}", in_block(parent_of(&path))),
            )
            .with_hint("a key may appear once per mapping; remove or merge the repeated one")
        }
        YamlError::InvalidScalar { ty, .. } => Diagnostic::new(
            Code::InvalidValue,
            at,
            format!("`{path}` must be {}", describe_type(ty)),
        ),
        YamlError::SerdeInvalidType { unexpected, expected, .. }
        | YamlError::SerdeInvalidValue { unexpected, expected, .. } => {
            let found = if show_values { format!(", found {unexpected}") } else { String::new() };
            Diagnostic::new(Code::InvalidValue, at, format!("`{path}` must be {expected}{found}"))
        }
        other => {
            // Anything else: serde-saphyr's own words, minus its position suffix.
            let text = other.to_string();
            let text = text.rfind(" at line ").map_or(text.as_str(), |cut| &text[..cut]);
            let text = if show_values { text.to_owned() } else { "invalid value".to_owned() };
            Diagnostic::new(Code::InvalidValue, at, format!("{text} (at `{path}`)"))
        }
    }
}
