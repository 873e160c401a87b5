//! The Jenkinsfile's steps, run as Jenkins would run them: every `sh` step of
//! examples/jenkins/Jenkinsfile, in order, with bash, against a running `drover up`.

use std::path::Path;
use std::process::Command;

use crate::platform::Platform;
use crate::promote::{both_ready, fixture};

/// The `sh` steps of a Jenkinsfile, with their stage: `sh '…'` and `sh '''…'''`.
fn steps(jenkinsfile: &str) -> Vec<(String, String)> {
    let mut stage = String::new();
    let mut steps = Vec::new();
    let mut lines = jenkinsfile.lines();
    while let Some(line) = lines.next() {
        let line = line.trim();
        if let Some(name) = line
            .strip_prefix("stage('")
            .and_then(|l| l.split_once('\''))
        {
            stage = name.0.to_owned();
        } else if line == "sh '''" {
            let script: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "'''").collect();
            steps.push((stage.clone(), script.join("\n")));
        } else if let Some(script) = line.strip_prefix("sh '").and_then(|l| l.strip_suffix('\'')) {
            steps.push((stage.clone(), script.to_owned()));
        }
    }
    steps
}

#[test]
fn the_jenkinsfile_steps_take_a_build_from_staging_to_production() {
    let jenkinsfile =
        std::fs::read_to_string(crate::support::repo_root().join("examples/jenkins/Jenkinsfile"))
            .unwrap();
    let steps = steps(&jenkinsfile);
    let stages: Vec<&str> = steps.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        stages,
        [
            "Build",
            "Test",
            "Deploy to staging",
            "Wait for staging",
            "Promote to production",
            "Wait for production"
        ]
    );

    let platform = Platform::start_from(&fixture(), false, &[], &[]);
    both_ready(&platform);
    let token = platform.drover(&[
        "token",
        "create",
        "jenkins",
        "--scope",
        "read",
        "--scope",
        "deploy:staging",
        "--scope",
        "promote:production",
    ]);
    let bin = Path::new(env!("CARGO_BIN_EXE_drover")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for (stage, script) in &steps {
        // What the Jenkinsfile's `environment` block gives its steps.
        let output = Command::new("bash")
            .args(["-eu", "-o", "pipefail", "-c", script])
            .env("PATH", &path)
            .env("DROVER_API", format!("http://{}", platform.api))
            .env("DROVER_API_TOKEN", token.trim())
            .env("STAGING_PROXY", format!("http://{}", platform.proxy))
            .env("STAGING_HOST", "web.staging.localhost")
            .env("VERSION", "v1.42")
            .env("BUILD_TAG", "jenkins-shop-42")
            .env("DROVER_STATE_DIR", "/nonexistent")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "stage {stage} failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let answer = platform.get_json("web.localhost", "/");
    assert_eq!(answer["version"], "v1.42");
    let audit: serde_json::Value =
        serde_json::from_str(&platform.drover(&["audit", "-o", "json"])).unwrap();
    let by_jenkins: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["who"] == "jenkins" && e["outcome"] == "ok")
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(by_jenkins.first(), Some(&"promote"));
    assert_eq!(by_jenkins.last(), Some(&"deploy"));
}
