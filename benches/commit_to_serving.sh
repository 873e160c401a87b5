#!/usr/bin/env bash
# Benchmark: commit -> the new version serving through the proxy, end to end through
# `drover up` (ref watch, validate, apply, schedule, the agent replaces the instance,
# readiness passes, the proxy routes to it), median of 20 commits.
#
#   bash benches/commit_to_serving.sh [COMMITS]
#
# Target (issue: local engine): median < 1 s.
set -euo pipefail
cd "$(dirname "$0")/.."
commits=${1:-20}
cargo build --release --locked -q -p drover -p drover-bench
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
source benches/platform.sh
platform_repo "$work"
target/release/commit_to_serving target/release/drover "$work" "$commits"
