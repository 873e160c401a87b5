#!/usr/bin/env bash
# Benchmark: the control plane at rest with 100 instances — CPU (share of one core)
# and memory (RSS) of the `drover up` process over a quiet minute, after every
# instance is ready. Agents and the proxy processes are reported separately.
#
#   bash benches/idle.sh [INSTANCES] [SECONDS]
#   WATCHED=1 bash benches/idle.sh   # … with the dashboard open and a Prometheus
#                                    # scrape every 15 s, as a watched platform runs
#
# Target (issue: local engine): control plane idle CPU < 2% of a core, RSS < 60 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
instances=${1:-100}
seconds=${2:-60}
cargo build --release --locked -q -p drover
drover=$PWD/target/release/drover
work=$(mktemp -d)
up=""
watchers=""
cleanup() {
  for w in $watchers; do kill "$w" 2>/dev/null || true; done
  if [ -n "$up" ]; then kill -INT "$up" 2>/dev/null || true; wait "$up" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

repo=$work/repo
mkdir -p "$repo/clusters" "$repo/environments/dev"
cat > "$repo/clusters/local.yaml" <<YAML
apiVersion: drover.dev/v1alpha1
kind: Cluster
metadata: {name: local}
spec:
  local:
    nodes:
$(for n in 1 2 3 4; do printf '      - {name: node-%s, capacity: {cpu: 32, memory: 32Gi}}\n' "$n"; done)
    proxy:
      listeners: [{name: http, port: 0}]
YAML
cat > "$repo/environments/dev/environment.yaml" <<YAML
apiVersion: drover.dev/v1alpha1
kind: Environment
metadata: {name: dev}
spec: {cluster: local}
YAML
services=$(( (instances + 9) / 10 ))
for s in $(seq "$services"); do
  replicas=$(( instances - (s - 1) * 10 )); [ "$replicas" -gt 10 ] && replicas=10
  cat > "$repo/environments/dev/svc-$s.yaml" <<YAML
apiVersion: drover.dev/v1alpha1
kind: Service
metadata: {name: svc-$s}
spec:
  version: v1
  command: [drover, example-app]
  replicas: $replicas
  ports: [{name: http}]
  resources:
    requests: {cpu: 10m, memory: 16Mi}
    limits: {memory: 16Mi}
  readinessProbe: {httpGet: {path: /ready, port: http}}
  livenessProbe: {httpGet: {path: /healthz, port: http}}
  routes: [{host: svc-$s.dev.localhost}]
YAML
done
git -C "$repo" init -q -b main
git -C "$repo" -c user.name=bench -c user.email=bench@example.test add -A
git -C "$repo" -c user.name=bench -c user.email=bench@example.test commit -q -m first

"$drover" up "$repo" --state-dir "$work/state" > "$work/up.log" 2>&1 &
up=$!
ready() {
  "$drover" status -o json --state-dir "$work/state" 2>/dev/null \
    | python3 -c 'import json,sys; s=json.load(sys.stdin); print(sum(1 for i in s["instances"] if i["ready"]))' 2>/dev/null || echo 0
}
for _ in $(seq 600); do [ "$(ready)" -ge "$instances" ] && break; sleep 0.5; done
echo "$(ready) of $instances instances ready; settling 5 s, then measuring ${seconds} s"
if [ "${WATCHED:-0}" = 1 ]; then
  api=$(cat "$work/state/api"); token=$(cat "$work/state/api-token")
  # An open dashboard tab holds one status stream (a status after every pass) …
  curl -sN -H "Authorization: Bearer $token" "$api/api/v1/stream" > "$work/stream" &
  watchers="$!"
  # … and Prometheus scrapes /metrics every 15 s.
  ( while true; do curl -s -H "Authorization: Bearer $token" "$api/metrics" > "$work/metrics"; sleep 15; done ) &
  watchers="$watchers $!"
  echo "watched: a dashboard stream and a scrape every 15 s"
fi
sleep 5
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
agents=$(pgrep -f "drover agent .*$work/state" | tr '\n' ' ')
proxies=$(pgrep -f "drover proxy .*$work/state" | tr '\n' ' ')
before=$(cpu "$up"); agents_before=0; proxies_before=0
for a in $agents; do agents_before=$((agents_before + $(cpu "$a"))); done
for p in $proxies; do proxies_before=$((proxies_before + $(cpu "$p"))); done
sleep "$seconds"
after=$(cpu "$up"); agents_after=0; proxies_after=0
for a in $agents; do agents_after=$((agents_after + $(cpu "$a"))); done
for p in $proxies; do proxies_after=$((proxies_after + $(cpu "$p"))); done
proxies_rss=0
for p in $proxies; do proxies_rss=$((proxies_rss + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status"))); done
rss=$(awk '/^VmRSS/ {print $2}' "/proc/$up/status")
hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$up/status")
agents_rss=0
for a in $agents; do agents_rss=$((agents_rss + $(awk '/^VmRSS/ {print $2}' "/proc/$a/status"))); done
python3 - "$before" "$after" "$ticks" "$seconds" "$rss" "$hwm" "$agents_before" "$agents_after" "$agents_rss" "$(echo $agents | wc -w)" "$proxies_before" "$proxies_after" "$proxies_rss" "$(echo $proxies | wc -w)" <<'PY'
import sys
b, a, t, s, rss, hwm, ab, aa, arss, n, pb, pa, prss, pn = map(float, sys.argv[1:])
print(f"control plane (drover up): CPU {100 * (a - b) / t / s:.2f}% of a core, RSS {rss / 1024:.1f} MiB (peak {hwm / 1024:.1f} MiB)")
print(f"{int(n)} agents together: CPU {100 * (aa - ab) / t / s:.2f}% of a core, RSS {arss / 1024:.1f} MiB")
print(f"{int(pn)} proxy process(es): CPU {100 * (pa - pb) / t / s:.2f}% of a core, RSS {prss / 1024:.1f} MiB")
PY
echo "instances that turned unready during the run: $(grep -c 'is not ready' "$work/up.log" || true)"
if [ "${WATCHED:-0}" = 1 ]; then
  echo "statuses streamed: $(grep -c '^event: status' "$work/stream"); metrics lines in the last scrape: $(wc -l < "$work/metrics")"
fi
grep 'is not ready' "$work/up.log" | head -3 || true
