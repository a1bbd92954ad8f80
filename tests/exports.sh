#!/bin/sh
# The shared library exports exactly the ck_* functions the public headers
# declare with CACHEKIT_API: no internal ck__ helper, no stray symbol.
#   tests/exports.sh build/libcachekit.so.0.1
set -eu
lib=${1:?usage: exports.sh path/to/libcachekit.so}
here=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# declared: the identifier before the '(' on every CACHEKIT_API line
grep -h 'CACHEKIT_API' "$here"/include/cachekit.h "$here"/include/cachekit/*.h |
    grep -v '#' | sed -n 's/.*[ *]\(ck_[a-z0-9_]*\)(.*/\1/p' | sort -u > "$tmp/declared"
# exported: defined dynamic symbols, minus the linker's own
nm -D --defined-only "$lib" | awk '{print $3}' |
    grep -v -E '^(_init|_fini|_edata|_end|__bss_start)$' | sort -u > "$tmp/exported"

if [ ! -s "$tmp/declared" ]; then
    echo "exports.sh: found no CACHEKIT_API declarations" >&2
    exit 1
fi
if ! diff -u "$tmp/declared" "$tmp/exported" > "$tmp/diff"; then
    echo "exports.sh: exported symbols differ from the public API (- declared only, + exported only):" >&2
    cat "$tmp/diff" >&2
    exit 1
fi
echo "exports.sh: $(wc -l < "$tmp/declared") symbols, exactly the public API"
