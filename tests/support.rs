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

/// A command running the `drover` binary built for this test run.
pub fn drover() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_drover"));
    command.env_remove("NO_COLOR").env("RUST_BACKTRACE", "0");
    command
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
    std::env::var_os("DROVER_BLESS").is_some()
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
