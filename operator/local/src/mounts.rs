//! What an agent prepares before it starts a process: each secret's keys as files in a
//! directory only the instance's user can read (in memory, removed when the process
//! stops), each volume's directory, the variables set from secrets, and — since the
//! local engine has no mount namespaces — every environment value under a mount's
//! target rewritten to where the mount really is (`DB_PASSWORD_FILE=/run/secrets/db/
//! password` becomes the instance's own file).

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use drover_secrets::{Plain, ValueId};

use crate::run_spec::{MountSource, RunSpec};

/// The values an agent was handed with its assignments.
pub type Values = BTreeMap<ValueId, Plain>;

/// What a process gets once its mounts are in place.
#[derive(Debug)]
pub struct Delivered {
    /// The spec's environment, rewritten, plus the variables from secrets.
    pub env: BTreeMap<String, String>,
}

fn private_dir(path: &Path) -> Result<(), String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))
}

/// Writes a value readable by its owner only; a file left by a previous agent is
/// replaced.
fn write_private(path: &Path, value: &Plain) -> Result<(), String> {
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o400)
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    file.write_all(value.expose())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn value<'a>(values: &'a Values, id: &ValueId) -> Result<&'a Plain, String> {
    values.get(id).ok_or_else(|| {
        format!(
            "the value of key `{}` of secret `{}` ({}) has not reached this agent: the control plane has not decrypted it (yet)",
            id.key, id.secret, id.fingerprint
        )
    })
}

/// Puts the instance's mounts in place under `runtime` and returns its environment.
pub fn deliver(spec: &RunSpec, runtime: &Path, values: &Values) -> Result<Delivered, String> {
    // Everything must be at hand before anything is written.
    for id in spec.values() {
        value(values, id)?;
    }
    let mut real: Vec<(&str, PathBuf)> = Vec::new();
    for mount in &spec.mounts {
        let dir = match &mount.source {
            MountSource::Secret { name, files } => {
                let dir = runtime.join("secrets").join(name);
                private_dir(&dir)?;
                for (key, id) in files {
                    write_private(&dir.join(key), value(values, id)?)?;
                }
                dir
            }
            MountSource::Directory { path, .. } => {
                let dir = PathBuf::from(path);
                std::fs::create_dir_all(&dir)
                    .map_err(|e| format!("cannot create volume directory {path}: {e}"))?;
                dir
            }
        };
        real.push((mount.target.trim_end_matches('/'), dir));
    }
    // The longest target first: `/data/cache` before `/data`.
    real.sort_by_key(|(target, _)| std::cmp::Reverse(target.len()));
    let mut env: BTreeMap<String, String> = spec
        .env
        .iter()
        .map(|(k, v)| (k.clone(), rewrite(v, &real)))
        .collect();
    for (var, id) in &spec.secret_env {
        let text = std::str::from_utf8(value(values, id)?.expose()).map_err(|_| {
            format!(
                "key `{}` of secret `{}` is not UTF-8 text, so it cannot be the variable `{var}`: mount it as a file",
                id.key, id.secret
            )
        })?;
        env.insert(var.clone(), text.to_owned());
    }
    Ok(Delivered { env })
}

/// `value` with a leading mount target replaced by where the mount is.
fn rewrite(value: &str, mounts: &[(&str, PathBuf)]) -> String {
    for (target, dir) in mounts {
        if let Some(rest) = value.strip_prefix(target)
            && (rest.is_empty() || rest.starts_with('/'))
        {
            return format!("{}{rest}", dir.display());
        }
    }
    value.to_owned()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::run_spec::Mount;

    fn id(key: &str) -> ValueId {
        ValueId {
            environment: "staging".into(),
            secret: "db".into(),
            key: key.into(),
            fingerprint: "sha256:00000001".into(),
        }
    }

    fn spec(volume: &Path) -> RunSpec {
        RunSpec {
            argv: vec!["app".into()],
            env: BTreeMap::from([
                ("DB_PASSWORD_FILE".into(), "/run/secrets/db/password".into()),
                ("WORK".into(), "/var/lib/worker/jobs".into()),
                ("OTHER".into(), "/run/secrets/dbx".into()),
            ]),
            working_dir: None,
            ports: Vec::new(),
            restart: Default::default(),
            liveness: None,
            readiness: None,
            grace_ms: 0,
            mounts: vec![
                Mount {
                    target: "/run/secrets/db".into(),
                    source: MountSource::Secret {
                        name: "db".into(),
                        files: BTreeMap::from([("password".into(), id("password"))]),
                    },
                },
                Mount {
                    target: "/var/lib/worker".into(),
                    source: MountSource::Directory {
                        path: volume.display().to_string(),
                        read_only: false,
                    },
                },
            ],
            secret_env: BTreeMap::from([("DB_PASSWORD".into(), id("password"))]),
        }
    }

    #[test]
    fn secrets_become_private_files_and_paths_under_targets_follow_them() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = dir.path().join("run/staging.api.0@abc");
        let volume = dir.path().join("volumes/staging/worker/scratch");
        let values = Values::from([(id("password"), Plain::new(b"hunter2".to_vec()))]);
        let delivered = deliver(&spec(&volume), &runtime, &values).unwrap();
        let file = runtime.join("secrets/db/password");
        assert_eq!(std::fs::read(&file).unwrap(), b"hunter2");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&file), 0o400);
        assert_eq!(mode(&runtime.join("secrets/db")), 0o700);
        assert_eq!(
            delivered.env["DB_PASSWORD_FILE"],
            file.display().to_string()
        );
        assert_eq!(
            delivered.env["WORK"],
            volume.join("jobs").display().to_string()
        );
        assert_eq!(
            delivered.env["OTHER"], "/run/secrets/dbx",
            "only whole path components"
        );
        assert_eq!(delivered.env["DB_PASSWORD"], "hunter2");
        assert!(volume.is_dir());
        // Delivered again (a restarted agent): the file is replaced, not refused.
        deliver(&spec(&volume), &runtime, &values).unwrap();
    }

    #[test]
    fn an_instance_whose_values_have_not_arrived_waits_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = dir.path().join("run/x");
        let why = deliver(&spec(&dir.path().join("v")), &runtime, &Values::new()).unwrap_err();
        assert!(why.contains("key `password` of secret `db`"), "{why}");
        assert!(!runtime.exists());
    }
}
