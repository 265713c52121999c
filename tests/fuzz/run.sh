#!/bin/sh
# run.sh SECONDS [NAME...] - build every tests/fuzz/fuzz_<name>.c (or the
# NAMEs given) as a libFuzzer target into ${B:-build}/fuzz/ and run each
# for SECONDS seconds.
#
# A target links lib/parse.c and lib/error.c, plus any sources it names in
# a comment line of its own:
#     // fuzz-sources: lib/a.c lib/b.c
# Each target runs on a temporary copy of tests/fuzz/corpus/<name>/, so
# the inputs it discovers never pollute the repository's seed corpus.
# Crash files and logs stay in ${B:-build}/fuzz/.  Exits non-zero, naming
# the crash file, if any target fails.
set -eu

usage() {
	echo "usage: tests/fuzz/run.sh SECONDS [NAME...]" >&2
	exit 2
}

[ $# -ge 1 ] || usage
secs=$1
shift
case $secs in
'' | *[!0-9]* | 0) usage ;;
esac

cd "$(dirname "$0")/../.."
B=${B:-build}
CLANG=${CLANG:-clang}
out=$B/fuzz
base_sources="lib/parse.c lib/error.c"
flags="-std=c11 -g -O1 -fsanitize=fuzzer,address,undefined
	-fno-sanitize-recover=all -D_GNU_SOURCE -Iinclude -Ilib
	-Wall -Wextra -Wstrict-prototypes -Wwrite-strings -Wshadow -Werror"

if ! command -v "$CLANG" >/dev/null 2>&1; then
	echo "run.sh: $CLANG not found: the fuzz targets need clang with" \
	     "libFuzzer (Debian: apt-get install clang)" >&2
	exit 1
fi

mkdir -p "$out"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ratectl-fuzz.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

# The sources a target needs: the base ones and its fuzz-sources line,
# each once (a target may repeat a base source).
sources_of() {
	extra=$(sed -n 's|^// fuzz-sources:||p' "$1")
	# shellcheck disable=SC2086 # word splitting wanted: a source list
	printf '%s\n' $base_sources $extra | awk '!seen[$0]++' | tr '\n' ' '
}

# Build and run one target; print its line; return non-zero on failure.
run_target() {
	src=$1
	name=$(basename "$src" .c)
	short=${name#fuzz_}
	bin=$out/$name
	log=$out/$name.log

	# shellcheck disable=SC2046,SC2086 # splitting wanted: flag and file lists
	if ! "$CLANG" $flags -o "$bin" "$src" $(sources_of "$src"); then
		echo "fuzz $short: build failed" >&2
		return 1
	fi
	mkdir -p "$tmp/$short"
	if [ -d "tests/fuzz/corpus/$short" ]; then
		cp -R "tests/fuzz/corpus/$short/." "$tmp/$short/"
	fi
	if "$bin" -max_total_time="$secs" -timeout=10 -print_final_stats=1 \
	        -artifact_prefix="$out/$name-" "$tmp/$short" >"$log" 2>&1; then
		runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
		echo "fuzz $short: ${runs:-?} runs, ok"
		return 0
	fi
	crash=$(sed -n 's/.*Test unit written to //p' "$log" | tail -n 1)
	echo "fuzz $short: FAILED; crash file: ${crash:-none written}" \
	     "(log: $log; reproduce: $bin ${crash:-})" >&2
	return 1
}

status=0
found=0
# shellcheck disable=SC2046 # splitting wanted: the targets named
[ $# -gt 0 ] && set -- $(printf 'tests/fuzz/fuzz_%s.c ' "$@")
[ $# -gt 0 ] || set -- tests/fuzz/fuzz_*.c
for src in "$@"; do
	if [ ! -e "$src" ]; then
		echo "run.sh: no target $src" >&2
		status=1
		continue
	fi
	found=1
	run_target "$src" || status=1
done
if [ "$found" -eq 0 ]; then
	echo "run.sh: no tests/fuzz/fuzz_*.c targets" >&2
	exit 1
fi
exit "$status"
