//! Secrets end to end on the local engine: a key made by the real `age-keygen`, a
//! Secret encrypted with `drover secret encrypt` and committed, its values delivered
//! to the instance as a file and a variable (the example app shows their checksums),
//! a rotation that rolls the service, an undecryptable commit rejected while the last
//! valid one stays — and canary values that no output, API answer, notification or
//! file of the state directory ever shows.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::platform::{Platform, fixture};
use crate::support::{drover, edit_secret, sha256_hex};

const SECRET: &str = "environments/staging/db.yaml";

/// A value no one would write by chance, so finding it anywhere is a leak.
fn canary(label: &str) -> String {
    use sha2::Digest as _;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let digest = sha2::Sha256::digest(format!("{label}{now}{}", std::process::id()));
    format!("canary-{label}-{}", hex::encode(&digest[..8]))
}

/// A new age identity from the real CLI; returns its file and public key.
fn age_keygen(dir: &Path, name: &str) -> (std::path::PathBuf, String) {
    let file = dir.join(name);
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(&file)
        .output()
        .expect("age-keygen runs (Debian's age package; .ci/install-deps installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&file).unwrap();
    let public = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap()
        .to_owned();
    (file, public)
}

/// Writes the Secret in clear and encrypts it for `recipient` with `drover secret`.
fn write_encrypted(platform: &Platform, password: &str, recipient: &str) {
    platform.repo.write(
        SECRET,
        &format!(
            "apiVersion: drover.dev/v1alpha1\nkind: Secret\nmetadata:\n  name: db\nspec:\n  data:\n    password: {password}\n    token: {password}-token\n"
        ),
    );
    let out = drover()
        .args(["secret", "encrypt", SECRET, "--age", recipient])
        .current_dir(&platform.repo.dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = std::fs::read_to_string(platform.repo.dir.join(SECRET)).unwrap();
    assert!(!written.contains(password), "{written}");
}

/// What the instance says it received, through the proxy.
fn received(platform: &Platform) -> serde_json::Value {
    platform.get_json("web.dev.localhost", "/received")
}

fn waits_for_values(platform: &Platform, password: &str) -> serde_json::Value {
    let want_file = sha256_hex(password);
    let want_env = sha256_hex(&format!("{password}-token"));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (code, body) = platform.get("web.dev.localhost", "/received");
        if code == 200 && body.contains(&want_file) && body.contains(&want_env) {
            return serde_json::from_str(&body).unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new values did not arrive: {code} {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every file under `dir` that holds `needle` (as bytes).
fn files_holding(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
            {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

#[test]
fn an_encrypted_secret_is_delivered_rotated_and_never_shown() {
    let keys = tempfile::tempdir().unwrap();
    let (key, recipient) = age_keygen(keys.path(), "control-plane.txt");
    let (_, stranger) = age_keygen(keys.path(), "someone-else.txt");
    let receiver = crate::promote::Receiver::start();
    let mut platform = Platform::start_from(
        &fixture(),
        false,
        &["--notify", &receiver.url],
        &[
            ("SOPS_AGE_KEY_FILE", key.to_str().unwrap()),
            ("DROVER_NOTIFY_SECRET", "notification-secret"),
        ],
    );
    let first = canary("first");
    write_encrypted(&platform, &first, &recipient);
    platform.repo.edit(
        "environments/staging/web.yaml",
        "  replicas: 1\n",
        "  replicas: 1\n  env:\n    DB_PASSWORD_FILE: /run/secrets/db/password\n    SECRET_ENV: DB_TOKEN\n    NOTES_FILE: /var/lib/web/notes\n  secrets:\n    - name: db\n      env: {DB_TOKEN: token}\n  volumes:\n    - name: data\n      target: /var/lib/web\n",
    );
    platform.commit("web reads the database password");
    let got = waits_for_values(&platform, &first);
    // The file is the instance's own, under the state's runtime directory in memory.
    assert_eq!(got["files"]["DB_PASSWORD_FILE"], sha256_hex(&first));
    // The volume is a directory Drover keeps for the service; a path under its target
    // points into it. What is written there outlives the instance's replacement below.
    let volume = platform.state.join("volumes/staging/web/data");
    assert!(volume.is_dir(), "{}", volume.display());
    std::fs::write(volume.join("notes"), "kept").unwrap();
    assert_eq!(
        received(&platform)["files"]["NOTES_FILE"],
        sha256_hex("kept")
    );
    let status = platform.status();
    let before: Vec<u64> = Platform::instances(&status, "web")
        .iter()
        .filter_map(|i| i["pid"].as_u64())
        .collect();

    // Rotating the value rolls the service: a new process with the new value.
    let second = canary("second");
    edit_secret(&platform.repo.dir, SECRET, &first, &second, &key);
    platform.commit("rotate the database password");
    waits_for_values(&platform, &second);
    let status = platform.status();
    let after: Vec<u64> = Platform::instances(&status, "web")
        .iter()
        .filter_map(|i| i["pid"].as_u64())
        .collect();
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "{before:?} → {after:?}"
    );
    assert_eq!(
        received(&platform)["files"]["NOTES_FILE"],
        sha256_hex("kept")
    );

    // A file the control plane cannot open is rejected; the last valid one stays.
    let third = canary("third");
    write_encrypted(&platform, &third, &stranger);
    platform.commit("encrypted for the wrong key");
    let up = platform.up.as_ref().unwrap();
    let rejected = up.expect_line(Duration::from_secs(20), |l| l.contains("rejected"));
    assert!(rejected.contains("stays in force"), "{rejected}");
    let why = up.expect_line(Duration::from_secs(5), |l| l.contains("error[E132]"));
    assert!(why.contains(&stranger), "{why}");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        received(&platform)["env"]["DB_TOKEN"],
        sha256_hex(&format!("{second}-token"))
    );

    // Nothing shows a value: not what `up` printed, the API, the CLI, the state.
    let diff = drover()
        .args([
            "diff", "--from", "HEAD~2", "--to", "HEAD~1", "--color", "never",
        ])
        .current_dir(&platform.repo.dir)
        .env("SOPS_AGE_KEY_FILE", &key)
        .output()
        .unwrap();
    let mut shown = String::from_utf8_lossy(&diff.stdout).into_owned();
    assert!(
        shown.contains("secret db: password changed (sha256:"),
        "{shown}"
    );
    for path in [
        "/api/v1/status",
        "/api/v1/events",
        "/api/v1/environments/staging/history",
        "/api/v1/audit",
    ] {
        shown.push_str(&platform.api_get(path).1);
    }
    shown.push_str(&platform.drover(&["history", "staging"]));
    shown.push_str(&platform.drover(&["logs", "web"]));
    shown.push_str(&platform.up.as_ref().unwrap().printed());
    let notified = receiver.bodies();
    assert!(
        notified.contains("release"),
        "notifications arrived: {notified}"
    );
    shown.push_str(&notified);
    platform.interrupt();
    for value in [&first, &second, &third] {
        assert!(!shown.contains(value.as_str()), "{value} shown:\n{shown}");
        let files = files_holding(&platform.state, value);
        assert!(files.is_empty(), "{value} is in {files:?}");
    }
    // The instance's files in memory went with it.
    let runtime = drover_local::files::LocalPaths::runtime(&drover_local::files::StateDir::new(
        platform.state.clone(),
    ));
    assert!(!runtime.exists(), "{} is left", runtime.display());
}
