//! The catalogue of diagnostic codes. Codes are stable: tools match on them, and
//! docs/errors.md explains each one.

use serde::{Serialize, Serializer};

use crate::Severity;

macro_rules! codes {
    ($($variant:ident = $id:literal, $severity:ident, $summary:literal;)*) => {
        /// A stable diagnostic code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code {
            $(#[doc = $summary] $variant,)*
        }

        impl Code {
            /// Every code, in catalogue order.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The code as printed: `E012`, `W001`.
            pub fn id(self) -> &'static str {
                match self { $(Code::$variant => $id,)* }
            }

            /// Errors make a repo invalid; warnings do not.
            pub fn severity(self) -> Severity {
                match self { $(Code::$variant => Severity::$severity,)* }
            }

            /// The code's name in kebab-case (`unknown-field`): the folder of its
            /// example under `examples/invalid/` or `examples/warnings/`.
            pub fn slug(self) -> String {
                let name = match self { $(Code::$variant => stringify!($variant),)* };
                let mut slug = String::new();
                for (i, c) in name.char_indices() {
                    if c.is_ascii_uppercase() && i > 0 {
                        slug.push('-');
                    }
                    slug.push(c.to_ascii_lowercase());
                }
                slug
            }

            /// One line saying what the code is about.
            pub fn summary(self) -> &'static str {
                match self { $(Code::$variant => $summary,)* }
            }
        }
    };
}

codes! {
    YamlSyntax = "E001", Error, "The file is not valid YAML.";
    UnknownField = "E002", Error, "A field the kind does not have (often a typo).";
    MissingField = "E003", Error, "A required field is missing.";
    InvalidValue = "E004", Error, "A value of the wrong type or form.";
    UnknownKind = "E005", Error, "An unknown `kind` or unsupported `apiVersion`.";
    DuplicateKey = "E006", Error, "The same key twice in one mapping.";
    Misplaced = "E007", Error, "A document in a folder where its kind does not belong.";
    DuplicateObject = "E008", Error, "Two objects of the same kind and name in one environment (or two clusters of one name).";
    UnknownVariant = "E009", Error, "A value outside the field's allowed set.";
    NotARepo = "E010", Error, "The folder is not laid out as a Drover config repo.";
    EnvironmentDocument = "E011", Error, "An environment folder without exactly one matching `Environment` document.";
    Unreadable = "E012", Error, "A file that is not UTF-8 text, not a regular file, or a link out of the repo.";
    LimitExceeded = "E013", Error, "A file, revision, document or string beyond a limit (docs/limits.md says how to raise it).";
    InvalidName = "E101", Error, "A name that breaks the naming rule (63 characters, lowercase letters, digits, `-`).";
    InvalidEnvVarName = "E102", Error, "An environment variable name that is not letters, digits and `_`.";
    ReplicasWithGlobalMode = "E103", Error, "`replicas` set on a `global` service.";
    LimitBelowRequest = "E104", Error, "A limit smaller than its request.";
    LivenessSuccessThreshold = "E105", Error, "A liveness probe whose success threshold is not 1.";
    InvalidProbe = "E106", Error, "A probe without exactly one check, or with a zero period, timeout or threshold.";
    InvalidAutoscaling = "E107", Error, "Autoscaling bounds or metrics that cannot work.";
    UtilizationNeedsRequest = "E108", Error, "A utilization target on a resource without a request.";
    AddressPoolTooSmall = "E109", Error, "A proxy address pool smaller than /26 (64 addresses).";
    AddressPoolRoles = "E110", Error, "Not exactly one active and at most one backup pool per region and network.";
    InvalidAddress = "E111", Error, "An IP address or CIDR range that does not parse or is not allowed here.";
    UnknownCluster = "E112", Error, "An environment naming a cluster the repo does not define.";
    UnknownSecret = "E113", Error, "A service mounting a secret its environment does not define.";
    UnknownDependency = "E114", Error, "A `dependsOn` naming a service its environment does not define.";
    DependencyCycle = "E115", Error, "Services that depend on each other in a cycle.";
    QuotaExceeded = "E116", Error, "An environment whose declared services already exceed its quota.";
    EngineSettings = "E117", Error, "Engine settings that do not match the cluster's engine.";
    InvalidConstraint = "E118", Error, "A placement constraint that does not parse.";
    UnknownPort = "E119", Error, "A route or probe naming a port the service does not declare.";
    RouteConflict = "E120", Error, "A route that is malformed or that two services claim.";
    InvalidUpdateConfig = "E121", Error, "Update or rollback settings out of range.";
    LimitRangeViolation = "E122", Error, "A request or limit outside the quota's per-instance bounds.";
    InvalidPromotion = "E123", Error, "A promotion from an unknown environment or in a cycle.";
    InvalidNode = "E124", Error, "Node definitions that cannot be scheduled on.";
    InvalidVolume = "E125", Error, "A volume with a bad target or a missing source.";
    InvalidSecret = "E126", Error, "A secret with no values or a bad key.";
    ReservedLabel = "E127", Error, "A label under `drover.dev/`, which Drover owns.";
    InvalidPort = "E128", Error, "A port declared twice or numbered 0.";
    NoWorkload = "E129", Error, "A service with nothing to run.";
    InvalidManifest = "E130", Error, "A plain Kubernetes object Drover cannot apply as written (its own namespace, a Kubernetes Secret, or an environment on a cluster that is not Kubernetes).";
    SecretFormat = "E131", Error, "A Secret whose SOPS metadata or encrypted values break SOPS's format, or a value in clear where the file's rule encrypts it.";
    UndecryptableSecret = "E132", Error, "An encrypted Secret no key of the control plane opens, or whose MAC does not match its values.";
    PolicyViolation = "E133", Error, "An object that breaks a policy rule of severity `error` (shipped in policies/ or the config repo's own).";
    InvalidPolicy = "E134", Error, "A policy file that does not parse, or a rule whose CEL expression does not compile.";
    InvalidChangeRules = "E135", Error, "An environment's `changes` rules naming an author that is not an e-mail address or a signer that is not a public key.";
    MemoryRequestNotLimit = "W001", Warning, "Memory request differs from its limit (memory cannot be throttled, only killed).";
    RoutedWithoutReadiness = "W002", Warning, "A routed service without a readiness probe gets traffic before it is ready.";
    PolicyWarning = "W003", Warning, "An object that breaks a policy rule of severity `warning`.";
}

impl Serialize for Code {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.id())
    }
}

/// docs/errors.md: every code, what it means, and where its example lives.
pub fn catalogue_markdown() -> String {
    let mut out = String::from(
        "# Diagnostic codes\n\n\
         Generated from operator/diagnostics by `cargo run -p drover -- generate`; do not edit by hand.\n\n\
         `drover validate` prints `path:line:column: error[CODE]: message` and a hint. Errors make a\n\
         repo invalid (exit 1) and nothing from it reaches an engine; warnings do not. Each code has a\n\
         small example repo showing it, with the exact output in its `expected.txt`.\n\n\
         | Code | Severity | Meaning | Example |\n|---|---|---|---|\n",
    );
    for code in Code::ALL {
        let folder = match code.severity() {
            Severity::Error => "invalid",
            Severity::Warning => "warnings",
        };
        out.push_str(&format!(
            "| {} | {} | {} | [examples/{folder}/{slug}](../examples/{folder}/{slug}/) |\n",
            code.id(),
            code.severity(),
            code.summary(),
            slug = code.slug()
        ));
    }
    out
}
