#!/usr/bin/env bash
# `make compose-test`: deploy/compose.yaml end to end — HAProxy (deploy/haproxy.Dockerfile) in
# front of two inference replicas and a trainer, all on one data volume.
#
# Builds both images through compose, brings the deployment up with HAProxy published on
# 127.0.0.1 only, waits until HAProxy answers /readyz, segments examples/tile1.png through it,
# checks that inference replicas refuse trainer routes when reached directly (403 "role") while
# the same POST /jobs through HAProxy reaches the trainer, trains a tiny job there, activates its
# model and sees both replicas follow it, then stops each replica in turn (`docker kill`) and
# finds /segment still answered by the other. Ends with `compose down -v` (containers, network
# and the volume).
#
# Needs a Docker engine (on the project machine: `bash ../shared/tools/offline-docker.sh` as
# root) and a compose command: `docker compose` (v2), else `docker-compose` (Debian's v1, which
# is installed when missing and this runs as root), and curl.
#
#   tests/compose.sh [--no-build]
#   env: PORT (host port for HAProxy; default any free one), WAIT (seconds per wait, default 300)
set -euo pipefail
cd "$(dirname "$0")/.."

WAIT=${WAIT:-300}
BUILD=1
case "${1:-}" in
  --no-build) BUILD=0 ;;
  "") ;;
  -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
  *) echo "compose-test: unknown argument '$1' (see tests/compose.sh --help)" >&2; exit 2 ;;
esac

PROJECT="marsseg-compose-test-$$"
OUT=tests/out/compose
T0=$SECONDS
rm -rf "$OUT" && mkdir -p "$OUT"
# shellcheck source=tests/docker_lib.sh
. tests/docker_lib.sh

COMPOSE=()
compose() { MARSSEG_PUBLISH="127.0.0.1:$PORT" "${COMPOSE[@]}" -p "$PROJECT" -f deploy/compose.yaml "$@"; }
fail_hook() {
  [ ${#COMPOSE[@]} -gt 0 ] || return 0
  echo "---- last lines of the services' logs:" >&2
  compose logs --no-color --tail 15 2>&1 | sed 's/^/    /' >&2 || true
}
cleanup() {
  local rc=$?
  set +e
  printf '\n==> cleanup\n'
  if [ ${#COMPOSE[@]} -gt 0 ]; then
    compose logs --no-color >"$OUT/services.log" 2>&1
    info "compose down -v (logs kept in $OUT/services.log)"
    compose down -v --remove-orphans >"$OUT/down.log" 2>&1
  fi
  if [ $rc = 0 ]; then printf '\ncompose-test: PASS in %ds\n' $((SECONDS - T0))
  else printf '\ncompose-test: FAILED after %ds (logs in %s)\n' $((SECONDS - T0)) "$OUT" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A container's address on the compose network, to reach a replica without HAProxy
addr_of() {
  docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$(compose ps -q "$1")"
}
# GET /models/active through HAProxy N times (round robin over both replicas): all name ID?
all_active() {
  local id=$1 n
  for n in 1 2 3 4; do
    http GET /models/active
    [ "$CODE" = 200 ] && [ "$(jstr id)" = "$id" ] || return 1
  done
}

# how many times HAProxy has logged the replica's server as UP: its health check passing ("Server
# replicas/replica1 is UP"), or, when the stopped container's name stopped resolving and the
# server went into maintenance, its name resolving again ("Server replicas/replica1 ('replica1')
# is UP/READY (resolves again)")
up_count() { compose logs --no-color haproxy 2>/dev/null | grep -cE "Server replicas/$1( \('$1'\))? is UP" || true; }

step "preflight: docker CLI, a Docker engine, a compose command, curl"
command -v docker >/dev/null || fail "no docker command"
command -v curl >/dev/null || fail "curl is needed (apt-get install curl)"
engine=$(docker version --format '{{.Server.Version}}' 2>&1) ||
  fail "no Docker engine answers ($engine). On the project machine run, as root: bash ../shared/tools/offline-docker.sh"
if docker compose version >/dev/null 2>&1; then COMPOSE=(docker compose)
else
  if ! command -v docker-compose >/dev/null && [ "$(id -u)" = 0 ]; then
    info "apt-get install docker-compose (Debian's compose v1)"
    apt-get install -y -q docker-compose >"$OUT/apt.log" 2>&1 || fail "apt-get install docker-compose failed ($OUT/apt.log)"
  fi
  command -v docker-compose >/dev/null || fail "no compose command: install docker compose or docker-compose"
  COMPOSE=(docker-compose)
fi
[ -n "${PORT:-}" ] || PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
BASE="http://127.0.0.1:$PORT"
info "engine $engine; ${COMPOSE[*]} $("${COMPOSE[@]}" version --short 2>/dev/null || true); HAProxy on $BASE"

if [ "$BUILD" = 1 ]; then
  step "compose build (both images; log: $OUT/build.log)"
  t=$SECONDS
  compose build >"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log" | sed 's/^/    /' >&2; fail "compose build failed"; }
  info "built in $((SECONDS - t)) s"
fi

step "compose up -d: trainer, replica1, replica2, haproxy"
compose up -d --no-build >"$OUT/up.log" 2>&1 || { sed 's/^/    /' "$OUT/up.log" >&2; fail "compose up failed"; }
t=$SECONDS
until http GET /readyz && [ "$CODE" = 200 ]; do
  [ $((SECONDS - t)) -lt 120 ] || fail "no 200 from $BASE/readyz through HAProxy within 120 s (last $CODE $(body))"
  sleep 1
done
info "GET /readyz through HAProxy -> 200 after $((SECONDS - t)) s"
http GET /healthz
[ "$CODE" = 200 ] && [ "$(jstr role)" = inference ] || fail "GET /healthz through HAProxy: $CODE $(body) (wanted a replica)"
info "GET /healthz -> $(body)"

step "/segment through HAProxy"
segment examples/tile1.png

step "roles: a replica refuses trainer routes; HAProxy sends them to the trainer"
r1=$(addr_of replica1)
[ -n "$r1" ] || fail "no address for replica1"
code=$(docker run --rm --network "$(docker inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}' "$(compose ps -q replica1)")" \
         --entrypoint bash marsseg-server -c "exec 3<>/dev/tcp/$r1/8080 && printf 'POST /jobs HTTP/1.0\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}' >&3 && read -r l <&3 && echo \$l") ||
  fail "cannot reach replica1 at $r1:8080 from the compose network"
case "$code" in *" 403 "*) info "POST /jobs straight to replica1 ($r1): $code" ;; *) fail "replica1 answered POST /jobs with: $code (wanted 403)" ;; esac

step "a tiny training job through HAProxy (to the trainer)"
http POST /jobs -H 'Content-Type: application/json' \
  -d '{"dataset":"sample","activate":false,"epochs":1,"batch":8,"limit":64,"model":{"depth":2,"base":4,"dropout":0},"early_stop":0}'
[ "$CODE" = 202 ] || fail "POST /jobs -> $CODE $(body)"
job=$(jstr id)
info "job $job queued"
wait_job "$job" succeeded
http GET "/jobs/$job"
model=$(jstr model)
[ -n "$model" ] || fail "the finished job names no model: $(body)"

step "activate its model on the trainer; both replicas follow"
http GET /models/active
before=$(jstr id)
http PUT /models/active -H 'Content-Type: application/json' -d "{\"id\":\"$model\"}"
[ "$CODE" = 200 ] || fail "PUT /models/active -> $CODE $(body)"
t=$SECONDS
until all_active "$model"; do
  [ $((SECONDS - t)) -lt 30 ] || fail "the replicas still serve $(jstr id) 30 s after the switch to $model"
  sleep 0.5
done
info "both replicas serve $model (was $before) after $((SECONDS - t)) s"
segment examples/tile1.png

step "one replica down at a time: /segment still answered"
for gone in replica1 replica2; do
  compose kill "$gone" >/dev/null 2>&1 || fail "compose kill $gone"
  sleep 2   # HAProxy's health check: fall 2, inter 500ms
  for i in 1 2 3 4; do segment examples/tile1.png; done
  info "with $gone killed: 4 of 4 /segment answered"
  ups=$(up_count "$gone")
  compose start "$gone" >/dev/null 2>&1 || fail "compose start $gone"
  t=$SECONDS
  # back in HAProxy's pool: its health check says so (a restarted container may have a new address)
  until [ "$(up_count "$gone")" -gt "$ups" ]; do
    [ $((SECONDS - t)) -lt 60 ] || fail "HAProxy did not see $gone up again within 60 s"
    sleep 1
  done
  all_active "$model" || fail "after its restart the replicas do not all serve $model"
  info "$gone back in HAProxy's pool after $((SECONDS - t)) s"
done
