#!/usr/bin/env bash
# `make docker-test`: the marsseg-server image end to end.
#
# Builds the image, runs it with a fresh named volume (port published on 127.0.0.1 only), waits
# for /healthz, runs the image's HEALTHCHECK inside the container, segments examples/tile1.png
# with curl, trains a tiny job to success, stops the container with SIGTERM while a second job
# is training, starts a new container on the same volume and finds both jobs (the first one
# succeeded with its model still active, the second one resuming from its checkpoint), then
# removes the containers and the volume. Every request goes to 127.0.0.1.
#
# Needs a Docker engine (on the project machine: `bash ../shared/tools/offline-docker.sh` as
# root, which serves the Docker API through podman) and curl.
#
# With --mpi it then builds the MPI variant (--build-arg MARSSEG_MPI=1, tagged $IMAGE:mpi) and
# trains with `mpirun -np 2` inside it, as the Dockerfile's head shows.
#
#   tests/docker.sh [--no-build] [--rmi] [--model FILE] [--mpi]
#     --no-build    test the existing image instead of building it
#     --rmi         also remove the image (and the build stage's leftover image) at the end
#     --model FILE  mount FILE read-only as the image's default model (for a tree without
#                   models/default.npz); without it a tree without a default model is tested
#                   with the model of the tiny job
#     --mpi         also the MPI variant: build it, train 2 epochs on 2 ranks in a container
#   env: IMAGE (default marsseg-server), DOCKER (default docker), PORT (host port; default any
#        free one), WAIT (seconds allowed for each wait, default 300)
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-marsseg-server}
DOCKER=${DOCKER:-docker}
PORT=${PORT:-}
WAIT=${WAIT:-300}
BUILD=1 RMI=0 MODEL="" MPI=0
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) BUILD=0 ;;
    --rmi) RMI=1 ;;
    --mpi) MPI=1 ;;
    --model) [ $# -ge 2 ] || { echo "docker-test: --model needs a file" >&2; exit 2; }; MODEL=$2; shift ;;
    --model=*) MODEL=${1#--model=} ;;
    -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) echo "docker-test: unknown argument '$1' (see tests/docker.sh --help)" >&2; exit 2 ;;
  esac
  shift
done

TOKEN="docker-test-$$-$RANDOM"
NAME="marsseg-docker-test-$$"
CTR=""                              # the running container's name
VOL="$NAME"
OUT=tests/out/docker                 # build log, responses, container logs (kept for a look)
T0=$SECONDS
rm -rf "$OUT" && mkdir -p "$OUT"
# shellcheck source=tests/docker_lib.sh
. tests/docker_lib.sh
fail_hook() {   # the running container's last lines
  if [ -n "$CTR" ] && $DOCKER container inspect "$CTR" >/dev/null 2>&1; then
    echo "---- last lines of the container's log ($CTR):" >&2
    $DOCKER logs --tail 40 "$CTR" 2>&1 | sed 's/^/    /' >&2 || true
  fi
}


cleanup() {
  local rc=$?
  set +e
  printf '\n==> cleanup\n'
  for c in "$NAME-1" "$NAME-2"; do
    if $DOCKER container inspect "$c" >/dev/null 2>&1; then
      info "docker rm -f $c"; $DOCKER rm -f "$c" >/dev/null
    fi
  done
  if $DOCKER volume inspect "$VOL" >/dev/null 2>&1; then
    info "docker volume rm $VOL"; $DOCKER volume rm "$VOL" >/dev/null
  fi
  if [ "$RMI" = 1 ]; then
    info "docker rmi $IMAGE"; $DOCKER rmi "$IMAGE" >/dev/null
    [ "$MPI" = 1 ] && { info "docker rmi $IMAGE:mpi"; $DOCKER rmi "$IMAGE:mpi" >/dev/null; }
    info "docker image prune --filter label=marsseg.stage=build (the build stage's leftover)"
    $DOCKER image prune -f --filter label=marsseg.stage=build >/dev/null
  fi
  if [ $rc = 0 ]; then printf '\ndocker-test: PASS in %ds\n' $((SECONDS - T0))
  else printf '\ndocker-test: FAILED after %ds (logs in %s)\n' $((SECONDS - T0)) "$OUT" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ helpers

start_container() {   # start_container NAME: a new container on the shared volume
  CTR=$1
  local args=(-d --name "$CTR" -p "127.0.0.1:${PORT}:8080" -v "$VOL:/data" --stop-timeout 60
              -e MARSSEG_TOKEN="$TOKEN")
  [ -n "$MODEL" ] && args+=(-v "$(realpath "$MODEL"):/opt/marsseg/models/default.npz:ro")
  info "docker run ${args[*]} $IMAGE" | sed "s/$TOKEN/<token>/"
  $DOCKER run "${args[@]}" "$IMAGE" >/dev/null || fail "docker run failed"
  local hp
  hp=$($DOCKER port "$CTR" 8080/tcp | head -1) || fail "docker port: no published port"
  BASE="http://127.0.0.1:${hp##*:}"
  info "published on $BASE"
}

wait_healthy() {
  local t=$SECONDS
  until http GET /healthz && [ "$CODE" = 200 ]; do
    [ "$($DOCKER inspect -f '{{.State.Running}}' "$CTR" 2>/dev/null)" = true ] ||
      fail "the container exited before answering /healthz"
    [ $((SECONDS - t)) -lt 60 ] || fail "no 200 from $BASE/healthz within 60 s (last status $CODE)"
    sleep 0.5
  done
  info "GET /healthz -> 200 $(body) after $((SECONDS - t)) s"
}

stop_container() {    # docker stop, expect a clean exit (status 0) within the stop timeout
  local t=$SECONDS
  info "docker stop -t 60 $CTR"
  $DOCKER stop -t 60 "$CTR" >/dev/null || fail "docker stop failed"
  local rc
  rc=$($DOCKER inspect -f '{{.State.ExitCode}}' "$CTR")
  $DOCKER logs "$CTR" >"$OUT/$CTR.log" 2>&1 || true
  [ "$rc" = 0 ] || fail "exit status $rc after SIGTERM (wanted 0: a clean shutdown)"
  grep -q "SIGTERM received" "$OUT/$CTR.log" || fail "the service did not log 'SIGTERM received'"
  info "stopped in $((SECONDS - t)) s, exit status 0 (log: $OUT/$CTR.log)"
}

# ------------------------------------------------------------------ the test

step "preflight: docker CLI, a Docker engine, curl"
command -v "$DOCKER" >/dev/null || fail "no '$DOCKER' command (install Docker, or set DOCKER=podman)"
command -v curl >/dev/null || fail "curl is needed (apt-get install curl)"
engine=$($DOCKER version --format '{{.Server.Version}}' 2>&1) ||
  fail "no Docker engine answers ($engine). On the project machine run, as root: bash ../shared/tools/offline-docker.sh"
info "engine $engine"
[ -z "$MODEL" ] || [ -f "$MODEL" ] || fail "--model $MODEL: no such file"

if [ "$BUILD" = 1 ]; then
  step "docker build -t $IMAGE .   (log: $OUT/build.log)"
  t=$SECONDS
  $DOCKER build -t "$IMAGE" . >"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log" | sed 's/^/    /' >&2; fail "docker build failed"; }
  info "built in $((SECONDS - t)) s"
else
  step "using the existing image $IMAGE (--no-build)"
  $DOCKER image inspect "$IMAGE" >/dev/null 2>&1 || fail "no image $IMAGE: build it first or drop --no-build"
fi
info "$($DOCKER images --format '{{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}' "$IMAGE" | head -1)"

step "the image runs the binary: --help, serve --help, non-root user"
$DOCKER run --rm "$IMAGE" --help >"$OUT/help.txt" 2>&1 || fail "docker run $IMAGE --help failed: $(cat "$OUT/help.txt")"
grep -q "usage: marsseg <command>" "$OUT/help.txt" || fail "--help: unexpected output: $(head -3 "$OUT/help.txt")"
$DOCKER run --rm "$IMAGE" serve --help >"$OUT/help.txt" 2>&1 || fail "docker run $IMAGE serve --help failed"
grep -q "MARSSEG_DATA_DIR" "$OUT/help.txt" || fail "serve --help: unexpected output"
uid=$($DOCKER run --rm --entrypoint id "$IMAGE" -u) || fail "cannot run id in the image"
[ "$uid" != 0 ] || fail "the image runs as root"
info "marsseg --help and serve --help work; uid $uid"

step "start the service (volume $VOL, token set through MARSSEG_TOKEN)"
$DOCKER volume create "$VOL" >/dev/null || fail "docker volume create failed"
start_container "$NAME-1"
wait_healthy

step "the image's HEALTHCHECK, run inside the container"
mapfile -d '' hc < <($DOCKER inspect -f '{{range .Config.Healthcheck.Test}}{{printf "%s\x00" .}}{{end}}' "$CTR")
[ "${#hc[@]}" -ge 2 ] || fail "the container has no HEALTHCHECK"
case "${hc[0]}" in
  CMD) hc=("${hc[@]:1}") ;;
  CMD-SHELL) hc=(/bin/sh -c "${hc[1]}") ;;
  *) fail "unexpected HEALTHCHECK test ${hc[0]}" ;;
esac
$DOCKER exec "$CTR" "${hc[@]}" || fail "the HEALTHCHECK command failed (exit $?)"
info "exit 0"

step "the bundled dataset is listed"
http GET /datasets
[ "$CODE" = 200 ] && body | grep -q '"id":"sample"' || fail "GET /datasets -> $CODE $(body)"
info "GET /datasets -> sample ($(grep -o '"samples":[0-9]*' "$OUT/body" | head -1))"

step "segment examples/tile1.png with the default model"
http GET /readyz
if [ "$CODE" = 200 ]; then
  segment examples/tile1.png
  DEFAULT_MODEL=1
else
  info "SKIP: /readyz -> $CODE: the image has no models/default.npz (use --model FILE to test one);"
  info "      the tile is segmented with the tiny job's model below"
  DEFAULT_MODEL=0
fi

step "train a tiny job (POST /jobs) until it succeeds"
JOB_A='{"dataset":"sample","activate":true,"epochs":1,"batch":8,"limit":64,"model":{"depth":2,"base":4,"dropout":0},"early_stop":0}'
http POST /jobs -H 'Content-Type: application/json' -d "$JOB_A"
[ "$CODE" = 401 ] || fail "POST /jobs without the token -> $CODE, wanted 401 (MARSSEG_TOKEN not applied?)"
info "without the token: 401 (MARSSEG_TOKEN reached the service)"
http POST /jobs -H 'Content-Type: application/json' -H "Authorization: Bearer $TOKEN" -d "$JOB_A"
[ "$CODE" = 202 ] || fail "POST /jobs -> $CODE $(body)"
A=$(jstr id)
info "POST /jobs $JOB_A -> 202, job $A"
t=$SECONDS
wait_job "$A" succeeded
info "succeeded in $((SECONDS - t)) s, model $(jstr model)"
segment examples/tile1.png

step "SIGTERM while a job trains: the job pauses with a checkpoint, the service exits 0"
JOB_B='{"dataset":"sample","activate":false,"epochs":50,"batch":8,"model":{"depth":2,"base":4,"dropout":0},"early_stop":0}'
http POST /jobs -H 'Content-Type: application/json' -H "Authorization: Bearer $TOKEN" -d "$JOB_B"
[ "$CODE" = 202 ] || fail "POST /jobs -> $CODE $(body)"
B=$(jstr id)
info "job $B: 50 epochs (cancelled at the end of the test)"
wait_job "$B" running
t=$SECONDS
until http GET "/jobs/$B" && grep -q '"progress":{' "$OUT/body"; do
  [ $((SECONDS - t)) -lt "$WAIT" ] || fail "job $B shows no progress after $WAIT s"
  sleep 0.5
done
info "job $B is training: $(grep -o '"progress":{[^}]*}' "$OUT/body" | cut -c1-100)"
stop_container
grep -q "job $B: paused (resumes on restart)" "$OUT/$CTR.log" || fail "the log does not show job $B pausing"
info "log: $(grep "job $B: paused" "$OUT/$CTR.log" | tail -1)"

step "a new container on the same volume finds the jobs, the model and the checkpoint"
start_container "$NAME-2"
wait_healthy
http GET /jobs
[ "$CODE" = 200 ] || fail "GET /jobs -> $CODE $(body)"
body | grep -q "\"id\":\"$A\"" || fail "job $A is not listed after the restart: $(body | head -c 400)"
body | grep -q "\"id\":\"$B\"" || fail "job $B is not listed after the restart: $(body | head -c 400)"
info "GET /jobs lists $A and $B"
http GET "/jobs/$A"
[ "$(jstr state)" = succeeded ] || fail "job $A is $(jstr state) after the restart, wanted succeeded"
info "job $A: succeeded"
http GET /models/active
[ "$CODE" = 200 ] && body | grep -q "\"$A\"" || fail "the active model is not $A's after the restart: $CODE $(body)"
info "active model: $A (the choice persisted on the volume)"
segment examples/tile1.png
wait_job "$B" running
grep -q "job $B: resuming" <($DOCKER logs "$CTR" 2>&1) || fail "job $B did not resume from its checkpoint"
info "log: $($DOCKER logs "$CTR" 2>&1 | grep "job $B: resuming" | tail -1)"
http DELETE "/jobs/$B" -H "Authorization: Bearer $TOKEN"
[ "$CODE" = 202 ] || [ "$CODE" = 200 ] || fail "DELETE /jobs/$B -> $CODE $(body)"
wait_job "$B" cancelled

step "stop the second container"
stop_container
[ "$DEFAULT_MODEL" = 1 ] || info "note: segmenting was tested with the tiny job's model (no default model in the image)"

if [ "$MPI" = 1 ]; then
  step "the MPI variant: docker build --build-arg MARSSEG_MPI=1 -t $IMAGE:mpi .   (log: $OUT/build-mpi.log)"
  t=$SECONDS
  $DOCKER build --build-arg MARSSEG_MPI=1 -t "$IMAGE:mpi" . >"$OUT/build-mpi.log" 2>&1 ||
    { tail -30 "$OUT/build-mpi.log" | sed 's/^/    /' >&2; fail "docker build (MPI) failed"; }
  info "built in $((SECONDS - t)) s"
  step "mpirun -np 2 marsseg train inside the MPI image (the Dockerfile's example)"
  $DOCKER run --rm --shm-size=512m --entrypoint mpirun "$IMAGE:mpi" -np 2 marsseg train \
    --data /opt/marsseg/datasets/sample.npz --epochs 2 --limit 64 --batch 16 --base 4 --depth 2 --out runs/r1 \
    >"$OUT/mpi.log" 2>&1 || { tail -20 "$OUT/mpi.log" | sed 's/^/    /' >&2; fail "mpirun -np 2 in $IMAGE:mpi failed"; }
  grep -q "all-reduce" "$OUT/mpi.log" && grep -q "trained 2 epochs" "$OUT/mpi.log" ||
    fail "the 2-rank run did not report its all-reduce and its end: $(tail -3 "$OUT/mpi.log")"
  info "$(grep -m1 'all-reduce' "$OUT/mpi.log")"
  info "$(tail -1 "$OUT/mpi.log")"
fi
