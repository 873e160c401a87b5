#!/usr/bin/env bash
# Benchmark: diff of two revisions of a generated 10,000-service config repo in which
# 1% of the services changed (their image version), release build.
#
#   bash benches/diff.sh [SERVICES]
#
# Measures (1) the cold CLI, `drover diff --from HEAD~1 --to HEAD` (reads, parses and
# validates both revisions, then diffs), with hyperfine; (2) the reconciler's case, a
# new revision arriving while the previous one is loaded (`revision_diff`).
set -euo pipefail
cd "$(dirname "$0")/.."
services=${1:-10000}
if ! command -v hyperfine >/dev/null; then
  apt-get update -qq && apt-get install -y -qq hyperfine >/dev/null
fi
cargo build --release --locked -q -p drover -p drover-testkit -p drover-bench
root=$PWD
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
repo=$work/repo
target/release/drover-genrepo "$repo" --services "$services" --environments 10 >/dev/null
git -C "$repo" init -q -b main
git -C "$repo" add -A
git -C "$repo" -c user.name=bench -c user.email=bench@example.test commit -q -m "revision 0"
target/release/drover-genrepo "$repo" --services "$services" --environments 10 --revision 1 >/dev/null
git -C "$repo" add -A
git -C "$repo" -c user.name=bench -c user.email=bench@example.test commit -q -m "revision 1: 1% of services changed"
git -C "$repo" diff --shortstat HEAD~1 HEAD

cd "$repo"
hyperfine --warmup 1 --runs 10 -N --ignore-failure \
  --command-name "drover diff, cold ($services services, 1% changed)" \
  "$root/target/release/drover diff --from HEAD~1 --to HEAD --format json"
cd "$root"
target/release/revision_diff "$repo" HEAD~1 HEAD 10
