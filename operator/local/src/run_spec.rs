//! From a service to what an agent runs: argv, environment, ports, probes, restart
//! policy, secrets and volumes, and a hash of all that — an instance whose hash differs
//! from its assignment's is replaced (domain notes §6). Secrets appear here by
//! fingerprint only, so a changed value changes the hash (and rolls the service) while
//! the value itself travels apart, from the control plane's memory to the agent.

use std::collections::BTreeMap;
use std::path::Path;

use drover_model::service::{Probe, RestartPolicy, ServiceSpec, VolumeKind};
use drover_secrets::ValueId;
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
    /// What the instance finds at its mounts' targets; an environment value under a
    /// target is rewritten to where the mount really is (a process cannot see
    /// `/run/secrets` on the local engine, which has no mount namespaces).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    /// Variables set to a secret's value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_env: BTreeMap<String, ValueId>,
}

/// A directory an instance sees at `target`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// The path the service's YAML names (`/run/secrets/db`, `/var/lib/worker`).
    pub target: String,
    pub source: MountSource,
}

/// What a mount holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MountSource {
    /// A secret's keys, one file each, in a directory of the instance's own that only
    /// its user can read and that goes when the process stops.
    Secret {
        name: String,
        files: BTreeMap<String, ValueId>,
    },
    /// A directory on the node: the volume's host path, or one Drover keeps for the
    /// service (under the state directory) across restarts and replacements.
    Directory { path: String, read_only: bool },
}

/// Why a service cannot run on the local engine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunSpecError {
    #[error("has no `command`; the local engine runs processes, not images (add `command: [...]`)")]
    NoCommand,
    #[error(
        "mounts volume `{0}` of type `{1}`, which the local engine does not mount (it mounts `host-path` volumes)"
    )]
    VolumeKind(String, &'static str),
    #[error("mounts secret `{0}`, which is not applied in its environment")]
    NoSecret(String),
    #[error("takes key `{key}` of secret `{secret}`, which has no such key")]
    NoKey { secret: String, key: String },
}

/// Where things are on the machine.
#[derive(Debug, Clone, Copy)]
pub struct Paths<'a> {
    /// This binary: what `drover` means as a service's program.
    pub drover: &'a Path,
    /// Where the directories of volumes without a source live (`STATE/volumes`).
    pub volumes: &'a Path,
}

/// What a service's run spec depends on besides the service itself.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub paths: Paths<'a>,
    /// Each secret's fingerprints by (environment, name).
    pub secrets: &'a BTreeMap<(String, String), BTreeMap<String, String>>,
}

/// The run spec of a service of `environment`. `drover` as the program means this
/// very binary, so the examples run on a machine where Drover is not on `PATH`.
pub fn run_spec(
    environment: &str,
    service: &str,
    spec: &ServiceSpec,
    context: &Context<'_>,
) -> Result<RunSpec, RunSpecError> {
    let mut argv: Vec<String> = spec.command.iter().chain(&spec.args).cloned().collect();
    match argv.first_mut() {
        None => return Err(RunSpecError::NoCommand),
        Some(program) if program == "drover" => {
            *program = context.paths.drover.display().to_string()
        }
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
    let (mounts, secret_env) = mounts(environment, service, spec, context)?;
    Ok(RunSpec {
        argv,
        env,
        working_dir: spec.working_dir.clone(),
        ports,
        restart: spec.restart_policy,
        liveness: spec.liveness_probe.clone(),
        readiness: spec.readiness_probe.clone(),
        grace_ms: GRACE_MS,
        mounts,
        secret_env,
    })
}

type Mounts = (Vec<Mount>, BTreeMap<String, ValueId>);

/// The service's secrets and volumes as mounts, and its variables from secrets.
fn mounts(
    environment: &str,
    service: &str,
    spec: &ServiceSpec,
    context: &Context<'_>,
) -> Result<Mounts, RunSpecError> {
    let mut mounts = Vec::new();
    let mut secret_env = BTreeMap::new();
    for mount in &spec.secrets {
        let fingerprints = context
            .secrets
            .get(&(environment.to_owned(), mount.name.clone()))
            .ok_or_else(|| RunSpecError::NoSecret(mount.name.clone()))?;
        let id = |key: &str, fingerprint: &str| ValueId {
            environment: environment.to_owned(),
            secret: mount.name.clone(),
            key: key.to_owned(),
            fingerprint: fingerprint.to_owned(),
        };
        for (var, key) in &mount.env {
            let fingerprint = fingerprints.get(key).ok_or_else(|| RunSpecError::NoKey {
                secret: mount.name.clone(),
                key: key.clone(),
            })?;
            secret_env.insert(var.clone(), id(key, fingerprint));
        }
        mounts.push(Mount {
            target: mount
                .target
                .clone()
                .unwrap_or_else(|| format!("/run/secrets/{}", mount.name)),
            source: MountSource::Secret {
                name: mount.name.clone(),
                files: fingerprints
                    .iter()
                    .map(|(k, fp)| (k.clone(), id(k, fp)))
                    .collect(),
            },
        });
    }
    for volume in &spec.volumes {
        let path = match (volume.kind, &volume.source) {
            (VolumeKind::HostPath, Some(source)) => source.clone(),
            (VolumeKind::HostPath, None) => context
                .paths
                .volumes
                .join(environment)
                .join(service)
                .join(&volume.name)
                .display()
                .to_string(),
            (VolumeKind::Nfs, _) => {
                return Err(RunSpecError::VolumeKind(volume.name.clone(), "nfs"));
            }
            (VolumeKind::Config, _) => {
                return Err(RunSpecError::VolumeKind(volume.name.clone(), "config"));
            }
        };
        mounts.push(Mount {
            target: volume.target.clone(),
            source: MountSource::Directory {
                path,
                read_only: volume.read_only,
            },
        });
    }
    Ok((mounts, secret_env))
}

impl RunSpec {
    /// Every secret value the instance needs.
    pub fn values(&self) -> impl Iterator<Item = &ValueId> {
        self.secret_env
            .values()
            .chain(self.mounts.iter().flat_map(|m| match &m.source {
                MountSource::Secret { files, .. } => files.values().collect::<Vec<_>>(),
                MountSource::Directory { .. } => Vec::new(),
            }))
    }
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

    fn context<'a>(
        secrets: &'a BTreeMap<(String, String), BTreeMap<String, String>>,
    ) -> Context<'a> {
        Context {
            paths: Paths {
                drover: Path::new("/opt/drover"),
                volumes: Path::new("/state/volumes"),
            },
            secrets,
        }
    }

    #[test]
    fn drover_as_the_program_means_this_binary() {
        let none = BTreeMap::new();
        let spec = run_spec(
            "staging",
            "web",
            &service(&["drover", "example-app"]),
            &context(&none),
        )
        .unwrap();
        assert_eq!(spec.argv, ["/opt/drover", "example-app"]);
        assert_eq!(spec.env["DROVER_VERSION"], "v1");
        assert_eq!(spec.ports, ["default"]);
    }

    #[test]
    fn a_service_without_a_command_cannot_run_locally() {
        let none = BTreeMap::new();
        assert_eq!(
            run_spec("staging", "web", &service(&[]), &context(&none)),
            Err(RunSpecError::NoCommand)
        );
    }

    #[test]
    fn the_hash_changes_with_the_spec_and_only_then() {
        let none = BTreeMap::new();
        let a = run_spec("s", "web", &service(&["app"]), &context(&none)).unwrap();
        let mut b = a.clone();
        assert_eq!(a.hash(), b.hash());
        b.env.insert("X".into(), "1".into());
        assert_ne!(a.hash(), b.hash());
    }

    #[test]
    fn secrets_and_volumes_become_mounts_and_a_new_value_a_new_hash() {
        let mut spec = service(&["app"]);
        spec.secrets.push(drover_model::service::SecretMount {
            name: "db".into(),
            target: None,
            env: BTreeMap::from([("DB_PASSWORD".into(), "password".into())]),
        });
        spec.volumes.push(drover_model::service::Volume {
            name: "scratch".into(),
            target: "/var/lib/worker".into(),
            ..Default::default()
        });
        let fingerprints = |fp: &str| {
            BTreeMap::from([(
                ("staging".to_owned(), "db".to_owned()),
                BTreeMap::from([("password".to_owned(), fp.to_owned())]),
            )])
        };
        let before = fingerprints("sha256:00000001");
        let a = run_spec("staging", "worker", &spec, &context(&before)).unwrap();
        assert_eq!(a.mounts[0].target, "/run/secrets/db");
        assert_eq!(a.secret_env["DB_PASSWORD"].fingerprint, "sha256:00000001");
        assert_eq!(
            a.mounts[1].source,
            MountSource::Directory {
                path: "/state/volumes/staging/worker/scratch".into(),
                read_only: false
            }
        );
        assert_eq!(a.values().count(), 2);
        let after = fingerprints("sha256:00000002");
        let b = run_spec("staging", "worker", &spec, &context(&after)).unwrap();
        assert_ne!(a.hash(), b.hash(), "a new value rolls the service");
        spec.volumes[0].kind = VolumeKind::Nfs;
        assert_eq!(
            run_spec("staging", "worker", &spec, &context(&after)),
            Err(RunSpecError::VolumeKind("scratch".into(), "nfs"))
        );
    }
}
