//! Everything a revision is checked for, in one place, so `drover validate`, previews
//! and the follower agree: the model's rules, its secrets (opened with the keys given,
//! or checked for their format only), and the policies — Drover's shipped ones and the
//! repo's own `policies/`.

use drover_load::{DocumentCache, SourceFile};
use drover_secrets::{Keys, Values};
use drover_validate::Checked;

/// Checks a revision's files; returns what loaded with every finding, sorted by place,
/// and the values of its secrets (empty without keys).
pub fn check_revision(
    files: &[SourceFile],
    cache: &mut DocumentCache,
    keys: Option<&Keys>,
) -> (Checked, Values) {
    let mut checked = drover_validate::check_cached(files, cache);
    let values = drover_secrets::repo::check(&mut checked, keys);
    let (mut policies, problems) = drover_policy::from_files(files);
    policies.extend(drover_policy::shipped());
    checked.diagnostics.extend(problems);
    checked
        .diagnostics
        .extend(drover_policy::check(&checked.repo, &policies));
    drover_diagnostics::sort(&mut checked.diagnostics);
    (checked, values)
}
