//! docs/reference.md, generated from the same schemas as the CRDs: every field of
//! every kind with its type, default and meaning, so the docs cannot drift from the
//! code.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::Kind;
use crate::schema::{crds, editor_schema};

/// The whole field reference as Markdown.
pub fn reference_markdown() -> String {
    let schema = editor_schema();
    let defs = schema["$defs"]
        .as_object()
        .expect("the editor schema has $defs");
    let mut out = String::from(
        "# Field reference\n\n\
         Generated from the Rust model by `cargo run -p drover -- generate`; do not edit by hand.\n\
         docs/model.md explains the layout of a config repo and shows examples.\n\n\
         Every document has `apiVersion: drover.dev/v1alpha1`, a `kind`, `metadata` and `spec`.\n\
         Fields marked **required** must be set; every other field has the default shown\n\
         (empty lists and maps, and unset optional values, are left out of the table).\n",
    );
    for kind in Kind::DOCUMENTS {
        let _ = write!(out, "\n## {kind}\n\n");
        let crd = crds()
            .into_iter()
            .find(|c| c.spec.names.kind == kind.as_str());
        let about = crd
            .and_then(|c| c.spec.versions.into_iter().next())
            .and_then(|v| v.schema?.open_api_v3_schema?.description);
        if let Some(text) = about {
            let _ = writeln!(out, "{}\n", one_line(&text));
        }
        out.push_str("| Field | Type | Default | Meaning |\n|---|---|---|---|\n");
        let root = &defs[kind.as_str()];
        for (name, field) in properties(root) {
            if matches!(name.as_str(), "apiVersion" | "kind") {
                continue;
            }
            rows(defs, &name, field, is_required(root, &name), &mut out);
        }
    }
    out
}

fn properties(schema: &Value) -> Vec<(String, &Value)> {
    schema["properties"]
        .as_object()
        .map(|p| p.iter().map(|(k, v)| (k.clone(), v)).collect())
        .unwrap_or_default()
}

fn is_required(parent: &Value, name: &str) -> bool {
    parent["required"]
        .as_array()
        .is_some_and(|r| r.iter().any(|v| v == name))
}

fn one_line(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

/// Follows `$ref` and `anyOf: [X, null]` to the schema that says what a field is.
fn resolve<'a>(defs: &'a Map<String, Value>, schema: &'a Value) -> &'a Value {
    if let Some(r) = schema["$ref"].as_str() {
        return resolve(defs, &defs[r.trim_start_matches("#/$defs/")]);
    }
    if let Some(any) = schema["anyOf"].as_array()
        && any.len() == 2
        && any[1]["type"] == "null"
    {
        return resolve(defs, &any[0]);
    }
    schema
}

fn ref_name(schema: &Value) -> Option<&str> {
    let r = schema["$ref"]
        .as_str()
        .or_else(|| schema["anyOf"].as_array()?.first()?["$ref"].as_str())?;
    Some(r.trim_start_matches("#/$defs/"))
}

fn enum_values(schema: &Value) -> Option<Vec<String>> {
    if let Some(values) = schema["enum"].as_array() {
        return Some(
            values
                .iter()
                .filter_map(|v| v.as_str().map(|s| format!("`{s}`")))
                .collect(),
        );
    }
    let one_of = schema["oneOf"].as_array()?;
    one_of
        .iter()
        .map(|v| v["const"].as_str().map(|s| format!("`{s}`")))
        .collect()
}

fn type_name(defs: &Map<String, Value>, schema: &Value) -> String {
    match ref_name(schema) {
        Some("Cpu") => return "CPU amount".to_owned(),
        Some("Memory") => return "memory amount".to_owned(),
        Some("Duration") => return "duration".to_owned(),
        Some("PortRef") => return "port name or number".to_owned(),
        _ => {}
    }
    let s = resolve(defs, schema);
    if let Some(values) = enum_values(s) {
        return values.join(" \\| ");
    }
    // `Option<T>` comes out as `type: [T, "null"]`.
    let ty = match &s["type"] {
        Value::Array(types) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null"),
        other => other.as_str(),
    };
    match ty {
        Some("array") => format!("list of {}", type_name(defs, &s["items"])),
        Some("object") if s.get("properties").is_none() => {
            format!("map of {}", type_name(defs, &s["additionalProperties"]))
        }
        Some("object") => "object".to_owned(),
        Some("integer") => "integer".to_owned(),
        Some("number") => "number".to_owned(),
        Some("boolean") => "boolean".to_owned(),
        Some("string") => "string".to_owned(),
        _ => "value".to_owned(),
    }
}

fn rows(defs: &Map<String, Value>, path: &str, field: &Value, required: bool, out: &mut String) {
    let target = resolve(defs, field);
    let default = if required {
        "**required**".to_owned()
    } else {
        match &field["default"] {
            Value::Null | Value::Object(_) => String::new(),
            Value::Array(a) if a.is_empty() => String::new(),
            other => format!("`{}`", other.to_string().trim_matches('"')),
        }
    };
    let description = field["description"]
        .as_str()
        .or(target["description"].as_str())
        .unwrap_or("");
    let _ = writeln!(
        out,
        "| `{path}` | {} | {default} | {} |",
        type_name(defs, field),
        one_line(description)
    );
    // Recurse into objects, and into lists of objects with `[]` in the path.
    let (child, prefix) = if target["type"] == "array" {
        (resolve(defs, &target["items"]), format!("{path}[]"))
    } else {
        (target, path.to_owned())
    };
    if child.get("properties").is_some()
        && !matches!(ref_name(field), Some("Cpu" | "Memory" | "Duration"))
    {
        for (name, sub) in properties(child) {
            rows(
                defs,
                &format!("{prefix}.{name}"),
                sub,
                is_required(child, &name),
                out,
            );
        }
    }
}
