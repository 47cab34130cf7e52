#!/usr/bin/env bash
# Run every test binary in $1; print a per-test line and the closing "N passed, N failed".
dir=${1:-build/tests}
pass=0; fail=0; failed=""
for t in "$dir"/test_*; do
  [ -x "$t" ] || continue
  name=$(basename "$t")
  start=$(date +%s.%N)
  if "$t" > "$dir/$name.log" 2>&1; then
    pass=$((pass+1)); status=ok
  else
    fail=$((fail+1)); status=FAIL; failed="$failed $name"
  fi
  printf '%-28s %s (%.1fs)\n' "$name" "$status" "$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')"
  [ "$status" = FAIL ] && sed 's/^/    | /' "$dir/$name.log" | tail -40
done
echo
[ -n "$failed" ] && echo "failed:$failed"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
