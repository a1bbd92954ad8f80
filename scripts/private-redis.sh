# Sourced by tests/run-with-redis.sh and scripts/demo.sh: start, check and
# stop a private, throwaway redis-server on a loopback port (never 6379),
# with its pidfile, log and unix socket in a directory of the caller's.
#
# The caller sets, before calling anything:
#   redis_dir                a directory of its own (mktemp -d), removed by it
#   REDIS_SERVER, REDIS_CLI  the programs
#   say                      a function that prints one message to stderr
# What start_redis sets: port, pid, and the paths pidfile, sock, logfile.
# The caller may run one process beside the server and keep its pid in
# `child`; redis_cleanup_on_exit stops both when the caller ends.
# Not a program: it defines functions and runs nothing.

pidfile=$redis_dir/redis.pid
sock=$redis_dir/redis.sock
logfile=$redis_dir/redis.log
port=
pid=
child=

# Redis 7 refuses DEBUG (DEBUG SLEEP is a fault test) unless enabled; older
# servers do not know the option and allow DEBUG anyway.
redis_extra_args=()
redis_major=$("$REDIS_SERVER" --version 2>/dev/null | sed -n 's/.* v=\([0-9]*\)\..*/\1/p')
if [ "${redis_major:-0}" -ge 7 ]; then
    redis_extra_args+=(--enable-debug-command yes)
fi

# Bounded: a server left SIGSTOPped still accepts connections.
if command -v timeout >/dev/null 2>&1; then
    cli() { timeout 5 "$REDIS_CLI" -h 127.0.0.1 -p "$port" "$@" 2>/dev/null; }
else
    cli() { "$REDIS_CLI" -h 127.0.0.1 -p "$port" "$@" 2>/dev/null; }
fi

port_busy() { # something accepts connections on 127.0.0.1:$1
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

is_our_redis() { # $pid is alive and (where /proc tells) still a redis-server
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    if [ -r "/proc/$pid/comm" ]; then
        case "$(cat "/proc/$pid/comm" 2>/dev/null)" in
        redis-server*|redis-check*) return 0 ;;
        *) return 1 ;;
        esac
    fi
    return 0
}

# stop_redis: SIGCONT (it may have been left stopped), SIGTERM, and SIGKILL
# after 5 s.
stop_redis() {
    if is_our_redis; then
        kill -CONT "$pid" 2>/dev/null
        kill -TERM "$pid" 2>/dev/null
        local i
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.05
        done
        if kill -0 "$pid" 2>/dev/null; then
            say "redis-server $pid ignored SIGTERM for 5 s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null
        fi
        say "stopped redis-server $pid"
    fi
    pid=
    rm -f "$pidfile" "$sock"
}

# start_redis [PORT]: a new server on PORT, or on a random free port (ten
# tries). Returns once it answers PING and is the process we started.
start_redis() {
    local fixed=${1:-} attempt i
    for ((attempt = 1; attempt <= 10; attempt++)); do
        port=${fixed:-$((20000 + (RANDOM * 32768 + RANDOM) % 40001))}
        [ -z "$fixed" ] && port_busy "$port" && continue
        rm -f "$pidfile" "$sock"
        : >"$logfile"
        "$REDIS_SERVER" --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
            --daemonize yes --pidfile "$pidfile" --dir "$redis_dir" --logfile "$logfile" \
            --unixsocket "$sock" --unixsocketperm 700 "${redis_extra_args[@]}" >/dev/null 2>&1 ||
            { say "redis-server failed to start:"; cat "$logfile" >&2; return 1; }
        # Poll (bounded, ~10 s) until it answers and is the server we started.
        for ((i = 0; i < 200; i++)); do
            if [ -s "$pidfile" ]; then
                pid=$(cat "$pidfile" 2>/dev/null)
                if [ "$(cli ping)" = PONG ] &&
                    cli info server | tr -d '\r' | grep -qx "process_id:${pid}"; then
                    return 0
                fi
            fi
            if grep -qiE 'address already in use|could not create server|failed listening' \
                "$logfile" 2>/dev/null; then
                break
            fi
            sleep 0.05
        done
        say "redis-server did not come up on port $port (attempt $attempt):"
        tail -n 5 "$logfile" >&2
        stop_redis
        [ -n "$fixed" ] && break
    done
    say "giving up: no redis-server could be started"
    return 1
}

# On the caller's exit, also by INT or TERM: stop `child` (SIGTERM, SIGKILL
# after 5 s), then the server; remove redis_dir; keep the exit status.
redis_cleanup() {
    local rc=$? i
    trap - EXIT INT TERM
    if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
        kill -TERM "$child" 2>/dev/null
        for ((i = 0; i < 100; i++)); do
            kill -0 "$child" 2>/dev/null || break
            sleep 0.05
        done
        kill -KILL "$child" 2>/dev/null
        wait "$child" 2>/dev/null
    fi
    stop_redis
    rm -rf "$redis_dir"
    exit "$rc"
}

redis_cleanup_on_exit() {
    trap redis_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}
