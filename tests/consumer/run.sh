#!/usr/bin/env bash
# Build tests/consumer/main.c the two ways a user links libcachekit, and run it:
#   1. installed + pkg-config: `make install DESTDIR=<tmp> PREFIX=/usr`, then
#      `pkg-config --cflags --libs cachekit` against the staged tree (against the
#      shared library, and against the static one with `pkg-config --static`);
#   2. vendored as a meson subproject: tests/consumer/meson with a generated
#      copy of this repository in its subprojects/libcachekit (found through
#      the [provide] entry of subprojects/libcachekit.wrap), static and shared.
# Nothing in the source tree is changed apart from the build/ directory and
# pkgconfig/cachekit.pc that `make install` regenerates. Needs no Redis.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
CC=${CC:-cc}
MAKE=${MAKE:-make}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ckconsumer.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

section() { printf '\n=== consumer: %s\n' "$*"; }
fail() { printf 'consumer: FAIL: %s\n' "$*" >&2; exit 1; }

version=$(awk '/^#define CK_VERSION_STRING /{gsub(/"/, "", $3); print $3}' \
    "$root/include/cachekit/version.h")
major=$(awk '/^#define CK_VERSION_MAJOR /{print $3}' "$root/include/cachekit/version.h")
minor=$(awk '/^#define CK_VERSION_MINOR /{print $3}' "$root/include/cachekit/version.h")
if [ "$major" = 0 ]; then soname=libcachekit.so.0.$minor; else soname=libcachekit.so.$major; fi

# ---- 1. installed, found with pkg-config
stage=$tmp/stage
section "make install DESTDIR=$stage PREFIX=/usr"
"$MAKE" -C "$root" --no-print-directory install DESTDIR="$stage" PREFIX=/usr >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log"; fail "make install"; }
(cd "$stage" && find . -type f -o -type l | sort)
for f in usr/include/cachekit.h usr/include/cachekit/version.h usr/lib/libcachekit.a \
    "usr/lib/$soname" usr/lib/libcachekit.so usr/lib/pkgconfig/cachekit.pc; do
    [ -e "$stage/$f" ] || fail "make install did not install /$f"
done

pc() {
    PKG_CONFIG_SYSROOT_DIR="$stage" \
    PKG_CONFIG_PATH="$stage/usr/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}" \
        pkg-config "$@"
}
got=$(pc --modversion cachekit)
[ "$got" = "$version" ] || fail "pkg-config --modversion cachekit says $got, version.h says $version"
cflags=$(pc --cflags cachekit)
libs=$(pc --libs cachekit)
static_libs=$(pc --static --libs cachekit)
echo "pkg-config --cflags cachekit:        $cflags"
echo "pkg-config --libs cachekit:          $libs"
echo "pkg-config --static --libs cachekit: $static_libs"

section "pkg-config consumer, shared library"
# shellcheck disable=SC2086
"$CC" -std=c11 -Wall -Wextra -Wpedantic -Werror $cflags -o "$tmp/consumer-shared" \
    "$here/main.c" $libs
needed=$(readelf -d "$tmp/consumer-shared" | sed -n 's/.*(NEEDED).*\[\(libcachekit[^]]*\)\].*/\1/p')
[ "$needed" = "$soname" ] || fail "consumer needs '$needed', expected $soname"
echo "NEEDED $needed"
LD_LIBRARY_PATH="$stage/usr/lib" ldd "$tmp/consumer-shared" >"$tmp/ldd.txt"
grep -q "$stage/usr/lib/$soname" "$tmp/ldd.txt" || { cat "$tmp/ldd.txt"; fail "the staged $soname is not the one loaded"; }
LD_LIBRARY_PATH="$stage/usr/lib" "$tmp/consumer-shared"

section "pkg-config consumer, static library (pkg-config --static)"
# -lcachekit would pick the .so; ask for the archive by name, keep the rest
# (Requires.private and Libs.private must be enough to link it).
static_libs=${static_libs/-lcachekit/-l:libcachekit.a}
# shellcheck disable=SC2086
"$CC" -std=c11 -Wall -Wextra -Wpedantic -Werror $cflags -o "$tmp/consumer-static" \
    "$here/main.c" $static_libs
readelf -d "$tmp/consumer-static" >"$tmp/readelf.txt"
if grep -q 'NEEDED.*libcachekit' "$tmp/readelf.txt"; then
    fail "the static consumer still needs libcachekit.so"
fi
"$tmp/consumer-static"

# ---- 2. vendored as a meson subproject
section "meson subproject consumer"
proj=$tmp/meson-consumer
mkdir -p "$proj"
cp -R "$here/meson/." "$proj/"
cp "$here/main.c" "$tmp/main.c"   # the project builds ../main.c
# A generated copy of the repository as the subproject (no symlink loop, no
# build directories, no VCS data).
mkdir -p "$proj/subprojects/libcachekit"
(cd "$root" && tar -cf - --exclude=./.git --exclude='./build*' --exclude=./tests/consumer .) |
    (cd "$proj/subprojects/libcachekit" && tar -xf -)

for lib in static shared; do
    echo "--- libcachekit:default_library=$lib"
    meson setup "$tmp/meson-build-$lib" "$proj" --force-fallback-for=cachekit \
        -Dlibcachekit:default_library=$lib >"$tmp/meson-setup-$lib.log" 2>&1 ||
        { cat "$tmp/meson-setup-$lib.log"; fail "meson setup ($lib)"; }
    grep -E 'Subproject libcachekit|Dependency cachekit' "$tmp/meson-setup-$lib.log" || true
    meson compile -C "$tmp/meson-build-$lib" >"$tmp/meson-compile-$lib.log" 2>&1 ||
        { cat "$tmp/meson-compile-$lib.log"; fail "meson compile ($lib)"; }
    "$tmp/meson-build-$lib/consumer"
done

printf '\nconsumer: all consumers built and ran\n'
