#!/bin/sh
# tools/deb/build.sh B: Debian packages of this tree (already built in B by
# `make B=... all`; `make deb` runs this) into B/deb:
#
#   libratectl0      libratectl.so.0 and libratectl-http.so.0 (shlibs,
#                    symbols, the ldconfig trigger)
#   libratectl-dev   the headers, the .so links, the .a libraries, the .pc files
#   ratectl          the command, its man pages, /usr/lib/tmpfiles.d/ratectl.conf
#                    (the shared ledger /run/ratectl, group ratectl, made by
#                    the postinst), and the exporter's systemd unit when
#                    tools/systemd/ratectl-exporter.service exists
#   ratectl-preload  the LD_PRELOAD shim, /usr/lib/<multiarch>/ratectl/libratectl-preload.so
#   python3-ratectl  the Python package in /usr/lib/python3/dist-packages
#
# Left out: ratectl-fakeprov (a fake LLM provider for the tests and the
# demo, nothing a host runs) and the Node package (npm installs it).
#
# The files come from `make install PREFIX=/usr DESTDIR=...` into one tree,
# split by package; a file that make install puts in no package stops the
# build, so that nothing new goes missing silently.  Plain dpkg-deb with
# the control files written here: no debian/ directory, no debhelper.
# Depends come from dpkg-shlibdeps.  Needs dpkg-dev (tools/deps.sh test).
#
# Usage: sh tools/deb/build.sh [B]   (default: build)
set -eu
B=${1:-build}
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
here=tools/deb
die() { echo "tools/deb/build.sh: $*" >&2; exit 1; }

for t in dpkg-deb dpkg-shlibdeps dpkg-gensymbols dpkg-architecture; do
	command -v $t >/dev/null 2>&1 || die "no $t (install dpkg-dev: tools/deps.sh test)"
done
[ -f "$B/libratectl.so" ] || die "nothing built in $B: run make B=$B all first"

hdr() { sed -n "s/^#define $1 //p" "$2"; }
upstream=$(hdr RATECTL_VERSION_STRING include/ratectl.h | tr -d '"')
[ -n "$upstream" ] || die "no RATECTL_VERSION_STRING in include/ratectl.h"
version=$upstream-${RATECTL_DEB_REVISION:-1}
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
ma=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
libdir=/usr/lib/$ma
maint="ratectl maintainers <maintainers@users.noreply.r-seed-9a42a297.example>"
# The date of the commit built, for the changelog and reproducible files.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)

out=$B/deb
work=$(cd "$B" && pwd)/deb-work
rm -rf "$work" "$out"
mkdir -p "$work/debian" "$out"
stage=$work/stage

# ---- everything make install puts under /usr ------------------------------
${MAKE:-make} --no-print-directory B="$B" PREFIX=/usr LIBDIR="$libdir" \
	DESTDIR="$stage" install >"$work/install.log" 2>&1 ||
	{ cat "$work/install.log" >&2; die "make install failed"; }
# The .pc files were made for the PREFIX of the build (make does not
# remake them for another): say where the package puts things.
# shellcheck disable=SC2016  # ${prefix} is pkg-config's
for pc in "$stage$libdir"/pkgconfig/*.pc; do
	sed -i -e 's|^prefix=.*|prefix=/usr|' -e "s|^libdir=.*|libdir=\${prefix}/lib/$ma|" \
		-e 's|^includedir=.*|includedir=${prefix}/include|' "$pc"
done
# The installed Python package finds the libraries in the multiarch
# directory of the Python that runs it (the package itself is arch: all).
cat >"$stage/usr/lib/python3/dist-packages/ratectl/_config.py" <<'EOF'
"""Where the Debian package libratectl0 put the C libraries."""
import sys

LIBDIR = "/usr/lib/" + getattr(sys.implementation, "_multiarch", "")
EOF

# take PKG PATH...: move PATHs (relative to /, globs allowed) from the
# staging tree into package PKG's tree.
take() {
	p=$1
	shift
	for f in "$@"; do
		found=0
		for s in "$stage"/$f; do
			[ -e "$s" ] || [ -L "$s" ] || continue
			found=1
			d=$work/debian/$p/${s#"$stage"/}
			mkdir -p "$(dirname "$d")"
			mv "$s" "$d"
		done
		[ $found -eq 1 ] || die "make install made no /$f (for $p)"
	done
}
take libratectl0 "${libdir#/}/libratectl.so.*" "${libdir#/}/libratectl-http.so.*"
take libratectl-dev usr/include/ratectl.h usr/include/ratectl_http.h \
	"${libdir#/}/libratectl.so" "${libdir#/}/libratectl-http.so" \
	"${libdir#/}/libratectl.a" "${libdir#/}/libratectl-http.a" "${libdir#/}/pkgconfig"
take ratectl usr/bin/ratectl usr/share/man/man1/ratectl.1 usr/share/man/man5/ratectl.conf.5
take ratectl-preload "${libdir#/}/libratectl-preload.so"
# The shim has no soname (it is preloaded by path, never linked): it goes
# in a directory of its own, off the linker's path, as policy asks.
d=$work/debian/ratectl-preload$libdir
mkdir "$d/ratectl"
mv "$d/libratectl-preload.so" "$d/ratectl/"
take python3-ratectl usr/lib/python3/dist-packages/ratectl
# Left out on purpose (see the top).
rm -f "$stage/usr/bin/ratectl-fakeprov"
rm -rf "$stage/usr/lib/node_modules"
left=$(find "$stage" ! -type d | sed "s|^$stage||")
[ -z "$left" ] || die "make install put these in no package (add them here):
$left"

# Files the packages add.
d=$work/debian/ratectl
install -D -m 644 $here/ratectl.tmpfiles "$d/usr/lib/tmpfiles.d/ratectl.conf"
if [ -f tools/systemd/ratectl-exporter.service ]; then
	install -D -m 644 tools/systemd/ratectl-exporter.service \
		"$d/lib/systemd/system/ratectl-exporter.service"
fi
gzip -9n "$d"/usr/share/man/man*/*
for p in libratectl0 libratectl-dev ratectl ratectl-preload python3-ratectl; do
	doc=$work/debian/$p/usr/share/doc/$p
	install -D -m 644 $here/copyright "$doc/copyright"
	printf '%s\n' "ratectl ($version) unstable; urgency=medium" '' \
		"  * Built with make deb from commit $commit." '' \
		" -- $maint  $(date -u -R -d "@$SOURCE_DATE_EPOCH")" >"$doc/changelog.Debian"
	gzip -9n "$doc/changelog.Debian"
done
install -m 644 doc/packages.md "$work/debian/ratectl/usr/share/doc/ratectl/packages.md"

# Binaries stripped (no -dbgsym packages), modes as policy wants them:
# directories and programs 755, shared libraries and the rest 644.
for p in "$work"/debian/*/; do
	find "$p" -type d -exec chmod 755 {} +
	find "$p" -type f -exec chmod 644 {} +
done
chmod 755 "$work/debian/ratectl/usr/bin/ratectl"
for f in "$work"/debian/libratectl0/"$libdir"/*.so.*.*.* \
	"$work/debian/ratectl-preload$libdir/ratectl/libratectl-preload.so" \
	"$work/debian/ratectl/usr/bin/ratectl"; do
	strip --strip-unneeded --remove-section=.comment --remove-section=.note "$f"
done
strip --strip-debug --remove-section=.comment --enable-deterministic-archives \
	"$work/debian/libratectl-dev$libdir"/*.a

# ---- control files ---------------------------------------------------------
cd "$work"
# dpkg-shlibdeps and dpkg-gensymbols read a source package's control file.
cat >debian/control <<EOF
Source: ratectl
Maintainer: $maint
Section: libs
Priority: optional
Standards-Version: 4.6.2

Package: libratectl0
Architecture: any
EOF
mkdir -p debian/libratectl0/DEBIAN
printf 'libratectl %s libratectl0 (>= %s)\nlibratectl-http %s libratectl0 (>= %s)\n' \
	0 "$upstream" 0 "$upstream" >debian/libratectl0/DEBIAN/shlibs
dpkg-gensymbols -q -plibratectl0 -Pdebian/libratectl0 -v"$upstream" \
	-Odebian/libratectl0/DEBIAN/symbols >/dev/null 2>&1 ||
	die "dpkg-gensymbols failed on libratectl0"
# dpkg-gensymbols writes upstream versions with a -1~ floor; keep them
# plain.  Build-Depends-Package: what a package built against them needs.
sed -i -e "s/ $upstream-1~\$/ $upstream/" \
	-e '/^lib/a\
* Build-Depends-Package: libratectl-dev' debian/libratectl0/DEBIAN/symbols
install -m 644 "$top/$here/libratectl0.triggers" debian/libratectl0/DEBIAN/triggers

# shlibdeps PKG FILE...: the Depends of these ELF files (the package's own
# libraries excluded).
shlibdeps() {
	p=$1
	shift
	dpkg-shlibdeps -O -x"$p" -l"debian/libratectl0$libdir" "$@" 2>"$work/shlibdeps.err" |
		sed -n 's/^shlibs:Depends=//p' || { cat "$work/shlibdeps.err" >&2; die "dpkg-shlibdeps failed for $p"; }
}
dep_lib=$(shlibdeps libratectl0 debian/libratectl0"$libdir"/*.so.*.*.*)
dep_cmd=$(shlibdeps ratectl debian/ratectl/usr/bin/ratectl)
dep_pre=$(shlibdeps ratectl-preload "debian/ratectl-preload$libdir/ratectl/libratectl-preload.so")
for v in "$dep_lib" "$dep_cmd" "$dep_pre"; do
	[ -n "$v" ] || { cat "$work/shlibdeps.err" >&2; die "dpkg-shlibdeps found no dependency"; }
done

# control PKG ARCH SECTION DEPENDS MULTIARCH SUMMARY: DEBIAN/control, the
# long description read from stdin (lines starting with a space).
control() {
	mkdir -p "debian/$1/DEBIAN"
	size=$(du -sk --exclude=DEBIAN "debian/$1" | cut -f1)
	{
		echo "Package: $1"
		echo "Source: ratectl"
		echo "Version: $version"
		echo "Architecture: $2"
		echo "Maintainer: $maint"
		echo "Installed-Size: $size"
		echo "Depends: $4"
		echo "Section: $3"
		echo "Priority: optional"
		[ -z "$5" ] || echo "Multi-Arch: $5"
		echo "Description: $6"
		cat
	} >"debian/$1/DEBIAN/control"
}
about=' ratectl makes every process on a host share one rate limit for LLM APIs:
 pre-forked web servers, task workers, cron jobs and scripts that share an
 API key admit their requests through one token ledger (LMDB) instead of N
 in-process limiters, with no server.'
control libratectl0 "$arch" libs "$dep_lib" same \
	"one rate limit shared by every process on a host (libraries)" <<EOF
$about
 .
 This package holds libratectl (the ledger: budgets of request and token
 limits, admission, fair waiting) and libratectl-http (the policy for HTTP
 requests to LLM APIs, over the config file /etc/ratectl.conf).
EOF
control libratectl-dev "$arch" libdevel \
	"libratectl0 (= $version), liblmdb-dev, libhiredis-dev, libinih-dev" same \
	"one rate limit shared by every process on a host (development files)" <<EOF
$about
 .
 This package holds the headers ratectl.h and ratectl_http.h, the static
 libraries and the pkg-config files (pkg-config --cflags --libs ratectl).
EOF
control ratectl "$arch" admin "$dep_cmd, adduser" foreign \
	"one rate limit shared by every process on a host (command)" <<EOF
$about
 .
 This package holds the ratectl command (inspect, set, reset, watch and
 export budgets, run a command under one) and the host's shared ledger
 directory /run/ratectl for the members of group ratectl.
EOF
control ratectl-preload "$arch" libs "$dep_pre" same \
	"one rate limit shared by every process on a host (LD_PRELOAD shim)" <<EOF
$about
 .
 This package holds libratectl-preload.so: preloaded into a program that
 uses libcurl, it throttles the program's requests to the hosts of the
 config file's budgets, with no change to the program.
EOF
control python3-ratectl all python \
	"python3:any, libratectl0 (>= $upstream)" foreign \
	"one rate limit shared by every process on a host (Python 3)" <<EOF
$about
 .
 This package holds the Python module ratectl (ctypes over libratectl):
 Ledger, transports for httpx (and so the openai SDK), and a LangChain
 rate limiter.
EOF
for s in ratectl.postinst ratectl.postrm python3-ratectl.postinst python3-ratectl.prerm; do
	install -m 755 "$top/$here/$s" "debian/${s%.*}/DEBIAN/${s##*.}"
done

# ---- md5sums and the .deb files --------------------------------------------
for p in libratectl0 libratectl-dev ratectl ratectl-preload python3-ratectl; do
	(cd "debian/$p" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' |
		LC_ALL=C sort | xargs md5sum >DEBIAN/md5sums)
	chmod 644 "debian/$p/DEBIAN/md5sums" "debian/$p/DEBIAN/control"
	a=$(sed -n 's/^Architecture: //p' "debian/$p/DEBIAN/control")
	dpkg-deb --root-owner-group -Zxz --build "debian/$p" \
		"$top/$out/${p}_${version}_$a.deb" >/dev/null
done
cd "$top"
ls -1 "$out"/*.deb
