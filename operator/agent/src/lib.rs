//! The local engine's node agent. Today: health probes (domain notes §3), running
//! instances as processes (process groups, rotated logs, graceful stop, restart
//! back-off), and supervising each instance with both; the agent process itself and
//! its protocol with the control plane come with the local engine.

pub mod probe;
pub mod process;
pub mod supervise;
