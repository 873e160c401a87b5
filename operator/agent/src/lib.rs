//! The local engine's node agent. Today: health probes (domain notes §3) and running
//! instances as processes (process groups, rotated logs, graceful stop, restart
//! back-off); the agent process itself and its protocol come with the local engine.

pub mod probe;
pub mod process;
