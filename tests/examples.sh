#!/bin/sh
# Smoke run of every examples/*.c program against the harness's redis-server
# (run by `make check` through tests/run-with-redis.sh, which sets
# CACHEKIT_TEST_REDIS_URL). Each run must exit 0 and print its expected line.
#   CACHEKIT_EXAMPLES_DIR  where the binaries are (default build/examples)
#   CACHEKIT_TEST_WRAPPER  command put in front of each (e.g. valgrind ...)
set -u
cd "$(dirname "$0")/.."
dir=${CACHEKIT_EXAMPLES_DIR:-build/examples}
url=${CACHEKIT_TEST_REDIS_URL:?run me through tests/run-with-redis.sh}
out=$(mktemp "${TMPDIR:-/tmp}/ckexamples.XXXXXX") || exit 2
trap 'rm -f "$out"' EXIT
failed=0

# run NAME EXPECTED-LINE-REGEX ARG...
run() {
    name=$1 expect=$2
    shift 2
    if [ ! -x "$dir/$name" ]; then
        echo "examples: $dir/$name is not built"
        failed=$((failed + 1))
        return
    fi
    # shellcheck disable=SC2086
    ${CACHEKIT_TEST_WRAPPER:-} "$dir/$name" "$@" >"$out" 2>&1
    rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "examples: FAIL $name: exit status $rc"; sed 's/^/    /' "$out"
        failed=$((failed + 1))
    elif ! grep -Eq "$expect" "$out"; then
        echo "examples: FAIL $name: no line matching '$expect'"; sed 's/^/    /' "$out"
        failed=$((failed + 1))
    else
        echo "examples: ok   $name: $(grep -E "$expect" "$out" | head -n 1 | sed 's/^ *//')"
    fi
}

run cache_basic '^5 lookups, 3 database queries$' "$url"
run lock_job '^instance A: job done, 3 batches$' "$url"
run rate_limit '^5 allowed, 3 denied$' "$url"
# 2 s of traffic: requests answered, none failed, the Prometheus text printed
run token_gateway '^ *errors \(503\) +0$' --duration 2 --redis "$url" --workers 4
grep -Eq '^ *answered 200 +[1-9][0-9]*$' "$out" && grep -q '^cachekit_hits_total [1-9]' "$out" ||
    { echo "examples: FAIL token_gateway: no answered requests or no cache hits"; failed=$((failed + 1)); }

for f in examples/*.c; do
    n=$(basename "$f" .c)
    case " cache_basic lock_job rate_limit token_gateway " in
    *" $n "*) ;;
    *) echo "examples: FAIL $n: examples/$n.c has no smoke run in tests/examples.sh"; failed=$((failed + 1)) ;;
    esac
done
[ "$failed" -eq 0 ]
