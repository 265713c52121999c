#!/bin/sh
# test_cache_cli.sh - the host-wide response cache through the `ratectl`
# command: `cache stats` (table, patterns, --json, the config's TTL and
# size), `cache clear` (one budget, every budget, --reset-counters), the
# cache block of `show` and `show --json`, the ratectl_cache_* families of
# `metrics` (and of the exporter), usage errors naming the argument, and a
# damaged cache: `cache stats` fails naming it, while list, show and
# metrics still print the budgets.  The cache is filled by
# $B/progs/cache_fill, which answers its own requests (no network).
# Every command is bounded with timeout(1); the whole takes about 3 s.
# Run as: B=build sh tests/test_cache_cli.sh
set -u
B=${B:-build}
RC=$B/ratectl
F=$B/progs/cache_fill
T=$(mktemp -d "${TMPDIR:-/tmp}/ratectl-cache.XXXXXX") || exit 1
L=$T/ledger
PIDS=
FAILS=0
export RATECTL_LEDGER="$L"
export RATECTL_CONFIG="$T/cache.conf"

cleanup() {
	for p in $PIDS; do kill -9 "$p" 2>/dev/null; done
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

pass() { echo "ok - $1"; }
fail() { echo "not ok - $1"; FAILS=$((FAILS + 1)); }
check() { d=$1; shift; if "$@"; then pass "$d"; else fail "$d"; fi; }

# r ARGS...: ratectl, bounded; output in $T/out, errors in $T/err, status in S.
r() { timeout 20 "$RC" "$@" >"$T/out" 2>"$T/err"; S=$?; }
has() { grep -q -- "$1" "$T/out"; }
lacks() { ! grep -q -- "$1" "$T/out"; }
err_has() { grep -q -- "$1" "$T/err"; }
status_is() {
	if [ "$S" -eq "$1" ]; then pass "$2"; else
		fail "$2 (status $S, expected $1)"; sed -n 's/^/#   /; 1,10p' "$T/err"; fi
}
# j EXPR: a Python expression over the JSON document d of the last r.
j() { "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$T/out" "$1"; }
# fill ACTION...: cache_fill against the api budget; its lines in $T/fill.
URL=https://api.example.test/v1/chat/completions
fill() { timeout 20 "$F" "$T/cache.conf" "$URL" "$@" >"$T/fill" 2>"$T/fill.err"; FS=$?; }
# row BUDGET: that budget's row of the last `cache stats`, blanks squeezed.
row() { sed -n "s/^$1  */$1 /p" "$T/out" | tr -s ' '; }

for f in "$RC" "$F"; do
	[ -x "$f" ] || { echo "not ok - $f is not built"; exit 1; }
done
PY=$(python3 -c 'import sys; print(sys.executable)') || {
	echo "not ok - python3 is required"; exit 1; }

printf '%s\n' '[api]' 'match = api.example.test' 'requests = 1000/min' \
	'cache = 1m' 'cache_size = 8M' 'cache_requests = any' \
	'[other]' 'match = other.example.test' 'requests = 10/s' >"$T/cache.conf"

# ---- usage ----------------------------------------------------------------------
r cache --help; status_is 0 "cache --help"
check "... giving both usages" [ "$(grep -c '^ *\(usage:\)\? *ratectl cache \(stats\|clear\)' "$T/out")" -eq 2 ]
r cache stats --help; check "cache stats --help is the same help" has "usage: ratectl cache stats"
r cache; status_is 2 "cache without a subcommand is a usage error"
check "... asking which" err_has "cache: stats or clear?"
r cache frob; status_is 2 "an unknown subcommand is a usage error"
check "... naming it" err_has "unknown subcommand 'frob'"
r cache stats --bogus; status_is 2 "an unknown option of stats is a usage error"
check "... naming it" err_has "unknown option '--bogus'"
r cache clear --json; status_is 2 "clear has no --json"
check "... naming it" err_has "unknown option '--json'"
r cache stats 'a b'; status_is 2 "a pattern with a blank is a usage error"
check "... naming it" err_has "pattern 'a b'"
r cache clear api other; status_is 2 "clear of two budgets is a usage error"
check "... naming the second" err_has "'other' is one too many"
r cache clear 'ap*'; status_is 2 "clear of a pattern is a usage error"
check "... naming it" err_has "'ap\*' is a pattern"
r cache clear -bad; status_is 2 "clear of an option-like word is a usage error"
r cache clear .bad; status_is 2 "clear of an invalid name is a usage error"
check "... naming it" err_has "'.bad' is not a budget name"
check "no usage error made the ledger" [ ! -e "$L" ]

# ---- no cache yet ---------------------------------------------------------------
r apply; status_is 0 "apply of a config with a cache"
r cache stats; status_is 0 "cache stats without any cache"
check "... says so" has "^no response cache in ledger $L"
r cache stats --json; check "... and --json lists none" [ "$(j 'd["caches"]')" = "[]" ]
r cache stats api; status_is 0 "cache stats of a budget without one exits 0"
check "... saying so" has "no response cache in ledger .* for 'api'"
r show api; check "show has no cache block" lacks "^response cache:"
r show api --json; check "show --json says \"cache\": null" [ "$(j 'd["budget"]["cache"]')" = None ]
r metrics; check "metrics has no cache family" lacks "ratectl_cache_"
check "no reading made the cache" [ ! -e "$L/cache" ]
r cache clear; status_is 0 "cache clear without a cache"
check "... removes nothing" has "^removed 0 entries from the response cache of every budget$"

# ---- a cache with entries, hits, misses, a coalesced request -------------------------
fill get:'{"model":"m","q":"A"}' get:'{"model":"m","q":"A"}' get:'{"model":"m","q":"B"}' \
	get:'{"q":"A","model":"m"}' coalesce:'{"model":"m","q":"C"}' fail:'{"model":"m","q":"D"}'
check "cache_fill ran (status $FS)" [ "$FS" -eq 0 ]
sed 's/^/#   /' "$T/fill.err"
check "... miss, hit, miss, hit (keys reordered), miss coalesced, miss" \
	[ "$(tr '\n' ' ' <"$T/fill")" = "miss hit miss hit miss coalesced miss " ]

# A, B and C stored (D was a 500); 2 hits, 1 coalesced, 4 misses (A B C D).
r cache stats; status_is 0 "cache stats"
check "... has the header" has "^BUDGET  *ENTRIES  *SIZE  *HITS  *COALESCED  *MISSES  *HIT RATIO  *STORES  *EVICTIONS  *EXPIRED  *TOKENS SAVED  *TTL  *CACHE SIZE$"
echo "# $(row api)"
check "... and api's row: 3 entries, 2 hits, 1 coalesced, 4 misses, 42.9%, 3 stores, TTL 1m, 8M" \
	sh -c 'echo "$1" | grep -q "^api 3 [0-9.]*[KB] 2 1 4 42.9% 3 0 0 90 1m 8M$"' - "$(row api)"
check "... and no row for the budget without a cache" [ -z "$(row other)" ]
r cache stats 'a*'; check "cache stats PATTERN" [ -n "$(row api)" ]
r cache stats 'o*'; check "... one matching no cache says so" has "no response cache in ledger .* for 'o\*'"
r --config "$T/absent.conf" cache stats
check "without a readable config, the TTL columns are left out" lacks "TTL"
check "... and the rest printed" sh -c 'echo "$1" | grep -q "^api 3 [0-9.]*[KB] 2 1 4 42.9% 3 0 0 90$"' - "$(row api)"
r cache stats 'a!b'; status_is 0 "cache stats of a word that is no name"
check "... matches none" has "no response cache in ledger .* for 'a!b'"
r cache stats api --json; status_is 0 "cache stats --json"
check "... with every figure" [ "$(j '[(c["budget"], c["entries"], c["hits"], c["coalesced"], c["misses"], c["stores"], c["evictions"], c["expired"]) for c in d["caches"]]')" = "[('api', 3, 2, 1, 4, 3, 0, 0)]" ]
check "... the hit ratio" [ "$(j 'round(d["caches"][0]["hit_ratio"], 4)')" = 0.4286 ]
check "... bytes, and tokens saved: 30 for each of the 3 answered from it" \
	[ "$(j 'd["caches"][0]["bytes"] > 0, d["caches"][0]["tokens_saved"]')" = "(True, 90)" ]
check "... and the config's keys" [ "$(j 'd["caches"][0]["config"]')" = "{'ttl_ns': 60000000000, 'size': 8388608, 'entry_max': 1048576, 'requests': 'any'}" ]
SAVED=$(j 'd["caches"][0]["tokens_saved"]')
BYTES=$(j 'd["caches"][0]["bytes"]')

r show api; status_is 0 "show of a budget with a cache"
check "... has the cache block" has "^response cache:$"
check "... with entries" has "^  entries  *3 ("
check "... hits, coalesced, misses" [ "$(grep -c '^  hits  *2$\|^  coalesced  *1$\|^  misses  *4$' "$T/out")" -eq 3 ]
check "... and the hit ratio" has "^  hit ratio  *42.9%$"
r show api --json; check "show --json has the cache object" [ "$(j '(d["budget"]["cache"]["hits"], d["budget"]["cache"]["misses"])')" = "(2, 4)" ]
r show 'a*' other; check "show PATTERN... has the block for api only" [ "$(grep -c '^response cache:$' "$T/out")" -eq 1 ]
r show other; check "show of a budget without a cache has none" lacks "^response cache:"

# ---- metrics ------------------------------------------------------------------------
cat >"$T/promcheck.py" <<'EOF'
# The Prometheus text format 0.0.4, strictly: samples after their family's
# HELP and TYPE, families together, counters named _total, values numbers;
# comment lines ("# " not HELP or TYPE) allowed.  Prints the cache samples.
import re, sys
NAME = r'[a-zA-Z_:][a-zA-Z0-9_:]*'
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:\\.|[^"\\])*"'
SAMPLE = re.compile(r'^(%s)(?:\{(%s(?:,%s)*)?\})? (\S+)$' % (NAME, LABEL, LABEL))
fam, seen, helped = None, set(), set()
for n, line in enumerate(open(sys.argv[1]), 1):
    line = line.rstrip('\n')
    m = re.match(r'^# (HELP|TYPE) (%s) (.+)$' % NAME, line)
    if m:
        if m.group(1) == 'HELP':
            helped.add(m.group(2))
            continue
        assert m.group(3) in ('counter', 'gauge'), (n, line)
        assert m.group(2) not in seen, ('family repeated', n)
        assert m.group(2) in helped, ('TYPE without HELP', n)
        fam = m.group(2); seen.add(fam)
        assert m.group(3) != 'counter' or fam.endswith('_total'), (n, line)
        continue
    if line.startswith('# '):
        continue
    m = SAMPLE.match(line)
    assert m, ('bad line', n, line)
    assert m.group(1) == fam, ('sample outside its family', n, line)
    float(m.group(3))
    if fam.startswith('ratectl_cache_'):
        print(line)
EOF
r metrics; status_is 0 "metrics"
check "... with nothing on stderr" [ ! -s "$T/err" ]
cp "$T/out" "$T/m.txt"
if "$PY" "$T/promcheck.py" "$T/m.txt" >"$T/cache.samples" 2>"$T/prom.err"; then
	pass "... parses as Prometheus text"
else
	fail "... parses as Prometheus text"; sed 's/^/#   /' "$T/prom.err"
fi
want="ratectl_cache_hits_total{budget=\"api\"} 2
ratectl_cache_coalesced_total{budget=\"api\"} 1
ratectl_cache_misses_total{budget=\"api\"} 4
ratectl_cache_stores_total{budget=\"api\"} 3
ratectl_cache_evictions_total{budget=\"api\"} 0
ratectl_cache_expired_total{budget=\"api\"} 0
ratectl_cache_tokens_saved_total{budget=\"api\"} $SAVED
ratectl_cache_entries{budget=\"api\"} 3
ratectl_cache_bytes{budget=\"api\"} $BYTES"
check "... with the 9 cache families of api, and none of other" [ "$(cat "$T/cache.samples")" = "$want" ]
check "... each with HELP and TYPE" [ "$(grep -c '^# HELP ratectl_cache_\|^# TYPE ratectl_cache_[a-z_]*_total counter$\|^# TYPE ratectl_cache_\(entries\|bytes\) gauge$' "$T/m.txt")" -eq 18 ]
r metrics other; check "metrics PATTERN leaves out the caches of the others" lacks "ratectl_cache_"
r metrics --json; status_is 0 "metrics --json"
check "... with the caches" [ "$(j '[(c["budget"], c["hits"]) for c in d["caches"]]')" = "[('api', 2)]" ]
check "... and nothing on stderr" [ ! -s "$T/err" ]

# The exporter serves the same families.
"$RC" metrics --listen 127.0.0.1:0 >/dev/null 2>"$T/ex.err" &
EX=$!
PIDS="$PIDS $EX"
PORT=
i=0
while [ $i -lt 100 ] && [ -z "$PORT" ] && kill -0 "$EX" 2>/dev/null; do
	PORT=$(sed -n 's/^ratectl: metrics: listening on .*:\([0-9][0-9]*\)$/\1/p' "$T/ex.err")
	[ -n "$PORT" ] || sleep 0.1
	i=$((i + 1))
done
if [ -n "$PORT" ] && "$PY" -c 'import sys, urllib.request
sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())' \
	"http://127.0.0.1:$PORT/metrics" >"$T/ex.txt" 2>"$T/ex.curl"; then
	check "the exporter serves the cache families" \
		grep -q '^ratectl_cache_hits_total{budget="api"} 2$' "$T/ex.txt"
else
	fail "the exporter serves the cache families (port '$PORT')"; sed 's/^/#   /' "$T/ex.err" "$T/ex.curl"
fi

# ---- clear ---------------------------------------------------------------------------
r cache clear api; status_is 0 "cache clear BUDGET"
check "... says how many it removed" has "^removed 3 entries from the response cache of 'api'$"
r cache stats api --json
check "... which are gone, the counters kept" [ "$(j '[(c["entries"], c["hits"], c["misses"]) for c in d["caches"]]')" = "[(0, 2, 4)]" ]
fill get:'{"model":"m","q":"A"}' get:'{"model":"m","q":"A"}'
check "... so the next request is a miss, then a hit" [ "$(tr '\n' ' ' <"$T/fill")" = "miss hit " ]
r cache clear --reset-counters api; status_is 0 "cache clear --reset-counters"
check "... says so" has "^removed 1 entry from the response cache of 'api'; counters reset$"
r cache stats api --json
check "... and the counters are 0" [ "$(j '[(c["entries"], c["hits"], c["coalesced"], c["misses"], c["stores"], c["tokens_saved"]) for c in d["caches"]]')" = "[(0, 0, 0, 0, 0, 0)]" ]
fill get:'{"model":"m","q":"E"}' get:'{"model":"m","q":"F"}'
r cache clear nosuch; status_is 0 "cache clear of a budget without entries"
check "... removes none" has "^removed 0 entries from the response cache of 'nosuch'$"
r cache clear; status_is 0 "cache clear of every budget"
check "... removes them all" has "^removed 2 entries from the response cache of every budget$"

# ---- a damaged cache --------------------------------------------------------------------
fill get:'{"model":"m","q":"G"}'
check "a cache on disk to damage" [ -f "$L/cache/data.mdb" ]
"$PY" - "$L/cache/data.mdb" <<'EOF'
import sys
f = open(sys.argv[1], 'r+b')
n = f.seek(0, 2)
f.seek(0)
f.write(bytes((i * 7 + 3) & 0xff for i in range(min(n, 16384))))
EOF
r cache stats; status_is 1 "cache stats of a damaged cache fails"
check "... naming it, and what to do" err_has "response cache $L/cache is damaged; the next request that uses it makes it again, as \`ratectl cache clear\` does"
check "... and prints no figure" [ ! -s "$T/out" ]
r list; status_is 0 "list works beside a damaged cache"
check "... listing the budgets" has "^api "
r show api; status_is 0 "show works beside a damaged cache"
check "... printing the budget" has "^budget: *api$"
check "... without the cache block" lacks "^response cache:"
check "... saying why on stderr" err_has "response cache $L/cache is damaged.*shown without it"
r show api --json; status_is 0 "show --json too"
check "... with the budget, \"cache\": null" [ "$(j 'd["budget"]["name"], d["budget"]["cache"]')" = "('api', None)" ]
r metrics; status_is 0 "metrics works beside a damaged cache"
cp "$T/out" "$T/m2.txt"
check "... still parses" "$PY" "$T/promcheck.py" "$T/m2.txt"
check "... with the budgets' families" grep -q '^ratectl_admitted_total{budget="api"} ' "$T/m2.txt"
check "... without the cache families" lacks "^ratectl_cache_"
check "... saying why in a comment line" grep -q "^# ratectl: the response cache $L/cache is damaged" "$T/m2.txt"
check "... and on stderr" err_has "response cache $L/cache is damaged"
r metrics --json; status_is 0 "metrics --json too"
check "... with the budgets and no cache" [ "$(j '([b["name"] for b in d["budgets"]], d["caches"])')" = "(['api', 'other'], [])" ]
r cache clear; status_is 0 "cache clear of a damaged cache makes it again"
check "... with nothing in it" has "^removed 0 entries from the response cache of every budget$"
r cache stats; status_is 0 "... after which cache stats reads it"
fill get:'{"model":"m","q":"G"}' get:'{"model":"m","q":"G"}'
check "... and it caches again" [ "$(tr '\n' ' ' <"$T/fill")" = "miss hit " ]

echo "# $FAILS failed"
[ "$FAILS" -eq 0 ]
