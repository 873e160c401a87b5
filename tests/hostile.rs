//! The hostile-input corpus: broken and malicious commits (truncated YAML, 10 MB
//! strings, deep nesting, alias bombs, binary files, symlinks out of the repo, path
//! traversal in names, 200,000 objects). `validate`, `diff` and `preview` refuse each
//! with a located error, within a bound on time and memory; a live `up` rejects each
//! and the last valid revision keeps serving.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use drover_testkit::git::TestRepo;

use crate::platform::Platform;

/// Peak memory any one command may use on any case of the corpus.
const MOST_KIB: u64 = 400 * 1024;
/// Time any one command may take (a bound against hangs, not a speed check: speed is
/// benchmarked).
const MOST_TIME: Duration = Duration::from_secs(60);

/// One hostile change and what every reader must say about it.
struct Case {
    name: &'static str,
    make: fn(&Path),
    /// Where the error is, `path:line:column`.
    at: &'static str,
    /// Its code.
    code: &'static str,
}

fn service(name: &str, body: &str) -> String {
    format!(
        "apiVersion: drover.dev/v1alpha1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  command: [./serve]\n{body}"
    )
}

fn write(dir: &Path, path: &str, bytes: impl AsRef<[u8]>) {
    let path = dir.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn corpus() -> Vec<Case> {
    vec![
        Case {
            name: "truncated YAML",
            make: |dir| {
                let text =
                    std::fs::read_to_string(dir.join("environments/staging/web.yaml")).unwrap();
                let cut = text.find("command:").unwrap() + 3;
                write(
                    dir,
                    "environments/staging/web.yaml",
                    format!("{}\n  - [unclosed", &text[..cut]),
                );
            },
            at: "environments/staging/web.yaml:10:3",
            code: "E001",
        },
        Case {
            name: "a 10 MB string",
            make: |dir| {
                write(
                    dir,
                    "environments/staging/big.yaml",
                    service(
                        "big",
                        &format!("  env: {{BIG: \"{}\"}}\n", "x".repeat(10 << 20)),
                    ),
                )
            },
            at: "environments/staging/big.yaml:1:1",
            code: "E013",
        },
        Case {
            name: "a long string in a small file",
            make: |dir| {
                write(
                    dir,
                    "environments/staging/long.yaml",
                    service(
                        "long",
                        &format!("  env: {{LONG: \"{}\"}}\n", "x".repeat(300 << 10)),
                    ),
                )
            },
            at: "environments/staging/long.yaml:7:15",
            code: "E013",
        },
        Case {
            name: "deep nesting",
            make: |dir| {
                write(
                    dir,
                    "environments/staging/deep.yaml",
                    service(
                        "deep",
                        &format!("  env: {}{}\n", "[".repeat(100_000), "]".repeat(100_000)),
                    ),
                )
            },
            at: "environments/staging/deep.yaml:7:263",
            code: "E013",
        },
        Case {
            name: "an alias bomb",
            make: |dir| {
                let mut text = String::from(
                    "apiVersion: drover.dev/v1alpha1\nkind: Service\nmetadata: {name: bomb}\nspec:\n  command: [./serve]\n  args: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
                );
                for i in 1..9 {
                    let p = i - 1;
                    text.push_str(&format!("  x{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"));
                }
                write(dir, "environments/staging/bomb.yaml", text);
            },
            at: "environments/staging/bomb.yaml:11:17",
            code: "E013",
        },
        Case {
            name: "a binary file",
            make: |dir| {
                write(
                    dir,
                    "environments/staging/logo.yaml",
                    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe",
                )
            },
            at: "environments/staging/logo.yaml:1:1",
            code: "E012",
        },
        Case {
            name: "a symlink out of the repo",
            make: |dir| {
                std::os::unix::fs::symlink(
                    "/etc/passwd",
                    dir.join("environments/staging/passwd.yaml"),
                )
                .unwrap()
            },
            at: "environments/staging/passwd.yaml:1:1",
            code: "E012",
        },
        Case {
            name: "a symlink to /dev/zero",
            make: |dir| {
                std::os::unix::fs::symlink("/dev/zero", dir.join("environments/staging/zero.yaml"))
                    .unwrap()
            },
            at: "environments/staging/zero.yaml:1:1",
            code: "E012",
        },
        Case {
            name: "path traversal in a name",
            make: |dir| {
                write(
                    dir,
                    "environments/staging/evil.yaml",
                    service("../../etc/cron.d", ""),
                )
            },
            at: "environments/staging/evil.yaml:4:3",
            code: "E101",
        },
        Case {
            name: "200,000 objects",
            make: |dir| {
                for f in 0..200 {
                    let text: String = (0..1000)
                        .map(|i| format!("---\napiVersion: drover.dev/v1alpha1\nkind: Secret\nmetadata: {{name: s{f}-{i}}}\nspec: {{values: {{a: b}}}}\n"))
                        .collect();
                    write(dir, &format!("environments/staging/many/{f:03}.yaml"), text);
                }
            },
            at: "environments/staging/many/049.yaml:1:1",
            code: "E013",
        },
    ]
}

/// Runs `drover ARGS` in `dir` under GNU time: exit code, output (stdout and stderr)
/// and peak memory in KiB.
fn measured(dir: &Path, args: &[&str]) -> (Option<i32>, String, u64) {
    let report = dir.join("../time.txt");
    let started = Instant::now();
    let output = Command::new("/usr/bin/time")
        .arg("-o")
        .arg(&report)
        .args(["-f", "%M"])
        .arg(env!("CARGO_BIN_EXE_drover"))
        .args(args)
        .current_dir(dir)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("/usr/bin/time runs (.ci/install-deps installs it)");
    assert!(
        started.elapsed() < MOST_TIME,
        "drover {args:?} took {:?}",
        started.elapsed()
    );
    let peak = std::fs::read_to_string(&report)
        .ok()
        .and_then(|t| t.lines().last()?.trim().parse().ok())
        .expect("GNU time wrote the peak memory");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text, peak)
}

#[test]
fn every_hostile_commit_is_refused_by_validate_diff_and_preview_with_a_located_error() {
    for case in corpus() {
        let tmp = tempfile::tempdir().unwrap();
        let (repo, _) = TestRepo::with_example(&tmp.path().join("repo"), "a valid start");
        (case.make)(&repo.dir);
        repo.commit(case.name);
        for args in [
            &["validate", "."][..],
            &[
                "diff", "--from", "HEAD~1", "--to", "HEAD", "--color", "never",
            ],
            &["preview", "--base", "HEAD~1", "--head", "HEAD"],
        ] {
            let (code, text, peak) = measured(&repo.dir, args);
            let what = format!("{}: drover {}", case.name, args.join(" "));
            let shown = &text[..text.len().min(2000)];
            let want = if args[0] == "diff" { 2 } else { 1 };
            assert_eq!(code, Some(want), "{what}\n{shown}");
            let located = if args[0] == "preview" {
                assert!(
                    text.chars().count() <= 65_536,
                    "{what}: {} characters",
                    text.len()
                );
                format!("| `{}` | error {} |", case.at, case.code)
            } else {
                format!("{}: error[{}]", case.at, case.code)
            };
            assert!(text.contains(&located), "{what}: no {located}\n{shown}");
            assert!(peak < MOST_KIB, "{what}: {peak} KiB at peak");
        }
    }
}

#[test]
fn a_live_up_rejects_each_hostile_commit_and_the_last_valid_revision_keeps_serving() {
    let platform = Platform::start();
    let before = platform.wait_for(Duration::from_secs(30), "web ready", |s| {
        Platform::ready(s, "web", 1)
    });
    let serving = || platform.get_json("web.dev.localhost", "/")["message"].clone();
    assert_eq!(serving(), "web");
    for case in corpus().into_iter().filter(|c| {
        [
            "a 10 MB string",
            "a binary file",
            "a symlink to /dev/zero",
            "200,000 objects",
        ]
        .contains(&c.name)
    }) {
        (case.make)(&platform.repo.dir);
        let bad = platform.commit(case.name);
        let up = platform.up.as_ref().unwrap();
        let line = up.expect_line(Duration::from_secs(30), |l| {
            l.starts_with(&format!("revision {} rejected", &bad[..7]))
        });
        assert!(line.contains("stays in force"), "{}: {line}", case.name);
        let status = platform.status();
        let message = status["environments"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            message.contains(&format!("revision {} rejected", &bad[..7])),
            "{}: {status}",
            case.name
        );
        assert_eq!(serving(), "web", "{}", case.name);
        let nodes_ready = status["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["status"] == "ready");
        assert!(nodes_ready, "{}: a node is not ready: {status}", case.name);
        // Back to a valid tree for the next case.
        drover_testkit::git::git(&platform.repo.dir, &["revert", "--no-edit", "HEAD"]);
        drover_testkit::git::git(&platform.repo.dir, &["clean", "-fdq"]);
    }
    let pids = |s: &serde_json::Value| -> Vec<u64> {
        Platform::instances(s, "web")
            .iter()
            .filter_map(|i| i["pid"].as_u64())
            .collect()
    };
    assert_eq!(
        pids(&platform.status()),
        pids(&before),
        "web was never restarted"
    );
}
