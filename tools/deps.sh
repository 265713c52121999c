#!/bin/sh
# Install the Debian packages that building, testing and the demo need, when
# missing.  As root it runs apt-get; otherwise it prints the line to run.
# Usage: tools/deps.sh [build|test|bench|all]   (default: all)
set -eu

what=${1:-all}
build="make gcc pkg-config liblmdb-dev lmdb-utils libcurl4-openssl-dev libinih-dev libjansson-dev libmicrohttpd-dev"
test="libcmocka-dev curl libcurl3-gnutls php-cli php-curl python3-pycurl python3 python3-pytest python3-httpx python3-celery python3-kombu python3-redis redis-server gunicorn"
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

missing=""
for p in $pkgs; do
	st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	case "$st" in
	*"install ok installed"*) ;;
	*) missing="$missing $p" ;;
	esac
done
[ -z "$missing" ] && exit 0

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
