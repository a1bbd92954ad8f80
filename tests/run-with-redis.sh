#!/usr/bin/env bash
# Run libcachekit's tests (or any command) against a private, throwaway
# redis-server on a free loopback port (never 6379), and always stop it again.
#
#   tests/run-with-redis.sh BIN...           run each test binary in turn (one
#                                            failure hides no other), print the
#                                            line "N passed, N failed", exit 1
#                                            if any failed
#   tests/run-with-redis.sh -- CMD [ARG...]  run one command, exit with its status
#
# What BIN / CMD sees in its environment:
#   CACHEKIT_TEST_REDIS_URL      redis://127.0.0.1:PORT/0, or with CACHEKIT_TEST_ACL=1
#                                redis://ckuser:PASSWORD@127.0.0.1:PORT/0: a user
#                                allowed exactly the commands of tests/acl-commands
#   CACHEKIT_TEST_REDIS_ADMIN_URL  redis://127.0.0.1:PORT/0, the unrestricted default
#                                user, for the tests' own setup (FLUSHALL, DEBUG, ...)
#   CACHEKIT_TEST_REDIS_SOCK     the unix socket of the same server
#   CACHEKIT_TEST_REDIS_PORT     PORT
#   CACHEKIT_TEST_REDIS_PIDFILE  the server's pidfile (a demo may stop the server)
# What this script reads:
#   CACHEKIT_TEST_WRAPPER   command put in front of each BIN, word-split
#                           (make valgrind sets "valgrind --leak-check=full ...")
#   CACHEKIT_TEST_TIMEOUT   seconds one BIN may run, default 900 (0 = no limit)
#   CACHEKIT_TEST_ACL       1: the library connects as the least-privilege user
#                           (make check-acl, tests/run-acl.sh)
#   REDIS_SERVER, REDIS_CLI default redis-server, redis-cli
#
# Before each BIN the server gets FLUSHALL, and it is restarted (on a new
# port) if a previous binary left it dead or unreachable.
set -uo pipefail

REDIS_SERVER=${REDIS_SERVER:-redis-server}
REDIS_CLI=${REDIS_CLI:-redis-cli}
TIMEOUT=${CACHEKIT_TEST_TIMEOUT:-900}

say() { printf 'run-with-redis: %s\n' "$*" >&2; }

# The least-privilege command list (one "+cmd" per line, '#' comments).
acl_mode=0
acl_cmds=()
if [ "${CACHEKIT_TEST_ACL:-0}" = 1 ]; then
    acl_mode=1
    acl_file=$(dirname "$0")/acl-commands
    [ -r "$acl_file" ] || { say "cannot read $acl_file"; exit 2; }
    read -r -a acl_cmds <<<"$(sed -e 's/#.*//' "$acl_file" | awk '{print $1}' | tr '\n' ' ')"
    [ ${#acl_cmds[@]} -gt 0 ] || { say "$acl_file lists no command"; exit 2; }
fi

for prog in "$REDIS_SERVER" "$REDIS_CLI"; do
    if ! command -v "$prog" >/dev/null 2>&1; then
        say "$prog not found (Debian: apt-get install redis-server redis-tools, or 'make deps')"
        exit 2
    fi
done

redis_dir=$(mktemp -d "${TMPDIR:-/tmp}/ckredis.XXXXXX") || exit 2
# start_redis, stop_redis, is_our_redis, cli, redis_cleanup_on_exit; port,
# pid, pidfile, sock, child
. "$(dirname "$0")/../scripts/private-redis.sh"

# (Re)create the least-privilege user: exactly tests/acl-commands, keys and
# channels of any name (the tests use several prefixes).
acl_setup() {
    if [ "$(cli ACL SETUSER ckuser reset on '>ck-acl-pw' '~*' resetchannels '&*' -@all \
        "${acl_cmds[@]}")" != OK ]; then
        say "ACL SETUSER ckuser failed (Redis 6.2+ needed)"
        return 1
    fi
}

# A new server, with the ACL user in ACL mode, announced to the tests.
start_test_redis() {
    start_redis || return 1
    export CACHEKIT_TEST_REDIS_URL="redis://127.0.0.1:$port/0"
    export CACHEKIT_TEST_REDIS_ADMIN_URL="$CACHEKIT_TEST_REDIS_URL"
    if [ "$acl_mode" = 1 ]; then
        acl_setup || { stop_redis; return 1; }
        export CACHEKIT_TEST_REDIS_URL="redis://ckuser:ck-acl-pw@127.0.0.1:$port/0"
        say "ACL mode: the library connects as ckuser (${#acl_cmds[@]} commands)"
    fi
    export CACHEKIT_TEST_REDIS_SOCK="$sock"
    export CACHEKIT_TEST_REDIS_PORT="$port"
    export CACHEKIT_TEST_REDIS_PIDFILE="$pidfile"
    say "redis-server $pid listening on 127.0.0.1:$port and $sock"
}

redis_cleanup_on_exit

# Run "$@" as a child we can wait for interruptibly (so INT/TERM reach the
# trap at once), keeping our stdin. Sets $status.
run_child() {
    "$@" <&0 &
    child=$!
    wait "$child"
    status=$?
    child=
}

start_test_redis || exit 2

if [ "${1:-}" = "--" ]; then
    shift
    [ $# -gt 0 ] || { say "nothing to run after --"; exit 2; }
    run_child "$@"
    exit "$status"
fi

[ $# -gt 0 ] || { say "usage: $0 BIN... | $0 -- CMD [ARG...]"; exit 2; }

read -r -a wrapper <<<"${CACHEKIT_TEST_WRAPPER:-}"
limit=()
if [ "$TIMEOUT" != 0 ] && command -v timeout >/dev/null 2>&1; then
    limit=(timeout -k 10 "$TIMEOUT")
fi

passed=0
failed=0
failed_names=()
for bin in "$@"; do
    name=$(basename "$bin")
    if ! is_our_redis || [ "$(cli ping)" != PONG ]; then
        say "the shared redis-server is gone or unresponsive: starting a new one"
        stop_redis
        start_test_redis || exit 2
    fi
    cli flushall >/dev/null
    # a binary may have granted ckuser its own commands (ckt_acl_allow)
    if [ "$acl_mode" = 1 ] && ! acl_setup; then
        failed=$((failed + 1))
        failed_names+=("$name")
        continue
    fi
    printf '=== %s\n' "$name"
    t0=$(date +%s)
    run_child "${limit[@]}" "${wrapper[@]}" "$bin"
    secs=$(($(date +%s) - t0))
    if [ "$status" -eq 0 ]; then
        passed=$((passed + 1))
        printf -- '--- PASS: %s (%ss)\n' "$name" "$secs"
    else
        failed=$((failed + 1))
        failed_names+=("$name")
        why="exit status $status"
        [ "$status" -eq 124 ] && [ ${#limit[@]} -gt 0 ] && why="timed out after ${TIMEOUT}s"
        [ "$status" -gt 128 ] && [ "$status" -ne 124 ] && why="killed by signal $((status - 128))"
        printf -- '--- FAIL: %s (%s, %ss)\n' "$name" "$why" "$secs"
    fi
done

stop_redis   # first, so that the summary is the last line printed
[ "$failed" -eq 0 ] || printf 'failed: %s\n' "${failed_names[*]}"
printf '%d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
