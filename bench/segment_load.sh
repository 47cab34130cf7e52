#!/usr/bin/env bash
# /segment under wrk load (part of `make bench`): the bundled default model, a 64x128 tile
# (examples/tile1.png), loopback.
#   bench/segment_load.sh [BIN] [SECONDS] [MODEL_MS]
# 1. one connection for 10 s: the end-to-end latency of a request (HTTP, multipart, PNG decode,
#    inference, colourise, PNG encode), compared with MODEL_MS, the model's own batch-1 time
#    from bench_unet in the same run, if given;
# 2. two connections for SECONDS (default 30): requests/s and p50/p99; every answer must be 200
#    (or a 503 with Retry-After); the server's RSS before and after.
set -euo pipefail
bin=${1:-build/marsseg}
secs=${2:-30}
model_ms=${3:-}
command -v wrk >/dev/null || { echo "segment_load: wrk is missing (apt-get install wrk)" >&2; exit 1; }
source "$(dirname "$0")/serve.sh"
start_server "$bin"
url=$base/segment
export SEGMENT_TILE=examples/tile1.png
rss() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status"; }
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" "$tmp/out"; }

wrk -t1 -c1 -d3s -s bench/segment.lua "$url" > /dev/null # warm-up
rss0=$(rss)
wrk -t1 -c1 -d10s --latency -s bench/segment.lua "$url" > "$tmp/out"
printf '/segment, 1 connection, 10 s: %s requests, p50 %s ms, p99 %s ms, mean %s ms\n' \
  "$(field requests)" "$(field p50_ms)" "$(field p99_ms)" "$(field mean_ms)"
awk -v e="$(field mean_ms)" -v i="$(field infer_mean_ms)" 'BEGIN {printf "    the model in the server (X-Inference-Ms of the same requests): mean %.2f ms -> HTTP + PNG decode/encode add %.0f%% to it\n", i, (e / i - 1) * 100}'
if [ -n "$model_ms" ]; then
  awk -v e="$(field p50_ms)" -v m="$model_ms" 'BEGIN {printf "    the model alone (bench_unet, batch 1, median): %.2f ms -> the p50 request takes %.0f%% longer (target <= 15%%)\n", m, (e / m - 1) * 100}'
fi
bad1=$(( $(field other) + $(field socket_errors) ))
wrk -t2 -c2 -d"${secs}s" --latency -s bench/segment.lua "$url" > "$tmp/out"
n=$(field requests); s=$(field seconds)
printf '/segment, 2 connections, %s s: %s requests, %.1f req/s, p50 %s ms, p99 %s ms; 200: %s, 503+Retry-After: %s, other: %s, socket errors: %s\n' \
  "$secs" "$n" "$(awk -v n="$n" -v s="$s" 'BEGIN {print n / s}')" "$(field p50_ms)" "$(field p99_ms)" \
  "$(field ok)" "$(field busy503)" "$(field other)" "$(field socket_errors)"
printf '    server RSS: %s MB after warm-up, %s MB after the load\n' "$rss0" "$(rss)"
bad=$(( bad1 + $(field other) + $(field socket_errors) ))
[ "$bad" = 0 ] || { echo "segment_load: $bad failed requests (see the server log)" >&2; tail -5 "$tmp/log" >&2; exit 1; }
