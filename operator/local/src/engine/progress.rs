//! Each service's progress as the local engine sees it, in the release core's words:
//! gone, waiting for the services before it in its release, rolling, healthy, or
//! stopped on failures — with the state of its instances, which a release's failure
//! reason shows.

use std::collections::BTreeMap;

use drover_control::engine::ServiceKey;
use drover_release::{Progress, ServiceProgress};
use drover_store::InstanceRecord;

use super::{Inner, LocalError};
use crate::instances::{Live, LocalClusters};

/// Every service of the local engine's environments, and every service an open
/// release changed (absent when the release removed it).
pub(super) fn of_services(
    inner: &Inner,
    live: &Live,
) -> Result<BTreeMap<ServiceKey, ServiceProgress>, LocalError> {
    // The instances are read only when a service is not done: their state is the
    // detail a reason shows.
    let mut records: Option<Vec<InstanceRecord>> = None;
    let services =
        live.services
            .keys()
            .filter(|(env, _)| live.local_cluster_of(env).is_some())
            .cloned()
            .chain(inner.releases.iter().flat_map(|(env, release)| {
                release.services.iter().map(|s| (env.clone(), s.clone()))
            }));
    let mut out = BTreeMap::new();
    for key in services {
        if out.contains_key(&key) {
            continue;
        }
        let state = if !live.services.contains_key(&key) {
            Progress::Absent
        } else {
            match inner.rollouts.get(&key) {
                None => Progress::Rolling,
                Some((step, _)) if step.paused.is_some() => Progress::Failed {
                    why: step.paused.clone().unwrap_or_default(),
                },
                Some((step, updating)) if step.done && !updating => Progress::Healthy,
                Some(_) => match inner.waiting.get(&key) {
                    Some(on) => Progress::Waiting { on: on.clone() },
                    None => Progress::Rolling,
                },
            }
        };
        let detail = match state {
            Progress::Absent | Progress::Healthy => String::new(),
            _ => {
                if records.is_none() {
                    records = Some(inner.state.instances()?);
                }
                why(
                    inner,
                    records.as_deref().unwrap_or_default(),
                    &key.0,
                    &key.1,
                )
            }
        };
        out.insert(key, ServiceProgress::new(state, detail));
    }
    Ok(out)
}

/// `, 0/3 ready, readiness GET /ready returned 503 (3 times)`: the state of a
/// service's instances.
fn why(inner: &Inner, records: &[InstanceRecord], env: &str, service: &str) -> String {
    let mine: Vec<&InstanceRecord> = records
        .iter()
        .filter(|r| r.environment == env && r.service == service)
        .collect();
    let ready = mine.iter().filter(|r| r.ready).count();
    let failure = mine.iter().find_map(|r| {
        inner
            .nodes
            .get(&r.node)?
            .reports
            .get(&(r.id.clone(), r.spec_hash.clone()))?
            .last_failure
            .clone()
    });
    drover_release::explain::detail(ready, mine.len(), failure.as_deref())
}
