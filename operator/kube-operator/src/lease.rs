//! Leader election with a `coordination.k8s.io` Lease (kube-lease-manager): of the
//! operator's replicas only the holder acts; the others wait. A replica that loses
//! the Lease stops at once (the process exits and Kubernetes restarts it as a
//! follower), so two replicas never apply at the same time.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};

/// Which Lease, held by whom, for how long.
#[derive(Debug, Clone)]
pub struct Election {
    pub namespace: String,
    pub lease: String,
    /// This replica's name (its Pod's name in a cluster).
    pub identity: String,
    /// How long a holder that stops renewing keeps the Lease: the longest hand-over.
    pub duration: Duration,
}

/// Leadership, once won: `lost` completes when it is lost.
#[derive(Debug)]
pub struct Leadership {
    state: tokio::sync::watch::Receiver<bool>,
    manager: tokio::task::JoinHandle<Result<kube_lease_manager::LeaseManager, LeaseManagerError>>,
}

impl Leadership {
    /// Completes when this replica no longer holds the Lease (or cannot tell).
    pub async fn lost(&mut self) {
        while *self.state.borrow_and_update() {
            if self.state.changed().await.is_err() {
                return;
            }
        }
    }

    /// Gives the Lease back, so another replica takes over at once rather than when
    /// it runs out (a stop, not a crash).
    pub async fn release(self) {
        drop(self.state);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.manager).await;
    }
}

/// Waits until this replica holds the Lease.
pub async fn lead(client: Client, election: &Election) -> Result<Leadership, LeaseManagerError> {
    let seconds = election.duration.as_secs().max(2);
    let manager = LeaseManagerBuilder::new(client, &election.lease)
        .with_namespace(&election.namespace)
        .with_identity(&election.identity)
        .with_duration(seconds)
        // Renewed when a third of the term is left.
        .with_grace((seconds / 3).max(1))
        .build()
        .await?;
    let (mut state, manager) = manager.watch().await;
    while !*state.borrow_and_update() {
        if state.changed().await.is_err() {
            return Err(LeaseManagerError::ControlChannelError(
                tokio::sync::watch::error::SendError(false),
            ));
        }
    }
    Ok(Leadership { state, manager })
}
