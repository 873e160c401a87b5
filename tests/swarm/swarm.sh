#!/usr/bin/env bash
# A real Docker Engine in swarm mode on this machine, from Debian packages only.
#
#   swarm.sh install                 apt-get install docker.io busybox-static (root)
#   swarm.sh up STATEDIR             start dockerd under STATEDIR, `swarm init`; prints `export DOCKER_HOST=...`
#   swarm.sh image STATEDIR NAME:TAG build a registry-free image: FROM scratch + busybox httpd on :8080
#   swarm.sh app STATEDIR DROVER TAG... an image of `drover example-app` (the DROVER binary,
#                                    its shared libraries, busybox for health checks), tagged TAG...
#   swarm.sh down STATEDIR           remove services, leave the swarm, stop dockerd (by its pid file)
#
# Copied from the workplace's shared/swarm (with `app` added), so tests and CI start
# the swarm where shared/ is absent.
#
# No image registry is reachable here: build images FROM scratch (see `image`).
# The kernel has no IPVS, so the ingress routing mesh and VIPs do not work: publish
# ports with `mode=host` and use `endpoint_mode: dnsrr`. Overlay networks and
# DNS (tasks.<service>) work.
set -euo pipefail
cmd=${1:?usage: swarm.sh install|up|image|down ...}

need() { command -v "$1" >/dev/null 2>&1; }

case "$cmd" in
install)
  if ! need dockerd || ! [ -x /bin/busybox ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io busybox-static >/dev/null
  fi
  ;;
up)
  dir=$(realpath -m "${2:?STATEDIR}"); mkdir -p "$dir"
  export DOCKER_HOST="unix://$dir/docker.sock"
  if ! docker info >/dev/null 2>&1; then
    dockerd --host "$DOCKER_HOST" --data-root "$dir/data" --exec-root "$dir/exec" \
      --pidfile "$dir/docker.pid" >"$dir/dockerd.log" 2>&1 &
    for _ in $(seq 300); do docker info >/dev/null 2>&1 && break; sleep 0.1; done
    docker info >/dev/null 2>&1 || { echo "dockerd did not start; see $dir/dockerd.log" >&2; exit 1; }
  fi
  if [ "$(docker info --format '{{.Swarm.LocalNodeState}}')" != active ]; then
    docker swarm init --advertise-addr 127.0.0.1 >/dev/null
  fi
  echo "export DOCKER_HOST=$DOCKER_HOST"
  ;;
image)
  dir=$(realpath -m "${2:?STATEDIR}"); tag=${3:?NAME:TAG}
  export DOCKER_HOST="unix://$dir/docker.sock"
  ctx=$(mktemp -d); trap 'rm -rf "$ctx"' EXIT
  mkdir -p "$ctx/www"; cp /bin/busybox "$ctx/"; echo "$tag" > "$ctx/www/index.html"
  cat > "$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY busybox /bin/busybox
COPY www /www
STOPSIGNAL SIGKILL
ENTRYPOINT ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]
DOCKERFILE
  docker build -q -t "$tag" "$ctx" >/dev/null
  echo "$tag"
  ;;
app)
  dir=$(realpath -m "${2:?STATEDIR}"); drover=${3:?DROVER}; shift 3
  export DOCKER_HOST="unix://$dir/docker.sock"
  ctx=$(mktemp -d); trap 'rm -rf "$ctx"' EXIT
  mkdir -p "$ctx/root/bin" "$ctx/root/tmp"
  cp "$drover" "$ctx/root/bin/drover"
  cp /bin/busybox "$ctx/root/bin/busybox"
  for tool in sh wget nc cat ls; do ln -s busybox "$ctx/root/bin/$tool"; done
  # The binary's shared libraries and loader, at the paths it looks for them.
  ldd "$drover" | grep -o '/[^ ]*' | while read -r lib; do
    mkdir -p "$ctx/root$(dirname "$lib")"; cp -L "$lib" "$ctx/root$lib"
  done
  cat > "$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY root /
ENV PATH=/bin HOST=0.0.0.0
STOPSIGNAL SIGTERM
ENTRYPOINT ["/bin/drover", "example-app"]
DOCKERFILE
  docker build -q -t drover-example-app:latest "$ctx" >/dev/null
  for tag in "$@"; do docker tag drover-example-app:latest "$tag"; done
  echo "$@"
  ;;
down)
  dir=$(realpath -m "${2:?STATEDIR}")
  export DOCKER_HOST="unix://$dir/docker.sock"
  if docker info >/dev/null 2>&1; then
    docker service ls -q | xargs -r docker service rm >/dev/null 2>&1 || true
    docker swarm leave --force >/dev/null 2>&1 || true
  fi
  if [ -f "$dir/docker.pid" ]; then
    pid=$(cat "$dir/docker.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  ;;
*) echo "unknown command: $cmd" >&2; exit 2 ;;
esac
