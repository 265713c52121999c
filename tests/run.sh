#!/bin/sh
# Run every test: the cmocka binaries in $B/tests/ and the shell tests
# tests/test_*.sh (which print "ok - ..." / "not ok - ..." lines, and
# "ok - ... # SKIP why"), then the Python tests in tests/python (pytest),
# then the Node tests in tests/node (node --test).
# Each suite is bounded in time.  Closes with
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

# The Python package's tests (pytest, Debian's /usr/bin/python3), counted
# from pytest's closing line ("N failed, M passed, K skipped in ..").
# Skipped under a sanitizer: the libraries are sanitizer builds there and
# a Python process does not load the sanitizer's runtime first.
run_pytest() {
	name=python
	case "$name" in *"$filter"*) ;; *) return ;; esac
	echo "== $name"
	if [ -n "${RATECTL_SANITIZER:-}" ]; then
		echo "ok - python tests # SKIP sanitizer build ($RATECTL_SANITIZER)"
		skipped=$((skipped + 1))
		return
	fi
	PYTHONPATH=lib/python${PYTHONPATH:+:$PYTHONPATH} PYTHONDONTWRITEBYTECODE=1 \
	timeout -k 5 "$limit" /usr/bin/python3 -m pytest -q -p no:cacheprovider \
		tests/python >"$log" 2>&1
	rc=$?
	cat "$log"
	last=$(grep -E '^=* ?[0-9]+ (passed|failed|skipped|error|errors|deselected|xfailed|xpassed|warnings?)[ ,]' "$log" | tail -n 1)
	count() { echo "$last" | grep -oE "[0-9]+ $1" | sed 's/ .*//' | head -n 1; }
	p=$(count passed)
	f=$(count failed)
	e=$(count 'errors?')
	s=$(count skipped)
	p=${p:-0}
	f=$((${f:-0} + ${e:-0}))
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		f=1     # no test ran (5), crashed, timed out, or pytest missing
		echo "!! $name exited with status $rc"
	fi
	passed=$((passed + p))
	failed=$((failed + f))
	skipped=$((skipped + ${s:-0}))
	[ "$f" -eq 0 ] || bad_suites="$bad_suites $name"
}
run_pytest

# The Node package's tests (tests/node/test_*.js, node's own runner, one
# file at a time), counted from the closing lines of its TAP report
# ("# pass N", "# fail N", "# cancelled N", "# skipped N"; cancelled ones,
# timed out or cut short, are failures).  Under a sanitizer the addon
# ($B/node/ratectl.node) is a sanitizer build: node runs with the
# sanitizer's runtime preloaded, so that the addon runs under it in
# process; when node cannot run that way the suite is skipped.
run_node() {
	name=node
	case "$name" in *"$filter"*) ;; *) return ;; esac
	echo "== $name"
	pre=""
	if [ -n "${RATECTL_SANITIZER:-}" ]; then
		case "$RATECTL_SANITIZER" in
		address)
			rt=libasan.so
			# V8 handles SIGSEGV itself (WebAssembly bounds) and node keeps
			# memory to its exit: leave both to node.
			ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0:handle_segv=0:allow_user_segv_handler=1:detect_stack_use_after_return=0
			export ASAN_OPTIONS ;;
		undefined)
			rt=libubsan.so
			UBSAN_OPTIONS=${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}print_stacktrace=1:halt_on_error=1
			export UBSAN_OPTIONS ;;
		*)	rt="" ;;
		esac
		lib=""
		[ -z "$rt" ] || lib=$(${CC:-gcc} -print-file-name="$rt" 2>/dev/null)
		case "$lib" in
		/*) ;;
		*)	echo "ok - node tests # SKIP no $RATECTL_SANITIZER runtime to preload into node"
			skipped=$((skipped + 1))
			return ;;
		esac
		if ! LD_PRELOAD="$lib" timeout 60 node -e 'setTimeout(() => {}, 10)' >"$log" 2>&1; then
			cat "$log"
			echo "ok - node tests # SKIP node does not run with $lib preloaded"
			skipped=$((skipped + 1))
			return
		fi
		pre="LD_PRELOAD=$lib"
	fi
	set -- tests/node/test_*.js
	if ! command -v node >/dev/null 2>&1 || [ ! -f "$1" ]; then
		echo "!! $name: no node, or no tests/node/test_*.js"
		failed=$((failed + 1))
		bad_suites="$bad_suites $name"
		return
	fi
	# One file at a time: the tests measure rates on a small machine.
	conc=""
	node --help 2>/dev/null | grep -q -e '--test-concurrency' && conc=--test-concurrency=1
	timeout -k 5 "$limit" env ${pre:+"$pre"} node --test --test-reporter=tap ${conc:+"$conc"} "$@" >"$log" 2>&1
	rc=$?
	cat "$log"
	tap() { sed -n "s/^# $1 \([0-9][0-9]*\)\$/\1/p" "$log" | tail -n 1; }
	p=$(tap pass)
	f=$(tap fail)
	c=$(tap cancelled)
	s=$(tap skipped)
	if [ -z "$p" ] && [ -z "$f" ]; then
		f=1     # no report: crashed, timed out, or node missing
		echo "!! $name: no closing TAP counts (exit status $rc)"
	else
		f=$((${f:-0} + ${c:-0}))
		if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
			f=1
			echo "!! $name exited with status $rc"
		fi
	fi
	passed=$((passed + ${p:-0}))
	failed=$((failed + f))
	skipped=$((skipped + ${s:-0}))
	[ "$f" -eq 0 ] || bad_suites="$bad_suites $name"
}
run_node

[ -z "$bad_suites" ] || echo "failing suites:$bad_suites"
echo "tests: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
