#!/bin/sh
# test_shim.sh - the preload shim (libratectl-preload.so) with real
# programs against the fake provider: the curl command (serial and
# --parallel, 8 processes at once), a C program linked with libcurl (easy,
# multi, threads), programs that load libcurl with dlopen (OpenSSL and
# GnuTLS builds, RTLD_LOCAL, RTLD_DEEPBIND; PHP and pycurl when installed),
# cooldowns after a 429, tightening from rate-limit headers, token
# reconciliation, unmatched hosts, on_error, timeouts, retries, concurrency
# caps with the multi interface, config reload, tenants and tags (ratectl's
# own request headers kept from the provider), the response cache
# (answers given without sending, stores, coalescing, easy and multi),
# and programs that never touch a matched host.  Everything on 127.0.0.1;
# every wait bounded; each case has its own ledger and server; about 50 s.
# Sanitizer builds run what they can (see PRELOAD below).
# Run as: B=build sh tests/test_shim.sh  (SHIM_ONLY=cache: that part alone)
set -u
B=${B:-build}
FP=$B/ratectl-fakeprov
P=$B/progs
SHIM=$(cd "$B" 2>/dev/null && pwd)/libratectl-preload.so
T=$(mktemp -d "${TMPDIR:-/tmp}/shim.XXXXXX") || exit 1
PIDS=
FAILS=0
BODY='{"model":"m","max_tokens":20,"messages":[{"role":"user","content":"hi"}]}'

cleanup() {
	for p in $PIDS; do kill "$p" 2>/dev/null; done
	for p in $PIDS; do wait "$p" 2>/dev/null; done
	chmod -R u+rwx "$T" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

pass() { echo "ok - $1"; }
fail() { echo "not ok - $1"; FAILS=$((FAILS + 1)); }
skip() { echo "ok - $1 # SKIP $2"; }
check() { d=$1; shift; if "$@"; then pass "$d"; else fail "$d"; fi; }

# Integer field $2 of the compact JSON in $1.
jnum() { grep -o "\"$2\":[0-9]*" "$1" | head -n 1 | sed 's/.*://'; }
# Value of key $3 printed by shim_peek for budget $2 of ledger $1.
peek() { "$P/shim_peek" "$T/$1" "$2" 2>>"$T/peek.err" | sed -n "s/^$3=//p"; }
# Field $2 of shim_client / shim_dlopen output lines in file $1, summed.
sumf() { sed -n "s/.*$2=\([0-9]*\).*/\1/p" "$1" | awk '{s += $1} END {print s + 0}'; }
# n copies of "-o /dev/null URL" for one curl command.
urls() { i=0; while [ $i -lt "$1" ]; do printf ' -o /dev/null %s' "$2"; i=$((i + 1)); done; }

# start NAME ARGS...: a fake provider on a free port, logging; sets URL.
start() {
	name=$1; shift
	"$FP" --port 0 --port-file "$T/$name.port" --max-seconds 80 --quiet \
		--log "$T/$name.log" "$@" 2>"$T/$name.err" &
	PIDS="$PIDS $!"
	wait_file "$T/$name.port"
	URL=http://127.0.0.1:$(cat "$T/$name.port" 2>/dev/null)
	PORT=${URL##*:}
}
# raw NAME RESPONSE-FILE: a server answering every request with that file;
# the heads of the requests it got are in $T/NAME.req ("--" after each).
raw() {
	"$P/shim_rawhttp" "$T/$1.port" "$2" 80 "$T/$1.req" 2>"$T/$1.err" &
	PIDS="$PIDS $!"
	wait_file "$T/$1.port"
	URL=http://127.0.0.1:$(cat "$T/$1.port" 2>/dev/null)
	PORT=${URL##*:}
}
# Wait for the workers whose pids are in W.
reap() { for w_ in $W; do wait "$w_"; done; W=; }
wait_file() {
	i=0
	while [ ! -s "$1" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
}
stats() { curl -s --max-time 5 -o "$T/$1.stats" "$2/stats"; }
# conf NAME LINES...: a config file $T/NAME.conf, one argument a line.
conf() { c=$T/$1.conf; shift; printf '%s\n' "$@" > "$c"; }
# under CONF LEDGER CMD...: run CMD with the shim, that config and ledger.
under() {
	c=$1; l=$2; shift 2
	RATECTL_CONFIG=$T/$c.conf RATECTL_LEDGER=$T/$l LD_PRELOAD=$PRELOAD "$@"
}
# Requests per second between the first and last 200 in server log $1.
rate() {
	sed -n 's/.*"t_ms":\([0-9.]*\).*"status":200.*/\1/p' "$1" | sort -n |
		awk 'NR == 1 {a = $1} {b = $1; n++} END {if (n > 1 && b > a) printf "%.1f", (n - 1) * 1000 / (b - a); else print 0}'
}
# Seconds between two t_ms values, and comparisons of decimals.
ge() { awk -v a="$1" -v b="$2" 'BEGIN {exit !(a >= b)}'; }

for f in "$FP" "$SHIM" "$P/shim_client" "$P/shim_dlopen" "$P/shim_peek" \
	"$P/shim_rawhttp" "$P/shim_jscan"; do
	if [ ! -e "$f" ]; then echo "not ok - $f is not built"; exit 1; fi
done
if ! command -v curl >/dev/null 2>&1; then echo "not ok - curl is required"; exit 1; fi
# A sanitizer build of the shim needs its runtime loaded first (asan), or
# cannot go into programs built without it at all (tsan).  The system's
# programs (curl, sh) then stay out: asan preloaded into curl hangs in
# setlocale(), shim or no shim; the test programs, built with it, run.
PRELOAD=$SHIM
SYS=1
rt=$(ldd "$SHIM" 2>/dev/null | sed -n 's/.*lib\(asan\)[^ ]* => \([^ ]*\).*/\2/p' | head -n 1)
if [ -n "$rt" ]; then
	PRELOAD="$rt $SHIM"
	SYS=0
	# Leaks of the programs preloaded are not the shim's to report.
	ASAN_OPTIONS=detect_leaks=0:${ASAN_OPTIONS:-}
	export ASAN_OPTIONS
fi
# sys DESCRIPTION: true when the system's programs may run under the shim.
sys() { [ "$SYS" = 1 ] && return 0; skip "$1" "${2:-sanitizer build: system programs not preloaded}"; return 1; }
if ! LD_PRELOAD=$PRELOAD /bin/true 2>"$T/preload.err" || [ -s "$T/preload.err" ]; then
	SYS=0           # tsan: only programs built with the runtime take it
	if ! LD_PRELOAD=$PRELOAD "$P/shim_jscan" 1 >/dev/null 2>&1; then
		echo "ok - preload shim # SKIP cannot be preloaded in this build: $(head -n 1 "$T/preload.err")"
		exit 0
	fi
fi

# --- The response cache -----------------------------------------------------
# A budget with `cache = 1m`: a deterministic request (temperature 0) is
# sent once and answered from the cache after, as libcurl would answer it
# (the curl command's -i, -o, -w; a linked program's callbacks and
# getinfo, easy and multi: perform, read late, event-driven, threads);
# requests asking the same at once wait for the one fetch; temperature 0.7
# is never cached; a 429 or 500 is never stored, nor a body cut short;
# bodies around libcurl's largest write (16 KiB) come whole, in its pieces.
# tbody WORD: a temperature-0 request of its own.
tbody() { printf '{"model":"m","max_tokens":20,"temperature":0,"messages":[{"role":"user","content":"%s"}]}' "$1"; }
# sent NAME: requests the fake provider NAME (at $SCURL) has answered.
sent() { stats "$1" "$SCURL"; jnum "$T/$1.stats" requests; }
# rawbody FILE STATUS BODY-FILE HEADER...: a response of that status and body.
rawbody() {
	f=$1; st=$2; bf=$3; shift 3
	{ printf 'HTTP/1.1 %s\r\n' "$st"; for h in "$@"; do printf '%s\r\n' "$h"; done
	  printf 'Content-Length: %s\r\nConnection: close\r\n\r\n' "$(wc -c < "$bf")"
	  cat "$bf"; } > "$f"
}
# posts NAME: requests the raw server NAME got.
posts() { grep -c '^POST ' "$T/$1.req" 2>/dev/null || echo 0; }
# okf FILE: "sent ok bad hits s429+other" of shim_client lines in FILE.
okf() { echo "$(sumf "$1" sent) $(sumf "$1" ok) $(sumf "$1" bad) $(sumf "$1" hits) $(($(sumf "$1" s429) + $(sumf "$1" other)))"; }
cache_tests() {
start sc --latency 200ms
SCURL=$URL
conf cc '[fake]' "match = 127.0.0.1:$PORT" 'requests = 100/s' 'cache = 1m' 'timeout = 10s'
T0=$(tbody hi)
T7='{"model":"m","max_tokens":20,"temperature":0.7,"messages":[{"role":"user","content":"hi"}]}'
if sys "curl: answers from the response cache"; then
	a=$(sent sc)
	for i in 1 2 3 4 5; do
		under cc lc curl -sS -w '\n%{http_code}\n' -d "$T0" "$URL/v1/chat/completions" \
			> "$T/cc.$i" 2>>"$T/cc.err"
	done
	b=$(sent sc)
	check "curl x5, temperature 0, cache = 1m: the provider saw 1 ($((b - a)))" [ $((b - a)) -eq 1 ]
	same=0
	for i in 1 2 3 4 5; do
		cmp -s "$T/cc.1" "$T/cc.$i" && [ "$(tail -n 1 "$T/cc.$i")" = 200 ] && same=$((same + 1))
	done
	check "every curl printed the same body and 200 ($same of 5; $(head -c 60 "$T/cc.1"))" \
		sh -c '[ "$1" -eq 5 ] && grep -q "\"usage\"" "$2"' _ "$same" "$T/cc.1"
	under cc lc curl -sS -i -d "$T0" "$URL/v1/chat/completions" > "$T/cc.i" 2>>"$T/cc.err"
	tr -d '\r' < "$T/cc.i" > "$T/cc.i2"
	check "curl -i on a hit: 200, X-Ratectl-Cache: hit, Age, Content-Type, Content-Length, then the body" \
		sh -c 'head -n 1 "$1" | grep -qx "HTTP/1.1 200 OK" && grep -qix "x-ratectl-cache: hit" "$1" &&
			grep -qi "^age: [0-9]" "$1" && grep -qix "content-type: application/json" "$1" &&
			grep -qix "content-length: $(head -n 1 "$2" | tr -d "\n" | wc -c)" "$1" &&
			[ "$(tail -n 1 "$1")" = "$(head -n 1 "$2")" ]' _ "$T/cc.i2" "$T/cc.1"
	under cc lc curl -sS -o "$T/cc.o" -w '%{http_code} %{content_type} %{size_download} %{num_headers}' \
		-d "$T0" "$URL/v1/chat/completions" > "$T/cc.w" 2>>"$T/cc.err"
	rc=$?
	n=$(head -n 1 "$T/cc.1" | tr -d '\n' | wc -c)
	check "curl -o FILE -w on a hit: exit $rc, the body in FILE, '$(cat "$T/cc.w")'" \
		sh -c '[ "$1" -eq 0 ] && [ "$(cat "$2")" = "200 application/json $3 4" ] &&
			[ "$(cat "$4")" = "$(head -n 1 "$5")" ]' _ "$rc" "$T/cc.w" "$n" "$T/cc.o" "$T/cc.1"
	a=$(sent sc)
	for i in 1 2 3 4; do
		under cc lc curl -sS -o /dev/null -d "$T7" "$URL/v1/chat/completions" 2>>"$T/cc.err"
	done
	b=$(sent sc)
	check "temperature 0.7 is never cached: the provider saw 4 of 4 ($((b - a)))" [ $((b - a)) -eq 4 ]
	# One curl --parallel asking the same four times at once: one fetch,
	# three answers that waited for it.
	a=$(sent sc)
	TZ=$(tbody parallel)
	under cc lc curl -sS --no-progress-meter -Z --parallel-max 4 -w '%{http_code}\n' -d "$TZ" \
		-o "$T/cz.1" "$URL/v1/chat/completions" -o "$T/cz.2" "$URL/v1/chat/completions" \
		-o "$T/cz.3" "$URL/v1/chat/completions" -o "$T/cz.4" "$URL/v1/chat/completions" \
		> "$T/cz.w" 2>>"$T/cc.err"
	rc=$?
	b=$(sent sc)
	check "curl -Z, the same request 4 times at once: exit $rc, four 200s, the provider saw 1 ($((b - a)))" \
		sh -c '[ "$1" -eq 0 ] && [ "$(grep -c "^200$" "$2")" -eq 4 ] && [ "$3" -eq 1 ]' _ \
		"$rc" "$T/cz.w" $((b - a))
	check "and the four files are the same answer" \
		sh -c 'cmp -s "$1" "$2" && cmp -s "$1" "$3" && cmp -s "$1" "$4" && grep -q "\"usage\"" "$1"' _ \
		"$T/cz.1" "$T/cz.2" "$T/cz.3" "$T/cz.4"
	under cc lc curl -sS --no-progress-meter -Z -i -d "$TZ" "$URL/v1/chat/completions" \
		"$URL/v1/chat/completions" \
		> "$T/cz.i" 2>>"$T/cc.err"
	check "curl -Z -i: both hits show their head ($(grep -ci '^x-ratectl-cache: hit' "$T/cz.i") of 2)" \
		[ "$(grep -ci '^x-ratectl-cache: hit' "$T/cz.i")" -eq 2 ]
	check "the shim said nothing on stderr" [ ! -s "$T/cc.err" ]
fi
# A linked program, every way it can drive libcurl; each asks its own
# request N times (the first fetches, the others wait for it or hit).
k=0
for mode in "-n 4" "-n 4 -m 4" "-n 4 -m 4 --late" "-n 4 -m 4 --socket" "-n 6 -m 2 --socket" \
	"-t 4 -n 3" "-n 4 --fwrite"; do
	k=$((k + 1))
	a=$(sent sc)
	# shellcheck disable=SC2086
	under cc lc "$P/shim_client" $mode --heads --deadline 20 -d "$(tbody "prog$k")" \
		"$URL/v1/chat/completions" > "$T/cp.$k" 2>"$T/cp.$k.err"
	b=$(sent sc)
	set -- $(okf "$T/cp.$k")
	check "linked program ($mode): $1 answered 200 whole ($(cat "$T/cp.$k")), $(($1 - 1)) from the cache, the provider saw 1 ($((b - a)))" \
		sh -c '[ "$1" -gt 1 ] && [ "$2" -eq "$1" ] && [ "$3" -eq 0 ] && [ "$4" -eq $(($1 - 1)) ] &&
			[ "$6" -eq 1 ] && [ ! -s "$7" ]' _ "$@" $((b - a)) "$T/cp.$k.err"
done
# Bodies around libcurl's largest write, from a server answering them.
for n in 16383 16384 16385 163840; do
	awk -v n="$n" 'BEGIN {while (n-- > 0) printf "%c", 97 + n % 26}' > "$T/big.$n"
	rawbody "$T/big.$n.resp" '200 OK' "$T/big.$n" 'Content-Type: text/plain'
	raw big$n "$T/big.$n.resp"
	conf cb$n '[fake]' "match = 127.0.0.1:$PORT" 'requests = 100/s' 'cache = 1m'
	under cb$n lb$n "$P/shim_client" -n 3 --heads --same "$T/big.$n" -d "$(tbody big)" \
		"$URL/v1/chat/completions" > "$T/cb.$n" 2>&1
	under cb$n lb$n "$P/shim_client" -n 3 -m 3 --heads --same "$T/big.$n" -d "$(tbody big)" \
		"$URL/v1/chat/completions" >> "$T/cb.$n" 2>&1
	set -- $(okf "$T/cb.$n")
	check "a body of $n bytes: 6 answers byte for byte, in writes of at most 16 KiB, 5 from the cache, 1 sent ($(posts big$n))" \
		sh -c '[ "$2" -eq 6 ] && [ "$3" -eq 0 ] && [ "$4" -eq 5 ] && [ "$6" -eq 1 ]' _ \
		"$@" "$(posts big$n)"
done
# Answers never stored: a 500, a 429 (retry-after-ms: 1, so that the
# budget's cooldown is short), a body cut short.  The same request sent
# again after a failure is a retry: the retry budget lets them all go.
printf '{"error":{"message":"boom"}}' > "$T/err.body"
rawbody "$T/r500.resp" '500 Internal Server Error' "$T/err.body" 'Content-Type: application/json'
rawbody "$T/r429.resp" '429 Too Many Requests' "$T/err.body" 'Content-Type: application/json' \
	'retry-after-ms: 1'
for st in 500 429; do
	raw r$st "$T/r$st.resp"
	conf cr$st '[fake]' "match = 127.0.0.1:$PORT" 'requests = 100/s' 'cache = 1m' \
		'retry_budget = 100%'
	under cr$st lr$st "$P/shim_client" -n 3 --heads -d "$(tbody err)" "$URL/v1/chat/completions" \
		> "$T/cr.$st" 2>&1
	set -- $(okf "$T/cr.$st")
	check "a $st is not stored: 3 sent ($(posts r$st)), 3 answered $st ($(cat "$T/cr.$st"))" \
		sh -c '[ "$6" -eq 3 ] && [ "$4" -eq 0 ] && [ "$5" -eq 3 ]' _ "$@" "$(posts r$st)"
done
if sys "curl: a body cut short is not stored"; then
	raw cut "$T/big.16385.resp"
	conf ccut '[fake]' "match = 127.0.0.1:$PORT" 'requests = 100/s' 'cache = 1m'
	under ccut lcut curl -s -o /dev/null --max-filesize 100 -d "$(tbody cut)" \
		"$URL/v1/chat/completions" 2>/dev/null
	rc=$?
	under ccut lcut "$P/shim_client" -n 2 --heads --same "$T/big.16385" -d "$(tbody cut)" \
		"$URL/v1/chat/completions" > "$T/ccut" 2>&1
	set -- $(okf "$T/ccut")
	check "curl --max-filesize 100 fails (exit $rc) and stores nothing: the next is sent, then hit ($(posts cut) sent; $(cat "$T/ccut"))" \
		sh -c '[ "$6" -eq 63 ] && [ "$7" -eq 2 ] && [ "$2" -eq 2 ] && [ "$4" -eq 1 ]' _ \
		"$@" "$rc" "$(posts cut)"
fi
}
if [ "${SHIM_ONLY:-}" = cache ]; then
	cache_tests
	[ "$FAILS" -eq 0 ]
	exit
fi

# --- The object itself -----------------------------------------------------
syms=$(nm -D --defined-only "$SHIM" 2>/dev/null | awk '{print $3}')
check "the shim defines curl_easy_perform, the multi calls and dlopen" \
	sh -c 'for s in curl_easy_perform curl_easy_setopt curl_multi_add_handle \
		curl_multi_info_read curl_multi_remove_handle dlopen; do
		echo "$1" | grep -qx "$s" || exit 1; done' _ "$syms"
extra=$(echo "$syms" | grep -cv '^curl_\|^dlopen$')
if [ "$extra" -eq 0 ]; then
	pass "the shim exports nothing but its hooks"
else
	skip "the shim exports nothing but its hooks" "$extra internal symbols visible (link flags)"
fi
check "the shim does not link libcurl" \
	sh -c '! readelf -d "$1" 2>/dev/null | grep NEEDED | grep -q libcurl' _ "$SHIM"
"$P/shim_jscan" 20000 > "$T/jscan.out" 2>&1
check "the JSON scanner: known cases and 20000 generated bodies ($(tail -n 1 "$T/jscan.out"))" \
	grep -q ', 0 failures' "$T/jscan.out"

# --- The curl command, serial, 8 processes ---------------------------------
if sys "the curl command, serial and --parallel, 8 processes"; then
# The provider allows 20/s with a burst of 10; the budget is 20/s, burst 1
# (the provider's burst absorbs scheduling delays between admission and
# arrival on a loaded machine).
start s1 --rps 20 --burst-requests 10
conf c1 '[fake]' "match = 127.0.0.1:$PORT" 'requests = 20/s burst 1'
W=
for w in 1 2 3 4 5 6 7 8; do
	# shellcheck disable=SC2046
	under c1 l1 curl -s -w '%{http_code}\n' -d "$BODY" $(urls 10 "$URL/v1/chat/completions") \
		> "$T/c1.$w" 2>>"$T/c1.err" &
	W="$W $!"
done
reap
stats s1 "$URL"
r=$(rate "$T/s1.log")
check "curl serial x8: 80 requests all answered 200 (got $(cat "$T"/c1.[1-8] | grep -c '^200$'))" \
	[ "$(cat "$T"/c1.[1-8] | grep -c '^200$')" -eq 80 ]
check "curl serial x8: zero 429s at the provider (got $(jnum "$T/s1.stats" limited_429))" \
	[ "$(jnum "$T/s1.stats" limited_429)" = 0 ]
check "curl serial x8: $r/s achieved, >= 90% of the limit of 20/s" ge "$r" 18
check "the ledger admitted each transfer once (got $(peek l1 fake admitted))" \
	[ "$(peek l1 fake admitted)" = 80 ]

# --- The curl command, --parallel, 8 processes -----------------------------
start s2 --rps 20 --burst-requests 10
conf c2 '[fake]' "match = 127.0.0.1:$PORT" 'requests = 20/s burst 1'
W=
for w in 1 2 3 4 5 6 7 8; do
	# shellcheck disable=SC2046
	under c2 l2 curl -s --no-progress-meter -Z --parallel-max 5 -w '%{http_code}\n' \
		-d "$BODY" $(urls 10 "$URL/v1/chat/completions") > "$T/c2.$w" 2>>"$T/c2.err" &
	W="$W $!"
done
reap
stats s2 "$URL"
r=$(rate "$T/s2.log")
check "curl --parallel x8: 80 requests all answered 200 (got $(cat "$T"/c2.[1-8] | grep -c '^200$'))" \
	[ "$(cat "$T"/c2.[1-8] | grep -c '^200$')" -eq 80 ]
check "curl --parallel x8: zero 429s at the provider (got $(jnum "$T/s2.stats" limited_429))" \
	[ "$(jnum "$T/s2.stats" limited_429)" = 0 ]
check "curl --parallel x8: $r/s achieved, >= 90% of the limit of 20/s" ge "$r" 18
check "the ledger admitted each parallel transfer once (got $(peek l2 fake admitted))" \
	[ "$(peek l2 fake admitted)" = 80 ]
fi

# --- A C program linked with libcurl: easy and multi, 4 processes each -----
start s3 --rps 20 --burst-requests 10
conf c3 '[fake]' "match = 127.0.0.1:$PORT" 'requests = 20/s burst 1'
W=
for w in 1 2 3 4; do
	under c3 l3 "$P/shim_client" -n 10 -d "$BODY" "$URL/v1/chat/completions" \
		> "$T/c3.easy.$w" 2>>"$T/c3.err" &
	W="$W $!"
	under c3 l3 "$P/shim_client" -n 10 -m 4 -d "$BODY" "$URL/v1/chat/completions" \
		> "$T/c3.multi.$w" 2>>"$T/c3.err" &
	W="$W $!"
done
reap
cat "$T"/c3.easy.* > "$T/c3.easy"
cat "$T"/c3.multi.* > "$T/c3.multi"
stats s3 "$URL"
r=$(rate "$T/s3.log")
check "linked program, easy x4 + multi x4: 80 answered 200 (easy $(sumf "$T/c3.easy" ok), multi $(sumf "$T/c3.multi" ok))" \
	[ $(($(sumf "$T/c3.easy" ok) + $(sumf "$T/c3.multi" ok))) -eq 80 ]
check "linked program: zero 429s at the provider (got $(jnum "$T/s3.stats" limited_429))" \
	[ "$(jnum "$T/s3.stats" limited_429)" = 0 ]
check "linked program: $r/s achieved, >= 90% of 20/s" ge "$r" 18
check "linked program: every body reached the program whole (bad $(($(sumf "$T/c3.easy" bad) + $(sumf "$T/c3.multi" bad))))" \
	[ $(($(sumf "$T/c3.easy" bad) + $(sumf "$T/c3.multi" bad))) -eq 0 ]
check "linked program: 80 admissions in the ledger (got $(peek l3 fake admitted))" \
	[ "$(peek l3 fake admitted)" = 80 ]
# Threads of one process, easy and multi, a concurrency cap among them.
start s3t --rps 20 --burst-requests 10
conf c3t '[fake]' "match = 127.0.0.1:$PORT" 'requests = 20/s burst 1' 'concurrency = 3'
under c3t l3t "$P/shim_client" -t 6 -n 5 -d "$BODY" "$URL/v1/chat/completions" \
	> "$T/c3t.out" 2>"$T/c3t.err"
under c3t l3t "$P/shim_client" -t 3 -m 3 -n 10 -d "$BODY" "$URL/v1/chat/completions" \
	>> "$T/c3t.out" 2>>"$T/c3t.err"
stats s3t "$URL"
check "threads: 6 x 5 easy + 3 x 10 multi answered 200 ($(sumf "$T/c3t.out" ok)), zero 429s ($(jnum "$T/s3t.stats" limited_429))" \
	sh -c '[ "$1" -eq 60 ] && [ "$2" = 0 ]' _ "$(sumf "$T/c3t.out" ok)" \
	"$(jnum "$T/s3t.stats" limited_429)"
check "threads: 60 admitted, no slot left held ($(peek l3t fake admitted), $(peek l3t fake inflight))" \
	sh -c '[ "$1" = 60 ] && [ "$2" = 0 ]' _ "$(peek l3t fake admitted)" \
	"$(peek l3t fake inflight)"

# --- Programs that load libcurl at run time -----------------------------------
start s4
conf c4 '[fake]' "match = 127.0.0.1:$PORT" 'requests = 100/s'
n=0
for lib in libcurl.so.4 libcurl-gnutls.so.4; do
	under c4 l4 "$P/shim_dlopen" "$lib" "$URL/v1/chat/completions" 5 "$BODY" \
		> "$T/c4.out" 2>"$T/c4.err"
	n=$((n + 5))
	check "dlopen($lib, RTLD_LOCAL): 5 transfers answered 200 ($(cat "$T/c4.out"))" \
		[ "$(sumf "$T/c4.out" ok)" = 5 ]
	check "dlopen($lib, RTLD_LOCAL): throttled through the ledger (admitted $(peek l4 fake admitted) of $n)" \
		[ "$(peek l4 fake admitted)" = $n ]
	check "dlopen($lib, RTLD_LOCAL): nothing said on stderr" [ ! -s "$T/c4.err" ]
done
# Objects linked with libcurl and loaded later, as pycurl's and PHP's are;
# PHP uses RTLD_DEEPBIND, which plain symbol interposition never sees.
CC=${CC:-cc}
cat > "$T/plugin.c" <<'PLUGIN'
#include <curl/curl.h>
static size_t discard(char *p, size_t s, size_t n, void *u) { (void)p; (void)u; return s * n; }
int plugin_run(const char *url, int n, const char *body, int *ok, int *limited)
{
	int i, failed = 0;

	for (i = 0; i < n; i++) {
		CURL *e = curl_easy_init();
		long code = 0;

		curl_easy_setopt(e, CURLOPT_URL, url);
		curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
		failed += curl_easy_perform(e) != CURLE_OK;
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
		*ok += code == 200;
		*limited += code == 429;
		curl_easy_cleanup(e);
	}
	return failed;
}
PLUGIN
if command -v "$CC" >/dev/null 2>&1 &&
   "$CC" -shared -fPIC -o "$T/plugin.so" "$T/plugin.c" -lcurl 2>"$T/cc.err" &&
   "$CC" -shared -fPIC -Wl,-z,now -o "$T/plugin_now.so" "$T/plugin.c" -lcurl 2>>"$T/cc.err" &&
   "$CC" -shared -fPIC -o "$T/plugin_gnutls.so" "$T/plugin.c" -l:libcurl-gnutls.so.4 2>>"$T/cc.err"; then
	# The sanitizers refuse RTLD_DEEPBIND (google/sanitizers#611).
	deep="plugin.so --deepbind:plugin_now.so --deepbind:plugin_gnutls.so --deepbind"
	sys "plugins loaded with RTLD_DEEPBIND" "the sanitizers refuse RTLD_DEEPBIND" || deep=
	IFS0=$IFS
	IFS=:
	set -- "plugin.so" $deep
	IFS=$IFS0
	for v in "$@"; do
		# shellcheck disable=SC2086
		under c4 l4 "$P/shim_dlopen" --plugin "$T/"$v "$URL/v1/chat/completions" 3 \
			"$BODY" > "$T/c4.out" 2>"$T/c4.err"
		n=$((n + 3))
		check "plugin $v: 3 answered 200 and 3 admitted (admitted $(peek l4 fake admitted) of $n)" \
			sh -c '[ "$1" = 3 ] && [ "$2" = "$3" ]' _ "$(sumf "$T/c4.out" ok)" \
			"$(peek l4 fake admitted)" $n
	done
	# Two libcurl builds in one process: the second is left alone, safely.
	a=$(peek l4 fake admitted)
	RATECTL_CONFIG=$T/c4.conf RATECTL_LEDGER=$T/l4 LD_PRELOAD="$PRELOAD libcurl.so.4" \
		"$P/shim_dlopen" --plugin "$T/plugin_gnutls.so" "$URL/v1/chat/completions" 3 \
		"$BODY" > "$T/c4.out" 2>"$T/c4.err"
	check "a second libcurl (GnuTLS beside OpenSSL) works, unthrottled ($(cat "$T/c4.out"))" \
		sh -c '[ "$1" = 3 ] && [ "$2" = "$3" ]' _ "$(sumf "$T/c4.out" ok)" "$a" \
		"$(peek l4 fake admitted)"
	check "and the shim says so once" \
		[ "$(grep -c '^ratectl-preload: .*second libcurl' "$T/c4.err")" -eq 1 ]
else
	skip "plugins loaded with RTLD_LOCAL / RTLD_DEEPBIND" "no C compiler to build them"
fi

# PHP's curl extension, loaded with RTLD_DEEPBIND, when PHP is installed.
if ! command -v php >/dev/null 2>&1 || ! php -m 2>/dev/null | grep -qx curl; then
	skip "PHP's curl extension (RTLD_DEEPBIND)" "php with its curl extension is not installed"
elif sys "PHP's curl extension (RTLD_DEEPBIND)"; then
	cat > "$T/t.php" <<'PHP'
<?php
$ok = 0;
for ($i = 0; $i < 3; $i++) {
	$c = curl_init($argv[1]);
	curl_setopt($c, CURLOPT_POSTFIELDS, $argv[2]);
	curl_setopt($c, CURLOPT_RETURNTRANSFER, 1);
	$body = curl_exec($c);
	if (curl_getinfo($c, CURLINFO_HTTP_CODE) == 200 && strpos($body, '"usage"') !== false)
		$ok++;
}
echo "ok=$ok\n";
PHP
	a=$(peek l4 fake admitted)
	under c4 l4 php "$T/t.php" "$URL/v1/chat/completions" "$BODY" > "$T/c4.php" 2>&1
	check "PHP curl_exec(): 3 whole answers, 3 admitted ($(cat "$T/c4.php"); admitted $a then $(peek l4 fake admitted))" \
		sh -c '[ "$1" = ok=3 ] && [ "$3" -eq $(($2 + 3)) ]' _ "$(cat "$T/c4.php")" "$a" \
		"$(peek l4 fake admitted)"
fi

# Python's pycurl, an extension loaded with RTLD_LOCAL, when installed.
PY=
for py in python3 /usr/bin/python3; do
	if "$py" -c 'import pycurl' >/dev/null 2>&1; then PY=$py; break; fi
done
if [ -z "$PY" ]; then
	skip "Python's pycurl (RTLD_LOCAL extension), easy and multi" "pycurl is not installed"
elif sys "Python's pycurl (RTLD_LOCAL extension), easy and multi"; then
	cat > "$T/t.py" <<'PY'
import io, sys, pycurl
ok = 0
for i in range(2):
    buf = io.BytesIO()
    c = pycurl.Curl()
    c.setopt(pycurl.URL, sys.argv[1])
    c.setopt(pycurl.POSTFIELDS, sys.argv[2])
    c.setopt(pycurl.WRITEDATA, buf)
    c.perform()
    ok += c.getinfo(pycurl.RESPONSE_CODE) == 200 and b'"usage"' in buf.getvalue()
    c.close()
m, hs = pycurl.CurlMulti(), []
for i in range(2):
    c = pycurl.Curl()
    c.setopt(pycurl.URL, sys.argv[1])
    c.setopt(pycurl.POSTFIELDS, sys.argv[2])
    c.setopt(pycurl.WRITEFUNCTION, lambda b: None)
    m.add_handle(c)
    hs.append(c)
for _ in range(1000):
    if m.perform()[1] == 0:
        break
    m.select(1.0)
ok += sum(h.getinfo(pycurl.RESPONSE_CODE) == 200 for h in hs)
print("ok=%d" % ok)
PY
	a=$(peek l4 fake admitted)
	under c4 l4 "$PY" "$T/t.py" "$URL/v1/chat/completions" "$BODY" > "$T/c4.py" 2>&1
	check "pycurl, 2 easy + 2 multi: whole answers, 4 admitted ($(cat "$T/c4.py"); admitted $a then $(peek l4 fake admitted))" \
		sh -c '[ "$1" = ok=4 ] && [ "$3" -eq $(($2 + 4)) ]' _ "$(cat "$T/c4.py")" "$a" \
		"$(peek l4 fake admitted)"
fi

# --- A 429 with Retry-After: 2 pauses every worker, who resume spread ------
# The provider allows 4/s (burst 4), the budget 8/s (burst 8): the first
# round of 8 gets 4 refusals, each with Retry-After: 2.
start s5 --rps 4 --burst-requests 4 --retry-after 2
conf c5 '[fake]' "match = 127.0.0.1:$PORT" 'requests = 8/s burst 8'
W=
for w in 1 2 3 4 5 6 7 8; do
	under c5 l5 "$P/shim_client" -n 3 -d "$BODY" "$URL/v1/chat/completions" \
		> "$T/c5.$w" 2>>"$T/c5.err" &
	W="$W $!"
done
reap
sed -n 's/.*"t_ms":\([0-9.]*\).*"status":\([0-9]*\).*/\1 \2/p' "$T/s5.log" | sort -n > "$T/s5.t"
t0=$(awk '$2 == 429 {print $1; exit}' "$T/s5.t")
t0=${t0:-0}
# Requests sent before the cooldown reached the ledger may land just after.
inpause=$(awk -v t="$t0" '$1 > t + 300 && $1 < t + 1950' "$T/s5.t" | wc -l)
after=$(awk -v t="$t0" '$1 >= t + 1950 {print $1}' "$T/s5.t" | head -n 8)
first=$(echo "$after" | head -n 1)
span=$(echo "$after" | awk 'NR == 1 {a = $1} {b = $1} END {print b - a}')
check "a 429 was answered (at ${t0} ms)" [ "$t0" != 0 ]
check "no request reached the provider during the 2 s pause (got $inpause)" [ "$inpause" -eq 0 ]
check "the workers resumed after 2 s (first at +$(awk -v a="${first:-0}" -v t="$t0" 'BEGIN {print a - t}') ms)" \
	[ -n "$first" ]
check "and spread out: the next 8 requests span $span ms (>= 400)" ge "${span:-0}" 400
check "the refusals reached the programs: no retries by default ($(cat "$T"/c5.* | sumf /dev/stdin s429) 429s)" \
	[ "$(cat "$T"/c5.* | sumf /dev/stdin s429)" -gt 0 ]

# --- Learning from headers ------------------------------------------------------
# OpenAI's: the provider says 7 of 10 requests a minute remain; the ledger
# thought 57 of its 60 a minute (refilling 1 a second).
start s6 --rpm 10
conf c6 '[fake]' "match = 127.0.0.1:$PORT" 'requests = 60/min'
under c6 l6 "$P/shim_client" -n 3 -d "$BODY" "$URL/v1/chat/completions" > /dev/null 2>"$T/c6.err"
a=$(peek l6 fake requests_avail)
check "x-ratelimit-remaining-requests tightens the per-minute limit (available $a <= 9)" [ "${a:-999}" -le 9 ]
# Anthropic's, from a server that sends nothing else.
reset=$(date -u -d '+60 seconds' +%Y-%m-%dT%H:%M:%SZ)
printf 'HTTP/1.1 200 OK\r\nanthropic-ratelimit-tokens-remaining: 100\r\nanthropic-ratelimit-tokens-reset: %s\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}' \
	"$reset" > "$T/r7"
raw r7 "$T/r7"
conf c7 '[fake]' "match = 127.0.0.1:$PORT" 'requests = 600/min' 'tokens = 600/min'
under c7 l7 "$P/shim_client" -d "$BODY" "$URL/v1/messages" > /dev/null 2>"$T/c7.err"
a=$(peek l7 fake tokens_avail)
check "anthropic-ratelimit-tokens-remaining + RFC 3339 reset tighten tokens ($a <= 110)" \
	[ "${a:-999999}" -le 110 ]
# Recorded header sets: each header describes one window (per minute for
# OpenAI, Azure OpenAI and Anthropic; w= for the IETF draft) and tightens
# only that limit: neither the daily limit of the same dimension nor the
# per-second one (the shortest period) is touched.
# rawresp FILE HEADER...: a 200 with those headers and an OpenAI usage body.
rawresp() {
	f=$1; shift
	b='{"id":"x","object":"chat.completion","usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}}'
	{ printf 'HTTP/1.1 200 OK\r\n'; for h in "$@"; do printf '%s\r\n' "$h"; done
	  printf 'Content-Type: application/json\r\nContent-Length: %s\r\nConnection: close\r\n\r\n%s' \
		"$(printf '%s' "$b" | wc -c)" "$b"; } > "$f"
}
at() { date -u -d "+$1 seconds" +%Y-%m-%dT%H:%M:%SZ; }
rawresp "$T/h.openai" 'x-request-id: req_1b2c' 'openai-processing-ms: 412' \
	'x-ratelimit-limit-requests: 10000' 'x-ratelimit-limit-tokens: 200000' \
	'x-ratelimit-remaining-requests: 9999' 'x-ratelimit-remaining-tokens: 190000' \
	'x-ratelimit-reset-requests: 6ms' 'x-ratelimit-reset-tokens: 3s'
rawresp "$T/h.azure" 'apim-request-id: 6f0c' 'x-ms-region: East US' \
	'x-ratelimit-limit-requests: 1200' 'x-ratelimit-limit-tokens: 200000' \
	'x-ratelimit-remaining-requests: 1199' 'x-ratelimit-remaining-tokens: 190000'
rawresp "$T/h.anthropic" 'request-id: req_011C' \
	'anthropic-ratelimit-requests-limit: 4000' 'anthropic-ratelimit-requests-remaining: 3999' \
	"anthropic-ratelimit-requests-reset: $(at 1)" \
	'anthropic-ratelimit-tokens-limit: 200000' 'anthropic-ratelimit-tokens-remaining: 190000' \
	"anthropic-ratelimit-tokens-reset: $(at 3)" \
	'anthropic-ratelimit-input-tokens-limit: 160000' 'anthropic-ratelimit-input-tokens-remaining: 150000' \
	"anthropic-ratelimit-input-tokens-reset: $(at 3)" \
	'anthropic-ratelimit-output-tokens-limit: 40000' 'anthropic-ratelimit-output-tokens-remaining: 40000' \
	"anthropic-ratelimit-output-tokens-reset: $(at 1)"
rawresp "$T/h.ietf" 'RateLimit-Policy: "burst";q=100;w=60, "tokens-min";q=200000;w=60' \
	'RateLimit: "burst";r=50;t=30, "tokens-min";r=190000;t=3'
for v in openai azure anthropic ietf; do
	raw h$v "$T/h.$v"
	conf ch$v '[fake]' "match = 127.0.0.1:$PORT" 'tokens = 10000/s, 200000/min, 2000000/day' \
		'requests = 10/s, 100/min, 100000/day'
	under ch$v lh$v "$P/shim_client" -d "$BODY" "$URL/v1/chat/completions" \
		> "$T/ch$v.out" 2>"$T/ch$v.err"
	m=$(peek lh$v fake tokens_avail_60s)
	d=$(peek lh$v fake tokens_avail_86400s)
	check "$v headers, 190000 tokens left: the per-minute limit tightened ($m <= 194000), the daily one untouched ($d >= 1999900)" \
		sh -c '[ "${1:-999999}" -le 194000 ] && [ "${2:-0}" -ge 1999900 ]' _ "$m" "$d"
done
# The same budget has a per-second tokens limit: the shortest period is
# not the window the headers describe.
rq=$(peek lhietf fake requests_avail_60s)
rd=$(peek lhietf fake requests_avail_86400s)
check "IETF RateLimit \"burst\";r=50 with policy w=60: requests per minute $rq <= 51, per day $rd >= 99999" \
	sh -c '[ "${1:-999}" -le 51 ] && [ "${2:-0}" -ge 99999 ]' _ "$rq" "$rd"
# Values that cannot be trusted change nothing.
printf 'HTTP/1.1 200 OK\r\nx-ratelimit-remaining-requests: -1\r\nx-ratelimit-reset-requests: 1s\r\nx-ratelimit-remaining-tokens: lots\r\nanthropic-ratelimit-requests-remaining: 0\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}' > "$T/r8"
raw r8 "$T/r8"
conf c8 '[fake]' "match = 127.0.0.1:$PORT" 'requests = 600/min' 'tokens = 100000/min'
under c8 l8 "$P/shim_client" -d "$BODY" "$URL/v1/chat/completions" > /dev/null 2>"$T/c8.err"
a=$(peek l8 fake requests_avail)
t=$(peek l8 fake tokens_avail)
check "-1, garbage and 0 without a reset are ignored (requests $a >= 598, tokens $t >= 99000)" \
	sh -c '[ "${1:-0}" -ge 598 ] && [ "${2:-0}" -ge 99000 ]' _ "$a" "$t"
# retry-after-ms, and Retry-After as an HTTP date.
printf 'HTTP/1.1 429 Too Many Requests\r\nretry-after-ms: 1500\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}' > "$T/r9"
raw r9 "$T/r9"
conf c9 '[fake]' "match = 127.0.0.1:$PORT" 'requests = 600/min'
under c9 l9 "$P/shim_client" "$URL/x" > /dev/null 2>"$T/c9.err"
cd_ms=$(peek l9 fake cooldown_ms)
check "retry-after-ms: 1500 starts a 1.5 s cooldown (left: $cd_ms ms)" \
	sh -c '[ "${1:-0}" -gt 1000 ] && [ "${1:-0}" -le 1500 ]' _ "$cd_ms"
printf 'HTTP/1.1 429 Too Many Requests\r\nRetry-After: %s\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}' \
	"$(LC_ALL=C date -u -d '+6 seconds' '+%a, %d %b %Y %H:%M:%S GMT')" > "$T/r10"
raw r10 "$T/r10"
conf c10 '[fake]' "match = 127.0.0.1:$PORT" 'requests = 600/min'
under c10 l10 "$P/shim_client" "$URL/x" > /dev/null 2>"$T/c10.err"
cd_ms=$(peek l10 fake cooldown_ms)
check "Retry-After as an HTTP date starts a cooldown until then (left: $cd_ms ms)" \
	sh -c '[ "${1:-0}" -gt 3500 ] && [ "${1:-0}" -le 6000 ]' _ "$cd_ms"

# --- Tokens: estimated from the body, reconciled from usage --------------------
# Two budgets by path; /v1/messages has no max_tokens in its body.
start s11
conf c11 '[chat]' "match = 127.0.0.1:$PORT/v1/chat" 'tokens = 1000000/min' \
	'[msgs]' "match = 127.0.0.1:$PORT/v1/messages" 'tokens = 1000000/min' \
	'default_max_tokens = 300'
NOMAX='{"model":"m","messages":[{"role":"user","content":"hello there"}]}'
bytes=$(printf '%s' "$BODY" | wc -c)
prompt=$(( (bytes + 3) / 4 ))
under c11 l11 "$P/shim_client" --fwrite -d "$BODY" "$URL/v1/chat/completions" > /dev/null 2>"$T/c11.err"
under c11 l11 "$P/shim_client" -n 2 -m 2 -d "$BODY" "$URL/v1/chat/completions" > /dev/null 2>>"$T/c11.err"
under c11 l11 "$P/shim_client" -n 1 --copy -d "$BODY" "$URL/v1/chat/completions" > /dev/null 2>>"$T/c11.err"
est=$((prompt + 20))
use=$((prompt + 10))
check "estimate = body bytes / 4 + max_tokens: $((4 * est)) for 4 requests (got $(peek l11 chat tokens_estimated))" \
	[ "$(peek l11 chat tokens_estimated)" = $((4 * est)) ]
check "reconciled to OpenAI usage.total_tokens: $((4 * use)) (got $(peek l11 chat tokens_actual))" \
	[ "$(peek l11 chat tokens_actual)" = $((4 * use)) ]
under c11 l11 "$P/shim_client" -d "$NOMAX" "$URL/v1/messages" > /dev/null 2>>"$T/c11.err"
nb=$(printf '%s' "$NOMAX" | wc -c)
check "no max_tokens: default_max_tokens is charged ($(( (nb + 3) / 4 + 300 )), got $(peek l11 msgs tokens_estimated))" \
	[ "$(peek l11 msgs tokens_estimated)" = $(( (nb + 3) / 4 + 300 )) ]
check "reconciled to Anthropic input_tokens + output_tokens ($(( (nb + 3) / 4 )), got $(peek l11 msgs tokens_actual))" \
	[ "$(peek l11 msgs tokens_actual)" = $(( (nb + 3) / 4 )) ]
check "the shim said nothing on stderr" sh -c '! [ -s "$1" ]' _ "$T/c11.err"

# --- Streamed answers (SSE): whole, byte for byte, reconciled -----------------
# Bodies of 100 KiB to 1 MiB in HTTP chunks of 1 byte to 64 KiB; the usage
# comes in the stream's last events.  Each is compared with the same
# request fetched without the shim (the provider's bytes depend on the
# request only).
SOAI='{"model":"m","max_tokens":200,"stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}'
SANT='{"model":"m","max_tokens":300,"stream":true,"messages":[{"role":"user","content":"hello"}]}'
SNOUSE='{"model":"m","max_tokens":40,"stream":true,"messages":[{"role":"user","content":"hi"}]}'
# Tokens a streamed answer in file $1 reports: OpenAI total_tokens, else
# Anthropic input_tokens + the last output_tokens.
susage() {
	t=$(grep -o '"total_tokens":[0-9]*' "$1" | tail -n 1 | sed 's/.*://')
	if [ -n "$t" ]; then echo "$t"; return; fi
	i=$(grep -o '"input_tokens":[0-9]*' "$1" | head -n 1 | sed 's/.*://')
	o=$(grep -o '"output_tokens":[0-9]*' "$1" | tail -n 1 | sed 's/.*://')
	echo $((${i:-0} + ${o:-0}))
}
n=0
for sz in 102400 150001 1048576; do
	n=$((n + 1))
	start st$n --stream-bytes $sz
	conf cst$n '[chat]' "match = 127.0.0.1:$PORT/v1/chat" 'tokens = 1000000/min' \
		'[msgs]' "match = 127.0.0.1:$PORT/v1/messages" 'tokens = 1000000/min'
	curl -s -d "$SOAI" -o "$T/st$n.oai" "$URL/v1/chat/completions"
	curl -s -d "$SANT" -o "$T/st$n.ant" "$URL/v1/messages"
	curl -s -d "$SNOUSE" -o "$T/st$n.nouse" "$URL/v1/chat/completions"
	uo=$(susage "$T/st$n.oai")
	ua=$(susage "$T/st$n.ant")
	bo=$(wc -c < "$T/st$n.oai")
	if sys "curl, streamed $sz bytes: OpenAI and Anthropic whole"; then
		under cst$n lst$n curl -s -d "$SOAI" -o "$T/st$n.oai.shim" "$URL/v1/chat/completions" \
			2>"$T/st$n.err"
		rc=$?
		check "curl, streamed OpenAI answer of $bo bytes: exit 0 (got $rc), byte for byte" \
			sh -c '[ "$1" -eq 0 ] && cmp -s "$2" "$3"' _ "$rc" "$T/st$n.oai" "$T/st$n.oai.shim"
		under cst$n lst$n curl -s -d "$SANT" -o "$T/st$n.ant.shim" "$URL/v1/messages" \
			2>>"$T/st$n.err"
		rc=$?
		check "curl, streamed Anthropic answer: exit 0 (got $rc), byte for byte" \
			sh -c '[ "$1" -eq 0 ] && cmp -s "$2" "$3"' _ "$rc" "$T/st$n.ant" "$T/st$n.ant.shim"
	fi
	# The same through a linked program, easy and multi (sanitizer builds too).
	under cst$n lst$n "$P/shim_client" -n 2 --same "$T/st$n.oai" -d "$SOAI" \
		"$URL/v1/chat/completions" > "$T/st$n.c" 2>>"$T/st$n.err"
	under cst$n lst$n "$P/shim_client" -n 2 -m 2 --same "$T/st$n.oai" -d "$SOAI" \
		"$URL/v1/chat/completions" >> "$T/st$n.c" 2>>"$T/st$n.err"
	under cst$n lst$n "$P/shim_client" -n 2 -m 2 --same "$T/st$n.ant" -d "$SANT" \
		"$URL/v1/messages" >> "$T/st$n.c" 2>>"$T/st$n.err"
	check "linked program, streamed $sz bytes, easy and multi: 6 answers byte for byte (ok $(sumf "$T/st$n.c" ok), bad $(sumf "$T/st$n.c" bad))" \
		sh -c '[ "$1" -eq 6 ] && [ "$2" -eq 0 ]' _ "$(sumf "$T/st$n.c" ok)" "$(sumf "$T/st$n.c" bad)"
	k=$([ "$SYS" = 1 ] && echo 1 || echo 0)
	check "streamed OpenAI usage reconciled: $(((k + 4) * uo)) tokens (got $(peek lst$n chat tokens_actual))" \
		[ "$(peek lst$n chat tokens_actual)" = $(((k + 4) * uo)) ]
	check "streamed Anthropic usage reconciled: input + last output = $(((k + 2) * ua)) (got $(peek lst$n msgs tokens_actual))" \
		[ "$(peek lst$n msgs tokens_actual)" = $(((k + 2) * ua)) ]
	check "the shim said nothing on stderr" sh -c '! [ -s "$1" ]' _ "$T/st$n.err"
done
# Without stream_options.include_usage the stream says nothing: the estimate stands.
under cst$n lst${n}b "$P/shim_client" --same "$T/st$n.nouse" -d "$SNOUSE" \
	"$URL/v1/chat/completions" > "$T/st.nouse" 2>&1
e=$(peek lst${n}b chat tokens_estimated)
a=$(peek lst${n}b chat tokens_actual)
r=$(peek lst${n}b chat tokens_reconciled)
check "a stream without usage: whole ($(cat "$T/st.nouse")), its estimate of $e stands (reconciled: $r estimated, $a actual)" \
	sh -c '[ "$1" = "ok=1 bad=0" ] && [ "${2:-0}" -gt 0 ] && [ "$3" = 0 ] && [ "$4" = 0 ]' _ \
	"$(sed -n 's/.* \(ok=[0-9]*\) .* \(bad=[0-9]*\) .*/\1 \2/p' "$T/st.nouse")" "$e" "$r" "$a"

# --- Unmatched hosts are untouched ------------------------------------------
# The budget matches another port and would allow one request a minute.
start s12
other=$((PORT == 65535 ? PORT - 1 : PORT + 1))
conf c12 '[other]' "match = 127.0.0.1:$other" 'requests = 1/min burst 1' 'timeout = 1s'
t1=$(date +%s%N)
under c12 l12 "$P/shim_client" -n 10 -d "$BODY" "$URL/v1/chat/completions" \
	> "$T/c12.out" 2>"$T/c12.err"
t2=$(date +%s%N)
check "10 transfers to an unmatched host pass at once ($(( (t2 - t1) / 1000000 )) ms, $(cat "$T/c12.out"))" \
	sh -c '[ "$1" -eq 10 ] && [ "$2" -lt 5000 ]' _ "$(sumf "$T/c12.out" ok)" \
	$(( (t2 - t1) / 1000000 ))
check "and leave the ledger alone: never even created" [ ! -e "$T/l12" ]
if sys "unmatched output byte for byte; programs that never touch a matched host"; then
curl -s "$URL/nope" > "$T/c12.plain"
under c12 l12 curl -s "$URL/nope" > "$T/c12.shim" 2>>"$T/c12.err"
check "their output is byte for byte what it is without the shim" cmp -s "$T/c12.plain" "$T/c12.shim"
check "and nothing is said on stderr" [ ! -s "$T/c12.err" ]

# --- A program that never touches a matched host -----------------------------
conf c13 '[fake]' 'match = 127.0.0.1' 'requests = 1/min'
sh -c 'echo hello; printf "%s\n" a b c | sort -r; exit 3' > "$T/c13.plain" 2>&1
rc_plain=$?
under c13 l13 sh -c 'echo hello; printf "%s\n" a b c | sort -r; exit 3' > "$T/c13.shim" 2>&1
rc_shim=$?
check "a program without libcurl runs as without the shim (same output, status $rc_shim)" \
	sh -c 'cmp -s "$1" "$2" && [ "$3" = "$4" ]' _ "$T/c13.plain" "$T/c13.shim" "$rc_plain" "$rc_shim"
check "and no ledger is created for it" [ ! -e "$T/l13" ]
RATECTL_CONFIG=$T/none.conf RATECTL_LEDGER=$T/l13 LD_PRELOAD=$PRELOAD sh -c 'echo hello' \
	> "$T/c13.noconf" 2>&1
check "even without any config file: no message" [ "$(cat "$T/c13.noconf")" = hello ]
# dlopen() of a bare name searches the caller's RUNPATH, and $ORIGIN is the
# caller's directory: the shim's dlopen must not make them its own.
mkdir -p "$T/app/lib"
printf 'int foo(void) { return 42; }\n' > "$T/foo.c"
cat > "$T/app.c" <<'APP'
#include <dlfcn.h>
#include <stdio.h>
int main(int argc, char **argv)
{
	void *h = dlopen(argv[1], RTLD_NOW);
	int (*f)(void);

	(void)argc;
	if (!h || !(*(void **)&f = dlsym(h, "foo"))) {
		printf("%s\n", dlerror());
		return 1;
	}
	printf("foo %d\n", f());
	return 0;
}
APP
if "$CC" -shared -fPIC -o "$T/app/lib/libfoo.so" "$T/foo.c" 2>>"$T/cc.err" &&
   "$CC" -o "$T/app/app" "$T/app.c" -ldl -Wl,--enable-new-dtags,-rpath,'$ORIGIN/lib' 2>>"$T/cc.err"; then
	for f in libfoo.so '$ORIGIN/lib/libfoo.so'; do
		under c13 l13 "$T/app/app" "$f" > "$T/c13.app" 2>&1
		check "dlopen(\"$f\") from a program with RUNPATH \$ORIGIN/lib works under the shim" \
			grep -qx 'foo 42' "$T/c13.app"
	done
else
	skip "dlopen along the caller's RUNPATH" "no C compiler"
fi
fi

# --- on_error: the ledger cannot be used ---------------------------------------
# A ledger directory writable by others is refused by the library.
start s14
mkdir "$T/unsafe" && chmod 777 "$T/unsafe"
conf open '[fake]' "match = 127.0.0.1:$PORT" 'requests = 10/s'
conf closed '[fake]' "match = 127.0.0.1:$PORT" 'requests = 10/s' 'on_error = closed'
under open unsafe "$P/shim_client" -n 2 -d "$BODY" "$URL/v1/chat/completions" \
	> "$T/c14.open" 2>"$T/c14.open.err"
check "on_error = open: transfers pass ($(cat "$T/c14.open"))" \
	[ "$(sumf "$T/c14.open" ok)" -eq 2 ]
check "and the shim says why, once, on stderr" \
	sh -c '[ "$(grep -c "^ratectl-preload: ledger unusable: .*on_error = open" "$1")" -eq 1 ] &&
		[ "$(wc -l < "$1")" -eq 1 ]' _ "$T/c14.open.err"
stats s14 "$URL"
before=$(jnum "$T/s14.stats" requests)
under closed unsafe "$P/shim_client" -d "$BODY" "$URL/v1/chat/completions" \
	> "$T/c14.easy" 2>"$T/c14.closed.err"
under closed unsafe "$P/shim_client" -n 2 -m 2 -d "$BODY" "$URL/v1/chat/completions" \
	> "$T/c14.multi" 2>>"$T/c14.closed.err"
check "on_error = closed: the easy interface fails with 42 and says why" \
	sh -c '[ "$1" -eq 1 ] && grep -q "^shim_client: (42) ratectl: .*on_error = closed" "$2"' \
	_ "$(sumf "$T/c14.easy" failed)" "$T/c14.closed.err"
if sys "on_error = closed with the curl command"; then
	under closed unsafe curl -sS -o /dev/null -d "$BODY" "$URL/v1/chat/completions" \
		2>"$T/c14.curl.err"
	rc=$?
	check "on_error = closed: curl fails with 42, aborted by callback (rc $rc)" [ "$rc" -eq 42 ]
	check "its error says why" grep -q \
		'curl: (42) ratectl: budget .fake.: ledger unusable.*on_error = closed' "$T/c14.curl.err"
fi
stats s14 "$URL"
check "the multi interface fails its transfers too ($(cat "$T/c14.multi"))" \
	[ "$(sumf "$T/c14.multi" failed)" -eq 2 ]
check "and nothing reached the provider ($before then $(jnum "$T/s14.stats" requests))" \
	[ "$(jnum "$T/s14.stats" requests)" = "$before" ]
# A budget that cannot be had in time fails the transfer rather than hang.
conf c15 '[slow]' "match = 127.0.0.1:$PORT" 'requests = 1/min burst 1' 'timeout = 1s'
under c15 l15 "$P/shim_client" -n 2 -d "$BODY" "$URL/v1/chat/completions" \
	> "$T/c15.out" 2>"$T/c15.err"
check "the second of two requests on a 1/min budget fails after timeout = 1s ($(cat "$T/c15.out"))" \
	sh -c '[ "$1" -eq 1 ] && [ "$2" -eq 1 ] && grep -q "(42) ratectl: .*not available within 1s" "$3"' \
	_ "$(sumf "$T/c15.out" ok)" "$(sumf "$T/c15.out" failed)" "$T/c15.err"

# A request whose estimate exceeds the tokens burst can never pass: it
# fails at once, saying so with the figures, and is never sent (it used
# to be admitted at a discount, charged as the burst).
BIG='{"model":"m","max_tokens":20000,"messages":[{"role":"user","content":"hi"}]}'
conf c15b '[big]' "match = 127.0.0.1:$PORT" 'tokens = 10000/min burst 1000' 'timeout = 5s'
stats s14 "$URL"
before=$(jnum "$T/s14.stats" requests)
t1=$(date +%s%N)
under c15b l15b "$P/shim_client" -d "$BIG" "$URL/v1/chat/completions" > "$T/c15b.easy" 2>"$T/c15b.err"
under c15b l15b "$P/shim_client" -m 1 -d "$BIG" "$URL/v1/chat/completions" > "$T/c15b.multi" 2>>"$T/c15b.err"
t2=$(date +%s%N)
stats s14 "$URL"
need=$(( ($(printf '%s' "$BIG" | wc -c) + 3) / 4 + 20000 ))
check "an estimate of $need tokens above the burst of 1000 fails at once, easy and multi ($(cat "$T/c15b.easy") / $(cat "$T/c15b.multi"), $(( (t2 - t1) / 1000000 )) ms)" \
	sh -c '[ "$1" -eq 1 ] && [ "$2" -eq 1 ] && [ "$3" -lt 4000 ]' _ "$(sumf "$T/c15b.easy" failed)" \
	"$(sumf "$T/c15b.multi" failed)" $(( (t2 - t1) / 1000000 ))
check "with a message naming the budget and the figures" \
	grep -q "^shim_client: (42) ratectl: budget 'big': this request needs $need tokens, more than the burst of 1000" "$T/c15b.err"
check "and nothing reached the provider ($before then $(jnum "$T/s14.stats" requests)), nothing admitted ($(peek l15b big admitted))" \
	sh -c '[ "$1" = "$2" ] && [ "$3" = 0 ]' _ "$before" "$(jnum "$T/s14.stats" requests)" \
	"$(peek l15b big admitted)"
if sys "curl: an estimate above the burst fails with 42"; then
	under c15b l15b curl -sS -o /dev/null -d "$BIG" "$URL/v1/chat/completions" 2>"$T/c15b.curl"
	rc=$?
	check "curl: an estimate above the burst fails with 42 (rc $rc) and says why" \
		sh -c '[ "$1" -eq 42 ] && grep -q "curl: (42) ratectl: budget .big.: this request needs" "$2"' _ "$rc" "$T/c15b.curl"
fi

# --- Retries (off by default): hidden refusals, whole bodies ----------------
# The provider allows 2/s; the budget thinks 50/s: refusals are certain.
start s16 --rps 2 --burst-requests 2
conf c16 '[fake]' "match = 127.0.0.1:$PORT" 'requests = 50/s' 'retries = 4' 'retry_budget = 100%'
W=
for w in 1 2 3 4; do
	under c16 l16 "$P/shim_client" -n 3 -d "$BODY" "$URL/v1/chat/completions" \
		> "$T/c16.$w" 2>>"$T/c16.err" &
	W="$W $!"
done
reap
cat "$T"/c16.[1-4] > "$T/c16"
stats s16 "$URL"
seen=$(sumf "$T/c16" s429)
hidden=$(peek l16 fake retries)
check "the provider refused some ($(jnum "$T/s16.stats" limited_429)): each was retried or shown ($hidden retried + $seen shown)" \
	[ "$(jnum "$T/s16.stats" limited_429)" -eq $((hidden + seen)) ]
check "retries happened ($hidden) and the programs got 200s for them ($(sumf "$T/c16" ok) of 12)" \
	sh -c '[ "$1" -gt 0 ] && [ "$2" = "$3" ]' _ "$hidden" "$(sumf "$T/c16" ok)" \
	"$(jnum "$T/s16.stats" ok)"
check "no program saw a refused body mixed into its answer (bad $(sumf "$T/c16" bad))" \
	[ "$(sumf "$T/c16" bad)" -eq 0 ]

# --- A concurrency cap with the multi interface --------------------------------
# Transfers that cannot start wait outside the multi handle; no deadlock.
start s17 --latency 100ms
conf c17 '[fake]' "match = 127.0.0.1:$PORT" 'requests = 100/s' 'concurrency = 2'
W=
under c17 l17 "$P/shim_client" -n 16 -m 8 -d "$BODY" "$URL/v1/chat/completions" \
	> "$T/c17.a" 2>"$T/c17.err" &
W="$W $!"
if [ "$SYS" = 1 ]; then
	# shellcheck disable=SC2046
	under c17 l17 curl -s --no-progress-meter -Z --parallel-max 8 -w '%{http_code}\n' \
		-d "$BODY" $(urls 16 "$URL/v1/chat/completions") > "$T/c17.b" 2>>"$T/c17.err" &
else            # the same load from a second test program
	under c17 l17 "$P/shim_client" -n 16 -m 8 -d "$BODY" "$URL/v1/chat/completions" \
		> "$T/c17.b2" 2>>"$T/c17.err" &
fi
W="$W $!"
reap
[ "$SYS" = 1 ] || awk -v n="$(sumf "$T/c17.b2" ok)" 'BEGIN {while (n-- > 0) print 200}' > "$T/c17.b"
stats s17 "$URL"
check "concurrency = 2: 32 transfers from two multi programs all done ($(sumf "$T/c17.a" ok) + $(grep -c '^200$' "$T/c17.b"))" \
	[ $(($(sumf "$T/c17.a" ok) + $(grep -c '^200$' "$T/c17.b"))) -eq 32 ]
check "never more than 2 at the provider at once (max $(jnum "$T/s17.stats" max_in_flight))" \
	[ "$(jnum "$T/s17.stats" max_in_flight)" -le 2 ]
check "and every slot was given back (in flight: $(peek l17 fake inflight))" \
	[ "$(peek l17 fake inflight)" = 0 ]

# --- The config file is reloaded when it changes -------------------------------
start s18 --latency 100ms
conf c18 '[fake]' "match = 127.0.0.1:$PORT" 'requests = 100/s'
under c18 l18 "$P/shim_client" -n 30 -d "$BODY" "$URL/v1/chat/completions" > "$T/c18" 2>&1 &
W=$!
sleep 1
conf c18 '[fake]' 'match = 127.0.0.9' 'requests = 100/s' '# no longer ours'
reap
a=$(peek l18 fake admitted)
check "a running program follows an edited config (admitted $a of 30 before the match went away)" \
	sh -c '[ "${1:-0}" -ge 3 ] && [ "${1:-0}" -le 25 ] && [ "$2" -eq 30 ]' _ "$a" \
	"$(sumf "$T/c18" ok)"

# --- Tenants and tags: charged, and their headers never sent ------------------
# The program's list carries ratectl's headers (twice, in any case) among
# its own; the budget's match is /v1 only, so --then /other on the same
# handle is not ratectl's and must go out with the program's whole list:
# the list the shim installed for the matched transfer was taken back.
rawresp "$T/tn.resp"
raw tn "$T/tn.resp"
conf c19 '[fake]' "match = 127.0.0.1:$PORT/v1" 'requests = 100/s' \
	'tenant = header X-Ratectl-Tenant' 'tenant_template = t-*' 'tag = header X-Ratectl-Tag' \
	'[t-*]' 'requests = 50/s'
# heads FILE PATH: the request heads of FILE for requests to PATH, one a line.
heads() { awk -v p="POST $2 " 'index($0, p) == 1 {h = 1} $0 == "--" {h = 0} h' "$1"; }
under c19 l19 "$P/shim_client" -n 3 -d "$BODY" -H 'Accept: application/json' \
	-H 'X-Ratectl-Tenant: alice' -H 'x-ratectl-tag: route/a' -H 'X-Keep: 1' \
	-H 'x-ratectl-tenant: bob' -H 'X-RATECTL-TAG;' --then "$URL/other" \
	"$URL/v1/chat/completions" > "$T/c19" 2>"$T/c19.err"
st=$?
under c19 l19 "$P/shim_client" -n 4 -m 2 -d "$BODY" -H 'X-Ratectl-Tenant: alice' \
	-H 'X-Ratectl-Tag: route/a' -H 'X-Keep: 1' "$URL/v1/chat/completions" > "$T/c19m" 2>>"$T/c19.err"
st=$((st + $?))
heads "$T/tn.req" /v1/chat/completions > "$T/tn.v1"
heads "$T/tn.req" /other > "$T/tn.other"
check "tenant and tag headers: 7 matched transfers (easy, multi) and 3 unmatched done, the program's list unchanged ($(cat "$T/c19" "$T/c19m" | tr '\n' ' ')exit $st)" \
	sh -c '[ "$1" -eq 10 ] && [ "$2" -eq 0 ] && [ "$(grep -c "^POST /v1/" "$3")" -eq 7 ]' _ \
	"$(($(sumf "$T/c19" ok) + $(sumf "$T/c19m" ok)))" "$st" "$T/tn.req"
check "the provider never saw X-Ratectl-Tenant / X-Ratectl-Tag, and saw the program's other headers ($(grep -ci '^x-ratectl' "$T/tn.v1") of ratectl's, $(grep -c '^X-Keep: 1' "$T/tn.v1") X-Keep)" \
	sh -c '! grep -qi "^x-ratectl" "$1" && [ "$(grep -c "^X-Keep: 1" "$1")" -eq 7 ]' _ "$T/tn.v1"
check "the same handle sent to an unmatched path carries the program's whole list again ($(grep -ci '^x-ratectl-tenant' "$T/tn.other") tenant headers in 3)" \
	sh -c '[ "$(grep -c "^X-Ratectl-Tenant: alice" "$1")" -eq 3 ] &&
		[ "$(grep -c "^x-ratectl-tag: route/a" "$1")" -eq 3 ] &&
		[ "$(grep -c "^X-Keep: 1" "$1")" -eq 3 ]' _ "$T/tn.other"
check "the tenant's budget was charged with the key's: t-alice $(peek l19 t-alice admitted), fake $(peek l19 fake admitted) of 7" \
	sh -c '[ "$1" = 7 ] && [ "$2" = 7 ]' _ "$(peek l19 t-alice admitted)" "$(peek l19 fake admitted)"
"$B/ratectl" --ledger "$T/l19" show t-alice --json > "$T/c19.show" 2>&1
check "and the tag from the header counted on it (route/a)" grep -q '"route/a"' "$T/c19.show"
check "no notice for valid tenants and tags" sh -c '! grep -q "ratectl-preload" "$1"' _ "$T/c19.err"

# Tenant values at the edge of a budget name (a template of '*' leaves
# all 64 characters) and far past it: 63 and 64 are charged; 65, 66 and
# 1 MiB are refused before anything is sent (CURLE_ABORTED_BY_CALLBACK
# with the reason, and one notice), easy and multi alike.
conf c20 '[fake]' "match = 127.0.0.1:$PORT/v1" 'requests = 100/s' \
	'tenant = header X-Ratectl-Tenant' 'tenant_template = *' '[*]' 'requests = 50/s'
before=$(grep -c '^POST /v1/' "$T/tn.req")
for n in 63 64 65 66 1048576; do
	for m in 0 1; do
		under c20 l20 "$P/shim_client" -m $m -d "$BODY" --fill X-Ratectl-Tenant $n \
			"$URL/v1/chat/completions" > "$T/c20.$n.$m" 2>"$T/c20.$n.$m.err"
		echo "exit=$?" >> "$T/c20.$n.$m"
	done
done
a64=$(printf '%064d' 0 | tr 0 a)
good=0
for f in "$T"/c20.63.0 "$T"/c20.63.1 "$T"/c20.64.0 "$T"/c20.64.1; do
	grep -q ' ok=1 ' "$f" && grep -q '^exit=0' "$f" && good=$((good + 1))
done
check "tenant values of 63 and 64 bytes sent ($good of 4) and charged to their budgets ($(peek l20 "${a64%a}" admitted) and $(peek l20 "$a64" admitted) of 2)" \
	sh -c '[ "$1" = 4 ] && [ "$2" = 2 ] && [ "$3" = 2 ]' _ \
	"$good" "$(peek l20 "${a64%a}" admitted)" "$(peek l20 "$a64" admitted)"
bad=0
for n in 65 66 1048576; do
	for m in 0 1; do
		grep -q 'failed=1' "$T/c20.$n.$m" && grep -q '^exit=0' "$T/c20.$n.$m" &&
			grep -q 'shim_client: (42) .*X-Ratectl-Tenant.*not sent' "$T/c20.$n.$m.err" &&
			[ "$(grep -c '^ratectl-preload: .*not sent' "$T/c20.$n.$m.err")" = 1 ] || bad=$((bad + 1))
	done
done
check "tenant values of 65, 66 bytes and 1 MiB refused locally with a notice, easy and multi ($bad of 6 not)" \
	[ "$bad" -eq 0 ]
check "none of them reached the provider ($(($(grep -c '^POST /v1/' "$T/tn.req") - before)) sent, 4 expected)" \
	[ "$(($(grep -c '^POST /v1/' "$T/tn.req") - before))" -eq 4 ]
check "the key's budget was charged only for those sent ($(peek l20 fake admitted) of 4)" \
	[ "$(peek l20 fake admitted)" = 4 ]

# An invalid tag header is dropped with its own notice (not the notice of
# a request that can never pass, whose once-only slot it used to take):
# one transfer with both gets both said.
conf c21 '[fake]' "match = 127.0.0.1:$PORT/v1" 'requests = 100/s' 'tokens = 100/min' \
	'tag = header X-Ratectl-Tag'
under c21 l21 "$P/shim_client" -d "$BODY" -H 'X-Ratectl-Tag: no tags with blanks' \
	"$URL/v1/chat/completions" > "$T/c21" 2>"$T/c21.err"
under c21 l21 "$P/shim_client" -d '{"model":"m","max_tokens":5000}' \
	-H 'X-Ratectl-Tag: no tags with blanks' "$URL/v1/chat/completions" >> "$T/c21" 2>"$T/c21b.err"
heads "$T/tn.req" /v1/chat/completions > "$T/tn.v1"
check "a bad tag: sent untagged, said once ($(grep -c 'is not a tag' "$T/c21.err")), and not sent to the provider" \
	sh -c '[ "$(grep -c "^ratectl-preload: .*is not a tag" "$1")" = 1 ] && grep -q "ok=1" "$2" &&
		[ "$(grep -c "^POST /v1/" "$3")" -eq 12 ] && ! grep -qi "^x-ratectl" "$3"' _ \
	"$T/c21.err" "$T/c21" "$T/tn.v1"
check "a bad tag and a cost that never passes in one process: both notices ($(grep -c '^ratectl-preload' "$T/c21b.err"))" \
	sh -c 'grep -q "^ratectl-preload: .*is not a tag" "$1" &&
		grep -q "^ratectl-preload: .*burst" "$1"' _ "$T/c21b.err"

cache_tests

[ "$FAILS" -eq 0 ]
