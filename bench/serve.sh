# Sourced by the bench scripts: start_server BIN starts `BIN serve` on a free port with a
# temporary data directory; sets tmp, pid and base (http://127.0.0.1:PORT). An EXIT trap stops
# the server and removes tmp.
start_server() {
  tmp=$(mktemp -d)
  trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$tmp"' EXIT
  "$1" serve --port 0 --port-file "$tmp/port" --data-dir "$tmp/data" 2>"$tmp/log" &
  pid=$!
  for _ in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.1; done
  base="http://127.0.0.1:$(cat "$tmp/port")"
}
