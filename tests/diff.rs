//! `drover diff` and `drover preview` on real Git repositories made with `git`.

use drover_testkit::git::TestRepo;

use crate::support::{edit_secret, golden, repo_root, run_in, stdout};

/// The example repo committed, then a second commit that scales web, bumps the API
/// image and rotates a secret.
fn repo_with_a_change(dir: &std::path::Path) -> TestRepo {
    let (repo, _) = TestRepo::with_example(dir, "shop: first version");
    repo.edit(
        "environments/staging/web.yaml",
        "replicas: 2",
        "replicas: 4",
    )
    .edit(
        "environments/staging/api.yaml",
        "shop-api:v2.1.0",
        "shop-api:v2.2.0",
    );
    // The password changed as people change it: decrypted, edited, encrypted again.
    edit_secret(
        &repo.dir,
        "environments/staging/secrets.yaml",
        OLD_SECRET,
        NEW_SECRET,
        &crate::support::example_key(),
    );
    repo.commit("web: 4 replicas; api v2.2.0; rotate db password");
    repo
}

/// The example's staging password, and the one it is rotated to.
const OLD_SECRET: &str = "staging-example-password";
const NEW_SECRET: &str = "rotated-to-a-new-value";

#[test]
fn diff_between_two_commits_prints_semantic_lines_and_exits_1() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo_with_a_change(tmp.path());
    let output = run_in(
        &repo.dir,
        &[
            "diff", "--from", "HEAD~1", "--to", "HEAD", "--color", "never",
        ],
    );
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = stdout(&output);
    assert!(
        text.starts_with("environment staging\n  api: image v2.1.0 → v2.2.0\n"),
        "{text}"
    );
    assert!(
        text.contains("\n  secret db-credentials: password changed (sha256:"),
        "{text}"
    );
    assert!(text.contains("\n  web: replicas 2 → 4\n"), "{text}");
    assert!(text.contains("-  replicas: 2\n+  replicas: 4\n"), "{text}");
    assert!(
        !text.contains(NEW_SECRET) && !text.contains(OLD_SECRET),
        "{text}"
    );
}

#[test]
fn diff_between_equal_trees_exits_0() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, _) = TestRepo::with_example(tmp.path(), "first");
    // Only a file outside the layout, and a default spelled out: nothing changes.
    repo.write("README.md", "notes\n").edit(
        "environments/staging/worker.yaml",
        "replicas: 1",
        "replicas: 1\n  strategy: rolling",
    );
    repo.commit("docs and an explicit default");
    let output = run_in(&repo.dir, &["diff", "--from", "HEAD~1"]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(stdout(&output), "no changes\n");
}

#[test]
fn diff_with_an_invalid_revision_exits_2_naming_path_line_and_column() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, _) = TestRepo::with_example(tmp.path(), "first");
    repo.edit(
        "environments/production/web.yaml",
        "replicas: 3",
        "replicas: three",
    );
    repo.commit("broken");
    let output = run_in(&repo.dir, &["diff", "--from", "HEAD~1", "--to", "HEAD"]);
    assert_eq!(output.status.code(), Some(2));
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(errors.contains("environments/production/web.yaml:12:13: error[E004]: `spec.replicas` must be a whole number"), "{errors}");
    assert!(
        errors.contains("is invalid (1 errors)") || errors.contains("is invalid (1 error"),
        "{errors}"
    );
}

#[test]
fn diff_can_be_limited_to_one_environment_and_printed_as_json() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo_with_a_change(tmp.path());
    repo.edit(
        "environments/production/web.yaml",
        "replicas: 3",
        "replicas: 6",
    );
    repo.commit("production web: 6");
    let output = run_in(
        &repo.dir,
        &[
            "diff",
            "--from",
            "HEAD~1",
            "--env",
            "production",
            "--format",
            "json",
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    let set: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let changes = set["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0]["environment"], "production");
    assert_eq!(changes[0]["kind"], "Service");
    assert_eq!(changes[0]["summary"][0], "web: replicas 3 → 6");
    assert_eq!(changes[0]["patch"][0]["op"], "replace");
    assert_eq!(changes[0]["patch"][0]["path"], "/spec/replicas");
    let output = run_in(&repo.dir, &["diff", "--from", "HEAD~1", "--env", "nowhere"]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn preview_shows_replicas_image_and_secret_without_the_secret_value() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo_with_a_change(tmp.path());
    let output = run_in(
        &repo.dir,
        &["preview", "--base", "HEAD~1", "--head", "HEAD"],
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let markdown = stdout(&output);
    for line in [
        "- `web: replicas 2 → 4`",
        "- `api: image v2.1.0 → v2.2.0`",
        "- `secret db-credentials: password changed (sha256:",
    ] {
        assert!(markdown.contains(line), "missing {line:?} in\n{markdown}");
    }
    assert!(
        !markdown.contains(NEW_SECRET) && !markdown.contains(OLD_SECRET),
        "a secret value leaked:\n{markdown}"
    );
    // Commit ids hash the whole example tree; the golden shows placeholders instead.
    let base = drover_testkit::git::git(&repo.dir, &["rev-parse", "--short=7", "HEAD~1"]);
    let head = drover_testkit::git::git(&repo.dir, &["rev-parse", "--short=7", "HEAD"]);
    let mut stable = markdown
        .replace(&format!("`{base}`"), "`<base>`")
        .replace(&format!("`{head}`"), "`<head>`");
    // The new value's fingerprint hashes its ciphertext, sealed under a random nonce.
    let (_, after) = stable
        .split_once("password changed (")
        .expect("the secret's change is shown");
    let fingerprint = after[..after.find(')').unwrap()].to_owned();
    stable = stable.replace(&fingerprint, "sha256:<new>");
    let failure = golden(&repo_root().join("tests/golden/preview.md"), &stable);
    assert!(failure.is_none(), "{}", failure.unwrap_or_default());
}

#[test]
fn preview_of_an_invalid_head_lists_its_errors_and_exits_1() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, _) = TestRepo::with_example(tmp.path(), "first");
    repo.edit(
        "environments/staging/api.yaml",
        "readinessProbe:",
        "readinesProbe:",
    );
    repo.commit("typo");
    let output = run_in(
        &repo.dir,
        &["preview", "--base", "HEAD~1", "--head", "HEAD"],
    );
    assert_eq!(output.status.code(), Some(1));
    let markdown = stdout(&output);
    assert!(
        markdown.contains("❌ **The head revision is invalid** (1 errors"),
        "{markdown}"
    );
    assert!(markdown.contains("| `environments/staging/api.yaml:22:3` | error E002 | unknown field `readinesProbe` in `spec` of Service — did you mean `readinessProbe`? |"), "{markdown}");
}
