//! The Docker Swarm engine (issue 14), so far its pure part: [`render`] turns a
//! Drover service into the service spec the Docker Engine API (1.41) takes. The client,
//! apply, prune, health and nodes come next; nothing runs a swarm yet, and a Cluster
//! cannot name `engine: swarm` until they do.

pub mod render;
