//! A running local platform for end-to-end tests: a temporary config repo, `drover up`
//! on it with its own state directory, and helpers to look at what runs. Dropping it
//! stops `up` with SIGINT (as Ctrl-C would), then makes sure nothing is left.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use drover_testkit::git::TestRepo;
use serde_json::Value;

use crate::support::{Running, drover, http};

/// The fixture repo every platform test starts from: one cluster of two nodes with a
/// 3 s heartbeat timeout, one environment `staging`, one service `web`.
pub fn fixture() -> PathBuf {
    crate::support::repo_root().join("tests/fixtures/platform")
}

pub struct Platform {
    pub repo: TestRepo,
    /// A bare repository `up` follows (by `file://` URL) instead of `repo`, when set;
    /// [`Platform::commit`] pushes to it.
    pub remote: Option<PathBuf>,
    pub state: PathBuf,
    pub up: Option<Running>,
    pub proxy: String,
    pub api: String,
    /// Environment variables `up` runs with.
    pub env: Vec<(String, String)>,
    // Last, so the directory outlives everything that uses it.
    pub _tmp: tempfile::TempDir,
}

/// A steady stream of `GET /version` to web through the proxy, each on a new
/// connection, recording every answer as `STATUS BODY`.
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<String>>,
}

impl Load {
    pub fn start(platform: &Platform) -> Load {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (proxy, flag) = (platform.proxy.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let answer = crate::support::try_http(
                    "GET",
                    &proxy,
                    "/version",
                    &[("Host", "web.dev.localhost")],
                    b"",
                );
                seen.push(match answer {
                    Ok((status, body)) => format!("{status} {}", body.trim()),
                    Err(e) => format!("error {e}"),
                });
                // A new connection each time: paced, not to run out of ports.
                std::thread::sleep(Duration::from_millis(5));
            }
            seen
        });
        Load { stop, thread }
    }

    /// Stops and returns every answer.
    pub fn finish(self) -> Vec<String> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// A process's pid is still running (and not a zombie).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 2..].starts_with('Z')))
        .is_some_and(|zombie| !zombie)
}

/// Processes that belong to a state directory: agents (it is in their arguments) and
/// instances (their working directory is inside it).
pub fn processes_of(state: &Path) -> Vec<u32> {
    let state = state.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || !alive(pid) {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
        let is_up = cmdline.contains(" up ");
        if (!is_up && cmdline.contains(&state)) || cwd.to_string_lossy().starts_with(&state) {
            found.push(pid);
        }
    }
    found
}

impl Platform {
    /// Commits the fixture and starts `drover up` on it.
    pub fn start() -> Platform {
        Platform::start_with(&[])
    }

    /// Like [`Platform::start`], with `up` following a bare remote (polled every 200 ms)
    /// that the test pushes to and Drover pushes revert commits to.
    pub fn start_remote() -> Platform {
        Platform::start_inner(true, &[])
    }

    /// [`Platform::start`] with more arguments for `drover up`.
    pub fn start_with(extra: &[&str]) -> Platform {
        Platform::start_inner(false, extra)
    }

    fn start_inner(remote: bool, extra: &[&str]) -> Platform {
        Platform::start_from(&fixture(), remote, extra, &[])
    }

    /// `drover up` on another fixture, with more arguments and environment variables.
    pub fn start_from(
        fixture: &Path,
        remote: bool,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Platform {
        let tmp = tempfile::tempdir().unwrap();
        let repo = TestRepo::init(&tmp.path().join("config"));
        repo.copy_from(fixture);
        repo.commit("the platform fixture");
        let state = tmp.path().join("state");
        let remote = remote.then(|| {
            let bare = drover_testkit::git::bare(tmp.path(), "remote.git");
            drover_testkit::git::git(&repo.dir, &["push", "-q", bare.to_str().unwrap(), "main"]);
            bare
        });
        let mut platform = Platform {
            remote,
            repo,
            state,
            up: None,
            proxy: String::new(),
            api: String::new(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            _tmp: tmp,
        };
        platform.start_up_with(extra);
        platform
    }

    /// Starts (or restarts) `drover up` and waits for its addresses.
    pub fn start_up(&mut self) {
        self.start_up_with(&[]);
    }

    /// [`Platform::start_up`] with more arguments.
    pub fn start_up_with(&mut self, extra: &[&str]) {
        let source = match &self.remote {
            Some(bare) => format!("file://{}", bare.display()),
            None => self.repo.dir.to_str().unwrap().to_owned(),
        };
        let mut args = vec![
            "up",
            source.as_str(),
            "--state-dir",
            self.state.to_str().unwrap(),
        ];
        // A remote is polled often, unless the test says how often.
        if self.remote.is_some() && !extra.contains(&"--poll") {
            args.extend(["--poll", "200ms"]);
        }
        args.extend_from_slice(extra);
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let up = Running::start(&args, &env);
        let address = |line: String| line.rsplit("http://").next().unwrap().to_owned();
        self.api = address(up.expect_line(Duration::from_secs(20), |l| l.starts_with("api: ")))
            .split(' ')
            .next()
            .unwrap()
            .to_owned();
        self.proxy = address(up.expect_line(Duration::from_secs(20), |l| {
            l.starts_with("proxy local/http: ")
        }));
        self.up = Some(up);
    }

    /// Commits staging's web at version v2 with `lines` (YAML, indented two spaces)
    /// added after its `replicas: N` line; returns the commit id.
    pub fn commit_web_v2(&self, replicas: u32, lines: &str, message: &str) -> String {
        let line = format!("  replicas: {replicas}\n");
        self.repo
            .edit(
                "environments/staging/web.yaml",
                "version: v1",
                "version: v2",
            )
            .edit(
                "environments/staging/web.yaml",
                &line,
                &format!("{line}{lines}"),
            );
        self.commit(message)
    }

    /// Commits in the working copy and, with a remote, pushes; returns the commit id.
    pub fn commit(&self, message: &str) -> String {
        let id = self.repo.commit(message);
        if let Some(bare) = &self.remote {
            drover_testkit::git::git(
                &self.repo.dir,
                &["push", "-q", bare.to_str().unwrap(), "main"],
            );
        }
        id
    }

    /// `drover ARGS --state-dir STATE`, which must succeed; its standard output.
    pub fn drover(&self, args: &[&str]) -> String {
        let output = drover()
            .args(args)
            .args(["--state-dir", self.state.to_str().unwrap()])
            .output()
            .expect("drover runs");
        assert!(
            output.status.success(),
            "drover {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// `drover status -o json`.
    pub fn status(&self) -> Value {
        serde_json::from_str(&self.drover(&["status", "-o", "json"])).unwrap()
    }

    /// Waits until `test` holds for the status; returns that status. Panics with the
    /// last status seen after `timeout`.
    pub fn wait_for(&self, timeout: Duration, what: &str, test: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.status();
            if test(&status) {
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "not within {timeout:?}: {what}; status:\n{}",
                    serde_json::to_string_pretty(&status).unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A service's instances in the status.
    pub fn instances<'s>(status: &'s Value, service: &str) -> Vec<&'s Value> {
        status["instances"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["service"] == service)
            .collect()
    }

    /// All instances of a service ready, and exactly `n` of them.
    pub fn ready(status: &Value, service: &str, n: usize) -> bool {
        let instances = Platform::instances(status, service);
        instances.len() == n && instances.iter().all(|i| i["ready"] == true)
    }

    /// The state directory's (admin) API token.
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.state.join("api-token"))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// GET from the control plane's API with the admin token.
    pub fn api_get(&self, path: &str) -> (u16, String) {
        let auth = format!("Bearer {}", self.token());
        http("GET", &self.api, path, &[("Authorization", &auth)], b"")
    }

    /// The reasons of the newest events, newest first.
    pub fn event_reasons(&self) -> Vec<String> {
        let events: Value = serde_json::from_str(&self.api_get("/api/v1/events").1).unwrap();
        events
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["reason"].as_str().unwrap().to_owned())
            .collect()
    }

    /// GET through the proxy with a Host header.
    pub fn get(&self, host: &str, path: &str) -> (u16, String) {
        http("GET", &self.proxy, path, &[("Host", host)], b"")
    }

    /// GET through the proxy, the example app's JSON answer.
    pub fn get_json(&self, host: &str, path: &str) -> Value {
        let (status, body) = self.get(host, path);
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Stops `up` as Ctrl-C does and waits for it to exit.
    pub fn interrupt(&mut self) -> Option<i32> {
        let mut up = self.up.take()?;
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(up.pid() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        up.wait_exit(Duration::from_secs(40))
    }

    /// Kills `up` with SIGKILL, leaving its agents and instances running.
    pub fn kill_up(&mut self) {
        let mut up = self.up.take().expect("up runs");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(up.pid() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        up.wait_exit(Duration::from_secs(10));
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        self.interrupt();
        // Whatever is still there (a failed test, a bug): gone, so no test leaks.
        for pid in processes_of(&self.state) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}
