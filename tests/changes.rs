//! Who may change which environment, through a real `drover up` following a remote:
//! production's `changes` rules refuse a commit by an author not on the list and an
//! unsigned one, accept one signed with a listed SSH key (made by the real `git` and
//! `ssh-keygen`), and accept Drover's own promotion commit.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use drover_testkit::git::{author, git, git_with};

use crate::platform::Platform;
use crate::promote::{both_ready, fixture};
use crate::support::drover;

const SOON: Duration = Duration::from_secs(30);

/// An SSH signing key made by `ssh-keygen`; returns its file and public key line.
fn ssh_key(dir: &Path) -> (std::path::PathBuf, String) {
    let key = dir.join("release-key");
    let out = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "release@example.test",
            "-f",
        ])
        .arg(&key)
        .output()
        .expect("ssh-keygen runs (Debian's openssh-client)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    (key, public.trim().to_owned())
}

/// Commits everything in the working copy as `email`, signed with `key` when given,
/// and pushes it to the remote `up` follows; returns the commit id.
fn commit_as(platform: &Platform, email: &str, key: Option<&Path>, message: &str) -> String {
    git(&platform.repo.dir, &["add", "-A"]);
    let mut args: Vec<String> = Vec::new();
    if let Some(key) = key {
        args.extend([
            "-c".into(),
            "gpg.format=ssh".into(),
            "-c".into(),
            format!("user.signingkey={}", key.display()),
        ]);
    }
    args.extend(["commit".into(), "-q".into(), "-m".into(), message.into()]);
    if key.is_some() {
        args.push("-S".into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    git_with(&platform.repo.dir, &args, &author(email));
    push(platform, false);
    git(&platform.repo.dir, &["rev-parse", "HEAD"])
}

fn push(platform: &Platform, force: bool) {
    let bare = platform
        .remote
        .as_ref()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let mut args = vec!["push", "-q", bare.as_str(), "main"];
    if force {
        args.push("--force");
    }
    git(&platform.repo.dir, &args);
}

/// Takes the last commit back (as one does after a refusal) and force-pushes.
fn drop_last_commit(platform: &Platform) {
    git(&platform.repo.dir, &["reset", "-q", "--hard", "HEAD~1"]);
    push(platform, true);
}

fn production_revision(platform: &Platform) -> String {
    let status = platform.status();
    status["environments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "production")
        .and_then(|e| e["revision"].as_str())
        .unwrap_or_default()
        .to_owned()
}

fn waits_for_production_at(platform: &Platform, commit: &str) {
    let short = &commit[..7];
    platform.wait_for(SOON, &format!("production at {short}"), |s| {
        s["environments"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "production" && e["revision"] == short)
    });
}

/// Puts `# NOTE` at the top of production's environment file (not committed).
pub(crate) fn touch_production(platform: &Platform, note: &str) {
    let path = platform
        .repo
        .dir
        .join("environments/production/environment.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("# {note}\n{text}")).unwrap();
}

#[test]
fn production_changes_only_by_promotions_and_listed_signed_authors() {
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = ssh_key(keys.path());
    let platform = Platform::start_from(&fixture(), true, &[], &[]);
    both_ready(&platform);

    // The rules arrive in a commit the (absent) rules in force allow.
    platform.repo.edit(
        "environments/production/environment.yaml",
        "  promotion:\n",
        &format!(
            "  changes:\n    promotions: true\n    authors: [release@example.test]\n    signers:\n      - {public}\n  promotion:\n"
        ),
    );
    let rules = commit_as(
        &platform,
        "author@example.test",
        None,
        "production: change rules",
    );
    waits_for_production_at(&platform, &rules);

    // An author not on the list: refused, and production stays where it was.
    touch_production(&platform, "by someone else");
    commit_as(
        &platform,
        "mallory@example.test",
        None,
        "production: sneak in",
    );
    let up = platform.up.as_ref().unwrap();
    let refused = up.expect_line(SOON, |l| l.contains("refused"));
    assert!(refused.contains("stays in force"), "{refused}");
    let why = up.expect_line(SOON, |l| {
        l.contains("may not change environment production")
    });
    assert!(
        why.contains("mallory@example.test")
            && why.contains("only Drover's promotions and commits by release@example.test"),
        "{why}"
    );
    assert_eq!(production_revision(&platform), rules[..7]);
    drop_last_commit(&platform);

    // A listed author, but unsigned: refused.
    touch_production(&platform, "unsigned");
    commit_as(
        &platform,
        "release@example.test",
        None,
        "production: unsigned",
    );
    let why = up.expect_line(SOON, |l| {
        l.contains("may not change environment production")
    });
    assert!(why.contains("the commit is not signed"), "{why}");
    drop_last_commit(&platform);

    // The listed author, signed with the listed key: applied.
    touch_production(&platform, "signed");
    let signed = commit_as(
        &platform,
        "release@example.test",
        Some(&key),
        "production: signed",
    );
    waits_for_production_at(&platform, &signed);

    // Drover's promotion commit: accepted, and production runs what staging verified.
    let said = drover()
        .args(["deploy", "staging", "--set", "web=v2", "--state-dir"])
        .arg(&platform.state)
        .output()
        .unwrap();
    assert!(
        said.status.success(),
        "{}",
        String::from_utf8_lossy(&said.stderr)
    );
    let promoted = drover()
        .args([
            "promote",
            "staging",
            "production",
            "--wait",
            "--gate-timeout",
            "60s",
            "-o",
            "json",
            "--state-dir",
        ])
        .arg(&platform.state)
        .output()
        .unwrap();
    assert!(
        promoted.status.success(),
        "{}",
        String::from_utf8_lossy(&promoted.stderr)
    );
    let promotion: serde_json::Value = serde_json::from_slice(&promoted.stdout).unwrap();
    assert_eq!(promotion["state"], "succeeded", "{promotion:#}");
    let answer = platform.get_json("web.localhost", "/");
    assert_eq!(answer["version"], "v2", "{answer}");
}
