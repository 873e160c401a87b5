//! The command line's habits: one `-o` flag (human, wide, json, yaml), shell
//! completions, and a top-level help written for users.

use serde_json::Value;

use crate::platform::Platform;
use crate::support::{drover, repo_root};

#[test]
fn completion_scripts_are_printed_for_each_shell() {
    for (shell, marker) in [
        ("bash", "_drover()"),
        ("zsh", "#compdef drover"),
        ("fish", "complete -c drover"),
    ] {
        let output = drover().args(["completion", shell]).output().unwrap();
        assert!(output.status.success(), "{shell}");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            text.contains(marker),
            "{shell}: {}",
            &text[..text.len().min(200)]
        );
        assert!(text.contains("promote"), "{shell} completes subcommands");
    }
}

#[test]
fn the_top_level_help_starts_a_new_user_off() {
    let output = drover().arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("Getting started:\n  drover validate examples/repo"),
        "{text}"
    );
    assert!(
        text.contains("-o human (default), wide, json or yaml"),
        "{text}"
    );
}

#[test]
fn validate_speaks_yaml_with_the_same_findings_as_json() {
    let dir = repo_root().join("examples/invalid/unknown-field");
    let run = |format: &str| {
        let output = drover()
            .args(["validate", ".", "-o", format])
            .current_dir(&dir)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1));
        String::from_utf8(output.stdout).unwrap()
    };
    let json: Value = serde_json::from_str(&run("json")).unwrap();
    let yaml: Value = serde_saphyr::from_str(&run("yaml")).unwrap();
    assert_eq!(json, yaml);
}

#[test]
fn status_is_a_table_a_wider_table_json_or_yaml() {
    let platform = Platform::start();
    platform.wait_for(std::time::Duration::from_secs(20), "web ready", |s| {
        Platform::ready(s, "web", 1)
    });
    let human = platform.drover(&["status"]);
    let wide = platform.drover(&["status", "-o", "wide"]);
    assert!(
        !human.contains("LAST FAILURE") && wide.contains("LAST FAILURE"),
        "{wide}"
    );
    assert!(wide.contains("HEALTH"), "{wide}");
    let yaml: Value = serde_saphyr::from_str(&platform.drover(&["status", "-o", "yaml"])).unwrap();
    assert_eq!(yaml["environments"][0]["name"], "staging");
    assert_eq!(yaml["services"][0]["name"], "web");
}

#[test]
fn plan_of_a_local_environment_with_nothing_applied_shows_everything_added() {
    let state = tempfile::tempdir().unwrap();
    let output = drover()
        .args(["plan", "examples/repo", "--env", "staging", "--state-dir"])
        .arg(state.path())
        .current_dir(repo_root())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("staging: Drover's objects (nothing applied yet from"),
        "{text}"
    );
    assert!(text.contains("  web: added (replicas 2, v1.4.0)"), "{text}");
    assert!(
        !text.contains("dry run"),
        "a local cluster has no dry run: {text}"
    );
    assert!(
        std::fs::read_dir(state.path()).unwrap().next().is_none(),
        "planning writes nothing"
    );
    let json = drover()
        .args(["plan", "examples/repo", "--env", "nowhere", "-o", "json"])
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert_eq!(json.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&json.stderr).contains("no environment `nowhere`"));
}
