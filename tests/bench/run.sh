#!/bin/sh
# make bench: run every benchmark once, print one table on stdout and write
# its machine-readable copy to $B/bench/results.json.  Targets that are
# missed print MISSED and do not fail the run; a benchmark that fails (an
# API call that errs, a worker that dies, a hang) makes it exit 1.
# Environment: B (build directory), RATECTL_BENCH_TMPFS (default
# /dev/shm), RATECTL_BENCH_DISK (default $B/bench), RATECTL_BENCH_SECONDS
# (the accuracy run, default 10), RATECTL_BENCH_OPS (default 200000),
# RATECTL_BENCH_TPUT_MS (default 1000).  See tests/bench/README.md.
set -u
B=${B:-build}
out="$B/bench"
mkdir -p "$out"
out=$(cd "$out" && pwd)
: "${RATECTL_BENCH_DISK:=$out}"
export RATECTL_BENCH_DISK
jsonl="$out/results.jsonl"
json="$out/results.json"
rm -f "$jsonl" "$json"
RATECTL_BENCH_JSONL=$jsonl
export RATECTL_BENCH_JSONL
secs=${RATECTL_BENCH_SECONDS:-10}
case "$secs" in ''|*[!0-9]*) secs=10 ;; esac    # bench_accuracy says what is wrong
failed=""

version=$(sed -n 's/^#define RATECTL_VERSION_STRING "\(.*\)"/\1/p' include/ratectl.h)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
# Figures of uncommitted code say so.
git diff --quiet HEAD -- lib include 2>/dev/null || commit="$commit+dirty"
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
ncpu=$(getconf _NPROCESSORS_ONLN)
kernel=$(uname -r)
lmdb=$(dpkg-query -W -f='${Version}' liblmdb0 2>/dev/null || echo "?")
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)

echo "ratectl $version ($commit) bench, $started"
echo "${cpu:-unknown CPU}, $ncpu CPUs, Linux $kernel, liblmdb $lmdb"
echo "figures are this machine's, this run; compare each with the one beside it"

# The floor means something only under the ledger's own LMDB flags.
flags=$(sed -n 's/^#define RC_ENV_FLAGS[[:space:]]*//p' lib/ledger.c | tr -d ' ()')
if [ "$flags" != "MDB_NOSYNC|MDB_WRITEMAP|MDB_NOTLS|MDB_NORDAHEAD" ]; then
	echo "WARNING: lib/ledger.c opens the ledger with '$flags', the floor with" \
	     "MDB_NOSYNC|MDB_WRITEMAP|MDB_NOTLS|MDB_NORDAHEAD: update tests/bench/floor.h"
fi
echo

# run NAME LIMIT: one benchmark, bounded in time; its failure is the run's.
run() {
	name=$1
	limit=$2
	timeout -k 5 "$limit" "$B/bench/$name"
	rc=$?
	if [ "$rc" -ne 0 ]; then
		[ "$rc" -eq 124 ] && echo "!! $name did not finish within $limit s"
		echo "!! $name failed (exit status $rc)"
		failed="$failed $name"
	fi
}

run bench_admit 120
run bench_alt 120
run bench_accuracy $((secs + 60))
run bench_memory 120
run bench_shim 300
run bench_http 120
for f in "$B"/bench/bench_*; do
	# A benchmark added later runs too, after these.
	case "$f" in
	*/bench_admit|*/bench_alt|*/bench_accuracy|*/bench_memory|*/bench_shim|*/bench_http) ;;
	*/bench_shared|*/bench_scale|*/bench_fair|*/bench_cache) ;;   # sections 10-13, after 8 and 9
	*) [ -f "$f" ] && [ -x "$f" ] && run "$(basename "$f")" 300 ;;
	esac
done

# Section 8: the Python binding's try + release next to the C call's (the
# "bare" row bench_http wrote above), with Debian's python3.
if [ -x /usr/bin/python3 ]; then
	PYTHONDONTWRITEBYTECODE=1 timeout -k 5 300 /usr/bin/python3 tests/bench/bench_python.py
	rc=$?
	if [ "$rc" -ne 0 ]; then
		echo "!! bench_python.py failed (exit status $rc)"
		failed="$failed bench_python"
	fi
else
	echo
	echo "8. The Python binding: skipped, no /usr/bin/python3"
fi

# Section 9: the Node package's acquire + release next to the C call's, and
# what ratectl.fetch() adds to a request (the addon $B/node/ratectl.node).
if command -v node >/dev/null 2>&1 && [ -f "$B/node/ratectl.node" ]; then
	pin=""
	command -v taskset >/dev/null 2>&1 && pin="taskset -c $(($(getconf _NPROCESSORS_ONLN) - 1))"
	RATECTL_NODE_ADDON="$B/node/ratectl.node" timeout -k 5 300 $pin node tests/bench/bench_node.js
	rc=$?
	if [ "$rc" -ne 0 ]; then
		echo "!! bench_node.js failed (exit status $rc)"
		failed="$failed bench_node"
	fi
else
	echo
	echo "9. The Node package: skipped, no node or no $B/node/ratectl.node"
fi

# Section 10: budgets shared by many hosts through Redis.
[ -x "$B/bench/bench_shared" ] && run bench_shared 120

# Section 11: 1, 1,000 and 100,000 budgets in one ledger (the ratectl
# command $B/ratectl lists them); section 12: fair shares between tenants.
[ -x "$B/bench/bench_scale" ] && run bench_scale 300
[ -x "$B/bench/bench_fair" ] && run bench_fair 60

# Section 13: the response cache (a hit's cost; the repeated-prompt run).
[ -x "$B/bench/bench_cache" ] && run bench_cache 120

# One JSON document from the rows the programs appended, one per line.
{
	printf '{"ratectl_version": "%s", "commit": "%s", "date": "%s",\n' \
		"$version" "$commit" "$started"
	printf ' "host": {"cpu": "%s", "cpus": %s, "kernel": "%s", "liblmdb": "%s"},\n' \
		"$(echo "$cpu" | tr -d '"\\')" "$ncpu" "$kernel" "$lmdb"
	printf ' "failed": ['
	sep=""
	for f in $failed; do
		printf '%s"%s"' "$sep" "$f"
		sep=", "
	done
	printf '],\n "rows": [\n'
	[ -f "$jsonl" ] && sed '$!s/$/,/; s/^/  /' "$jsonl"
	printf ' ]}\n'
} >"$json"
rm -f "$jsonl"

missed=$(grep -o '"MISSED"' "$json" | wc -l)
met=$(grep -o '_*verdict": "ok"' "$json" | wc -l)
echo
echo "targets: $met met, $missed missed; results: $json"
if [ -n "$failed" ]; then
	echo "bench: FAILED:$failed"
	exit 1
fi
exit 0
