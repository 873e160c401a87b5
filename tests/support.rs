//! What every end-to-end test needs: the binary, the repository root, golden files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root exists")
}

/// The age identity the example repos' secrets are encrypted for.
pub fn example_key() -> PathBuf {
    repo_root().join("examples/keys/age.txt")
}

/// A command running the `drover` binary built for this test run, holding the
/// example key (as an operator's control plane holds its own).
pub fn drover() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_drover"));
    command
        .env_remove("NO_COLOR")
        .env_remove("SOPS_AGE_KEY")
        .env("RUST_BACKTRACE", "0")
        .env("SOPS_AGE_KEY_FILE", example_key());
    command
}

/// Changes a value of an encrypted Secret file in `dir` as people do: `drover secret
/// edit` holding `key`, with an editor that replaces `from` by `to`.
pub fn edit_secret(dir: &Path, file: &str, from: &str, to: &str, key: &Path) {
    let edited = drover()
        .args(["secret", "edit", file])
        .env("SOPS_AGE_KEY_FILE", key)
        .env("EDITOR", format!("sed -i s/{from}/{to}/"))
        .current_dir(dir)
        .output()
        .expect("drover secret edit runs");
    assert!(
        edited.status.success(),
        "{}",
        String::from_utf8_lossy(&edited.stderr)
    );
}

/// `sha256:HEX` of `text`, as the example app's `/received` shows what it was given.
pub fn sha256_hex(text: &str) -> String {
    use sha2::Digest as _;
    format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(text.as_bytes()))
    )
}

/// Runs `drover ARGS` in `dir` and returns its output.
pub fn run_in(dir: &Path, args: &[&str]) -> Output {
    drover()
        .args(args)
        .current_dir(dir)
        .output()
        .expect("drover runs")
}

/// Standard output as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8")
}

/// True when golden files should be rewritten instead of compared.
pub fn blessing() -> bool {
    drover_testkit::golden::blessing()
}

/// Compares `actual` with the golden file at `path`, or rewrites it when blessing.
/// Returns a description of the mismatch, if any, so callers can report them all.
pub fn golden(path: &Path, actual: &str) -> Option<String> {
    if blessing() {
        std::fs::write(path, actual).expect("golden file is writable");
        return None;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_default();
    (expected != actual).then(|| {
        format!(
            "{}\n--- expected\n{expected}--- actual\n{actual}",
            path.display()
        )
    })
}

/// A `drover` process running in the background, its standard output read line by
/// line. Killed when dropped, so no test leaves a process behind.
pub struct Running {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Running {
    /// Starts `drover ARGS` with extra environment variables.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Running {
        use std::io::BufRead;
        let mut command = drover();
        command
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("drover starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running { child, lines }
    }

    /// The next line that satisfies `wanted`, waiting at most `timeout`; lines before
    /// it are skipped. Panics naming what was seen instead.
    pub fn expect_line(
        &self,
        timeout: std::time::Duration,
        wanted: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = std::time::Instant::now() + timeout;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if wanted(&line) => return line,
                Ok(line) => seen.push(line),
                Err(_) => break,
            }
        }
        panic!("no expected line within {timeout:?}; saw {seen:#?}");
    }

    /// Every line printed since the last look, for a failure's message.
    #[allow(dead_code, reason = "used by tests/kubernetes.rs, not by every binary")]
    pub fn printed(&self) -> String {
        self.lines.try_iter().collect::<Vec<_>>().join("\n")
    }

    /// Asserts that no line satisfying `unwanted` arrives within `window`.
    pub fn expect_quiet(&self, window: std::time::Duration, unwanted: impl Fn(&str) -> bool) {
        let deadline = std::time::Instant::now() + window;
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            if let Ok(line) = self.lines.recv_timeout(left) {
                assert!(!unwanted(&line), "unexpected line: {line}");
            }
        }
    }
}

impl Running {
    /// Kills the process now (what dropping it does), and waits for it.
    #[allow(dead_code, reason = "used by tests/swarm.rs, not by every binary")]
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `timeout` for the process to exit, and returns its exit code.
    pub fn wait_exit(&mut self, timeout: std::time::Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("process status") {
                return status.code();
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends one HTTP/1.1 request to `addr` (on 127.0.0.1) and returns the status code and
/// body.
pub fn http(
    method: &str,
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    try_http(method, addr, path, headers, body).expect("an HTTP answer")
}

/// [`http`], with a connection or protocol failure as an error instead of a panic.
pub fn try_http(
    method: &str,
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        request.push_str(&format!("Host: {addr}\r\n"));
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    stream.write_all(body)?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line in {response:?}")))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// `http("POST", …)`.
pub fn http_post(addr: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    http("POST", addr, path, headers, body)
}

/// `http("GET", …)` without headers.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    http("GET", addr, path, &[], b"")
}

/// A port on 127.0.0.1 free a moment ago, for a program that cannot report the port
/// it was given by 0.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A named test against a shared `T`.
#[allow(dead_code, reason = "used by the binaries with their own harness")]
pub type SharedTest<'a, T> = (&'a str, fn(&T));

/// The harness of a test binary that shares one costly environment (a control plane, a
/// swarm) among its tests: the tests whose names contain an argument (all, without
/// arguments) run one after another against what `start` made, each caught if it
/// panics; `stop` runs after the last whatever happened, and the binary exits 1 if
/// any failed. Prints libtest's summary line, which .ci/test totals.
#[allow(dead_code, reason = "used by the binaries with their own harness")]
pub fn run_shared<T>(
    tests: &[SharedTest<'_, T>],
    start: impl FnOnce() -> T,
    stop: impl FnOnce(&T),
) {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let chosen: Vec<_> = tests
        .iter()
        .filter(|(n, _)| filter.is_empty() || filter.iter().any(|f| n.contains(f.as_str())))
        .collect();
    if chosen.is_empty() {
        println!("test result: ok. 0 passed; 0 failed");
        return;
    }
    let shared = start();
    let mut failed = 0;
    for (name, test) in &chosen {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| test(&shared)));
        println!(
            "test {name} ... {}",
            if result.is_ok() { "ok" } else { "FAILED" }
        );
        failed += usize::from(result.is_err());
    }
    stop(&shared);
    println!(
        "test result: {}. {} passed; {failed} failed",
        if failed == 0 { "ok" } else { "FAILED" },
        chosen.len() - failed
    );
    if failed > 0 {
        std::process::exit(1);
    }
}
