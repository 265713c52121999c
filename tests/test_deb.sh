#!/bin/sh
# test_deb.sh - the Debian packages (make deb, tools/deb/build.sh): built,
# passed by lintian with no error, installed on this machine with apt-get,
# used as installed (the command, a C program built with pkg-config, the
# Python package from /usr/bin/python3, the shim, the shared ledger
# /run/ratectl joined through the group ratectl by another user), then
# purged, leaving nothing behind.
#
# It changes the machine while it runs, so: root only; skipped when a
# package of ours is already installed or /run/ratectl exists (it would
# remove or change them) and when another copy of it runs; an EXIT trap
# purges the packages and removes the group it made, whatever happens.
# Nothing else of `make test` runs meanwhile (tests/run.sh runs suites one
# after another), and the other tests load the build tree's libraries
# (static links, the build tree first in the Python package's search), so
# the installed copies are never theirs.  Every step is bounded in time.
# Run as: B=build sh tests/test_deb.sh
set -u
B=${B:-build}
PKGS="libratectl0 libratectl-dev ratectl ratectl-preload python3-ratectl"
FAILS=0
T=
installed=0
made_group=0
fresh=""        # directories of the packages absent before the test

pass() { echo "ok - $1"; }
fail() { echo "not ok - $1"; FAILS=$((FAILS + 1)); }
check() { d=$1; shift; if "$@"; then pass "$d"; else fail "$d"; fi; }
skip() { echo "ok - debian packages # SKIP $1"; exit 0; }
# has PATTERN: the last command's output ($out) has a line matching it.
has() { printf '%s\n' "$out" | grep -q -- "$1"; }

[ "$(id -u)" -eq 0 ] || skip "not root (the packages are installed with apt-get)"
[ -z "${RATECTL_SANITIZER:-}" ] || skip "sanitizer build ($RATECTL_SANITIZER): packages are of plain builds"
command -v apt-get >/dev/null 2>&1 || skip "no apt-get: not a Debian system"
for p in $PKGS; do
	case $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null) in
	''|not-installed|config-files) ;;
	*) skip "$p is installed on this machine (this test would remove it)" ;;
	esac
done
[ ! -e /run/ratectl ] || skip "/run/ratectl exists (the package would take it over; remove it to run this test)"
exec 9>/run/lock/ratectl-test-deb.lock
flock -n 9 || skip "another test_deb.sh is running"
for t in lintian dpkg-shlibdeps cc pkg-config setpriv; do
	command -v $t >/dev/null 2>&1 || { echo "not ok - $t is needed (tools/deps.sh test)"; exit 1; }
done

T=$(mktemp -d "${TMPDIR:-/tmp}/test_deb.XXXXXX") || exit 1
chmod 755 "$T"          # its programs run as nobody too
getent group ratectl >/dev/null || made_group=1

# present: those of ours dpkg knows of, installed or in part.
present() {
	for p in $PKGS; do
		case $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null) in
		''|not-installed) ;;
		*) echo "$p" ;;
		esac
	done
}
purge() {
	ps=$(present)
	[ -n "$ps" ] || return 0
	# shellcheck disable=SC2086
	timeout 120 apt-get purge -y -qq -o DPkg::Lock::Timeout=60 $ps >"$T/purge.log" 2>&1 && return 0
	cat "$T/purge.log"
	# shellcheck disable=SC2086
	timeout 60 dpkg --purge --force-all $ps
	return 1
}
cleanup() {
	if [ $installed -eq 1 ]; then
		# The shared ledger made below, so that the postrm can remove the directory.
		rm -f /run/ratectl/data.mdb /run/ratectl/lock.mdb /run/ratectl/wake
		purge
		installed=0
	fi
	# What a broken package would leave behind (the checks below say so).
	for d in $fresh; do rm -rf "$d"; done
	if [ $made_group -eq 1 ] && getent group ratectl >/dev/null; then
		groupdel ratectl 2>/dev/null || delgroup --quiet --system ratectl 2>/dev/null
	fi
	rm -rf "$T"
	rm -f /run/lock/ratectl-test-deb.lock
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

# ---- build and lint ---------------------------------------------------------
if ! timeout 240 make --no-print-directory B="$B" deb >"$T/build.log" 2>&1; then
	cat "$T/build.log"
	echo "not ok - make deb builds the packages"
	exit 1
fi
set -- "$(cd "$B" && pwd)"/deb/*.deb     # apt-get takes paths, not names
pass "make deb builds $# packages"
for p in $PKGS; do
	for f in "$B"/deb/"${p}"_*.deb; do [ -f "$f" ] || fail "no package $p in $B/deb"; done
done
timeout 120 lintian --tag-display-limit 0 "$@" >"$T/lintian.log" 2>&1
sed 's/^/# lintian: /' "$T/lintian.log"
check "lintian finds no error" sh -c "! grep -q '^E:' '$T/lintian.log'"

# ---- install ----------------------------------------------------------------
for f in "$@"; do dpkg-deb -c "$f"; done | awk '$1 !~ /^d/ {print substr($6, 2)}' >"$T/files"
there=$(while read -r f; do [ ! -e "$f" ] && [ ! -L "$f" ] || echo "$f"; done <"$T/files")
[ -z "$there" ] || skip "files of the packages are on this machine already (make install PREFIX=/usr?): $(echo "$there" | tr '\n' ' ')"
ma=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
libdir=/usr/lib/$ma
for d in /usr/lib/python3/dist-packages/ratectl "$libdir/ratectl"; do
	[ -e "$d" ] || fresh="$fresh $d"
done
installed=1
if ! DEBIAN_FRONTEND=noninteractive timeout 180 apt-get install -y -qq --no-install-recommends \
	-o DPkg::Lock::Timeout=60 "$@" >"$T/install.log" 2>&1; then
	cat "$T/install.log"
	echo "not ok - apt-get install ./*.deb"
	exit 1
fi
pass "apt-get install installs them"
ok=1
for p in $PKGS; do
	[ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null)" = "ii " ] || { ok=0; echo "# $p not installed"; }
done
check "... every one configured" [ $ok -eq 1 ]

v=$(sed -n 's/^#define RATECTL_VERSION_STRING "\(.*\)"/\1/p' include/ratectl.h)
out=$(timeout 10 /usr/bin/ratectl --version 2>&1)
check "ratectl --version says $v ($out)" has "^ratectl $v "
# (/lib is /usr/lib on a merged-/usr system, and ldconfig may say either.)
out=$(ldconfig -p)
check "... the library is known to ldconfig (the trigger ran)" \
	has "libratectl.so.0 .*=> \(/usr\)\?/lib/$ma/libratectl.so.0\$"
ok=1
for m in man1/ratectl.1 man5/ratectl.conf.5; do
	gzip -dc "/usr/share/man/$m.gz" 2>/dev/null | grep -q '^\.TH' || { ok=0; echo "# no /usr/share/man/$m.gz"; }
done
check "... its man pages are there, gzipped" [ $ok -eq 1 ]
if [ -f tools/systemd/ratectl-exporter.service ]; then
	check "... and the exporter's systemd unit" cmp -s tools/systemd/ratectl-exporter.service \
		/lib/systemd/system/ratectl-exporter.service
fi

# A C program built from the installed header, .pc and library: a budget
# of 2 requests a minute admits 2 and refuses the third.  With a second
# argument it opens the ledger shared with its group.
cat >"$T/prog.c" <<'EOF'
#include <ratectl.h>
#include <stdio.h>

int main(int argc, char **argv)
{
	ratectl_options o = RATECTL_OPTIONS_INIT;
	ratectl_budget b = RATECTL_BUDGET_INIT;
	ratectl_cost c = { 1, 10, RATECTL_INTERACTIVE };
	ratectl_lease l;
	ratectl *h;
	int i, admitted = 0, rc;

	o.shared_group = argc > 2;
	if (ratectl_open(&h, argv[1], &o) != 0) {
		fprintf(stderr, "prog: %s\n", ratectl_errmsg());
		return 1;
	}
	b.nlimits = 1;
	b.limits[0].dim = RATECTL_REQUESTS;
	if (ratectl_parse_rate("2/min", &b.limits[0].count, &b.limits[0].period_ns) != 0 ||
	    ratectl_budget_set(h, "pkgtest", &b, 0) != 0) {
		fprintf(stderr, "prog: %s\n", ratectl_errmsg());
		return 1;
	}
	for (i = 0; i < 3; i++) {
		rc = ratectl_try(h, "pkgtest", &c, &l, NULL);
		if (rc == 0) {
			admitted++;
			ratectl_release(h, &l, 10);
		} else if (rc != RATECTL_ELIMITED) {
			fprintf(stderr, "prog: try: %s\n", ratectl_strerror(rc));
		}
	}
	printf("admitted %d of 3\n", admitted);
	ratectl_close(h);
	return 0;
}
EOF
flags=$(env -u PKG_CONFIG_PATH pkg-config --cflags --libs ratectl 2>&1)
check "pkg-config --cflags --libs ratectl: $flags" [ -n "$flags" ]
# shellcheck disable=SC2086
cc -o "$T/prog" "$T/prog.c" $flags >"$T/cc.log" 2>&1
check "... a program compiles and links with it" [ -x "$T/prog" ]
out=$(cd / && env -u LD_LIBRARY_PATH timeout 20 "$T/prog" "$T/ledger" 2>&1)
check "... and runs: admits 2 of 3 on a budget of 2/min ($out)" [ "$out" = "admitted 2 of 3" ]
out=$(env -u LD_LIBRARY_PATH ldd "$T/prog" 2>&1)
check "... with the installed library" has "libratectl.so.0 => \(/usr\)\?/lib/$ma/libratectl.so.0 "
# shellcheck disable=SC2046
cc -o "$T/prog_static" "$T/prog.c" $(pkg-config --cflags ratectl) \
	"$libdir/libratectl.a" $(pkg-config --static --libs-only-other --libs-only-l ratectl | sed 's/-lratectl //') \
	>>"$T/cc.log" 2>&1
out=$(timeout 20 "$T/prog_static" "$T/ledger_static" 2>&1)
check "... and with the static library ($out)" [ "$out" = "admitted 2 of 3" ]
check "pkg-config knows ratectl-http $v" [ "$(pkg-config --modversion ratectl-http 2>&1)" = "$v" ]
[ -x "$T/prog" ] || cat "$T/cc.log"

# The Python package as any script on the host sees it.
cat >"$T/py.py" <<'EOF'
import sys
import ratectl
from ratectl import _lib
L = ratectl.Ledger(sys.argv[1])
L.set("pkgtest", requests="2/min")
n = 0
for _ in range(3):
    try:
        L.try_acquire("pkgtest").release()
        n += 1
    except ratectl.Limited:
        pass
print(ratectl.__version__, ratectl.__file__, _lib.library_path(), n)
EOF
out=$(cd / && env -i PATH=/usr/bin:/bin timeout 30 /usr/bin/python3 "$T/py.py" "$T/pyledger" 2>&1)
echo "# python: $out"
# shellcheck disable=SC2086  # the words of the line
set -- $out
case ${2:-} in /usr/lib/python3/dist-packages/ratectl/*) where=dist-packages ;; *) where=${2:-} ;; esac
check "/usr/bin/python3 imports ratectl $v from dist-packages" [ "${1:-}" = "$v" -a "$where" = dist-packages ]
check "... loads $libdir/libratectl.so.0 and admits 2 of 3" \
	[ "${3:-}" = "$libdir/libratectl.so.0" -a "${4:-}" = 2 ]

shim=$libdir/ratectl/libratectl-preload.so
out=$(LD_PRELOAD=$shim timeout 10 /bin/true 2>&1)
check "the shim $shim preloads cleanly" [ -f "$shim" -a -z "$out" ]

# The shared ledger: /run/ratectl 2770 root:ratectl; a user in the group
# (as SupplementaryGroups=ratectl makes a service) shares it, one outside
# it cannot.
st=$(stat -c '%a %U %G' /run/ratectl 2>&1)
check "/run/ratectl is 2770 root:ratectl ($st)" [ "$st" = "2770 root ratectl" ]
gid=$(getent group ratectl | cut -d: -f3)
out=$(cd / && timeout 20 setpriv --reuid=65534 --regid=65534 --groups="$gid" \
	"$T/prog" /run/ratectl shared 2>&1)
check "nobody in group ratectl uses the shared ledger ($out)" [ "$out" = "admitted 2 of 3" ]
out=$(cd / && timeout 20 setpriv --reuid=65534 --regid=65534 --groups="$gid" \
	env -u RATECTL_LEDGER /usr/bin/ratectl --ledger /run/ratectl list 2>&1)
check "... and so does the command, as another member" has '^pkgtest'
out=$(cd / && timeout 20 setpriv --reuid=65534 --regid=65534 --clear-groups \
	"$T/prog" /run/ratectl shared 2>&1)
check "... nobody outside the group cannot ($out)" has 'Permission denied\|refus'

# ---- purge: nothing left ------------------------------------------------------
rm -f /run/ratectl/data.mdb /run/ratectl/lock.mdb /run/ratectl/wake
purge
rc=$?
installed=0
check "apt-get purge removes them" [ $rc -eq 0 ]
ps=$(present)
check "... every package gone from dpkg's database${ps:+ (not: $ps)}" [ -z "$ps" ]
left=$(while read -r f; do [ ! -e "$f" ] && [ ! -L "$f" ] || echo "$f"; done <"$T/files")
[ -z "$left" ] || echo "# left: $left"
check "... every file of them gone ($(wc -l <"$T/files") checked)" [ -z "$left" -a -s "$T/files" ]
check "... the byte-compiled Python too" [ ! -e /usr/lib/python3/dist-packages/ratectl ]
check "... /run/ratectl too" [ ! -e /run/ratectl ]
check "... and ldconfig forgot the library" sh -c "! ldconfig -p | grep -q libratectl"
# The group stays after a purge, as Debian's system groups do; the trap
# removes it when this test made it.
echo "# the group ratectl stays after the purge (removed by this test when it made it)"

[ $FAILS -eq 0 ]
