#!/usr/bin/env bash
# Benchmark: commit -> every object of an environment applied on Kubernetes, through
# the real `drover up` against a real API server (tests/k8s), and Drover's memory while
# it drives that environment; beside it in the same run, `kubectl apply --server-side`
# of the same objects (the peer).
#
#   bash benches/kube_apply.sh [SERVICES] [COMMITS]
#
# Targets (issue 12): 100 services applied < 2 s; RSS with 1,000 services < 100 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
services=${1:-100}
commits=${2:-5}
cargo build --release --locked -q -p drover -p drover-bench
bin=$(bash tests/k8s/build.sh | tail -1)
state=$(mktemp -d)
trap 'bash tests/k8s/cluster.sh down "$state/cluster" >/dev/null 2>&1; rm -rf "$state"' EXIT
kubeconfig=$(bash tests/k8s/cluster.sh up "$bin" "$state/cluster" 17100 | tail -1)
target/release/kube_apply target/release/drover "$kubeconfig" "$services" "$commits"
