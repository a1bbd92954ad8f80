/* The L1 tier against real Redis: hits that touch no socket, cross-client
 * invalidation over Pub/Sub (writes, key and tag and tenant invalidation),
 * a killed subscription, serving while Redis is stopped, the entry bound,
 * readers that never go back to an older value while a writer runs, and
 * threads that never share a returned value's reference count. */
#define _GNU_SOURCE
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckt.h"
#include "cache_priv.h"

/* Timing bounds stretch in the slow builds (ckt_scaled). */

static ck_client *client_for(const char *url)
{
    ck_options o;
    ck_client *c = NULL;
    ckt_options(&o, url);
    o.pool_size = 8;
    /* no test here waits on a client deadline (a stopped server is met
     * by L1 hits, a killed one by refused connections): room for a VM
     * that stalls for 100 ms among the suite's thousands of calls, which
     * failed bounded_by_max_entries twice */
    o.connect_timeout_ms = ckt_scaled(1000);
    o.command_timeout_ms = ckt_scaled(1000);
    o.pool_wait_ms = ckt_scaled(1000);
    ck_assert_int_eq(ck_client_new(&o, &c), CK_OK);
    return c;
}

static ck_cache *l1_cache(ck_client *c, const char *name, size_t max, int l1_ttl_ms,
                          ck_key_hash mode)
{
    ck_cache_options o;
    ck_cache *k = NULL;
    ck_cache_options_init(&o);
    o.name = name;
    o.key_hash = mode;
    o.l1_max_entries = max;
    o.l1_ttl_ms = l1_ttl_ms;
    o.jitter_pct = 0;
    ck_assert_int_eq(ck_cache_new(c, &o, &k), CK_OK);
    return k;
}

/* A loader that answers {"v": <its counter>} and counts its calls. */
typedef struct src {
    _Atomic int calls;
    int exists;
} src;

static ck_status src_load(void *user, const char *key, json_t **out)
{
    src *s = user;
    (void)key;
    int n = atomic_fetch_add(&s->calls, 1) + 1;
    if (!s->exists)
        return CK_NOT_FOUND;
    *out = json_pack("{s:i}", "v", n);
    return CK_OK;
}

/* ck_cache_get's answer as an int: the "v" field, 0 for absent, -1 for an
 * error; *from gets the source. */
static long get_v(ck_cache *k, const char *scope, const char *key, ck_source *from)
{
    json_t *v = NULL;
    ck_get_info info;
    ck_status st = ck_cache_get(k, scope, key, NULL, NULL, &v, &info);
    long r = st == CK_OK ? (long)json_integer_value(json_object_get(v, "v"))
                         : st == CK_NOT_FOUND || st == CK_MISS ? 0 : -1;
    if (from != NULL)
        *from = info.source;
    json_decref(v);
    return r;
}

static void set_v(ck_cache *k, const char *scope, const char *key, long n,
                  const char *const *tags)
{
    json_t *v = json_pack("{s:i}", "v", (json_int_t)n);
    ck_assert_int_eq(ck_cache_set(k, scope, key, v, tags), CK_OK);
    json_decref(v);
}

/* Read until the answer comes from L1 (the subscription is up and the
 * entry is in): the first read after a change goes to Redis. */
typedef struct want { ck_cache *k; const char *scope, *key; long v; } want;

static int from_l1(void *arg)
{
    want *w = arg;
    ck_source from;
    return get_v(w->k, w->scope, w->key, &from) == w->v && from == CK_SRC_L1;
}

static void wait_l1(ck_cache *k, const char *scope, const char *key, long v)
{
    want w = { k, scope, key, v };
    ck_assert_msg(ckt_wait_until(from_l1, &w, ckt_scaled(3000)), "%s never answered %ld from L1",
                  key, v);
}

/* ms until k answers v for key (polling every ms), -1 if not within 2 s */
static long ms_until(ck_cache *k, const char *scope, const char *key, long v, int64_t t0)
{
    int64_t until = t0 + ckt_scaled(2000);
    while (ckt_now_ms() < until) {
        if (get_v(k, scope, key, NULL) == v)
            return (long)(ckt_now_ms() - t0);
        ckt_sleep_ms(1);
    }
    return -1;
}

/* A hit touches no socket: the proxy sees no byte, Redis no command. */
START_TEST(hits_touch_no_socket)
{
    ckt_redis *r = ckt_redis_start(NULL);
    ckt_proxy *p = ckt_proxy_start(ckt_redis_port(r));
    ck_client *c = client_for(ckt_proxy_url(p));
    ck_cache *k = l1_cache(c, "nosock", 100, 60000, CK_KEY_SHA256);
    src s = { .exists = 1 };
    json_t *v = NULL;
    ck_get_info info;
    ck_stats st;

    ck_assert_int_eq(ck_cache_get(k, NULL, "tok", src_load, &s, &v, &info), CK_OK);
    ck_assert_int_eq(info.source, CK_SRC_LOADER);
    json_decref(v);
    wait_l1(k, NULL, "tok", 1);
    /* an absence too */
    s.exists = 0;
    ck_assert_int_eq(ck_cache_get(k, "app", "ghost", src_load, &s, &v, &info), CK_NOT_FOUND);
    want w = { k, "app", "ghost", 0 };
    ck_assert(ckt_wait_until(from_l1, &w, ckt_scaled(3000)));

    uint64_t bytes = ckt_proxy_bytes_in(p);
    ck_client_stats(c, &st);
    uint64_t l1 = st.l1_hits, hits = st.hits, nulls = st.null_hits;
    for (int i = 0; i < 1000; i++) {
        ck_assert_int_eq(ck_cache_get(k, NULL, "tok", src_load, &s, &v, &info), CK_OK);
        ck_assert_int_eq(info.source, CK_SRC_L1);
        ck_assert_int_eq(info.degraded, 0);
        ck_assert_int_eq(json_integer_value(json_object_get(v, "v")), 1);
        json_decref(v);
        ck_assert_int_eq(ck_cache_get(k, "app", "ghost", src_load, &s, &v, &info), CK_NOT_FOUND);
        ck_assert_int_eq(info.source, CK_SRC_L1);
    }
    /* the subscriber may PING meanwhile: allow that, nothing more */
    ck_assert_uint_le(ckt_proxy_bytes_in(p) - bytes, 2 * 14);
    ck_assert_int_eq(atomic_load(&s.calls), 2);
    ck_client_stats(c, &st);
    ck_assert_uint_eq(st.l1_hits - l1, 2000);
    ck_assert_uint_eq(st.hits - hits, 1000);
    ck_assert_uint_eq(st.null_hits - nulls, 1000);

    /* a value from Redis is the caller's to change: L1 keeps its own copy */
    set_v(k, NULL, "mut", 7, NULL);
    ck_assert_int_eq(ck_cache_get(k, NULL, "mut", NULL, NULL, &v, &info), CK_OK);
    ck_assert_int_eq(info.source, CK_SRC_REDIS);
    json_object_set_new(v, "v", json_integer(666));
    json_decref(v);
    wait_l1(k, NULL, "mut", 7);

    ck_cache_free(k);
    ck_client_free(c);
    ckt_proxy_stop(p);
    ckt_redis_stop(r);
}
END_TEST

/* Write an entry as the library would, but without announcing it (as if
 * its message was lost, or a writer that does not publish). */
static void raw_set(const char *url, ck_cache *k, const char *scope, const char *key, long n)
{
    ck__ref r;
    char payload[64];
    ck_assert_int_eq(ck__cache_prep(k, "test", scope, key, &r), CK_OK);
    snprintf(payload, sizeof payload, "{\"v\":{\"v\":%ld},\"x\":%lld,\"t\":[]}", n,
             (long long)(ck__wall_ms() + 600000));
    const char *argv[] = { "SET", r.entry, payload, NULL };
    redisReply *rep = ckt_cmd_at(url, argv);
    ck_assert_ptr_nonnull(rep);
    freeReplyObject(rep);
}

/* A write or invalidation by a second client reaches the first client's L1
 * within 100 ms: set, invalidate one scope, invalidate all scopes, a tag. */
START_TEST(other_clients_writes_reach_l1)
{
    const char *url = ckt_shared_url();
    ck_client *a = client_for(url), *b = client_for(url);
    ck_cache *ka = l1_cache(a, "cross", 1000, 60000, CK_KEY_SHA256);
    ck_cache *kb = l1_cache(b, "cross", 1000, 60000, CK_KEY_SHA256);
    const char *tags[] = { "tenant:9", NULL };
    const long bound = ckt_scaled(100);
    long ms;

    set_v(kb, NULL, "k1", 1, NULL);
    wait_l1(ka, NULL, "k1", 1);
    set_v(kb, NULL, "k1", 2, NULL);
    ms = ms_until(ka, NULL, "k1", 2, ckt_now_ms());
    ck_assert_msg(ms >= 0 && ms <= bound, "write reached L1 after %ld ms", ms);
    wait_l1(ka, NULL, "k1", 2);

    /* invalidate one scope, then all scopes */
    set_v(kb, "app", "k1", 3, NULL);
    wait_l1(ka, "app", "k1", 3);
    ck_assert_int_eq(ck_cache_invalidate(kb, "app", "k1"), CK_OK);
    ms = ms_until(ka, "app", "k1", 0, ckt_now_ms());
    ck_assert_msg(ms >= 0 && ms <= bound, "scope invalidation reached L1 after %ld ms", ms);
    ck_assert_int_eq(ck_cache_invalidate(kb, NULL, "k1"), CK_OK);
    ms = ms_until(ka, NULL, "k1", 0, ckt_now_ms());
    ck_assert_msg(ms >= 0 && ms <= bound, "key invalidation reached L1 after %ld ms", ms);

    /* a tag: every tagged key, in every scope, and no other */
    for (int i = 0; i < 20; i++) {
        char key[16];
        snprintf(key, sizeof key, "t%d", i);
        /* the untagged ones unannounced: a late message of their own write
         * must not be what drops them below */
        if (i < 15)
            set_v(kb, i % 2 ? "app" : NULL, key, 10 + i, tags);
        else
            raw_set(url, ka, i % 2 ? "app" : NULL, key, 10 + i);
        wait_l1(ka, i % 2 ? "app" : NULL, key, 10 + i);
    }
    ck_assert_int_eq(ck_cache_invalidate_tag(kb, "tenant:9"), CK_OK);
    int64_t t0 = ckt_now_ms();
    for (int i = 0; i < 20; i++) {
        char key[16];
        snprintf(key, sizeof key, "t%d", i);
        if (i < 15) {
            ms = ms_until(ka, i % 2 ? "app" : NULL, key, 0, t0);
            ck_assert_msg(ms >= 0 && ms <= bound, "tag invalidation of %s after %ld ms", key, ms);
        } else {
            ck_source from;
            ck_assert_int_eq(get_v(ka, i % 2 ? "app" : NULL, key, &from), 10 + i);
            ck_assert_int_eq(from, CK_SRC_L1); /* untagged: still in L1 */
        }
    }
    /* the writer's own L1 is current at once */
    set_v(ka, NULL, "own", 1, NULL);
    wait_l1(ka, NULL, "own", 1);
    set_v(ka, NULL, "own", 2, NULL);
    ck_assert_int_eq(get_v(ka, NULL, "own", NULL), 2);

    ck_cache_free(ka);
    ck_cache_free(kb);
    ck_client_free(a);
    ck_client_free(b);
}
END_TEST

/* Tenant invalidation through the token layer, in a hashed and in the
 * plain (Dify) key mode. */
static ck_status tok_load(void *user, const char *token, const char *scope, ck_token **out)
{
    (void)scope;
    ck_token *t = calloc(1, sizeof *t);
    t->id = strdup(token);
    t->tenant_id = strdup((const char *)user);
    t->type = strdup("app");
    *out = t;
    return CK_OK;
}

static int token_cached(ck_cache *k, const char *tok)
{
    ck_token *t = NULL;
    ck_status st = ck_token_get(k, tok, NULL, NULL, NULL, &t);
    ck_token_free(t);
    return st == CK_OK;
}

static int tokens_gone(void *arg)
{
    ck_cache *k = arg;
    return !token_cached(k, "tokA") && !token_cached(k, "tokB");
}

START_TEST(tenant_invalidation_reaches_l1)
{
    const char *url = ckt_shared_url();
    ck_key_hash modes[2] = { CK_KEY_SHA256, CK_KEY_PLAIN };
    for (int m = 0; m < 2; m++) {
        ck_client *a = client_for(url), *b = client_for(url);
        const char *name = m == 0 ? "tokl1" : "tokl1plain";
        ck_cache *ka = l1_cache(a, name, 100, 60000, modes[m]);
        ck_cache *kb = l1_cache(b, name, 100, 60000, modes[m]);
        ck_token *t = NULL;
        ck_stats s0, s1;
        char ten1[] = "ten1", ten2[] = "ten2";

        ck_assert_int_eq(ck_token_get(kb, "tokA", NULL, tok_load, ten1, &t), CK_OK);
        ck_token_free(t);
        ck_assert_int_eq(ck_token_get(kb, "tokB", NULL, tok_load, ten1, &t), CK_OK);
        ck_token_free(t);
        ck_assert_int_eq(ck_token_get(kb, "tokC", NULL, tok_load, ten2, &t), CK_OK);
        ck_token_free(t);
        /* into a's L1: reads until they come from there */
        for (int i = 0; i < 3; i++) {
            const char *tok = i == 0 ? "tokA" : i == 1 ? "tokB" : "tokC";
            int64_t until = ckt_now_ms() + ckt_scaled(3000);
            for (;;) {
                ck_client_stats(a, &s0);
                ck_assert(token_cached(ka, tok));
                ck_client_stats(a, &s1);
                if (s1.l1_hits > s0.l1_hits)
                    break;
                ck_assert(ckt_now_ms() < until);
                ckt_sleep_ms(2);
            }
        }
        ck_assert_int_eq(ck_token_invalidate_tenant(kb, "ten1"), CK_OK);
        int64_t t0 = ckt_now_ms();
        ck_assert(ckt_wait_until(tokens_gone, ka, ckt_scaled(100) + 50));
        ck_assert_int_le(ckt_now_ms() - t0, ckt_scaled(100));
        ck_assert(token_cached(ka, "tokC")); /* the other tenant stays */
        ck_cache_free(ka);
        ck_cache_free(kb);
        ck_client_free(a);
        ck_client_free(b);
    }
}
END_TEST

/* A killed subscription leaves no stale entry beyond the reconnect: a
 * change nobody announced (a raw SET, as if its message was lost) is what
 * the first read after the reconnect sees. */
static int sub_count(void *url)
{
    const char *argv[] = { "CLIENT", "LIST", "TYPE", "pubsub", NULL };
    redisReply *r = ckt_cmd_at(url, argv);
    int n = 0;
    if (r != NULL && r->type == REDIS_REPLY_STRING)
        for (const char *p = r->str; (p = strstr(p, "name=ck:")) != NULL; p++)
            n++;
    if (r != NULL)
        freeReplyObject(r);
    return n;
}

static int has_sub(void *url) { return sub_count(url) == 1; }

START_TEST(killed_subscription_leaves_nothing_stale)
{
    ckt_redis *r = ckt_redis_start(NULL);
    const char *url = ckt_redis_url(r);
    ck_client *a = client_for(url);
    ck_cache *ka = l1_cache(a, "killsub", 100, 600000, CK_KEY_SHA256);
    ck_source from;

    set_v(ka, NULL, "k", 1, NULL);
    wait_l1(ka, NULL, "k", 1);
    /* control: an unannounced change is not seen while subscribed (L1
     * answers without asking Redis), which is what makes this test bite */
    raw_set(url, ka, NULL, "k", 2);
    for (int i = 0; i < 50; i++)
        ck_assert_int_eq(get_v(ka, NULL, "k", &from), 1);
    ck_assert_int_eq(from, CK_SRC_L1);

    for (int round = 0; round < 3; round++) {
        const char *kill[] = { "CLIENT", "KILL", "TYPE", "pubsub", NULL };
        redisReply *rep = ckt_cmd_at(url, kill);
        ck_assert_ptr_nonnull(rep);
        ck_assert_int_ge(rep->integer, 1);
        freeReplyObject(rep);
        raw_set(url, ka, NULL, "k", 3 + round);
        /* from the first read after the drop is noticed on, the answer
         * is the new value and never the old one again */
        long first = ms_until(ka, NULL, "k", 3 + round, ckt_now_ms());
        ck_assert_msg(first >= 0, "round %d: the unannounced change never showed", round);
        ck_assert(ckt_wait_until(has_sub, (void *)url, ckt_scaled(3000)));
        wait_l1(ka, NULL, "k", 3 + round); /* subscribed again, L1 answers again */
        for (int i = 0; i < 20; i++)
            ck_assert_int_eq(get_v(ka, NULL, "k", NULL), 3 + round);
    }
    ck_cache_free(ka);
    ck_client_free(a);
    ckt_redis_stop(r);
}
END_TEST

/* While Redis is stopped (SIGSTOP) or gone (killed), L1 keeps answering
 * what it holds; past l1_ttl_ms only within stale_ttl_ms, marked stale. */
START_TEST(l1_serves_while_redis_is_down)
{
    ckt_redis *r = ckt_redis_start(NULL);
    ck_client *a = client_for(ckt_redis_url(r));
    ck_cache_options o;
    ck_cache *k = NULL;
    json_t *v = NULL;
    ck_get_info info;
    src s = { .exists = 1 };
    const int L1_TTL = ckt_scaled(300);

    ck_cache_options_init(&o);
    o.name = "down";
    o.l1_max_entries = 100;
    o.l1_ttl_ms = L1_TTL;
    o.stale_ttl_ms = 60000;
    ck_assert_int_eq(ck_cache_new(a, &o, &k), CK_OK);
    set_v(k, NULL, "k", 5, NULL);
    wait_l1(k, NULL, "k", 5);

    /* stopped: fresh L1 hits, no waiting on the dead server */
    ckt_redis_pause(r);
    int64_t t0 = ckt_now_ms();
    for (int i = 0; i < 100; i++) {
        ck_assert_int_eq(ck_cache_get(k, NULL, "k", src_load, &s, &v, &info), CK_OK);
        ck_assert_int_eq(info.source, CK_SRC_L1);
        json_decref(v);
    }
    ck_assert_int_le(ckt_now_ms() - t0, ckt_scaled(50));
    ckt_redis_resume(r);
    wait_l1(k, NULL, "k", 5);

    /* killed: still answered from L1 (the subscription is gone, so every
     * call tries Redis first and falls back), degraded */
    ckt_redis_kill(r);
    for (int i = 0; i < 20; i++) {
        ck_assert_int_eq(ck_cache_get(k, NULL, "k", src_load, &s, &v, &info), CK_OK);
        ck_assert_int_eq(info.source, CK_SRC_L1);
        ck_assert_int_eq(json_integer_value(json_object_get(v, "v")), 5);
        json_decref(v);
    }
    /* past l1_ttl_ms: served stale (stale_ttl_ms), the loader not asked */
    ckt_sleep_ms(L1_TTL + 50);
    ck_assert_int_eq(ck_cache_get(k, NULL, "k", src_load, &s, &v, &info), CK_OK);
    ck_assert_int_eq(info.source, CK_SRC_L1);
    ck_assert_int_eq(info.stale, 1);
    ck_assert_int_eq(info.degraded, 1);
    json_decref(v);
    ck_assert_int_eq(atomic_load(&s.calls), 0);

    /* back: current values again. The restarted server is empty, and
     * the subscriber's return cleared L1, so degraded answers come from
     * the loader until the breaker lets calls through again. */
    ckt_redis_restart(r);
    want w = { k, NULL, "k", 0 };
    int64_t until = ckt_now_ms() + ckt_scaled(5000);
    long got = -1;
    while (ckt_now_ms() < until) {
        if (ck_cache_get(k, NULL, "k", src_load, &s, &v, &info) == CK_OK && !info.degraded) {
            got = (long)json_integer_value(json_object_get(v, "v"));
            json_decref(v);
            break;
        }
        json_decref(v);
        v = NULL;
        ckt_sleep_ms(20);
    }
    ck_assert_int_eq(got, atomic_load(&s.calls)); /* the last load is the cached one */
    w.v = got;
    ck_assert(ckt_wait_until(from_l1, &w, ckt_scaled(3000)));
    ck_cache_free(k);
    ck_client_free(a);
    ckt_redis_stop(r);
}
END_TEST

/* Memory is bounded by l1_max_entries, whatever is read. */
START_TEST(bounded_by_max_entries)
{
    ck_client *c = client_for(ckt_shared_url());
    ck_cache *k = l1_cache(c, "bound", 100, 60000, CK_KEY_SHA256);
    char key[32];

    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "b%d", i);
        set_v(k, NULL, key, i + 1, NULL);
    }
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < 1000; i++) {
            snprintf(key, sizeof key, "b%d", i);
            ck_assert_int_eq(get_v(k, NULL, key, NULL), i + 1);
            ck_assert_uint_le(ck__l1_count(k->l1), 100);
        }
    ck_assert_uint_ge(ck__l1_count(k->l1), 50); /* and it is used */
    /* the most recent are the ones kept */
    wait_l1(k, NULL, "b999", 1000);
    ck_cache_free(k);

    /* smaller than the shard count: still exact */
    k = l1_cache(c, "bound3", 3, 60000, CK_KEY_SHA256);
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof key, "b%d", i);
        set_v(k, NULL, key, i + 1, NULL);
        (void)get_v(k, NULL, key, NULL);
        (void)get_v(k, NULL, key, NULL);
        ck_assert_uint_le(ck__l1_count(k->l1), 3);
    }
    ck_cache_free(k);

    /* an entry read between insertions is kept while a scan of 300 other
     * keys goes through (second chance; first-in-first-out evicts it
     * within ~25 insertions of its shard) */
    k = l1_cache(c, "bound-hot", 100, 60000, CK_KEY_SHA256);
    set_v(k, NULL, "hot", 7, NULL);
    wait_l1(k, NULL, "hot", 7);
    for (int i = 0; i < 300; i++) {
        ck_source from = CK_SRC_NONE;
        snprintf(key, sizeof key, "scan%d", i);
        set_v(k, NULL, key, i + 1, NULL);
        ck_assert_int_eq(get_v(k, NULL, key, NULL), i + 1); /* now in L1 */
        ck_assert_int_eq(get_v(k, NULL, "hot", &from), 7);
        ck_assert_msg(from == CK_SRC_L1, "the hot entry was evicted after %d other keys", i + 1);
        ck_assert_uint_le(ck__l1_count(k->l1), 100);
    }
    ck_cache_free(k);
    ck_client_free(c);
}
END_TEST

/* While another client writes a sequence (with invalidations between),
 * readers race to refill L1 with what they read. The last write reaches
 * every reader within 100 ms, and after that no reader ever sees an older
 * value: no read that started before an invalidation can put its answer
 * back into L1 after it (the gen rule of l1.h). */
typedef struct race {
    ck_cache *k;
    long final;
    _Atomic int stop, phase;
    _Atomic long stale, reads;
} race;

static void *reader_main(void *arg)
{
    race *rc = arg;
    while (!atomic_load(&rc->stop)) {
        long v = get_v(rc->k, NULL, "seq", NULL);
        if (atomic_load(&rc->phase) == 2 && v != rc->final)
            atomic_fetch_add(&rc->stale, 1);
        atomic_fetch_add(&rc->reads, 1);
    }
    return NULL;
}

START_TEST(no_stale_refill_after_invalidation)
{
    const char *url = ckt_shared_url();
    ck_client *a = client_for(url), *b = client_for(url);
    ck_cache *ka = l1_cache(a, "race", 1000, 60000, CK_KEY_SHA256);
    ck_cache *kb = l1_cache(b, "race", 1000, 60000, CK_KEY_SHA256);
    const int N = ckt_under_valgrind() ? 50 : 500;
    /* Valgrind runs one thread at a time, so the subscriber gets a sixth
     * of one core against four spinning readers and the writer: a loaded
     * CI machine saw 1093 ms there. The 100 ms bound of the issue is
     * checked in the native, ASan and TSan builds; under valgrind this
     * test checks what it can (no older value once the bound passed). */
    const long bound = ckt_under_valgrind() ? 5000 : ckt_scaled(100);
    race rc = { .k = ka, .final = N };
    pthread_t th[4];

    set_v(kb, NULL, "seq", 1, NULL);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, reader_main, &rc), 0);
    for (int n = 2; n <= N; n++) {
        set_v(kb, NULL, "seq", n, NULL);
        if (n % 7 == 0) {
            ck_assert_int_eq(ck_cache_invalidate(kb, NULL, "seq"), CK_OK);
            set_v(kb, NULL, "seq", n, NULL);
        }
    }
    int64_t t_last = ckt_now_ms();
    long ms = ms_until(ka, NULL, "seq", N, t_last);
    /* the bound under test: `bound` after the last write, nothing older */
    int64_t wait = t_last + bound - ckt_now_ms();
    if (wait > 0)
        ckt_sleep_ms((int)wait);
    atomic_store(&rc.phase, 2);
    ckt_sleep_ms(ckt_scaled(200));
    atomic_store(&rc.stop, 1);
    /* asserted only once the readers are joined: a failing check leaves
     * the test at once, and under CK_FORK=no (valgrind) readers still
     * running on `rc`, a dead stack frame, then crash the runner */
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    ck_assert_msg(ms >= 0 && ms <= bound, "last write seen after %ld ms", ms);
    ck_assert_int_eq(atomic_load(&rc.stale), 0);
    ck_assert_int_gt(atomic_load(&rc.reads), N);
    wait_l1(ka, NULL, "seq", N);
    ck_cache_free(ka);
    ck_cache_free(kb);
    ck_client_free(a);
    ck_client_free(b);
}
END_TEST

/* Messages from anywhere (the channel is open to any client with PUBLISH)
 * never crash the subscriber: what does not parse clears L1, which is safe. */
START_TEST(hostile_messages_clear_l1)
{
    const char *url = ckt_shared_url();
    ck_client *a = client_for(url);
    ck_cache *ka = l1_cache(a, "hostile", 100, 60000, CK_KEY_SHA256);
    const char *msgs[] = { "", "x", "0123456789abcdef", "0123456789abcdef 1 k nothex",
                           "0123456789abcdef 1 e not-an-entry-key", "0123456789abcdef 1 z data",
                           "0123456789abcdef  k ", "\xff\xfe\n\n\n" };

    for (size_t i = 0; i < sizeof msgs / sizeof msgs[0]; i++) {
        set_v(ka, NULL, "h", (long)i + 1, NULL);
        wait_l1(ka, NULL, "h", (long)i + 1);
        ck_assert_uint_eq(ck__l1_count(ka->l1), 1);
        ck__l1_apply(ka, msgs[i], strlen(msgs[i]));
        ck_assert_uint_eq(ck__l1_count(ka->l1), 0);
    }
    /* and over the wire, from another connection */
    set_v(ka, NULL, "h", 100, NULL);
    wait_l1(ka, NULL, "h", 100);
    const char *argv[] = { "PUBLISH", "ck:inv:hostile", "garbage \x01\x02", NULL };
    redisReply *r = ckt_cmd_at(url, argv);
    ck_assert_ptr_nonnull(r);
    freeReplyObject(r);
    int64_t until = ckt_now_ms() + ckt_scaled(1000);
    while (ck__l1_count(ka->l1) != 0 && ckt_now_ms() < until)
        ckt_sleep_ms(1);
    ck_assert_uint_eq(ck__l1_count(ka->l1), 0);
    wait_l1(ka, NULL, "h", 100);
    ck_cache_free(ka);
    ck_client_free(a);
}
END_TEST

/* Two L1 answers of one key, as json_t pointers (references the caller
 * drops), both checked to come from L1. */
typedef struct pair_arg { ck_cache *k; json_t *v[2]; } pair_arg;

static void *get_pair(void *arg)
{
    pair_arg *p = arg;
    for (int i = 0; i < 2; i++) {
        ck_get_info info;
        ck_assert_int_eq(ck_cache_get(p->k, NULL, "shared", NULL, NULL, &p->v[i], &info), CK_OK);
        ck_assert_int_eq(info.source, CK_SRC_L1);
    }
    return NULL;
}

START_TEST(threads_share_no_reference_count)
{
    /* Every hit takes a reference on the value it returns: had two threads
     * been given the same json_t, each hit would write the reference count
     * the other core just wrote. A thread gets the same value on every hit,
     * another thread an equal value of its own; both stay valid after the
     * entry is replaced, and the cache's end frees every copy (ASan,
     * valgrind). */
    ck_client *a = client_for(ckt_shared_url());
    ck_cache *ka = l1_cache(a, "copies", 100, 60000, CK_KEY_SHA256);
    pair_arg mine = { ka, { NULL, NULL } }, other = { ka, { NULL, NULL } };
    pthread_t th;

    set_v(ka, NULL, "shared", 7, NULL);
    wait_l1(ka, NULL, "shared", 7);
    get_pair(&mine);
    ck_assert_int_eq(pthread_create(&th, NULL, get_pair, &other), 0);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_ptr_eq(mine.v[0], mine.v[1]);
    ck_assert_ptr_eq(other.v[0], other.v[1]);
    ck_assert_ptr_ne(mine.v[0], other.v[0]);
    ck_assert(json_equal(mine.v[0], other.v[0]));

    set_v(ka, NULL, "shared", 8, NULL); /* replaces the entry and its copies */
    wait_l1(ka, NULL, "shared", 8);
    ck_assert_int_eq(json_integer_value(json_object_get(mine.v[0], "v")), 7);
    ck_assert_int_eq(json_integer_value(json_object_get(other.v[0], "v")), 7);
    for (int i = 0; i < 2; i++) {
        json_decref(mine.v[i]);
        json_decref(other.v[i]);
    }
    /* a second round on the new entry: copies again, freed with the cache */
    get_pair(&mine);
    ck_assert_int_eq(pthread_create(&th, NULL, get_pair, &other), 0);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_ptr_ne(mine.v[0], other.v[0]);
    ck_assert_int_eq(json_integer_value(json_object_get(other.v[1], "v")), 8);
    for (int i = 0; i < 2; i++) {
        json_decref(mine.v[i]);
        json_decref(other.v[i]);
    }
    ck_cache_free(ka);
    ck_client_free(a);
}
END_TEST

/* The tier's tables start small and double as entries come (l1.c): after
 * several doublings every entry is still found by (scope, key) and by its
 * key hash, and nothing else is. The tier alone, no Redis. */
START_TEST(tables_grow_and_stay_exact)
{
    enum { N = 5000 };
    ck__l1 *l = ck__l1_new(100000);
    char key[32], kh[65];
    int64_t far = ck__l1_now() + (int64_t)3600 * 1000000000;
    ck_assert_ptr_nonnull(l);
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "k%d", i);
        snprintf(kh, sizeof kh, "%016x%048d", (unsigned)i * 2654435761u, i);
        ck__l1_put(l, ck__l1_gen(l), "s", 1, key, strlen(key), kh, json_integer(i), far, far);
    }
    ck_assert_uint_eq(ck__l1_count(l), N);
    /* by key hash: every even entry goes */
    for (int i = 0; i < N; i += 2) {
        snprintf(kh, sizeof kh, "%016x%048d", (unsigned)i * 2654435761u, i);
        ck__l1_drop_kh(l, kh);
    }
    ck_assert_uint_eq(ck__l1_count(l), N / 2);
    for (int i = 0; i < N; i++) {
        json_t *v = NULL;
        int stale = -1, found;
        snprintf(key, sizeof key, "k%d", i);
        found = ck__l1_get(l, "s", 1, key, strlen(key), ck__l1_now(), 0, &v, &stale);
        ck_assert_int_eq(found, i % 2);
        if (found) {
            ck_assert_int_eq(json_integer_value(v), i);
            ck_assert_int_eq(stale, 0);
        }
        json_decref(v);
        /* the same bytes split otherwise are another entry */
        ck_assert_int_eq(ck__l1_get(l, "sk", 2, key + 1, strlen(key) - 1, ck__l1_now(), 0, &v,
                                    &stale), 0);
    }
    ck__l1_free(l);
}
END_TEST

Suite *ckt_suite(void)
{
    Suite *s = suite_create("l1");
    TCase *tc = tcase_create("l1");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, hits_touch_no_socket);
    tcase_add_test(tc, other_clients_writes_reach_l1);
    tcase_add_test(tc, tenant_invalidation_reaches_l1);
    tcase_add_test(tc, killed_subscription_leaves_nothing_stale);
    tcase_add_test(tc, l1_serves_while_redis_is_down);
    tcase_add_test(tc, bounded_by_max_entries);
    tcase_add_test(tc, no_stale_refill_after_invalidation);
    tcase_add_test(tc, hostile_messages_clear_l1);
    tcase_add_test(tc, threads_share_no_reference_count);
    tcase_add_test(tc, tables_grow_and_stay_exact);
    suite_add_tcase(s, tc);
    return s;
}

#include "ckt_main.h"
