#!/bin/sh
# test_cli.sh - the `ratectl` command through the real binary: every
# command's happy path and bad input, config errors with file:line, JSON
# and Prometheus output that parse, `run` under xargs -P 16 within the
# GCRA bound, SIGKILLed `run` processes leaking no slot, `apply` changing
# the pace of 16 running workers live, and check --repair of a damaged
# ledger.  Every command is bounded with timeout(1); the whole takes
# about 15 s.  Run as: B=build sh tests/test_cli.sh
set -u
B=${B:-build}
RC=$B/ratectl
W=$B/progs/cli_worker
T=$(mktemp -d "${TMPDIR:-/tmp}/ratectl-cli.XXXXXX") || exit 1
L=$T/ledger
PIDS=
FAILS=0
export RATECTL_LEDGER="$L"
export RATECTL_CONFIG="$T/absent.conf"

cleanup() {
	for p in $PIDS; do kill -9 "$p" 2>/dev/null; done
	for f in "$T"/kid.*; do [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null; done
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

pass() { echo "ok - $1"; }
fail() { echo "not ok - $1"; FAILS=$((FAILS + 1)); }
# check DESCRIPTION COMMAND...: one test line from a command's status.
check() { d=$1; shift; if "$@"; then pass "$d"; else fail "$d"; fi; }

# r ARGS...: ratectl, bounded; output in $T/out, errors in $T/err, status in S.
r() { timeout 20 "$RC" "$@" >"$T/out" 2>"$T/err"; S=$?; }
has() { grep -q -- "$1" "$T/out"; }
err_has() { grep -q -- "$1" "$T/err"; }
lacks() { ! grep -q -- "$1" "$T/out"; }
not_err_has() { ! grep -q -- "$1" "$T/err"; }
# status_is N DESCRIPTION: the last r's status was N.
status_is() {
	if [ "$S" -eq "$1" ]; then pass "$2"; else
		fail "$2 (status $S, expected $1)"; sed -n 's/^/#   /; 1,10p' "$T/err"; fi
}
# j FILE EXPR: a Python expression over the JSON document d in FILE.
j() { "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"; }
conf() { f=$T/$1; shift; printf '%s\n' "$@" >"$f"; }

for f in "$RC" "$W"; do
	[ -x "$f" ] || { echo "not ok - $f is not built"; exit 1; }
done
# The interpreter itself: a version manager's python3 shim costs ~0.5 s a call.
PY=$(python3 -c 'import sys; print(sys.executable)') || {
	echo "not ok - python3 is required"; exit 1; }

# ---- global options, help, usage ------------------------------------------
r --version; check "--version prints the version" has "ratectl [0-9]"
r; status_is 2 "no command is a usage error"
r frobnicate; status_is 2 "an unknown command is a usage error"
ok=1
for c in apply list show set delete reset cooldown reclaim check watch metrics run key-id cache; do
	r "$c" --help
	[ "$S" -eq 0 ] && has "usage: ratectl $c" || { ok=0; echo "# $c --help"; }
done
check "every command has --help" [ $ok -eq 1 ]
r list --bogus; status_is 2 "an unknown option is a usage error"
check "... naming the option" err_has "unknown option '--bogus'"

# ---- config files ------------------------------------------------------------
conf good.conf '# budgets for the tests' \
	'[alpha]' \
	'match       = api.example.com          # used by the preload shim' \
	'requests    = 600/min' \
	'tokens      = 100000/min, 2,000,000/day' \
	'concurrency = 4' \
	'burst       = 10s                      # time of rate' \
	'' '[beta] ; semicolon comments too' \
	'  requests = 5/s burst 2' \
	'[gamma]' 'concurrency = 2'
r apply "$T/good.conf"; status_is 0 "apply creates budgets from a file"
check "... and says what it created" has "3 created, 0 updated"
check "... with inline # comments stripped" has "create alpha: requests 600 per min burst 100"
r apply "$T/good.conf"; check "apply again changes nothing" has "0 created, 0 updated, 0 deleted, 3 unchanged"

conf bad1.conf '[a]' 'requests = 5/s' 'this line is junk'
r apply "$T/bad1.conf"; status_is 1 "a malformed line is an error"
check "... naming file:line" err_has "bad1.conf:3: expected 'key = value'"
conf bad2.conf '[a]' 'requests = 5/s' 'colour = blue'
r apply "$T/bad2.conf"; check "an unknown key names file:line and the key" err_has "bad2.conf:3: \[a\]: unknown key 'colour'"
conf bad3.conf '[a]' 'requests = 5/s' 'jitter = 5 parsecs'
r apply "$T/bad3.conf"; check "a bad duration names file:line, key and value" err_has "bad3.conf:3: \[a\]: key 'jitter': duration '5 parsecs'"
conf bad4.conf '[a]' 'tokens = 200000/fortnight'
r apply "$T/bad4.conf"; check "a bad rate names the unit" err_has "bad4.conf:2: \[a\]: key 'tokens': .*fortnight"
conf bad5.conf '[a]' 'requests = 1/s' '[a]' 'requests = 2/s'
r apply "$T/bad5.conf"; check "a repeated section is an error" err_has "bad5.conf:3: section \[a\] appears twice"
conf bad6.conf '[a]' 'match = x.example' '[b]' 'requests = 1/s'
r apply "$T/bad6.conf"; check "a section without a limit is an error" err_has "bad6.conf:1: \[a\]: no limit"
conf bad7.conf '[a]' 'requests = 1/s' 'requests = 2/s'
r apply "$T/bad7.conf"; check "a repeated key is an error" err_has "bad7.conf:3: .*given twice (first on line 2)"
conf bad8.conf '[a]' 'tokens = 1000/min' 'burst = 10'
r apply "$T/bad8.conf"; check "a burst count without a requests limit is an error" err_has "bad8.conf:3: .*no requests limit"
r apply "$T/nonexistent.conf"; status_is 1 "a missing config file is an error"
r list; check "no failed apply changed the ledger" [ "$(grep -c '^[a-z]' "$T/out")" -eq 3 ]

# ---- config files that cannot be read whole ---------------------------------
# Each must be an error naming the file, and --prune on it must delete
# nothing: a read error, a directory or a device is never an empty file.
# nbudgets: how many budgets list shows now.
nbudgets() { timeout 20 "$RC" list | grep -c '^[a-z]'; }
# bad_input WHAT FILE PATTERN: apply FILE fails with 1 and an error matching
# PATTERN, and so does apply --prune FILE, leaving all 3 budgets in place.
# Each runs under timeout 5, in bounded memory (unless a sanitizer, which
# reserves terabytes of address space, is in the way), run by $AS if set.
AS=
bounded() {
	( [ -n "${RATECTL_SANITIZER:-}" ] || ulimit -v 262144
	  exec timeout 5 $AS "$RC" "$@" ) >"$T/out" 2>"$T/err"
	S=$?
}
bad_input() {
	bounded apply "$2"; status_is 1 "apply of $1 is an error"
	check "... naming the file and what is wrong" err_has "$3"
	bounded apply --prune "$2"; status_is 1 "apply --prune of $1 is an error"
	n=$(nbudgets); check "... and deletes no budget ($n of 3 left)" [ "$n" -eq 3 ]
	r apply "$T/good.conf"     # for the next one, should this one have failed
}
mkdir "$T/adir"
bad_input "a directory" "$T/adir" "adir: is a directory, not a regular file"
bad_input /dev/zero /dev/zero "/dev/zero: is a character device"
mkfifo "$T/fifo"
bad_input "a FIFO (without blocking on it)" "$T/fifo" "fifo: is a FIFO"
# A regular file whose read fails (EIO at offset 0), as a disk error would:
# what getline() took for the end of the file.
bad_input "a file whose read fails" /proc/self/mem "/proc/self/mem: cannot read: Input/output error"
printf '[beta]\nrequests = 5/s\0 burst 2\n' >"$T/nul.conf"
bad_input "a file with a NUL byte" "$T/nul.conf" "nul.conf:2: a NUL byte (column 15)"
# The size limit, 1 MiB, at size - 1, size and size + 1: a valid file
# (beta as it is) padded with comment lines.
"$PY" - "$T" <<'EOF'
import sys
for name, n in (('less', (1 << 20) - 1), ('max', 1 << 20), ('over', (1 << 20) + 1)):
    b = b'[beta]\nrequests = 5/s burst 2\n'
    b += (b'#' + b'x' * 98 + b'\n') * ((n - len(b)) // 100)
    if n > len(b):
        b += b'#' * (n - len(b) - 1) + b'\n'
    assert len(b) == n
    open('%s/size-%s.conf' % (sys.argv[1], name), 'wb').write(b)
EOF
bounded apply "$T/size-less.conf"; status_is 0 "apply of a file of 1 MiB - 1 bytes"
bounded apply "$T/size-max.conf"; status_is 0 "apply of a file of 1 MiB exactly"
check "... which reads it whole" has "size-max.conf: 0 created, 0 updated, 0 deleted, 1 unchanged"
bad_input "a file of 1 MiB + 1 bytes" "$T/size-over.conf" "size-over.conf: 1048577 bytes, more than the 1048576"
# A file that says it is empty and is not (/proc): read up to the limit.
if [ "$(head -c 1048577 /proc/kallsyms 2>/dev/null | wc -c)" -gt 1048576 ]; then
	bad_input "a /proc file larger than it says" /proc/kallsyms "larger than 1048576 bytes"
else
	pass "a /proc file larger than it says # SKIP /proc/kallsyms is under 1 MiB here"
fi
# Unreadable: root reads a mode 000 file anyway, so as root the check runs
# without the capabilities that let it (CAP_DAC_OVERRIDE, _READ_SEARCH).
conf unreadable.conf '[beta]' 'requests = 5/s burst 2'
chmod 000 "$T/unreadable.conf"
if [ "$(id -u)" -ne 0 ]; then
	bad_input "an unreadable file" "$T/unreadable.conf" "unreadable.conf: cannot open: Permission denied"
elif setpriv --bounding-set=-dac_override,-dac_read_search true 2>/dev/null; then
	AS="setpriv --bounding-set=-dac_override,-dac_read_search"
	bad_input "an unreadable file" "$T/unreadable.conf" "unreadable.conf: cannot open: Permission denied"
	AS=
else
	pass "an unreadable file # SKIP root, and setpriv cannot drop CAP_DAC_OVERRIDE here"
fi
conf empty.conf '# nothing here'
r apply --prune "$T/empty.conf"; status_is 1 "apply --prune of a file naming no budget is refused"
check "... saying why" err_has "names no budget: --prune would delete every budget"
n=$(nbudgets); check "... and deletes nothing ($n of 3 left)" [ "$n" -eq 3 ]
r apply "$T/empty.conf"; status_is 0 "apply (without --prune) of such a file is fine"
r apply "$T/good.conf"

conf less.conf '[alpha]' 'requests = 1200/min' '[beta]' 'requests = 5/s burst 2'
r apply --dry-run --prune "$T/less.conf"; check "apply --dry-run --prune says what it would do" \
	has "update alpha: requests 600 per min burst 100 -> 1200 per min"
check "... including the deletion" has "delete gamma"
r show gamma; status_is 0 "... and does nothing"
r apply --prune "$T/less.conf"; check "apply --prune deletes the budgets not in the file" has "1 updated, 1 deleted"
r show gamma; status_is 1 "... which are gone"
r apply "$T/good.conf" >/dev/null

# ---- list, show, set, delete, reset, cooldown ----------------------------------
r list; check "list is a table with units" has "^alpha .*100/100 of 600 per min"
r list --json; cp "$T/out" "$T/list.json"
check "list --json parses, with version 1" [ "$(j "$T/list.json" 'd["version"]')" = 1 ]
check "... and every budget" [ "$(j "$T/list.json" '[b["name"] for b in d["budgets"]]')" = "['alpha', 'beta', 'gamma']" ]
r show alpha; check "show lists the limits" has "^tokens .*100k per min .*16.6k"
check "... and the counters" has "admitted  *0"
r show nosuch; status_is 1 "show of an unknown budget fails"
check "... saying so" err_has "no budget 'nosuch'"
r show; status_is 2 "show without a name is a usage error"

r set delta --requests 10/s --tokens "1000/min, 20000/day" --concurrency 3
status_is 0 "set creates a budget"; check "... and says so" has "create delta"
r set delta --concurrency 5; check "set changes only what it is given" has "update delta: concurrency 3 -> 5"
r show delta --json; check "... keeping the rest" [ "$(j "$T/out" 'len(d["budget"]["limits"])')" = 3 ]
r set delta --concurrency 5; check "set with no change says unchanged" has "unchanged delta"
r set delta --requests 5/fortnight; status_is 2 "set with a bad rate is a usage error"
check "... explaining it" err_has "fortnight"
r set "bad name" --requests 1/s; status_is 2 "set with a bad name is a usage error"
r set epsilon; status_is 2 "set of a new budget without limits is a usage error"

r run delta --tokens 500 -- true; r show delta --json
check "run charged the tokens" [ "$(j "$T/out" 'd["budget"]["limits"][1]["available"]')" -lt 1000 ]
r reset delta; status_is 0 "reset refills a budget"
r show delta --json; check "... to full" [ "$(j "$T/out" 'd["budget"]["limits"][1]["available"]')" -eq 1000 ]
r reset --all; status_is 0 "reset --all"
r reset nosuch; status_is 1 "reset of an unknown budget fails"
r reset; status_is 2 "reset needs a name or --all"
r reset delta --all; status_is 2 "reset takes a name or --all, not both"

r cooldown delta 30s; check "cooldown pauses a budget" has "delta: cooling down, [0-9.]*s left"
r show delta --json; check "... which show reports" [ "$(j "$T/out" 'd["budget"]["cooldown_ns"] > 29e9')" = True ]
r run delta --timeout 0.2s -- true; status_is 75 "run during a cooldown times out with 75"
r cooldown delta 0; check "cooldown 0 ends it" has "delta: no cooldown"
r cooldown delta "5 parsecs"; status_is 2 "cooldown with a bad duration is a usage error"
check "... naming it" err_has "duration '5 parsecs'"
r cooldown nosuch 5s; status_is 1 "cooldown of an unknown budget fails"
r delete delta; check "delete removes a budget" has "deleted delta"
r delete delta; status_is 1 "delete of an unknown budget fails"

# ---- key-id -----------------------------------------------------------------------
# The id rule (ratectl.conf(5)): the first 16 hex digits of the SHA-256 of the
# key, so sha256sum is the reference.  The key must never be echoed: every
# case below, refusals included, is checked for it in output and errors.
KEY='sk-proj-ratectlSECRETkey0123456789'
want=$(printf %s "$KEY" | sha256sum | cut -c1-16)
leak=0
# kid INPUT-FILE: ratectl key-id < INPUT-FILE, then look for the key.
kid() {
	r key-id <"$1"
	if grep -q SECRET "$T/out" "$T/err"; then leak=1; echo "# key echoed for $1"; fi
}
printf %s "$KEY" >"$T/k.raw"; kid "$T/k.raw"; status_is 0 "key-id reads a key from standard input"
check "... and prints the id of the documented rule (sha256sum)" [ "$(cat "$T/out")" = "$want" ]
printf '%s\n' "$KEY" >"$T/k.nl"; kid "$T/k.nl"
check "... the same with a trailing newline" [ "$(cat "$T/out")" = "$want" ]
printf 'Bearer %s\r\n' "$KEY" >"$T/k.bearer"; kid "$T/k.bearer"
check "... and for its Authorization value (Bearer, CRLF)" [ "$(cat "$T/out")" = "$want" ]
printf 'abc' >"$T/k.abc"; kid "$T/k.abc"
check "... and the FIPS 180-2 vector of 'abc'" [ "$(cat "$T/out")" = ba7816bf8f01cfea ]
: >"$T/k.empty"; kid "$T/k.empty"; status_is 2 "key-id of empty input is refused"
check "... saying so" err_has "no key on standard input"
printf ' \n' >"$T/k.blank"; kid "$T/k.blank"; status_is 2 "key-id of a blank line is refused"
printf 'Bearer\n' >"$T/k.bare"; kid "$T/k.bare"; status_is 2 "key-id of a bare 'Bearer' is refused"
printf '%s\n%s\n' "$KEY" "$KEY" >"$T/k.two"; kid "$T/k.two"; status_is 2 "key-id of two lines is refused"
check "... saying one key at a time" err_has "one key at a time"
{ printf %s "$KEY"; head -c 5000 /dev/zero | tr '\0' x; } >"$T/k.big"; kid "$T/k.big"
status_is 2 "key-id of more than 4096 bytes is refused"
check "... saying so" err_has "longer than 4096 bytes"
head -c 4096 /dev/zero | tr '\0' x >"$T/k.max"; kid "$T/k.max"
status_is 0 "key-id of exactly 4096 bytes is read"
r key-id "$KEY" </dev/null; status_is 2 "key-id refuses a key given as an argument"
check "... pointing to standard input" err_has "read from standard input"
grep -q SECRET "$T/out" "$T/err" && leak=1
r key-id --bogus"$KEY" </dev/null; status_is 2 "... and an option, without repeating it"
grep -q SECRET "$T/out" "$T/err" && leak=1
check "the key never appears in key-id's output or errors" [ $leak -eq 0 ]
conf key.conf '[mine]' 'match = api.openai.com' "key = $want" 'requests = 10/s'
r --ledger "$T/keyledger" apply --dry-run "$T/key.conf"
status_is 0 "a config names the key by that id"
# On a terminal: a prompt, no echo, the id.
cat >"$T/keytty.py" <<'PYEOF'
import os, pty, select, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], [sys.argv[1], 'key-id'])
out = b''
def drain(t):
    global out
    end = time.time() + t
    while time.time() < end:
        if select.select([fd], [], [], 0.05)[0]:
            try:
                out += os.read(fd, 65536)
            except OSError:
                return
drain(0.3)
os.write(fd, sys.argv[2].encode() + b'\n')
drain(0.5)
st = os.waitpid(pid, 0)[1]
sys.exit(0 if os.waitstatus_to_exitcode(st) == 0 and b'API key' in out and
         sys.argv[3].encode() in out and b'SECRET' not in out else 1)
PYEOF
check "key-id on a terminal prompts, reads without echo and prints the id" \
	timeout 10 "$PY" "$T/keytty.py" "$RC" "$KEY" "$want"

# ---- run ------------------------------------------------------------------------
r run beta -- sh -c 'exit 7'; status_is 7 "run exits with the command's status"
r run beta -- sh -c 'kill -TERM $$'; status_is 143 "run exits 128+signal when the command is killed"
r run beta; status_is 2 "run with no command is a usage error"
r run beta --; status_is 2 "run with nothing after -- is a usage error"
r run; status_is 2 "run without a budget is a usage error"
r run nosuch -- true; status_is 1 "run on an unknown budget fails"
r run beta -- /nonexistent/program; status_is 127 "run of a missing program exits 127"
r set slow --requests "1/min burst 1"
r run slow -- true; r run slow --timeout 0.3s -- true
status_is 75 "run exits 75 when the budget cannot be had in time"
check "... saying why" err_has "not admitted before the deadline"
# Not under timeout(1): the signal must go to ratectl itself (sleep bounds it).
"$RC" run beta -- sh -c 'trap "exit 3" TERM; sleep 5 & wait' & p=$!
sleep 0.3; kill -TERM $p; wait $p; S=$?
status_is 3 "run passes SIGTERM on to the command"

# ---- budgets shared through Redis, without a Redis --------------------------------
# Port 1 of the loopback refuses at once: the budget turns degraded at its
# first admission, which the fallback share (1/3 of 10/s: a burst of 3)
# then admits.  sh stays shared for the metrics checks below.
R1=redis://127.0.0.1:1/0
r set sh --requests 10/s --tokens 1000/s
r set sh --shared "$R1" --hosts 3; status_is 0 "set --shared --hosts shares a budget"
check "... saying so" has "^share sh: $R1, 3 hosts\$"
r show sh; cp "$T/out" "$T/sh.txt"
check "show of a shared budget has the shared block" grep -q '^shared through Redis:$' "$T/sh.txt"
check "... with its URL" grep -q "^  url  *$R1\$" "$T/sh.txt"
check "... its hosts" grep -q '^  hosts  *3$' "$T/sh.txt"
check "... and its fallback share" grep -q '^  fallback  *share 1/3 of every limit' "$T/sh.txt"
r show beta; check "show of a budget not shared has no shared block" lacks 'shared through'
r run sh --timeout 5s -- true
status_is 0 "run on it while Redis refuses admits through the fallback share"
r show sh; cp "$T/out" "$T/sh.txt"
check "... after which show says DEGRADED, since when and why" grep -q \
	"^  state  *DEGRADED since 20[0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]Z ([0-9a-z.]*): .*'$R1': cannot connect: Connection refused\$" "$T/sh.txt"
check "... and the credit held per dimension" grep -q '^  credit held  *requests 0, tokens 0$' "$T/sh.txt"
r show sh --json; cp "$T/out" "$T/sh.json"
check "show --json has the shared object" [ "$(j "$T/sh.json" 'sorted(d["budget"]["shared"])')" = \
	"['credit', 'degraded', 'degraded_since', 'hosts', 'last_error', 'last_sync_age_ms', 'on_redis_error', 'password_env', 'password_file', 'redis_commands', 'restored', 'sig_differs', 'syncs', 'url']" ]
check "... with url, hosts, fallback" [ "$(j "$T/sh.json" \
	'(lambda s: (s["url"], s["hosts"], s["on_redis_error"]))(d["budget"]["shared"])')" = "('$R1', 3, 'share')" ]
check "... degraded, since an RFC 3339 time" [ "$(j "$T/sh.json" \
	'(lambda s: s["degraded"] and __import__("re").fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", s["degraded_since"]) is not None)(d["budget"]["shared"])')" = True ]
check "... why" [ "$(j "$T/sh.json" '"cannot connect: Connection refused" in d["budget"]["shared"]["last_error"]')" = True ]
check "... and credit per dimension" [ "$(j "$T/sh.json" 'd["budget"]["shared"]["credit"]')" = "{'requests': 0, 'tokens': 0}" ]
r show beta --json; check "... which is null for a budget not shared" [ "$(j "$T/out" 'd["budget"]["shared"]')" = None ]
r list; check "list has a SHARED column" grep -q '^BUDGET .* SHARED$' "$T/out"
check "... saying DEGRADED for the shared budget" grep -q '^sh  .* DEGRADED [0-9][0-9a-z.]*$' "$T/out"
check "... and - for the others" grep -q '^beta  .* -$' "$T/out"
r list --json; check "list --json has shared for it" \
	[ "$(j "$T/out" '[b["shared"]["degraded"] for b in d["budgets"] if b["name"] == "sh"]')" = "[True]" ]
r set sh --requests 20/s; check "set of its limits alone keeps it shared" lacks '^share\|^stop'
r show sh; check "... as show says" has "^  url  *$R1\$"
r set sh --requests 10/s
r set sh --hosts 4; check "--hosts alone changes the hosts of a shared budget" has '^share sh: hosts 3 -> 4$'
r set sh --hosts 3
r set sh --hosts 3; check "... and setting the same is no change" has '^unchanged sh$'
# Bad values: exit 2, a message naming the option and the value, nothing changed.
bad_set() {
	d=$1; pat=$2; shift 2
	r set "$@"; status_is 2 "set $d is refused"
	check "... naming the option and value ($d)" err_has "$pat"
}
bad_set "--shared http://x" "--shared: 'http://x': not redis://" sh --shared http://x --hosts 3
bad_set "--hosts 0" "--hosts: '0': must be 1" sh --hosts 0
bad_set "--shared without --hosts, on a budget not shared" "--shared redis://h/0: give --hosts N" \
	beta --shared redis://h/0
bad_set "--hosts on a budget not shared" "--hosts: beta is not shared" beta --hosts 3
bad_set "with both password options" "--password-file /p and --password-env P: .* one or the other" \
	sh --shared "$R1" --hosts 3 --password-file /p --password-env P
bad_set "--password-env of a bad name" "--password-env: '1X' is not a variable's name" sh --password-env 1X
bad_set "--on-redis-error maybe" "--on-redis-error: 'maybe': expected share or open" \
	sh --on-redis-error maybe
bad_set "--no-shared with --hosts" "--no-shared and --hosts" sh --no-shared --hosts 3
bad_set "--shared with a password in the URL" "no password in the URL" sh --shared redis://:pw@h/0
check "... without showing it" not_err_has ':pw@'
# The URL's limit, 255 bytes: 255 taken, 256 refused.
u255=redis://$(printf '%0247d' 0 | tr 0 h)
u256=redis://$(printf '%0248d' 0 | tr 0 h)
bad_set "--shared of 256 bytes" "--shared 'redis://hhh.*': 256 bytes, longer than the 255" \
	sb --requests 1/s --shared "$u256" --hosts 2
r set sb --requests 1/s --shared "$u255" --hosts 2; status_is 0 "set --shared of 255 bytes is taken"
r show sh; check "no refused set changed the budget" [ "$(grep -c \
	"^  url  *$R1\$\|^  hosts  *3\$\|^  password  *none\$\|^  fallback  *share 1/3 " "$T/out")" -eq 4 ]
r set sx --requests 1/s --shared "$R1" --hosts 2 --password-env RATECTL_TEST_PW --on-redis-error open
check "set with a password variable and open" \
	has "^share sx: $R1, 2 hosts, password from \$RATECTL_TEST_PW, open when Redis is unreachable\$"
r show sx; check "show names where the password comes from" has '^  password  *from \$RATECTL_TEST_PW$'
check "... and the open fallback" has '^  fallback  *open: '
r set sx --no-shared; status_is 0 "set --no-shared"
check "... saying so" has '^stop sharing sx$'
r show sx; check "... after which show has no shared block" lacks 'shared through'
r show sx --json; check "... and show --json shared null" [ "$(j "$T/out" 'd["budget"]["shared"]')" = None ]
r set sx --no-shared; check "--no-shared again is no change" has '^unchanged sx$'

# apply: sharing from the file, checked whole first; --dry-run writes nothing.
conf nohosts.conf '[sa]' 'requests = 1/s' "shared = $R1"
r apply "$T/nohosts.conf"; status_is 1 "apply of shared without hosts fails"
check "... naming file:line and hosts" err_has "nohosts.conf:[0-9][0-9]*: \[sa\]: .*hosts = N"
conf share1.conf '[sh]' 'requests = 10/s' 'tokens = 1000/s' "shared = $R1" 'hosts = 5' \
	'[sa]' 'requests = 1/s' "shared = $R1" 'hosts = 2' 'password_file = /etc/ratectl.pw'
r apply --dry-run "$T/share1.conf"; status_is 0 "apply --dry-run of shared budgets"
check "... prints a new budget's sharing" has "^share sa: $R1, 2 hosts, password from file /etc/ratectl.pw\$"
check "... and a change of hosts, alone" [ "$(grep -c '^update sh\|^share sh: hosts 3 -> 5$' "$T/out")" -eq 1 ]
check "... counted" has '1 created, 1 updated, 0 deleted, 0 unchanged (dry run'
r show sh; check "... and writes nothing" has '^  hosts  *3$'
r show sa; status_is 1 "... nor creates anything"
r apply "$T/share1.conf"; status_is 0 "apply of shared budgets"
r show sh; check "... changes the hosts" has '^  hosts  *5$'
r show sa --json; check "... and shares the new budget" \
	[ "$(j "$T/out" 'd["budget"]["shared"]["password_file"]')" = /etc/ratectl.pw ]
r apply "$T/share1.conf"; check "apply again writes nothing" has '0 created, 0 updated, 0 deleted, 2 unchanged$'
conf share2.conf '[sh]' 'requests = 10/s' 'tokens = 1000/s' "shared = $R1" 'hosts = 3' \
	'[sa]' 'requests = 1/s'
r apply "$T/share2.conf"; check "apply of a budget no longer shared stops sharing it" has '^stop sharing sa$'
check "... and changes the other's hosts back" has '^share sh: hosts 5 -> 3$'
r check; status_is 0 "check with a degraded shared budget passes"
check "... with a warning saying since when and why" \
	has "^warning: sh: shared, but Redis is unreachable since 20.*Z (.*): .*Connection refused"
r delete sa; r delete sb

# ---- the ledger directory ------------------------------------------------------
mkdir -m 700 "$T/real"; ln -s "$T/real" "$T/link"
r --ledger "$T/link" list; status_is 1 "a ledger directory that is a symlink is refused"
check "... saying so" err_has "symlink"

# ---- watch and metrics ------------------------------------------------------------
r watch --count 2 --interval 0.1s
check "watch off a terminal prints one line per budget per refresh" [ "$(grep -c ' alpha requests' "$T/out")" -eq 2 ]
r watch beta --count 1; check "watch NAME shows that budget only" [ "$(wc -l <"$T/out")" -eq 1 ]
r watch nosuch --count 1; status_is 1 "watch of an unknown budget fails"
r watch --interval 1ms; status_is 2 "watch with a too-short interval is a usage error"

# On a terminal (a pty): the screen is redrawn, q (or SIGINT) quits with
# status 0, and the alternate screen and the cursor are given back.
cat >"$T/watchtty.py" <<'EOF'
import os, pty, select, signal, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], [sys.argv[1], 'watch', '--interval', '0.1s'])
out = b''
def drain(t, frames=0):
    # Up to t seconds; with frames, until that many screens were drawn
    # (a loaded machine may take more than half a second to draw two).
    global out
    end = time.time() + t
    while time.time() < end:
        if frames and out.count(b'ratectl watch') >= frames:
            return
        if select.select([fd], [], [], 0.05)[0]:
            try:
                out += os.read(fd, 65536)
            except OSError:
                return
drain(5, 2) if sys.argv[2] != 'err' else drain(0.5)
if sys.argv[2] == 'err':
    # The ledger cannot be read: exit 1, the screen given back, and the
    # message after that, where it stays visible.
    st = os.waitpid(pid, 0)[1]
    tail = out.rpartition(b'\x1b[?1049l')[2]
    sys.exit(0 if os.waitstatus_to_exitcode(st) == 1 and
             out.startswith(b'\x1b[?1049h') and
             b'ratectl: watch: cannot read the budgets' in tail else 1)
if sys.argv[2] == 'q':
    os.write(fd, b'q')
else:
    os.kill(pid, signal.SIGINT)
drain(0.5)
st = os.waitpid(pid, 0)[1]
ok = (os.waitstatus_to_exitcode(st) == 0 and out.count(b'ratectl watch') >= 2 and
      out.startswith(b'\x1b[?1049h') and out.rstrip().endswith(b'\x1b[?25h\x1b[?1049l'))
sys.exit(0 if ok else 1)
EOF
check "watch on a terminal exits cleanly on q, giving the screen back" \
	timeout 10 "$PY" "$T/watchtty.py" "$RC" q
check "... and on Ctrl-C (SIGINT)" timeout 10 "$PY" "$T/watchtty.py" "$RC" int

cat >"$T/promcheck.py" <<'EOF'
# A strict reading of the Prometheus text format 0.0.4: every sample after
# its family's HELP and TYPE, families contiguous, names and labels valid,
# counters named _total, values numbers.  Prints budget:admitted pairs.
import re, sys
NAME = r'[a-zA-Z_:][a-zA-Z0-9_:]*'
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:\\.|[^"\\])*"'
SAMPLE = re.compile(r'^(%s)(?:\{(%s(?:,%s)*)?\})? (\S+)$' % (NAME, LABEL, LABEL))
fam, types, seen, admitted = None, {}, set(), {}
for n, line in enumerate(open(sys.argv[1]), 1):
    line = line.rstrip('\n')
    m = re.match(r'^# (HELP|TYPE) (%s) (.+)$' % NAME, line)
    if m:
        if m.group(1) == 'TYPE':
            assert m.group(3) in ('counter', 'gauge'), (n, line)
            assert m.group(2) not in seen, ('family repeated', n)
            fam = m.group(2); seen.add(fam); types[fam] = m.group(3)
            assert types[fam] != 'counter' or fam.endswith('_total'), (n, line)
        continue
    m = SAMPLE.match(line)
    assert m, ('bad line', n, line)
    assert m.group(1) == fam, ('sample outside its family', n, line)
    float(m.group(3))
    if fam == 'ratectl_admitted_total':
        admitted[re.search(r'budget="([^"]*)"', line).group(1)] = int(float(m.group(3)))
for f in ('ratectl_admitted_total', 'ratectl_refused_total', 'ratectl_waited_total',
          'ratectl_wait_seconds_total', 'ratectl_tokens_estimated_total',
          'ratectl_tokens_actual_total', 'ratectl_reclaimed_total', 'ratectl_inflight',
          'ratectl_inflight_max', 'ratectl_limit_available', 'ratectl_limit_per_second',
          'ratectl_cooldown_seconds'):
    assert f in seen, ('missing family', f)
print(' '.join('%s:%d' % kv for kv in sorted(admitted.items())))
EOF
r metrics; cp "$T/out" "$T/metrics.txt"
if "$PY" "$T/promcheck.py" "$T/metrics.txt" >"$T/prom.out" 2>"$T/prom.err"; then
	pass "metrics parses as Prometheus text"
else
	fail "metrics parses as Prometheus text"; sed 's/^/#   /' "$T/prom.err"
fi
check "... with a limit gauge labelled by dimension and period" \
	grep -q '^ratectl_limit_available{budget="alpha",dimension="tokens",period_seconds="86400"} ' "$T/metrics.txt"
check "... with the shared gauges of a shared budget" \
	[ "$(grep -c '^ratectl_shared{budget="sh"} 1$\|^ratectl_shared_degraded{budget="sh"} 1$\|^ratectl_shared_credit{budget="sh",dimension="requests"} 0$\|^ratectl_shared_credit{budget="sh",dimension="tokens"} 0$\|^ratectl_shared_syncs_total{budget="sh"} 0$\|^ratectl_shared_redis_commands_total{budget="sh"} 0$' "$T/metrics.txt")" -eq 6 ]
check "... degraded since a Unix time of the last minute" awk -v now="$(date +%s)" '
	/^ratectl_shared_degraded_since_seconds\{budget="sh"\} / { ok = $2 > now - 60 && $2 <= now + 1 }
	END { exit !ok }' "$T/metrics.txt"
check "... each family with HELP and TYPE" [ "$(grep -c '^# TYPE ratectl_shared\(_degraded\|_degraded_since_seconds\|_credit\)\? gauge$\|^# TYPE ratectl_shared_\(syncs\|redis_commands\)_total counter$' "$T/metrics.txt")" -eq 6 ]
check "... and none for a budget not shared" [ "$(grep -c '^ratectl_shared.*budget="beta"' "$T/metrics.txt")" -eq 0 ]
check "... and HELP" [ "$(grep -c '^# HELP ratectl_shared' "$T/metrics.txt")" -eq 6 ]
r show beta --json
check "... whose counters match show" grep -q "beta:$(j "$T/out" 'd["budget"]["counters"]["admitted"]')" "$T/prom.out"
r metrics --json; check "metrics --json parses" [ "$(j "$T/out" 'd["version"]')" = 1 ]

# show --json against show: the same limits, counters and slots.
r show alpha; cp "$T/out" "$T/show.txt"; r show alpha --json; cp "$T/out" "$T/show.json"
check "show --json matches show: admitted" grep -q "admitted  *$(j "$T/show.json" 'd["budget"]["counters"]["admitted"]')\$" "$T/show.txt"
check "show --json matches show: in flight" grep -q "in flight:  $(j "$T/show.json" 'd["budget"]["inflight"]') of $(j "$T/show.json" 'd["budget"]["concurrency"]')" "$T/show.txt"
check "show --json matches show: the requests burst" grep -q "^requests  *600 per min  *$(j "$T/show.json" 'd["budget"]["limits"][0]["burst"]') " "$T/show.txt"

# ---- xargs -P 16 of ratectl run on a 10/s budget ----------------------------------
# Each command logs when it started (CLOCK_BOOTTIME, as /proc/uptime).  The
# bound on admissions, burst + rate * t over every window, is checked on
# the start times with 0.15 s allowed for the spread of fork/exec delays
# (0.5 s in sanitizer builds, where starting a program is far slower).
r set xb --requests 10/s --burst 5 --concurrency 8
cat >"$T/one.sh" <<'EOF'
exec "$RC" run xb -- sh -c 'read u _ </proc/uptime; echo "$u" >>"$0"' "$LOG"
EOF
RC=$RC LOG=$T/xb.log timeout 30 sh -c 'seq 30 | xargs -P 16 -I{} sh "$0"' "$T/one.sh"
S=$?; status_is 0 "xargs -P 16 ratectl run: every command ran"
cat >"$T/bound.py" <<'EOF'
import sys
t = sorted(float(x) for x in open(sys.argv[1]))
burst, rate, slack = 5, 10.0, float(sys.argv[2])
worst = max((j - i + 1) - (burst + rate * (t[j] - t[i] + slack))
            for i in range(len(t)) for j in range(i, len(t)))
span = t[-1] - t[0]
print('%d runs over %.2f s, worst window %+.2f over the bound' % (len(t), span, worst))
sys.exit(0 if len(t) == 30 and worst <= 0 and span >= (30 - burst) / rate - 0.3 else 1)
EOF
slack=0.15
[ -n "${RATECTL_SANITIZER:-}" ] && slack=0.5
if "$PY" "$T/bound.py" "$T/xb.log" "$slack" >"$T/b.out"; then
	pass "... admitted within the GCRA bound ($(cat "$T/b.out"))"
else
	fail "... admitted within the GCRA bound ($(cat "$T/b.out"))"
fi
r show xb --json
check "... and show then reports none in flight" [ "$(j "$T/out" 'd["budget"]["inflight"] + d["budget"]["dead"]')" -eq 0 ]
check "... and 30 admitted" [ "$(j "$T/out" 'd["budget"]["counters"]["admitted"]')" -eq 30 ]

# ---- SIGKILL of ratectl run leaks no slot --------------------------------------
r set kb --requests 1000/s --concurrency 3
# hold N: start N `run` holding a slot each; their pids in HELD.  Not under
# timeout(1), whose pid $! would be: the commands' sleep bounds them.
hold() {
	HELD=
	for i in $(seq "$1"); do
		"$RC" run kb -- sh -c 'echo $$ >"$0"; exec sleep 20' "$T/kid.$2$i" &
		HELD="$HELD $!"; PIDS="$PIDS $!"
	done
	i=0
	while [ $i -lt 100 ]; do
		r show kb --json
		[ "$(j "$T/out" 'd["budget"]["inflight"]')" -eq "$1" ] && return 0
		sleep 0.05; i=$((i + 1))
	done
	return 1
}
check "three run processes hold three slots" hold 3 a
for p in $HELD; do kill -9 "$p"; wait "$p" 2>/dev/null; done
r show kb --json; cp "$T/out" "$T/kb.json"
check "after SIGKILL show reports three dead holders" [ "$(j "$T/kb.json" 'd["budget"]["dead"]')" -eq 3 ]
check "... and none in flight" [ "$(j "$T/kb.json" 'd["budget"]["inflight"]')" -eq 0 ]
check "... listing each lease as dead" [ "$(j "$T/kb.json" 'sum(not l["alive"] for l in d["budget"]["leases"])')" -eq 3 ]
r show kb; check "show says so in words" has "(3 dead"
r check; status_is 0 "check reports dead holders as warnings, not problems"
check "... naming them" has "warning: kb: holder pid [0-9]* died holding 1 slot;"
r reclaim; check "reclaim frees them" has "reclaimed 3 in-flight slots"
r show kb --json; check "... leaving no dead holder" [ "$(j "$T/out" 'd["budget"]["dead"]')" -eq 0 ]
check "three more run processes hold the three slots" hold 3 b
for p in $HELD; do kill -9 "$p"; wait "$p" 2>/dev/null; done
r run kb --timeout 2s -- true; status_is 0 "the next admission takes a dead holder's slot back"
r show kb --json; check "... counting it reclaimed" [ "$(j "$T/out" 'd["budget"]["counters"]["reclaimed"]')" -ge 4 ]
for f in "$T"/kid.*; do kill -9 "$(cat "$f")" 2>/dev/null; rm -f "$f"; done

# ---- apply while 16 workers admit -------------------------------------------------
conf live1.conf '[lb]' 'requests = 20/s' 'burst = 5' 'concurrency = 8'
conf live2.conf '[lb]' 'requests = 100/s' 'burst = 5' 'concurrency = 8'
r apply "$T/live1.conf"
WPIDS=
for i in $(seq 16); do
	timeout 20 "$W" "$L" lb 3.5 >"$T/w.$i" 2>"$T/w.$i.err" & WPIDS="$WPIDS $!"
done
PIDS="$PIDS $WPIDS"
sleep 1.5
t_apply=$("$W" "$L" --now)
r apply "$T/live2.conf"; status_is 0 "apply while 16 workers admit"
wok=1
for p in $WPIDS; do wait "$p" || wok=0; done
check "... every worker ran without an error" [ $wok -eq 1 ]
cat "$T"/w.[0-9]* | sort -n >"$T/live.log"
cat >"$T/live.py" <<'EOF'
import sys
t = [int(x) / 1e9 for x in open(sys.argv[1])]
ta = int(sys.argv[2]) / 1e9
before = [x for x in t if x < ta]
after = [x for x in t if x >= ta + 0.5]
bound = 5 + 20 * (ta - t[0]) + 1      # +1: the admission at ta itself
pace = len(after) / (t[-1] - ta - 0.5) if after else 0
print('%d admitted before apply (bound %.0f), then %.0f/s' % (len(before), bound, pace))
sys.exit(0 if len(before) <= bound and pace >= 50 else 1)
EOF
if "$PY" "$T/live.py" "$T/live.log" "$t_apply" >"$T/l.out"; then
	pass "... which changed their pace live ($(cat "$T/l.out"))"
else
	fail "... which changed their pace live ($(cat "$T/l.out"))"
fi
r show lb --json
check "... every admission counted once" [ "$(j "$T/out" 'd["budget"]["counters"]["admitted"]')" -eq "$(wc -l <"$T/live.log")" ]
check "... nothing left in flight" [ "$(j "$T/out" 'd["budget"]["inflight"] + d["budget"]["dead"]')" -eq 0 ]
r check; status_is 0 "... and check finds nothing wrong"

# ---- templates, filters, tags, holders, expire and weight ----------------------
# A ledger of its own: two plain budgets and 300 made as a template makes
# them (origin user-*), so that metrics has something to sum and to bound.
P=$T/tpl
p() { timeout 20 "$RC" --ledger "$P" "$@" >"$T/out" 2>"$T/err"; S=$?; }
p set plain-a --requests 100/s; p set plain-b --requests 100/s --concurrency 4
i=0
while [ $i -lt 300 ]; do
	timeout 20 "$RC" --ledger "$P" set "user-$i" --requests 100/s --origin 'user-*' \
		>/dev/null 2>"$T/err" || break
	i=$((i + 1))
done
check "set --origin makes 300 budgets of template user-*" [ $i -eq 300 ]
# Admissions: user-7 3, user-42 2, user-5 1 (tagged), plain-a 4 (tagged).
for b in user-7 user-7 user-7 user-42 user-42; do p run "$b" -- true; done
p run user-5 --tag rare -- true
p run plain-a --tag chat -- true; p run plain-a --tag chat -- true
p run plain-a --tag embed -- true; p run plain-a -- true
p run plain-a --tag 'a b' -- true; status_is 2 "run --tag with a bad tag is a usage error"
check "... naming the option and the tag" err_has "--tag 'a b'"

p watch plain-a --count 1
check "watch NAME shows its busiest tags, on its one line" \
	grep -q 'admitted/s -; tags chat=2 embed=1 (other)=1$' "$T/out"
p watch user-7 --count 1
check "... and no tags part when it has none" grep -q 'admitted/s -$' "$T/out"

p list 'user-1*'; status_is 0 "list PATTERN"
check "... lists exactly the budgets it matches" [ "$(grep -c '^user-1' "$T/out")" -eq 111 ]
check "... and no other" [ "$(grep -c '^user-[02-9]\|^plain' "$T/out")" -eq 0 ]
check "... with their ORIGIN" grep -q '^BUDGET .* IDLE  *ORIGIN$' "$T/out"
p list 'plain-?' user-42; check "list with several patterns" [ "$(grep -c '^plain-[ab] \|^user-42 ' "$T/out")" -eq 3 ]
check "... the idle time of a budget never admitted" grep -q '^plain-b .* never' "$T/out"
p list nosuch; status_is 0 "list PATTERN matching nothing"
check "... says so" has "matches 'nosuch'"
p list 'a b'; status_is 2 "list with a pattern no name can match is a usage error"
check "... naming the pattern" err_has "pattern 'a b'"
p list --json 'plain-*'
check "list --json PATTERN" [ "$(j "$T/out" '[b["name"] for b in d["budgets"]]')" = "['plain-a', 'plain-b']" ]
p list --json 'user-7'
check "... with origin, expire, weight and idle" [ "$(j "$T/out" '[(b["origin"], b["expire_ns"], b["weight"], b["idle_ns"] >= 0) for b in d["budgets"]]')" = "[('user-*', 0, 0, True)]" ]

# metrics: the template summed, its top N in full, plain budgets as ever.
p metrics; cp "$T/out" "$T/tm.txt"
check "metrics sums the template" grep -qx 'ratectl_template_admitted_total{template="user-\*"} 6' "$T/tm.txt"
check "... counts its budgets" grep -qx 'ratectl_template_budgets{template="user-\*"} 300' "$T/tm.txt"
check "... prints 10 of them in full by default" [ "$(grep -c '^ratectl_admitted_total{budget="user-' "$T/tm.txt")" -eq 10 ]
check "... the most admitted among them" grep -qx 'ratectl_admitted_total{budget="user-7"} 3' "$T/tm.txt"
check "... and the budgets without a template as ever" [ "$(grep -c '^ratectl_admitted_total{budget="plain-[ab]"}' "$T/tm.txt")" -eq 2 ]
check "... with their limits" grep -q '^ratectl_limit_available{budget="plain-a",dimension="requests",period_seconds="1"} ' "$T/tm.txt"
check "... in a bounded output (under 400 lines for 302 budgets)" [ "$(wc -l <"$T/tm.txt")" -lt 400 ]
if "$PY" "$T/promcheck.py" "$T/tm.txt" >/dev/null 2>"$T/prom.err"; then
	pass "... which parses as Prometheus text"
else
	fail "... which parses as Prometheus text"; sed 's/^/#   /' "$T/prom.err"
fi
check "metrics exports the tags of a budget printed in full" grep -qx 'ratectl_tag_requests_total{budget="plain-a",tag="chat"} 2' "$T/tm.txt"
check "... and the rest as tag=\"\"" grep -q '^ratectl_tag_requests_total{budget="plain-a",tag=""} [0-9]' "$T/tm.txt"
check "... tokens too" grep -q '^ratectl_tag_tokens_total{budget="plain-a",tag="embed"} ' "$T/tm.txt"
p metrics --top 2; cp "$T/out" "$T/tm2.txt"
check "metrics --top 2 prints the two most admitted of the template" [ "$(grep '^ratectl_admitted_total{budget="user-' "$T/tm2.txt" | sort | tr '\n' ' ')" = 'ratectl_admitted_total{budget="user-42"} 2 ratectl_admitted_total{budget="user-7"} 3 ' ]
check "... and no tag of a budget summed only" [ "$(grep -c 'tag="rare"' "$T/tm2.txt")" -eq 0 ]
p metrics --top 0
check "metrics --top 0 prints no budget of the template" [ "$(grep -c 'budget="user-' "$T/out")" -eq 0 ]
p metrics --all; cp "$T/out" "$T/tma.txt"
check "metrics --all prints every budget" [ "$(grep -c '^ratectl_admitted_total{' "$T/tma.txt")" -eq 302 ]
check "... and their tags" grep -qx 'ratectl_tag_requests_total{budget="user-5",tag="rare"} 1' "$T/tma.txt"
p metrics 'plain-*'
check "metrics PATTERN prints those budgets only" [ "$(grep -c '^ratectl_admitted_total{' "$T/out")" -eq 2 ]
check "... and no template they do not include" [ "$(grep -c '^ratectl_template' "$T/out")" -eq 0 ]
p metrics --top 10001; status_is 2 "metrics --top beyond 10000 is a usage error"
check "... naming the option" err_has "--top '10001'"
p metrics --top 3 --all; status_is 2 "metrics --top with --all is a usage error"
p metrics --json --top 2
check "metrics --json has the template, its count and its top" [ "$(j "$T/out" '[(t["template"], t["budgets"], t["counters"]["admitted"], t["top"]) for t in d["templates"]]')" = "[('user-*', 300, 6, ['user-7', 'user-42'])]" ]
check "... and the budgets printed in full" [ "$(j "$T/out" 'len(d["budgets"])')" -eq 4 ]

# show: the tags table and the holders.
p show plain-a; cp "$T/out" "$T/pa.txt"
check "show has the tags table" grep -q '^TAG  *REQUESTS  *TOKENS  *ERROR$' "$T/pa.txt"
check "... most requests first" [ "$(sed -n '/^TAG /{n;p;}' "$T/pa.txt" | awk '{print $1, $2}')" = "chat 2" ]
check "... then the rest" grep -q '^(other)  *[0-9]' "$T/pa.txt"
p show plain-a --json; cp "$T/out" "$T/pa.json"
check "show --json has the tags" [ "$(j "$T/pa.json" '[(t["tag"], t["requests"], t["error"]) for t in d["budget"]["tags"]]')" = "[('chat', 2, 0), ('embed', 1, 0)]" ]
rest=$(j "$T/pa.json" 'd["budget"]["tags_other"]["requests"]')
check "... and the rest, as show and metrics say" [ "$(grep -c "^(other)  *$rest \|^ratectl_tag_requests_total{budget=\"plain-a\",tag=\"\"} $rest\$" "$T/pa.txt" "$T/tm.txt" | awk -F: '{s += $2} END {print s}')" -eq 2 ]
HELD=
for k in 1 2; do
	"$RC" --ledger "$P" run plain-b -- sh -c 'echo $$ >"$0"; exec sleep 30' "$T/kid.pb$k" &
	HELD="$HELD $!"; PIDS="$PIDS $!"
done
i=0
while [ $i -lt 100 ]; do
	p show plain-b --json
	[ "$S" -eq 0 ] && [ "$(j "$T/out" 'd["budget"]["inflight"]')" -eq 2 ] && break
	sleep 0.05; i=$((i + 1))
done
check "show --json lists one holder per process" [ "$(j "$T/out" 'sorted((l["count"], l["alive"]) for l in d["budget"]["leases"])')" = "[(1, True), (1, True)]" ]
check "... with their pids" [ "$(j "$T/out" 'sorted(l["pid"] for l in d["budget"]["leases"])' | tr -d '[],')" = "$(for k in $HELD; do echo "$k"; done | sort -n | tr '\n' ' ' | sed 's/ $//')" ]
p show plain-b
check "show lists the holders: pid, alive, slots" [ "$(grep -c '^[0-9][0-9]*  *alive  *1 ' "$T/out")" -eq 2 ]
check "... under their header" grep -q '^PID  *HOLDER  *SLOTS  *OLDEST  *TOKENS$' "$T/out"
for k in $HELD; do kill -9 "$k" 2>/dev/null; wait "$k" 2>/dev/null; done
for k in 1 2; do kill -9 "$(cat "$T/kid.pb$k")" 2>/dev/null; done
p show 'plain-*'; status_is 0 "show PATTERN"
check "... shows each budget matched" [ "$(grep -c '^budget: ' "$T/out")" -eq 2 ]
p show 'plain-*' --json
check "... and as JSON a list of them" [ "$(j "$T/out" '[b["name"] for b in d["budgets"]]')" = "['plain-a', 'plain-b']" ]
p show 'nosuch-*'; status_is 1 "show of a pattern matching nothing fails"
check "... saying so" err_has "no budget matches 'nosuch-\*'"

# set --expire, --weight, --origin: shown, kept, refused when bad.
p set plain-a --expire 10m --weight 3; status_is 0 "set --expire --weight"
check "... says what changed" has "update plain-a: expire never -> 10m; weight 0 -> 3"
p show plain-a
check "show says when it is removed" has "^expire:     removed after 10m idle$"
check "... its weight" has "^weight:     3 "
check "... and how long it has been idle" grep -q '^idle:       .* since the last admission$' "$T/out"
p set plain-a --requests 200/s; p show plain-a --json
check "a set without them keeps expire and weight" [ "$(j "$T/out" '(d["budget"]["expire_ns"], d["budget"]["weight"])')" = "(600000000000, 3)" ]
p list 'plain-a'; check "list has a WEIGHT column then" grep -q '^plain-a .* 10m  *3$' "$T/out"
p set plain-a --expire never --weight 0; p show plain-a --json
check "set --expire never --weight 0 clears them" [ "$(j "$T/out" '(d["budget"]["expire_ns"], d["budget"]["weight"])')" = "(0, 0)" ]
p set plain-a --weight 101; status_is 2 "set --weight above 100 is a usage error"
check "... naming the option and value" err_has "--weight '101'"
p set plain-a --expire soon; status_is 2 "set --expire with a bad duration is a usage error"
check "... naming the option and value" err_has "--expire 'soon'"
p set plain-a --expire 400d; status_is 2 "set --expire beyond 366 days is a usage error"
p set plain-a --origin 'user/*'; status_is 2 "set --origin with a bad character is a usage error"
check "... naming it" err_has "--origin 'user/\*'"

# sweep: a budget idle past its expire time goes.
p set brief --requests 100/s --expire 1s; p run brief -- true
sleep 1.5
p sweep; status_is 0 "sweep"
check "... removes the budget idle past its expire time" has "^removed 1 idle budget "
p show brief; status_is 1 "... which is gone"
p sweep; check "sweep again removes nothing" has "^removed 0 idle budgets "

# apply: a template is not a budget, and the budgets it made stay.
conf tpl.conf '[plain-a]' 'requests = 200/s' '[user-*]' 'requests = 100/s' 'expire = 1h'
p apply --dry-run --prune "$T/tpl.conf"; status_is 0 "apply --dry-run --prune of a config with a template"
check "... would delete the budget the file does not name" has "^delete plain-b$"
check "... and none made from the template" lacks "^delete user-"
check "... nor create the template" lacks "create user"
p apply --prune "$T/tpl.conf"; status_is 0 "apply --prune of a config with a template"
check "... counts the template apart" has "0 created, 0 updated, 1 deleted, 1 unchanged; 1 template"
p list 'user-*'; check "... and keeps the 300 budgets made from it" [ "$(grep -c '^user-' "$T/out")" -eq 300 ]
conf notpl.conf '[plain-a]' 'requests = 200/s'
p apply --dry-run --prune "$T/notpl.conf"
check "without the template, apply --prune would delete its budgets" [ "$(grep -c '^delete user-' "$T/out")" -eq 300 ]

# ---- 20,000 budgets, 1024 descriptors: read-only commands read, or fail --------
# A read-only command must never create a file, nor print a figure it
# could not read.  20,001 budgets in their own ledger; one of them, last in
# name order, has a slot held by `ratectl run`; then list, metrics, show,
# watch and check under the usual limit of 1024 descriptors must report
# that slot and that admission, and leave the leases directory as it was.
M=$T/many
"$PY" - "$T/many.conf" <<'EOF'
import sys
with open(sys.argv[1], 'w') as f:
    for i in range(20000):
        f.write('[b%05d]\nrequests = 1000/s\n' % i)
    f.write('[zz-held]\nconcurrency = 4\n')
EOF
t0=$(date +%s%N)
timeout 120 "$RC" --ledger "$M" apply "$T/many.conf" >"$T/out" 2>"$T/err"; S=$?
status_is 0 "apply creates 20,001 budgets (in $(( ($(date +%s%N) - t0) / 1000000 )) ms)"
"$RC" --ledger "$M" run zz-held -- sh -c 'echo $$ >"$0"; exec sleep 30' "$T/kid.held" &
HOLDER=$!; PIDS="$PIDS $HOLDER"
i=0
while [ $i -lt 100 ] && ! grep -q '"inflight": 1' "$T/out"; do
	sleep 0.05; i=$((i + 1))
	timeout 20 "$RC" --ledger "$M" show zz-held --json >"$T/out" 2>/dev/null
done
check "ratectl run holds a slot of zz-held" grep -q '"inflight": 1' "$T/out"
leases() { find "$M" -type f | wc -l; }
n0=$(leases)
# m ARGS...: ratectl on that ledger with at most 1024 descriptors.
m() {
	( ulimit -n 1024 && exec timeout 60 "$RC" --ledger "$M" "$@" ) >"$T/out" 2>"$T/err"
	S=$?
}
t0=$(date +%s%N)
m list; status_is 0 "list of 20,001 budgets under ulimit -n 1024 (in $(( ($(date +%s%N) - t0) / 1000000 )) ms)"
check "... shows the held slot in flight" grep -q '^zz-held .* 1/4 ' "$T/out"
check "... and every budget" [ "$(grep -c '^b[0-9]' "$T/out")" -eq 20000 ]
m list --json
check "list --json reports it too" [ "$(j "$T/out" '[b["inflight"] for b in d["budgets"] if b["name"] == "zz-held"][0]')" = 1 ]
m metrics; status_is 0 "metrics of 20,001 budgets under ulimit -n 1024"
check "... reports the admission" grep -qx 'ratectl_admitted_total{budget="zz-held"} 1' "$T/out"
check "... and the slot in flight" grep -qx 'ratectl_inflight{budget="zz-held"} 1' "$T/out"
m show zz-held; status_is 0 "show under ulimit -n 1024"
check "... agrees: 1 in flight" has "^in flight:  1 of 4"
check "... and 1 admitted" has "^  admitted  *1$"
m show b00042; status_is 0 "show of a budget never admitted"
check "... reports 0 admitted" has "^  admitted  *0$"
m watch --count 1; status_is 0 "watch under ulimit -n 1024"
check "... shows the held slot in flight" grep -q ' zz-held .*in flight 1/4;' "$T/out"
m check; status_is 0 "check of 20,001 budgets under ulimit -n 1024"
check "... counts them all" has "20001 budgets, 0 problems"
m apply --prune "$T/many.conf"; status_is 0 "apply --prune of the same 20,001 under ulimit -n 1024"
check "... changes nothing" has "0 created, 0 updated, 0 deleted, 20001 unchanged"
n1=$(leases)
check "no read-only command (nor apply) created a file ($n0 before, $n1 after)" [ "$n1" -eq "$n0" ]
kill -9 "$HOLDER" "$(cat "$T/kid.held")" 2>/dev/null; wait "$HOLDER" 2>/dev/null
# A budget whose record cannot be read (zz-held's damaged, the last in
# name order) is an error for every read-only command, never a row of
# zeros, and none prints the budgets before it either.
"$PY" - "$M/data.mdb" <<'EOF'
import re, sys
d = bytearray(open(sys.argv[1], 'rb').read())
n = 0
for m in re.finditer(rb'zz-held', bytes(d)):
    i = d.find(b'RCB3', m.end(), m.end() + 16)
    if i >= 0:
        d[i:i + 4] = b'XCB3'
        n += 1
open(sys.argv[1], 'r+b').write(d)
sys.exit(0 if n else 1)
EOF
check "zz-held's record damaged in the LMDB file" [ $? -eq 0 ]
for c in list "list --json" metrics "show zz-held" "watch --count 1"; do
	m $c; status_is 1 "$c with a damaged record fails"
	check "... naming the budget" err_has "zz-held.*damaged"
	check "... and prints no figure" [ ! -s "$T/out" ]
done
check "... and on a terminal says so after giving the screen back" \
	env RATECTL_LEDGER="$M" timeout 10 "$PY" "$T/watchtty.py" "$RC" err
m check; status_is 1 "check with a damaged record finds a problem"
check "... naming it" has "problem: .*zz-held.*damaged"

# ---- check --repair -----------------------------------------------------------------
# Damage every copy of the budget records' magic in the LMDB file.
"$PY" - "$L/data.mdb" <<'EOF'
import sys
d = bytearray(open(sys.argv[1], 'rb').read())
open(sys.argv[1], 'r+b').write(d.replace(b'RCB3', b'XCB3'))
EOF
r list; status_is 1 "a damaged record is an error for list"
r check; status_is 1 "check finds the damaged record"
check "... and says which" has "problem: budget '.*': record is damaged"
r check --repair; status_is 1 "check --repair without a config file fails"
check "... saying it needs one" err_has "needs one"
r check --repair --config "$T/good.conf"; status_is 0 "check --repair --config rebuilds the ledger"
check "... moving the damaged one aside" [ -d "$(sed -n 's/^repair: moved the damaged ledger to //p' "$T/out")" ]
check "... and creating every budget, empty" [ "$(grep -c 'starting empty' "$T/out")" -eq 3 ]
r show alpha --json; check "... which starts empty" [ "$(j "$T/out" 'd["budget"]["limits"][0]["available"]')" -le 1 ]
r check; status_is 0 "the rebuilt ledger checks clean"
dd if=/dev/zero of="$L/data.mdb" bs=4096 count=2 conv=notrunc 2>/dev/null
r check; status_is 1 "check finds a ledger that does not open"
r check --repair --config "$T/good.conf"; status_is 0 "... and --repair rebuilds it"
conf rep.conf '[rs]' 'requests = 1/s' "shared = $R1" 'hosts = 2'
dd if=/dev/zero of="$L/data.mdb" bs=4096 count=2 conv=notrunc 2>/dev/null
r check --repair --config "$T/rep.conf"; status_is 0 "check --repair from a config with a shared budget"
check "... shares it again" has '^repair: created rs from .*, starting empty, shared$'
r show rs; check "... as show says" has "^  url  *$R1\$"
r check --repair; status_is 0 "check --repair on a sound ledger does nothing"
check "... saying so" has "nothing to repair"
r --ledger "$T/nowhere" check; status_is 1 "check of a missing ledger fails"
r check --config x; status_is 2 "check --config without --repair is a usage error"

echo "# $FAILS failed"
[ "$FAILS" -eq 0 ]
