//! `dependsOn` waves within a release: a service starts rolling only when the services
//! it depends on are done at the new revision, and a rollback goes the other way round
//! (a service goes back only when those that depend on it have). Every engine asks
//! this before it moves a service, so the order holds wherever the release runs.

use std::collections::BTreeMap;

use crate::judge::OpenRelease;

/// Each service of an environment and the services it depends on.
pub type Dependencies = BTreeMap<String, Vec<String>>;

/// The service of `release` that `service` must wait for now: one it depends on (one
/// that depends on it, in a rollback) that is not `settled` yet. `None` when it may
/// roll, or when the release does not change it.
pub fn waits_for<'a>(
    release: &'a OpenRelease,
    dependencies: &Dependencies,
    settled: impl Fn(&str) -> bool,
    service: &str,
) -> Option<&'a str> {
    if !release.services.iter().any(|s| s == service) {
        return None;
    }
    let depends = |a: &str, b: &str| {
        dependencies
            .get(a)
            .is_some_and(|d| d.iter().any(|x| x == b))
    };
    release
        .services
        .iter()
        .filter(|other| *other != service)
        .filter(|other| {
            if release.is_rollback() {
                depends(other, service)
            } else {
                depends(service, other)
            }
        })
        .find(|other| !settled(other))
        .map(String::as_str)
}
