//! Golden files: rendered output compared with a checked-in file, or the file
//! rewritten when `DROVER_BLESS` is set (one command regenerates them all).

use std::path::Path;

/// Whether goldens are being regenerated (`DROVER_BLESS=1`).
pub fn blessing() -> bool {
    std::env::var_os("DROVER_BLESS").is_some()
}

/// Panics, showing the first differing lines, unless `actual` is the golden file at
/// `path`; rewrites the file instead when blessing. `regenerate` is the command that
/// does (`DROVER_BLESS=1 cargo test -p CRATE`).
pub fn assert_golden(path: &Path, actual: &str, regenerate: &str) {
    if blessing() {
        std::fs::write(path, actual).expect("the golden file is written");
        return;
    }
    let want = std::fs::read_to_string(path)
        .unwrap_or_else(|_| panic!("{} is missing: run {regenerate}", path.display()));
    assert!(
        want == actual,
        "{} differs from the rendering; if the change is meant, run {regenerate}:\n{}",
        path.display(),
        first_differences(&want, actual)
    );
}

fn first_differences(want: &str, got: &str) -> String {
    let (w, g): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
    let mut out: Vec<String> = (0..w.len().max(g.len()))
        .filter(|&i| w.get(i) != g.get(i))
        .take(10)
        .map(|i| {
            format!(
                "line {}: want `{}`\n         got  `{}`",
                i + 1,
                w.get(i).unwrap_or(&"<end>"),
                g.get(i).unwrap_or(&"<end>")
            )
        })
        .collect();
    if out.is_empty() {
        out.push("(only line endings differ)".into());
    }
    out.join("\n")
}
