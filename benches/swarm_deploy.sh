#!/usr/bin/env bash
# Benchmark: commit → every service of a 20-service environment updated on a real
# swarm (Debian's docker.io, tests/swarm/swarm.sh), against `docker stack deploy` of
# the equivalent compose file, side by side in one run on one swarm. Each round
# changes every service's image tag (1 replica each, parallelism 1, start-first,
# monitor 1s); "updated" is every service's update completed with its task running
# the new image, read from the Engine API every 50 ms. Drover follows a local repo
# (its ref watch sees the commit); `docker stack deploy` starts timing when the
# command is run, with `--resolve-image never` (Drover does not pin digests either,
# and no registry is reachable here: resolving would only add failed lookups).
#
#   bash benches/swarm_deploy.sh [SERVICES] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
services=${1:-20}
rounds=${2:-5}
cargo build --release --locked -q -p drover
bash tests/swarm/swarm.sh install
dir=$(mktemp -d)
cleanup() {
  [ -n "${up:-}" ] && kill "$up" 2>/dev/null && wait "$up" 2>/dev/null
  bash tests/swarm/swarm.sh down "$dir/swarm" >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT
eval "$(bash tests/swarm/swarm.sh up "$dir/swarm")"
bash tests/swarm/swarm.sh image "$dir/swarm" bench/web:1 >/dev/null
docker tag bench/web:1 bench/web:2

# The same services twice: a Drover config repo (stack `drover`) and a compose file
# (stack `compose`).
repo="$dir/repo"
mkdir -p "$repo/clusters" "$repo/environments/bench"
cat >"$repo/clusters/swarm.yaml" <<EOF
apiVersion: drover.dev/v1alpha1
kind: Cluster
metadata: {name: swarm}
spec:
  engine: swarm
  swarm: {endpoint: "$DOCKER_HOST"}
EOF
cat >"$repo/environments/bench/environment.yaml" <<'EOF'
apiVersion: drover.dev/v1alpha1
kind: Environment
metadata: {name: bench}
spec:
  cluster: swarm
  namespace: drover
EOF
compose() {
  echo 'version: "3.8"'
  echo 'services:'
  for i in $(seq -w 1 "$services"); do
    cat <<EOF
  svc$i:
    image: bench/web:$1
    deploy:
      replicas: 1
      update_config: {parallelism: 1, delay: 0s, order: start-first, monitor: 1s, failure_action: pause}
      restart_policy: {condition: any}
    stop_grace_period: 1s
EOF
  done
}
for i in $(seq -w 1 "$services"); do
  cat >"$repo/environments/bench/svc$i.yaml" <<EOF
apiVersion: drover.dev/v1alpha1
kind: Service
metadata: {name: svc$i}
spec:
  image: bench/web:1
  replicas: 1
  ports: [{name: http}]
  update: {parallelism: 1, delay: 0s, order: start-first, monitor: 1s, failureAction: pause}
EOF
done
git -C "$repo" init -q -b main && git -C "$repo" add -A && git -C "$repo" -c user.name=bench -c user.email=bench@example.invalid commit -qm v1

target/release/drover up "$repo" --state-dir "$dir/state" --listen 127.0.0.1:0 >"$dir/up.log" 2>&1 &
up=$!
compose 1 >"$dir/compose-1.yml"
compose 2 >"$dir/compose-2.yml"
docker stack deploy --resolve-image never -c "$dir/compose-1.yml" compose >/dev/null 2>&1

python3 - "$dir" "$services" "$rounds" "$up" <<'PY'
import json, os, socket, statistics, subprocess, sys, time

d, services, rounds, up = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
sock = os.path.join(d, "swarm", "docker.sock")

def api(path):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock)
    s.sendall(f"GET /v1.41{path} HTTP/1.0\r\nHost: docker\r\n\r\n".encode())
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    return json.loads(data.split(b"\r\n\r\n", 1)[1])

def updated(stack, tag):
    """Every service of `stack` runs `tag`, its update (if any) completed, 1/1 running."""
    filt = json.dumps({"label": [f"com.docker.stack.namespace={stack}"]})
    svcs = api(f"/services?status=true&filters={filt.replace(' ', '')}")
    if len(svcs) != services:
        return False
    for s in svcs:
        image = s["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"].split("@")[0]
        state = (s.get("UpdateStatus") or {}).get("State", "")
        if image != f"bench/web:{tag}" or state not in ("", "completed"):
            return False
        if s.get("ServiceStatus", {}).get("RunningTasks") != 1:
            return False
    return True

def wait(stack, tag, start, limit=300):
    while not updated(stack, tag):
        if time.monotonic() - start > limit:
            sys.exit(f"{stack} never ran bench/web:{tag}")
        time.sleep(0.05)
    return time.monotonic() - start

wait("drover", "1", time.monotonic())
wait("compose", "1", time.monotonic())
repo = os.path.join(d, "repo")
times = {"drover": [], "compose": []}
for r in range(rounds):
    old, new = ("1", "2") if r % 2 == 0 else ("2", "1")
    subprocess.run(f"sed -i 's#bench/web:{old}#bench/web:{new}#' {repo}/environments/bench/svc*.yaml", shell=True, check=True)
    start = time.monotonic()
    subprocess.run(["git", "-C", repo, "-c", "user.name=bench", "-c", "user.email=b@example.invalid",
                    "commit", "-qam", f"bench/web:{new}"], check=True)
    times["drover"].append(wait("drover", new, start))
    start = time.monotonic()
    subprocess.run(["docker", "stack", "deploy", "--resolve-image", "never", "-c", os.path.join(d, f"compose-{new}.yml"), "compose"],
                   check=True, capture_output=True)
    times["compose"].append(wait("compose", new, start))
rss = 0
with open(f"/proc/{up}/status") as f:
    for line in f:
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) // 1024
print(f"{services} services, {rounds} rounds, each service 1 replica (parallelism 1, start-first, monitor 1s)")
print(f"{'':34} {'median':>8} {'min':>8} {'max':>8}")
for name, label in [("drover", "Drover: commit → all updated"), ("compose", "docker stack deploy → all updated")]:
    t = times[name]
    print(f"{label:34} {statistics.median(t):7.2f}s {min(t):7.2f}s {max(t):7.2f}s")
print(f"drover up RSS after the rounds: {rss} MiB")
PY
