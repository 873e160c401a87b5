//! The Docker Swarm engine against a real swarm (Debian's docker.io, Engine API 1.41,
//! started in swarm mode by tests/swarm/swarm.sh): one dockerd for the whole binary,
//! started first and stopped last, each test in its own stack (the environment's
//! `namespace`). Images are built from this `drover` binary (`swarm.sh app`): the
//! services run the real example app. The kernel here has no IPVS, so services publish
//! in host mode with DNS round robin, as Drover renders them.
//!
//! Its own harness (`harness = false`) so dockerd is stopped after the last test,
//! whatever happened: `cargo test --test swarm [FILTER]`.

#[path = "support.rs"]
#[allow(dead_code)]
mod support;

#[path = "swarm/tests.rs"]
mod cases;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use drover_testkit::git::{GitDaemon, TestRepo, bare, git};
use serde_json::Value;
use support::Running;

/// The images the tests' services use, all the example app.
const IMAGES: [&str; 6] = [
    "ghcr.io/example/shop-web:v1.4.0",
    "ghcr.io/example/shop-web:v1.5.0",
    "ghcr.io/example/shop-web:v1.6.0",
    "ghcr.io/example/shop-api:v2.1.0",
    "ghcr.io/example/shop-api:v2.2.0",
    "ghcr.io/example/shop-worker:v2.1.0",
];

/// The swarm for this binary.
struct Swarm {
    pub state: PathBuf,
    pub host: String,
    _tmp: tempfile::TempDir,
}

fn script() -> PathBuf {
    support::repo_root().join("tests/swarm/swarm.sh")
}

impl Swarm {
    fn start() -> Swarm {
        let tmp = tempfile::tempdir().expect("a temporary directory");
        let state = tmp.path().join("swarm");
        let swarm = Swarm {
            host: format!("unix://{}/docker.sock", state.display()),
            state,
            _tmp: tmp,
        };
        swarm.up();
        let drover = env!("CARGO_BIN_EXE_drover");
        let mut args = vec!["app", swarm.state.to_str().unwrap(), drover];
        args.extend(IMAGES);
        let built = Command::new("bash")
            .arg(script())
            .args(&args)
            .output()
            .expect("swarm.sh runs");
        assert!(
            built.status.success(),
            "swarm.sh app failed: {}",
            String::from_utf8_lossy(&built.stderr)
        );
        swarm
    }

    /// Starts dockerd (again) and the swarm, if it is not running.
    pub fn up(&self) {
        let up = Command::new("bash")
            .arg(script())
            .args(["up", self.state.to_str().unwrap()])
            .output()
            .expect("swarm.sh runs");
        assert!(
            up.status.success(),
            "swarm.sh up failed: {}",
            String::from_utf8_lossy(&up.stderr)
        );
    }

    /// Stops dockerd by its pid file, as a crash or a restart of the daemon would.
    pub fn stop_dockerd(&self) {
        let pid = std::fs::read_to_string(self.state.join("docker.pid")).expect("dockerd's pid");
        let pid = pid.trim();
        let _ = Command::new("kill").arg(pid).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Command::new("kill")
            .args(["-0", pid])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            assert!(Instant::now() < deadline, "dockerd did not stop");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(&self) {
        let _ = Command::new("bash")
            .arg(script())
            .args(["down", self.state.to_str().unwrap()])
            .output();
    }

    /// `docker ARGS` against this swarm: (succeeded, stdout + stderr).
    pub fn docker(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("docker")
            .env("DOCKER_HOST", &self.host)
            .args(args)
            .output()
            .expect("docker runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// `GET /v1.41/PATH` on the Engine API.
    pub fn api(&self, path: &str) -> Value {
        let out = Command::new("curl")
            .args(["-s", "--unix-socket"])
            .arg(self.state.join("docker.sock"))
            .arg(format!("http://docker/v1.41{path}"))
            .output()
            .expect("curl runs");
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    /// The service named `name`, if it exists.
    pub fn service(&self, name: &str) -> Option<Value> {
        let found = self.api(&format!("/services/{name}"));
        (found["Spec"]["Name"] == name).then_some(found)
    }

    /// Waits until `check` holds for service `name` (`None`: absent), or panics with
    /// what was seen last.
    pub fn until_service(
        &self,
        name: &str,
        timeout: Duration,
        check: impl Fn(Option<&Value>) -> bool,
    ) -> Option<Value> {
        let start = Instant::now();
        loop {
            let seen = self.service(name);
            if check(seen.as_ref()) {
                return seen;
            }
            assert!(
                start.elapsed() < timeout,
                "service {name} never matched: {seen:#?}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The tasks of service `name`.
    pub fn tasks(&self, name: &str) -> Vec<Value> {
        let filter = format!("{{\"service\":[\"{name}\"]}}");
        let encoded: String = filter.bytes().map(|b| format!("%{b:02X}")).collect();
        self.api(&format!("/tasks?filters={encoded}"))
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// A config repo of examples/repo's staging environment on the swarm, in stack `ns`,
/// served by `git daemon`, and `drover up` following the served remote.
struct Drover {
    pub work: TestRepo,
    pub remote: PathBuf,
    pub up: Running,
    pub state: PathBuf,
    pub ns: String,
    host: String,
    _daemon: GitDaemon,
    _tmp: tempfile::TempDir,
}

impl Drover {
    /// Like `up`, with `(from, to)` replaced in every file first.
    pub fn up(swarm: &Swarm, ns: &str, edits: &[(&str, &str)]) -> Drover {
        let tmp = tempfile::tempdir().unwrap();
        let served = tmp.path().join("served");
        let remote = bare(&served, "config.git");
        let daemon = GitDaemon::serve(&served);
        let work = TestRepo::init(&tmp.path().join("work"));
        let staging = support::repo_root().join("examples/repo/environments/staging");
        for entry in std::fs::read_dir(&staging).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            let text = std::fs::read_to_string(&path)
                .unwrap()
                .replace(
                    "cluster: local-staging",
                    &format!("cluster: swarm\n  namespace: {ns}"),
                )
                .replace("progressDeadline: 2m", "progressDeadline: 60s");
            let text = edits
                .iter()
                .fold(text, |text, (from, to)| text.replace(from, to));
            work.write(&format!("environments/staging/{name}"), &text);
        }
        work.write(
            "clusters/swarm.yaml",
            &format!(
                "apiVersion: drover.dev/v1alpha1\nkind: Cluster\nmetadata:\n  name: swarm\nspec:\n  engine: swarm\n  swarm:\n    endpoint: {}\n",
                swarm.host
            ),
        );
        work.commit("staging on a swarm");
        push(&work.dir, &remote);
        let state = tmp.path().join("state");
        let up = Running::start(
            &[
                "up",
                &daemon.url("config.git"),
                "--state-dir",
                state.to_str().unwrap(),
                "--poll",
                "1s",
            ],
            &[],
        );
        Drover {
            work,
            remote,
            up,
            state,
            ns: ns.to_owned(),
            host: swarm.host.clone(),
            _daemon: daemon,
            _tmp: tmp,
        }
    }

    /// Commits the working repository's changes and pushes them; the commit's id.
    pub fn commit(&self, message: &str) -> String {
        let id = self.work.commit(message);
        push(&self.work.dir, &self.remote);
        id
    }

    /// The swarm service of `service` in this test's stack.
    pub fn name(&self, service: &str) -> String {
        format!("{}_{service}", self.ns)
    }

    /// Waits for a line of `drover up` containing `text`.
    pub fn expect(&self, text: &str, timeout: Duration) -> String {
        self.up.expect_line(timeout, |l| l.contains(text))
    }

    /// `drover ARGS --state-dir STATE`: (succeeded, stdout).
    pub fn drover(&self, args: &[&str]) -> (bool, String) {
        let out = support::drover()
            .args(args)
            .args(["--state-dir", self.state.to_str().unwrap()])
            .output()
            .expect("drover runs");
        (out.status.success(), support::stdout(&out))
    }

    /// The remote's newest commit subject.
    pub fn remote_subject(&self) -> String {
        git(&self.remote, &["log", "-1", "--format=%s", "main"])
            .trim()
            .to_owned()
    }
}

impl Drop for Drover {
    /// Stops `drover up`, then removes the test's stack, so the next test has the
    /// swarm's capacity.
    fn drop(&mut self) {
        self.up.kill();
        let (ns, stack) = (
            &self.ns,
            format!("label=com.docker.stack.namespace={}", self.ns),
        );
        let script = format!(
            "docker service ls -q --filter {stack} | xargs -r docker service rm >/dev/null; \
             for _ in $(seq 100); do [ -z \"$(docker ps -q --filter name={ns}_)\" ] && break; sleep 0.1; done; \
             docker network ls -q --filter {stack} | xargs -r docker network rm >/dev/null; \
             docker secret ls -q --filter {stack} | xargs -r docker secret rm >/dev/null"
        );
        let _ = Command::new("bash")
            .args(["-c", &script])
            .env("DOCKER_HOST", &self.host)
            .status();
    }
}

fn push(work: &Path, remote: &Path) {
    git(work, &["push", "-q", remote.to_str().unwrap(), "main"]);
}

type Test = fn(&Swarm);

fn main() {
    support::run_shared(&cases::all(), Swarm::start, Swarm::stop);
}
