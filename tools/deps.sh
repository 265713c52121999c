#!/bin/sh
# Install the Debian packages that building, testing and the demo need, when
# missing.  As root it runs apt-get; otherwise it prints the line to run.
# For test, bench and all it also wants Node.js >= 18 with npm and the
# Node-API headers (Debian's nodejs npm libnode-dev when they are missing;
# a Node installed another way, e.g. NodeSource's, is used as it is), then
# installs the Node tests' pinned clients (tests/node/package-lock.json)
# with npm ci when tests/node/node_modules is missing or was installed
# from another lock.
# Usage: tools/deps.sh [build|test|bench|all]   (default: all)
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)

what=${1:-all}
build="make gcc pkg-config liblmdb-dev lmdb-utils libhiredis-dev libcurl4-openssl-dev libinih-dev libjansson-dev libmicrohttpd-dev"
test="libcmocka-dev curl lintian dpkg-dev libcurl3-gnutls php-cli php-curl python3-pycurl python3 python3-pytest python3-httpx python3-celery python3-kombu python3-redis redis-server gunicorn prometheus"
bench="libhiredis-dev redis-server libsqlite3-dev"
fuzz="clang libclang-rt-14-dev"

case "$what" in
build) pkgs="$build" ;;
test)  pkgs="$build $test" ;;
bench) pkgs="$build $test $bench" ;;
fuzz)  pkgs="$build $test $fuzz" ;;
all)   pkgs="$build $test $bench $fuzz" ;;
*) echo "usage: tools/deps.sh [build|test|bench|fuzz|all]" >&2; exit 2 ;;
esac
case "$what" in test|bench|all) node=1 ;; *) node=0 ;; esac

missing=""
for p in $pkgs; do
	st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	case "$st" in
	*"install ok installed"*) ;;
	*) missing="$missing $p" ;;
	esac
done

# Node is looked for by its commands, not its package: the machines may
# have it from NodeSource (whose nodejs ships npm and the headers, and
# conflicts with Debian's npm package).
node_major() {
	command -v node >/dev/null 2>&1 || { echo 0; return; }
	node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0
}
if [ "$node" -eq 1 ]; then
	if [ "$(node_major)" -lt 18 ]; then
		missing="$missing nodejs npm libnode-dev"
	else
		command -v npm >/dev/null 2>&1 || missing="$missing npm"
		[ -f /usr/include/node/node_api.h ] || missing="$missing libnode-dev"
	fi
fi

if [ -n "$missing" ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "ratectl: missing Debian packages:$missing" >&2
		echo "ratectl: run as root: apt-get install -y$missing" >&2
		exit 1
	fi
	echo "ratectl: installing:$missing" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null 2>&1 || apt-get update
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
	if [ "$node" -eq 1 ] && [ "$(node_major)" -lt 18 ]; then
		echo "ratectl: Node.js >= 18 is needed; this system's is $(node --version 2>/dev/null || echo absent)" >&2
		exit 1
	fi
fi
[ "$node" -eq 1 ] || exit 0

# The Node tests' clients, exactly as locked.  node_modules/.ratectl-lock
# holds the sha256 of the lock they were installed from.
dir="$top/tests/node"
want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
have=$(cat "$dir/node_modules/.ratectl-lock" 2>/dev/null || true)
[ "$want" = "$have" ] && exit 0
echo "ratectl: installing the Node tests' clients (npm ci in tests/node)" >&2
if ! (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2); then
	echo "ratectl: npm ci failed in $dir; run it there by hand to see why" >&2
	exit 1
fi
echo "$want" >"$dir/node_modules/.ratectl-lock"
