#!/usr/bin/env bash
# Replicated serving (part of `make bench`): POST /segment (examples/tile1.png, the default
# model) through HAProxy running deploy/haproxy.cfg, to inference replicas (serve --role
# inference --threads 1) on loopback:
#   bench/replicas.sh [BIN] [SECONDS]
# 1. one replica alone (one inference worker, its OpenMP team on every core), 2 connections:
#    the capacity of one replica on this host;
# 2. the same replica through HAProxy (the second replica's address unused), 4 connections;
# 3. two replicas through HAProxy, each pinned to a one-thread team (OMP_NUM_THREADS=1: the
#    cores shared out), 4 connections: what a second replica on the same host adds;
# 4. the same two replicas with a team of every core each (the oversubscription to avoid);
# 5. for comparison, one process in the default setting (--threads 2: two workers, worker 0's
#    team for a lone request, one thread each for overlapping ones), 2 connections.
# Every answer must be 200. wrk, HAProxy and the replicas share the machine's cores: read the
# figures with `nproc` and the load average printed first.
set -euo pipefail
bin=${1:-build/marsseg}
secs=${2:-10}
command -v wrk >/dev/null || { echo "replicas: wrk is missing (apt-get install wrk)" >&2; exit 1; }
command -v haproxy >/dev/null || { echo "replicas: haproxy is missing (apt-get install haproxy)" >&2; exit 1; }
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
export SEGMENT_TILE=examples/tile1.png
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" "$tmp/out"; }

# start NAME THREADS [OMP_NUM_THREADS]: a replica on a free port; sets port_NAME
start() {
  rm -f "$tmp/$1.port"
  OMP_NUM_THREADS=${3:-$(nproc)} "$bin" serve --role inference --threads "$2" --port 0 --port-file "$tmp/$1.port" --data-dir "$tmp/data" 2>"$tmp/$1.log" &
  pids+=($!)
  for _ in $(seq 100); do [ -s "$tmp/$1.port" ] && break; sleep 0.1; done
  eval "port_$1=$(cat "$tmp/$1.port")"
}
# run LABEL URL CONNS: wrk for secs after a 2 s warm-up; prints and checks
run() {
  wrk -t2 -c"$3" -d2s -s bench/segment.lua "$2" > /dev/null
  wrk -t2 -c"$3" -d"${secs}s" --latency -s bench/segment.lua "$2" > "$tmp/out"
  local n s bad
  n=$(field requests); s=$(field seconds); bad=$(( $(field other) + $(field busy503) + $(field socket_errors) ))
  printf '%-58s %7.1f req/s  p50 %6s ms  p99 %7s ms  (%s requests, %s not 200)\n' "$1" \
    "$(awk -v n="$n" -v s="$s" 'BEGIN {print n / s}')" "$(field p50_ms)" "$(field p99_ms)" "$n" "$bad"
  [ "$bad" = 0 ] || { echo "replicas: $bad failed requests" >&2; exit 1; }
}
# lb N: HAProxy in front of the first N replicas (the other address unused); sets port_lb
lb() {
  [ -n "${hp:-}" ] && { kill "$hp"; wait "$hp" 2>/dev/null || true; }
  port_lb=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  MARSSEG_LISTEN=127.0.0.1:$port_lb MARSSEG_TRAINER=127.0.0.1:1 MARSSEG_REPLICA1=127.0.0.1:$port_r1 \
    MARSSEG_REPLICA2=127.0.0.1:$([ "$1" = 2 ] && echo "$port_r2" || echo 1) \
    haproxy -db -f deploy/haproxy.cfg > "$tmp/haproxy.log" 2>&1 &
  hp=$!; pids+=($hp)
  sleep 1.5 # two health checks 0.5 s apart bring the replicas in
}

printf 'replicated serving: %s cores (%s), load average %s\n' "$(nproc)" \
  "$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)" "$(cut -d' ' -f1-3 /proc/loadavg)"
stop_all() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; pids=(); hp=; }
start r1 1
run "1 replica, direct, 2 connections" "http://127.0.0.1:$port_r1/segment" 2
port_r2=1
lb 1
run "HAProxy -> 1 replica, 4 connections" "http://127.0.0.1:$port_lb/segment" 4
stop_all
start r1 1 1
start r2 1 1
lb 2
run "HAProxy -> 2 replicas (1 OpenMP thread each), 4 connections" "http://127.0.0.1:$port_lb/segment" 4
stop_all
start r1 1
start r2 1
lb 2
run "HAProxy -> 2 replicas (2 OpenMP threads each), 4 connections" "http://127.0.0.1:$port_lb/segment" 4
stop_all
start both 2
run "1 process, default --threads 2 (overlapping: 1 thread each), 2 connections" "http://127.0.0.1:$port_both/segment" 2
