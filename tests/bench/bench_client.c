/* make bench: ck_client_run(GET) next to raw hiredis GET on one connection,
 * in the same run, interleaved in small batches so that the machine's speed
 * drift hits both sides alike; and the cost of a call while the breaker is
 * open. Figures are printed, never asserted: timing belongs here, not in
 * tests. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <hiredis/hiredis.h>

#include "internal.h"

#define BATCH 100
#define ROUNDS 9

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static double now_s(void)
{
    return (double)ck__now_ns() / 1e9;
}

static const char *get_argv[] = {"GET", "bench:key"};
static const size_t get_lens[] = {3, 9};

static ck_status run_get(redisContext *ctx, void *user)
{
    redisReply *r = redisCommandArgv(ctx, 2, get_argv, get_lens);

    (void)user;
    if (r == NULL)
        return CK_E_UNAVAILABLE;
    freeReplyObject(r);
    return CK_OK;
}

static int bench_get(const char *url, int batches)
{
    double t_raw = 0, t_ck = 0, ratios[ROUNDS];
    long n, errors = 0;
    ck_options o;
    ck_client *c;
    ck__url u;
    char err[128];
    redisContext *raw;

    if (ck__url_parse(url, &u, err, sizeof err) != CK_OK || u.is_unix) {
        fprintf(stderr, "bench: need a redis:// URL (%s)\n", err);
        return 1;
    }
    raw = redisConnect(u.host, u.port);
    ck_options_init(&o);
    o.url = url;
    if (raw == NULL || raw->err || ck_client_new(&o, &c) != CK_OK) {
        fprintf(stderr, "bench: cannot connect to %s:%d\n", u.host, u.port);
        return 1;
    }
    if (u.db != 0)
        freeReplyObject(redisCommand(raw, "SELECT %d", u.db));
    freeReplyObject(redisCommand(raw, "SET bench:key 0123456789abcdef0123456789abcdef"));
    for (int i = 0; i < 2000; i++) { /* warm both paths up */
        freeReplyObject(redisCommandArgv(raw, 2, get_argv, get_lens));
        ck_client_run(c, run_get, NULL);
    }
    /* ROUNDS rounds of interleaved batches; the median round ratio is the
     * figure (one noisy round from the other core cannot move it). */
    for (int round = 0; round < ROUNDS; round++) {
        double r_raw = 0, r_ck = 0;

        for (int b = 0; b < batches / ROUNDS; b++) {
            /* alternate which side goes first, so neither always follows
             * the other's cache and scheduler footprint */
            for (int side = 0; side < 2; side++) {
                double t = now_s();
                if ((side ^ (b & 1)) == 0) {
                    for (int i = 0; i < BATCH; i++) {
                        redisReply *r = redisCommandArgv(raw, 2, get_argv, get_lens);
                        if (r == NULL)
                            errors++;
                        freeReplyObject(r);
                    }
                    r_raw += now_s() - t;
                } else {
                    for (int i = 0; i < BATCH; i++)
                        if (ck_client_run(c, run_get, NULL) != CK_OK)
                            errors++;
                    r_ck += now_s() - t;
                }
            }
        }
        ratios[round] = r_raw / r_ck;
        t_raw += r_raw;
        t_ck += r_ck;
    }
    qsort(ratios, ROUNDS, sizeof ratios[0], cmp_double);
    n = (long)(batches / ROUNDS) * ROUNDS * BATCH;
    printf("%-44s %12.0f ops/s\n", "raw hiredis GET (one connection)", (double)n / t_raw);
    printf("%-44s %12.0f ops/s\n", "ck_client_run(GET)", (double)n / t_ck);
    printf("%-44s %12.3f   (goal >= 0.95; rounds %.3f .. %.3f)\n",
           "ratio ck_client_run / raw, median round", ratios[ROUNDS / 2], ratios[0],
           ratios[ROUNDS - 1]);
    printf("%-44s %12.0f ns\n", "ck_client_run overhead per call", (t_ck - t_raw) / (double)n * 1e9);
    if (errors != 0)
        printf("errors: %ld\n", errors);
    ck_client_free(c);
    redisFree(raw);
    ck__url_clear(&u);
    return errors != 0;
}

static ck_status run_nothing(redisContext *ctx, void *user)
{
    (void)ctx;
    (void)user;
    return CK_OK;
}

static int bench_breaker_open(void)
{
    const long n = 5000000;
    ck_options o;
    ck_client *c;
    double t;
    long ok = 0;

    /* port 1 on loopback: refused at once; one failure opens the breaker */
    ck_options_init(&o);
    o.url = "redis://127.0.0.1:1/0";
    o.breaker_failures = 1;
    o.breaker_cooldown_ms = 600000;
    if (ck_client_new(&o, &c) != CK_OK)
        return 1;
    ck_client_run(c, run_nothing, NULL);
    t = now_s();
    for (long i = 0; i < n; i++)
        ok += ck_client_run(c, run_nothing, NULL) == CK_OK;
    t = now_s() - t;
    printf("%-44s %12.1f ns   (goal < 1000)\n", "call while the breaker is open", t / (double)n * 1e9);
    ck_client_free(c);
    return ok != 0;
}

int main(int argc, char **argv)
{
    const char *url = getenv("CACHEKIT_TEST_REDIS_URL");
    int batches = argc > 1 ? atoi(argv[1]) : 1260;
    int rc = 0;

    if (url == NULL) {
        fprintf(stderr, "bench: CACHEKIT_TEST_REDIS_URL is not set (run it with make bench)\n");
        return 1;
    }
    /* as a server would: a dead peer must not kill the process */
    signal(SIGPIPE, SIG_IGN);
    printf("libcachekit %s, client benchmark (%d x %d calls each side, interleaved)\n",
           ck_version(), batches, BATCH);
    rc |= bench_get(url, batches >= ROUNDS ? batches : 1260);
    rc |= bench_breaker_open();
    return rc;
}
