#!/bin/sh
# make demo: run the demo program against a throwaway redis-server.
#
# tests/run-with-redis.sh starts redis-server on a free loopback port (never
# 6379), exports CACHEKIT_TEST_REDIS_URL and CACHEKIT_TEST_REDIS_PIDFILE (the
# demo stops the server itself through the pidfile, to show the fail-open
# answer), and stops whatever is left of it when the demo ends.
# Usage: scripts/demo.sh [DEMO-BINARY [ARG...]]   (default build/examples/demo)
set -eu
cd "$(dirname "$0")/.."

demo=${1:-build/examples/demo}
[ $# -gt 0 ] && shift
if [ ! -x "$demo" ]; then
    echo "demo: $demo is not built; run 'make demo'" >&2
    exit 1
fi

echo "demo: starting a throwaway redis-server on a free loopback port"
exec tests/run-with-redis.sh -- sh -c '
    echo "demo: redis-server is at $CACHEKIT_TEST_REDIS_URL (pidfile $CACHEKIT_TEST_REDIS_PIDFILE)"
    CACHEKIT_REDIS_URL=$CACHEKIT_TEST_REDIS_URL
    export CACHEKIT_REDIS_URL
    echo "demo: running $1"
    echo
    "$@"; rc=$?
    echo
    echo "demo: $1 exited with status $rc"
    exit $rc' sh "$demo" "$@"
