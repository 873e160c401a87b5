//! Observability end to end: a real Prometheus (Debian's `prometheus` package, which
//! .ci/install-deps installs) scrapes `drover up`'s `/metrics` with a `read` token,
//! loads the alert rules shipped in examples/observability/, and answers PromQL that
//! sees a release counted, the proxy's requests, and every query of the shipped
//! Grafana dashboard.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::platform::{Platform, fixture};
use crate::support::{free_port, http, repo_root};

fn observability() -> PathBuf {
    repo_root().join("examples/observability")
}

/// A Prometheus server of its own, scraping one target every second; killed when
/// dropped.
struct Prometheus {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: &str, token: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, token).unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {rules}\nscrape_configs:\n  - job_name: drover\n    authorization:\n      credentials_file: {token}\n    static_configs:\n      - targets: ['{target}']\n",
            rules = observability().join("alerts.yaml").display(),
            token = token_file.display(),
        );
        let config_file = dir.path().join("prometheus.yml");
        std::fs::write(&config_file, config).unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("log")).unwrap())
            .spawn()
            .expect("prometheus runs (Debian's prometheus package; .ci/install-deps installs it)");
        let prometheus = Prometheus {
            child,
            addr,
            _dir: dir,
        };
        prometheus.wait_until("ready", Duration::from_secs(30), |p| {
            crate::support::try_http("GET", &p.addr, "/-/ready", &[], b"")
                .is_ok_and(|(code, _)| code == 200)
        });
        prometheus
    }

    /// `GET /api/v1/…` with `query` URL-encoded, through curl.
    fn api(&self, path: &str, query: Option<&str>) -> Value {
        let mut curl = Command::new("curl");
        curl.args(["-sS", "--max-time", "10", "-G"]);
        if let Some(q) = query {
            curl.arg("--data-urlencode").arg(format!("query={q}"));
        }
        let out = curl
            .arg(format!("http://{}/api/v1/{path}", self.addr))
            .output()
            .expect("curl runs");
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "Prometheus answered {path} with no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// The result of an instant query, which must succeed.
    fn query(&self, promql: &str) -> Vec<Value> {
        let answer = self.api("query", Some(promql));
        assert_eq!(answer["status"], "success", "{promql}: {answer}");
        answer["data"]["result"].as_array().unwrap().clone()
    }

    /// The single value of an instant query (0 when it has no result).
    fn value(&self, promql: &str) -> f64 {
        self.query(promql)
            .first()
            .and_then(|r| r["value"][1].as_str()?.parse().ok())
            .unwrap_or(0.0)
    }

    fn wait_until(&self, what: &str, timeout: Duration, test: impl Fn(&Prometheus) -> bool) {
        let deadline = Instant::now() + timeout;
        while !test(self) {
            assert!(
                Instant::now() < deadline,
                "Prometheus: not within {timeout:?}: {what}; its log:\n{}",
                std::fs::read_to_string(self._dir.path().join("log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every PromQL expression of a Grafana dashboard, with its variables filled in.
fn dashboard_queries(file: &Path) -> Vec<String> {
    let dashboard: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| {
            t["expr"]
                .as_str()
                .unwrap()
                .replace("$environment", ".*")
                .replace("$__rate_interval", "1m")
                .replace("$__range", "1h")
        })
        .collect()
}

#[test]
fn prometheus_scrapes_releases_proxy_traffic_and_the_dashboards_queries() {
    let platform = Platform::start_from(&fixture(), false, &[], &[]);
    platform.wait_for(Duration::from_secs(60), "web ready", |s| {
        Platform::ready(s, "web", 1)
    });
    // Without a token the metrics are not for anyone (no --metrics-public).
    let (code, _) = http("GET", &platform.api, "/metrics", &[], b"");
    assert_eq!(code, 401);
    let reader = platform.drover(&["token", "create", "prometheus", "--scope", "read"]);
    let prometheus = Prometheus::start(&platform.api, reader.trim());

    for _ in 0..20 {
        assert_eq!(platform.get("web.dev.localhost", "/").0, 200);
    }
    assert_eq!(platform.get("nobody.dev.localhost", "/").0, 404);
    prometheus.wait_until("the scrape is up", Duration::from_secs(30), |p| {
        p.value(r#"up{job="drover"}"#) == 1.0
    });
    prometheus.wait_until(
        "the proxy's requests are counted",
        Duration::from_secs(30),
        |p| {
            p.value(
                r#"sum(drover_proxy_requests_total{environment="staging",service="web",code="2xx"})"#,
            ) >= 20.0
        },
    );
    assert_eq!(
        prometheus.value("sum(drover_releases_total{result=\"healthy\"})"),
        1.0,
        "the first release is counted healthy"
    );
    assert_eq!(
        prometheus
            .value(r#"drover_environment_sync_status{environment="staging",status="Synced"}"#),
        1.0
    );
    assert!(prometheus.value("sum(drover_proxy_unrouted_requests_total)") >= 1.0);
    assert!(
        prometheus.value(r#"sum(drover_proxy_upstream_duration_seconds_count{service="web"})"#)
            >= 20.0
    );
    assert_eq!(
        prometheus.value(r#"drover_service_ready_instances{environment="staging",service="web"}"#),
        1.0
    );
    // The scrapes themselves are API requests, counted by route (one scrape
    // reports the ones before it).
    prometheus.wait_until("scrapes are counted", Duration::from_secs(10), |p| {
        p.value(r#"sum(drover_http_requests_total{route="/metrics",code="200"})"#) >= 1.0
    });

    // A commit that changes web is a second release, counted when it is judged.
    platform.commit_web_v2(1, "  update: {monitor: 1s}\n", "web v2");
    prometheus.wait_until(
        "the second release is counted",
        Duration::from_secs(90),
        |p| p.value("sum(drover_releases_total)") >= 2.0,
    );
    assert!(prometheus.value(r#"drover_revisions_total{outcome="accepted"}"#) >= 2.0);

    // The shipped alert rules are loaded, and no release failure fires.
    let rules = prometheus.api("rules", None);
    let names: Vec<&str> = rules["data"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"DroverReleaseFailed"), "{names:?}");
    assert_eq!(rules["data"]["groups"][0]["rules"][0]["health"], "ok");

    // Every query of the Grafana dashboard is valid PromQL over these metrics, and
    // the ones about releases, services and the proxy have data.
    let queries = dashboard_queries(&observability().join("grafana-dashboard.json"));
    assert!(queries.len() >= 15);
    for q in &queries {
        let found = prometheus.query(q);
        let needs_data = [
            "drover_service_ready_instances",
            "drover_proxy_requests_total",
        ];
        if needs_data.iter().any(|m| q.contains(m)) {
            assert!(!found.is_empty(), "no data for the dashboard's {q}");
        }
    }
}

#[test]
fn the_shipped_alert_rules_pass_their_unit_tests() {
    let out = Command::new("promtool")
        .args(["test", "rules", "alerts.test.yaml"])
        .current_dir(observability())
        .output()
        .expect("promtool runs (Debian's prometheus package)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
