#!/usr/bin/env bash
# Benchmark: from the health check that makes an instance of a release fail beyond its
# threshold to the start of the release's rollback, through `drover up`, over ROUNDS bad
# releases (each reverted in Git by Drover before the next).
#
#   bash benches/rollback.sh [ROUNDS]
#
# Target (issue: rollouts and rollback): <= monitor period + 1 s (monitor is 1 s here).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
cargo build --release --locked -q -p drover -p drover-bench
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
source benches/platform.sh
platform_repo "$work"
target/release/rollback_latency target/release/drover "$work" "$rounds"
