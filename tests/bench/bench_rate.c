/* make bench: ck_rate_check for each algorithm next to a raw hiredis EVALSHA
 * of a minimal ZSET sliding-window script (ZREMRANGEBYSCORE, ZCARD, ZADD,
 * PEXPIRE) on one connection, in the same run, interleaved in small batches
 * (alternating which side goes first) over 9 rounds; the median round ratio
 * is the figure. Then Redis's own CPU per check (INFO commandstats), the
 * memory of a key (MEMORY USAGE), and 8 threads sharing one client next to
 * `redis-benchmark -c 8` of a trivial EVALSHA. Figures are printed, never
 * asserted. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <hiredis/hiredis.h>

#include "internal.h"

#define BATCH 100
#define ROUNDS 9
#define WINDOW_MS 100
#define LIMIT 10000

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static double now_s(void)
{
    return (double)ck__now_ns() / 1e9;
}

/* The baseline: the sliding window most services write by hand. */
static const char raw_src[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]) * 1000)\n"
    "if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then\n"
    "  redis.call('ZADD', KEYS[1], now, t[1] .. '.' .. t[2])\n"
    "  redis.call('PEXPIRE', KEYS[1], ARGV[1])\n"
    "  return 1\n"
    "end\n"
    "return 0\n";
static char raw_sha[41];
static char trivial_sha[41];

static const char *algo_name[] = { "sliding log", "sliding window", "GCRA", "fixed window",
                                   "calendar day", "calendar week", "calendar month" };

static redisContext *raw_connect(const ck__url *u)
{
    redisContext *raw = redisConnect(u->host, u->port);

    if (raw == NULL || raw->err) {
        fprintf(stderr, "bench: cannot connect to %s:%d\n", u->host, u->port);
        exit(1);
    }
    if (u->db != 0)
        freeReplyObject(redisCommand(raw, "SELECT %d", u->db));
    return raw;
}

static void load(redisContext *raw, const char *src, char sha[41])
{
    redisReply *r = redisCommand(raw, "SCRIPT LOAD %s", src);

    if (r == NULL || r->type != REDIS_REPLY_STRING || r->len != 40) {
        fprintf(stderr, "bench: SCRIPT LOAD failed\n");
        exit(1);
    }
    memcpy(sha, r->str, 41);
    freeReplyObject(r);
}

static int raw_call(redisContext *raw, const char *key)
{
    const char *argv[] = { "EVALSHA", raw_sha, "1", key, "100", "10000" };
    redisReply *r = redisCommandArgv(raw, 6, argv, NULL);
    int ok = r != NULL && r->type == REDIS_REPLY_INTEGER;

    freeReplyObject(r);
    return ok;
}

static ck_rate_rule rule_for(int algo)
{
    ck_rate_rule r = { (ck_rl_algo)algo, LIMIT, WINDOW_MS, 0 };

    if (algo >= CK_RL_CALENDAR_DAY)
        r.limit = CK_RATE_MAX_LIMIT; /* a budget nobody exhausts in a bench */
    return r;
}

static _Atomic long errors;

static void ck_call(ck_client *c, const char *key, const ck_rate_rule *rule)
{
    ck_rate_result res;

    if (ck_rate_check(c, key, rule, 1, 1, &res) != CK_OK || res.degraded)
        errors++;
}

/* usec_per_call of EVALSHA since the last CONFIG RESETSTAT */
static double evalsha_usec(redisContext *raw)
{
    redisReply *r = redisCommand(raw, "INFO commandstats");
    double v = -1;
    const char *p;

    if (r != NULL && r->type == REDIS_REPLY_STRING &&
        (p = strstr(r->str, "cmdstat_evalsha:")) != NULL && (p = strstr(p, "usec_per_call=")) != NULL)
        v = atof(p + 14);
    freeReplyObject(r);
    return v;
}

static long long memory_usage(redisContext *raw, const char *key)
{
    redisReply *r = redisCommand(raw, "MEMORY USAGE %s SAMPLES 0", key);
    long long v = r != NULL && r->type == REDIS_REPLY_INTEGER ? r->integer : 0;

    freeReplyObject(r);
    return v;
}

static void bench_algos(const ck__url *u, const char *url, int batches)
{
    redisContext *raw = raw_connect(u);
    ck_options o;
    ck_client *c;

    ck_options_init(&o);
    o.url = url;
    o.command_timeout_ms = 2000;
    if (ck_client_new(&o, &c) != CK_OK)
        exit(1);
    load(raw, raw_src, raw_sha);

    printf("\none thread, one connection each side; window %d ms, limit %d (all admitted)\n",
           WINDOW_MS, LIMIT);
    printf("%-16s %12s %12s %8s %14s   %s\n", "algorithm", "raw ops/s", "ck ops/s", "ratio",
           "rounds", "redis us/check (raw script)");
    for (int algo = 0; algo <= CK_RL_CALENDAR_MONTH; algo++) {
        ck_rate_rule rule = rule_for(algo);
        double t_raw = 0, t_ck = 0, ratios[ROUNDS], us_ck, us_raw;
        char key[64], rawkey[64];
        long n;

        snprintf(key, sizeof key, "bench:%d", algo);
        snprintf(rawkey, sizeof rawkey, "bench:raw:%d", algo);
        for (int i = 0; i < 1000; i++) { /* warm up */
            raw_call(raw, rawkey);
            ck_call(c, key, &rule);
        }
        for (int round = 0; round < ROUNDS; round++) {
            double r_raw = 0, r_ck = 0;

            for (int b = 0; b < batches / ROUNDS; b++) {
                for (int side = 0; side < 2; side++) {
                    double t = now_s();

                    if ((side ^ (b & 1)) == 0) {
                        for (int i = 0; i < BATCH; i++)
                            if (!raw_call(raw, rawkey))
                                errors++;
                        r_raw += now_s() - t;
                    } else {
                        for (int i = 0; i < BATCH; i++)
                            ck_call(c, key, &rule);
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

        /* Redis-side CPU per call, each side alone */
        freeReplyObject(redisCommand(raw, "CONFIG RESETSTAT"));
        for (int i = 0; i < 5000; i++)
            ck_call(c, key, &rule);
        us_ck = evalsha_usec(raw);
        freeReplyObject(redisCommand(raw, "CONFIG RESETSTAT"));
        for (int i = 0; i < 5000; i++)
            raw_call(raw, rawkey);
        us_raw = evalsha_usec(raw);

        printf("%-16s %12.0f %12.0f %8.3f  %5.3f..%5.3f   %5.2f (%.2f)\n", algo_name[algo],
               (double)n / t_raw, (double)n / t_ck, ratios[ROUNDS / 2], ratios[0],
               ratios[ROUNDS - 1], us_ck, us_raw);
    }
    printf("(sliding log goal: ratio >= 0.90)\n");

    /* memory of one key: `fill` requests inside the window */
    printf("\nRedis memory of one limited key (MEMORY USAGE, all of the key's keys)\n");
    printf("%-16s %14s %14s %14s\n", "algorithm", "100 in window", "1000 in window",
           "10000 in window");
    for (int algo = 0; algo <= CK_RL_CALENDAR_MONTH; algo++) {
        static const int fills[3] = { 100, 1000, 10000 };
        long long m[3];

        for (int f = 0; f < 3; f++) {
            ck_rate_rule rule = { (ck_rl_algo)algo, fills[f], 3600000, 0 };
            char key[64], hk[96], lk[100];

            snprintf(key, sizeof key, "mem:%d:%d", algo, fills[f]);
            for (int i = 0; i < fills[f]; i++)
                ck_call(c, key, &rule);
            snprintf(hk, sizeof hk, "ck:r:{%s}:0", key);
            snprintf(lk, sizeof lk, "%s:l", hk);
            m[f] = memory_usage(raw, hk) + memory_usage(raw, lk);
        }
        printf("%-16s %12lld B %12lld B %12lld B\n", algo_name[algo], m[0], m[1], m[2]);
    }
    {
        char hk[] = "mem:raw";
        for (int i = 0; i < 1000; i++) {
            const char *argv[] = { "EVALSHA", raw_sha, "1", hk, "3600000", "10000" };
            freeReplyObject(redisCommandArgv(raw, 6, argv, NULL));
        }
        printf("%-16s %14s %12lld B\n", "raw ZSET script", "", memory_usage(raw, hk));
    }
    ck_client_free(c);
    redisFree(raw);
}

/* ---- 8 threads on one client vs redis-benchmark -c 8 ---- */

typedef struct mt_arg { ck_client *c; int n; ck_rate_rule rule; int id; } mt_arg;

static void *mt_thread(void *p)
{
    mt_arg *a = p;
    char key[32];
    ck_rate_result r;

    snprintf(key, sizeof key, "mt:%d", a->id);
    for (int i = 0; i < a->n; i++) {
        ck_status st = ck_rate_check(a->c, key, &a->rule, 1, 1, &r);
        if (st != CK_OK || r.degraded) {
            if (errors++ == 0)
                fprintf(stderr, "bench: %s (degraded %d)\n", ck_strerror(st), r.degraded);
        }
    }
    return NULL;
}

static double ck_threads(ck_client *c, int algo, int per_thread)
{
    pthread_t th[8];
    mt_arg a[8];
    double t = now_s();

    for (int i = 0; i < 8; i++) {
        a[i] = (mt_arg){ c, per_thread, rule_for(algo), i };
        pthread_create(&th[i], NULL, mt_thread, &a[i]);
    }
    for (int i = 0; i < 8; i++)
        pthread_join(th[i], NULL);
    return 8.0 * per_thread / (now_s() - t);
}

/* redis-benchmark -c 8 of EVALSHA <sha> <args>; req/s or -1 */
static double redis_benchmark(const ck__url *u, int n, const char *sha, const char *args)
{
    char cmd[512], line[512];
    double rps = -1;
    FILE *p;

    snprintf(cmd, sizeof cmd, "redis-benchmark -h %s -p %d -c 8 -n %d --csv EVALSHA %s %s 2>/dev/null",
             u->host, u->port, n, sha, args);
    p = popen(cmd, "r");
    if (p == NULL)
        return -1;
    while (fgets(line, sizeof line, p) != NULL) {
        const char *q = strstr(line, "\",\"");
        if (strncmp(line, "\"EVALSHA", 8) == 0 && q != NULL)
            rps = atof(q + 3);
    }
    pclose(p);
    return rps;
}

static void bench_threads(const ck__url *u, const char *url, int n)
{
    redisContext *raw = raw_connect(u);
    double rb[3], rz[3], ck[3], ratio[3], ratio_z[3];
    ck_options o;
    ck_client *c;

    load(raw, "return 1", trivial_sha);
    load(raw, raw_src, raw_sha);
    redisFree(raw);
    ck_options_init(&o);
    o.url = url;
    o.pool_size = 8;
    o.command_timeout_ms = 2000; /* a loaded 2-core machine: measure, do not degrade */
    o.pool_wait_ms = 2000;
    if (ck_client_new(&o, &c) != CK_OK)
        exit(1);
    ck_threads(c, CK_RL_SLIDING_LOG, 500); /* warm up: 8 connections */
    printf("\n8 threads sharing one client (pool 8) vs redis-benchmark -c 8 -n %d of EVALSHA\n"
           "'return 1' (trivial) and of the raw ZSET script; medians of 3 interleaved runs\n", n);
    printf("%-16s %14s %14s %14s %10s %10s\n", "algorithm", "trivial req/s", "raw zset req/s",
           "ck checks/s", "ck/trivial", "ck/raw");
    for (int algo = 0; algo <= CK_RL_GCRA; algo++) {
        for (int i = 0; i < 3; i++) {
            rb[i] = redis_benchmark(u, n, trivial_sha, "0");
            rz[i] = redis_benchmark(u, n, raw_sha, "1 rb:raw 100 10000");
            ck[i] = ck_threads(c, algo, n / 8);
            ratio[i] = ck[i] / rb[i];
            ratio_z[i] = ck[i] / rz[i];
        }
        qsort(ratio, 3, sizeof ratio[0], cmp_double);
        qsort(ratio_z, 3, sizeof ratio_z[0], cmp_double);
        qsort(rb, 3, sizeof rb[0], cmp_double);
        qsort(rz, 3, sizeof rz[0], cmp_double);
        qsort(ck, 3, sizeof ck[0], cmp_double);
        if (rb[1] <= 0) {
            printf("redis-benchmark did not run (apt-get install redis-tools)\n");
            break;
        }
        printf("%-16s %14.0f %14.0f %14.0f %10.3f %10.3f\n", algo_name[algo], rb[1], rz[1], ck[1],
               ratio[1], ratio_z[1]);
    }
    ck_client_free(c);
}

int main(int argc, char **argv)
{
    const char *url = getenv("CACHEKIT_TEST_REDIS_URL");
    int batches = argc > 1 ? atoi(argv[1]) : 45;
    char err[128];
    ck__url u;

    if (url == NULL) {
        fprintf(stderr, "bench: CACHEKIT_TEST_REDIS_URL is not set (run it with make bench)\n");
        return 1;
    }
    if (ck__url_parse(url, &u, err, sizeof err) != CK_OK || u.is_unix) {
        fprintf(stderr, "bench: need a redis:// URL (%s)\n", err);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    if (batches < ROUNDS)
        batches = 45;
    printf("libcachekit %s, rate-limit benchmark (%d x %d calls each side per algorithm)\n",
           ck_version(), batches / ROUNDS * ROUNDS, BATCH);
    bench_algos(&u, url, batches);
    bench_threads(&u, url, 40000);
    if (errors != 0)
        printf("errors: %ld\n", (long)errors);
    ck__url_clear(&u);
    return errors != 0;
}
