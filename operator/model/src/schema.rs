//! CRDs and editor JSON Schemas, generated from the model types.
//!
//! `crds/` in the repository holds exactly what [`crd_files`] returns; a test fails
//! when they differ, and `cargo run -p drover -- generate` regenerates them.

use kube::CustomResourceExt;
use schemars::JsonSchema;
use serde_json::{Value, json};

use crate::{Kind, Manifest, cluster, environment, quota, secret, service};

/// One generated file: its name inside `crds/` and its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    /// Path relative to `crds/`.
    pub path: String,
    /// File content.
    pub content: String,
}

/// Where the Helm chart keeps its copy of the CRDs (Helm installs `crds/` first),
/// relative to the repository's root: the `.yaml` files of [`crd_files`].
pub const CHART_CRDS: &str = "charts/drover/crds";

/// The CustomResourceDefinitions of every kind, in apply order.
pub fn crds()
-> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    vec![
        cluster::Cluster::crd(),
        environment::Environment::crd(),
        quota::Quota::crd(),
        secret::Secret::crd(),
        service::Service::crd(),
    ]
}

/// A JSON Schema of one kind's documents, as an editor sees them: `kind` and
/// `apiVersion` pinned to their values, unknown fields rejected.
fn document_schema<S: JsonSchema>(kind: Kind) -> Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(Manifest<S>))
        .expect("a generated schema is plain JSON");
    let props = &mut schema["properties"];
    props["kind"] = json!({ "const": kind.as_str() });
    props["apiVersion"] = json!({ "const": crate::API_VERSION });
    schema["title"] = json!(format!("Drover {kind}"));
    if kind == Kind::Secret {
        // SOPS's metadata, which `drover secret encrypt` and `sops` write beside `spec`.
        schema["properties"]["sops"] = json!({
            "type": "object",
            "description": "SOPS's metadata: the data key wrapped for each age recipient, the MAC, the encryption rule (docs/secrets.md). Written by `drover secret encrypt`; never edited by hand.",
        });
    }
    // Editors should accept `cpu: 0.25` as written in a repo; the CRD form allows only
    // integers or strings, because that is what Kubernetes' structural schemas allow.
    allow_fractional_quantities(&mut schema);
    schema
}

fn allow_fractional_quantities(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
                && let Some(Value::Array(variants)) = map.get_mut("anyOf")
            {
                for variant in variants.iter_mut() {
                    if variant["type"] == "integer" && variant.get("maximum").is_none() {
                        variant["type"] = json!("number");
                    }
                }
            }
            map.values_mut().for_each(allow_fractional_quantities);
        }
        Value::Array(items) => items.iter_mut().for_each(allow_fractional_quantities),
        _ => {}
    }
}

/// One schema for any Drover document, choosing the kind's schema by `kind:`.
pub fn editor_schema() -> Value {
    let kinds = [
        (
            Kind::Cluster,
            document_schema::<cluster::ClusterSpec>(Kind::Cluster),
        ),
        (
            Kind::Environment,
            document_schema::<environment::EnvironmentSpec>(Kind::Environment),
        ),
        (
            Kind::Quota,
            document_schema::<quota::QuotaSpec>(Kind::Quota),
        ),
        (
            Kind::Secret,
            document_schema::<secret::SecretSpec>(Kind::Secret),
        ),
        (
            Kind::Service,
            document_schema::<service::ServiceSpec>(Kind::Service),
        ),
    ];
    let all_of: Vec<Value> = kinds
        .iter()
        .map(|(kind, _)| {
            json!({
                "if": { "properties": { "kind": { "const": kind.as_str() } }, "required": ["kind"] },
                "then": { "$ref": format!("#/$defs/{kind}") }
            })
        })
        .collect();
    let defs: serde_json::Map<String, Value> = kinds
        .into_iter()
        .map(|(kind, schema)| (kind.as_str().to_owned(), schema))
        .collect();
    let mut defs = Value::Object(defs);
    hoist_defs(&mut defs);
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Drover config repo document",
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": { "const": crate::API_VERSION },
            "kind": { "enum": Kind::DOCUMENTS.iter().map(|k| k.as_str()).collect::<Vec<_>>() }
        },
        "allOf": all_of,
        "$defs": defs
    })
}

/// Each kind's schema carries its own `$defs`; merge them into the root so every
/// `#/$defs/X` reference resolves from the combined document.
fn hoist_defs(defs: &mut Value) {
    let mut shared = serde_json::Map::new();
    if let Value::Object(kinds) = defs {
        for schema in kinds.values_mut() {
            if let Some(Value::Object(inner)) =
                schema.as_object_mut().and_then(|s| s.remove("$defs"))
            {
                shared.extend(inner);
            }
            if let Some(s) = schema.as_object_mut() {
                s.remove("$schema");
            }
        }
        for (name, schema) in shared {
            kinds.entry(name).or_insert(schema);
        }
    }
}

/// Every file `crds/` must hold.
pub fn crd_files() -> Vec<GeneratedFile> {
    let mut files: Vec<GeneratedFile> = crds()
        .into_iter()
        .map(|crd| {
            let name = crd.metadata.name.clone().unwrap_or_default();
            let yaml = serde_saphyr::to_string(&crd).expect("a CRD serializes to YAML");
            GeneratedFile {
                path: format!("{name}.yaml"),
                content: format!(
                    "# Generated from operator/model by `cargo run -p drover -- generate`. Do not edit.\n{yaml}"
                ),
            }
        })
        .collect();
    let schema = serde_json::to_string_pretty(&editor_schema()).expect("schema is JSON");
    files.push(GeneratedFile {
        path: "schema/drover.schema.json".to_owned(),
        content: schema + "\n",
    });
    files
}
