//! Promotions from staging to production through a real `drover up`: the gate, the
//! commit, production's release and its rollback, idempotency, scoped tokens, the
//! audit trail and signed notifications.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drover_testkit::git::git;
use hmac::{KeyInit, Mac};
use serde_json::Value;

use crate::platform::Platform;
use crate::support::{drover, http, repo_root};

const SOON: Duration = Duration::from_secs(30);
const SECRET: &str = "notification-secret";

/// The fixture: staging and production on one cluster; production promotes from
/// staging after a 2 s soak, and version v3 fails readiness in production only.
pub fn fixture() -> std::path::PathBuf {
    crate::support::repo_root().join("tests/fixtures/promotion")
}

pub fn both_ready(platform: &Platform) -> Value {
    platform.wait_for(SOON, "staging and production ready", |s| {
        let ready = |env: &str, n: usize| {
            let mine: Vec<&Value> = s["instances"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|i| i["environment"] == env)
                .collect();
            mine.len() == n && mine.iter().all(|i| i["ready"] == true)
        };
        ready("staging", 1) && ready("production", 2)
    })
}

/// Where Drover writes: the bare remote `up` follows, else the working copy.
fn config_repo(platform: &Platform) -> &std::path::Path {
    platform.remote.as_deref().unwrap_or(&platform.repo.dir)
}

/// `git ARGS` in [`config_repo`].
fn config_git(platform: &Platform, args: &[&str]) -> String {
    git(config_repo(platform), args)
}

fn file_at_head(platform: &Platform, path: &str) -> String {
    config_git(platform, &["show", &format!("main:{path}")])
}

fn head(platform: &Platform) -> String {
    config_git(platform, &["rev-parse", "main"])
}

/// `POST /api/v1/promotions` staging → production.
fn post_promotion(platform: &Platform, token: Option<&str>, key: Option<&str>) -> (u16, Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(auth) = &auth {
        headers.push(("Authorization", auth));
    }
    if let Some(key) = key {
        headers.push(("Idempotency-Key", key));
    }
    let (status, body) = http(
        "POST",
        &platform.api,
        "/api/v1/promotions",
        &headers,
        br#"{"from": "staging", "to": "production"}"#,
    );
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

/// `drover promote staging production --wait -o json`, waiting through the soak.
fn promote_output(platform: &Platform, extra: &[&str]) -> std::process::Output {
    drover()
        .args([
            "promote",
            "staging",
            "production",
            "--wait",
            "--gate-timeout",
            "30s",
            "-o",
            "json",
            "--state-dir",
        ])
        .arg(&platform.state)
        .args(extra)
        .output()
        .unwrap()
}

/// [`promote_output`], which must succeed: the promotion.
fn promote_and_wait(platform: &Platform, extra: &[&str]) -> Value {
    let output = promote_output(platform, extra);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The status code of `GET /api/v1/status` with this token.
fn read_status(platform: &Platform, token: Option<&str>) -> u16 {
    let auth = token.map(|t| format!("Bearer {t}")).unwrap_or_default();
    let headers: &[(&str, &str)] = if token.is_some() {
        &[("Authorization", &auth)]
    } else {
        &[]
    };
    http("GET", &platform.api, "/api/v1/status", headers, b"").0
}

/// A notification as received: its signature header and its body.
type Delivery = (String, Vec<u8>);

/// A webhook receiver on 127.0.0.1: answers its first request with 500 (to be
/// retried), every later one with 200, and keeps what it got.
pub(crate) struct Receiver {
    pub(crate) url: String,
    got: Arc<Mutex<Vec<Delivery>>>,
}

impl Receiver {
    pub(crate) fn start() -> Receiver {
        Receiver::serve(None)
    }

    /// A receiver over HTTPS, with the server certificate of tests/fixtures/tls (whose
    /// CA `drover up` is told to trust through `SSL_CERT_FILE`).
    fn start_tls() -> Receiver {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let tls = repo_root().join("tests/fixtures/tls");
        let certs: Vec<CertificateDer> = CertificateDer::pem_file_iter(tls.join("server.pem"))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = PrivateKeyDer::from_pem_file(tls.join("server.key")).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        Receiver::serve(Some(Arc::new(config)))
    }

    fn serve(tls: Option<Arc<rustls::ServerConfig>>) -> Receiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}/hooks/drover", listener.local_addr().unwrap());
        let got: Arc<Mutex<Vec<Delivery>>> = Arc::default();
        let keep = got.clone();
        std::thread::spawn(move || {
            let mut first = true;
            for stream in listener.incoming().flatten() {
                match &tls {
                    Some(config) => {
                        let Ok(connection) = rustls::ServerConnection::new(config.clone()) else {
                            continue;
                        };
                        let stream = rustls::StreamOwned::new(connection, stream);
                        answer(stream, &mut first, &keep);
                    }
                    None => answer(stream, &mut first, &keep),
                }
            }
        });
        Receiver { url, got }
    }

    /// Every body received so far, as text.
    pub(crate) fn bodies(&self) -> String {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|(_, body)| String::from_utf8_lossy(body).into_owned())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The events received so far, each checked against its signature.
    fn events(&self) -> Vec<Value> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|(signature, body)| {
                let mut mac =
                    hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
                mac.update(body);
                let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
                assert_eq!(signature, &expected, "every notification is signed");
                serde_json::from_slice(body).unwrap()
            })
            .collect()
    }
}

/// Reads one request from `stream` and answers it: 500 the first time (to be
/// retried), 200 afterwards, keeping what came.
fn answer<S: std::io::Read + std::io::Write>(
    stream: S,
    first: &mut bool,
    keep: &Mutex<Vec<Delivery>>,
) {
    use std::io::{BufRead, Read};
    let mut reader = std::io::BufReader::new(stream);
    let (mut length, mut signature) = (0usize, String::new());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("x-drover-signature-256:") {
            signature = line.split_once(':').unwrap().1.trim().to_owned();
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let status = if *first { "500 Oops" } else { "200 OK" };
    if !*first {
        keep.lock().unwrap().push((signature, body));
    }
    *first = false;
    let stream = reader.get_mut();
    let _ = stream.write_all(
        format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    let _ = stream.flush();
}

#[test]
fn notifications_reach_an_https_receiver_trusted_through_ssl_cert_file() {
    let receiver = Receiver::start_tls();
    let ca = repo_root().join("tests/fixtures/tls/ca.pem");
    let platform = Platform::start_from(
        &fixture(),
        false,
        &["--notify", &receiver.url],
        &[
            ("DROVER_NOTIFY_SECRET", SECRET),
            ("SSL_CERT_FILE", ca.to_str().unwrap()),
        ],
    );
    let staging_healthy =
        |e: &Value| e["event"] == "release.succeeded" && e["environment"] == "staging";
    let deadline = Instant::now() + SOON;
    let events = loop {
        let events = receiver.events();
        if events.iter().any(staging_healthy) || Instant::now() > deadline {
            break events;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(events.iter().any(staging_healthy), "{events:#?}");
    drop(platform);
}

#[test]
fn a_verified_release_travels_from_staging_to_production() {
    let receiver = Receiver::start();
    // Following a remote: Drover pushes its commits.
    let platform = Platform::start_from(
        &fixture(),
        true,
        &["--notify", &receiver.url],
        &[("DROVER_NOTIFY_SECRET", SECRET)],
    );
    both_ready(&platform);

    // CI sets the new version in staging: one commit, only the artifact lines change.
    let said = platform.drover(&["deploy", "staging", "--set", "web=v2"]);
    assert!(
        said.starts_with("committed ") && said.contains("web: v1 → v2"),
        "{said}"
    );
    let staging = file_at_head(&platform, "environments/staging/web.yaml");
    assert!(
        staging.contains("  version: v2\n  image: registry.example/web:v2\n"),
        "{staging}"
    );
    platform.drover(&["wait", "staging", "--running", "web=v2", "--timeout", "60s"]);
    let released = said.split(' ').nth(1).unwrap().to_owned();
    // A commit touching production alone: staging's verified commit is still the one
    // its release ran. (On top of Drover's deploy commit, which is on the remote.)
    let bare = platform.remote.clone().unwrap();
    git(
        &platform.repo.dir,
        &["pull", "-q", "--ff-only", bare.to_str().unwrap(), "main"],
    );
    crate::changes::touch_production(&platform, "owned by the shop team");
    platform.commit("production: a comment");

    // `drover status` shows the gate open once staging has soaked.
    let status = platform.wait_for(SOON, "the gate open", |s| {
        s["promotions"][0]["open"] == true
    });
    let gate = &status["promotions"][0];
    assert_eq!(
        (gate["from"].as_str(), gate["to"].as_str()),
        (Some("staging"), Some("production"))
    );
    assert!(
        gate["message"]
            .as_str()
            .unwrap()
            .starts_with("staging healthy for "),
        "{gate}"
    );
    let promotion = promote_and_wait(&platform, &["--idempotency-key", "build-2"]);
    assert_eq!(promotion["state"], "succeeded", "{promotion:#}");
    assert_eq!(promotion["changes"][0]["to"]["version"], "v2");

    // Production serves the promoted version through its proxy, with its own config.
    let answer = platform.get_json("web.localhost", "/");
    assert_eq!(
        (answer["version"].as_str(), answer["message"].as_str()),
        (Some("v2"), Some("production"))
    );
    let production = file_at_head(&platform, "environments/production/web.yaml");
    assert!(
        production.contains(
            "  version: v2   # promoted from staging\n  image: registry.example/web:v2\n"
        ),
        "{production}"
    );
    assert!(
        production.contains("args: [--message, production]"),
        "{production}"
    );
    let message = config_git(&platform, &["log", "-1", "--format=%B", "main"]);
    assert!(
        message.starts_with("Promote staging to production: web: v1 → v2"),
        "{message}"
    );
    assert!(
        message.contains("Drover-Promotion: production#"),
        "{message}"
    );
    assert!(
        message.contains(&format!("Verified in staging at {released}, healthy for ")),
        "{message}"
    );

    // The same Idempotency-Key again: the same promotion, nothing new committed.
    let before = head(&platform);
    let (status, again) = post_promotion(&platform, Some(&platform.token()), Some("build-2"));
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], promotion["id"]);
    assert_eq!(head(&platform), before);
    // The same key for a different promotion is a mistake, said so.
    let auth = format!("Bearer {}", platform.token());
    let (status, body) = http(
        "POST",
        &platform.api,
        "/api/v1/promotions",
        &[("Authorization", &auth), ("Idempotency-Key", "build-2")],
        br#"{"from": "staging", "to": "production", "services": ["web"]}"#,
    );
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains("Idempotency-Key already used for promotion #"),
        "{body}"
    );
    let table = platform.drover(&["promotions"]);
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert!(
        rows[1].starts_with(&format!("{}  ", promotion["id"])),
        "{table}"
    );
    assert!(
        rows[1].contains("succeeded") && rows[1].contains("web: v1 → v2"),
        "{table}"
    );
    let (_, list) = platform.api_get("/api/v1/promotions");
    assert_eq!(
        serde_json::from_str::<Value>(&list)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // The audit trail says who did what from where.
    let audit: Value = serde_json::from_str(&platform.drover(&["audit", "-o", "json"])).unwrap();
    let actions: Vec<(&str, &str, &str)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["target"].as_str().unwrap(),
                e["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    // Newest first: the misused key, the retry, the promotion (after any gated tries
    // while staging soaked), and CI's deploy.
    assert_eq!(
        actions[..2],
        [
            ("promote", "staging→production", "rejected"),
            ("promote", "staging→production", "ok")
        ]
    );
    assert_eq!(actions.last(), Some(&("deploy", "staging", "ok")));
    assert_eq!(
        actions.iter().filter(|a| a.2 == "ok").count(),
        3,
        "{actions:?}"
    );
    assert!(
        actions[1..actions.len() - 1]
            .iter()
            .all(|a| a.0 == "promote"),
        "{actions:?}"
    );
    assert!(
        audit[0]["origin"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{audit:#}"
    );
    assert_eq!(audit[0]["who"], "admin");

    // Notifications arrive signed, in order, retried past the receiver's first 500.
    let wanted = [
        ("release.started", "staging"),
        ("release.succeeded", "staging"),
        ("promotion.committed", "production"),
        ("release.started", "production"),
        ("promotion.deploying", "production"),
        ("release.succeeded", "production"),
        ("promotion.succeeded", "production"),
    ];
    let deadline = Instant::now() + SOON;
    let events = loop {
        let events = receiver.events();
        if events.iter().any(|e| e["event"] == "promotion.succeeded") || Instant::now() > deadline {
            break events;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let sequences: Vec<u64> = events
        .iter()
        .map(|e| e["sequence"].as_u64().unwrap())
        .collect();
    assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");
    let mut rest = events.iter();
    for (event, env) in wanted {
        assert!(
            rest.any(|e| e["event"] == event && e["environment"] == env),
            "{event} of {env} in order; got {:#?}",
            events
                .iter()
                .map(|e| format!("{} {}", e["event"], e["environment"]))
                .collect::<Vec<_>>()
        );
    }
}

#[test]
fn a_promotion_whose_gate_is_not_met_is_refused_with_409_and_commits_nothing() {
    let mut platform = Platform::start_from(&fixture(), false, &[], &[]);
    both_ready(&platform);

    platform.drover(&["wait", "staging", "--timeout", "30s"]);
    // Soak not reached: production now asks for an hour.
    platform.repo.edit(
        "environments/production/environment.yaml",
        "soak: 2s",
        "soak: 1h",
    );
    let soak = platform.commit("production: soak for an hour");
    platform.wait_for(SOON, "the soak applied", |s| {
        s["environments"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["revision"] == soak[..7])
    });
    let before = head(&platform);
    let (status, body) = post_promotion(&platform, Some(&platform.token()), Some("soak-1"));
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["state"], "gated");
    // A pipeline polling through the soak: one audit row, not one per poll.
    for _ in 0..3 {
        let (again, _) = post_promotion(&platform, Some(&platform.token()), Some("soak-1"));
        assert_eq!(again, 409);
    }
    let audit: Value = serde_json::from_str(&platform.drover(&["audit", "-o", "json"])).unwrap();
    let promote_rows = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "promote")
        .count();
    assert_eq!(promote_rows, 1, "{audit:#}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.starts_with("gate not met: staging has been healthy for "),
        "{error}"
    );
    assert!(error.contains("the soak time is 1h ("), "{error}");
    let shown = platform.drover(&["status"]);
    let row = shown
        .lines()
        .find(|l| l.starts_with("staging → production"))
        .unwrap_or_default();
    assert!(
        row.contains("closed") && row.contains("the soak time is 1h ("),
        "{shown}"
    );

    // Staging in the middle of a release: not healthy at any revision yet.
    platform.repo.edit(
        "environments/staging/web.yaml",
        "args: [--message, staging]",
        "args: [--message, staging, --ready-after, \"20\"]",
    );
    platform.commit("staging: slow to start");
    platform
        .up
        .as_mut()
        .unwrap()
        .expect_line(SOON, |l| l.starts_with("staging: revision "));
    let output = drover()
        .args(["promote", "staging", "production", "--state-dir"])
        .arg(&platform.state)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("promotion refused: gate not met: staging is"),
        "{stderr}"
    );
    assert_eq!(
        git(
            &platform.repo.dir,
            &["rev-list", "--count", &format!("{before}..HEAD")]
        ),
        "1"
    );
    assert!(
        !git(&platform.repo.dir, &["log", "--format=%s"]).contains("Promote"),
        "nothing was promoted"
    );
}

#[test]
fn a_promotion_that_fails_in_production_is_rolled_back_and_git_agrees() {
    let platform = Platform::start_from(&fixture(), true, &[], &[]);
    both_ready(&platform);
    platform.drover(&["deploy", "staging", "--set", "web=v3"]);
    platform.drover(&["wait", "staging", "--running", "web=v3", "--timeout", "60s"]);

    let output = promote_output(&platform, &[]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let promotion: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(promotion["state"], "rolled-back", "{promotion:#}");
    assert!(
        promotion["reason"]
            .as_str()
            .unwrap()
            .contains("readiness GET /ready returned 503"),
        "{promotion:#}"
    );

    // Production returns to v1, and Git says so: the promotion is reverted.
    let status = platform.wait_for(SOON, "production back on v1 at the revert", |s| {
        let production = s["environments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "production")
            .unwrap();
        production["sync"] == "Synced"
            && s["services"].as_array().unwrap().iter().any(|v| {
                v["environment"] == "production" && v["version"] == "v1" && v["state"] == "Running"
            })
            && file_at_head(&platform, "environments/production/web.yaml")
                .contains("  version: v1   # promoted from staging\n")
    });
    let _ = status;
    assert_eq!(platform.get_json("web.localhost", "/")["version"], "v1");
    let subject = config_git(&platform, &["log", "-1", "--format=%s", "main"]);
    assert!(
        subject.starts_with("Revert \"Promote staging to production"),
        "{subject}"
    );
    let history: Value =
        serde_json::from_str(&platform.drover(&["history", "production", "-o", "json"])).unwrap();
    let promoted = history
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["revision"] == promotion["commit"] && r["trigger"] == "git")
        .unwrap();
    assert_eq!(promoted["result"], "rolled-back");
    assert!(promoted["revert"].is_string(), "{history:#}");
    // Staging keeps what it verified.
    assert_eq!(
        platform.get_json("web.staging.localhost", "/")["version"],
        "v3"
    );
}

#[test]
fn promotions_need_a_token_scoped_for_the_target() {
    let platform = Platform::start_from(&fixture(), false, &[], &[]);
    both_ready(&platform);
    let reader = platform.drover(&["token", "create", "reader", "--scope", "read"]);
    let reader = reader.trim();
    let stager = platform.drover(&[
        "token",
        "create",
        "stager",
        "--scope",
        "promote:staging",
        "--scope",
        "read",
    ]);
    let stager = stager.trim();
    assert!(reader.starts_with("drv_") && reader != stager);
    let before = head(&platform);

    let (status, body) = post_promotion(&platform, None, None);
    assert_eq!(status, 401, "{body}");
    let (status, body) = post_promotion(&platform, Some("drv_not-a-token"), None);
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unknown or revoked token"))
    );
    let (status, body) = post_promotion(&platform, Some(reader), None);
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("lacks scope `promote:production`"),
        "{body}"
    );
    let (status, _) = post_promotion(&platform, Some(stager), None);
    assert_eq!(status, 403);
    assert_eq!(head(&platform), before, "nothing committed");

    // Reads need a token too; `read` is enough.
    assert_eq!(read_status(&platform, Some(reader)), 200);
    assert_eq!(read_status(&platform, None), 401);

    // Only hashes are stored.
    let database = std::fs::read(platform.state.join("drover.db")).unwrap_or_default();
    let wal = std::fs::read(platform.state.join("drover.db-wal")).unwrap_or_default();
    for bytes in [&database, &wal] {
        assert!(!bytes.windows(reader.len()).any(|w| w == reader.as_bytes()));
    }

    let audit: Value = serde_json::from_str(&platform.drover(&["audit", "-o", "json"])).unwrap();
    let refused: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "promote")
        .map(|e| {
            assert_eq!(e["outcome"], "refused");
            e["who"].as_str().unwrap()
        })
        .collect();
    assert_eq!(refused, ["stager", "reader", "-", "-"]);

    platform.drover(&["token", "revoke", "reader"]);
    assert_eq!(read_status(&platform, Some(reader)), 401);
}

#[test]
fn a_pull_request_promotion_writes_a_branch_with_a_preview_and_leaves_main_alone() {
    let platform = Platform::start_from(&fixture(), false, &[], &[]);
    both_ready(&platform);
    platform.repo.edit(
        "environments/production/environment.yaml",
        "    soak: 2s\n",
        "    soak: 2s\n    mode: pull-request\n",
    );
    platform.commit("production: promotions by pull request");
    platform.drover(&["deploy", "staging", "--set", "web=v2"]);
    platform.drover(&["wait", "staging", "--running", "web=v2", "--timeout", "60s"]);
    let before = head(&platform);

    let promotion = promote_and_wait(&platform, &[]);
    assert_eq!(promotion["state"], "committed", "{promotion:#}");
    let branch = promotion["branch"].as_str().unwrap();
    assert!(
        branch.starts_with("drover/promote-staging-to-production-"),
        "{branch}"
    );
    assert_eq!(head(&platform), before, "the tracked branch does not move");
    assert_eq!(
        git(&platform.repo.dir, &["rev-parse", branch]),
        promotion["commit"].as_str().unwrap()
    );
    let proposed = git(
        &platform.repo.dir,
        &[
            "show",
            &format!("{branch}:environments/production/web.yaml"),
        ],
    );
    assert!(
        proposed.contains("  version: v2   # promoted from staging\n"),
        "{proposed}"
    );
    let preview = promotion["preview"].as_str().unwrap();
    assert!(preview.starts_with("### Drover preview: "), "{preview}");
    assert!(
        preview.contains("production") && preview.contains("v2"),
        "{preview}"
    );
    // Production runs what main says until the pull request is merged.
    assert_eq!(platform.get_json("web.localhost", "/")["version"], "v1");
}

fn promotion_commits(platform: &Platform) -> usize {
    config_git(platform, &["log", "--format=%s", "main"])
        .lines()
        .filter(|l| l.starts_with("Promote staging to production"))
        .count()
}

#[test]
fn a_promotion_committed_just_before_a_crash_is_recorded_after_the_restart_and_never_written_twice()
{
    let mut platform = Platform::start_from(&fixture(), true, &[], &[]);
    both_ready(&platform);
    platform.drover(&["deploy", "staging", "--set", "web=v2"]);
    platform.drover(&["wait", "staging", "--running", "web=v2", "--timeout", "60s"]);
    // `up` dies right after the promotion's commit is pushed, before recording it.
    platform.env = vec![("DROVER_FAILPOINT".into(), "after-git-commit".into())];
    platform.interrupt();
    platform.start_up();
    let output = promote_output(&platform, &["--idempotency-key", "build-7"]);
    assert!(!output.status.success(), "the crash cut the request");
    assert_eq!(platform.up.take().unwrap().wait_exit(SOON), Some(137));
    assert_eq!(promotion_commits(&platform), 1);
    platform.env.clear();
    platform.start_up();
    let said = platform
        .up
        .as_ref()
        .unwrap()
        .expect_line(SOON, |l| l.contains("interrupted by a stop"));
    assert!(said.ends_with(": committed"), "{said}");
    let list: Value =
        serde_json::from_str(&platform.drover(&["promotions", "-o", "json"])).unwrap();
    let state = list[0]["state"].as_str().unwrap_or_default();
    assert!(
        ["committed", "deploying", "succeeded"].contains(&state),
        "{list:#}"
    );
    // Recorded as committed before the restart; production's release may already have
    // moved it on to `deploying` (whose reason is the release's), so the event says it.
    let events = platform.api_get("/api/v1/events").1;
    assert!(events.contains("before a restart"), "{list:#}\n{events}");
    let again = promote_and_wait(&platform, &["--idempotency-key", "build-7"]);
    assert_eq!(again["state"], "succeeded", "{again:#}");
    assert_eq!(promotion_commits(&platform), 1, "one commit for one key");
    let answer = platform.get_json("web.localhost", "/");
    assert_eq!(answer["version"], "v2");
}

#[test]
fn a_deploy_is_checked_like_the_repo_and_a_retried_key_never_commits_twice() {
    let platform = Platform::start_from(&fixture(), false, &[], &[]);
    both_ready(&platform);
    let token = platform.token();
    let auth = format!("Bearer {token}");
    let deploy = |key: &str, body: &str| {
        http(
            "POST",
            &platform.api,
            "/api/v1/environments/staging/deploy",
            &[("Authorization", &auth), ("Idempotency-Key", key)],
            body.as_bytes(),
        )
    };
    let before = head(&platform);
    let (status, body) = deploy(
        "k0",
        r#"{"versions": {"web": "v2\nDrover-Promotion: forged"}}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("a version holds only letters"), "{body}");
    assert_eq!(head(&platform), before, "nothing invalid is committed");
    let (status, first) = deploy("k1", r#"{"versions": {"web": "v5"}}"#);
    assert_eq!(status, 200, "{first}");
    let (status, second) = deploy("k1", r#"{"versions": {"web": "v5"}}"#);
    assert_eq!((status, &second), (200, &first), "the same answer");
    let commits = config_git(
        &platform,
        &["rev-list", "--count", &format!("{before}..main")],
    );
    assert_eq!(commits.trim(), "1", "one commit for one key");
    let message = config_git(&platform, &["log", "-1", "--format=%B", "main"]);
    assert!(message.contains("\nDrover-Write: "), "{message}");
    let (status, body) = deploy("k1", r#"{"versions": {"web": "v6"}}"#);
    assert_eq!(status, 422, "{body}");
    let audit = platform.drover(&["audit", "-o", "json"]);
    assert!(
        !audit.contains("v2\\nDrover"),
        "no raw request value: {audit}"
    );
}
