//! The Docker Swarm engine: `impl Engine for SwarmEngine`, driving a real swarm
//! through its Engine API (1.41). [`render`] (pure) turns Drover objects into service,
//! network and secret specs; [`client`] speaks the API and [`types`] reads its answers; [`health`] (pure) reads a
//! service's progress from its tasks; [`engine`] applies, prunes by inventory, reverts
//! drift and reports; [`nodes`] keeps node availability.

pub mod client;
pub mod engine;
pub mod health;
pub mod nodes;
pub mod render;
pub mod types;

pub use engine::SwarmEngine;
