#!/usr/bin/env bash
# /segment under wrk load (part of `make bench`): the bundled default model, a 64x128 tile
# (examples/tile1.png), loopback. One draw says little on a shared machine, so every load run
# is repeated RUNS times (default 3) and reported as min / median / max over the runs.
#   bench/segment_load.sh [BIN] [SECONDS] [MODEL_MS]
# 1. one connection, 10 s a run: the end-to-end latency of a request (HTTP, multipart, PNG
#    decode, inference, colourise, PNG encode): p50, p99 and their ratio (target p99 <= 2x p50),
#    the mean against the model's own time inside the server (X-Inference-Ms) and against
#    MODEL_MS, the model's batch-1 median from bench_unet in the same run, if given (target
#    <= +15%);
# 2. two connections, SECONDS a run (default 10): requests/s (target >= 250) and p50/p99; every
#    answer must be 200 (or a 503 with Retry-After); the server's RSS before and after;
# 3. one connection again while one busy process (a shell loop) shares the CPU: how the service
#    degrades (the inference drops to one thread, core/plan.c's governor), one run.
set -euo pipefail
bin=${1:-build/marsseg}
secs=${2:-10}
model_ms=${3:-}
runs=${RUNS:-3}
command -v wrk >/dev/null || { echo "segment_load: wrk is missing (apt-get install wrk)" >&2; exit 1; }
source "$(dirname "$0")/serve.sh"
start_server "$bin"
url=$base/segment
export SEGMENT_TILE=examples/tile1.png
rss() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status"; }
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" "$2"; }
# spread FILE FIELD [SCALE]: "min / median / max" of a field over the runs' STATS lines
spread() {
  for f in "$tmp"/run.*; do field "$2" "$f"; done | sort -g | awk '{v[NR] = $1} END {
    printf "%.2f / %.2f / %.2f", v[1], NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2, v[NR]}'
}
total() { cat "$tmp"/run.* | sed -n "s/.* $1=\([0-9]*\).*/\1/p" | awk '{s += $1} END {print s + 0}'; }
bad=0
count_bad() { for f in "$tmp"/run.*; do bad=$(( bad + $(field other "$f") + $(field socket_errors "$f") )); done; }

wrk -t1 -c1 -d3s -s bench/segment.lua "$url" > /dev/null # warm-up (and the plan's measurements)
rss0=$(rss)
rm -f "$tmp"/run.*
for i in $(seq "$runs"); do
  wrk -t1 -c1 -d10s --latency -s bench/segment.lua "$url" | grep STATS > "$tmp/run.$i"
  awk -v p50="$(field p50_ms "$tmp/run.$i")" -v p99="$(field p99_ms "$tmp/run.$i")" 'BEGIN {printf "%.2f\n", p99 / p50}' > "$tmp/ratio.$i"
  sed -i "s/\$/ ratio=$(cat "$tmp/ratio.$i") excess=$(awk -v e="$(field mean_ms "$tmp/run.$i")" -v m="$(field infer_mean_ms "$tmp/run.$i")" 'BEGIN {printf "%.1f", (e / m - 1) * 100}')/" "$tmp/run.$i"
done
count_bad
echo "/segment, 1 connection, $runs runs of 10 s (min / median / max over the runs):"
echo "    p50 $(spread x p50_ms) ms, p99 $(spread x p99_ms) ms, p99/p50 $(spread x ratio) (target <= 2), mean $(spread x mean_ms) ms"
echo "    the model inside the server (X-Inference-Ms, same requests): mean $(spread x infer_mean_ms) ms -> HTTP + PNG add $(spread x excess) % (target <= 15%)"
if [ -n "$model_ms" ]; then
  echo "    the model alone (bench_unet, batch 1, median): $model_ms ms -> the mean request takes $(for f in "$tmp"/run.*; do awk -v e="$(field mean_ms "$f")" -v m="$model_ms" 'BEGIN {printf "%.1f\n", (e / m - 1) * 100}'; done | sort -g | awk '{v[NR]=$1} END {printf "%s / %s / %s", v[1], v[int((NR+1)/2)], v[NR]}') % longer"
fi
rm -f "$tmp"/run.*
for i in $(seq "$runs"); do
  wrk -t2 -c2 -d"${secs}s" --latency -s bench/segment.lua "$url" | grep STATS > "$tmp/run.$i"
  sed -i "s/\$/ rate=$(awk -v n="$(field requests "$tmp/run.$i")" -v s="$(field seconds "$tmp/run.$i")" 'BEGIN {printf "%.1f", n / s}')/" "$tmp/run.$i"
done
count_bad
echo "/segment, 2 connections, $runs runs of $secs s: $(spread x rate) req/s (target >= 250), p50 $(spread x p50_ms) ms, p99 $(spread x p99_ms) ms"
echo "    statuses over all runs: 200: $(total ok), 503+Retry-After: $(total busy503), other or socket errors: $bad"
echo "    server RSS: $rss0 MB after warm-up, $(rss) MB after the load"
rm -f "$tmp"/run.*
(while :; do :; done) &
hog=$!
wrk -t1 -c1 -d10s --latency -s bench/segment.lua "$url" | grep STATS > "$tmp/run.1"
kill "$hog"
count_bad
echo "/segment, 1 connection, 10 s while one busy process shares the CPU: $(field requests "$tmp/run.1") requests, p50 $(field p50_ms "$tmp/run.1") ms, p99 $(field p99_ms "$tmp/run.1") ms, mean $(field mean_ms "$tmp/run.1") ms (model $(field infer_mean_ms "$tmp/run.1") ms)"
[ "$bad" = 0 ] || { echo "segment_load: $bad failed requests (see the server log)" >&2; tail -5 "$tmp/log" >&2; exit 1; }
