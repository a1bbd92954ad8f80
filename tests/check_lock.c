/* Distributed locks against real servers: argument checks and key layout,
 * mutual exclusion across threads and processes, fences across FLUSHALL and
 * restarts, expiry vs. another owner, the watchdog (kept alive, loss when
 * Redis stops or the key goes), bounded waiting, Redis down, lost replies
 * (no orphan lock), and connections killed at random (no double grant). */
#define _GNU_SOURCE
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <hiredis/hiredis.h>

#include "ckt.h"
#include "lock_internal.h"

/* Times stretch in the slow builds (ckt_scaled, with a wider slack): there
 * the suite checks behaviour, natively it also checks the deadline bounds. */
#define CONNECT_MS ckt_scaled(200)
#define COMMAND_MS ckt_scaled(100)
#define POOL_WAIT_MS ckt_scaled(50)

static ck_client *lock_client(const char *url, const char *prefix, ckt_log *lg)
{
    ck_options o;
    ck_client *c = NULL;
    ckt_options(&o, url);
    o.connect_timeout_ms = CONNECT_MS;
    o.command_timeout_ms = COMMAND_MS;
    o.pool_wait_ms = POOL_WAIT_MS;
    o.prefix = prefix;
    if (lg != NULL) {
        o.log = ckt_log_fn;
        o.log_user = lg;
        o.log_level = CK_LOG_DEBUG;
    }
    ck_assert_int_eq(ck_client_new(&o, &c), CK_OK);
    return c;
}

/* ---- admin helpers (raw hiredis, fresh connection) ---- */

static redisReply *cmd_at(const char *url, const char *a0, const char *a1, const char *a2,
                          const char *a3)
{
    const char *argv[] = { a0, a1, a2, a3, NULL };
    redisReply *r = ckt_cmd_at(url, argv);
    ck_assert_msg(r != NULL, "admin %s %s: no answer", a0, a1 != NULL ? a1 : "");
    return r;
}

static long long int_at(const char *url, const char *a0, const char *a1)
{
    redisReply *r = cmd_at(url, a0, a1, NULL, NULL);
    long long v;
    ck_assert_msg(r->type == REDIS_REPLY_INTEGER, "%s %s: not an integer", a0, a1);
    v = r->integer;
    freeReplyObject(r);
    return v;
}

/* GET into buf ("" when absent). */
static void get_at(const char *url, const char *key, char *buf, size_t len)
{
    redisReply *r = cmd_at(url, "GET", key, NULL, NULL);
    buf[0] = '\0';
    if (r->type == REDIS_REPLY_STRING)
        snprintf(buf, len, "%s", r->str);
    freeReplyObject(r);
}

static void ok_at(const char *url, const char *a0, const char *a1, const char *a2)
{
    redisReply *r = cmd_at(url, a0, a1, a2, NULL);
    ck_assert_msg(r->type == REDIS_REPLY_STATUS, "%s failed", a0);
    freeReplyObject(r);
}

typedef struct key_cond { const char *url, *key; long long want; } key_cond;

static int exists_is(void *arg)
{
    key_cond *k = arg;
    return int_at(k->url, "EXISTS", k->key) == k->want;
}

static void wait_exists(const char *url, const char *key, long long want, int timeout_ms)
{
    key_cond k = { url, key, want };
    ck_assert_msg(ckt_wait_until(exists_is, &k, timeout_ms), "EXISTS %s never became %lld", key,
                  want);
}

static uint64_t server_time_us(const char *url)
{
    redisReply *r = cmd_at(url, "TIME", NULL, NULL, NULL);
    uint64_t us;
    ck_assert(r->type == REDIS_REPLY_ARRAY && r->elements == 2);
    us = strtoull(r->element[0]->str, NULL, 10) * 1000000 + strtoull(r->element[1]->str, NULL, 10);
    freeReplyObject(r);
    return us;
}

static int is_hex32(const char *s)
{
    if (strlen(s) != 32)
        return 0;
    for (int i = 0; i < 32; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

/* ---- arguments, key layout, tokens ---- */

static ck_status never_called(void *user, const ck_lock *l)
{
    (void)l;
    (*(int *)user)++;
    return CK_OK;
}

START_TEST(invalid_arguments)
{
    ck_client *c = lock_client(ckt_shared_url(), "ckta", NULL);
    ck_lock *l = (ck_lock *)&l; /* must be reset to NULL */
    char long_name[600];
    int calls = 0;
    static const char *const bad[] = { "", "a{b", "a}b", "{x}", "new\nline", "tab\t", "del\x7f",
                                       "esc\x1b[0m" };

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        l = (ck_lock *)&l;
        ck_assert_msg(ck_lock_acquire(c, bad[i], 1000, 0, &l) == CK_E_INVALID, "name %zu", i);
        ck_assert_ptr_null(l);
        ck_assert_int_eq(ck_with_lock(c, bad[i], 1000, 0, never_called, &calls), CK_E_INVALID);
    }
    memset(long_name, 'n', 513);
    long_name[513] = '\0';
    ck_assert_int_eq(ck_lock_acquire(c, long_name, 1000, 0, &l), CK_E_INVALID);
    ck_assert_int_eq(ck_lock_acquire(c, NULL, 1000, 0, &l), CK_E_INVALID);
    ck_assert_int_eq(ck_lock_acquire(NULL, "x", 1000, 0, &l), CK_E_INVALID);
    ck_assert_int_eq(ck_lock_acquire(c, "x", 0, 0, &l), CK_E_INVALID);
    ck_assert_int_eq(ck_lock_acquire(c, "x", -5, 0, &l), CK_E_INVALID);
    ck_assert_int_eq(ck_lock_acquire(c, "x", 1000, -1, &l), CK_E_INVALID);
    ck_assert_int_eq(ck_lock_acquire(c, "x", 1000, 0, NULL), CK_E_INVALID);
    ck_assert_int_eq(ck_with_lock(c, "x", 1000, 0, NULL, NULL), CK_E_INVALID);
    ck_assert_int_eq(ck_with_lock(c, "x", 0, 0, never_called, &calls), CK_E_INVALID);
    ck_assert_int_eq(ck_with_lock(NULL, "x", 1000, 0, never_called, &calls), CK_E_INVALID);
    ck_assert_int_eq(calls, 0);
    ck_assert_int_eq(ck_lock_release(NULL), CK_E_INVALID);
    ck_assert_int_eq(ck_lock_extend(NULL, 100), CK_E_INVALID);
    ck_assert_uint_eq(ck_lock_fence(NULL), 0);
    ck_assert_int_eq(ck_lock_valid(NULL), 0);

    /* 512 bytes is fine, and so are ':' and UTF-8 */
    long_name[512] = '\0';
    ck_assert_int_eq(ck_lock_acquire(c, long_name, 1000, 0, &l), CK_OK);
    ck_assert_int_eq(ck_lock_extend(l, 0), CK_E_INVALID);
    ck_assert_int_eq(ck_lock_release(l), CK_OK);
    ck_assert_int_eq(ck_lock_acquire(c, "tenant:42:migr\xc3\xa4tion", 1000, 0, &l), CK_OK);
    ck_assert_int_eq(ck_lock_release(l), CK_OK);
    /* nothing was written for the invalid names */
    ck_assert_int_eq(int_at(ckt_shared_url(), "EXISTS", "ckta:l:{x}:f"), 0);
    ck_client_free(c);
}
END_TEST

START_TEST(key_layout_token_and_fence)
{
    const char *url = ckt_shared_url();
    ck_client *c = lock_client(url, "cktb", NULL);
    ck_lock *l = NULL;
    char tok[64], prev[64] = "", fence[32];
    uint64_t last = 0;

    for (int i = 0; i < 20; i++) {
        ck_assert_int_eq(ck_lock_acquire(c, "job:reindex", 5000, 0, &l), CK_OK);
        ck_assert_ptr_nonnull(l);
        ck_assert_int_eq(ck_lock_valid(l), 1);
        get_at(url, "cktb:l:{job:reindex}", tok, sizeof tok);
        ck_assert_msg(is_hex32(tok), "token '%s' is not 32 hex digits", tok);
        ck_assert_str_ne(tok, prev); /* a fresh random token every time */
        snprintf(prev, sizeof prev, "%s", tok);
        long long pttl = int_at(url, "PTTL", "cktb:l:{job:reindex}");
        ck_assert_msg(pttl > 4000 && pttl <= 5000, "PTTL %lld", pttl);
        /* the fence key holds the fence and never expires */
        get_at(url, "cktb:l:{job:reindex}:f", fence, sizeof fence);
        ck_assert_uint_eq(strtoull(fence, NULL, 10), ck_lock_fence(l));
        ck_assert_int_eq(int_at(url, "PTTL", "cktb:l:{job:reindex}:f"), -1);
        ck_assert_uint_gt(ck_lock_fence(l), last);
        last = ck_lock_fence(l);
        ck_assert_int_eq(ck_lock_release(l), CK_OK);
        ck_assert_int_eq(int_at(url, "EXISTS", "cktb:l:{job:reindex}"), 0);
        ck_assert_int_eq(int_at(url, "EXISTS", "cktb:l:{job:reindex}:f"), 1);
    }
    /* the fence is at least Redis TIME in microseconds */
    ck_assert_uint_le(last, server_time_us(url));
    ck_assert_uint_gt(last, server_time_us(url) - 60ull * 1000000);
    ck_client_free(c);
}
END_TEST

/* A fence key that someone else wrote: a larger number is continued, an
 * absurd one or another type is refused without leaving a lock behind. */
START_TEST(fence_key_edge_cases)
{
    const char *url = ckt_shared_url();
    ckt_log lg;
    ck_client *c;
    ck_lock *l = NULL, *o = NULL;
    const char *hset[] = { "HSET", "cktg:l:{edge}:f", "a", "b", NULL };
    redisReply *r;

    ckt_log_init(&lg);
    c = lock_client(url, "cktg", &lg);
    ok_at(url, "SET", "cktg:l:{edge}:f", "5000000000000000");
    ck_assert_int_eq(ck_lock_acquire(c, "edge", 5000, 0, &l), CK_OK);
    ck_assert_uint_eq(ck_lock_fence(l), 5000000000000001ull);
    ck_assert_int_eq(ck_lock_release(l), CK_OK);

    ok_at(url, "SET", "cktg:l:{edge}:f", "9007199254740991");
    ck_assert_int_eq(ck_lock_acquire(c, "edge", 5000, 0, &l), CK_E_PROTOCOL);
    ck_assert_ptr_null(l);
    ck_assert(ckt_log_has(&lg, "fence out of range"));
    ck_assert_int_eq(int_at(url, "EXISTS", "cktg:l:{edge}"), 0);

    ck_assert_int_eq(int_at(url, "DEL", "cktg:l:{edge}:f"), 1);
    r = ckt_cmd_at(url, hset);
    ck_assert_ptr_nonnull(r);
    freeReplyObject(r);
    ck_assert_int_eq(ck_lock_acquire(c, "edge", 60000, 0, &l), CK_E_PROTOCOL);
    ck_assert(ckt_log_has(&lg, "WRONGTYPE"));
    /* the lock the failed script set is deleted by the next lock call */
    ck_assert_int_eq(int_at(url, "EXISTS", "cktg:l:{edge}"), 1);
    ck_assert_int_eq(ck_lock_acquire(c, "edge-other", 1000, 0, &o), CK_OK);
    ck_assert_int_eq(int_at(url, "EXISTS", "cktg:l:{edge}"), 0);
    ck_assert_int_eq(ck_lock_release(o), CK_OK);
    ck_assert_int_eq(int_at(url, "DEL", "cktg:l:{edge}:f"), 1);
    ck_assert_int_eq(ck_lock_acquire(c, "edge", 1000, 0, &l), CK_OK);
    ck_assert_int_eq(ck_lock_release(l), CK_OK);
    ck_client_free(c);
    ckt_log_free(&lg);
}
END_TEST

/* ---- mutual exclusion: 8 threads + 2 processes, exact counter ---- */

typedef struct shared_state {
    _Atomic int holders;      /* inside the critical section, all processes */
    _Atomic int overlaps;
    _Atomic uint64_t last_fence;
    _Atomic int fence_regressions;
    _Atomic long errors;
} shared_state;

typedef struct mx_arg {
    const char *url;
    ck_client *c;
    shared_state *sh;
    int iters;
    int use_with_lock;
} mx_arg;

/* The critical section: a non-atomic read-modify-write of a Redis key. */
static int critical(mx_arg *a, redisContext *raw, uint64_t fence)
{
    redisReply *r;
    long long n;
    int ok = 1;

    if (atomic_fetch_add(&a->sh->holders, 1) != 0)
        atomic_fetch_add(&a->sh->overlaps, 1);
    if (fence <= atomic_load(&a->sh->last_fence))
        atomic_fetch_add(&a->sh->fence_regressions, 1);
    atomic_store(&a->sh->last_fence, fence);
    r = redisCommand(raw, "GET ckt:lock:counter");
    if (r == NULL)
        return 0;
    n = r->type == REDIS_REPLY_STRING ? atoll(r->str) : 0;
    freeReplyObject(r);
    r = redisCommand(raw, "SET ckt:lock:counter %lld", n + 1);
    ok = r != NULL;
    if (r != NULL)
        freeReplyObject(r);
    atomic_fetch_sub(&a->sh->holders, 1);
    return ok;
}

typedef struct with_arg { mx_arg *a; redisContext *raw; } with_arg;

static ck_status with_fn(void *user, const ck_lock *l)
{
    with_arg *w = user;
    return critical(w->a, w->raw, ck_lock_fence(l)) ? CK_OK : CK_E_UNAVAILABLE;
}

static redisContext *raw_connect(const char *url)
{
    const char *p = strrchr(url, ':');
    redisContext *raw = redisConnect("127.0.0.1", atoi(p + 1));
    return raw != NULL && raw->err == 0 ? raw : NULL;
}

static void *mx_main(void *arg)
{
    mx_arg *a = arg;
    redisContext *raw = raw_connect(a->url);

    if (raw == NULL) {
        atomic_fetch_add(&a->sh->errors, a->iters);
        return NULL;
    }
    for (int i = 0; i < a->iters; i++) {
        if (a->use_with_lock && i % 2 == 1) {
            with_arg w = { a, raw };
            if (ck_with_lock(a->c, "mutex", 10000, 30000, with_fn, &w) != CK_OK)
                atomic_fetch_add(&a->sh->errors, 1);
            continue;
        }
        ck_lock *l = NULL;
        if (ck_lock_acquire(a->c, "mutex", 10000, 30000, &l) != CK_OK) {
            atomic_fetch_add(&a->sh->errors, 1);
            continue;
        }
        if (!critical(a, raw, ck_lock_fence(l)))
            atomic_fetch_add(&a->sh->errors, 1);
        if (ck_lock_release(l) != CK_OK)
            atomic_fetch_add(&a->sh->errors, 1);
    }
    redisFree(raw);
    return NULL;
}

START_TEST(mutual_exclusion_threads_and_processes)
{
    const char *url = ckt_shared_url();
    enum { THREADS = 8, PROCS = 2 };
    int iters = ckt_under_valgrind() ? 5 : 40;
    shared_state *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                            -1, 0);
    pid_t kids[PROCS];
    pthread_t th[THREADS];
    mx_arg args[THREADS];
    ck_client *c;
    char buf[32];

    ck_assert(sh != MAP_FAILED);
    memset(sh, 0, sizeof *sh);
    int_at(url, "DEL", "ckt:lock:counter");
    for (int p = 0; p < PROCS; p++) {
        kids[p] = fork();
        ck_assert_int_ge(kids[p], 0);
        if (kids[p] == 0) {
            ck_options o;
            ck_client *cc = NULL;
            ckt_options(&o, url);
            o.command_timeout_ms = COMMAND_MS;
            if (ck_client_new(&o, &cc) != CK_OK)
                _exit(2);
            mx_arg a = { url, cc, sh, iters, 1 };
            mx_main(&a);
            ck_client_free(cc);
            _exit(0);
        }
    }
    c = lock_client(url, NULL, NULL);
    for (int t = 0; t < THREADS; t++) {
        args[t] = (mx_arg){ url, c, sh, iters, t % 2 };
        ck_assert_int_eq(pthread_create(&th[t], NULL, mx_main, &args[t]), 0);
    }
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    for (int p = 0; p < PROCS; p++) {
        int status;
        ck_assert_int_eq(waitpid(kids[p], &status, 0), kids[p]);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d failed", p);
    }
    get_at(url, "ckt:lock:counter", buf, sizeof buf);
    ck_assert_int_eq(atomic_load(&sh->errors), 0);
    ck_assert_int_eq(atomic_load(&sh->overlaps), 0);
    ck_assert_int_eq(atomic_load(&sh->fence_regressions), 0);
    ck_assert_int_eq(atoll(buf), (THREADS + PROCS) * iters);

    ck_stats s;
    ck_client_stats(c, &s);
    ck_assert_uint_eq(s.lock_acquired, (uint64_t)THREADS * (uint64_t)iters);
    ck_assert_uint_eq(s.lock_lost, 0);
    ck_client_free(c);
    munmap(sh, sizeof *sh);
}
END_TEST

/* ---- fences across FLUSHALL, a lost fence key and restarts ---- */

static uint64_t fence_once(ck_client *c, const char *name)
{
    ck_lock *l = NULL;
    uint64_t f;
    ck_assert_int_eq(ck_lock_acquire(c, name, 5000, ckt_scaled(2000), &l), CK_OK);
    f = ck_lock_fence(l);
    ck_assert_uint_ge(f, 1);
    ck_assert_int_eq(ck_lock_release(l), CK_OK);
    return f;
}

START_TEST(fences_increase_across_flush_and_restart)
{
    ckt_redis *r = ckt_redis_start(NULL);
    ck_client *c = lock_client(ckt_redis_url(r), NULL, NULL);
    uint64_t f[8];
    int n = 0;

    f[n++] = fence_once(c, "fenced");
    f[n++] = fence_once(c, "fenced");
    ok_at(ckt_redis_url(r), "FLUSHALL", NULL, NULL);
    f[n++] = fence_once(c, "fenced");
    ok_at(ckt_redis_url(r), "FLUSHALL", NULL, NULL);
    f[n++] = fence_once(c, "fenced");
    /* the fence key alone evicted */
    ck_assert_int_eq(int_at(ckt_redis_url(r), "DEL", "ck:l:{fenced}:f"), 1);
    f[n++] = fence_once(c, "fenced");
    /* a restart without persistence */
    ckt_redis_restart(r);
    ck_assert_int_eq(int_at(ckt_redis_url(r), "EXISTS", "ck:l:{fenced}:f"), 0);
    f[n++] = fence_once(c, "fenced");
    ckt_redis_restart(r);
    f[n++] = fence_once(c, "fenced");
    f[n++] = fence_once(c, "fenced");
    for (int i = 1; i < n; i++)
        ck_assert_msg(f[i] > f[i - 1], "fence %d: %llu after %llu", i, (unsigned long long)f[i],
                      (unsigned long long)f[i - 1]);
    ck_client_free(c);
    ckt_redis_stop(r);
}
END_TEST

/* ---- expiry, another owner, extend ---- */

START_TEST(release_after_expiry_leaves_new_owner)
{
    const char *url = ckt_shared_url();
    ckt_log lg;
    ck_client *c, *c2;
    ck_lock *a = NULL, *b = NULL;
    char tok[64];
    ck_stats s;

    ckt_log_init(&lg);
    c = lock_client(url, "cktc", &lg);
    c2 = lock_client(url, "cktc", NULL);

    /* expired and taken by someone else */
    ck_assert_int_eq(ck_lock_acquire(c, "exp", ckt_scaled(60), 0, &a), CK_OK);
    ck_assert_int_eq(ck_lock_acquire(c2, "exp", 10000, ckt_scaled(2000), &b), CK_OK);
    ck_assert_uint_gt(ck_lock_fence(b), ck_lock_fence(a));
    ck_assert_int_eq(ck_lock_valid(a), 0); /* its TTL ran out locally too */
    ck_assert_int_eq(ck_lock_extend(a, 5000), CK_E_LOCK_LOST);
    ck_assert(ckt_log_has(&lg, "extend found the lock owned by another holder"));
    ck_assert_int_eq(ck_lock_release(a), CK_E_LOCK_LOST);
    /* known lost: no I/O for the extend, and the release said so */
    ck_assert(ckt_log_has(&lg, "lock 'exp': extend found"));
    get_at(url, "cktc:l:{exp}", tok, sizeof tok);
    ck_assert(is_hex32(tok)); /* b's lock is intact */
    ck_assert_int_gt(int_at(url, "PTTL", "cktc:l:{exp}"), 5000);
    ck_assert_int_eq(ck_lock_valid(b), 1);
    ck_assert_int_eq(ck_lock_extend(b, 20000), CK_OK);
    ck_assert_int_gt(int_at(url, "PTTL", "cktc:l:{exp}"), 15000);
    ck_assert_int_eq(ck_lock_release(b), CK_OK);

    /* expired, nobody else: a different log line, same status */
    ckt_log_reset(&lg);
    ck_assert_int_eq(ck_lock_acquire(c, "exp2", ckt_scaled(40), 0, &a), CK_OK);
    wait_exists(url, "cktc:l:{exp2}", 0, ckt_scaled(2000));
    ck_assert_int_eq(ck_lock_release(a), CK_E_LOCK_LOST);
    ck_assert(ckt_log_has(&lg, "release found the lock expired (key gone)"));
    ck_assert(!ckt_log_has(&lg, "another holder"));

    /* another holder, seen by release without an extend first */
    ckt_log_reset(&lg);
    ck_assert_int_eq(ck_lock_acquire(c, "exp3", 10000, 0, &a), CK_OK);
    ok_at(url, "SET", "cktc:l:{exp3}", "someone-else");
    ck_assert_int_eq(ck_lock_release(a), CK_E_LOCK_LOST);
    ck_assert(ckt_log_has(&lg, "release found the lock owned by another holder; left it intact"));
    get_at(url, "cktc:l:{exp3}", tok, sizeof tok);
    ck_assert_str_eq(tok, "someone-else");

    /* expired, seen by extend */
    ck_assert_int_eq(ck_lock_acquire(c, "exp4", 10000, 0, &a), CK_OK);
    ck_assert_int_eq(int_at(url, "DEL", "cktc:l:{exp4}"), 1);
    ck_assert_int_eq(ck_lock_extend(a, 5000), CK_E_LOCK_LOST);
    ck_assert(ckt_log_has(&lg, "extend found the lock expired (key gone)"));
    ck_assert_int_eq(ck_lock_valid(a), 0);
    ck_assert_int_eq(ck_lock_extend(a, 5000), CK_E_LOCK_LOST);
    ck_assert_int_eq(ck_lock_release(a), CK_E_LOCK_LOST);

    ck_client_stats(c, &s);
    ck_assert_uint_eq(s.lock_lost, 4); /* once per lost handle */
    ck_assert_uint_eq(s.lock_acquired, 4);
    ck_assert(!ckt_log_has(&lg, "someone-else")); /* tokens never logged */
    ck_client_free(c);
    ck_client_free(c2);
    ckt_log_free(&lg);
}
END_TEST

START_TEST(extend_renews_ttl_and_validity)
{
    const char *url = ckt_shared_url();
    ck_client *c = lock_client(url, "cktd", NULL);
    ck_lock *l = NULL;

    ck_assert_int_eq(ck_lock_acquire(c, "ext", ckt_scaled(150), 0, &l), CK_OK);
    ck_assert_int_eq(ck_lock_extend(l, 30000), CK_OK);
    ck_assert_int_gt(int_at(url, "PTTL", "cktd:l:{ext}"), 20000);
    /* the original 150 ms are long gone; still valid, still ours */
    ckt_sleep_ms(ckt_scaled(200));
    ck_assert_int_eq(ck_lock_valid(l), 1);
    ck_assert_int_eq(ck_lock_release(l), CK_OK);
    ck_client_free(c);
}
END_TEST

/* ---- the watchdog ---- */

typedef struct wd_arg {
    const char *url;
    ck_client *other;
    const char *key;
    int run_ms;
    int checks, invalid_seen, stolen, key_missing;
    uint64_t fence;
    ck_status ret;
} wd_arg;

static ck_status hold_fn(void *user, const ck_lock *l)
{
    wd_arg *w = user;
    int64_t end = ckt_now_ms() + w->run_ms;
    w->fence = ck_lock_fence(l);
    while (ckt_now_ms() < end) {
        ck_lock *x = NULL;
        ck_status st;
        if (!ck_lock_valid(l))
            w->invalid_seen++;
        if (int_at(w->url, "EXISTS", w->key) != 1)
            w->key_missing++;
        st = ck_lock_acquire(w->other, "wd", 60000, 0, &x);
        if (st != CK_BUSY) {
            w->stolen++;
            if (x != NULL)
                ck_lock_release(x);
        }
        w->checks++;
        ckt_sleep_ms(20); /* the "work" */
    }
    return w->ret;
}

START_TEST(watchdog_keeps_lock_through_3x_ttl)
{
    const char *url = ckt_shared_url();
    const int ttl = ckt_scaled(600);
    ck_client *c = lock_client(url, "ckte", NULL);
    ck_client *other = lock_client(url, "ckte", NULL);
    wd_arg w = { url, other, "ckte:l:{wd}", 3 * ttl + ttl / 3, 0, 0, 0, 0, 0, CK_OK };
    char fence[32];

    ck_assert_int_eq(ck_with_lock(c, "wd", ttl, 0, hold_fn, &w), CK_OK);
    ck_assert_int_gt(w.checks, 10);
    ck_assert_int_eq(w.invalid_seen, 0);
    ck_assert_int_eq(w.key_missing, 0);
    ck_assert_int_eq(w.stolen, 0);
    get_at(url, "ckte:l:{wd}:f", fence, sizeof fence);
    ck_assert_uint_eq(strtoull(fence, NULL, 10), w.fence);
    /* released afterwards, and the watchdog renews nothing any more */
    ck_assert_int_eq(int_at(url, "EXISTS", "ckte:l:{wd}"), 0);

    /* fn's own status comes back when the lock held */
    w.run_ms = 0;
    w.ret = CK_NOT_FOUND;
    ck_assert_int_eq(ck_with_lock(c, "wd", ttl, 0, hold_fn, &w), CK_NOT_FOUND);
    w.ret = CK_E_LOADER;
    ck_assert_int_eq(ck_with_lock(c, "wd", ttl, 0, hold_fn, &w), CK_E_LOADER);

    /* held elsewhere: CK_BUSY and fn is not called */
    ck_lock *x = NULL;
    int calls = 0;
    ck_assert_int_eq(ck_lock_acquire(other, "wd", 10000, 0, &x), CK_OK);
    ck_assert_int_eq(ck_with_lock(c, "wd", ttl, ckt_scaled(30), never_called, &calls), CK_BUSY);
    ck_assert_int_eq(calls, 0);
    ck_assert_int_eq(ck_lock_release(x), CK_OK);
    ck_client_free(c);
    ck_client_free(other);
}
END_TEST

typedef struct loss_arg {
    ckt_redis *r;
    const char *url;
    int how;          /* 0 SIGSTOP, 1 SIGKILL, 2 DEL the key, 3 another token */
    int timeout_ms;
    int went_invalid, valid_before;
    int64_t noticed_ms;  /* from the fault to ck_lock_valid() == 0 */
} loss_arg;

static int lock_invalid(void *l) { return !ck_lock_valid(l); }

static ck_status lose_fn(void *user, const ck_lock *l)
{
    loss_arg *a = user;
    int64_t t0;
    a->valid_before = ck_lock_valid(l);
    t0 = ckt_now_ms();
    switch (a->how) {
    case 0: ckt_redis_pause(a->r); break;
    case 1: ckt_redis_kill(a->r); break;
    case 2: ck_assert_int_eq(int_at(a->url, "DEL", "ck:l:{lose}"), 1); break;
    default: ok_at(a->url, "SET", "ck:l:{lose}", "intruder"); break;
    }
    /* keep working until the library says the lock is gone */
    a->went_invalid = ckt_wait_until(lock_invalid, (void *)l, a->timeout_ms);
    a->noticed_ms = ckt_now_ms() - t0;
    return CK_OK;
}

START_TEST(watchdog_reports_loss)
{
    static const char *const what[] = { "SIGSTOP", "SIGKILL", "key deleted", "other token" };
    static const char *const logs[] = { "watchdog renewal failed", "watchdog renewal failed",
                                        "extend found the lock expired (key gone)",
                                        "extend found the lock owned by another holder" };
    const int ttl = ckt_scaled(300);

    for (int how = 0; how < 4; how++) {
        ckt_redis *r = ckt_redis_start(NULL);
        ckt_log lg;
        ckt_log_init(&lg);
        ck_client *c = lock_client(ckt_redis_url(r), NULL, &lg);
        loss_arg a = { r, ckt_redis_url(r), how, 3 * ttl, 0, 0, 0 };
        int64_t t0 = ckt_now_ms();
        ck_status st = ck_with_lock(c, "lose", ttl, 0, lose_fn, &a);
        ck_stats s;

        ck_assert_msg(a.valid_before == 1, "%s: not valid at start", what[how]);
        ck_assert_msg(a.went_invalid, "%s: ck_lock_valid stayed 1", what[how]);
        ck_assert_msg(st == CK_E_LOCK_LOST, "%s: ck_with_lock returned %s", what[how],
                      ck_strerror(st));
        ck_assert_msg(ckt_log_has(&lg, logs[how]), "%s: no '%s' in the log", what[how], logs[how]);
        /* a refused or answered renewal marks the loss at the first renewal
         * (ttl/3), well before the TTL would have run out locally */
        if (how != 0 && !ckt_under_valgrind())
            ck_assert_msg(a.noticed_ms < 2 * ttl / 3, "%s: noticed after %lld ms", what[how],
                          (long long)a.noticed_ms);
        ck_client_stats(c, &s);
        ck_assert_uint_eq(s.lock_lost, 1);
        /* noticed within a renewal period plus a call's deadline or two, not at the TTL's end */
        if (!ckt_under_valgrind())
            ck_assert_msg(ckt_now_ms() - t0 < 2 * ttl + 3 * (CONNECT_MS + COMMAND_MS) + 100,
                          "%s: took %lld ms", what[how], (long long)(ckt_now_ms() - t0));
        if (how == 0)
            ckt_redis_resume(r);
        if (how == 3) {
            char tok[32];
            get_at(ckt_redis_url(r), "ck:l:{lose}", tok, sizeof tok);
            ck_assert_str_eq(tok, "intruder"); /* the other holder's lock is left alone */
        }
        ck_client_free(c);
        ckt_log_free(&lg);
        ckt_redis_stop(r);
    }
}
END_TEST

/* ---- waiting and Redis down ---- */

START_TEST(busy_within_wait_ms)
{
    const char *url = ckt_shared_url();
    ck_client *c = lock_client(url, "cktf", NULL);
    ck_lock *h = NULL, *l = (ck_lock *)&l;
    const int waits[] = { 0, ckt_scaled(30), ckt_scaled(200) };
    ck_stats s;

    ck_assert_int_eq(ck_lock_acquire(c, "busy", 60000, 0, &h), CK_OK);
    for (size_t i = 0; i < sizeof waits / sizeof waits[0]; i++) {
        int64_t t0 = ckt_now_us(), dt;
        ck_assert_int_eq(ck_lock_acquire(c, "busy", 1000, waits[i], &l), CK_BUSY);
        dt = (ckt_now_us() - t0) / 1000;
        ck_assert_ptr_null(l);
        /* the last attempt is a round trip after the last sleep: on a
         * loaded CI machine 15 ms slack was missed by 1 ms */
        ck_assert_msg(dt >= waits[i] && dt <= waits[i] + 2 * ckt_slack_ms(),
                      "wait_ms %d: returned after %lld ms", waits[i], (long long)dt);
    }
    ck_client_stats(c, &s);
    ck_assert_uint_eq(s.lock_busy, 3);
    ck_assert_int_eq(ck_lock_release(h), CK_OK);

    /* a waiter gets the lock soon after the holder's TTL ends: it sleeps
     * no longer than the PTTL the acquire script reported */
    const int ttl = ckt_scaled(150);
    ck_assert_int_eq(ck_lock_acquire(c, "busy", ttl, 0, &h), CK_OK);
    int64_t t0 = ckt_now_ms();
    ck_assert_int_eq(ck_lock_acquire(c, "busy", 1000, ckt_scaled(3000), &l), CK_OK);
    int64_t dt = ckt_now_ms() - t0;
    ck_assert_int_ge(dt, ttl - 5);
    if (!ckt_under_valgrind())
        ck_assert_msg(dt <= ttl + 45, "got the lock %lld ms after the start, ttl %d", (long long)dt,
                      ttl);
    ck_assert_uint_gt(ck_lock_fence(l), ck_lock_fence(h));
    ck_assert_int_eq(ck_lock_release(h), CK_E_LOCK_LOST);
    ck_assert_int_eq(ck_lock_release(l), CK_OK);
    ck_client_free(c);
}
END_TEST

START_TEST(unavailable_within_deadline_when_down)
{
    char url[64];
    ck_client *c;
    ck_lock *l = (ck_lock *)&l;
    int calls = 0;
    ck_stats s;
    const int64_t bound = CONNECT_MS + COMMAND_MS + POOL_WAIT_MS + ckt_slack_ms();

    snprintf(url, sizeof url, "redis://127.0.0.1:%d", ckt_closed_port());
    c = lock_client(url, NULL, NULL);
    for (int wait = 0; wait <= ckt_scaled(500); wait += ckt_scaled(500)) {
        int64_t t0 = ckt_now_ms();
        ck_assert_int_eq(ck_lock_acquire(c, "down", 1000, wait, &l), CK_E_UNAVAILABLE);
        ck_assert_int_le(ckt_now_ms() - t0, bound);
        ck_assert_ptr_null(l);
    }
    int64_t t0 = ckt_now_ms();
    ck_assert_int_eq(ck_with_lock(c, "down", 1000, 0, never_called, &calls), CK_E_UNAVAILABLE);
    ck_assert_int_le(ckt_now_ms() - t0, bound);
    ck_assert_int_eq(calls, 0);
    ck_client_stats(c, &s);
    ck_assert_uint_eq(s.lock_acquired, 0);
    ck_assert_uint_eq(s.degraded, 3);
    ck_assert_uint_ge(s.redis_errors, 3);
    /* nothing was ambiguous: no orphan to clean */
    ck_assert_int_eq(ck__orphan_count(c), 0);
    ck_client_free(c);

    /* a stopped server: the same bound; the acquire was sent on a pooled
     * connection, so it may run when the server resumes: an orphan, deleted
     * by the next lock call that gets an answer */
    ckt_redis *r = ckt_redis_start(NULL);
    ck_lock *h = NULL;
    c = lock_client(ckt_redis_url(r), NULL, NULL);
    ck_assert_int_eq(ck_lock_acquire(c, "down", 10000, 0, &h), CK_OK);
    ckt_redis_pause(r);
    t0 = ckt_now_ms();
    ck_assert_int_eq(ck_lock_acquire(c, "down2", 10000, 0, &l), CK_E_UNAVAILABLE);
    ck_assert_int_le(ckt_now_ms() - t0, bound);
    ck_assert_int_eq(ck__orphan_count(c), 1);
    ckt_redis_resume(r);
    wait_exists(ckt_redis_url(r), "ck:l:{down2}", 1, ckt_scaled(2000));
    ck_assert_int_eq(ck_lock_release(h), CK_OK);
    ck_assert_int_eq(int_at(ckt_redis_url(r), "EXISTS", "ck:l:{down2}"), 0);
    ck_assert_int_eq(ck__orphan_count(c), 0);
    ck_client_free(c);
    ckt_redis_stop(r);
}
END_TEST

/* ---- lost replies: no orphan lock ---- */

typedef struct rig { ckt_redis *r; ckt_proxy *p; ck_client *c; ckt_log lg; } rig;

static void rig_start(rig *g)
{
    g->r = ckt_redis_start(NULL);
    g->p = ckt_proxy_start(ckt_redis_port(g->r));
    ckt_log_init(&g->lg);
    g->c = lock_client(ckt_proxy_url(g->p), NULL, &g->lg);
}

static void rig_stop(rig *g)
{
    ck_client_free(g->c);
    ckt_proxy_stop(g->p);
    ckt_redis_stop(g->r);
    ckt_log_free(&g->lg);
}

/* An acquire without waiting, retried while Redis does not answer in time. */
static ck_status acquire_retrying(ck_client *c, const char *name, int ttl_ms, ck_lock **out)
{
    ck_status st;
    int tries = 0;
    while ((st = ck_lock_acquire(c, name, ttl_ms, 0, out)) == CK_E_UNAVAILABLE && ++tries < 20)
        ckt_sleep_ms(50);
    return st;
}

START_TEST(no_orphan_after_lost_acquire_reply)
{
    rig g;
    ck_lock *l = NULL, *o = NULL;
    const char *url;
    char fence[32];

    rig_start(&g);
    url = ckt_redis_url(g.r); /* admin commands bypass the proxy */
    ck_assert_int_eq(ck_lock_acquire(g.c, "warm", 1000, 0, &l), CK_OK);
    ck_assert_int_eq(ck_lock_release(l), CK_OK);

    /* the server runs the acquire, its reply comes too late */
    ckt_proxy_set(g.p, CKT_DELAY, ckt_scaled(400));
    ck_assert_int_eq(ck_lock_acquire(g.c, "orphan", 60000, 0, &l), CK_E_UNAVAILABLE);
    ck_assert_ptr_null(l);
    ck_assert_int_gt(int_at(url, "PTTL", "ck:l:{orphan}"), 50000); /* it did run */
    ck_assert_int_eq(ck__orphan_count(g.c), 1);
    ck_assert(ckt_log_has(&g.lg, "acquire failed (redis unavailable"));
    ck_assert(ckt_log_has(&g.lg, "will be deleted with its token once redis answers"));

    /* Redis answers again: the next lock call deletes the orphan */
    ckt_proxy_set(g.p, CKT_PASS, 0);
    ck_assert_int_eq(ck_lock_acquire(g.c, "other", 60000, 0, &o), CK_OK);
    ck_assert_int_eq(int_at(url, "EXISTS", "ck:l:{orphan}"), 0);
    ck_assert_int_eq(ck__orphan_count(g.c), 0);
    ck_assert_int_eq(ck_lock_release(o), CK_OK);

    /* same again, but the same client wants the same name: it takes over
     * its own orphan (no wait for the TTL, no BUSY) */
    ckt_proxy_set(g.p, CKT_DELAY, ckt_scaled(400));
    ck_assert_int_eq(ck_lock_acquire(g.c, "orphan2", 60000, 0, &l), CK_E_UNAVAILABLE);
    ck_assert_int_eq(int_at(url, "EXISTS", "ck:l:{orphan2}"), 1);
    get_at(url, "ck:l:{orphan2}:f", fence, sizeof fence);
    ckt_proxy_set(g.p, CKT_PASS, 0);
    ck_assert_int_eq(ck_lock_acquire(g.c, "orphan2", 5000, 0, &l), CK_OK);
    ck_assert_uint_gt(ck_lock_fence(l), strtoull(fence, NULL, 10)); /* a fresh fence */
    ck_assert_int_le(int_at(url, "PTTL", "ck:l:{orphan2}"), 5000); /* our new TTL */
    ck_assert_int_eq(ck_lock_release(l), CK_OK);
    ck_assert_int_eq(int_at(url, "EXISTS", "ck:l:{orphan2}"), 0);

    /* a release that never reached the server: deleted later */
    ck_assert_int_eq(ck_lock_acquire(g.c, "unreleased", 60000, 0, &l), CK_OK);
    ckt_proxy_set(g.p, CKT_BLACKHOLE, 0);
    ck_assert_int_eq(ck_lock_release(l), CK_E_UNAVAILABLE);
    ck_assert_int_eq(int_at(url, "EXISTS", "ck:l:{unreleased}"), 1);
    ckt_proxy_set(g.p, CKT_PASS, 0);
    ck_assert_int_eq(ck_lock_acquire(g.c, "other", 60000, 0, &o), CK_OK);
    ck_assert_int_eq(int_at(url, "EXISTS", "ck:l:{unreleased}"), 0);
    ck_assert_int_eq(ck_lock_release(o), CK_OK);

    /* a fork child never takes over (or deletes) its parent's orphan */
    ckt_proxy_set(g.p, CKT_DELAY, ckt_scaled(400));
    ck_assert_int_eq(ck_lock_acquire(g.c, "forked", 60000, 0, &l), CK_E_UNAVAILABLE);
    ckt_proxy_set(g.p, CKT_PASS, 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        ck_lock *x = NULL;
        ck_status st;
        int rc = 0;
        /* the child's first calls connect afresh: on a loaded machine (ASan,
         * CI) that can miss the 100 ms command timeout, which is not what
         * this part tests */
        if (ck__orphan_count(g.c) != 0)
            rc = 3;
        else if ((st = acquire_retrying(g.c, "forked", 60000, &x)) != CK_BUSY)
            rc = 10 - st; /* 10 = CK_OK: it took the parent's orphan */
        else if (acquire_retrying(g.c, "child", 1000, &x) != CK_OK || ck_lock_release(x) != CK_OK)
            rc = 4;
        ck_client_free(g.c); /* closes only the child's own connections */
        _exit(rc);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "fork child: exit %d",
                  WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    ck_assert_int_eq(int_at(url, "EXISTS", "ck:l:{forked}"), 1);
    ck_assert_int_eq(ck_lock_acquire(g.c, "forked", 1000, 0, &l), CK_OK);
    ck_assert_int_eq(ck_lock_release(l), CK_OK);
    rig_stop(&g);
}
END_TEST

typedef struct pass_later { rig *g; const char *url; } pass_later;

/* Let the release run on the server, hold its reply past the command
 * timeout, then let traffic through again. */
static void *pass_after_delete(void *arg)
{
    pass_later *p = arg;
    wait_exists(p->url, "ck:l:{rel}", 0, ckt_scaled(5000));
    ckt_sleep_ms(COMMAND_MS + ckt_scaled(50)); /* fault pacing: past the first attempt's deadline */
    ckt_proxy_set(p->g->p, CKT_PASS, 0);
    return NULL;
}

START_TEST(release_retries_after_lost_reply)
{
    rig g;
    ck_lock *l = NULL;
    pthread_t th;
    pass_later p;

    rig_start(&g);
    p.g = &g;
    p.url = ckt_redis_url(g.r);
    ck_assert_int_eq(ck_lock_acquire(g.c, "warm", 60000, 0, &l), CK_OK);
    ck_assert_int_eq(ck_lock_release(l), CK_OK); /* the release script is loaded */
    ck_assert_int_eq(ck_lock_acquire(g.c, "rel", 60000, 0, &l), CK_OK);
    ckt_proxy_set(g.p, CKT_DELAY, ckt_scaled(3000));
    ck_assert_int_eq(pthread_create(&th, NULL, pass_after_delete, &p), 0);
    /* attempt 1 deletes, its reply is lost; a later attempt finds the key
     * gone and, since attempt 1 was sent while the lock was ours, says OK */
    ck_assert_int_eq(ck_lock_release(l), CK_OK);
    pthread_join(th, NULL);
    ck_assert(ckt_log_has(&g.lg, "released (confirmed after a lost reply)"));
    ck_assert(!ckt_log_has(&g.lg, "release found"));
    ck_assert_int_eq(ck__orphan_count(g.c), 0);
    rig_stop(&g);
}
END_TEST

/* ---- connections killed at random: never two holders ---- */

typedef struct chaos {
    const char *url;
    ck_client *c;
    _Atomic int stop;
    _Atomic int holders, overlaps, grants, regressions;
    _Atomic uint64_t last_fence;
    _Atomic int kills;
} chaos;

static void *chaos_worker(void *arg)
{
    chaos *k = arg;
    while (!atomic_load(&k->stop)) {
        ck_lock *l = NULL;
        if (ck_lock_acquire(k->c, "chaos", 5000, ckt_scaled(200), &l) != CK_OK)
            continue;
        if (atomic_fetch_add(&k->holders, 1) != 0)
            atomic_fetch_add(&k->overlaps, 1);
        if (ck_lock_fence(l) <= atomic_load(&k->last_fence))
            atomic_fetch_add(&k->regressions, 1);
        atomic_store(&k->last_fence, ck_lock_fence(l));
        atomic_fetch_add(&k->grants, 1);
        ckt_sleep_ms(0);
        sched_yield(); /* widen the window a second holder would show up in */
        atomic_fetch_sub(&k->holders, 1);
        ck_lock_release(l);
    }
    return NULL;
}

static void *chaos_killer(void *arg)
{
    chaos *k = arg;
    unsigned seed = (unsigned)getpid();
    while (!atomic_load(&k->stop)) {
        ckt_sleep_ms(1 + (int)(rand_r(&seed) % 8)); /* fault pacing */
        atomic_fetch_add(&k->kills, ckt_kill_clients_named(k->url, "ck:"));
    }
    return NULL;
}

START_TEST(no_double_grant_while_connections_killed)
{
    enum { WORKERS = 6 };
    chaos k;
    pthread_t w[WORKERS], killer;
    ck_options o;

    memset(&k, 0, sizeof k);
    k.url = ckt_shared_url();
    ckt_options(&o, k.url);
    o.command_timeout_ms = COMMAND_MS;
    o.connect_timeout_ms = CONNECT_MS;
    o.breaker_failures = 1000000; /* keep trying: this test is about safety */
    ck_assert_int_eq(ck_client_new(&o, &k.c), CK_OK);
    for (int i = 0; i < WORKERS; i++)
        ck_assert_int_eq(pthread_create(&w[i], NULL, chaos_worker, &k), 0);
    ck_assert_int_eq(pthread_create(&killer, NULL, chaos_killer, &k), 0);
    ckt_sleep_ms(ckt_under_valgrind() ? 4000 : 2500); /* the test's duration */
    atomic_store(&k.stop, 1);
    for (int i = 0; i < WORKERS; i++)
        pthread_join(w[i], NULL);
    pthread_join(killer, NULL);
    ck_assert_int_eq(atomic_load(&k.overlaps), 0);
    ck_assert_int_eq(atomic_load(&k.regressions), 0);
    ck_assert_int_gt(atomic_load(&k.kills), 10);
    ck_assert_int_gt(atomic_load(&k.grants), ckt_under_valgrind() ? 5 : 100);
    ck_client_free(k.c);
}
END_TEST

/* ---- least privilege: the ACL of docs/client.md is enough ---- */

static void acl_user(ckt_redis *r, const char *user, int with_time)
{
    const char *argv[] = { "ACL", "SETUSER", user, "reset", "on", ">lock-secret-pw", "~ck:*",
                           "&ck:*", "+ping", "+select", "+evalsha", "+script|load",
                           "+client|setname", "+info", "+get", "+set", "+pexpire", "+pttl",
                           "+del", "+time", NULL };
    redisReply *rep;
    if (!with_time)
        argv[19] = NULL;
    rep = ckt_redis_cmd(r, argv);
    ck_assert_msg(rep != NULL && rep->type == REDIS_REPLY_STATUS, "ACL SETUSER failed");
    freeReplyObject(rep);
}

START_TEST(acl_least_privilege)
{
    ckt_redis *r = ckt_redis_start(NULL);
    char url[128];
    ckt_log lg;
    ck_client *c;
    ck_lock *l = NULL;

    ckt_log_init(&lg);
    acl_user(r, "locker", 1);
    snprintf(url, sizeof url, "redis://locker:lock-secret-pw@127.0.0.1:%d", ckt_redis_port(r));
    c = lock_client(url, NULL, &lg);
    ck_assert_int_eq(ck_lock_acquire(c, "acl", 1000, 0, &l), CK_OK);
    ck_assert_int_eq(ck_lock_extend(l, 2000), CK_OK);
    ck_assert_int_eq(ck_lock_release(l), CK_OK);
    ck_assert_int_eq(ck_lock_acquire(c, "acl", 1000, 0, &l), CK_OK);
    ck_lock *x = NULL;
    ck_assert_int_eq(ck_lock_acquire(c, "acl", 1000, 20, &x), CK_BUSY); /* PTTL */
    ck_assert_int_eq(ck_lock_release(l), CK_OK);
    ck_client_free(c);

    /* one command short: a clear error, never a lock */
    acl_user(r, "notime", 0);
    snprintf(url, sizeof url, "redis://notime:lock-secret-pw@127.0.0.1:%d", ckt_redis_port(r));
    c = lock_client(url, NULL, &lg);
    ck_assert_int_eq(ck_lock_acquire(c, "acl2", 1000, 0, &l), CK_E_PROTOCOL);
    ck_assert_ptr_null(l);
    ck_assert(ckt_log_has(&lg, "NOPERM") || ckt_log_has(&lg, "can't run this command"));
    ck_assert(!ckt_log_has(&lg, "lock-secret-pw"));
    ck_client_free(c);
    ckt_log_free(&lg);
    ckt_redis_stop(r);
}
END_TEST

/* ---- the eviction warning ---- */

START_TEST(eviction_policy_warning_with_locks)
{
    const char *extra[] = { "--maxmemory-policy", "allkeys-lru", NULL };
    ckt_redis *r = ckt_redis_start(extra);
    ckt_log lg;
    ck_client *c;
    ck_lock *l = NULL;

    ckt_log_init(&lg);
    c = lock_client(ckt_redis_url(r), NULL, &lg);
    ck_assert_int_eq(ck_lock_acquire(c, "evictable", 1000, 0, &l), CK_OK);
    ck_assert_int_eq(ck_lock_release(l), CK_OK);
    ck_assert(ckt_log_has(&lg, "maxmemory-policy is not noeviction: lock and rate-limit keys"));
    ck_client_free(c);
    ckt_log_reset(&lg);

    /* noeviction: no warning */
    ckt_redis *q = ckt_redis_start(NULL);
    c = lock_client(ckt_redis_url(q), NULL, &lg);
    ck_assert_int_eq(ck_lock_acquire(c, "evictable", 1000, 0, &l), CK_OK);
    ck_assert_int_eq(ck_lock_release(l), CK_OK);
    ck_assert(!ckt_log_has(&lg, "maxmemory-policy"));
    ck_client_free(c);
    ckt_log_free(&lg);
    ckt_redis_stop(q);
    ckt_redis_stop(r);
}
END_TEST

Suite *ckt_suite(void)
{
    Suite *s = suite_create("lock");
    TCase *tc = tcase_create("lock");
    TCase *fx = tcase_create("faults");

    tcase_set_timeout(tc, 60);
    tcase_set_timeout(fx, 60);
    tcase_add_test(tc, invalid_arguments);
    tcase_add_test(tc, key_layout_token_and_fence);
    tcase_add_test(tc, fence_key_edge_cases);
    tcase_add_test(tc, mutual_exclusion_threads_and_processes);
    tcase_add_test(tc, release_after_expiry_leaves_new_owner);
    tcase_add_test(tc, extend_renews_ttl_and_validity);
    tcase_add_test(tc, watchdog_keeps_lock_through_3x_ttl);
    tcase_add_test(tc, busy_within_wait_ms);
    tcase_add_test(tc, eviction_policy_warning_with_locks);
    tcase_add_test(tc, acl_least_privilege);
    tcase_add_test(fx, fences_increase_across_flush_and_restart);
    tcase_add_test(fx, watchdog_reports_loss);
    tcase_add_test(fx, unavailable_within_deadline_when_down);
    tcase_add_test(fx, no_orphan_after_lost_acquire_reply);
    tcase_add_test(fx, release_retries_after_lost_reply);
    tcase_add_test(fx, no_double_grant_while_connections_killed);
    suite_add_tcase(s, tc);
    suite_add_tcase(s, fx);
    return s;
}

#include "ckt_main.h"
