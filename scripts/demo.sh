#!/usr/bin/env bash
# make demo: run examples/token_gateway against a throwaway redis-server, and
# take Redis away in the middle of the run to show what fail-open means:
#
#   0 s   redis-server up; the gateway starts cold (every token from SQLite)
#   12 s  SIGSTOP: Redis hangs. Calls wait for their deadline (100 ms) until
#         the circuit breaker opens; then they cost nothing
#   17 s  SIGKILL: Redis is gone (connection refused)
#   25 s  a new, empty redis-server on the same port: the breaker's probe
#         succeeds, the L1 tier is cleared and refilled, limits apply again
#   38 s  the gateway prints its table and the Prometheus counters
#
# The server runs on a free loopback port (never 6379) with its own directory
# under $TMPDIR; everything this script started is stopped and removed when
# it ends, also on failure or Ctrl-C.
# Usage: scripts/demo.sh [GATEWAY-BINARY]   (default build/examples/token_gateway)
# Environment: REDIS_SERVER, REDIS_CLI (default redis-server, redis-cli).
set -uo pipefail
cd "$(dirname "$0")/.."

gateway=${1:-build/examples/token_gateway}
REDIS_SERVER=${REDIS_SERVER:-redis-server}
REDIS_CLI=${REDIS_CLI:-redis-cli}
T_STOP=12 T_KILL=17 T_RESTART=25 DURATION=38

say() { printf '\ndemo: %s\n\n' "$*"; }

if [ ! -x "$gateway" ]; then
    echo "demo: $gateway is not built; run 'make demo'" >&2
    exit 1
fi
for prog in "$REDIS_SERVER" "$REDIS_CLI"; do
    command -v "$prog" >/dev/null 2>&1 ||
        { echo "demo: $prog not found (Debian: apt-get install redis-server redis-tools)" >&2; exit 1; }
done

redis_dir=$(mktemp -d "${TMPDIR:-/tmp}/ckdemo.XXXXXX") || exit 1
# start_redis [PORT], stop_redis, redis_cleanup_on_exit; port, pid, child
# (the gateway: on SIGTERM it stops its workers and prints its table)
. "$(dirname "$0")/private-redis.sh"
redis_cleanup_on_exit

# at SECONDS: sleep until that many seconds after the gateway started,
# or return 1 if the gateway ended before.
at() {
    while [ $(($(date +%s) - t0)) -lt "$1" ]; do
        kill -0 "$child" 2>/dev/null || return 1
        sleep 0.1
    done
}

start_redis || exit 1
url="redis://127.0.0.1:$port/0"
say "redis-server $pid on $url; the gateway runs for ${DURATION} s, Redis goes away at ${T_STOP} s"

t0=$(date +%s)
"$gateway" --duration "$DURATION" --redis "$url" &
child=$!

if at "$T_STOP"; then
    kill -STOP "$pid"
    say "SIGSTOP redis-server: Redis hangs. Calls give up at their deadline, the breaker opens," \
        "requests keep being answered (fail-open): hot tokens from L1, unknown ones from L1's cached absences"
fi
if at "$T_KILL"; then
    kill -KILL "$pid" 2>/dev/null
    wait_dead=0
    while kill -0 "$pid" 2>/dev/null && [ $wait_dead -lt 50 ]; do sleep 0.05; wait_dead=$((wait_dead + 1)); done
    pid=
    say "SIGKILL redis-server: Redis is gone (connection refused); the gateway still answers"
fi
if at "$T_RESTART"; then
    if start_redis "$port"; then
        say "a new, empty redis-server $pid on the same port: the breaker's probe succeeds," \
            "L1 is cleared (invalidations may have been missed) and the cache refills"
    else
        say "redis-server did not come back on port $port (the gateway keeps failing open)"
    fi
fi

wait "$child"
rc=$?
child=
stop_redis
if [ "$rc" -eq 0 ]; then
    say "done: the gateway answered through the outage and recovered; everything the demo started is stopped"
else
    say "the gateway exited with status $rc"
fi
exit "$rc"
