/* make bench: the cache hit path next to the same work done by hand with
 * raw hiredis in the same run: GET + json_loads of the same ~300-byte token
 * record, on one connection and with 8 threads; and ck_cache_mget of 100
 * keys next to 100 sequential ck_cache_get. Interleaved batches, the side
 * that goes first alternating, median of 9 rounds. Printed, never asserted. */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <hiredis/hiredis.h>
#include <jansson.h>

#include "internal.h"

#define ROUNDS 9
#define BATCH 100
#define THREADS 8

static const char RECORD[] =
    "{\"id\":\"9f0a7c1e-1111-4a2b-9c3d-000000000001\",\"app_id\":\"4c1f6a0e-2222-4b7d-8e9f-"
    "000000000002\",\"tenant_id\":\"7d3e2b1a-3333-4c8e-9f0a-000000000003\",\"type\":\"app\","
    "\"last_used_at\":\"2024-01-15T11:30:00\",\"created_at\":\"2024-01-15T10:30:00\","
    "\"note\":\"a record of about three hundred bytes, like Dify's api token\"}";

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double now_s(void) { return (double)ck__now_ns() / 1e9; }

static redisContext *raw_connect(const ck__url *u)
{
    struct timeval tv = { 2, 0 };
    redisContext *raw = redisConnectWithTimeout(u->host, u->port, tv);
    if (raw == NULL || raw->err) {
        fprintf(stderr, "bench_cache: cannot connect\n");
        exit(1);
    }
    return raw;
}

static long errors;

static void raw_get(redisContext *raw)
{
    redisReply *r = redisCommand(raw, "GET %s", "bench:raw:token");
    json_error_t e;
    json_t *j;
    if (r == NULL || r->type != REDIS_REPLY_STRING) {
        errors++;
        if (r != NULL)
            freeReplyObject(r);
        return;
    }
    j = json_loadb(r->str, r->len, 0, &e);
    if (j == NULL)
        errors++;
    json_decref(j);
    freeReplyObject(r);
}

static void ck_get(ck_cache *k)
{
    json_t *v = NULL;
    if (ck_cache_get(k, "app", "bench-token", NULL, NULL, &v, NULL) != CK_OK)
        errors++;
    json_decref(v);
}

/* ---- one connection ---- */

static void bench_one(const ck__url *u, ck_cache *k, int batches)
{
    redisContext *raw = raw_connect(u);
    double ratios[ROUNDS], t_raw = 0, t_ck = 0;
    long n;
    for (int i = 0; i < 1000; i++) {
        raw_get(raw);
        ck_get(k);
    }
    for (int round = 0; round < ROUNDS; round++) {
        double r_raw = 0, r_ck = 0;
        for (int b = 0; b < batches / ROUNDS; b++)
            for (int side = 0; side < 2; side++) {
                double t = now_s();
                if ((side ^ (b & 1)) == 0) {
                    for (int i = 0; i < BATCH; i++)
                        raw_get(raw);
                    r_raw += now_s() - t;
                } else {
                    for (int i = 0; i < BATCH; i++)
                        ck_get(k);
                    r_ck += now_s() - t;
                }
            }
        ratios[round] = r_raw / r_ck;
        t_raw += r_raw;
        t_ck += r_ck;
    }
    qsort(ratios, ROUNDS, sizeof ratios[0], cmp_double);
    n = (long)(batches / ROUNDS) * ROUNDS * BATCH;
    printf("%-48s %10.0f ops/s\n", "raw hiredis GET + json_loads (one connection)", n / t_raw);
    printf("%-48s %10.0f ops/s\n", "ck_cache_get hit", n / t_ck);
    printf("%-48s %10.3f   (goal >= 0.90; rounds %.3f .. %.3f)\n", "ratio, median round",
           ratios[ROUNDS / 2], ratios[0], ratios[ROUNDS - 1]);
    redisFree(raw);
}

/* ---- 8 threads ----
 * Each side runs for a fixed window and counts the calls completed in it
 * (as redis-benchmark and wrk do). Timing a fixed number of calls per
 * thread instead measured the slowest of 8 threads on 2 cores: one
 * thread descheduled at the end decided the round (rounds spread 0.66 ..
 * 1.03). The windows of the two sides alternate, the side that goes first
 * alternating too. */

#define WINDOW_S 0.4

typedef struct worker {
    pthread_t th;
    ck_cache *k;
    redisContext *raw;
    int ck;             /* this window's side: ck_cache_get, or raw hiredis */
    long ops;
    atomic_int *go, *stop;
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    while (!atomic_load_explicit(w->go, memory_order_acquire))
        sched_yield();
    for (w->ops = 0; !atomic_load_explicit(w->stop, memory_order_relaxed); w->ops++) {
        if (w->ck)
            ck_get(w->k);
        else
            raw_get(w->raw);
    }
    return NULL;
}

/* Calls per second of the THREADS workers over one window. */
static double run_threads(worker *w, int ck)
{
    atomic_int go = 0, stop = 0;
    long ops = 0;
    double t;
    for (int i = 0; i < THREADS; i++) {
        w[i].ck = ck;
        w[i].go = &go;
        w[i].stop = &stop;
        pthread_create(&w[i].th, NULL, worker_main, &w[i]);
    }
    t = now_s();
    atomic_store_explicit(&go, 1, memory_order_release);
    {
        struct timespec ts = { 0, (long)(WINDOW_S * 1e9) };
        nanosleep(&ts, NULL);
    }
    atomic_store(&stop, 1);
    t = now_s() - t;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(w[i].th, NULL);
        ops += w[i].ops;
    }
    return (double)ops / t;
}

static void bench_threads(const ck__url *u, ck_cache *k, int windows)
{
    worker w[THREADS];
    double ratios[ROUNDS], s_raw = 0, s_ck = 0;
    for (int i = 0; i < THREADS; i++) {
        w[i].k = k;
        w[i].raw = raw_connect(u);
    }
    for (int round = 0; round < ROUNDS; round++) {
        double r_raw = 0, r_ck = 0;
        for (int i = 0; i < windows; i++)
            for (int side = 0; side < 2; side++) {
                int ck = side ^ ((round + i) & 1);
                double r = run_threads(w, ck);
                if (ck)
                    r_ck += r;
                else
                    r_raw += r;
            }
        ratios[round] = r_ck / r_raw;
        s_raw += r_raw / windows;
        s_ck += r_ck / windows;
    }
    qsort(ratios, ROUNDS, sizeof ratios[0], cmp_double);
    printf("%-48s %10.0f ops/s\n", "raw: 8 threads, a connection each", s_raw / ROUNDS);
    printf("%-48s %10.0f ops/s\n", "ck_cache_get hit: 8 threads, one client", s_ck / ROUNDS);
    printf("%-48s %10.3f   (goal >= 0.90; rounds %.3f .. %.3f)\n", "ratio, median round",
           ratios[ROUNDS / 2], ratios[0], ratios[ROUNDS - 1]);
    for (int i = 0; i < THREADS; i++)
        redisFree(w[i].raw);
}

/* ---- mget ---- */

static void bench_mget(ck_cache *k, int rounds)
{
    enum { N = 100 };
    const char *keys[N];
    char buf[N][16];
    json_t *out[N];
    ck_status st[N];
    double t_seq = 0, t_m = 0;
    for (int i = 0; i < N; i++) {
        snprintf(buf[i], sizeof buf[i], "mget-%d", i);
        keys[i] = buf[i];
        json_t *v = json_loads(RECORD, 0, NULL);
        ck_cache_set(k, "app", keys[i], v, NULL);
        json_decref(v);
    }
    for (int r = 0; r < rounds; r++) {
        double t = now_s();
        for (int i = 0; i < N; i++) {
            json_t *v = NULL;
            if (ck_cache_get(k, "app", keys[i], NULL, NULL, &v, NULL) != CK_OK)
                errors++;
            json_decref(v);
        }
        t_seq += now_s() - t;
        t = now_s();
        if (ck_cache_mget(k, "app", keys, N, out, st) != CK_OK)
            errors++;
        for (int i = 0; i < N; i++)
            json_decref(out[i]);
        t_m += now_s() - t;
    }
    printf("%-48s %10.1f us\n", "100 sequential ck_cache_get", t_seq / rounds * 1e6);
    printf("%-48s %10.1f us   (%.1fx faster)\n", "ck_cache_mget of 100 keys", t_m / rounds * 1e6,
           t_seq / t_m);
}

/* ---- the L1 tier ---- */

#define L1_KEYS 1024 /* a power of two, and so is each thread's share of it (l1_main) */

typedef struct l1w {
    pthread_t th;
    ck_cache *k;
    long ops;
    double secs;
    unsigned seed;
    int part, nparts; /* reads keys of its own 1/nparts only (nparts 1: all) */
} l1w;

static char l1_keys[L1_KEYS][16];

static void *l1_main(void *arg)
{
    l1w *w = arg;
    double t = now_s();
    unsigned x = w->seed;
    for (long i = 0; i < w->ops; i++) {
        json_t *v = NULL;
        ck_get_info info;
        /* spans are powers of two: a mask, not a division, which cost the
         * loop ~5 ns of the ~100 it measures */
        unsigned span = L1_KEYS / (unsigned)w->nparts;
        x = x * 1103515245u + 12345u;
        const char *key = l1_keys[((x >> 8) & (span - 1)) + span * (unsigned)w->part];
        if (ck_cache_get(w->k, "app", key, NULL, NULL, &v, &info) != CK_OK ||
            info.source != CK_SRC_L1)
            errors++;
        json_decref(v);
    }
    w->secs = now_s() - t;
    return NULL;
}

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Hits per second of wall time; *cpu_ns: CPU time (all threads) per hit.
 * On a shared machine the wall figure depends on the cores the others
 * leave free; a CPU cost per hit that stays flat from 1 to N threads is
 * what "scales with cores" means: no contention adds work. */
static double l1_run(ck_cache *k, int threads, long ops_each, int disjoint, double *cpu_ns)
{
    l1w w[THREADS];
    double t = now_s(), cpu = cpu_s();
    for (int i = 0; i < threads; i++) {
        w[i].k = k;
        w[i].ops = ops_each;
        w[i].seed = (unsigned)i * 7919u + 1;
        w[i].part = disjoint ? i : 0;
        w[i].nparts = disjoint ? threads : 1;
        pthread_create(&w[i].th, NULL, l1_main, &w[i]);
    }
    for (int i = 0; i < threads; i++)
        pthread_join(w[i].th, NULL);
    *cpu_ns = (cpu_s() - cpu) * 1e9 / ((double)threads * (double)ops_each);
    return (double)threads * (double)ops_each / (now_s() - t);
}

static void bench_l1(ck_client *c, ck_cache *k_redis, long ops)
{
    ck_cache_options co;
    ck_cache *k = NULL;
    json_t *rec = json_loads(RECORD, 0, NULL);
    double one[ROUNDS], two[ROUNDS], eight[ROUNDS], redis[ROUNDS];
    double cpu1[ROUNDS], cpu2[ROUNDS], cpu8[ROUNDS], two_d[ROUNDS], cpu2d[ROUNDS];

    ck_cache_options_init(&co);
    co.name = "bench-l1";
    co.l1_max_entries = 100000;
    co.l1_ttl_ms = 600000;
    if (ck_cache_new(c, &co, &k) != CK_OK) {
        errors++;
        return;
    }
    for (int i = 0; i < L1_KEYS; i++) {
        snprintf(l1_keys[i], sizeof l1_keys[i], "l1tok-%d", i);
        if (ck_cache_set(k, "app", l1_keys[i], rec, NULL) != CK_OK)
            errors++;
    }
    json_decref(rec);
    /* in: read each key until it answers from L1 (the subscription is up) */
    for (int i = 0; i < L1_KEYS; i++)
        for (int tries = 0; tries < 5000; tries++) {
            json_t *v = NULL;
            ck_get_info info;
            (void)ck_cache_get(k, "app", l1_keys[i], NULL, NULL, &v, &info);
            json_decref(v);
            if (info.source == CK_SRC_L1)
                break;
            if (tries == 4999)
                errors++;
        }
    for (int round = 0; round < ROUNDS; round++) {
        double t = now_s();
        for (int i = 0; i < 2000; i++)
            ck_get(k_redis);
        redis[round] = 2000 / (now_s() - t);
        one[round] = l1_run(k, 1, ops, 0, &cpu1[round]);
        two[round] = l1_run(k, 2, ops, 0, &cpu2[round]);
        two_d[round] = l1_run(k, 2, ops, 1, &cpu2d[round]);
        eight[round] = l1_run(k, THREADS, ops / THREADS * 2, 0, &cpu8[round]);
    }
    qsort(redis, ROUNDS, sizeof redis[0], cmp_double);
    qsort(one, ROUNDS, sizeof one[0], cmp_double);
    qsort(two, ROUNDS, sizeof two[0], cmp_double);
    qsort(eight, ROUNDS, sizeof eight[0], cmp_double);
    qsort(cpu1, ROUNDS, sizeof cpu1[0], cmp_double);
    qsort(cpu2, ROUNDS, sizeof cpu2[0], cmp_double);
    qsort(cpu8, ROUNDS, sizeof cpu8[0], cmp_double);
    qsort(two_d, ROUNDS, sizeof two_d[0], cmp_double);
    qsort(cpu2d, ROUNDS, sizeof cpu2d[0], cmp_double);
    printf("%-48s %10.0f ops/s\n", "ck_cache_get Redis hit, 1 thread (same run)",
           redis[ROUNDS / 2]);
    printf("%-48s %10.0f ops/s   (goal >= 10 M/s; %.0fx the Redis hit; rounds %.0f .. %.0f)\n",
           "ck_cache_get L1 hit, 1 thread (1024 keys)", one[ROUNDS / 2],
           one[ROUNDS / 2] / redis[ROUNDS / 2], one[0], one[ROUNDS - 1]);
    printf("%-48s %10.0f ops/s   (%.2fx one thread, on %ld cores)\n",
           "ck_cache_get L1 hit, 2 threads", two[ROUNDS / 2], two[ROUNDS / 2] / one[ROUNDS / 2],
           sysconf(_SC_NPROCESSORS_ONLN));
    printf("%-48s %10.0f ops/s   (%.2fx one thread, on %ld cores)\n",
           "ck_cache_get L1 hit, 8 threads", eight[ROUNDS / 2], eight[ROUNDS / 2] / one[ROUNDS / 2],
           sysconf(_SC_NPROCESSORS_ONLN));
    printf("%-48s %10.0f ops/s   (%.2fx one thread; %.0f ns CPU per hit)\n",
           "ck_cache_get L1 hit, 2 threads, disjoint keys", two_d[ROUNDS / 2],
           two_d[ROUNDS / 2] / one[ROUNDS / 2], cpu2d[ROUNDS / 2]);
    printf("%-48s %6.0f / %.0f / %.0f ns   (8 threads: %.2fx one thread's cost)\n",
           "L1 hit CPU time per hit, 1 / 2 / 8 threads", cpu1[ROUNDS / 2], cpu2[ROUNDS / 2],
           cpu8[ROUNDS / 2], cpu8[ROUNDS / 2] / cpu1[ROUNDS / 2]);
    ck_cache_free(k);
}

int main(int argc, char **argv)
{
    const char *url = getenv("CACHEKIT_TEST_REDIS_URL");
    int batches = argc > 1 ? atoi(argv[1]) : 900;
    ck_options o;
    ck_cache_options co;
    ck_client *c = NULL;
    ck_cache *k = NULL;
    ck__url u;
    char err[128];
    redisContext *raw;

    if (url == NULL || ck__url_parse(url, &u, err, sizeof err) != CK_OK || u.is_unix) {
        fprintf(stderr, "bench_cache: set CACHEKIT_TEST_REDIS_URL to a redis:// URL\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    ck_options_init(&o);
    o.url = url;
    o.pool_size = THREADS;
    o.pool_wait_ms = 1000;
    ck_cache_options_init(&co);
    co.name = "bench";
    if (ck_client_new(&o, &c) != CK_OK || ck_cache_new(c, &co, &k) != CK_OK)
        return 1;
    json_t *rec = json_loads(RECORD, 0, NULL);
    if (ck_cache_set(k, "app", "bench-token", rec, NULL) != CK_OK)
        return 1;
    json_decref(rec);
    raw = raw_connect(&u);
    freeReplyObject(redisCommand(raw, "SET bench:raw:token %s", RECORD));
    redisFree(raw);

    printf("libcachekit %s, cache benchmark (record of %zu bytes)\n", ck_version(),
           sizeof RECORD - 1);
    bench_one(&u, k, batches);
    bench_threads(&u, k, 2);
    bench_mget(k, 200);
    bench_l1(c, k, 4000000);
    if (errors > 0)
        printf("errors: %ld\n", errors);
    ck_cache_free(k);
    ck_client_free(c);
    ck__url_clear(&u);
    return errors == 0 ? 0 : 1;
}
