#!/bin/sh
# demo.sh - `make demo`: eight workers share one API limit, first on their
# own and then under the preload shim, against a fake provider on
# 127.0.0.1 that allows 120 requests a minute (2/s, burst 2).
#
# Each worker makes 4 chat completions with the real curl command, as a
# careful shell script would: `curl --retry`, which waits as long as a 429's
# Retry-After says before trying again.  The two runs do the same work; the
# table shows what it cost the provider: requests sent, 429s, the rate
# achieved against the limit, and the wall time.  About 35 seconds.
# Run as: B=build tools/demo.sh
set -u
B=${B:-build}
WORKERS=8
EACH=4
RPM=120
BURST=2
FP=$B/ratectl-fakeprov
SHIM=$(cd "$B" 2>/dev/null && pwd)/libratectl-preload.so
T=$(mktemp -d "${TMPDIR:-/tmp}/ratectl-demo.XXXXXX") || exit 1
FPID=

cleanup() {
	[ -n "$FPID" ] && kill "$FPID" 2>/dev/null && wait "$FPID" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

die() { echo "ratectl demo: $*" >&2; exit 1; }

command -v curl >/dev/null 2>&1 || die "the curl command is needed: tools/deps.sh test"
for f in "$FP" "$SHIM"; do
	[ -e "$f" ] || die "$f is missing: run make first"
done

# The provider's published rate, shared by every process on this host.  The
# burst is kept below the provider's: requests reach it a little after
# their admission, unevenly, and that headroom absorbs the difference.
cat > "$T/ratectl.conf" <<EOF
[fakeprov]
match    = 127.0.0.1
requests = $RPM/min burst $((BURST - 1))
EOF

BODY='{"model":"fake","max_tokens":16,"messages":[{"role":"user","content":"hello"}]}'

# run CMD...: CMD, under the shim when PRE names it.
run() {
	if [ -n "$PRE" ]; then
		RATECTL_CONFIG="$T/ratectl.conf" RATECTL_LEDGER="$T/ledger" \
			LD_PRELOAD="$PRE" "$@"
	else
		"$@"
	fi
}

# One worker: $EACH completions, each retried on 429 after Retry-After.
# (The output goes to a file: curl cannot retry into /dev/null.)
worker() {
	i=0
	while [ $i -lt $EACH ]; do
		run curl -s -o "$T/out.$1" --retry 30 --retry-max-time 50 -d "$BODY" \
			"$URL/v1/chat/completions"
		i=$((i + 1))
	done
}

ms() { echo $(( $(date +%s%N) / 1000000 )); }
jnum() { grep -o "\"$2\":[0-9]*" "$1" | head -n 1 | sed 's/.*://'; }

# phase NAME PRELOAD: a fresh provider, $WORKERS workers (under PRELOAD
# when not empty); its numbers in $T/NAME.{sent,limited,ok,ms}.
phase() {
	PRE=$2
	rm -f "$T/port"
	"$FP" --port 0 --port-file "$T/port" --rpm $RPM --burst-requests $BURST \
		--max-seconds 90 --quiet &
	FPID=$!
	i=0
	while [ ! -s "$T/port" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
	[ -s "$T/port" ] || die "the fake provider did not start"
	URL=http://127.0.0.1:$(cat "$T/port")
	t0=$(ms)
	w=1
	pids=
	while [ $w -le $WORKERS ]; do
		worker $w &
		pids="$pids $!"
		w=$((w + 1))
	done
	for p in $pids; do wait "$p"; done
	echo $(( $(ms) - t0 )) > "$T/$1.ms"
	curl -s --max-time 5 -o "$T/$1.stats" "$URL/stats" || die "no /stats"
	kill "$FPID" 2>/dev/null
	wait "$FPID" 2>/dev/null
	FPID=
	jnum "$T/$1.stats" requests > "$T/$1.sent"
	jnum "$T/$1.stats" limited_429 > "$T/$1.limited"
	jnum "$T/$1.stats" ok > "$T/$1.ok"
}

row() {
	printf '%-26s %18s %18s\n' "$1" "$2" "$3"
}
rate() {
	awk -v ok="$(cat "$T/$1.ok")" -v m="$(cat "$T/$1.ms")" -v lim="$RPM" \
		'BEGIN {r = ok * 1000 / m; printf "%.2f/s (%d%%)", r, r * 6000 / lim + 0.5}'
}
secs() { awk -v m="$(cat "$T/$1.ms")" 'BEGIN {printf "%.1f s", m / 1000}'; }

total=$((WORKERS * EACH))
echo "ratectl demo: $WORKERS workers make $total chat completions with curl --retry,"
echo "against a fake provider that allows $RPM requests/min ($((RPM / 60))/s, burst $BURST)."
echo
printf '%s' "1. plain curl ...           "
phase plain ""
echo "done in $(secs plain)"
printf '%s' "2. curl under the shim ...  "
phase shim "$SHIM"
echo "done in $(secs shim)"
echo

row "" "plain curl" "under the shim"
row "completions" "$(cat "$T/plain.ok")/$total" "$(cat "$T/shim.ok")/$total"
row "requests sent" "$(cat "$T/plain.sent")" "$(cat "$T/shim.sent")"
row "429 Too Many Requests" "$(cat "$T/plain.limited")" "$(cat "$T/shim.limited")"
row "achieved rate (of 2/s)" "$(rate plain)" "$(rate shim)"
row "wall time" "$(secs plain)" "$(secs shim)"
echo
echo "Under the shim each curl process took its turn from one ledger that every"
echo "process on the host shares (LMDB), with no change to the command:"
echo "  LD_PRELOAD=$SHIM \\"
echo "      RATECTL_CONFIG=/etc/ratectl.conf curl ..."
if [ -x "$B/ratectl" ]; then
	echo
	echo "The ledger after the second run (ratectl show fakeprov):"
	"$B/ratectl" --ledger "$T/ledger" show fakeprov | sed 's/^/  /'
fi
