#!/usr/bin/env bash
# Benchmark: `drover validate` on a generated config repo (default 10,000 services in
# 10 environments), release build, timed with hyperfine; also reports peak memory.
#
#   bash benches/validate.sh [SERVICES]
#
# Target (issue: Foundation): < 1 s for 10,000 services. Results go in BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
services=${1:-10000}

if ! command -v hyperfine >/dev/null; then
  apt-get update -qq && apt-get install -y -qq hyperfine >/dev/null
fi
cargo build --release --locked -q -p drover -p drover-testkit

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
target/release/drover-genrepo "$work/repo" --services "$services" --environments 10
du -sh "$work/repo" | awk '{print "repo size: " $1}'
target/release/drover validate "$work/repo" | tail -n 1

hyperfine --warmup 2 --runs 15 --export-markdown "$work/result.md" \
  --command-name "drover validate ($services services)" \
  "target/release/drover validate $work/repo"
cat "$work/result.md"
/usr/bin/time -v target/release/drover validate "$work/repo" 2>&1 >/dev/null \
  | awk -F': ' '/Maximum resident/ {printf "peak RSS: %.0f MiB\n", $2/1024}'
