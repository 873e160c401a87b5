//! The envelope every document in a config repo shares: apiVersion, kind, metadata, spec.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group and version of every kind in this model.
pub const API_VERSION: &str = "drover.dev/v1alpha1";
/// The API group alone (for CRDs).
pub const GROUP: &str = "drover.dev";

/// The kinds a config repo can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Cluster,
    Environment,
    Service,
    Quota,
    Secret,
    /// A plain Kubernetes object (a ConfigMap, a Job, anything with an `apiVersion`
    /// outside `drover.dev`) in an environment's folder, applied as it is written by
    /// the Kubernetes engine. Its name is its [`manifest_name`].
    Manifest,
}

impl Kind {
    /// Every kind, in the order objects of one environment are applied: what services
    /// use (quotas, secrets, plain manifests such as ConfigMaps) before the services.
    pub const ALL: [Kind; 6] = [
        Kind::Cluster,
        Kind::Environment,
        Kind::Quota,
        Kind::Secret,
        Kind::Manifest,
        Kind::Service,
    ];

    /// The kinds of Drover's own documents (`apiVersion: drover.dev/v1alpha1`).
    pub const DOCUMENTS: [Kind; 5] = [
        Kind::Cluster,
        Kind::Environment,
        Kind::Quota,
        Kind::Secret,
        Kind::Service,
    ];

    /// The `kind:` text.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Cluster => "Cluster",
            Kind::Environment => "Environment",
            Kind::Service => "Service",
            Kind::Quota => "Quota",
            Kind::Secret => "Secret",
            Kind::Manifest => "Manifest",
        }
    }

    /// Parses a kind's text as [`Kind::as_str`] writes it (stored state, snapshots).
    pub fn parse(text: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// Parses the `kind:` of a Drover document (exact spelling, as Kubernetes does):
    /// `Manifest` is not one, a plain Kubernetes object is told by its `apiVersion`.
    pub fn of_document(text: &str) -> Option<Kind> {
        Kind::DOCUMENTS.into_iter().find(|k| k.as_str() == text)
    }

    /// Kinds that live inside an environment's folder (the rest live in `clusters/`).
    pub fn is_environment_scoped(self) -> bool {
        !matches!(self, Kind::Cluster)
    }
}

/// The name a plain Kubernetes object goes by in Drover (diffs, plans, releases,
/// status): `Kind/name` for the core group, `Kind.group/name` otherwise, as kubectl
/// writes resources (`ConfigMap/settings`, `Job.batch/migrate`). The version is left
/// out: an object moved from `v1beta1` to `v1` is the same object.
pub fn manifest_name(api_version: &str, kind: &str, name: &str) -> String {
    match api_version.rsplit_once('/') {
        Some((group, _)) => format!("{kind}.{group}/{name}"),
        None => format!("{kind}/{name}"),
    }
}

/// Whether a release member's name (see `OpenRelease::services`) is a plain
/// Kubernetes object's [`manifest_name`] rather than a service's: only those hold `/`.
pub fn is_manifest_name(name: &str) -> bool {
    name.contains('/')
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identity and free-form annotations of an object.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "proptest", derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    /// The object's name: at most 63 characters, lowercase letters, digits and `-`,
    /// starting with a letter and ending with a letter or digit. Unique per kind within
    /// an environment (per kind in the repo for clusters).
    pub name: String,
    /// Key/value pairs for selecting and filtering. Keys starting with `drover.dev/`
    /// are set by Drover and cannot be written.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[cfg_attr(feature = "proptest", proptest(strategy = "crate::arb::small_map()"))]
    pub labels: BTreeMap<String, String>,
    /// Key/value notes for people and tools; never interpreted by Drover.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[cfg_attr(feature = "proptest", proptest(strategy = "crate::arb::small_map()"))]
    pub annotations: BTreeMap<String, String>,
}

/// One document of a config repo: `apiVersion`, `kind`, `metadata`, `spec`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Manifest<S> {
    /// Always `drover.dev/v1alpha1`.
    pub api_version: String,
    /// The kind of object this document describes.
    pub kind: String,
    /// Name, labels and annotations.
    pub metadata: Metadata,
    /// The desired state of the object.
    pub spec: S,
}

impl<S> Manifest<S> {
    /// A manifest of the given kind, with the current API version.
    pub fn new(kind: Kind, name: impl Into<String>, spec: S) -> Self {
        Manifest {
            api_version: API_VERSION.to_owned(),
            kind: kind.as_str().to_owned(),
            metadata: Metadata {
                name: name.into(),
                ..Metadata::default()
            },
            spec,
        }
    }

    /// The object's name.
    pub fn name(&self) -> &str {
        &self.metadata.name
    }
}
