/* Deadlines and the circuit breaker under real faults: a closed port, a
 * listener that never accepts, a black hole, a server that drips its reply,
 * a SIGSTOPped server, DEBUG SLEEP, reset connections.
 *
 * The bound every call must meet: connect + command timeout + pool wait +
 * 15 ms (ckt_slack_ms()). */
#define _GNU_SOURCE
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <hiredis/hiredis.h>

#include "ckt.h"
#include "internal.h"

/* Times stretch in the slow builds (ckt_scaled, with a wider slack): there
 * the suite checks behaviour, natively it also checks the deadline bounds. */
#define CONNECT_MS ckt_scaled(200)
#define COMMAND_MS ckt_scaled(100)
#define POOL_WAIT_MS ckt_scaled(50)

static ck_client *faulty_client(const char *url, int breaker_failures, int cooldown_ms)
{
    ck_options o;
    ck_client *c = NULL;
    ckt_options(&o, url);
    o.connect_timeout_ms = CONNECT_MS;
    o.command_timeout_ms = COMMAND_MS;
    o.pool_wait_ms = POOL_WAIT_MS;
    o.breaker_failures = breaker_failures;
    o.breaker_cooldown_ms = cooldown_ms;
    if (getenv("CKT_SHOW_LOG") != NULL) {
        static ckt_log lg;
        ckt_log_init(&lg);
        o.log = ckt_log_fn;
        o.log_user = &lg;
        o.log_level = CK_LOG_DEBUG;
    }
    ck_assert_int_eq(ck_client_new(&o, &c), CK_OK);
    return c;
}

static int64_t bound_ms(void)
{
    return CONNECT_MS + COMMAND_MS + POOL_WAIT_MS + ckt_slack_ms();
}

/* Time `n` pings, each of which must fail; returns the slowest in ms. */
static int64_t slowest_failing_ping(ck_client *c, int n)
{
    int64_t worst = 0;
    if (ckt_under_valgrind() && n > 2)
        n = 2;
    for (int i = 0; i < n; i++) {
        int64_t t0 = ckt_now_us();
        ck_status st = ck_client_ping(c);
        int64_t dt = (ckt_now_us() - t0) / 1000;
        ck_assert_int_eq(st, CK_E_UNAVAILABLE);
        if (dt > worst)
            worst = dt;
    }
    return worst;
}

START_TEST(deadline_closed_port)
{
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", ckt_closed_port());
    ck_client *c = faulty_client(url, 1000, 1000);
    int64_t worst = slowest_failing_ping(c, 5);
    ck_assert_msg(worst <= bound_ms(), "closed port: %lld ms", (long long)worst);
    ck_client_free(c);
}
END_TEST

START_TEST(deadline_listener_never_accepts)
{
    ckt_listener l;
    ckt_listener_open(&l);
    ck_client *c = faulty_client(l.url, 1000, 1000);
    /* the first calls fill the backlog (connect completes, no answer), the
     * later ones hang in the SYN: both must stop at the deadline */
    int64_t worst = slowest_failing_ping(c, 5);
    ck_assert_msg(worst <= bound_ms(), "no-accept listener: %lld ms", (long long)worst);
    ck_client_free(c);
    ckt_listener_close(&l);
}
END_TEST

/* A server, a proxy in front, and a client whose connection is pooled. */
typedef struct rig { ckt_redis *r; ckt_proxy *p; ck_client *c; } rig;

static void rig_up(rig *g, int breaker_failures, int cooldown_ms)
{
    g->r = ckt_redis_start(NULL);
    g->p = ckt_proxy_start(ckt_redis_port(g->r));
    g->c = faulty_client(ckt_proxy_url(g->p), breaker_failures, cooldown_ms);
    ck_assert_int_eq(ck_client_ping(g->c), CK_OK); /* one pooled connection */
}

static void rig_down(rig *g)
{
    ck_client_free(g->c);
    ckt_proxy_stop(g->p);
    ckt_redis_stop(g->r);
}

START_TEST(deadline_black_hole)
{
    rig g;
    rig_up(&g, 1000, 1000);
    ckt_proxy_set(g.p, CKT_BLACKHOLE, 0);
    /* first on the pooled connection (command deadline), then on new ones
     * (connect deadline covers the handshake) */
    int64_t worst = slowest_failing_ping(g.c, 4);
    ck_assert_msg(worst <= bound_ms(), "black hole: %lld ms", (long long)worst);
    ckt_proxy_set(g.p, CKT_PASS, 0);
    ck_assert_int_eq(ck_client_ping(g.c), CK_OK);
    rig_down(&g);
}
END_TEST

START_TEST(deadline_drip)
{
    rig g;
    rig_up(&g, 1000, 1000);
    /* "+PONG\r\n" at one byte per 40 ms takes 280 ms: each read() makes
     * progress, so only a deadline over the whole reply stops it */
    ckt_proxy_set(g.p, CKT_DRIP, ckt_scaled(40));
    int64_t worst = slowest_failing_ping(g.c, 4);
    ck_assert_msg(worst <= bound_ms(), "drip: %lld ms", (long long)worst);
    rig_down(&g);
}
END_TEST

static ck_status get_fn(redisContext *ctx, void *user)
{
    redisReply *r = redisCommand(ctx, "GET %s", "ckt:faults:k");
    (void)user;
    if (r == NULL)
        return CK_E_UNAVAILABLE;
    freeReplyObject(r);
    return CK_OK;
}

/* ck_client_run's fn uses blocking hiredis calls: the timer thread must cut
 * them off at the deadline. */
START_TEST(deadline_run_fn_drip_and_black_hole)
{
    rig g;
    rig_up(&g, 1000, 1000);
    ck_assert_int_eq(ck_client_run(g.c, get_fn, NULL), CK_OK);
    for (int mode = 0; mode < 2; mode++) {
        ckt_proxy_set(g.p, mode == 0 ? CKT_DRIP : CKT_BLACKHOLE, ckt_scaled(40));
        for (int i = 0; i < (ckt_under_valgrind() ? 1 : 3); i++) {
            int64_t t0 = ckt_now_us();
            ck_assert_int_eq(ck_client_run(g.c, get_fn, NULL), CK_E_UNAVAILABLE);
            int64_t dt = (ckt_now_us() - t0) / 1000;
            ck_assert_msg(dt <= bound_ms(), "run, mode %d: %lld ms", mode, (long long)dt);
        }
    }
    ckt_proxy_set(g.p, CKT_PASS, 0);
    ck_assert_int_eq(ck_client_run(g.c, get_fn, NULL), CK_OK);
    rig_down(&g);
}
END_TEST

START_TEST(deadline_sigstop_and_recovery)
{
    ckt_redis *r = ckt_redis_start(NULL);
    ck_client *c = faulty_client(ckt_redis_url(r), 1000, 1000);
    ck_assert_int_eq(ck_client_ping(c), CK_OK);
    ckt_redis_pause(r);
    int64_t worst = slowest_failing_ping(c, 4);
    ckt_redis_resume(r);
    ck_assert_msg(worst <= bound_ms(), "SIGSTOP: %lld ms", (long long)worst);
    ck_assert_int_eq(ck_client_ping(c), CK_OK);
    ck_client_free(c);
    ckt_redis_stop(r);
}
END_TEST

static int server_busy(void *arg)
{
    const ckt_redis *r = arg;
    struct timeval tv = { 0, ckt_under_valgrind() ? 300000 : 30000 };
    redisContext *ctx = redisConnectWithTimeout("127.0.0.1", ckt_redis_port(r), tv);
    int busy = 1;
    if (ctx != NULL && !ctx->err) {
        redisSetTimeout(ctx, tv);
        redisReply *rep = redisCommand(ctx, "PING");
        busy = rep == NULL;
        if (rep != NULL)
            freeReplyObject(rep);
    }
    redisFree(ctx);
    return busy;
}

START_TEST(deadline_debug_sleep)
{
    ckt_redis *r = ckt_redis_start(NULL);
    ck_client *c = faulty_client(ckt_redis_url(r), 1000, 1000);
    struct timeval tv = { 5, 0 };
    redisContext *admin = redisConnectWithTimeout("127.0.0.1", ckt_redis_port(r), tv);
    int done = 0;
    ck_assert_int_eq(ck_client_ping(c), CK_OK);
    ck_assert(admin != NULL && !admin->err);
    /* send DEBUG SLEEP without waiting for its reply, then wait until the
     * server really is asleep */
    redisAppendCommand(admin, ckt_under_valgrind() ? "DEBUG SLEEP 8"
                              : ckt_under_tsan() ? "DEBUG SLEEP 3.2" : "DEBUG SLEEP 0.8");
    while (!done)
        ck_assert(redisBufferWrite(admin, &done) == REDIS_OK);
    ck_assert(ckt_wait_until(server_busy, r, 2000));
    int64_t worst = slowest_failing_ping(c, 2);
    ck_assert_msg(worst <= bound_ms(), "DEBUG SLEEP: %lld ms", (long long)worst);
    redisFree(admin);
    ck_client_free(c);
    ckt_redis_stop(r);
}
END_TEST

/* ---- breaker ---- */

START_TEST(breaker_opens_and_costs_no_io)
{
    rig g;
    ck_stats s;
    rig_up(&g, 3, 60000);
    ckt_proxy_set(g.p, CKT_RESET, 0);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(ck_client_ping(g.c), CK_E_UNAVAILABLE);
    ck_client_stats(g.c, &s);
    ck_assert_uint_eq(s.breaker_opens, 1);
    ck_assert_uint_eq(s.redis_errors, 3);

    unsigned accepts = ckt_proxy_accepts(g.p);
    uint64_t bytes = ckt_proxy_bytes_in(g.p);
    int fds = ckt_open_fds();
    int n = ckt_under_valgrind() ? 2000 : 100000;
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(ck_client_ping(g.c), CK_E_UNAVAILABLE);
    ck_assert_int_eq(ck_client_run(g.c, get_fn, NULL), CK_E_UNAVAILABLE);
    /* nothing reached the network while open */
    ck_assert_uint_eq(ckt_proxy_accepts(g.p), accepts);
    ck_assert_uint_eq(ckt_proxy_bytes_in(g.p), bytes);
    ck_assert_int_eq(ckt_open_fds(), fds);
    ck_client_stats(g.c, &s);
    ck_assert_uint_eq(s.breaker_opens, 1);
    ck_assert_uint_eq(s.redis_errors, 3);      /* open-breaker answers are not errors */
    ck_assert_uint_eq(s.degraded, 3 + (uint64_t)n + 1);
    rig_down(&g);
}
END_TEST

typedef struct hammer {
    ck_client *c;
    _Atomic int stop;
    _Atomic long calls, ok;
} hammer;

static void *hammer_main(void *arg)
{
    hammer *h = arg;
    while (!atomic_load(&h->stop)) {
        if (ck_client_ping(h->c) == CK_OK)
            atomic_fetch_add(&h->ok, 1);
        atomic_fetch_add(&h->calls, 1);
    }
    return NULL;
}

/* 8 threads against a black hole: each cooldown lets exactly one probe out,
 * so the proxy sees at most one new connection per (jittered) cooldown. */
START_TEST(breaker_single_probe_per_cooldown)
{
    enum { THREADS = 8 };
    const int COOLDOWN = ckt_scaled(200), RUN_MS = ckt_under_valgrind() ? 4000 : 1200;
    rig g;
    hammer h = { .stop = 0 };
    pthread_t th[THREADS];
    rig_up(&g, 2, COOLDOWN);
    ckt_proxy_set(g.p, CKT_BLACKHOLE, 0);
    h.c = g.c;
    ck_assert_int_eq(ck_client_ping(g.c), CK_E_UNAVAILABLE); /* pooled conn times out */
    ck_assert_int_eq(ck_client_ping(g.c), CK_E_UNAVAILABLE); /* a new one: opens */
    ck_stats s;
    ck_client_stats(g.c, &s);
    ck_assert_uint_eq(s.breaker_opens, 1);
    unsigned a0 = ckt_proxy_accepts(g.p);
    int64_t t0 = ckt_now_ms();
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, hammer_main, &h), 0);
    ckt_sleep_ms(RUN_MS); /* the measured interval itself */
    atomic_store(&h.stop, 1);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    int64_t elapsed = ckt_now_ms() - t0;
    unsigned probes = ckt_proxy_accepts(g.p) - a0;
    /* cooldown jitter is +-20%: at most one probe per 0.8 * cooldown */
    unsigned most = (unsigned)(elapsed / (COOLDOWN * 8 / 10)) + 1;
    ck_assert_msg(probes >= 1 && probes <= most, "%u probes in %lld ms (max %u)", probes,
                  (long long)elapsed, most);
    ck_assert_int_eq(atomic_load(&h.ok), 0);
    ck_assert_int_gt(atomic_load(&h.calls), ckt_under_valgrind() ? 10 : 1000);

    /* recovery: once the server answers, the next probe closes the breaker */
    ckt_proxy_set(g.p, CKT_PASS, 0);
    int64_t until = ckt_now_ms() + 3 * COOLDOWN + CONNECT_MS;
    ck_status st;
    while ((st = ck_client_ping(g.c)) != CK_OK && ckt_now_ms() < until)
        ckt_sleep_ms(5);
    ck_assert_int_eq(st, CK_OK);
    for (int i = 0; i < 50; i++)
        ck_assert_int_eq(ck_client_ping(g.c), CK_OK);
    rig_down(&g);
}
END_TEST

/* A failed half-open probe re-opens the breaker for another cooldown. */
START_TEST(breaker_failed_probe_reopens)
{
    rig g;
    ck_stats s;
    rig_up(&g, 1, ckt_scaled(150));
    ckt_proxy_set(g.p, CKT_RESET, 0);
    ck_assert_int_eq(ck_client_ping(g.c), CK_E_UNAVAILABLE);
    unsigned a0 = ckt_proxy_accepts(g.p);
    int64_t until = ckt_now_ms() + ckt_scaled(1000);
    while (ckt_proxy_accepts(g.p) == a0 && ckt_now_ms() < until)
        (void)ck_client_ping(g.c);
    ck_assert_uint_eq(ckt_proxy_accepts(g.p), a0 + 1); /* the probe */
    ck_client_stats(g.c, &s);
    ck_assert_uint_eq(s.breaker_opens, 2);
    /* and right after it, no I/O again */
    for (int i = 0; i < 1000; i++)
        (void)ck_client_ping(g.c);
    ck_assert_uint_le(ckt_proxy_accepts(g.p), a0 + 2);
    rig_down(&g);
}
END_TEST

/* Failures that are not consecutive do not open the breaker. */
START_TEST(breaker_needs_consecutive_failures)
{
    rig g;
    ck_stats s;
    rig_up(&g, 3, 60000);
    for (int i = 0; i < 10; i++) {
        ckt_proxy_set(g.p, CKT_RESET, 0);
        ck_assert_int_eq(ck_client_ping(g.c), CK_E_UNAVAILABLE);
        ck_assert_int_eq(ck_client_ping(g.c), CK_E_UNAVAILABLE);
        ckt_proxy_set(g.p, CKT_PASS, 0);
        ck_assert_int_eq(ck_client_ping(g.c), CK_OK);
    }
    ck_client_stats(g.c, &s);
    ck_assert_uint_eq(s.breaker_opens, 0);
    rig_down(&g);
}
END_TEST

Suite *ckt_suite(void)
{
    Suite *s = suite_create("faults");
    TCase *dl = tcase_create("deadlines");
    TCase *br = tcase_create("breaker");
    tcase_set_timeout(dl, 60);
    tcase_set_timeout(br, 60);
    tcase_add_test(dl, deadline_closed_port);
    tcase_add_test(dl, deadline_listener_never_accepts);
    tcase_add_test(dl, deadline_black_hole);
    tcase_add_test(dl, deadline_drip);
    tcase_add_test(dl, deadline_run_fn_drip_and_black_hole);
    tcase_add_test(dl, deadline_sigstop_and_recovery);
    tcase_add_test(dl, deadline_debug_sleep);
    tcase_add_test(br, breaker_opens_and_costs_no_io);
    tcase_add_test(br, breaker_single_probe_per_cooldown);
    tcase_add_test(br, breaker_failed_probe_reopens);
    tcase_add_test(br, breaker_needs_consecutive_failures);
    suite_add_tcase(s, dl);
    suite_add_tcase(s, br);
    return s;
}

#include "ckt_main.h"
