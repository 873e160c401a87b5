//! Change rules with OpenPGP signatures, made by the real `gpg` and `git commit -S`:
//! a commit signed by the listed key is allowed, one signed by another key is not, and
//! a commit touching only another environment is not judged.

use std::path::Path;

use drover_source::{GitSource, RepoSpec, Rules};
use drover_testkit::git::{TestRepo, author, git, git_with};

fn gpg(home: &Path, args: &[&str]) -> String {
    String::from_utf8_lossy(&drover_testkit::git::gpg(home, args, b"")).into_owned()
}

/// A signing key in its own GnuPG home; returns the armored public key.
fn key(home: &Path, email: &str) -> String {
    std::fs::create_dir_all(home).unwrap();
    let mut perms = std::fs::metadata(home).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o700);
    std::fs::set_permissions(home, perms).unwrap();
    gpg(
        home,
        &[
            "--quick-gen-key",
            &format!("Release <{email}>"),
            "ed25519",
            "sign",
            "never",
        ],
    );
    gpg(home, &["--armor", "--export", email])
}

/// Commits everything as `email`, signed by the key in `home`.
fn signed_commit(repo: &TestRepo, home: &Path, email: &str, message: &str) -> String {
    git(&repo.dir, &["add", "-A"]);
    let signing_key = format!("user.signingkey={email}");
    let mut env = author(email).to_vec();
    env.push(("GNUPGHOME", home.to_str().unwrap()));
    git_with(
        &repo.dir,
        &["-c", &signing_key, "commit", "-q", "-S", "-m", message],
        &env,
    );
    git(&repo.dir, &["rev-parse", "HEAD"])
}

fn note(repo: &TestRepo, file: &str, text: &str) {
    let path = repo.dir.join(file);
    let old = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("# {text}\n{old}")).unwrap();
}

#[test]
fn an_openpgp_signature_by_the_listed_key_is_allowed_and_another_key_is_not() {
    let tmp = tempfile::tempdir().unwrap();
    let listed = key(&tmp.path().join("listed"), "release@example.test");
    let other_home = tmp.path().join("other");
    key(&other_home, "release@example.test");
    let (repo, _) = TestRepo::with_example(&tmp.path().join("config"), "shop");
    let indented: String = listed.lines().map(|l| format!("        {l}\n")).collect();
    repo.edit(
        "environments/production/environment.yaml",
        "spec:\n",
        &format!("spec:\n  changes:\n    signers:\n      - |\n{indented}"),
    );
    let rules_commit = repo.commit("production: only signed commits");
    let spec = RepoSpec {
        location: repo.dir.to_str().unwrap().to_owned(),
        ..RepoSpec::default()
    };
    let source = GitSource::open(spec, &tmp.path().join("cache")).unwrap();
    let at = |id: &str| source.resolve(id).unwrap();
    let desired = source.desired_at(&at(&rules_commit)).unwrap();
    assert!(
        desired.checked.is_valid(),
        "{:?}",
        desired.checked.diagnostics
    );
    let rules = Rules::of(&desired.checked.repo);
    assert!(!rules.is_empty());

    note(
        &repo,
        "environments/production/web.yaml",
        "signed by the listed key",
    );
    let good = signed_commit(
        &repo,
        &tmp.path().join("listed"),
        "release@example.test",
        "good",
    );
    let refusals = source
        .refusals(Some(&at(&rules_commit)), &at(&good), &rules, None)
        .unwrap();
    assert!(refusals.is_empty(), "{refusals:?}");

    note(
        &repo,
        "environments/production/web.yaml",
        "signed by another key",
    );
    let bad = signed_commit(&repo, &other_home, "release@example.test", "bad");
    let refusals = source
        .refusals(Some(&at(&good)), &at(&bad), &rules, None)
        .unwrap();
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert_eq!(refusals[0].environment, "production");
    assert!(
        refusals[0]
            .reason
            .starts_with("its OpenPGP signature is not by a key the rule lists"),
        "{}",
        refusals[0]
    );

    // Staging has no rules: an unsigned commit touching it alone is not judged.
    note(
        &repo,
        "environments/staging/web.yaml",
        "unsigned, staging only",
    );
    let staging = repo.commit("staging: a note");
    let refusals = source
        .refusals(Some(&at(&bad)), &at(&staging), &rules, None)
        .unwrap();
    assert!(refusals.is_empty(), "{refusals:?}");
}
