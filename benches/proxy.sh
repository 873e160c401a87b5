#!/usr/bin/env bash
# Benchmark: Drover's proxy and nginx side by side, in front of the same backend on
# loopback, measured with wrk at 64 connections; runs alternate (drover, nginx, …).
#
#   bash benches/proxy.sh [SECONDS_PER_RUN] [ROUNDS]
#
# Target (issue: local engine): requests/s >= 1.0x nginx, with p99 latency reported.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
rounds=${2:-2}
for pkg in nginx wrk; do
  if ! dpkg -s "$pkg" >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx wrk >/dev/null
    break
  fi
done
cargo build --release --locked -q -p drover-bench

work=$(mktemp -d)
target/release/proxy_server backend > "$work/backend" &
backend_pid=$!
for _ in $(seq 100); do [ -s "$work/backend" ] && break; sleep 0.05; done
backend=$(awk '/^backend/ {print $2}' "$work/backend")
target/release/proxy_server proxy "$backend" > "$work/proxy" &
server=$!
nginx_pid=""
cleanup() {
  kill "$server" "$backend_pid" 2>/dev/null || true
  if [ -n "$nginx_pid" ]; then kill "$nginx_pid" 2>/dev/null || true; wait "$nginx_pid" 2>/dev/null || true; fi
  wait "$server" "$backend_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 100); do [ -s "$work/proxy" ] && break; sleep 0.05; done
proxy=$(awk '/^proxy/ {print $2}' "$work/proxy")
nginx_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

cat > "$work/nginx.conf" <<CONF
worker_processes 2;
pid $work/nginx.pid;
error_log $work/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work/body;
  proxy_temp_path $work/proxy;
  fastcgi_temp_path $work/fastcgi;
  uwsgi_temp_path $work/uwsgi;
  scgi_temp_path $work/scgi;
  upstream backend { server 127.0.0.1:$backend; keepalive 64; }
  server {
    listen 127.0.0.1:$nginx_port;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    }
  }
}
CONF
# In the foreground of a background job, so this script reaps it at the end.
nginx -g 'daemon off;' -c "$work/nginx.conf" -p "$work" &
nginx_pid=$!
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$nginx_port/" >/dev/null 2>&1 && break; sleep 0.05; done
curl -fsS "http://127.0.0.1:$proxy/" >/dev/null
curl -fsS "http://127.0.0.1:$nginx_port/" >/dev/null

run() {
  local name=$1 port=$2
  wrk -t2 -c64 -d"${seconds}s" --latency "http://127.0.0.1:$port/" > "$work/$name.out"
  local rps p99
  rps=$(awk '/^Requests\/sec/ {print $2}' "$work/$name.out")
  p99=$(awk '$1 == "99%" {print $2}' "$work/$name.out")
  printf '%-7s requests/s %10s   p99 %8s\n' "$name" "$rps" "$p99"
}
echo "wrk -t2 -c64 -d${seconds}s, $rounds rounds, same backend (machine: $(nproc) cores)"
for _ in $(seq "$rounds"); do
  run drover "$proxy"
  run nginx "$nginx_port"
done
