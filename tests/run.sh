#!/bin/sh
# Run every test: the cmocka binaries in $B/tests/ and the shell tests
# tests/test_*.sh (which print "ok - ..." / "not ok - ..." lines, and
# "ok - ... # SKIP why").  Each suite is bounded in time.  Closes with
# "tests: N passed, M failed, K skipped".
# Usage: tests/run.sh [NAME-FILTER]
set -u
B=${B:-build}
export B
filter=${1:-}
limit=${RATECTL_TEST_TIMEOUT:-300}
passed=0
failed=0
skipped=0
bad_suites=""
log=$(mktemp)
trap 'rm -f "$log"' EXIT

run_suite() {
	name=$1
	shift
	case "$name" in *"$filter"*) ;; *) return ;; esac
	echo "== $name"
	timeout -k 5 "$limit" "$@" >"$log" 2>&1
	rc=$?
	cat "$log"
	p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -n 1)
	f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -n 1)
	p=${p:-0}
	f=${f:-0}
	cs=$(sed -n 's/^\[  SKIPPED \] \([0-9]*\) test.*/\1/p' "$log" | tail -n 1)
	sk=$(grep -c '^ok .*# SKIP' "$log")
	sp=$(($(grep -c '^ok ' "$log") - sk))
	sf=$(grep -c '^not ok ' "$log")
	skipped=$((skipped + sk + ${cs:-0}))
	p=$((p + sp))
	f=$((f + sf))
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		f=1     # crashed, timed out or failed without saying which
		echo "!! $name exited with status $rc"
	fi
	passed=$((passed + p))
	failed=$((failed + f))
	[ "$f" -eq 0 ] || bad_suites="$bad_suites $name"
}

for t in "$B"/tests/test_*; do
	[ -x "$t" ] || continue
	run_suite "$(basename "$t")" "$t"
done
for t in tests/test_*.sh; do
	[ -f "$t" ] || continue
	run_suite "$(basename "$t")" sh "$t"
done

[ -z "$bad_suites" ] || echo "failing suites:$bad_suites"
echo "tests: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
