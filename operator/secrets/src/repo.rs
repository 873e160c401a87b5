//! Opening every `Secret` of a revision: the values the engines deliver, keyed by the
//! fingerprint the normalized objects show, and a diagnostic at `file:line:column` for
//! each problem, so an undecryptable revision is rejected like any invalid one.

use drover_diagnostics::{Code, Diagnostic};
use drover_load::Repo;

use crate::document::{self, ProblemKind};
use crate::keys::Keys;
use crate::values::{ValueId, Values};

/// Opens every secret of `repo`. With `keys` (the control plane, or a CLI given a key)
/// encrypted values are opened and their MACs checked; without, only the format is
/// checked and encrypted values are left out.
pub fn open(repo: &Repo, keys: Option<&Keys>) -> (Values, Vec<Diagnostic>) {
    let mut values = Values::default();
    let mut diagnostics = Vec::new();
    for dir in &repo.environments {
        for secret in &dir.secrets {
            match document::open(secret, keys) {
                Ok(opened) => {
                    for (key, plain) in opened {
                        let written = &secret.spec().data[&key];
                        values.insert(
                            ValueId {
                                environment: dir.name.clone(),
                                secret: secret.name().to_owned(),
                                key,
                                fingerprint: drover_diff::fingerprint(written),
                            },
                            plain,
                        );
                    }
                }
                Err(problems) => {
                    for p in problems {
                        let code = match p.kind {
                            ProblemKind::Format => Code::SecretFormat,
                            ProblemKind::Undecryptable => Code::UndecryptableSecret,
                        };
                        diagnostics.push(
                            Diagnostic::new(
                                code,
                                secret.locate(&p.path),
                                format!("secret `{}`: {}", secret.name(), p.message),
                            )
                            .with_hint(p.hint),
                        );
                    }
                }
            }
        }
    }
    (values, diagnostics)
}

/// Opens the secrets of a checked revision, adding their problems to its diagnostics
/// (sorted by place again): an undecryptable revision is invalid like any other.
pub fn check(checked: &mut drover_validate::Checked, keys: Option<&Keys>) -> Values {
    let (values, diagnostics) = open(&checked.repo, keys);
    if !diagnostics.is_empty() {
        checked.diagnostics.extend(diagnostics);
        drover_diagnostics::sort(&mut checked.diagnostics);
    }
    values
}

/// Whether any secret of `repo` is encrypted (has a `sops:` block).
pub fn has_encrypted(repo: &Repo) -> bool {
    repo.environments.iter().flat_map(|d| &d.secrets).any(|s| {
        s.source
            .tree()
            .is_some_and(|t| t.get(drover_load::SOPS_BLOCK).is_some())
    })
}
