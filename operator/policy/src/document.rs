//! A policy file: parsed, its rules compiled once, every problem a diagnostic at the
//! field that holds it.

use std::sync::Arc;

use drover_diagnostics::{Code, Diagnostic, Location};
use drover_load::{SourceFile, YamlNode};
use serde::Deserialize;

/// How bad breaking a rule is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The revision is invalid.
    #[default]
    Error,
    /// Shown; the revision stays valid.
    Warning,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PolicyDocument {
    api_version: String,
    kind: String,
    metadata: Metadata,
    spec: PolicySpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Metadata {
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PolicySpec {
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    #[serde(default, rename = "match")]
    matches: Match,
    rules: Vec<RuleSpec>,
}

/// Which objects a policy looks at; empty lists match everything.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Match {
    /// `Service`, `Secret`, `Environment`, `Quota`, `Cluster`, `Manifest`.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Environment names.
    #[serde(default)]
    pub environments: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RuleSpec {
    name: String,
    expression: String,
    message: String,
    #[serde(default)]
    severity: Severity,
    #[serde(default)]
    path: Option<String>,
}

/// One rule, compiled.
pub struct Rule {
    pub name: String,
    pub expression: String,
    pub message: String,
    pub severity: Severity,
    /// The field a violation is reported at (`spec.resources`); the object's start
    /// when unset.
    pub path: Option<String>,
    pub(crate) program: cel::Program,
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rule")
            .field("name", &self.name)
            .field("expression", &self.expression)
            .finish()
    }
}

/// A policy, ready to evaluate.
#[derive(Debug)]
pub struct Policy {
    pub name: String,
    /// Where it came from: `policies/NAME.yaml` of Drover (shipped) or of the repo.
    pub file: Arc<str>,
    pub matches: Match,
    pub rules: Vec<Rule>,
}

impl Policy {
    /// Whether the policy looks at an object of `kind` in `environment`.
    pub fn applies_to(&self, kind: &str, environment: &str) -> bool {
        (self.matches.kinds.is_empty() || self.matches.kinds.iter().any(|k| k == kind))
            && (self.matches.environments.is_empty()
                || self.matches.environments.iter().any(|e| e == environment))
    }
}

/// The policies Drover ships (`policies/` of its repository), built into the binary.
pub fn shipped() -> Vec<Policy> {
    const FILES: [(&str, &str); 4] = [
        (
            "policies/production-services.yaml",
            include_str!("../../../policies/production-services.yaml"),
        ),
        (
            "policies/image-tags.yaml",
            include_str!("../../../policies/image-tags.yaml"),
        ),
        (
            "policies/public-routes.yaml",
            include_str!("../../../policies/public-routes.yaml"),
        ),
        (
            "policies/production-secrets.yaml",
            include_str!("../../../policies/production-secrets.yaml"),
        ),
    ];
    let mut out = Vec::new();
    for (path, text) in FILES {
        let (policies, problems) = parse(path, text);
        assert!(
            problems.is_empty(),
            "a shipped policy is broken: {problems:?}"
        );
        out.extend(policies);
    }
    out
}

/// The policies of a config repo's `policies/` folder, and a diagnostic for each
/// problem with them.
pub fn from_files(files: &[SourceFile]) -> (Vec<Policy>, Vec<Diagnostic>) {
    let mut policies = Vec::new();
    let mut diagnostics = Vec::new();
    for file in files.iter().filter(|f| {
        f.path.starts_with(crate::REPO_FOLDER)
            && (f.path.ends_with(".yaml") || f.path.ends_with(".yml"))
    }) {
        let (p, d) = parse(&file.path, &file.text);
        policies.extend(p);
        diagnostics.extend(d);
    }
    (policies, diagnostics)
}

fn at(file: &Arc<str>, (line, column): (u32, u32)) -> Location {
    Location {
        file: file.clone(),
        line,
        column,
    }
}

/// Every policy document of one file.
fn parse(path: &str, text: &str) -> (Vec<Policy>, Vec<Diagnostic>) {
    let file: Arc<str> = path.into();
    let mut policies = Vec::new();
    let mut problems = Vec::new();
    let mut offset = 0u32;
    for chunk in text.split("\n---") {
        let lines = chunk.matches('\n').count() as u32 + 1;
        let here = offset;
        offset += lines;
        if chunk.trim().is_empty() || chunk.trim() == "---" {
            continue;
        }
        let tree = match drover_load::parse_document(chunk) {
            Ok(Some(tree)) => tree,
            Ok(None) => continue,
            Err(e) => {
                problems.push(invalid(&file, (here + 1, 1), format!("not YAML: {e}")));
                continue;
            }
        };
        let locate = |p: &str| {
            let (l, c) = tree.locate(p);
            (l + here, c)
        };
        match serde_saphyr::from_str::<PolicyDocument>(chunk) {
            Ok(doc) => match compile(doc, &file, &tree, &locate) {
                Ok(policy) => policies.push(policy),
                Err(d) => problems.extend(d),
            },
            Err(e) => problems.push(invalid(
                &file,
                locate(""),
                format!("not a policy: {}", first_line(&e.to_string())),
            )),
        }
    }
    (policies, problems)
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

fn invalid(file: &Arc<str>, place: (u32, u32), message: String) -> Diagnostic {
    Diagnostic::new(Code::InvalidPolicy, at(file, place), message).with_hint(
        "a policy is `apiVersion: drover.dev/v1alpha1`, `kind: Policy`, `metadata.name` and `spec.rules: [{name, expression, message, severity, path}]` (docs/policies.md)",
    )
}

fn compile(
    doc: PolicyDocument,
    file: &Arc<str>,
    _tree: &YamlNode,
    locate: &dyn Fn(&str) -> (u32, u32),
) -> Result<Policy, Vec<Diagnostic>> {
    let mut problems = Vec::new();
    if doc.api_version != drover_model::API_VERSION || doc.kind != "Policy" {
        problems.push(invalid(
            file,
            locate("kind"),
            format!("`{}` `{}` is not a policy", doc.api_version, doc.kind),
        ));
    }
    let mut rules = Vec::new();
    for (i, rule) in doc.spec.rules.into_iter().enumerate() {
        match cel::Program::compile(&rule.expression) {
            Ok(program) => rules.push(Rule {
                name: rule.name,
                expression: rule.expression,
                message: rule.message,
                severity: rule.severity,
                path: rule.path,
                program,
            }),
            Err(e) => problems.push(
                Diagnostic::new(
                    Code::InvalidPolicy,
                    at(file, locate(&format!("spec.rules[{i}].expression"))),
                    format!(
                        "rule `{}` of policy `{}`: the expression is not CEL: {}",
                        rule.name,
                        doc.metadata.name,
                        first_line(&e.to_string())
                    ),
                )
                .with_hint("CEL as Kubernetes admission policies write it, e.g. `object.spec.replicas >= 2` (docs/policies.md)"),
            ),
        }
    }
    if problems.is_empty() {
        Ok(Policy {
            name: doc.metadata.name,
            file: file.clone(),
            matches: doc.spec.matches,
            rules,
        })
    } else {
        Err(problems)
    }
}
