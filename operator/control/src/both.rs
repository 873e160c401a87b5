//! Two engines as one, so one `drover up` drives a repo whose clusters use different
//! engines (a local cluster beside a Kubernetes one). Each part keeps its own clusters
//! and records; what the controller asks for one kind goes to the part that runs it,
//! and what it asks of all (observing, status) is asked of both, merged.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use drover_model::cluster::{Availability, Engine as EngineKind};
use drover_plan::{Action, Observed};
use drover_release::ServiceProgress;

use crate::engine::{Capabilities, Engine, EngineError, EngineStatus, Orders, ServiceKey, Usage};

/// Engine `A` and engine `B`, which run clusters of different kinds.
#[derive(Debug)]
pub struct Both<A, B> {
    a: Arc<A>,
    b: Arc<B>,
    kinds: Vec<EngineKind>,
}

impl<A: Engine, B: Engine> Both<A, B> {
    /// Panics when both parts run one kind: which would get its clusters is not
    /// something to decide at run time.
    pub fn new(a: Arc<A>, b: Arc<B>) -> Both<A, B> {
        let kinds: Vec<EngineKind> = a.kinds().iter().chain(b.kinds()).copied().collect();
        assert!(
            a.kinds().iter().all(|k| !b.kinds().contains(k)),
            "two engines for one kind of cluster"
        );
        Both { a, b, kinds }
    }

    fn a_runs(&self, kind: EngineKind) -> bool {
        self.a.kinds().contains(&kind)
    }
}

/// Both parts' objects, as one: their keys differ but for an environment in the
/// middle of moving between them, whose objects are shown as the new part has them.
fn merge(mut first: Observed, second: Observed) -> Observed {
    first.objects.extend(second.objects);
    first.inventory.extend(second.inventory);
    first
}

/// What `a` answers, or what `b` does when `a` has no such thing.
async fn either<T>(
    a: impl Future<Output = Result<T, EngineError>>,
    b: impl Future<Output = Result<T, EngineError>>,
) -> Result<T, EngineError> {
    match a.await {
        Err(EngineError::NotFound(first)) => match b.await {
            Err(EngineError::NotFound(_)) => Err(EngineError::NotFound(first)),
            other => other,
        },
        other => other,
    }
}

impl<A: Engine, B: Engine> Engine for Both<A, B> {
    fn kinds(&self) -> &[EngineKind] {
        &self.kinds
    }

    fn capabilities(&self, kind: EngineKind) -> Capabilities {
        if self.a_runs(kind) {
            self.a.capabilities(kind)
        } else {
            self.b.capabilities(kind)
        }
    }

    async fn observe(&self) -> Result<Observed, EngineError> {
        let (a, b) = futures::try_join!(self.a.observe(), self.b.observe())?;
        Ok(merge(a, b))
    }

    async fn observe_kind(&self, kind: EngineKind) -> Result<Observed, EngineError> {
        if self.a_runs(kind) {
            self.a.observe_kind(kind).await
        } else {
            self.b.observe_kind(kind).await
        }
    }

    async fn apply(&self, kind: EngineKind, action: &Action) -> Result<(), EngineError> {
        if self.a_runs(kind) {
            self.a.apply(kind, action).await
        } else {
            self.b.apply(kind, action).await
        }
    }

    async fn roll_back(&self, kind: EngineKind, action: &Action) -> Result<(), EngineError> {
        if self.a_runs(kind) {
            self.a.roll_back(kind, action).await
        } else {
            self.b.roll_back(kind, action).await
        }
    }

    async fn converge(
        &self,
        kind: EngineKind,
        orders: &Orders,
    ) -> Result<BTreeMap<ServiceKey, ServiceProgress>, EngineError> {
        if self.a_runs(kind) {
            self.a.converge(kind, orders).await
        } else {
            self.b.converge(kind, orders).await
        }
    }

    async fn status(&self) -> Result<EngineStatus, EngineError> {
        let (a, b) = futures::try_join!(self.a.status(), self.b.status())?;
        let mut all = a;
        all.services.extend(b.services);
        all.instances.extend(b.instances);
        all.nodes.extend(b.nodes);
        all.proxies.extend(b.proxies);
        all.pools.extend(b.pools);
        all.traffic.extend(b.traffic);
        Ok(all)
    }

    async fn usage(&self, env: &str, service: &str) -> Option<Usage> {
        match self.a.usage(env, service).await {
            Some(usage) => Some(usage),
            None => self.b.usage(env, service).await,
        }
    }

    async fn redeploy(&self, env: &str, service: &str) -> Result<String, EngineError> {
        either(self.a.redeploy(env, service), self.b.redeploy(env, service)).await
    }

    async fn set_availability(
        &self,
        node: &str,
        availability: Option<Availability>,
    ) -> Result<String, EngineError> {
        either(
            self.a.set_availability(node, availability),
            self.b.set_availability(node, availability),
        )
        .await
    }

    fn due(&self) -> Option<Instant> {
        [self.a.due(), self.b.due()].into_iter().flatten().min()
    }
}
