#!/bin/sh
# Short chaos run: workers killed with SIGKILL at random moments, among
# them tenants' workers whose budgets expire and are made again while they
# are admitted against, and a sweeper; then the ledger must be clean (see
# tests/progs/chaos.c).  `make chaos` runs the long one.
set -u
B=${B:-build}
seconds=${CHAOS_SECONDS:-3}
workers=${CHAOS_WORKERS:-8}
tenants=${CHAOS_TENANTS:-4}
dir=$(mktemp -d /tmp/ratectl-chaos-test.XXXXXX)
trap 'rm -rf "$dir"' EXIT
fail=0
ok() { echo "ok - $*"; }
notok() { echo "not ok - $*"; fail=1; }

if out=$(timeout 120 "$B/progs/chaos" -w "$workers" -t "$tenants" -s "$seconds" \
	-l "$dir/ledger"); then
	ok "chaos: no cap violation, within the GCRA bound, no budget removed early, slots all free afterwards, tenants' budgets all removed once idle"
else
	notok "chaos run failed"
fi
echo "$out" | sed 's/^/# /'
if [ -x "$B/ratectl" ]; then
	if "$B/ratectl" --ledger "$dir/ledger" check >"$dir/check.out" 2>&1; then
		ok "ratectl check is clean after the chaos"
	else
		notok "ratectl check after the chaos"
		sed 's/^/# /' "$dir/check.out"
	fi
fi
exit $fail
