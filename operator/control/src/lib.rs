//! The controller: the one effectful loop every engine shares. [`Controller`] follows
//! the desired revision, applies each environment's plan through an [`Engine`], opens
//! and judges releases (`drover_release::judge`), rolls a failed release back as a
//! whole and asks the [`git_writer`] for its revert commit, tracks promotions and
//! their gate, runs the autoscaler, and serves the API ([`server`]). It names no
//! engine: the binary gives it one.
//!
//! - [`engine`]: the trait, and what the controller and an engine exchange; [`both`]:
//!   two engines as one, for a repo whose clusters use both;
//! - [`controller`]: the loop and its steps (objects, releases, promotions, the
//!   autoscaler, status);
//! - [`server`]: the HTTP API (tokens and scopes, the audit trail); [`client`] the CLI's
//!   side of it; [`view`] what they exchange;
//! - [`promoter`]: promotions and deploys written to Git; [`git_writer`]: reverts and
//!   restores; [`notify`]: signed webhooks;
//! - [`files`]: the state directory.

pub mod both;
pub mod client;
pub mod controller;
pub mod engine;
pub mod files;
pub mod git_writer;
pub mod http;
pub mod notify;
pub mod promoter;
pub mod server;
pub mod view;

pub use controller::{Config, ControlError, Controller, DesiredRevision, Followed, GitWrite};
pub use engine::{Capabilities, Engine, EngineError, EngineStatus, Orders, ServiceKey, Usage};

/// `n` random bytes from the operating system, hex-encoded (tokens, keys).
pub fn random_hex(n: usize) -> std::io::Result<String> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).map_err(std::io::Error::other)?;
    Ok(hex::encode(bytes))
}

/// A crash on purpose, for the tests that prove a crash at this point is safe:
/// with `DROVER_FAILPOINT=<name>` set, the process exits at once, as a `kill -9`
/// there would leave it (nothing is flushed or finished). Unset, it does nothing.
pub fn failpoint(name: &str) {
    if std::env::var("DROVER_FAILPOINT").is_ok_and(|v| v == name) {
        tracing::error!("failpoint {name}: exiting as a crash would");
        std::process::exit(137);
    }
}

/// How a token is stored: the hex SHA-256 of it (the token itself never is).
pub fn token_hash(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// A value as one line (of a commit message, the audit trail): a newline in it could
/// forge a trailer or a row.
pub fn one_line(text: &str) -> String {
    text.split(|c: char| c.is_control())
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A random token for a commit's `Drover-Write:` trailer: random, so that no commit
/// from an older state directory carries it too.
pub fn write_token() -> String {
    random_hex(16).unwrap_or_else(|_| format!("{}-{}", drover_store::now_ms(), std::process::id()))
}
