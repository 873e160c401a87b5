//! `drover validate` on the example repos: the valid one, one broken repo per rule,
//! and the warnings-only ones.

use std::collections::BTreeSet;
use std::path::PathBuf;

use drover_diagnostics::{Code, Severity};

use drover_testkit::git::copy_dir;

use crate::support::{golden, repo_root, run_in, stdout};

fn example_dirs(group: &str) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(repo_root().join("examples").join(group))
        .expect("examples folder exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// Runs every example of a group, checks the exit code and the golden output, and
/// returns the codes the outputs mention.
fn check_group(group: &str, expected_exit: i32) -> BTreeSet<String> {
    let mut failures = Vec::new();
    let mut codes = BTreeSet::new();
    for dir in example_dirs(group) {
        let output = run_in(&dir, &["validate", ".", "--color", "never"]);
        let text = stdout(&output);
        if output.status.code() != Some(expected_exit) {
            failures.push(format!(
                "{}: exit {:?}, expected {expected_exit}\n{text}",
                dir.display(),
                output.status.code()
            ));
        }
        if let Some(mismatch) = golden(&dir.join("expected.txt"), &text) {
            failures.push(mismatch);
        }
        for word in text.split(['[', ']']) {
            if word.len() == 4 && (word.starts_with('E') || word.starts_with('W')) {
                codes.insert(word.to_owned());
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    codes
}

#[test]
fn the_example_repo_is_valid_without_warnings() {
    let output = run_in(&repo_root(), &["validate", "examples/repo"]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert_eq!(
        stdout(&output),
        "examples/repo: valid (0 errors, 0 warnings; 2 clusters, 2 environments, 6 services)\n"
    );
}

/// Each code's example lives in a folder named after it and shows that code.
fn assert_every_code_has_its_example(group: &str, severity: Severity, codes: &BTreeSet<String>) {
    for code in Code::ALL.iter().filter(|c| c.severity() == severity) {
        let dir = repo_root().join("examples").join(group).join(code.slug());
        assert!(
            dir.is_dir(),
            "{} has no example: add examples/{group}/{}/",
            code.id(),
            code.slug()
        );
        let expected = std::fs::read_to_string(dir.join("expected.txt")).unwrap_or_default();
        assert!(
            expected.contains(&format!("[{}]", code.id())),
            "examples/{group}/{} does not show {}",
            code.slug(),
            code.id()
        );
    }
    assert!(!codes.is_empty());
}

#[test]
fn every_invalid_example_exits_1_and_prints_its_expected_message() {
    let codes = check_group("invalid", 1);
    assert_every_code_has_its_example("invalid", Severity::Error, &codes);
}

#[test]
fn warning_examples_exit_0_and_print_their_warning() {
    let codes = check_group("warnings", 0);
    assert_every_code_has_its_example("warnings", Severity::Warning, &codes);
}

#[test]
fn docs_errors_md_lists_every_code() {
    let on_disk = std::fs::read_to_string(repo_root().join("docs/errors.md")).unwrap_or_default();
    assert!(
        on_disk == drover_diagnostics::catalogue_markdown(),
        "docs/errors.md is out of date. Regenerate with: cargo run -p drover -- generate"
    );
}

#[test]
fn json_output_gives_machines_the_same_findings() {
    let dir = repo_root().join("examples/invalid/unknown-field");
    let output = run_in(&dir, &["validate", "--output", "json"]);
    assert_eq!(output.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("valid JSON");
    assert_eq!(report["valid"], false);
    assert_eq!(report["errors"], 1);
    let d = &report["diagnostics"][0];
    assert_eq!(d["code"], "E002");
    assert_eq!(d["severity"], "error");
    assert_eq!(d["location"]["file"], "environments/staging/api.yaml");
    assert_eq!(d["location"]["line"], 8);
    assert_eq!(d["location"]["column"], 3);
    assert_eq!(d["hint"], "did you mean `readinessProbe`?");
}

#[test]
fn all_errors_of_a_repo_are_reported_in_one_run_sorted_by_file_and_line() {
    let repo = tempfile::tempdir().unwrap();
    let base = repo_root().join("examples/invalid/unknown-variant");
    copy_dir(&base, repo.path());
    let env = repo.path().join("environments/staging");
    std::fs::write(
        env.join("zz.yaml"),
        "apiVersion: drover.dev/v1alpha1\nkind: Servce\n",
    )
    .unwrap();
    std::fs::write(env.join("aa.yaml"), "apiVersion: drover.dev/v1alpha1\nkind: Service\nmetadata: {name: Bad_Name}\nspec: {command: [x]}\n").unwrap();
    let output = run_in(repo.path(), &["validate", "--color", "never"]);
    assert_eq!(output.status.code(), Some(1));
    let lines: Vec<String> = stdout(&output)
        .lines()
        .filter(|l| l.contains("error["))
        .map(String::from)
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[0].starts_with("environments/staging/aa.yaml:3:"),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("environments/staging/api.yaml:7:9"),
        "{lines:?}"
    );
    assert!(
        lines[2].starts_with("environments/staging/zz.yaml:2:1"),
        "{lines:?}"
    );
}

#[test]
fn colour_is_used_only_when_asked_or_on_a_terminal() {
    let dir = repo_root().join("examples/invalid/unknown-field");
    let plain = stdout(&run_in(&dir, &["validate"]));
    assert!(!plain.contains('\x1b'), "piped output must not be coloured");
    let coloured = stdout(&run_in(&dir, &["validate", "--color", "always"]));
    assert!(coloured.contains("\x1b[1;31merror[E002]"), "{coloured}");
}

#[test]
fn a_missing_folder_is_a_usage_error_with_exit_2() {
    let output = run_in(&repo_root(), &["validate", "does/not/exist"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("does/not/exist is not a directory"));
    let output = run_in(&repo_root(), &["validate", "--output", "xml"]);
    assert_eq!(output.status.code(), Some(2), "clap usage errors exit 2");
}

#[test]
fn every_shipped_policy_has_a_passing_and_a_failing_example() {
    let mut names: Vec<String> = std::fs::read_dir(repo_root().join("policies"))
        .expect("policies/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 4, "{names:?}");
    let mut failures = Vec::new();
    for name in &names {
        for (case, exit) in [("passes", 0), ("fails", 1)] {
            let dir = repo_root().join("examples/policies").join(name).join(case);
            assert!(
                dir.is_dir(),
                "policies/{name}.yaml has no example {}",
                dir.display()
            );
            let output = run_in(&dir, &["validate", ".", "--color", "never"]);
            let text = stdout(&output);
            if output.status.code() != Some(exit) {
                failures.push(format!(
                    "{}: exit {:?}\n{text}",
                    dir.display(),
                    output.status.code()
                ));
            }
            if case == "fails" && !text.contains(&format!("policy `{name}`")) {
                failures.push(format!(
                    "{} does not break policy {name}:\n{text}",
                    dir.display()
                ));
            }
            if let Some(mismatch) = golden(&dir.join("expected.txt"), &text) {
                failures.push(mismatch);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
