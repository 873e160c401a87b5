//! Verifying a commit's signature against the keys a change rule lists, the way Git
//! itself does (`git verify-commit`): OpenSSH's `ssh-keygen -Y verify` for SSH
//! signatures (namespace `git`, an allowed-signers file of the listed keys) and GnuPG's
//! `gpg --verify` for OpenPGP ones (a keyring of the listed keys alone).

use std::io::Write;
use std::process::{Command, Stdio};

use git2::{Oid, Repository};

/// Whether one of `signers` made the commit's signature; `Err` says why not.
pub fn verify(repo: &Repository, commit: Oid, signers: &[String]) -> Result<(), String> {
    let (signature, signed) = repo
        .extract_signature(&commit, None)
        .map_err(|_| "the commit is not signed".to_owned())?;
    let signature = signature.as_str().unwrap_or_default().to_owned();
    let dir = tempfile::tempdir().map_err(|e| format!("cannot verify: {e}"))?;
    let sig = dir.path().join("commit.sig");
    std::fs::write(&sig, &signature).map_err(|e| format!("cannot verify: {e}"))?;
    if signature.starts_with("-----BEGIN SSH SIGNATURE-----") {
        let keys: Vec<&String> = signers.iter().filter(|k| is_ssh(k)).collect();
        if keys.is_empty() {
            return Err("it is signed with an SSH key, and the rule lists none".into());
        }
        let allowed = dir.path().join("allowed_signers");
        let lines: String = keys
            .iter()
            .map(|k| format!("drover namespaces=\"git\" {}\n", k.trim()))
            .collect();
        std::fs::write(&allowed, lines).map_err(|e| format!("cannot verify: {e}"))?;
        let mut command = Command::new("ssh-keygen");
        command
            .args(["-Y", "verify", "-n", "git", "-I", "drover", "-f"])
            .arg(&allowed)
            .arg("-s")
            .arg(&sig);
        run(command, signed.as_ref())
            .map(|_| ())
            .map_err(|_| "its SSH signature is not by a key the rule lists".to_owned())
    } else if signature.starts_with("-----BEGIN PGP SIGNATURE-----") {
        let keys: Vec<&String> = signers.iter().filter(|k| is_pgp(k)).collect();
        if keys.is_empty() {
            return Err("it is signed with an OpenPGP key, and the rule lists none".into());
        }
        let data = dir.path().join("commit");
        std::fs::write(&data, signed.as_ref()).map_err(|e| format!("cannot verify: {e}"))?;
        let home = dir.path().join("gnupg");
        std::fs::create_dir(&home).map_err(|e| format!("cannot verify: {e}"))?;
        let gpg = || {
            let mut c = Command::new("gpg");
            c.arg("--homedir").arg(&home).args(["--batch", "--quiet"]);
            c
        };
        for key in keys {
            let mut import = gpg();
            import.arg("--import");
            run(import, key.as_bytes())
                .map_err(|e| format!("a listed OpenPGP key does not import: {e}"))?;
        }
        let mut check = gpg();
        check
            .args(["--status-fd", "1", "--verify"])
            .arg(&sig)
            .arg(&data);
        let status = run(check, b"")
            .map_err(|_| "its OpenPGP signature is not by a key the rule lists".to_owned())?;
        if status.contains("[GNUPG:] VALIDSIG") {
            Ok(())
        } else {
            Err("its OpenPGP signature is not valid".into())
        }
    } else {
        Err("its signature is neither SSH nor OpenPGP".into())
    }
}

fn is_ssh(key: &str) -> bool {
    let key = key.trim_start();
    key.starts_with("ssh-") || key.starts_with("ecdsa-") || key.starts_with("sk-")
}

fn is_pgp(key: &str) -> bool {
    key.trim_start()
        .starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----")
}

/// Runs `command` with `input` on its standard input; its standard output when it
/// succeeds.
fn run(mut command: Command, input: &[u8]) -> Result<String, String> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {:?}: {e}", command.get_program()))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input);
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}
