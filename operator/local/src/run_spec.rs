//! From a service to what an agent runs: argv, environment, ports, probes and restart
//! policy, and a hash of all that — an instance whose hash differs from its
//! assignment's is replaced (domain notes §6).

use std::collections::BTreeMap;
use std::path::Path;

use drover_model::service::{Probe, RestartPolicy, ServiceSpec};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How long a stopping instance gets between SIGTERM and SIGKILL.
pub const GRACE_MS: u64 = 10_000;

/// What an agent needs to run one instance of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    pub argv: Vec<String>,
    /// The complete environment the process gets, besides what the agent adds per
    /// instance (`PORT`, `PORT_<NAME>`, `DROVER_INSTANCE`, `PATH` when unset).
    pub env: BTreeMap<String, String>,
    /// Relative to the instance's own directory, or absolute.
    pub working_dir: Option<String>,
    /// Named ports; the agent assigns each a free port on 127.0.0.1. The first is `PORT`.
    pub ports: Vec<String>,
    pub restart: RestartPolicy,
    pub liveness: Option<Probe>,
    pub readiness: Option<Probe>,
    pub grace_ms: u64,
}

/// Why a service cannot run on the local engine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunSpecError {
    #[error("has no `command`; the local engine runs processes, not images (add `command: [...]`)")]
    NoCommand,
}

/// The run spec of a service of `environment`. `drover` as the program means this
/// very binary, so the examples run on a machine where Drover is not on `PATH`.
pub fn run_spec(
    environment: &str,
    service: &str,
    spec: &ServiceSpec,
    drover: &Path,
) -> Result<RunSpec, RunSpecError> {
    let mut argv: Vec<String> = spec.command.iter().chain(&spec.args).cloned().collect();
    match argv.first_mut() {
        None => return Err(RunSpecError::NoCommand),
        Some(program) if program == "drover" => *program = drover.display().to_string(),
        Some(_) => {}
    }
    let mut env = spec.env.clone();
    env.insert("DROVER_ENVIRONMENT".into(), environment.into());
    env.insert("DROVER_SERVICE".into(), service.into());
    if let Some(version) = &spec.version {
        env.insert("DROVER_VERSION".into(), version.clone());
    }
    let mut ports: Vec<String> = spec.ports.iter().map(|p| p.name.clone()).collect();
    if ports.is_empty() {
        // Every instance gets a PORT, so replicas of a program with a default port do
        // not fight over it.
        ports.push("default".into());
    }
    Ok(RunSpec {
        argv,
        env,
        working_dir: spec.working_dir.clone(),
        ports,
        restart: spec.restart_policy,
        liveness: spec.liveness_probe.clone(),
        readiness: spec.readiness_probe.clone(),
        grace_ms: GRACE_MS,
    })
}

impl RunSpec {
    /// A short, stable hash of everything in the spec.
    pub fn hash(&self) -> String {
        let json = serde_json::to_vec(self).expect("a run spec serializes");
        hex::encode(&Sha256::digest(&json)[..6])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(yaml_command: &[&str]) -> ServiceSpec {
        ServiceSpec {
            command: yaml_command.iter().map(|s| s.to_string()).collect(),
            version: Some("v1".into()),
            ..ServiceSpec::default()
        }
    }

    #[test]
    fn drover_as_the_program_means_this_binary() {
        let spec = run_spec(
            "staging",
            "web",
            &service(&["drover", "example-app"]),
            Path::new("/opt/drover"),
        )
        .unwrap();
        assert_eq!(spec.argv, ["/opt/drover", "example-app"]);
        assert_eq!(spec.env["DROVER_VERSION"], "v1");
        assert_eq!(spec.ports, ["default"]);
    }

    #[test]
    fn a_service_without_a_command_cannot_run_locally() {
        assert_eq!(
            run_spec("staging", "web", &service(&[]), Path::new("/x")),
            Err(RunSpecError::NoCommand)
        );
    }

    #[test]
    fn the_hash_changes_with_the_spec_and_only_then() {
        let a = run_spec("s", "web", &service(&["app"]), Path::new("/x")).unwrap();
        let mut b = a.clone();
        assert_eq!(a.hash(), b.hash());
        b.env.insert("X".into(), "1".into());
        assert_ne!(a.hash(), b.hash());
    }
}
