//! Diff tests on the example repo and small edits of it.

use std::path::Path;

use drover_load::{SourceFile, load};

use super::*;

fn example() -> Vec<SourceFile> {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/repo"));
    drover_load::read_dir(root).unwrap()
}

fn edit(files: &[SourceFile], path: &str, from: &str, to: &str) -> Vec<SourceFile> {
    let mut files = files.to_vec();
    let file = files
        .iter_mut()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("no {path}"));
    assert!(file.text.contains(from), "{path} lacks {from:?}");
    file.text = file.text.replacen(from, to, 1);
    files
}

fn state(files: &[SourceFile]) -> State {
    let loaded = load(files);
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    normalize(&loaded.repo)
}

fn summary(old: &[SourceFile], new: &[SourceFile]) -> Vec<String> {
    diff(&state(old), &state(new), Options::default())
        .changes
        .into_iter()
        .flat_map(|c| c.summary)
        .collect()
}

#[test]
fn identical_trees_have_no_changes() {
    let files = example();
    assert!(diff(&state(&files), &state(&files), Options::default()).is_empty());
}

#[test]
fn spelling_out_a_default_is_not_a_change() {
    let files = example();
    let explicit = edit(
        &files,
        "environments/staging/worker.yaml",
        "  replicas: 1\n",
        "  replicas: 1\n  mode: replicated\n  strategy: rolling\n",
    );
    let omitted = edit(
        &files,
        "environments/staging/worker.yaml",
        "  replicas: 1\n",
        "",
    );
    let cpu_spelling = edit(
        &files,
        "environments/staging/api.yaml",
        "cpu: 250m, memory: 192Mi",
        "cpu: 0.25, memory: 192Mi",
    );
    for other in [explicit, omitted, cpu_spelling] {
        assert!(diff(&state(&files), &state(&other), Options::default()).is_empty());
    }
}

#[test]
fn replicas_images_and_probe_paths_read_as_sentences() {
    let files = example();
    let changed = edit(
        &files,
        "environments/staging/web.yaml",
        "replicas: 2",
        "replicas: 5",
    );
    let changed = edit(
        &changed,
        "environments/staging/api.yaml",
        "shop-api:v2.1.0",
        "shop-api:v2.2.0",
    );
    let changed = edit(
        &changed,
        "environments/staging/api.yaml",
        "path: /ready",
        "path: /health",
    );
    assert_eq!(
        summary(&files, &changed),
        [
            "api: image v2.1.0 → v2.2.0",
            "api: readiness probe path /ready → /health",
            "web: replicas 2 → 5"
        ]
    );
}

#[test]
fn quota_changes_show_the_difference() {
    let files = example();
    let changed = edit(
        &files,
        "environments/staging/quota.yaml",
        "requests: {cpu: 6, memory: 3Gi}",
        "requests: {cpu: 8, memory: 3Gi}",
    );
    assert_eq!(
        summary(&files, &changed),
        ["quota staging-quota: hard.requests.cpu 6 → 8 (+2)"]
    );
}

#[test]
fn secret_values_never_appear_only_their_fingerprints() {
    let files = example();
    let text = &files
        .iter()
        .find(|f| f.path == "environments/staging/secrets.yaml")
        .unwrap()
        .text;
    // The encrypted value as written, and another one in its place.
    let start = text.find("password: ").unwrap() + "password: ".len();
    let secret_value = &text[start..start + text[start..].find('\n').unwrap()];
    assert!(
        secret_value.starts_with("ENC[AES256_GCM,"),
        "{secret_value}"
    );
    let changed = edit(
        &files,
        "environments/staging/secrets.yaml",
        secret_value,
        "ENC[AES256_GCM,data:bmV3LWNpcGhlcnRleHQ=,iv:AAAA,tag:AAAA,type:str]",
    );
    let set = diff(&state(&files), &state(&changed), Options::default());
    let lines: Vec<String> = set.changes.iter().flat_map(|c| c.summary.clone()).collect();
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with("secret db-credentials: password changed (sha256:"),
        "{lines:?}"
    );
    let everything = format!(
        "{}{}",
        serde_json::to_string(&set).unwrap(),
        render::text(&set, false)
    );
    assert!(
        !everything.contains(secret_value) && !everything.contains("bmV3LWNpcGhlcnRleHQ"),
        "{everything}"
    );
}

#[test]
fn added_and_removed_objects_are_named() {
    let files = example();
    let mut more = files.clone();
    let worker = files
        .iter()
        .find(|f| f.path == "environments/staging/worker.yaml")
        .unwrap();
    more.push(SourceFile::new(
        "environments/staging/mailer.yaml",
        worker.text.replace("name: worker", "name: mailer"),
    ));
    let fewer: Vec<SourceFile> = files
        .iter()
        .filter(|f| f.path != "environments/staging/worker.yaml")
        .cloned()
        .collect();
    assert_eq!(
        summary(&files, &more),
        ["mailer: added (replicas 1, v2.1.0)"]
    );
    assert_eq!(summary(&files, &fewer), ["worker: removed"]);
}

#[test]
fn autoscaler_owned_replicas_are_not_drift() {
    let files = example();
    let scaled = edit(
        &files,
        "environments/staging/api.yaml",
        "replicas: 2",
        "replicas: 4",
    );
    let options = Options {
        ignore_autoscaled_replicas: true,
    };
    assert!(diff(&state(&files), &state(&scaled), options).is_empty());
    // A service without autoscaling: replicas are the user's.
    let web = edit(
        &files,
        "environments/staging/web.yaml",
        "replicas: 2",
        "replicas: 4",
    );
    assert!(!diff(&state(&files), &state(&web), options).is_empty());
}

#[test]
fn the_patch_turns_the_old_object_into_the_new_one() {
    let files = example();
    let changed = edit(
        &files,
        "environments/production/web.yaml",
        "delay: 1s",
        "delay: 5s",
    );
    let (old, new) = (state(&files), state(&changed));
    let set = diff(&old, &new, Options::default());
    let change = &set.changes[0];
    let mut value = old[&change.key].clone();
    json_patch::patch(&mut value, &change.patch).unwrap();
    assert_eq!(value, new[&change.key]);
    assert!(
        change.diff.contains("-    delay: 1s\n+    delay: 5s\n"),
        "{}",
        change.diff
    );
}

#[test]
fn diffing_repos_loaded_with_one_cache_skips_unchanged_files_and_agrees_with_a_full_diff() {
    // Git blob ids let the cache recognise unchanged files.
    let with_ids = |files: Vec<SourceFile>| -> Vec<SourceFile> {
        files
            .into_iter()
            .map(|mut f| {
                f.id = Some(fingerprint(&f.text).into());
                f
            })
            .collect()
    };
    let files = with_ids(example());
    let changed = with_ids(edit(
        &files,
        "environments/staging/web.yaml",
        "replicas: 2",
        "replicas: 5",
    ));
    let mut cache = drover_load::DocumentCache::default();
    let old = drover_load::load_cached(&files, &mut cache).repo;
    let new = drover_load::load_cached(&changed, &mut cache).repo;
    // Only web.yaml was parsed again: every other service shares its parse.
    let shared = old.environments[1]
        .services
        .iter()
        .zip(&new.environments[1].services)
        .filter(|(a, b)| std::sync::Arc::ptr_eq(&a.source, &b.source))
        .count();
    assert_eq!(shared, 2);
    let fast = diff_repos(&old, &new, Options::default());
    let full = diff(&normalize(&old), &normalize(&new), Options::default());
    assert_eq!(
        serde_json::to_value(&fast).unwrap(),
        serde_json::to_value(&full).unwrap()
    );
    assert_eq!(fast.changes.len(), 1);
}

#[test]
fn a_preview_fits_one_pull_request_comment_and_says_what_it_left_out() {
    let old = example();
    let mut new = edit(
        &old,
        "environments/staging/web.yaml",
        "  command:",
        &format!(
            "  env:\n{}  command:",
            (0..3000)
                .map(|i| format!("    VAR_{i}: value-{i}\n"))
                .collect::<String>()
        ),
    );
    new = edit(
        &new,
        "environments/production/web.yaml",
        "  command:",
        "  env: {A: b}\n  command:",
    );
    let set = diff(&state(&old), &state(&new), Options::default());
    let diagnostics: Vec<drover_diagnostics::Diagnostic> = (0..200_000)
        .map(|i| {
            drover_diagnostics::Diagnostic::new(
                drover_diagnostics::Code::UnknownField,
                drover_diagnostics::Location {
                    file: "environments/staging/x.yaml".into(),
                    line: i + 1,
                    column: 1,
                },
                "unknown field `x`",
            )
        })
        .collect();
    let preview = render::Preview {
        base: "a".into(),
        head: "b".into(),
        diagnostics: &diagnostics,
    };
    let text = render::markdown(&set, &preview);
    assert!(
        text.chars().count() <= render::PREVIEW_LIMIT,
        "{}",
        text.len()
    );
    let note = text.lines().last().unwrap();
    assert!(note.contains("Cut to fit a pull-request comment"), "{note}");
    assert!(note.contains("of 200000 findings"), "{note}");
    assert!(text.contains("more lines left out"));
    // Every fence that opens closes: the comment renders.
    assert_eq!(
        text.matches("<details>").count(),
        text.matches("</details>").count()
    );
    // A small preview is whole.
    let one = edit(
        &old,
        "environments/production/web.yaml",
        "  command:",
        "  env: {A: b}\n  command:",
    );
    let small = diff(&state(&old), &state(&one), Options::default());
    let small = render::markdown(&small, &render::Preview::default());
    assert!(
        !small.contains("Cut to fit") && !small.contains("left out"),
        "{small}"
    );
}
