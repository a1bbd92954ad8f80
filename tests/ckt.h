/* Test support shared by the check suites (tests/ckt_*.c).
 *
 *   - ckt_redis: a private redis-server on a free loopback port (and a unix
 *     socket), for tests that stop, pause, restart or reconfigure a server.
 *     Tests that only need "a Redis" use the harness's server through
 *     ckt_shared_url() (run-with-redis.sh exports it).
 *   - ckt_proxy: a TCP proxy in front of a server that passes, delays,
 *     drips, black-holes or resets, switchable while connections are open.
 *   - a log capture for the library's log hook, fd counting, monotonic time.
 *
 * Every function aborts the test (ck_abort_msg) when the environment cannot
 * provide what it promises, so no test silently skips. */
#ifndef CKT_H
#define CKT_H

#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <hiredis/hiredis.h>

#include "cachekit.h"

/* ---- time ---- */
int64_t ckt_now_ms(void);          /* CLOCK_MONOTONIC, ms */
int64_t ckt_now_us(void);
void ckt_sleep_ms(int ms);         /* only for pacing fault injection, never as sync */

/* Wait until cond(arg) != 0, polling every ms, up to timeout_ms. 1 on success. */
int ckt_wait_until(int (*cond)(void *), void *arg, int timeout_ms);

/* Allowed overshoot of a call's deadline: 15 ms, as the acceptance bound
 * says; wider in the slow builds (valgrind, TSan, ASan), where every
 * instruction is slower and mainly correctness is checked. */
int ckt_slack_ms(void);
int ckt_under_valgrind(void);
/* Built with -fsanitize=thread and run by `make tsan` (CACHEKIT_TEST_TSAN):
 * GCC 12's TSan cannot run a child that starts threads after fork() in a
 * threaded process ("dup thread with used id"), so such tests stay out. */
int ckt_under_tsan(void);
/* Built with -fsanitize=address,undefined (make check SANITIZE=1 sets
 * CACHEKIT_TEST_SANITIZE): ~2x slower. */
int ckt_under_sanitizer(void);
/* A test's time (a timeout, a TTL, a bound) stretched for the build it runs
 * in: x10 under valgrind, x5 under TSan, x2 under ASan, as is natively. The
 * bounds the issues set are checked natively; elsewhere the suites check
 * behaviour on a machine that may stall a slow build for 100 ms. */
int ckt_scaled(int ms);

/* ---- the harness's shared server ---- */
const char *ckt_shared_url(void);  /* $CACHEKIT_TEST_REDIS_URL, aborts when unset */
const char *ckt_shared_sock(void); /* $CACHEKIT_TEST_REDIS_SOCK */
/* The shared server as its unrestricted default user
 * ($CACHEKIT_TEST_REDIS_ADMIN_URL, else ckt_shared_url()): for a test's own
 * setup. Under `make check-acl` ckt_shared_url() names the least-privilege
 * user "ckuser" (tests/acl-commands) and only the library should use it. */
const char *ckt_admin_url(void);
/* 1 under `make check-acl` (CACHEKIT_TEST_ACL=1). */
int ckt_acl_mode(void);
/* Under check-acl: grant "ckuser" the commands (NULL-terminated, "+incr")
 * that the test's own ck_client_run callbacks send on the library's
 * connections: those are the host's commands, not the library's. The
 * harness resets the user before each test binary. No-op otherwise. */
void ckt_acl_allow(const char *const *cmds);

/* ---- private servers ---- */
typedef struct ckt_redis ckt_redis;
/* Start redis-server on 127.0.0.1:<free port> plus a unix socket, no
 * persistence, DEBUG enabled. `extra` is a NULL-terminated list of further
 * arguments ("--requirepass", "s3cret", NULL), or NULL. */
ckt_redis *ckt_redis_start(const char *const *extra);
void ckt_redis_stop(ckt_redis *r);          /* kill, reap, remove its files; NULL ok */
int ckt_redis_port(const ckt_redis *r);
const char *ckt_redis_url(const ckt_redis *r);  /* redis://127.0.0.1:PORT */
const char *ckt_redis_sock(const ckt_redis *r); /* socket path */
pid_t ckt_redis_pid(const ckt_redis *r);
void ckt_redis_pause(ckt_redis *r);   /* SIGSTOP */
void ckt_redis_resume(ckt_redis *r);  /* SIGCONT */
void ckt_redis_kill(ckt_redis *r);    /* SIGKILL and reap: the port is closed */
void ckt_redis_restart(ckt_redis *r); /* kill if running, start again on the same port */
/* One admin command on a fresh connection (argv form; NULL-terminated).
 * Returns the reply (caller frees) or NULL when the server did not answer
 * within 2 s. */
redisReply *ckt_redis_cmd(const ckt_redis *r, const char *const *argv);
/* The same against host:port of `url` (used for the shared server), as the
 * default user without AUTH: any user:password in `url` is ignored, so on
 * the shared server this is an admin connection also under check-acl. */
redisReply *ckt_cmd_at(const char *url, const char *const *argv);
/* Number of connected clients whose name starts with `prefix` (e.g. "ck:"). */
int ckt_clients_named(const char *url, const char *prefix);
/* CLIENT KILL every client whose name starts with `prefix`; returns how many. */
int ckt_kill_clients_named(const char *url, const char *prefix);

/* ---- fault proxy ---- */
typedef enum ckt_proxy_mode {
    CKT_PASS = 0,     /* forward both ways */
    CKT_DELAY,        /* forward server->client bytes after `arg` ms */
    CKT_DRIP,         /* forward server->client one byte every `arg` ms */
    CKT_BLACKHOLE,    /* read and discard both ways, never answer */
    CKT_RESET,        /* reset every connection (new and open) */
} ckt_proxy_mode;
typedef struct ckt_proxy ckt_proxy;
ckt_proxy *ckt_proxy_start(int target_port);
void ckt_proxy_stop(ckt_proxy *p);
void ckt_proxy_set(ckt_proxy *p, ckt_proxy_mode mode, int arg);
int ckt_proxy_port(const ckt_proxy *p);
const char *ckt_proxy_url(const ckt_proxy *p);
unsigned ckt_proxy_accepts(const ckt_proxy *p);      /* connections accepted */
uint64_t ckt_proxy_bytes_in(const ckt_proxy *p);     /* client->proxy bytes */

/* A listening socket that never accepts (its backlog fills, then SYNs hang). */
typedef struct ckt_listener { int fd, port; char url[64]; } ckt_listener;
void ckt_listener_open(ckt_listener *l);
void ckt_listener_close(ckt_listener *l);
/* A loopback port with nothing listening (bound, then closed). */
int ckt_closed_port(void);

/* ---- logs ---- */
typedef struct ckt_log {
    pthread_mutex_t mu;
    char *buf;        /* every message, one per line, "L<level> <msg>\n" */
    size_t len, cap;
    int count;
} ckt_log;
void ckt_log_init(ckt_log *l);
void ckt_log_free(ckt_log *l);
void ckt_log_fn(void *user, int level, const char *msg); /* user = ckt_log* */
int ckt_log_has(ckt_log *l, const char *needle);          /* substring anywhere */
void ckt_log_reset(ckt_log *l);

/* ---- process ---- */
int ckt_open_fds(void);            /* entries in /proc/self/fd */

/* ck_options for a URL with short timeouts (long ones under valgrind). */
void ckt_options(ck_options *o, const char *url);

#endif
