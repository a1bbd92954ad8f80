/* libcachekit internals shared between lib/ files (and reached by the tests,
 * which link the static library). Nothing here is part of the public API. */
#ifndef CACHEKIT_INTERNAL_H
#define CACHEKIT_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <hiredis/hiredis.h>

#include "cachekit.h"

#if defined(__GNUC__)
#  define CK__PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#  define CK__PRINTF(f, a)
#endif

/* ---- time (monotonic, for deadlines) ---- */
int64_t ck__now_ns(void);
static inline int64_t ck__ms_to_ns(int64_t ms) { return ms * 1000000; }

/* ---- logging (log.c) ----
 * Formats into a bounded stack buffer and hands it to the host's hook.
 * Never pass a secret as an argument: callers redact before formatting. */
typedef struct ck__logger {
    ck_log_fn fn;
    void *user;
    int level;
} ck__logger;
void ck__log(const ck__logger *lg, int level, const char *fmt, ...) CK__PRINTF(3, 4);
/* Copy at most `max` bytes of `s` into `dst` (size dstlen) replacing bytes
 * that are not printable ASCII by '?', so hostile strings cannot forge log
 * lines; appends "..." when truncated. */
void ck__log_sanitize(char *dst, size_t dstlen, const char *s, size_t len);

/* ---- URL (url.c) ---- */
typedef struct ck__url {
    int is_unix;
    char *host;     /* TCP: host name or numeric address, no brackets */
    int port;       /* TCP: 1..65535 */
    char *path;     /* unix socket path */
    char *user;     /* NULL = no ACL user */
    char *pass;     /* NULL = no AUTH */
    int db;         /* 0.. */
} ck__url;
/* Parse `s` (length-bounded; NUL-terminated). On failure returns
 * CK_E_INVALID and writes a reason into err (never containing the password). */
ck_status ck__url_parse(const char *s, ck__url *out, char *err, size_t errlen);
void ck__url_clear(ck__url *u);

/* ---- reply classification (reply.c) ---- */
typedef enum ck__errclass {
    CK__ERR_OTHER = 0,   /* any other error reply: CK_E_PROTOCOL */
    CK__ERR_UNAVAILABLE, /* Redis can't serve now: degrade, feed the breaker */
    CK__ERR_NOSCRIPT,    /* EVALSHA of an unknown script: load and retry once */
    CK__ERR_WRONGTYPE,   /* a key of the wrong type: a corrupt entry for the cache */
    CK__ERR_AUTH         /* WRONGPASS/NOAUTH/NOPERM: configuration, never transient */
} ck__errclass;
/* Classify an error reply's text. `is_write`: OOM only means "unavailable"
 * for writes (reads still work under maxmemory). */
ck__errclass ck__classify_error(const char *s, size_t len, int is_write);
/* Status for a reply object: CK_OK for non-error replies, else the mapped
 * status of its error class. */
ck_status ck__reply_status(const redisReply *r, int is_write);

/* ---- circuit breaker (breaker.c) ---- */
#include <stdatomic.h>
typedef struct ck__breaker {
    _Atomic int state;
    _Atomic int failures;          /* consecutive */
    _Atomic int64_t open_until_ns; /* CLOCK_MONOTONIC */
    _Atomic uint64_t rng;          /* jitter */
    int threshold;
    int cooldown_ms;
} ck__breaker;
void ck__breaker_init(ck__breaker *b, int failures, int cooldown_ms);
/* 1 if the call may go to Redis; *probe = 1 if it is the half-open probe,
 * whose outcome must be reported with probe = 1. */
int ck__breaker_allow(ck__breaker *b, int *probe);
int ck__breaker_is_open(ck__breaker *b);
void ck__breaker_success(ck__breaker *b, int probe);
int ck__breaker_failure(ck__breaker *b, int probe); /* 1 if this opened it */
void ck__breaker_abort_probe(ck__breaker *b, int probe);
uint64_t ck__rand64(_Atomic uint64_t *state);      /* jitter only, not secrets */

/* ---- one connection (conn.c) ----
 * The socket stays in blocking mode, so that a ck_redis_fn can use the
 * ordinary hiredis calls on it; the library's own I/O uses MSG_DONTWAIT and
 * poll() against an absolute deadline, and hiredis only as the codec. */
typedef enum ck__fail {
    CK__FAIL_NONE = 0,
    CK__FAIL_TIMEOUT,   /* the deadline passed */
    CK__FAIL_IO,        /* reset, EOF, refused, ... */
    CK__FAIL_TOO_LARGE, /* reply over max_reply_bytes */
    CK__FAIL_PROTOCOL,  /* unparsable bytes from the server */
    CK__FAIL_NOMEM,
} ck__fail;
/* What hiredis's reader may allocate for one reply (see ck__reader_guard). */
typedef struct ck__reply_guard {
    size_t max_bytes; /* the reply size bound of the read under way */
    int tripped;      /* an array header announced more than fits in it */
} ck__reply_guard;
/* Makes reader r refuse (as out-of-memory, with g->tripped set) an array
 * whose header announces more elements than g->max_bytes can hold: hiredis
 * 0.14.1 allocates the element table on the header alone. g must outlive r. */
void ck__reader_guard(redisReader *r, ck__reply_guard *g);
typedef struct ck__conn {
    redisContext *ctx;
    ck__reply_guard guard;        /* the reader's, armed by each read */
    struct ck__conn *prev, *next; /* in the client's list of lent connections */
    int64_t deadline_ns;          /* armed for ck_client_run: the timer shuts it down */
    int fired;                    /* the timer shut the socket down */
    unsigned epoch;               /* the client's epoch when opened (fork) */
    int clean;                    /* its last use was the library's own command,
                                     answered and read in full: the server has
                                     nothing more to send on it but EOF */
    int64_t rcvtimeo_ns;          /* the socket's SO_RCVTIMEO, 0: none (see
                                     ck__conn_read_timeout) */
} ck__conn;
typedef struct ck__io {
    int sent;          /* every command byte was handed to the kernel */
    size_t received;   /* reply bytes read */
} ck__io;
const char *ck__fail_str(ck__fail f);
/* Connect (TCP or unix) and run the handshake: AUTH, SELECT, CLIENT SETNAME,
 * and INFO memory when *want_info (cleared once it was read: the caller
 * logs the eviction warning from *evicting). All within deadline_ns.
 * *sys_err: the errno of a failed connect (0 when the handshake failed). */
ck_status ck__conn_open(const ck__url *u, int64_t deadline_ns, const ck__logger *lg,
                        int *want_info, int *evicting, ck__conn **out, ck__fail *why,
                        int *sys_err);
/* Give the socket a read timeout of `ms`, the command timeout of the calls
 * that will use it: the first read of a reply then blocks in recv() instead
 * of poll() and recv(). Without it (the default; or if setsockopt fails)
 * every read polls. */
void ck__conn_read_timeout(ck__conn *cn, int ms);
void ck__conn_free(ck__conn *cn);
/* 1 when the pooled connection may be reused: no error, nothing buffered,
 * and, when ask_socket, no hang-up or stray bytes on the socket (a poll()). */
int ck__conn_reusable(ck__conn *cn, int ask_socket);
/* The n commands as RESP arrays of bulk strings, byte for byte what
 * hiredis's redisFormatCommandArgv writes, in one buffer: `stack` when they
 * fit in `cap` bytes (a cache hit's GET does: no malloc, no sprintf), else
 * a malloc'd one the caller frees. *len: its length. NULL when out of
 * memory or absurdly large. */
char *ck__resp_format(char *stack, size_t cap, int n, const int *argc,
                      const char *const *const *argv, const size_t *const *argvlen, size_t *len);
/* Send `n` commands in one write, then read `n` replies; replies[i] are
 * owned by the caller on CK__FAIL_NONE. On failure all are freed and NULL. */
ck__fail ck__conn_pipeline(ck__conn *cn, int n, const int *argc, const char *const *const *argv,
                           const size_t *const *argvlen, int64_t deadline_ns,
                           size_t max_reply_bytes, redisReply **replies, ck__io *io);

/* ---- commands through the client (client.c) ----
 * Every command names the key it is about, so that a later cluster routing
 * layer can pick the node per command. `key` may be NULL for keyless commands.
 * flags: */
enum {
    CK__CMD_WRITE = 1u << 0, /* the command writes (OOM counts as unavailable) */
};
/* A lease: one pooled connection borrowed for one call, with its deadline.
 * ck__lease_get applies the breaker, waits for the pool up to pool_wait_ms
 * and connects within connect_timeout_ms; the command deadline starts when
 * the lease is granted. ck__lease_put returns the connection to the pool or
 * discards it (a connection that failed is never reused) and feeds the
 * breaker with the outcome. */
typedef struct ck__lease {
    ck_client *c;
    ck__conn *cn;
    int probe;           /* half-open probe of the breaker */
    int reused;          /* the connection came from the pool (not fresh) */
    int failed;          /* the connection failed: discard it */
    int unavailable;     /* Redis said it can't serve (LOADING, BUSY, ...) */
    int stale;           /* a pooled connection turned out closed (no reply byte):
                            not an outage, the breaker is not fed */
    ck__fail fail;       /* how the last exec failed */
    ck__io io;           /* what the last exec sent and received */
    int64_t deadline_ns;
} ck__lease;
ck_status ck__lease_get(ck_client *c, const char *key, ck__lease *l);
/* The same for one command of the given flags: a read (no CK__CMD_WRITE)
 * skips the idle check (a poll() syscall) on a clean pooled connection. A
 * connection the server closed meanwhile then fails at once with no reply
 * byte (l->stale), and the caller sends the read once more on a fresh one. */
ck_status ck__lease_get_for(ck_client *c, const char *key, unsigned flags, ck__lease *l);
/* Run one command on the lease. CK_OK: *out is the reply (free it with
 * freeReplyObject), which may be an error reply of class OTHER, NOSCRIPT,
 * WRONGTYPE or AUTH. CK_E_UNAVAILABLE: I/O failure, timeout or an
 * UNAVAILABLE-class error reply (logged, *out NULL). CK_E_PROTOCOL: reply too
 * large or unparsable. *ambiguous (may be NULL) = 1 when the command was
 * sent but its reply lost: it may have run. */
ck_status ck__lease_exec(ck__lease *l, int argc, const char **argv, const size_t *argvlen,
                         unsigned flags, redisReply **out, int *ambiguous);
void ck__lease_put(ck__lease *l);

/* Get a lease and run one command on it. Idempotent commands (flags without
 * CK__CMD_WRITE) are retried once on a fresh connection when a pooled
 * connection turns out to be dead before any reply byte arrived
 * (lease.stale). The lease is held on return, whatever the status (a
 * failed checkout leaves it empty): the caller may send more on it (ck__eval
 * loads a script on NOSCRIPT) and puts it. */
ck_status ck__lease_run(ck_client *c, const char *key, int argc, const char **argv,
                        const size_t *argvlen, unsigned flags, ck__lease *l, redisReply **out,
                        int *ambiguous);
/* ck__lease_run, then put: one command on its own lease. */
ck_status ck__command(ck_client *c, const char *key, int argc, const char **argv,
                      const size_t *argvlen, unsigned flags, redisReply **out,
                      int *ambiguous);

/* ---- scripts (scripts.c) ----
 * A script is a static Lua text registered once; its SHA1 is computed once
 * with libcrypto. ck__eval sends EVALSHA; on NOSCRIPT it sends SCRIPT LOAD
 * and EVALSHA once more on the same connection. It never resends after an
 * ambiguous failure (timeout or I/O error after the script was sent). */
typedef struct ck__script {
    const char *name;
    const char *src;
    char sha[41];      /* filled by ck__script_init */
} ck__script;
void ck__script_init(ck__script *s); /* idempotent and thread-safe */
ck_status ck__eval(ck_client *c, ck__script *s, int nkeys, const char **keys,
                   const size_t *keylens, int nargs, const char **args,
                   const size_t *arglens, unsigned flags, redisReply **out,
                   int *ambiguous);
/* SHA1 of `len` bytes as 40 lowercase hex digits + NUL. */
void ck__sha1_hex(const void *data, size_t len, char out[41]);

/* ---- counters (stats.c) ---- */
typedef enum ck__counter {
    CK__ST_HITS, CK__ST_NULL_HITS, CK__ST_MISSES, CK__ST_LOADS, CK__ST_LOAD_ERRORS,
    CK__ST_STAMPEDE_WAITS, CK__ST_STALE_SERVED, CK__ST_L1_HITS, CK__ST_REDIS_ERRORS,
    CK__ST_DEGRADED, CK__ST_BREAKER_OPENS, CK__ST_LOCK_ACQUIRED, CK__ST_LOCK_BUSY,
    CK__ST_LOCK_LOST, CK__ST_RATE_ALLOWED, CK__ST_RATE_DENIED, CK__ST_POOL_WAITS,
    CK__ST_COUNT
} ck__counter;
void ck__count(ck_client *c, ck__counter which, uint64_t n);

/* The client's logger, options and fail mode, for the feature modules. */
const ck__logger *ck__client_logger(const ck_client *c);
const ck_options *ck__client_options(const ck_client *c); /* prefix etc. copied */
const ck__url *ck__client_url(const ck_client *c);
/* The client's L1 invalidation hub (l1.h), created on first use; NULL when
 * that allocation failed. */
struct ck__hub *ck__client_hub(ck_client *c);

#endif
