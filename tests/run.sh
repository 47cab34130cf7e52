#!/usr/bin/env bash
# Run every test binary in $1; print a per-test line and the closing "N passed, N failed, N skipped".
# Exit status 0 passes, 77 skips (TEST_SKIP in tests/testutil.h: the reason is the test's
# "SKIP: ..." line, printed here), anything else fails. A skip is never a pass; only failures
# make this script exit non-zero.
dir=${1:-build/tests}
pass=0; fail=0; skip=0; failed=""
for t in "$dir"/test_*; do
  [ -f "$t" ] && [ -x "$t" ] || continue
  name=$(basename "$t")
  start=$(date +%s.%N)
  "$t" > "$dir/$name.log" 2>&1
  rc=$?
  if [ "$rc" = 0 ]; then
    pass=$((pass+1)); status=ok
  elif [ "$rc" = 77 ]; then
    skip=$((skip+1)); status=SKIP
  else
    fail=$((fail+1)); status=FAIL; failed="$failed $name"
  fi
  printf '%-28s %s (%.1fs)\n' "$name" "$status" "$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')"
  if [ "$status" = SKIP ]; then
    why=$(grep -m1 '^SKIP' "$dir/$name.log" | sed 's/^SKIP:* *//')
    echo "    | skipped: ${why:-(no reason given)}"
  fi
  [ "$status" = FAIL ] && sed 's/^/    | /' "$dir/$name.log" | tail -40
done
echo
[ -n "$failed" ] && echo "failed:$failed"
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" = 0 ]
