#!/usr/bin/env bash
# /segment latency, idle and while a training job runs (part of `make bench`).
#   bench/segment_latency.sh [BIN] [N]
# Starts its own server on a free port with a temporary data directory, sends N sequential
# 64x128 tiles (examples/tile1.png) and prints p50/p99; then starts a training job on the bundled
# sample and measures again while it trains; prints the ratio of the two p99s.
set -euo pipefail
bin=${1:-build/marsseg}
n=${2:-200}
source "$(dirname "$0")/serve.sh"
start_server "$bin"
url=$base

measure() { # label
  for _ in $(seq "$n"); do
    curl -s -o /dev/null -w '%{http_code} %{time_total}\n' -F img=@examples/tile1.png "$url/segment"
  done > "$tmp/times"
  local bad; bad=$(awk '$1 != 200' "$tmp/times" | wc -l)
  awk '{print $2 * 1000}' "$tmp/times" | sort -n > "$tmp/sorted"
  local p50 p99
  p50=$(awk -v n="$n" 'NR == int(n * 0.50 + 0.5) {print}' "$tmp/sorted")
  p99=$(awk -v n="$n" 'NR == int(n * 0.99 + 0.5) {print}' "$tmp/sorted")
  # the report goes to stderr (not `tee /dev/stderr`: that reopens a redirected log and truncates it)
  printf '/segment %-15s %d requests: p50 %.1f ms, p99 %.1f ms, non-200: %d\n' "$1" "$n" "$p50" "$p99" "$bad" >&2
  echo "$p99"
}
idle=$(measure idle)
curl -s -o /dev/null -X POST -H 'Content-Type: application/json' \
  -d '{"dataset":"sample","epochs":50,"batch":16,"model":{"depth":4,"base":16},"early_stop":0,"activate":false}' "$url/jobs"
sleep 3
busy=$(measure "during training")
awk -v a="$idle" -v b="$busy" 'BEGIN {printf "/segment p99 during training / idle: %.2fx (target <= 3x)\n", b / a}'
