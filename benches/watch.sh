#!/usr/bin/env bash
# Benchmark: local commit -> new desired state, end to end through `drover watch`
# (ref watch, read the revision from Git, parse what changed, validate), median of
# 20 commits, on the example repo and on a generated repo of SERVICES services.
#
#   bash benches/watch.sh [SERVICES]
set -euo pipefail
cd "$(dirname "$0")/.."
services=${1:-10000}
cargo build --release --locked -q -p drover -p drover-testkit -p drover-bench
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

commit_all() {
  git -C "$1" init -q -b main
  git -C "$1" config user.name bench
  git -C "$1" config user.email bench@example.test
  git -C "$1" add -A
  git -C "$1" commit -q -m "first"
}

mkdir "$work/example" && cp -r examples/repo/. "$work/example/" && commit_all "$work/example"
echo "examples/repo (6 services):"
target/release/watch_latency target/release/drover "$work/example" 20

target/release/drover-genrepo "$work/big" --services "$services" --environments 10 >/dev/null
commit_all "$work/big"
echo "generated repo ($services services):"
target/release/watch_latency target/release/drover "$work/big" 20
