/* The cache against real Redis: hits and misses, null-caching, scopes,
 * tags, stampede protection across threads and processes, fail-safe stale
 * values, corrupt entries, fail-open / fail-closed, and what reaches Redis. */
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

#include "ckt.h"
#include "cache_priv.h"

static ck_client *client_for(const char *url, ck_fail_mode mode)
{
    ck_options o;
    ck_client *c = NULL;
    ckt_options(&o, url);
    o.fail_mode = mode;
    o.pool_size = 16;
    o.pool_wait_ms = ckt_under_valgrind() ? 5000 : 1000;
    ck_assert_int_eq(ck_client_new(&o, &c), CK_OK);
    return c;
}

static ck_cache *cache_for(ck_client *c, const char *name, void (*tweak)(ck_cache_options *))
{
    ck_cache_options o;
    ck_cache *k = NULL;
    ck_cache_options_init(&o);
    o.name = name;
    if (tweak != NULL)
        tweak(&o);
    ck_assert_int_eq(ck_cache_new(c, &o, &k), CK_OK);
    return k;
}

static int ping_ok(void *c)
{
    return ck_client_ping(c) == CK_OK;
}

/* A loader that counts its calls (in shared memory, across fork) and
 * answers from a tiny "database": keys starting with "user:" exist. */
typedef struct db {
    _Atomic int calls;
    int delay_ms;
    int fail;       /* answer an error */
} db;

static db *db_new(void)
{
    db *d = mmap(NULL, sizeof *d, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ck_assert(d != MAP_FAILED);
    memset(d, 0, sizeof *d);
    return d;
}

static ck_status db_load(void *user, const char *key, json_t **out)
{
    db *d = user;
    int fail = d->fail; /* as the call began */
    atomic_fetch_add(&d->calls, 1);
    if (d->delay_ms > 0)
        ckt_sleep_ms(d->delay_ms);
    if (fail)
        return CK_E_UNAVAILABLE;
    if (strncmp(key, "user:", 5) != 0)
        return CK_NOT_FOUND;
    *out = json_pack("{s:s, s:i}", "name", key + 5, "n", 42);
    return CK_OK;
}

START_TEST(hit_miss_and_null_caching)
{
    ck_client *c = client_for(ckt_shared_url(), CK_FAIL_OPEN);
    ck_cache *k = cache_for(c, "t1", NULL);
    db *d = db_new();
    json_t *v = NULL;
    ck_get_info info;
    ck_stats s;

    /* no loader: a miss */
    ck_assert_int_eq(ck_cache_get(k, NULL, "user:ann", NULL, NULL, &v, &info), CK_MISS);
    ck_assert_ptr_null(v);
    /* loader: loaded once, then hits */
    ck_assert_int_eq(ck_cache_get(k, NULL, "user:ann", db_load, d, &v, &info), CK_OK);
    ck_assert_int_eq(info.source, CK_SRC_LOADER);
    ck_assert_str_eq(json_string_value(json_object_get(v, "name")), "ann");
    json_decref(v);
    for (int i = 0; i < 20; i++) {
        ck_assert_int_eq(ck_cache_get(k, NULL, "user:ann", db_load, d, &v, &info), CK_OK);
        ck_assert_int_eq(info.source, CK_SRC_REDIS);
        ck_assert_int_eq(json_integer_value(json_object_get(v, "n")), 42);
        json_decref(v);
    }
    ck_assert_int_eq(atomic_load(&d->calls), 1);

    /* an absent key costs the database one query per null_ttl, not one per request */
    for (int i = 0; i < 50; i++) {
        ck_assert_int_eq(ck_cache_get(k, "app", "ghost", db_load, d, &v, &info), CK_NOT_FOUND);
        ck_assert_ptr_null(v);
    }
    ck_assert_int_eq(atomic_load(&d->calls), 2);
    ck_client_stats(c, &s);
    ck_assert_uint_eq(s.loads, 2);
    ck_assert_uint_eq(s.hits, 20);
    ck_assert_uint_eq(s.null_hits, 49);
    ck_assert_uint_eq(s.misses, 3);
    ck_cache_free(k);
    ck_client_free(c);
}
END_TEST

static void short_ttls(ck_cache_options *o)
{
    o->ttl_ms = 300;
    o->null_ttl_ms = 150;
    o->jitter_pct = 0;
}

static int calls_reach(void *arg)
{
    void **a = arg;
    ck_cache *k = a[0];
    db *d = a[1];
    json_t *v = NULL;
    (void)ck_cache_get(k, NULL, "ghost", db_load, d, &v, NULL);
    json_decref(v);
    return atomic_load(&d->calls) >= 2;
}

START_TEST(ttls_expire_values_and_absences)
{
    ck_client *c = client_for(ckt_shared_url(), CK_FAIL_OPEN);
    ck_cache *k = cache_for(c, "t2", short_ttls);
    db *d = db_new();
    const char *pttl[] = { "PTTL", NULL, NULL };
    char key[CK__RKEY_MAX];
    json_t *v = NULL;
    ck__ref r;

    ck_assert_int_eq(ck_cache_get(k, NULL, "ghost", db_load, d, &v, NULL), CK_NOT_FOUND);
    ck_assert_int_eq(ck__cache_prep(k, "t", NULL, "ghost", &r), CK_OK);
    strcpy(key, r.entry);
    pttl[1] = key;
    redisReply *rep = ckt_cmd_at(ckt_shared_url(), pttl);
    ck_assert(rep != NULL && rep->type == REDIS_REPLY_INTEGER);
    ck_assert_int_gt(rep->integer, 0);
    ck_assert_int_le(rep->integer, 150);
    freeReplyObject(rep);
    /* after null_ttl the database is asked again */
    void *arg[2] = { k, d };
    ck_assert(ckt_wait_until(calls_reach, arg, 2000));
    ck_cache_free(k);
    ck_client_free(c);
}
END_TEST

START_TEST(jitter_spreads_ttls)
{
    ck_client *c = client_for(ckt_shared_url(), CK_FAIL_OPEN);
    ck_cache_options o;
    ck_cache *k = NULL;
    json_t *one = json_integer(1);
    long long lo = 1 << 30, hi = 0;
    ck_cache_options_init(&o);
    o.name = "t3";
    o.ttl_ms = 100000;
    o.jitter_pct = 20;
    ck_assert_int_eq(ck_cache_new(c, &o, &k), CK_OK);
    for (int i = 0; i < 40; i++) {
        char key[16];
        ck__ref r;
        snprintf(key, sizeof key, "j%d", i);
        ck_assert_int_eq(ck_cache_set(k, NULL, key, one, NULL), CK_OK);
        ck_assert_int_eq(ck__cache_prep(k, "t", NULL, key, &r), CK_OK);
        const char *pttl[] = { "PTTL", r.entry, NULL };
        redisReply *rep = ckt_cmd_at(ckt_shared_url(), pttl);
        ck_assert(rep != NULL && rep->type == REDIS_REPLY_INTEGER);
        if (rep->integer < lo)
            lo = rep->integer;
        if (rep->integer > hi)
            hi = rep->integer;
        freeReplyObject(rep);
    }
    ck_assert_int_ge(lo, 80000 - 1000);
    ck_assert_int_le(hi, 120000);
    ck_assert_int_gt(hi - lo, 5000); /* 40 draws over +-20%: spread for sure */
    json_decref(one);
    ck_cache_free(k);
    ck_client_free(c);
}
END_TEST

START_TEST(options_and_arguments_are_validated)
{
    ck_client *c = client_for(ckt_shared_url(), CK_FAIL_OPEN);
    ck_cache_options o;
    ck_cache *k = NULL;
    ckt_log lg;
    json_t *v = NULL;
    static const char *const bad_names[] = { "", "a:b", "a b", "{x}", "toolong-toolong-toolong-"
                                             "toolong-toolong-toolong-toolong-toolong-x" };
    (void)lg;
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
        ck_cache_options_init(&o);
        o.name = bad_names[i];
        ck_assert_int_eq(ck_cache_new(c, &o, &k), CK_E_INVALID);
        ck_assert_ptr_null(k);
    }
#define BAD(stmt) do { ck_cache_options_init(&o); o.name = "ok"; stmt; \
        ck_assert_int_eq(ck_cache_new(c, &o, &k), CK_E_INVALID); } while (0)
    BAD(o.ttl_ms = 0);
    BAD(o.null_ttl_ms = -1);
    BAD(o.jitter_pct = 51);
    BAD(o.key_hash = (ck_key_hash)9);
    BAD(o.key_hash = CK_KEY_HMAC_SHA256);
    BAD((o.key_hash = CK_KEY_HMAC_SHA256, o.hmac_key = "short", o.hmac_key_len = 5));
    BAD(o.stampede_wait_ms = -1);
    BAD(o.l1_max_entries = ((size_t)1 << 24) + 1);
    BAD((o.l1_max_entries = 10, o.l1_ttl_ms = 0));
    BAD((o.key_hash = CK_KEY_PLAIN, o.name = "ck"));
    BAD((o.key_hash = CK_KEY_PLAIN, o.stale_ttl_ms = 1000));
#undef BAD
    ck_assert_int_eq(ck_cache_new(NULL, &o, &k), CK_E_INVALID);
    ck_assert_int_eq(ck_cache_new(c, NULL, &k), CK_E_INVALID);
    k = cache_for(c, "t4", NULL);
    ck_assert_int_eq(ck_cache_get(k, NULL, "", NULL, NULL, &v, NULL), CK_E_INVALID);
    ck_assert_int_eq(ck_cache_get(k, NULL, NULL, NULL, NULL, &v, NULL), CK_E_INVALID);
    ck_assert_int_eq(ck_cache_get(k, "s", "x", NULL, NULL, &v, NULL), CK_E_INVALID);
    ck_assert_int_eq(ck_cache_get(k, "t", "x", NULL, NULL, &v, NULL), CK_E_INVALID);
    ck_assert_int_eq(ck_cache_get(k, "a:b", "x", NULL, NULL, &v, NULL), CK_E_INVALID);
    ck_assert_int_eq(ck_cache_get(NULL, NULL, "x", NULL, NULL, &v, NULL), CK_E_INVALID);
    char *huge = malloc(5000);
    memset(huge, 'h', 4999);
    huge[4999] = '\0';
    ck_assert_int_eq(ck_cache_get(k, NULL, huge, NULL, NULL, &v, NULL), CK_E_INVALID);
    free(huge);
    const char *bad_tags[] = { "ok", "bad\ntag", NULL };
    ck_assert_int_eq(ck_cache_set(k, NULL, "x", NULL, bad_tags), CK_E_INVALID);
    const char *many[18];
    for (int i = 0; i < 17; i++)
        many[i] = "t";
    many[17] = NULL;
    ck_assert_int_eq(ck_cache_set(k, NULL, "x", NULL, many), CK_E_INVALID);
    ck_assert_int_eq(ck_cache_invalidate_tag(k, ""), CK_E_INVALID);
    ck_assert_int_eq(ck_cache_mget(k, NULL, NULL, 1, &v, NULL), CK_E_INVALID);
    /* hostile but valid keys: any bytes except NUL in the hashed modes */
    ck_assert_int_eq(ck_cache_set(k, NULL, "a\r\nDEL *\r\n{x}:*", NULL, NULL), CK_OK);
    ck_assert_int_eq(ck_cache_get(k, NULL, "a\r\nDEL *\r\n{x}:*", NULL, NULL, &v, NULL),
                     CK_NOT_FOUND);
    ck_cache_free(k);
    ck_cache_free(NULL);
    ck_client_free(c);
}
END_TEST

START_TEST(scopes_and_invalidate)
{
    ck_client *c = client_for(ckt_shared_url(), CK_FAIL_OPEN);
    ck_cache *k = cache_for(c, "t5", NULL);
    json_t *one = json_integer(1), *v = NULL;
    ck_assert_int_eq(ck_cache_set(k, "app", "key1", one, NULL), CK_OK);
    ck_assert_int_eq(ck_cache_set(k, "dataset", "key1", one, NULL), CK_OK);
    ck_assert_int_eq(ck_cache_set(k, NULL, "key1", one, NULL), CK_OK);
    ck_assert_int_eq(ck_cache_set(k, "app", "key2", one, NULL), CK_OK);
    /* one scope */
    ck_assert_int_eq(ck_cache_invalidate(k, "dataset", "key1"), CK_OK);
    ck_assert_int_eq(ck_cache_get(k, "dataset", "key1", NULL, NULL, &v, NULL), CK_MISS);
    ck_assert_int_eq(ck_cache_get(k, "app", "key1", NULL, NULL, &v, NULL), CK_OK);
    json_decref(v);
    /* every scope of key1, and nothing of key2 */
    ck_assert_int_eq(ck_cache_invalidate(k, NULL, "key1"), CK_OK);
    ck_assert_int_eq(ck_cache_get(k, "app", "key1", NULL, NULL, &v, NULL), CK_MISS);
    ck_assert_int_eq(ck_cache_get(k, NULL, "key1", NULL, NULL, &v, NULL), CK_MISS);
    ck_assert_int_eq(ck_cache_get(k, "app", "key2", NULL, NULL, &v, NULL), CK_OK);
    json_decref(v);
    ck_assert_int_eq(ck_cache_invalidate(k, NULL, "never-written"), CK_OK);
    json_decref(one);
    ck_cache_free(k);
    ck_client_free(c);
}
END_TEST

START_TEST(tags_invalidate_exactly)
{
    ck_client *c = client_for(ckt_shared_url(), CK_FAIL_OPEN);
    ck_cache *k = cache_for(c, "t6", NULL);
    json_t *one = json_integer(1), *v = NULL;
    const char *ta[] = { "tenant:A", NULL }, *tb[] = { "tenant:B", NULL };
    const char *both[] = { "tenant:A", "extra", NULL };
    int n = ckt_under_valgrind() ? 300 : 600; /* more than two batches */
    char key[32];
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, "a%d", i);
        ck_assert_int_eq(ck_cache_set(k, "app", key, one, i % 2 ? ta : both), CK_OK);
    }
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof key, "b%d", i);
        ck_assert_int_eq(ck_cache_set(k, "app", key, one, tb), CK_OK);
    }
    ck_assert_int_eq(ck_cache_invalidate_tag(k, "tenant:A"), CK_OK);
    for (int i = 0; i < n; i += 37) {
        snprintf(key, sizeof key, "a%d", i);
        ck_assert_int_eq(ck_cache_get(k, "app", key, NULL, NULL, &v, NULL), CK_MISS);
    }
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof key, "b%d", i);
        ck_assert_int_eq(ck_cache_get(k, "app", key, NULL, NULL, &v, NULL), CK_OK);
        json_decref(v);
    }
    ck_assert_int_eq(ck_cache_invalidate_tag(k, "no-such-tag"), CK_OK);
    json_decref(one);
    ck_cache_free(k);
    ck_client_free(c);
}
END_TEST

START_TEST(mget_many)
{
    ck_client *c = client_for(ckt_shared_url(), CK_FAIL_OPEN);
    ck_cache *k = cache_for(c, "t7", NULL);
    enum { N = 100 };
    const char *keys[N];
    char buf[N][16];
    json_t *out[N];
    ck_status st[N];
    for (int i = 0; i < N; i++) {
        snprintf(buf[i], sizeof buf[i], "m%d", i);
        keys[i] = buf[i];
        json_t *v = json_integer(i);
        if (i % 3 == 0)
            ck_assert_int_eq(ck_cache_set(k, NULL, keys[i], v, NULL), CK_OK);
        else if (i % 3 == 1)
            ck_assert_int_eq(ck_cache_set(k, NULL, keys[i], NULL, NULL), CK_OK);
        json_decref(v);
    }
    keys[5] = ""; /* one bad key does not spoil the rest */
    ck_assert_int_eq(ck_cache_mget(k, NULL, keys, N, out, st), CK_OK);
    for (int i = 0; i < N; i++) {
        if (i == 5) {
            ck_assert_int_eq(st[i], CK_E_INVALID);
            continue;
        }
        if (i % 3 == 0) {
            ck_assert_int_eq(st[i], CK_OK);
            ck_assert_int_eq(json_integer_value(out[i]), i);
        } else {
            ck_assert_int_eq(st[i], i % 3 == 1 ? CK_NOT_FOUND : CK_MISS);
            ck_assert_ptr_null(out[i]);
        }
        json_decref(out[i]);
    }
    ck_cache_free(k);
    ck_client_free(c);
}
END_TEST

/* ---- stampede ---- */

typedef struct crowd { ck_cache *k; db *d; _Atomic int bad; } crowd;

static void *crowd_main(void *arg)
{
    crowd *w = arg;
    json_t *v = NULL;
    if (ck_cache_get(w->k, "app", "user:herd", db_load, w->d, &v, NULL) != CK_OK ||
        strcmp(json_string_value(json_object_get(v, "name")), "herd") != 0)
        atomic_fetch_add(&w->bad, 1);
    json_decref(v);
    return NULL;
}

START_TEST(stampede_sixteen_threads_two_processes_one_load)
{
    enum { THREADS = 16 };
    db *d = db_new();
    pid_t kids[2];
    d->delay_ms = ckt_under_valgrind() ? 300 : 150;
    for (int p = 0; p < 2; p++) {
        kids[p] = fork();
        ck_assert_int_ge(kids[p], 0);
        if (kids[p] == 0) {
            ck_client *c = client_for(ckt_shared_url(), CK_FAIL_OPEN);
            ck_cache *k = cache_for(c, "t8", NULL);
            crowd w = { k, d, 0 };
            pthread_t th[THREADS];
            for (int i = 0; i < THREADS; i++)
                pthread_create(&th[i], NULL, crowd_main, &w);
            for (int i = 0; i < THREADS; i++)
                pthread_join(th[i], NULL);
            ck_cache_free(k);
            ck_client_free(c);
            _exit(atomic_load(&w.bad) == 0 ? 0 : 1);
        }
    }
    for (int p = 0; p < 2; p++) {
        int status;
        ck_assert_int_eq(waitpid(kids[p], &status, 0), kids[p]);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "a caller got no value");
    }
    ck_assert_int_eq(atomic_load(&d->calls), 1);
    munmap(d, sizeof *d);
}
END_TEST

static void fast_followers(ck_cache_options *o)
{
    o->stampede_wait_ms = 5000;
}

/* A leader whose loader fails releases the followers at once. */
START_TEST(stampede_failed_leader_releases_followers)
{
    db *d = db_new();
    ck_client *c = client_for(ckt_shared_url(), CK_FAIL_OPEN);
    ck_cache *k = cache_for(c, "t9", fast_followers);
    d->delay_ms = 200;
    d->fail = 1;
    pid_t kid = fork();
    if (kid == 0) { /* the failing leader, in another process */
        ck_client *c2 = client_for(ckt_shared_url(), CK_FAIL_OPEN);
        ck_cache *k2 = cache_for(c2, "t9", fast_followers);
        json_t *v = NULL;
        int st = ck_cache_get(k2, "app", "user:x", db_load, d, &v, NULL);
        json_decref(v);
        ck_cache_free(k2);
        ck_client_free(c2);
        _exit(st == CK_E_LOADER ? 0 : 1);
    }
    /* wait until the child leads (its loader runs) */
    while (atomic_load(&d->calls) == 0)
        ckt_sleep_ms(1);
    d->fail = 0;
    int64_t t0 = ckt_now_ms();
    json_t *v = NULL;
    ck_assert_int_eq(ck_cache_get(k, "app", "user:x", db_load, d, &v, NULL), CK_OK);
    int64_t waited = ckt_now_ms() - t0;
    json_decref(v);
    int status;
    waitpid(kid, &status, 0);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* well before stampede_wait_ms (5 s) */
    ck_assert_msg(waited < (ckt_under_valgrind() ? 4500 : 1500), "follower waited %lld ms",
                  (long long)waited);
    ck_assert_int_eq(atomic_load(&d->calls), 2);
    ck_cache_free(k);
    ck_client_free(c);
}
END_TEST

/* ---- fail-safe ---- */

static void stale_ok(ck_cache_options *o)
{
    o->ttl_ms = 100;
    o->jitter_pct = 0;
    o->stale_ttl_ms = 60000;
}

static int expired(void *arg)
{
    ck_cache *k = arg;
    json_t *v = NULL;
    ck_get_info info;
    (void)ck_cache_get(k, NULL, "user:old", NULL, NULL, &v, &info);
    json_decref(v);
    return info.stale;
}

START_TEST(stale_value_served_when_loader_fails)
{
    ck_client *c = client_for(ckt_shared_url(), CK_FAIL_OPEN);
    ck_cache *k = cache_for(c, "t10", stale_ok);
    db *d = db_new();
    json_t *v = NULL;
    ck_get_info info;
    ck_stats s;
    ck_assert_int_eq(ck_cache_get(k, NULL, "user:old", db_load, d, &v, &info), CK_OK);
    json_decref(v);
    ck_assert(ckt_wait_until(expired, k, 2000));
    d->fail = 1;
    ck_assert_int_eq(ck_cache_get(k, NULL, "user:old", db_load, d, &v, &info), CK_OK);
    ck_assert_int_eq(info.stale, 1);
    ck_assert_str_eq(json_string_value(json_object_get(v, "name")), "old");
    json_decref(v);
    /* and refreshed once the loader works again */
    d->fail = 0;
    ck_assert_int_eq(ck_cache_get(k, NULL, "user:old", db_load, d, &v, &info), CK_OK);
    ck_assert_int_eq(info.stale, 0);
    ck_assert_int_eq(info.source, CK_SRC_LOADER);
    json_decref(v);
    ck_client_stats(c, &s);
    ck_assert_uint_ge(s.stale_served, 1);
    ck_assert_uint_eq(s.load_errors, 1);
    /* without a stale value, a failing loader is CK_E_LOADER and nothing is cached */
    d->fail = 1;
    ck_assert_int_eq(ck_cache_get(k, NULL, "user:new", db_load, d, &v, &info), CK_E_LOADER);
    d->fail = 0;
    ck_assert_int_eq(ck_cache_get(k, NULL, "user:new", NULL, NULL, &v, &info), CK_MISS);
    ck_cache_free(k);
    ck_client_free(c);
}
END_TEST

/* ---- corrupt entries ---- */

START_TEST(corrupt_entries_are_dropped_and_reloaded)
{
    ck_client *c = client_for(ckt_shared_url(), CK_FAIL_OPEN);
    ck_cache *k = cache_for(c, "t11", NULL);
    db *d = db_new();
    char deep[400];
    int nd = 0;
    for (int i = 0; i < 100; i++)
        deep[nd++] = '[';
    for (int i = 0; i < 100; i++)
        deep[nd++] = ']';
    deep[nd] = '\0';
    char deep_split[460];
    snprintf(deep_split, sizeof deep_split, "{\"x\":5,\"t\":[],\"v\":%s}", deep);
    /* the last four in the order the library writes (ck__env_split's path) */
    const char *payloads[] = { "{not json", "[1,2,3]", "{\"v\":1}", "{\"v\":1,\"x\":\"soon\"}",
                               "{\"v\":1,\"x\":5,\"t\":7}", "{\"v\":1,\"x\":1,\"y\":2,\"z\":3}",
                               "\"just a string\"", "", deep, "{\"v\":1,\"x\":-5}",
                               "{\"x\":5,\"t\":[],\"v\":1,\"y\":2}", "{\"x\":5,\"t\":7,\"v\":1}",
                               "{\"x\":-5,\"t\":[],\"v\":1}", deep_split };
    for (size_t i = 0; i < sizeof payloads / sizeof payloads[0] + 1; i++) {
        ck__ref r;
        json_t *v = NULL;
        ck_assert_int_eq(ck__cache_prep(k, "t", "app", "user:c", &r), CK_OK);
        const char *del[] = { "DEL", r.entry, NULL };
        freeReplyObject(ckt_cmd_at(ckt_shared_url(), del));
        if (i < sizeof payloads / sizeof payloads[0]) {
            const char *set[] = { "SET", r.entry, payloads[i], NULL };
            freeReplyObject(ckt_cmd_at(ckt_shared_url(), set));
        } else { /* WRONGTYPE */
            const char *push[] = { "RPUSH", r.entry, "x", NULL };
            freeReplyObject(ckt_cmd_at(ckt_shared_url(), push));
        }
        ck_assert_msg(ck_cache_get(k, "app", "user:c", db_load, d, &v, NULL) == CK_OK,
                      "payload %zu", i);
        ck_assert_str_eq(json_string_value(json_object_get(v, "name")), "c");
        json_decref(v);
        /* rewritten properly: a plain hit now */
        int before = atomic_load(&d->calls);
        ck_assert_int_eq(ck_cache_get(k, "app", "user:c", db_load, d, &v, NULL), CK_OK);
        json_decref(v);
        ck_assert_int_eq(atomic_load(&d->calls), before);
    }
    ck_cache_free(k);
    ck_client_free(c);
}
END_TEST

/* The envelope is written value last ({"x":..,"t":[..],"v":..}), which a
 * hit splits by hand to parse the value alone; an entry in another key
 * order (an older writer's) is read all the same. */
START_TEST(envelope_written_value_last)
{
    ck_client *c = client_for(ckt_shared_url(), CK_FAIL_OPEN);
    ck_cache *k = cache_for(c, "t12", NULL);
    const char *tags[] = { "tenant:1", "app", NULL };
    json_t *v = json_pack("{s:s, s:[i,i]}", "name", "e", "list", 1, 2);
    ck_get_info info;
    ck__ref r;
    db *d = db_new();

    ck_assert_int_eq(ck_cache_set(k, "app", "user:e", v, tags), CK_OK);
    ck_assert_int_eq(ck__cache_prep(k, "t", "app", "user:e", &r), CK_OK);
    const char *get[] = { "GET", r.entry, NULL };
    redisReply *rep = ckt_cmd_at(ckt_shared_url(), get);
    ck_assert_ptr_nonnull(rep);
    ck_assert_int_eq(rep->type, REDIS_REPLY_STRING);
    ck_assert_msg(strncmp(rep->str, "{\"x\":", 5) == 0, "stored as %s", rep->str);
    ck_assert_ptr_nonnull(strstr(rep->str, ",\"t\":[\"tenant:1\",\"app\"],\"v\":{"));
    freeReplyObject(rep);
    json_t *got = NULL;
    ck_assert_int_eq(ck_cache_get(k, "app", "user:e", db_load, d, &got, &info), CK_OK);
    ck_assert_int_eq(info.source, CK_SRC_REDIS);
    ck_assert(json_equal(got, v));
    json_decref(got);

    /* the older key order, still fresh: a hit, no load */
    char old[160];
    snprintf(old, sizeof old, "{\"v\":{\"name\":\"o\"},\"x\":%lld,\"t\":[\"app\"]}",
             (long long)(ck__wall_ms() + 600000));
    const char *set[] = { "SET", r.entry, old, NULL };
    freeReplyObject(ckt_cmd_at(ckt_shared_url(), set));
    ck_assert_int_eq(ck_cache_get(k, "app", "user:e", db_load, d, &got, &info), CK_OK);
    ck_assert_int_eq(info.source, CK_SRC_REDIS);
    ck_assert_str_eq(json_string_value(json_object_get(got, "name")), "o");
    json_decref(got);
    /* a cached absence: "v":null, split the same way */
    ck_assert_int_eq(ck_cache_set(k, "app", "user:e", NULL, NULL), CK_OK);
    ck_assert_int_eq(ck_cache_get(k, "app", "user:e", db_load, d, &got, &info), CK_NOT_FOUND);
    ck_assert_ptr_null(got);
    ck_assert_int_eq(atomic_load(&d->calls), 0);
    json_decref(v);
    ck_cache_free(k);
    ck_client_free(c);
}
END_TEST

/* The nesting pre-scan skips string bodies, escaped quotes included. */
START_TEST(json_depth_scan)
{
    static const struct { const char *s; int depth; } cases[] = {
        { "1", 0 }, { "[]", 1 }, { "[[{}]]", 3 }, { "\"[[[[\"", 0 },
        { "[\"a\\\"[[[\"]", 1 }, { "[\"a\\\\\",[[1]]]", 3 }, { "{\"k\":\"}}}\"}", 1 },
        { "[\"unterminated [[[", 1 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        ck_assert_msg(ck__json_depth(cases[i].s, strlen(cases[i].s)) == cases[i].depth,
                      "case %zu: %s", i, cases[i].s);
}
END_TEST

/* ---- fail-open / fail-closed ---- */

START_TEST(redis_down_fail_open_and_closed)
{
    ckt_redis *r = ckt_redis_start(NULL);
    ck_client *open = client_for(ckt_redis_url(r), CK_FAIL_OPEN);
    ck_client *closed = client_for(ckt_redis_url(r), CK_FAIL_CLOSED);
    ck_cache *ko = cache_for(open, "t12", NULL), *kc = cache_for(closed, "t12", NULL);
    db *d = db_new();
    json_t *v = NULL, *one = json_integer(1);
    ck_get_info info;
    ck_assert_int_eq(ck_cache_get(ko, NULL, "user:z", db_load, d, &v, &info), CK_OK);
    json_decref(v);
    ckt_redis_kill(r);
    int64_t bound = 200 + 100 + ckt_slack_ms() + (ckt_under_valgrind() ? 5000 : 0);
    for (int i = 0; i < 3; i++) {
        int64_t t0 = ckt_now_ms();
        ck_assert_int_eq(ck_cache_get(ko, NULL, "user:z", db_load, d, &v, &info), CK_OK);
        ck_assert_int_eq(info.degraded, 1);
        ck_assert_int_eq(info.source, CK_SRC_LOADER);
        json_decref(v);
        ck_assert_int_eq(ck_cache_get(ko, NULL, "nobody", db_load, d, &v, &info), CK_NOT_FOUND);
        ck_assert_int_eq(ck_cache_get(kc, NULL, "user:z", db_load, d, &v, &info),
                         CK_E_UNAVAILABLE);
        ck_assert_int_eq(info.degraded, 1);
        ck_assert_int_eq(ck_cache_set(ko, NULL, "user:z", one, NULL), CK_E_UNAVAILABLE);
        ck_assert_int_eq(ck_cache_invalidate(ko, NULL, "user:z"), CK_E_UNAVAILABLE);
        ck_assert_int_eq(ck_cache_invalidate_tag(ko, "x"), CK_E_UNAVAILABLE);
        ck_assert_int_le(ckt_now_ms() - t0, 6 * bound);
    }
    ck_assert_int_eq(ck_cache_get(ko, NULL, "user:z", NULL, NULL, &v, &info), CK_E_UNAVAILABLE);
    ckt_redis_restart(r);
    /* the breaker opened during the outage: wait for its probe to pass */
    ck_assert(ckt_wait_until(ping_ok, open, 5000));
    ck_assert_int_eq(ck_cache_get(ko, NULL, "user:z", db_load, d, &v, &info), CK_OK);
    ck_assert_int_eq(info.degraded, 0);
    json_decref(v);
    json_decref(one);
    ck_cache_free(ko);
    ck_cache_free(kc);
    ck_client_free(open);
    ck_client_free(closed);
    ckt_redis_stop(r);
}
END_TEST

Suite *ckt_suite(void)
{
    Suite *s = suite_create("cache");
    TCase *tc = tcase_create("cache");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, hit_miss_and_null_caching);
    tcase_add_test(tc, ttls_expire_values_and_absences);
    tcase_add_test(tc, jitter_spreads_ttls);
    tcase_add_test(tc, options_and_arguments_are_validated);
    tcase_add_test(tc, scopes_and_invalidate);
    tcase_add_test(tc, tags_invalidate_exactly);
    tcase_add_test(tc, mget_many);
    tcase_add_test(tc, stampede_sixteen_threads_two_processes_one_load);
    tcase_add_test(tc, stampede_failed_leader_releases_followers);
    tcase_add_test(tc, stale_value_served_when_loader_fails);
    tcase_add_test(tc, corrupt_entries_are_dropped_and_reloaded);
    tcase_add_test(tc, envelope_written_value_last);
    tcase_add_test(tc, json_depth_scan);
    tcase_add_test(tc, redis_down_fail_open_and_closed);
    suite_add_tcase(s, tc);
    return s;
}

#include "ckt_main.h"
