/* Concurrency slots against real Redis: max_active holders at once (threads
 * and processes), re-acquire takes no second slot, stale holders expire,
 * touch keeps a slot, release frees it, TTLs, SCRIPT FLUSH, fail modes. */
#define _GNU_SOURCE
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <hiredis/hiredis.h>

#include "ckt.h"
#include "internal.h"

/* Times scale in the slow builds (ckt_scaled). */

static ck_client *slots_client(const char *url, ck_fail_mode mode, ckt_log *lg)
{
    ck_options o;
    ck_client *c = NULL;
    ckt_options(&o, url);
    o.fail_mode = mode;
    o.local_instances = 2;
    if (lg != NULL) {
        o.log = ckt_log_fn;
        o.log_user = lg;
        o.log_level = CK_LOG_DEBUG;
    }
    ck_assert_int_eq(ck_client_new(&o, &c), CK_OK);
    return c;
}

static void unique_key(char *buf, size_t len, const char *what)
{
    static _Atomic int seq;
    snprintf(buf, len, "ckt:%s:%d:%d", what, (int)getpid(), atomic_fetch_add(&seq, 1));
}

static int acquire(ck_client *c, const char *key, int max, const char *holder, int stale)
{
    ck_rate_result r;
    ck_status st = ck_slots_acquire(c, key, max, holder, stale, &r);
    ck_assert_int_eq(st, CK_OK);
    ck_assert_int_eq(r.degraded, 0);
    ck_assert_int_eq(r.limit, max);
    if (r.allowed) {
        ck_assert_int_eq(r.rule, -1);
        ck_assert_int_eq(r.retry_after_ms, 0);
        ck_assert_int_eq(r.reset_after_ms, stale);
    } else {
        ck_assert_int_eq(r.rule, 0);
        ck_assert_int_gt(r.retry_after_ms, 0);
        ck_assert_int_le(r.retry_after_ms, stale);
    }
    return r.allowed;
}

START_TEST(invalid_arguments)
{
    ckt_log lg;
    ck_client *c;
    ck_rate_result r;
    char long_id[CK_RATE_MAX_KEY + 2];
    ckt_log_init(&lg);
    c = slots_client(ckt_shared_url(), CK_FAIL_OPEN, &lg);
    memset(long_id, 'h', sizeof long_id);
    long_id[CK_RATE_MAX_KEY + 1] = '\0';
#define BAD(call) \
    do { ckt_log_reset(&lg); ck_assert_int_eq((call), CK_E_INVALID); \
         ck_assert(ckt_log_has(&lg, "invalid argument")); } while (0)
    BAD(ck_slots_acquire(c, NULL, 1, "h", 1000, &r));
    BAD(ck_slots_acquire(c, "", 1, "h", 1000, &r));
    BAD(ck_slots_acquire(c, "a{b", 1, "h", 1000, &r));
    BAD(ck_slots_acquire(c, "k", 0, "h", 1000, &r));
    BAD(ck_slots_acquire(c, "k", -3, "h", 1000, &r));
    BAD(ck_slots_acquire(c, "k", 1, NULL, 1000, &r));
    BAD(ck_slots_acquire(c, "k", 1, "", 1000, &r));
    BAD(ck_slots_acquire(c, "k", 1, "a\tb", 1000, &r));
    BAD(ck_slots_acquire(c, "k", 1, long_id, 1000, &r));
    BAD(ck_slots_acquire(c, "k", 1, "h", 0, &r));
    BAD(ck_slots_acquire(c, "k", 1, "h", 1000, NULL));
    BAD(ck_slots_touch(c, "k\n", "h"));
    BAD(ck_slots_touch(c, "k", ""));
    BAD(ck_slots_release(c, "k", NULL));
    BAD(ck_slots_release(c, NULL, "h"));
#undef BAD
    ck_assert_int_eq(ck_slots_acquire(NULL, "k", 1, "h", 1000, &r), CK_E_INVALID);
    ck_assert_int_eq(ck_slots_touch(NULL, "k", "h"), CK_E_INVALID);
    ck_assert_int_eq(ck_slots_release(NULL, "k", "h"), CK_E_INVALID);
    /* braces are fine in a holder id, and 512 bytes are */
    long_id[CK_RATE_MAX_KEY] = '\0';
    ck_assert_int_eq(ck_slots_acquire(c, "k", 2, "{h}", 1000, &r), CK_OK);
    ck_assert_int_eq(ck_slots_acquire(c, "k", 2, long_id, 1000, &r), CK_OK);
    ck_assert_int_eq(r.allowed, 1);
    ck_client_free(c);
    ckt_log_free(&lg);
}
END_TEST

START_TEST(max_active_and_reacquire)
{
    ck_client *c = slots_client(ckt_shared_url(), CK_FAIL_OPEN, NULL);
    ck_rate_result r;
    char key[64];
    unique_key(key, sizeof key, "max");
    for (int i = 0; i < 3; i++) {
        char h[16];
        snprintf(h, sizeof h, "h%d", i);
        ck_assert_int_eq(ck_slots_acquire(c, key, 3, h, 60000, &r), CK_OK);
        ck_assert_int_eq(r.allowed, 1);
        ck_assert_int_eq(r.remaining, 2 - i);
    }
    ck_assert_int_eq(acquire(c, key, 3, "h3", 60000), 0);
    /* the same holder again: no second slot */
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(ck_slots_acquire(c, key, 3, "h1", 60000, &r), CK_OK);
        ck_assert_int_eq(r.allowed, 1);
        ck_assert_int_eq(r.remaining, 0);
    }
    ck_assert_int_eq(acquire(c, key, 3, "h3", 60000), 0);
    /* a larger max lets one more in; a smaller one keeps holders, admits nobody */
    ck_assert_int_eq(acquire(c, key, 4, "h3", 60000), 1);
    ck_assert_int_eq(acquire(c, key, 2, "h4", 60000), 0);
    ck_assert_int_eq(acquire(c, key, 2, "h0", 60000), 1);
    ck_client_free(c);
}
END_TEST

typedef struct acq_arg { ck_client *c; const char *key, *holder; int max, stale; } acq_arg;

static int can_acquire(void *p)
{
    acq_arg *a = p;
    return acquire(a->c, a->key, a->max, a->holder, a->stale);
}

START_TEST(stale_holders_expire)
{
    ck_client *c = slots_client(ckt_shared_url(), CK_FAIL_OPEN, NULL);
    int stale = ckt_scaled(200);
    acq_arg b;
    char key[64];
    int64_t t0;
    unique_key(key, sizeof key, "stale");
    t0 = ckt_now_ms();
    ck_assert_int_eq(acquire(c, key, 1, "crashed", stale), 1);
    b = (acq_arg){ c, key, "next", 1, stale };
    ck_assert_int_eq(can_acquire(&b), 0);
    ck_assert(ckt_wait_until(can_acquire, &b, 10 * stale));
    /* not before the crashed holder's stale_ms (Redis's clock) */
    ck_assert_int_ge(ckt_now_ms() - t0, stale - 2);
    ck_client_free(c);
}
END_TEST

START_TEST(touch_keeps_a_slot)
{
    ck_client *c = slots_client(ckt_shared_url(), CK_FAIL_OPEN, NULL);
    int stale = ckt_scaled(300);
    acq_arg b;
    char key[64];
    int64_t last;
    unique_key(key, sizeof key, "touch");
    ck_assert_int_eq(acquire(c, key, 1, "worker", stale), 1);
    b = (acq_arg){ c, key, "waiter", 1, stale };
    for (int i = 0; i < 6; i++) { /* 600 ms, twice stale_ms */
        ckt_sleep_ms(stale / 3);
        ck_assert_int_eq(ck_slots_touch(c, key, "worker"), CK_OK);
        ck_assert_int_eq(can_acquire(&b), 0);
    }
    last = ckt_now_ms();
    ck_assert_int_eq(ck_slots_touch(c, key, "stranger"), CK_E_LOCK_LOST);
    /* no more touches: the slot goes stale_ms after the last one */
    ck_assert(ckt_wait_until(can_acquire, &b, 10 * stale));
    ck_assert_int_ge(ckt_now_ms() - last, stale - 2);
    ck_assert_int_eq(ck_slots_touch(c, key, "worker"), CK_E_LOCK_LOST);
    ck_client_free(c);
}
END_TEST

START_TEST(release_frees_a_slot)
{
    ck_client *c = slots_client(ckt_shared_url(), CK_FAIL_OPEN, NULL);
    char key[64];
    unique_key(key, sizeof key, "release");
    ck_assert_int_eq(acquire(c, key, 2, "a", 60000), 1);
    ck_assert_int_eq(acquire(c, key, 2, "b", 60000), 1);
    ck_assert_int_eq(acquire(c, key, 2, "c", 60000), 0);
    ck_assert_int_eq(ck_slots_release(c, key, "a"), CK_OK);
    ck_assert_int_eq(acquire(c, key, 2, "c", 60000), 1);
    ck_assert_int_eq(ck_slots_release(c, key, "a"), CK_NOT_FOUND);
    ck_assert_int_eq(ck_slots_touch(c, key, "a"), CK_E_LOCK_LOST);
    ck_assert_int_eq(ck_slots_release(c, key, "b"), CK_OK);
    ck_assert_int_eq(ck_slots_release(c, key, "c"), CK_OK);
    /* empty: both keys are gone */
    char z[128];
    snprintf(z, sizeof z, "ck:r:{%s}:slots", key);
    char h[140];
    snprintf(h, sizeof h, "%s:h", z);
    const char *ex[] = { "EXISTS", z, h, NULL };
    redisReply *rep = ckt_cmd_at(ckt_shared_url(), ex);
    ck_assert_int_eq(rep->integer, 0);
    freeReplyObject(rep);
    ck_client_free(c);
}
END_TEST

START_TEST(keys_expire_with_the_last_holder)
{
    ck_client *c = slots_client(ckt_shared_url(), CK_FAIL_OPEN, NULL);
    char key[64], z[128], h[140];
    unique_key(key, sizeof key, "ttl");
    snprintf(z, sizeof z, "ck:r:{%s}:slots", key);
    snprintf(h, sizeof h, "%s:h", z);
    ck_assert_int_eq(acquire(c, key, 5, "short", 3000), 1);
    ck_assert_int_eq(acquire(c, key, 5, "long", 20000), 1);
    ck_assert_int_eq(acquire(c, key, 5, "short", 3000), 1); /* refresh: TTL stays at the longest */
    const char *const which[2] = { z, h };
    for (int i = 0; i < 2; i++) {
        const char *pttl[] = { "PTTL", which[i], NULL };
        redisReply *rep = ckt_cmd_at(ckt_shared_url(), pttl);
        ck_assert_int_gt(rep->integer, 15000);
        ck_assert_int_le(rep->integer, 20001);
        freeReplyObject(rep);
    }
    ck_client_free(c);
}
END_TEST

/* ---- never more than max_active holders, across threads and processes ---- */

typedef struct race { _Atomic int active, worst, errors, granted; } race;
typedef struct race_arg { race *shared; const char *key; ck_client *c; int id, rounds; } race_arg;

static void *race_thread(void *p)
{
    race_arg *a = p;
    for (int i = 0; i < a->rounds; i++) {
        char holder[64];
        ck_rate_result r;
        snprintf(holder, sizeof holder, "%d:%d:%d", (int)getpid(), a->id, i);
        if (ck_slots_acquire(a->c, a->key, 3, holder, 60000, &r) != CK_OK || r.degraded) {
            atomic_fetch_add(&a->shared->errors, 1);
            continue;
        }
        if (!r.allowed)
            continue;
        int now = atomic_fetch_add(&a->shared->active, 1) + 1;
        int w = atomic_load(&a->shared->worst);
        while (now > w && !atomic_compare_exchange_weak(&a->shared->worst, &w, now)) {
        }
        atomic_fetch_add(&a->shared->granted, 1);
        usleep(200);
        atomic_fetch_sub(&a->shared->active, 1);
        if (ck_slots_release(a->c, a->key, holder) != CK_OK)
            atomic_fetch_add(&a->shared->errors, 1);
    }
    return NULL;
}

static void race_process(race *shared, const char *key, int threads, int rounds)
{
    pthread_t th[16];
    race_arg args[16];
    ck_options o;
    ck_client *c;
    ckt_options(&o, ckt_shared_url());
    o.command_timeout_ms = o.pool_wait_ms = o.connect_timeout_ms = 5000;
    ck_assert_int_eq(ck_client_new(&o, &c), CK_OK);
    for (int i = 0; i < threads; i++) {
        args[i] = (race_arg){ shared, key, c, i, rounds };
        pthread_create(&th[i], NULL, race_thread, &args[i]);
    }
    for (int i = 0; i < threads; i++)
        pthread_join(th[i], NULL);
    ck_client_free(c);
}

START_TEST(never_more_than_max_active)
{
    race *shared = mmap(NULL, sizeof *shared, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    int threads = ckt_under_valgrind() ? 3 : 16, rounds = ckt_under_valgrind() ? 5 : 20, status;
    char key[64];
    pid_t pid;
    ck_assert_ptr_ne(shared, MAP_FAILED);
    memset(shared, 0, sizeof *shared);
    unique_key(key, sizeof key, "race");
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        race_process(shared, key, threads, rounds);
        _exit(0);
    }
    race_process(shared, key, threads, rounds);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ck_assert_int_eq(atomic_load(&shared->errors), 0);
    ck_assert_int_le(atomic_load(&shared->worst), 3);
    ck_assert_int_ge(atomic_load(&shared->granted), 3);
    munmap(shared, sizeof *shared);
}
END_TEST

START_TEST(script_flush_changes_nothing)
{
    const char *flush[] = { "SCRIPT", "FLUSH", NULL };
    ck_client *c = slots_client(ckt_shared_url(), CK_FAIL_OPEN, NULL);
    char key[64];
    unique_key(key, sizeof key, "flush");
    freeReplyObject(ckt_cmd_at(ckt_shared_url(), flush));
    ck_assert_int_eq(acquire(c, key, 1, "a", 60000), 1);
    freeReplyObject(ckt_cmd_at(ckt_shared_url(), flush));
    ck_assert_int_eq(ck_slots_touch(c, key, "a"), CK_OK);
    freeReplyObject(ckt_cmd_at(ckt_shared_url(), flush));
    ck_assert_int_eq(acquire(c, key, 1, "b", 60000), 0);
    freeReplyObject(ckt_cmd_at(ckt_shared_url(), flush));
    ck_assert_int_eq(ck_slots_release(c, key, "a"), CK_OK);
    freeReplyObject(ckt_cmd_at(ckt_shared_url(), flush));
    ck_assert_int_eq(acquire(c, key, 1, "b", 60000), 1);
    ck_client_free(c);
}
END_TEST

START_TEST(fail_modes_with_redis_stopped)
{
    ckt_redis *srv = ckt_redis_start(NULL);
    ck_client *open = slots_client(ckt_redis_url(srv), CK_FAIL_OPEN, NULL);
    ck_client *closed = slots_client(ckt_redis_url(srv), CK_FAIL_CLOSED, NULL);
    ck_client *local = slots_client(ckt_redis_url(srv), CK_FAIL_LOCAL, NULL);
    ck_rate_result r;
    ck_stats s;
    ck_assert_int_eq(ck_slots_acquire(open, "k", 4, "x", 60000, &r), CK_OK);
    ck_assert_int_eq(r.degraded, 0);
    ckt_redis_kill(srv);

    ck_assert_int_eq(ck_slots_acquire(open, "k", 4, "a", 60000, &r), CK_OK);
    ck_assert_int_eq(r.allowed, 1);
    ck_assert_int_eq(r.degraded, 1);
    ck_assert_int_eq(ck_slots_touch(open, "k", "a"), CK_E_UNAVAILABLE);
    ck_assert_int_eq(ck_slots_release(open, "k", "a"), CK_E_UNAVAILABLE);

    ck_assert_int_eq(ck_slots_acquire(closed, "k", 4, "a", 60000, &r), CK_E_UNAVAILABLE);
    ck_assert_int_eq(r.allowed, 0);
    ck_assert_int_eq(r.degraded, 1);
    ck_assert_int_gt(r.retry_after_ms, 0);

    /* local: 4 / 2 instances = 2 holders in this process */
    for (int i = 0; i < 3; i++) {
        char h[16];
        snprintf(h, sizeof h, "l%d", i);
        ck_assert_int_eq(ck_slots_acquire(local, "k", 4, h, 60000, &r), CK_OK);
        ck_assert_int_eq(r.degraded, 1);
        ck_assert_int_eq(r.allowed, i < 2);
        ck_assert_int_eq(r.limit, 2);
    }
    ck_assert_int_eq(ck_slots_acquire(local, "k", 4, "l0", 60000, &r), CK_OK);
    ck_assert_int_eq(r.allowed, 1); /* re-acquire: no second slot */
    ck_assert_int_eq(r.remaining, 0);
    ck_assert_int_eq(ck_slots_touch(local, "k", "l0"), CK_E_UNAVAILABLE);
    ck_assert_int_eq(ck_slots_release(local, "k", "l0"), CK_E_UNAVAILABLE);
    ck_assert_int_eq(ck_slots_acquire(local, "k", 4, "l2", 60000, &r), CK_OK);
    ck_assert_int_eq(r.allowed, 1); /* the local release freed one */
    ck_client_stats(local, &s);
    ck_assert_uint_eq(s.rate_allowed, 4);
    ck_assert_uint_eq(s.rate_denied, 1);
    ck_assert_uint_ge(s.degraded, 7);
    ck_client_free(open);
    ck_client_free(closed);
    ck_client_free(local);
    ckt_redis_stop(srv);
}
END_TEST

Suite *ckt_suite(void)
{
    Suite *s = suite_create("slots");
    TCase *tc = tcase_create("slots");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, invalid_arguments);
    tcase_add_test(tc, max_active_and_reacquire);
    tcase_add_test(tc, stale_holders_expire);
    tcase_add_test(tc, touch_keeps_a_slot);
    tcase_add_test(tc, release_frees_a_slot);
    tcase_add_test(tc, keys_expire_with_the_last_holder);
    tcase_add_test(tc, never_more_than_max_active);
    tcase_add_test(tc, script_flush_changes_nothing);
    tcase_add_test(tc, fail_modes_with_redis_stopped);
    suite_add_tcase(s, tc);
    return s;
}

#include "ckt_main.h"
