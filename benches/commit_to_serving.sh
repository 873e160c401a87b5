#!/usr/bin/env bash
# Benchmark: commit -> the new version serving through the proxy, end to end through
# `drover up` (ref watch, validate, apply, schedule, the agent replaces the instance,
# readiness passes, the proxy routes to it), median of 20 commits.
#
#   bash benches/commit_to_serving.sh [COMMITS]
#   BASELINE=path/to/other/drover bash benches/commit_to_serving.sh [COMMITS] [ROUNDS]
#
# With BASELINE, the same measurement runs with that binary too, alternating rounds
# (this build, the baseline, …), each on a fresh copy of the repo.
#
# Target (issue: local engine): median < 1 s.
set -euo pipefail
cd "$(dirname "$0")/.."
commits=${1:-20}
cargo build --release --locked -q -p drover -p drover-bench
rounds=${2:-1}
source benches/platform.sh
run() {
  local work
  work=$(mktemp -d)
  platform_repo "$work"
  echo "== $1"
  target/release/commit_to_serving "$1" "$work" "$commits"
  rm -rf "$work"
}
for _ in $(seq "$rounds"); do
  run target/release/drover
  if [ -n "${BASELINE:-}" ]; then run "$BASELINE"; fi
done
