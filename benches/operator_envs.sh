#!/usr/bin/env bash
# Benchmark: `drover operator` driving many Environments on a real API server
# (tests/k8s): push → every environment applied and every Environment resource's
# status written, one environment's change among them all, and the operator's RSS.
# No peer runs here: neither Flux's nor Argo CD's controllers are packaged for Debian,
# PyPI or npm.
#
#   bash benches/operator_envs.sh [ENVIRONMENTS] [SERVICES_EACH] [COMMITS]
set -euo pipefail
cd "$(dirname "$0")/.."
envs=${1:-100}
each=${2:-2}
commits=${3:-5}
cargo build --release --locked -q -p drover -p drover-bench
bin=$(bash tests/k8s/build.sh | tail -1)
state=$(mktemp -d)
trap 'bash tests/k8s/cluster.sh down "$state/cluster" >/dev/null 2>&1; rm -rf "$state"' EXIT
kubeconfig=$(bash tests/k8s/cluster.sh up "$bin" "$state/cluster" 17200 | tail -1)
target/release/operator_envs target/release/drover "$kubeconfig" "$envs" "$each" "$commits"
