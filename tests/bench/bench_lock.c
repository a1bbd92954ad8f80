/* make bench: a lock cycle (ck_lock_acquire + ck_lock_release) next to the
 * same work by hand on one raw hiredis connection, in the same run,
 * interleaved in batches (the order of the sides rotates), median of the
 * rounds' ratios:
 *
 *   raw SET NX       a random token (getrandom), SET key token NX PX, then a
 *                    compare-and-delete script by EVALSHA: the usual
 *                    hand-written lock, without a fence
 *   raw same script  the library's own acquire and release scripts by
 *                    EVALSHA: what the client layer costs on top
 *
 * Also the cost of ck_with_lock (watchdog thread start and join). Figures
 * are printed, never asserted. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <hiredis/hiredis.h>

#include "lock_internal.h"

#define BATCH 100
#define ROUNDS 9
#define SIDES 3

static const char release_lua[] = "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
                                  "  return redis.call('DEL', KEYS[1])\n"
                                  "end\n"
                                  "return 0\n";

static redisContext *raw;
static ck_client *cli;
static char sha_del[41];

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static double now_s(void)
{
    return (double)ck__now_ns() / 1e9;
}

static int token(char tok[33])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char b[16];

    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b)
        return 0;
    for (int i = 0; i < 16; i++) {
        tok[2 * i] = hex[b[i] >> 4];
        tok[2 * i + 1] = hex[b[i] & 15];
    }
    tok[32] = '\0';
    return 1;
}

/* The usual hand-written lock. */
static int raw_setnx_cycle(void)
{
    char tok[33];
    const char *set[] = {"SET", "bench:rawlock", tok, "NX", "PX", "10000"};
    const size_t setl[] = {3, 13, 32, 2, 2, 5};
    const char *del[] = {"EVALSHA", sha_del, "1", "bench:rawlock", tok};
    const size_t dell[] = {7, 40, 1, 13, 32};
    redisReply *r;
    int ok;

    if (!token(tok))
        return 0;
    r = redisCommandArgv(raw, 6, set, setl);
    ok = r != NULL && r->type == REDIS_REPLY_STATUS;
    freeReplyObject(r);
    if (!ok)
        return 0;
    r = redisCommandArgv(raw, 5, del, dell);
    ok = r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    return ok;
}

/* The library's protocol by hand: its acquire and release scripts. */
static int raw_script_cycle(void)
{
    char tok[33];
    const char *acq[] = {"EVALSHA", ck__lock_acquire_script.sha, "2", "ck:l:{rawbench}",
                         "ck:l:{rawbench}:f", tok, "10000"};
    const size_t acql[] = {7, 40, 1, 15, 17, 32, 5};
    const char *rel[] = {"EVALSHA", ck__lock_release_script.sha, "1", "ck:l:{rawbench}", tok};
    const size_t rell[] = {7, 40, 1, 15, 32};
    redisReply *r;
    int ok;

    if (!token(tok))
        return 0;
    r = redisCommandArgv(raw, 7, acq, acql);
    ok = r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
         r->element[0]->integer == 1;
    freeReplyObject(r);
    if (!ok)
        return 0;
    r = redisCommandArgv(raw, 5, rel, rell);
    ok = r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    return ok;
}

static int ck_cycle(void)
{
    ck_lock *l = NULL;

    if (ck_lock_acquire(cli, "bench", 10000, 0, &l) != CK_OK)
        return 0;
    return ck_lock_release(l) == CK_OK;
}

static ck_status nothing(void *user, const ck_lock *l)
{
    (void)user;
    (void)l;
    return CK_OK;
}

static int load(const char *src, char out[41])
{
    redisReply *r = redisCommand(raw, "SCRIPT LOAD %s", src);
    int ok = r != NULL && r->type == REDIS_REPLY_STRING && r->len == 40;

    if (ok)
        memcpy(out, r->str, 41);
    freeReplyObject(r);
    return ok;
}

static int bench_cycle(const char *url, int batches)
{
    static int (*const side_fn[SIDES])(void) = {raw_setnx_cycle, raw_script_cycle, ck_cycle};
    double t[SIDES] = {0}, vs_setnx[ROUNDS], vs_script[ROUNDS];
    long n, errors = 0;
    ck_options o;
    ck__url u;
    char err[128], sha[41];

    if (ck__url_parse(url, &u, err, sizeof err) != CK_OK || u.is_unix) {
        fprintf(stderr, "bench: need a redis:// URL (%s)\n", err);
        return 1;
    }
    raw = redisConnect(u.host, u.port);
    ck_options_init(&o);
    o.url = url;
    if (raw == NULL || raw->err || ck_client_new(&o, &cli) != CK_OK) {
        fprintf(stderr, "bench: cannot connect to %s:%d\n", u.host, u.port);
        return 1;
    }
    if (u.db != 0)
        freeReplyObject(redisCommand(raw, "SELECT %d", u.db));
    ck__script_init(&ck__lock_acquire_script);
    ck__script_init(&ck__lock_release_script);
    if (!load(release_lua, sha_del) || !load(ck__lock_acquire_script.src, sha) ||
        !load(ck__lock_release_script.src, sha)) {
        fprintf(stderr, "bench: SCRIPT LOAD failed\n");
        return 1;
    }
    for (int i = 0; i < 1000; i++) /* warm every path up */
        for (int s = 0; s < SIDES; s++)
            errors += !side_fn[s]();
    for (int round = 0; round < ROUNDS; round++) {
        double r[SIDES] = {0};

        for (int b = 0; b < batches / ROUNDS; b++) {
            for (int k = 0; k < SIDES; k++) {
                int s = (k + b) % SIDES; /* rotate who goes first */
                double t0 = now_s();
                for (int i = 0; i < BATCH; i++)
                    errors += !side_fn[s]();
                r[s] += now_s() - t0;
            }
        }
        vs_setnx[round] = r[0] / r[2];
        vs_script[round] = r[1] / r[2];
        for (int s = 0; s < SIDES; s++)
            t[s] += r[s];
    }
    qsort(vs_setnx, ROUNDS, sizeof vs_setnx[0], cmp_double);
    qsort(vs_script, ROUNDS, sizeof vs_script[0], cmp_double);
    n = (long)(batches / ROUNDS) * ROUNDS * BATCH;
    printf("%-54s %9.0f cycles/s\n", "raw hiredis: SET NX PX + EVALSHA compare-and-delete",
           (double)n / t[0]);
    printf("%-54s %9.0f cycles/s\n", "raw hiredis: the library's acquire + release scripts",
           (double)n / t[1]);
    printf("%-54s %9.0f cycles/s\n", "ck_lock_acquire + ck_lock_release", (double)n / t[2]);
    printf("%-54s %9.3f   (goal >= 0.90; rounds %.3f .. %.3f)\n",
           "ratio ck / raw SET NX, median round", vs_setnx[ROUNDS / 2], vs_setnx[0],
           vs_setnx[ROUNDS - 1]);
    printf("%-54s %9.3f   (rounds %.3f .. %.3f)\n", "ratio ck / raw same scripts, median round",
           vs_script[ROUNDS / 2], vs_script[0], vs_script[ROUNDS - 1]);
    printf("%-54s %9.1f us (of which the client side %.1f us)\n", "extra time per cycle vs SET NX",
           (t[2] - t[0]) / (double)n * 1e6, (t[2] - t[1]) / (double)n * 1e6);

    /* ck_with_lock: the same cycle plus starting and joining the watchdog */
    {
        long m = n / 4 > 2000 ? 2000 : n / 4;
        double t0 = now_s();
        for (long i = 0; i < m; i++)
            errors += ck_with_lock(cli, "bench", 10000, 0, nothing, NULL) != CK_OK;
        t0 = now_s() - t0;
        printf("%-54s %9.0f cycles/s\n", "ck_with_lock (empty fn, watchdog thread)", (double)m / t0);
    }
    if (errors != 0)
        printf("errors: %ld\n", errors);
    ck_client_free(cli);
    redisFree(raw);
    ck__url_clear(&u);
    return errors != 0;
}

int main(int argc, char **argv)
{
    const char *url = getenv("CACHEKIT_TEST_REDIS_URL");
    int batches = argc > 1 ? atoi(argv[1]) : 180;

    if (url == NULL) {
        fprintf(stderr, "bench: CACHEKIT_TEST_REDIS_URL is not set (run it with make bench)\n");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    printf("libcachekit %s, lock benchmark (%d x %d cycles each side, interleaved)\n", ck_version(),
           batches, BATCH);
    return bench_cycle(url, batches >= ROUNDS ? batches : 180);
}
