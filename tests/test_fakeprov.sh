#!/bin/sh
# test_fakeprov.sh - checks the referee itself: ratectl-fakeprov admits
# exactly its burst, refuses the rest with 429 + Retry-After, reports its
# limits in headers, counts in /stats what reached it, reconciles tokens
# to the usage it reports, and exits by itself.  Everything on 127.0.0.1;
# every wait bounded.  Run as: B=build tests/test_fakeprov.sh
set -u
B=${B:-build}
FP=$B/ratectl-fakeprov
T=$(mktemp -d "${TMPDIR:-/tmp}/fakeprov.XXXXXX") || exit 1
PIDS=
FAILS=0

cleanup() {
	for p in $PIDS; do kill "$p" 2>/dev/null; done
	for p in $PIDS; do wait "$p" 2>/dev/null; done
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

pass() { echo "ok - $1"; }
fail() { echo "not ok - $1"; FAILS=$((FAILS + 1)); }
# check DESCRIPTION COMMAND...: one test line from a command's status.
check() { d=$1; shift; if "$@"; then pass "$d"; else fail "$d"; fi; }

# Value of header $2 in dump $1 (case-insensitive name, CR stripped).
hdr() { tr -d '\r' < "$1" | grep -i "^$2:" | head -n 1 | sed 's/^[^:]*: *//'; }
# Integer field $2 of the compact JSON in $1.
jnum() { grep -o "\"$2\":[0-9]*" "$1" | head -n 1 | sed 's/.*://'; }
# Status code of the header dump $1.
status() { tr -d '\r' < "$1" | head -n 1 | cut -d ' ' -f 2; }

# start NAME ARGS...: runs fakeprov on a free port; sets URL.
start() {
	name=$1; shift
	"$FP" --port 0 --port-file "$T/$name.port" --max-seconds 30 --quiet "$@" \
		2>"$T/$name.err" &
	PIDS="$PIDS $!"
	eval "PID_$name=$!"
	i=0
	while [ ! -s "$T/$name.port" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
	URL=http://127.0.0.1:$(cat "$T/$name.port" 2>/dev/null)
}

# post URL BODY OUT: headers to OUT.h, body to OUT.b.
post() {
	curl -s --max-time 5 -X POST -H 'Content-Type: application/json' \
		-d "$2" -D "$3.h" -o "$3.b" "$1"
}

# Waits (bounded) for PID $1 to exit; its status in RC, 124 if it did not.
wait_exit() {
	i=0
	while kill -0 "$1" 2>/dev/null && [ $i -lt 60 ]; do sleep 0.05; i=$((i + 1)); done
	if kill -0 "$1" 2>/dev/null; then RC=124; else wait "$1"; RC=$?; fi
}

if [ ! -x "$FP" ]; then echo "not ok - $FP is not built"; exit 1; fi
if ! command -v curl >/dev/null 2>&1; then echo "not ok - curl is required"; exit 1; fi

# --- Server A: 10 requests per minute, burst 10 ---------------------
start a --rpm 10 --tpm 100000 --log "$T/a.log"
A=$URL
check "fakeprov writes its port file" test -s "$T/a.port"

BODY='{"model":"t","max_tokens":10}' # 29 bytes: prompt 8, completion 5
pids=
for n in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30; do
	curl -s --max-time 5 -o /dev/null -w '%{http_code}\n' -X POST -d "$BODY" \
		"$A/v1/chat/completions" > "$T/code.$n" &
	pids="$pids $!"
done
for p in $pids; do wait "$p"; done
ok=$(cat "$T"/code.* | grep -c '^200$')
limited=$(cat "$T"/code.* | grep -c '^429$')
check "30 parallel requests: exactly the burst of 10 pass (got $ok)" [ "$ok" -eq 10 ]
check "the other 20 get 429 (got $limited)" [ "$limited" -eq 20 ]

post "$A/v1/chat/completions" "$BODY" "$T/r429"
ra=$(hdr "$T/r429.h" retry-after)
check "the next request gets 429" [ "$(status "$T/r429.h")" = 429 ]
check "429 carries Retry-After >= 1 (got '$ra')" [ "${ra:-0}" -ge 1 ]
check "429 body says rate_limit_exceeded" grep -q '"type":"rate_limit_exceeded"' "$T/r429.b"
check "x-ratelimit-limit-requests is 10" [ "$(hdr "$T/r429.h" x-ratelimit-limit-requests)" = 10 ]
check "x-ratelimit-remaining-requests is 0" [ "$(hdr "$T/r429.h" x-ratelimit-remaining-requests)" = 0 ]
reset=$(hdr "$T/r429.h" x-ratelimit-reset-requests)
check "x-ratelimit-reset-requests is a Go duration (got '$reset')" \
	sh -c 'echo "$1" | grep -Eq "^([0-9]+m)?[0-9]+(\.[0-9]+)?s$"' _ "$reset"
check "x-ratelimit-limit-tokens is 100000" [ "$(hdr "$T/r429.h" x-ratelimit-limit-tokens)" = 100000 ]

curl -s --max-time 5 -o "$T/a.stats" "$A/stats"
check "/stats counts 31 requests" [ "$(jnum "$T/a.stats" requests)" = 31 ]
check "/stats counts 10 ok" [ "$(jnum "$T/a.stats" ok)" = 10 ]
check "/stats counts 21 limited" [ "$(jnum "$T/a.stats" limited_429)" = 21 ]
check "/stats counts 130 tokens (10 x (8 + 5))" [ "$(jnum "$T/a.stats" tokens)" = 130 ]
check "/stats has max_in_flight" grep -q '"max_in_flight":[1-9]' "$T/a.stats"
check "--log has one line per request" [ "$(wc -l < "$T/a.log")" -eq 31 ]

curl -s --max-time 5 -o "$T/nf.b" -w '%{http_code}' "$A/nope" > "$T/nf.code"
check "unknown path gets a JSON 404" sh -c '[ "$(cat "$1.code")" = 404 ] && grep -q "\"error\"" "$1.b"' _ "$T/nf"

# --- Server B: 1000 tokens per minute, Anthropic shape -----------------
start b --tpm 1000
MSG='{"model":"claude-test","max_tokens":600,"messages":[]}'
prompt=$(( ($(printf '%s' "$MSG" | wc -c) + 3) / 4 ))
used=$((prompt + 300))
post "$URL/v1/messages" "$MSG" "$T/m1"
check "/v1/messages answers 200" [ "$(status "$T/m1.h")" = 200 ]
check "Anthropic usage: input_tokens $prompt, output_tokens 300" \
	grep -q "\"usage\":{\"input_tokens\":$prompt,\"output_tokens\":300}" "$T/m1.b"
check "Anthropic body is a message" grep -q '"type":"message"' "$T/m1.b"
check "anthropic-ratelimit-tokens-limit is 1000" \
	[ "$(hdr "$T/m1.h" anthropic-ratelimit-tokens-limit)" = 1000 ]
check "anthropic-ratelimit-tokens-remaining is 1000 - $used" \
	[ "$(hdr "$T/m1.h" anthropic-ratelimit-tokens-remaining)" = $((1000 - used)) ]
check "anthropic-ratelimit-tokens-reset is RFC 3339 UTC" \
	sh -c 'echo "$1" | grep -Eq "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$"' \
	_ "$(hdr "$T/m1.h" anthropic-ratelimit-tokens-reset)"
# Admitted at the estimate (prompt + 600) but charged the usage (prompt +
# 300): a second request fits only because of that reconciliation.
post "$URL/v1/messages" "$MSG" "$T/m2"
post "$URL/v1/messages" "$MSG" "$T/m3"
check "tokens are charged as reported: the second request passes" [ "$(status "$T/m2.h")" = 200 ]
check "the third exceeds the token bucket: 429" [ "$(status "$T/m3.h")" = 429 ]
check "that 429 names the token limit" grep -q 'tokens per minute' "$T/m3.b"
curl -s --max-time 5 -o "$T/b.stats" "$URL/stats"
check "/stats counts $((2 * used)) tokens" [ "$(jnum "$T/b.stats" tokens)" = $((2 * used)) ]

# --- Embeddings: the input is all of the usage -------------------------
post "$URL/v1/embeddings" '{"model":"e","input":"abcdefgh"}' "$T/e1"
check "/v1/embeddings answers 200" [ "$(status "$T/e1.h")" = 200 ]
check "with a vector and usage of the input only" \
	grep -q '"embedding":\[.*\],"model":"e","usage":{"prompt_tokens":[0-9]*,"total_tokens":[0-9]*}' "$T/e1.b"
check "and its total is its prompt" \
	[ "$(jnum "$T/e1.b" prompt_tokens)" = "$(jnum "$T/e1.b" total_tokens)" ]

# --- Bounded runs exit by themselves ---------------------------------
start c --max-requests 2
curl -s --max-time 5 -o /dev/null -X POST "$URL/v1/chat/completions"
curl -s --max-time 5 -o /dev/null -X POST "$URL/v1/chat/completions"
wait_exit "$PID_c"
check "--max-requests 2 exits 0 after two requests (rc $RC)" [ "$RC" -eq 0 ]
"$FP" --port 0 --max-seconds 1 2>"$T/d.err" &
PIDS="$PIDS $!"
wait_exit $!
check "--max-seconds 1 exits 0 by itself (rc $RC)" [ "$RC" -eq 0 ]
check "it prints the summary line" grep -q '^fakeprov: 0 requests, 0 ok, 0 429, 0 500, ' "$T/d.err"

# --- Bad arguments -----------------------------------------------------
"$FP" --rpm abc 2>"$T/bad.err"; rc=$?
check "bad number exits 2 (rc $rc)" [ "$rc" -eq 2 ]
check "and says why" grep -q "^ratectl-fakeprov: --rpm: 'abc' is not a number$" "$T/bad.err"
"$FP" --bind 0.0.0.0 2>/dev/null; rc=$?
check "non-loopback --bind exits 2 (rc $rc)" [ "$rc" -eq 2 ]

[ "$FAILS" -eq 0 ]
