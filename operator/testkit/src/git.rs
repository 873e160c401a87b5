//! Real Git repositories and a real `git daemon` for tests: commits are made with the
//! `git` command, exactly as users make them.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Runs git in `dir` with a fixed identity and date and no user or system config, and returns
/// its standard output. Panics with git's own message on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    git_with(dir, args, &[])
}

/// [`git`], with environment variables that add to or override its fixed ones (another
/// author, `GNUPGHOME` for `commit -S`).
pub fn git_with(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Test Author")
        .env("GIT_AUTHOR_EMAIL", "author@example.test")
        .env("GIT_COMMITTER_NAME", "Test Author")
        .env("GIT_COMMITTER_EMAIL", "author@example.test")
        // Fixed dates make commit ids a function of content: goldens can show them.
        .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
        .envs(env.iter().copied())
        .output()
        .expect("git runs");
    assert!(
        output.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// The environment of a commit by `email` (author and committer).
pub fn author(email: &str) -> [(&str, &str); 4] {
    [
        ("GIT_AUTHOR_NAME", "Release"),
        ("GIT_AUTHOR_EMAIL", email),
        ("GIT_COMMITTER_NAME", "Release"),
        ("GIT_COMMITTER_EMAIL", email),
    ]
}

/// Runs the real `gpg` on its own home directory, non-interactively and without a
/// passphrase, with `input` on its standard input; returns its standard output.
pub fn gpg(home: &Path, args: &[&str], input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("gpg")
        .arg("--homedir")
        .arg(home)
        .args([
            "--batch",
            "--quiet",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
        ])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gpg runs (Debian's gnupg; .ci/install-deps installs it)");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(input)
        .expect("gpg reads its input");
    let out = child.wait_with_output().expect("gpg finishes");
    assert!(
        out.status.success(),
        "gpg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The example config repo of this checkout (`examples/repo`).
pub fn example_repo() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/repo")).to_owned()
}

/// A working repository with a `main` branch.
#[derive(Debug)]
pub struct TestRepo {
    pub dir: PathBuf,
}

impl TestRepo {
    /// `git init` in `dir` (created if needed).
    pub fn init(dir: &Path) -> TestRepo {
        std::fs::create_dir_all(dir).expect("repo dir");
        git(dir, &["init", "-q", "-b", "main"]);
        TestRepo {
            dir: dir.to_owned(),
        }
    }

    /// A repository holding `examples/repo`, committed once as `message`; returns the
    /// repository and that commit's id.
    pub fn with_example(dir: &Path, message: &str) -> (TestRepo, String) {
        let repo = TestRepo::init(dir);
        repo.copy_from(&example_repo());
        let id = repo.commit(message);
        (repo, id)
    }

    /// Writes a file (creating folders).
    pub fn write(&self, path: &str, text: &str) -> &Self {
        let path = self.dir.join(path);
        std::fs::create_dir_all(path.parent().expect("file in a folder")).expect("folders");
        std::fs::write(path, text).expect("file written");
        self
    }

    /// Copies a folder's files into the repo (for example `examples/repo`).
    pub fn copy_from(&self, from: &Path) -> &Self {
        copy_dir(from, &self.dir);
        self
    }

    /// Replaces the first occurrence of `from` with `to` in a file.
    pub fn edit(&self, path: &str, from: &str, to: &str) -> &Self {
        let full = self.dir.join(path);
        let text = std::fs::read_to_string(&full).expect("file to edit exists");
        assert!(text.contains(from), "{path} does not contain {from:?}");
        std::fs::write(full, text.replacen(from, to, 1)).expect("file written");
        self
    }

    /// Stages everything and commits; returns the new commit id.
    pub fn commit(&self, message: &str) -> String {
        git(&self.dir, &["add", "-A"]);
        git(&self.dir, &["commit", "-q", "--allow-empty", "-m", message]);
        git(&self.dir, &["rev-parse", "HEAD"])
    }
}

/// Copies a folder's files, recursively, creating `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("target folder");
    for entry in std::fs::read_dir(from).expect("source folder") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// A `git daemon` serving every repository under a folder on 127.0.0.1, stopped when
/// dropped. Pushes are enabled.
#[derive(Debug)]
pub struct GitDaemon {
    child: Child,
    pub port: u16,
    pub base: PathBuf,
}

impl GitDaemon {
    /// Serves `base` on a free loopback port and waits until it accepts connections.
    pub fn serve(base: &Path) -> GitDaemon {
        // git daemon cannot report an ephemeral port, so reserve one and hand it over.
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("addr")
            .port();
        let child = Command::new("git")
            .args([
                "daemon",
                "--reuseaddr",
                "--listen=127.0.0.1",
                "--export-all",
                "--enable=receive-pack",
                "--informative-errors",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon starts");
        let daemon = GitDaemon {
            child,
            port,
            base: base.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "git daemon did not start listening"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon
    }

    /// The `git://` URL of a repository under the base folder.
    pub fn url(&self, name: &str) -> String {
        format!("git://127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bare remote served by `git daemon`, and a working repository holding the example
/// repo, committed and pushed to it.
#[derive(Debug)]
pub struct ServedExample {
    pub daemon: GitDaemon,
    pub work: TestRepo,
    pub remote: PathBuf,
    /// The first commit's id.
    pub first: String,
}

impl ServedExample {
    /// Sets it all up under `dir`.
    pub fn new(dir: &Path) -> ServedExample {
        let served = dir.join("served");
        let remote = bare(&served, "config.git");
        let daemon = GitDaemon::serve(&served);
        let (work, first) = TestRepo::with_example(&dir.join("work"), "first");
        let served = ServedExample {
            daemon,
            work,
            remote,
            first,
        };
        served.push();
        served
    }

    /// The remote's `git://` URL.
    pub fn url(&self) -> String {
        self.daemon.url("config.git")
    }

    /// Pushes the working repository's `main` to the remote.
    pub fn push(&self) {
        git(
            &self.work.dir,
            &[
                "push",
                "-q",
                self.remote.to_str().expect("UTF-8 path"),
                "main",
            ],
        );
    }
}

/// A bare repository under `base`, for pushing to.
pub fn bare(base: &Path, name: &str) -> PathBuf {
    let dir = base.join(name);
    std::fs::create_dir_all(&dir).expect("bare dir");
    git(&dir, &["init", "-q", "--bare", "-b", "main"]);
    dir
}
