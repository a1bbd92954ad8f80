#!/bin/sh
# Make sure the Debian packages that build, test and demo libcachekit are
# installed. Cheap when they are: one dpkg-query, no network.
#   - everything present            -> exit 0 silently (or "ok" with -v)
#   - something missing, root + apt -> apt-get update && apt-get install -y ...
#   - something missing otherwise   -> print the exact command, exit 1
# Usage: scripts/deps.sh [-v] [-n] [EXTRA-PACKAGE...]
#   -v  say so when everything is present    -n  only check, never install
#   EXTRA-PACKAGE: also needed by this target (e.g. valgrind for make valgrind)
set -eu

PACKAGES="libhiredis-dev libjansson-dev libssl-dev check redis-server redis-tools
pkg-config meson ninja-build libsqlite3-dev python3 python3-redis"

verbose=0
install=1
for arg in "$@"; do
    case "$arg" in
    -v) verbose=1 ;;
    -n) install=0 ;;
    -*) echo "usage: $0 [-v] [-n] [EXTRA-PACKAGE...]" >&2; exit 2 ;;
    *) PACKAGES="$PACKAGES $arg" ;;
    esac
done

if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "deps: dpkg-query not found: this is not a Debian-like system." >&2
    echo "deps: install hiredis (0.14.x), jansson, OpenSSL's libcrypto, check," >&2
    echo "deps: redis-server + redis-cli, pkg-config, meson and ninja yourself." >&2
    exit 1
fi

missing=""
for p in $PACKAGES; do
    st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$st" = installed ] || missing="$missing $p"
done
missing=${missing# }

if [ -z "$missing" ]; then
    [ "$verbose" = 0 ] || echo "deps: all packages present: $(echo $PACKAGES)"
    exit 0
fi

echo "deps: missing Debian packages: $missing" >&2
if [ "$install" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "deps: installing them with apt-get"
    apt-get update
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y $missing
    exit 0
fi
echo "deps: run this, then try again:" >&2
echo "    sudo apt-get install -y $missing" >&2
exit 1
