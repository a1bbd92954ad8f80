/* libcachekit: the client — connection pool, deadlines, circuit breaker,
 * fail-open policy. Every other module talks to Redis through a ck_client. */
#ifndef CACHEKIT_CLIENT_H
#define CACHEKIT_CLIENT_H

#include <stddef.h>
#include "cachekit/common.h"
#include "cachekit/stats.h"

/* hiredis's context, forward-declared so that hiredis stays out of the
 * include path of hosts that do not use ck_client_run. It is the same type as
 * `redisContext` in <hiredis/hiredis.h>. */
struct redisContext;

#ifdef __cplusplus
extern "C" {
#endif

/** Opaque. Thread-safe: one client is meant to be shared by all threads. */
typedef struct ck_client ck_client;

/** What a call answers when Redis is unreachable, too slow, or the breaker is open. */
typedef enum {
    CK_FAIL_OPEN = 0,   /**< degrade: serve without Redis (see the fail-open table) */
    CK_FAIL_CLOSED = 1, /**< refuse: CK_E_UNAVAILABLE / deny */
    CK_FAIL_LOCAL = 2   /**< rate limits: enforce limit/local_instances in-process */
} ck_fail_mode;

/**
 * Client options. Always call ck_options_init() first and then set fields:
 * a zeroed struct is not the defaults. Strings are copied by ck_client_new().
 * Fields are only ever appended (the struct is caller-allocated).
 */
typedef struct ck_options {
    /** redis://[user[:pass]@]host[:port][/db] or unix:///path[?db=N].
     *  NULL: $CACHEKIT_REDIS_URL, else redis://127.0.0.1:6379/0; "" is CK_E_INVALID.
     *  User and password may be percent-encoded. Host names are resolved with
     *  getaddrinfo(), which the connect deadline does NOT bound: use numeric
     *  addresses or unix sockets where that matters. */
    const char *url;
    const char *prefix;         /**< key namespace, default "ck": 1-64 bytes of [A-Za-z0-9_.-] */
    int connect_timeout_ms;     /**< TCP connect + handshake (AUTH, SELECT, SETNAME), default 200 */
    int command_timeout_ms;     /**< one call: write + whole reply, default 100 */
    int pool_size;              /**< most connections the client opens, default 8 */
    int pool_wait_ms;           /**< wait for a free connection, default 50 */
    ck_fail_mode fail_mode;     /**< default CK_FAIL_OPEN */
    int local_instances;        /**< CK_FAIL_LOCAL: each process enforces limit/this, default 1 */
    int breaker_failures;       /**< consecutive failures that open the breaker, default 5 */
    int breaker_cooldown_ms;    /**< open -> half-open probe (jittered +-20%), default 1000 */
    size_t max_reply_bytes;     /**< larger replies are abandoned, default 16 MiB */
    ck_log_fn log;              /**< NULL = no logging */
    void *log_user;             /**< passed to log as `user` */
    int log_level;              /**< CK_LOG_*: messages at or below it are logged, default CK_LOG_WARN */
} ck_options;

/**
 * Fill `o` with the defaults (url NULL = $CACHEKIT_REDIS_URL or the local default).
 * Thread safety: any thread. `o` NULL is a no-op.
 */
CACHEKIT_API void ck_options_init(ck_options *o);

/**
 * Create a client. Connections are opened lazily, so this never fails just
 * because Redis is down.
 * @param o   options, or NULL for the defaults; copied, may be freed after the call.
 * @param out [out] on CK_OK a new client the caller frees with ck_client_free(); NULL otherwise.
 * @return CK_OK, CK_E_INVALID (bad URL or option; the reason is logged through
 *         o->log, without the password), CK_E_NOMEM.
 */
CACHEKIT_API ck_status ck_client_new(const ck_options *o, ck_client **out);

/**
 * Close every connection and free the client. NULL is a no-op.
 * No call on `c` may be running or start during or after this call.
 */
CACHEKIT_API void ck_client_free(ck_client *c);

/**
 * Send PING and wait for PONG within the call's deadline.
 * @return CK_OK, CK_E_UNAVAILABLE (unreachable, timed out, breaker open,
 *         pool exhausted), CK_E_PROTOCOL, CK_E_INVALID (c NULL).
 * Thread safety: any thread.
 */
CACHEKIT_API ck_status ck_client_ping(ck_client *c);

/**
 * A function run by ck_client_run() with a live, lent connection.
 * `ctx` is in blocking mode (its socket has SO_RCVTIMEO = command_timeout_ms,
 * which the call's deadline below always reaches first); use the ordinary
 * hiredis calls (redisCommandArgv, redisGetReply, ...). Read every reply
 * you ask for, and leave the connection as you found it: no SELECT,
 * SUBSCRIBE, MONITOR or unfinished MULTI. Do not keep `ctx` past the call,
 * close it or free it.
 * When the call's deadline passes, the library shuts the socket down and
 * the pending hiredis call returns an error. An array reply announcing more
 * elements than max_reply_bytes / 3 (more than could fit in that many
 * bytes) is refused before hiredis allocates its element table: the hiredis
 * call fails with ctx->err REDIS_ERR_OOM.
 * @return any status; it is returned by ck_client_run() unchanged unless the
 *         connection failed during the call.
 */
typedef ck_status (*ck_redis_fn)(struct redisContext *ctx, void *user);

/**
 * The generic fail-open wrapper: borrow a pooled connection, run `fn`, and
 * map connection failures to CK_E_UNAVAILABLE (the connection is then
 * discarded and the failure counts for the circuit breaker).
 * `fn` is never called without a live connection. The deadline is
 * command_timeout_ms from the moment `fn` starts (plus connect_timeout_ms if a
 * connection had to be opened, plus up to pool_wait_ms waiting for one).
 * SIGPIPE is blocked in the calling thread while `fn` runs, so a write to a
 * dead connection never raises it in the host.
 * @return fn's status, or CK_E_UNAVAILABLE (no connection, breaker open,
 *         connection failed during fn), CK_E_INVALID (c or fn NULL).
 * Thread safety: any thread; `fn` runs on the calling thread.
 */
CACHEKIT_API ck_status ck_client_run(ck_client *c, ck_redis_fn fn, void *user);

/**
 * Copy the client's counters into `out`. NULL arguments are a no-op.
 * Thread safety: any thread.
 */
CACHEKIT_API void ck_client_stats(ck_client *c, ck_stats *out);

#ifdef __cplusplus
}
#endif

#endif
