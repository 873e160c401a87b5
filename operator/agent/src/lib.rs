//! The local engine's node agent. Today: health probes (domain notes §3); the process
//! supervisor, log files and the agent's own process come with the local engine.

pub mod probe;
