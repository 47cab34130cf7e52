# Shell helpers shared by tests/docker.sh (the image) and tests/compose.sh (deploy/compose.yaml):
# numbered steps, a failure that shows the container's log, curl wrappers that keep the last
# status and body, a job poller and a /segment check. Sourced; expects $OUT (a directory for
# bodies and logs), $WAIT (seconds per wait) and $BASE (http://127.0.0.1:<port>) to be set, and
# calls fail_hook (if the script defines one) before a failure exits.
STEP=0
step() { STEP=$((STEP + 1)); printf '\n==> [%d] %s\n' "$STEP" "$*"; }
info() { printf '    %s\n' "$*"; }
fail() {
  printf '\nFAIL (step %d): %s\n' "$STEP" "$*" >&2
  if declare -F fail_hook >/dev/null; then fail_hook; fi
  exit 1
}

BASE=""       # http://127.0.0.1:<host port>
CODE=""       # status of the last request; its body is in $OUT/body
http() {      # http METHOD PATH [curl args...]
  local m=$1 p=$2; shift 2
  CODE=$(curl -sS -o "$OUT/body" -w '%{http_code}' --max-time 60 -X "$m" "$@" "$BASE$p") || CODE=000
}
body() { cat "$OUT/body"; }
# first "key":"string" of the last body (top-level fields come before nested ones here)
jstr() { grep -o "\"$1\":\"[^\"]*\"" "$OUT/body" | head -1 | sed 's/.*:"\(.*\)"/\1/'; }

wait_job() {          # wait_job ID STATE...: poll GET /jobs/ID until its state is one of them
  local id=$1 t=$SECONDS st="" last=""; shift
  while :; do
    http GET "/jobs/$id"
    [ "$CODE" = 200 ] || fail "GET /jobs/$id -> $CODE $(body)"
    st=$(jstr state)
    [ "$st" != "$last" ] && info "job $id: $st" && last=$st
    for want in "$@"; do [ "$st" = "$want" ] && return 0; done
    case "$st" in failed|cancelled|interrupted) fail "job $id is $st: $(jstr error)" ;; esac
    [ $((SECONDS - t)) -lt "$WAIT" ] || fail "job $id still $st after $WAIT s (wanted: $*)"
    sleep 0.5
  done
}

segment() {           # segment TILE: POST it to /segment, expect a PNG of the tile's size
  local tile=$1 png="$OUT/mask.png"
  info "curl -F img=@$tile $BASE/segment -o $png"
  local ct
  ct=$(curl -sS --max-time 120 -o "$png" -w '%{http_code} %{content_type}' -F "img=@$tile" "$BASE/segment") ||
    fail "curl /segment failed"
  [ "${ct%% *}" = 200 ] || fail "POST /segment -> $ct: $(head -c 300 "$png")"
  [ "$(head -c 8 "$png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "/segment did not return a PNG ($ct)"
  # IHDR: width and height, big-endian, at bytes 16..23; the mask has the tile's size
  local got want
  got=$(od -An -j16 -N8 -tx1 "$png" | tr -d ' \n')
  want=$(od -An -j16 -N8 -tx1 "$tile" | tr -d ' \n')
  [ "$got" = "$want" ] || fail "mask size $got differs from the tile's $want"
  info "200 ${ct#* }, $(stat -c %s "$png") bytes, $((16#${got:0:8}))x$((16#${got:8:8})) PNG"
}

