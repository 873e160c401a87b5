//! Drover inside Kubernetes (`drover operator`): each environment Git places on a
//! Kubernetes cluster is an `Environment` resource whose status says, in Flux's
//! contract, what Drover did and why ([`environments`], [`status`]); Drover's events
//! become Kubernetes Events ([`events`]); replicas elect a leader with a Lease
//! ([`lease`]), and the one that takes over reads where the other stopped from those
//! statuses ([`takeover`]); [`install`] is what `drover install` applies.

pub mod environments;
pub mod events;
pub mod install;
pub mod lease;
pub mod status;
pub mod takeover;
