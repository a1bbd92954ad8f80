/* Security checks (docs/security.md):
 *   - secrets (URL password, the cache's HMAC key, tokens given to
 *     ck_token_get) never reach a log line at CK_LOG_DEBUG, an error string,
 *     the Prometheus text, a Redis key or a stored value, on the success
 *     paths and on the failure paths (bad password, server down, bad URL);
 *   - distinct inputs never share a Redis key: every key builder of the
 *     library (cache entries, scope and tag indexes, stampede locks, plain
 *     caches, locks and fences, rate-limit and slot keys) over adversarial
 *     and seeded random inputs, and the keys a cache actually writes;
 *   - lib/ builds every Redis command with explicit lengths (the *Argv
 *     forms of hiredis only, read from the source text);
 *   - every Lua script is a static text whose SHA1 is pinned here: a change
 *     to a script is a deliberate change to this file. */
#define _GNU_SOURCE
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckt.h"
#include "cache_internal.h"
#include "lock_internal.h"
#include "rate_internal.h"

/* ---- helpers ---- */

static int ckt_has(const char *hay, size_t len, const char *needle, size_t nlen)
{
    return hay != NULL && nlen > 0 && memmem(hay, len, needle, nlen) != NULL;
}

static void ckt_hex(const void *p, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[b[i] >> 4];
        out[2 * i + 1] = hex[b[i] & 15];
    }
    out[2 * n] = '\0';
}

/* Secrets, each also looked for hex-encoded (a careless debug line might
 * print bytes that way). */
#define SEC_PW "pw-S3CR3T-7d1e9a"
#define SEC_PW_WRONG "pw-WR0NG-S3CR3T-42c"
#define SEC_PW_BADURL "pw-BADURL-S3CR3T-b7"
#define SEC_HMAC "hk-S3CR3T-0123456789abcdef"
#define SEC_TOKEN "app-S3CR3T-tok-4f2a9c1e"
#define SEC_TOKEN2 "app-S3CR3T-miss-88d0b3"

static const char *const sec_all[] = { SEC_PW, SEC_PW_WRONG, SEC_PW_BADURL, SEC_HMAC,
                                       SEC_TOKEN, SEC_TOKEN2, NULL };

static void assert_no_secret(const char *where, const char *s, size_t len)
{
    for (int i = 0; sec_all[i] != NULL; i++) {
        char hex[128];
        size_t n = strlen(sec_all[i]);
        ckt_hex(sec_all[i], n, hex);
        ck_assert_msg(!ckt_has(s, len, sec_all[i], n), "secret %s found in %s:\n%.*s",
                      sec_all[i], where, (int)(len > 4000 ? 4000 : len), s);
        ck_assert_msg(!ckt_has(s, len, hex, 2 * n), "hex of secret %s found in %s", sec_all[i],
                      where);
    }
}

static redisReply *cmd(const char *url, const char *const *argv)
{
    redisReply *r = ckt_cmd_at(url, argv);
    ck_assert_msg(r != NULL, "admin command %s failed", argv[0]);
    ck_assert_msg(r->type != REDIS_REPLY_ERROR, "%s: %s", argv[0], r->str);
    return r;
}

static void cmd_ok(const char *url, const char *const *argv)
{
    freeReplyObject(cmd(url, argv));
}

/* Every key of the server (SCAN over admin connections), each passed to fn. */
static int scan_keys(const char *url, const char *match, void (*fn)(void *, const redisReply *),
                     void *user)
{
    char cursor[32] = "0";
    int n = 0;
    do {
        const char *argv[] = { "SCAN", cursor, "MATCH", match, "COUNT", "1000", NULL };
        redisReply *r = cmd(url, argv);
        ck_assert(r->type == REDIS_REPLY_ARRAY && r->elements == 2);
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        for (size_t i = 0; i < r->element[1]->elements; i++) {
            if (fn != NULL)
                fn(user, r->element[1]->element[i]);
            n++;
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    return n;
}

/* The key's name and its whole value (strings, set members, hash fields and
 * values, sorted set members) hold no secret. */
static void key_has_no_secret(void *user, const redisReply *k)
{
    const char *url = user;
    const char *type[] = { "TYPE", k->str, NULL };
    redisReply *t;
    assert_no_secret("a redis key", k->str, k->len);
    t = cmd(url, type);
    const char *get[] = { "GET", k->str, NULL };
    const char *smembers[] = { "SMEMBERS", k->str, NULL };
    const char *hgetall[] = { "HGETALL", k->str, NULL };
    const char *zrange[] = { "ZRANGE", k->str, "0", "-1", NULL };
    const char *const *q = strcmp(t->str, "string") == 0 ? get
                           : strcmp(t->str, "set") == 0  ? smembers
                           : strcmp(t->str, "hash") == 0 ? hgetall
                           : strcmp(t->str, "zset") == 0 ? zrange
                                                         : NULL;
    freeReplyObject(t);
    if (q == NULL)
        return;
    redisReply *v = cmd(url, q);
    if (v->type == REDIS_REPLY_STRING)
        assert_no_secret("a redis value", v->str, v->len);
    for (size_t i = 0; v->type == REDIS_REPLY_ARRAY && i < v->elements; i++)
        assert_no_secret("a redis value", v->element[i]->str, v->element[i]->len);
    freeReplyObject(v);
}

static ck_status sec_loader(void *user, const char *key, json_t **out)
{
    (void)key;
    if (user != NULL)
        return CK_E_LOADER; /* "fail": exercises the stampede fail mark */
    *out = json_pack("{s:s}", "plan", "pro");
    return CK_OK;
}

static ck_status sec_token_loader(void *user, const char *token, const char *scope, ck_token **out)
{
    ck_token *t;
    (void)scope;
    if (user != NULL || strcmp(token, SEC_TOKEN) != 0)
        return CK_NOT_FOUND;
    t = calloc(1, sizeof *t);
    t->id = strdup("id-1");
    t->app_id = strdup("app-1");
    t->tenant_id = strdup("tenant-1");
    t->type = strdup("app");
    t->token = strdup(token);
    t->created_at = 1700000000;
    *out = t;
    return CK_OK;
}

static ck_client *sec_client(const char *url, ckt_log *lg)
{
    ck_options o;
    ck_client *c = NULL;
    ckt_options(&o, url);
    o.log = ckt_log_fn;
    o.log_user = lg;
    o.log_level = CK_LOG_DEBUG;
    o.breaker_failures = 1000; /* every call reaches the failing server */
    ck_assert_int_eq(ck_client_new(&o, &c), CK_OK);
    return c;
}

static ck_cache *sec_cache(ck_client *c, const char *name, size_t l1)
{
    ck_cache_options co;
    ck_cache *k = NULL;
    ck_cache_options_init(&co);
    co.name = name;
    co.key_hash = CK_KEY_HMAC_SHA256;
    co.hmac_key = SEC_HMAC;
    co.hmac_key_len = strlen(SEC_HMAC);
    co.l1_max_entries = l1;
    co.stale_ttl_ms = 60000;
    ck_assert_int_eq(ck_cache_new(c, &co, &k), CK_OK);
    return k;
}

/* Every call that may take a secret, once; `up`: Redis answers. */
static void sec_workload(ck_client *c, int up)
{
    const char *tags[] = { "tenant-1", NULL };
    const char *keys[] = { SEC_TOKEN, SEC_TOKEN2 };
    json_t *v = NULL, *mv[2] = { NULL, NULL };
    ck_status mst[2];
    ck_token *t = NULL;
    ck_lock *lk = NULL;
    ck_rate_rule rule = { CK_RL_GCRA, 10, 1000, 0 };
    ck_rate_result rr;
    ck_cache *k = sec_cache(c, "sec", 0), *k1 = sec_cache(c, "secl1", 64);
    ck_status st;

    ck_client_ping(c);
    for (int i = 0; i < 2; i++) {
        st = ck_cache_get(k, "app", SEC_TOKEN, sec_loader, NULL, &v, NULL);
        if (up)
            ck_assert_int_eq(st, CK_OK);
        json_decref(v);
        v = NULL;
        ck_cache_get(k1, NULL, SEC_TOKEN, sec_loader, NULL, &v, NULL);
        json_decref(v);
        v = NULL;
    }
    ck_cache_get(k, "app", SEC_TOKEN2, sec_loader, (void *)1, &v, NULL); /* loader fails */
    ck_cache_get(k, "app", SEC_TOKEN2, NULL, NULL, &v, NULL);
    json_t *val = json_pack("{s:s}", "plan", "free");
    ck_cache_set(k, "app", SEC_TOKEN2, val, tags);
    ck_cache_set(k1, NULL, SEC_TOKEN2, val, tags);
    json_decref(val);
    ck_cache_mget(k, "app", keys, 2, mv, mst);
    json_decref(mv[0]);
    json_decref(mv[1]);
    ck_cache_invalidate(k, "app", SEC_TOKEN2);
    ck_cache_invalidate(k1, NULL, SEC_TOKEN2);
    ck_cache_invalidate_tag(k, "tenant-1");

    for (int i = 0; i < 2; i++) {
        st = ck_token_get(k, SEC_TOKEN, "tok", sec_token_loader, NULL, &t);
        if (up)
            ck_assert_int_eq(st, CK_OK);
        if (st == CK_OK)
            ck_assert_str_eq(t->token, SEC_TOKEN);
        ck_token_free(t);
        t = NULL;
    }
    st = ck_token_get(k, SEC_TOKEN2, "tok", sec_token_loader, NULL, &t);
    ck_assert_int_ne(st, CK_OK);
    ck_token_get(k, SEC_TOKEN2, "tok", sec_token_loader, (void *)1, &t);
    if (up)
        ck_assert_int_eq(ck_token_invalidate_tenant(k, "tenant-1"), CK_OK);
    else
        ck_token_invalidate_tenant(k, "tenant-1");
    /* refill, so that the stored record is there to inspect */
    ck_token_get(k, SEC_TOKEN, "tok", sec_token_loader, NULL, &t);
    ck_token_free(t);

    if (ck_lock_acquire(c, "sec-lock", 5000, 0, &lk) == CK_OK)
        ck_lock_release(lk);
    ck_rate_check(c, "sec-rate", &rule, 1, 1, &rr);

    ck_cache_free(k1);
    ck_cache_free(k);
}

static void assert_outputs_clean(ck_client *c, ckt_log *lg)
{
    ck_stats s;
    char prom[8192];
    assert_no_secret("the log", lg->buf, lg->len);
    for (int st = -20; st <= 20; st++) {
        const char *e = ck_strerror((ck_status)st);
        ck_assert_ptr_nonnull(e);
        assert_no_secret("ck_strerror", e, strlen(e));
    }
    if (c != NULL) {
        ck_client_stats(c, &s);
        int n = ck_stats_format_prometheus(&s, prom, sizeof prom);
        ck_assert(n > 0 && (size_t)n < sizeof prom);
        assert_no_secret("the prometheus text", prom, (size_t)n);
    }
}

START_TEST(secrets_absent_on_success_and_failure)
{
    ckt_redis *srv = ckt_redis_start(NULL);
    const char *setuser[] = { "ACL", "SETUSER", "cksec", "on", ">" SEC_PW, "~*", "&*", "+@all",
                              NULL };
    char url[256];
    ckt_log lg;
    ck_client *c;

    ckt_log_init(&lg);
    cmd_ok(ckt_redis_url(srv), setuser);

    /* success: everything works, then logs, errors, metrics, keys, values
     * and every Pub/Sub message (the L1 invalidations) */
    struct timeval tv = { ckt_under_valgrind() ? 20 : 5, 0 };
    redisContext *sub = redisConnectWithTimeout("127.0.0.1", ckt_redis_port(srv), tv);
    ck_assert(sub != NULL && sub->err == 0);
    redisSetTimeout(sub, tv);
    redisReply *sr = redisCommand(sub, "PSUBSCRIBE *");
    ck_assert(sr != NULL && sr->type == REDIS_REPLY_ARRAY);
    freeReplyObject(sr);
    snprintf(url, sizeof url, "redis://cksec:" SEC_PW "@127.0.0.1:%d/0", ckt_redis_port(srv));
    c = sec_client(url, &lg);
    sec_workload(c, 1);
    /* a last message of our own: everything published before it has come */
    static const char *const endmsg[] = { "PUBLISH", "ckt:end", "end", NULL };
    cmd_ok(ckt_redis_url(srv), endmsg);
    int msgs = 0;
    for (;;) {
        void *m = NULL;
        ck_assert_msg(redisGetReply(sub, &m) == REDIS_OK, "pub/sub: %s", sub->errstr);
        redisReply *mr = m;
        ck_assert(mr->type == REDIS_REPLY_ARRAY && mr->elements == 4);
        if (strcmp(mr->element[2]->str, "ckt:end") == 0) {
            freeReplyObject(mr);
            break;
        }
        assert_no_secret("a pub/sub channel", mr->element[2]->str, mr->element[2]->len);
        assert_no_secret("a pub/sub message", mr->element[3]->str, mr->element[3]->len);
        msgs++;
        freeReplyObject(mr);
    }
    redisFree(sub);
    ck_assert_int_gt(msgs, 3);
    ck_assert_msg(lg.count > 0, "no debug line logged: the capture does not work");
    assert_outputs_clean(c, &lg);
    ck_assert_int_gt(scan_keys(ckt_redis_url(srv), "*", key_has_no_secret,
                               (void *)ckt_redis_url(srv)), 3);
    ck_client_free(c);

    /* a wrong password: every call fails (WRONGPASS), nothing leaks */
    ckt_log_reset(&lg);
    snprintf(url, sizeof url, "redis://cksec:" SEC_PW_WRONG "@127.0.0.1:%d/0",
             ckt_redis_port(srv));
    c = sec_client(url, &lg);
    ck_assert_int_ne(ck_client_ping(c), CK_OK);
    sec_workload(c, 0);
    ck_assert_msg(ckt_log_has(&lg, "WRONGPASS") || ckt_log_has(&lg, "auth"),
                  "the failed AUTH is not logged:\n%s", lg.buf);
    assert_outputs_clean(c, &lg);
    ck_client_free(c);

    /* the password-only form (requirepass-style AUTH <password>) */
    ckt_log_reset(&lg);
    snprintf(url, sizeof url, "redis://:" SEC_PW_WRONG "@127.0.0.1:%d/0", ckt_redis_port(srv));
    c = sec_client(url, &lg);
    ck_assert_int_ne(ck_client_ping(c), CK_OK);
    assert_outputs_clean(c, &lg);
    ck_client_free(c);

    /* the server goes away under a working client */
    ckt_log_reset(&lg);
    snprintf(url, sizeof url, "redis://cksec:" SEC_PW "@127.0.0.1:%d/0", ckt_redis_port(srv));
    c = sec_client(url, &lg);
    ck_assert_int_eq(ck_client_ping(c), CK_OK);
    ckt_redis_kill(srv);
    ck_assert_int_eq(ck_client_ping(c), CK_E_UNAVAILABLE);
    sec_workload(c, 0);
    assert_outputs_clean(c, &lg);
    ck_client_free(c);
    ckt_redis_stop(srv);

    /* URLs the parser refuses, each carrying a password */
    static const char *const bad[] = {
        "redis://cksec:" SEC_PW_BADURL "@127.0.0.1:notaport/0",
        "redis://cksec:" SEC_PW_BADURL "@127.0.0.1:99999/0",
        "redis://cksec:" SEC_PW_BADURL "@[::1/0",
        "redis://cksec:" SEC_PW_BADURL "@127.0.0.1:6380/db",
        "redis://cksec:" SEC_PW_BADURL "@127.0.0.1:6380/0?x=1",
        "redis://cksec:" SEC_PW_BADURL "@",
        "redis://cksec:" SEC_PW_BADURL "@127.0.0.1:6380/0\x01",
        "rediss://cksec:" SEC_PW_BADURL "@127.0.0.1:6380/0",
        "http://cksec:" SEC_PW_BADURL "@127.0.0.1:6380/0",
        "unix://cksec:" SEC_PW_BADURL "@",
        NULL,
    };
    for (int i = 0; bad[i] != NULL; i++) {
        ck_options o;
        ck_client *bc = NULL;
        ckt_log_reset(&lg);
        ckt_options(&o, bad[i]);
        o.log = ckt_log_fn;
        o.log_user = &lg;
        o.log_level = CK_LOG_DEBUG;
        ck_status st = ck_client_new(&o, &bc);
        if (st == CK_OK) { /* accepted (e.g. a unix path): then it fails to connect */
            ck_client_ping(bc);
            ck_client_free(bc);
        } else {
            ck_assert_int_eq(st, CK_E_INVALID);
            ck_assert_msg(lg.count > 0, "%s refused without a log line", bad[i]);
        }
        assert_outputs_clean(NULL, &lg);
    }
    ckt_log_free(&lg);
}
END_TEST

/* ---- key distinctness ---- */

typedef struct kitem {
    char *rkey;  /* the Redis key */
    char *input; /* what produced it: "kind|len|a|len|b" */
} kitem;

typedef struct kset {
    kitem *v;
    size_t n, cap;
} kset;

static void kset_add(kset *s, const char *rkey, size_t rlen, const char *kind, const char *a,
                     const char *b)
{
    char in[CK__RKEY_MAX + 256];
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 4096;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
        ck_assert(s->v != NULL);
    }
    ck_assert_int_eq(strlen(rkey), rlen);
    /* the exact input: equal strings for equal inputs only */
    int n = snprintf(in, sizeof in, "%s|%zu|%s|%zu|%s", kind, a ? strlen(a) : 0, a ? a : "",
                     b ? strlen(b) : 0, b ? b : "");
    ck_assert(n > 0 && (size_t)n < sizeof in);
    s->v[s->n].rkey = strdup(rkey);
    s->v[s->n].input = strdup(in);
    s->n++;
}

static int kitem_cmp(const void *a, const void *b)
{
    const kitem *x = a, *y = b;
    int c = strcmp(x->rkey, y->rkey);
    return c != 0 ? c : strcmp(x->input, y->input);
}

/* Equal Redis keys only from equal inputs. Returns the distinct keys. */
static size_t kset_check(kset *s)
{
    size_t distinct = 0;
    qsort(s->v, s->n, sizeof *s->v, kitem_cmp);
    for (size_t i = 0; i < s->n; i++) {
        if (i == 0 || strcmp(s->v[i].rkey, s->v[i - 1].rkey) != 0) {
            distinct++;
            continue;
        }
        if (strcmp(s->v[i].input, s->v[i - 1].input) != 0) {
            char a[200], b[200], k[200];
            ck__log_sanitize(a, sizeof a, s->v[i - 1].input, strlen(s->v[i - 1].input));
            ck__log_sanitize(b, sizeof b, s->v[i].input, strlen(s->v[i].input));
            ck__log_sanitize(k, sizeof k, s->v[i].rkey, strlen(s->v[i].rkey));
            ck_abort_msg("two inputs share the redis key %s: [%s] and [%s]", k, a, b);
        }
    }
    return distinct;
}

static void kset_free(kset *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->v[i].rkey);
        free(s->v[i].input);
    }
    free(s->v);
}

static uint64_t ckt_rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) /* xorshift64*, seeded: the same inputs every run */
{
    ckt_rng ^= ckt_rng >> 12;
    ckt_rng ^= ckt_rng << 25;
    ckt_rng ^= ckt_rng >> 27;
    return ckt_rng * 2685821657736338717ull;
}

typedef struct strs {
    char **v;
    size_t n, cap;
    size_t nfixed; /* the adversarial ones come first */
} strs;

static void strs_add(strs *s, const char *p, size_t len)
{
    for (size_t i = 0; i < s->n; i++) /* distinct inputs only */
        if (strlen(s->v[i]) == len && memcmp(s->v[i], p, len) == 0)
            return;
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 512;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
        ck_assert(s->v != NULL);
    }
    s->v[s->n] = malloc(len + 1);
    memcpy(s->v[s->n], p, len);
    s->v[s->n][len] = '\0';
    s->n++;
}

static void strs_free(strs *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
}

/* Adversarial strings (no NUL: every input is a C string) and `nrand`
 * seeded random ones: random lengths, bytes from a skewed alphabet full of
 * separators, and random bytes 0x01-0xff. */
static void adversarial(strs *s, int nrand)
{
    static const char *const fixed[] = {
        "a", "b", "ab", "abc", "abcd", "a:", ":a", ":", "::", ":::", "{", "}", "{}", "}{",
        "{a}", "a{b}c", "a:b", "a::b", "a:b:c", "any", "s", "t", "lk", "l", "r", "c", "f",
        "lk:x", "s:{x}", "t:{x}", "x}:f", "x:f", "slots", "slots:h", "0", "0:l", "1", "1:l",
        "ck", "ck:c", "ck:c:n:any:{", "n:any:a", "any:a", " ", "  ", "a ", " a", "\t", "\x7f",
        "\x01", "\x1f", "\xc3", "\xc3\xa9", "caf\xc3\xa9", "cafe\xcc\x81", "\xe6\x97\xa5\xe6\x9c\xac",
        "\xf0\x9f\x94\x91", "\xff\xfe", "\xed\xa0\x80", "%s%n", "\\", "\"", "'", "*", "?", "[a]",
        "a\r\nSET x y", "*1\r\n$4\r\nPING\r\n", "tenant_tokens:x", "api_token:app:x",
    };
    char buf[5000];
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        strs_add(s, fixed[i], strlen(fixed[i]));
    for (int ch = 1; ch < 256; ch++) { /* every byte alone, and after 'a' */
        buf[0] = (char)ch;
        strs_add(s, buf, 1);
        buf[0] = 'a';
        buf[1] = (char)ch;
        strs_add(s, buf, 2);
    }
    for (size_t len = 60; len <= 70; len++) { /* around the 64-byte identifier bound */
        memset(buf, 'a', len);
        strs_add(s, buf, len);
    }
    for (size_t len = 4094; len <= 4097; len++) { /* around the 4096-byte key bound */
        memset(buf, 'k', len);
        strs_add(s, buf, len);
        buf[len - 1] = ':';
        strs_add(s, buf, len);
    }
    s->nfixed = s->n;
    for (int i = 0; i < nrand; i++) {
        static const char alpha[] = "ab:{}_.-AZ09 \xc3\xa9";
        size_t len = 1 + rnd() % (rnd() % 8 == 0 ? 300 : 12);
        int raw = rnd() % 4 == 0;
        for (size_t j = 0; j < len; j++) {
            unsigned char ch = raw ? (unsigned char)(1 + rnd() % 255)
                                   : (unsigned char)alpha[rnd() % (sizeof alpha - 1)];
            buf[j] = (char)ch;
        }
        strs_add(s, buf, len);
    }
}

static int valid_scope(const char *s)
{
    return s == NULL || (ck__valid_ident(s, CK__IDENT_MAX) && strcmp(s, "s") != 0 &&
                         strcmp(s, "t") != 0 && strcmp(s, "any") != 0);
}

START_TEST(keys_injective_over_adversarial_and_random_inputs)
{
    int nrand = ckt_under_valgrind() ? 300 : 3000;
    strs in = { 0 };
    kset ks = { 0 };
    const char *scopes[] = { NULL, "a", "ab", "A", "a.b", "a-b", "a_b", "lk", "c", "1",
                             "sx", "ts", "app", "web",
                             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" };
    ck__keyspace spaces[4] = {
        { "ck", "n", CK_KEY_SHA256, NULL, 0 },
        { "ck", "n2", CK_KEY_SHA256, NULL, 0 },
        { "ck", "h", CK_KEY_HMAC_SHA256, (const unsigned char *)SEC_HMAC, sizeof SEC_HMAC - 1 },
        { "ck", "api_token", CK_KEY_PLAIN, NULL, 0 },
    };
    char kh[65], rk[CK__RKEY_MAX];
    ck_options o;
    ck_client *c = NULL;
    size_t nscopes = sizeof scopes / sizeof scopes[0], nkeys = 0, nplain = 0;

    adversarial(&in, nrand);
    for (size_t i = 0; i < nscopes; i++)
        ck_assert(valid_scope(scopes[i]));

    for (int sp = 0; sp < 4; sp++) {
        const ck__keyspace *s = &spaces[sp];
        int plain = s->mode == CK_KEY_PLAIN;
        char kind[80];
        for (size_t i = 0; i < in.n; i++) {
            const char *key = in.v[i];
            size_t len = ck__cache_key_len(key, plain);
            if (len == 0)
                continue;
            ck__digest(s, 'k', key, len, kh);
            /* adversarial keys in every scope, random ones in two */
            size_t from = i % nscopes, count = i < in.nfixed ? nscopes : 2;
            for (size_t j = 0; j < count; j++) {
                const char *scope = scopes[(from + j) % nscopes];
                snprintf(kind, sizeof kind, "entry %s", s->name);
                kset_add(&ks, rk, ck__key_entry(s, scope, kh, key, rk), kind, scope, key);
                if (!plain) {
                    snprintf(kind, sizeof kind, "stampede lock %s", s->name);
                    kset_add(&ks, rk, ck__key_lock(s, scope, kh, rk), kind, scope, key);
                }
            }
            snprintf(kind, sizeof kind, "scopes %s", s->name);
            kset_add(&ks, rk, ck__key_scopes(s, kh, rk), kind, NULL, key);
            if (ck__valid_tag(key)) {
                ck__digest(s, 't', key, strlen(key), kh);
                snprintf(kind, sizeof kind, "tag %s", s->name);
                kset_add(&ks, rk, ck__key_tag(s, kh, rk), kind, NULL, key);
            }
            nkeys += !plain;
            nplain += plain;
        }
    }
    ck_assert_int_gt(nkeys, 3 * (size_t)nrand * 9 / 10);
    ck_assert_int_gt(nplain, (size_t)nrand / 2);

    /* locks and their fences, rate-limit and slot keys: same prefix */
    ckt_options(&o, "redis://127.0.0.1:1/0");
    ck_assert_int_eq(ck_client_new(&o, &c), CK_OK);
    ck__rate_scripts_init();
    size_t nlocks = 0, nrates = 0;
    for (size_t i = 0; i < in.n; i++) {
        const char *name = in.v[i];
        size_t len;
        if (ck__valid_name(name, 512)) {
            ck_lock *l = ck__lock_new(c, name, 1000);
            ck_assert_ptr_nonnull(l);
            memcpy(rk, l->key, l->key_len);
            rk[l->key_len] = '\0';
            kset_add(&ks, rk, l->key_len, "lock", name, NULL);
            kset_add(&ks, l->key, strlen(l->key), "fence", name, NULL);
            free(l);
            nlocks++;
        }
        if (ck__rate_check_key(name, &len, 0) == NULL) {
            ck__rate_keys rkeys;
            ck_assert_int_eq(ck__rate_keys_build(&rkeys, "ck", name, len, 3), CK_OK);
            for (int j = 0; j < rkeys.n; j++) {
                char kind[32];
                snprintf(kind, sizeof kind, "rate rule %d%s", j / 2, j % 2 ? " log" : "");
                kset_add(&ks, rkeys.keys[j], rkeys.lens[j], kind, name, NULL);
            }
            ck__rate_keys_free(&rkeys);
            ck_assert_int_eq(ck__rate_keys_build(&rkeys, "ck", name, len, 0), CK_OK);
            for (int j = 0; j < rkeys.n; j++)
                kset_add(&ks, rkeys.keys[j], rkeys.lens[j], j ? "slots hash" : "slots", name,
                         NULL);
            ck__rate_keys_free(&rkeys);
            nrates++;
        }
    }
    ck_assert_int_gt(nlocks, (size_t)nrand / 4);
    ck_assert_int_gt(nrates, (size_t)nrand / 4);
    size_t distinct = kset_check(&ks);
    ck_assert_int_gt(distinct, 10 * (size_t)nrand);
    ck_client_free(c);
    kset_free(&ks);
    strs_free(&in);
}
END_TEST

typedef struct entry_count {
    size_t entries, indexes;
} entry_count;

static void count_entry(void *user, const redisReply *k)
{
    entry_count *ec = user;
    const char *rest = k->str + strlen("ck:c:secrt:");
    /* <scope>:{kh} is an entry (scope "lk" too); s:{kh}, t:{th} and
     * lk:<scope>:{kh} are indexes and stampede locks */
    if (strncmp(rest, "s:{", 3) == 0 || strncmp(rest, "t:{", 3) == 0 ||
        (strncmp(rest, "lk:", 3) == 0 && rest[3] != '{'))
        ec->indexes++;
    else
        ec->entries++;
}

/* What a cache actually writes: every (scope, key) reads back its own
 * value, and the server holds one entry per pair. */
START_TEST(cache_writes_distinct_keys)
{
    int nrand = ckt_under_valgrind() ? 30 : 300;
    const char *scopes[] = { NULL, "a", "ab", "lk" };
    strs in = { 0 };
    ck_options o;
    ck_client *c = NULL;
    ck_cache_options co;
    ck_cache *k = NULL;
    size_t pairs = 0;
    entry_count ec = { 0, 0 };

    adversarial(&in, nrand);
    ckt_options(&o, ckt_shared_url());
    ck_assert_int_eq(ck_client_new(&o, &c), CK_OK);
    ck_cache_options_init(&co);
    co.name = "secrt";
    co.jitter_pct = 0;
    ck_assert_int_eq(ck_cache_new(c, &co, &k), CK_OK);
    /* valgrind: every 5th adversarial input */
    for (size_t i = 0; i < in.n; i += ckt_under_valgrind() ? 5 : 1) {
        if (!ck__valid_cache_key(in.v[i], 0))
            continue;
        for (size_t j = 0; j < 4; j++) {
            if ((i + j) % 2 != 0 && i < in.nfixed)
                continue;
            json_t *v = json_integer((json_int_t)(i * 4 + j));
            ck_assert_int_eq(ck_cache_set(k, scopes[j], in.v[i], v, NULL), CK_OK);
            json_decref(v);
            pairs++;
        }
    }
    for (size_t i = 0; i < in.n; i += ckt_under_valgrind() ? 5 : 1) {
        if (!ck__valid_cache_key(in.v[i], 0))
            continue;
        for (size_t j = 0; j < 4; j++) {
            json_t *v = NULL;
            if ((i + j) % 2 != 0 && i < in.nfixed)
                continue;
            ck_assert_int_eq(ck_cache_get(k, scopes[j], in.v[i], NULL, NULL, &v, NULL), CK_OK);
            ck_assert_msg(json_is_integer(v) && json_integer_value(v) == (json_int_t)(i * 4 + j),
                          "input %zu scope %zu read back another value", i, j);
            json_decref(v);
        }
    }
    scan_keys(ckt_admin_url(), "ck:c:secrt:*", count_entry, &ec);
    ck_assert_int_eq(ec.entries, pairs);
    ck_assert_int_gt(ec.indexes, 0);
    ck_cache_free(k);
    ck_client_free(c);
    strs_free(&in);
}
END_TEST

/* ---- commands with explicit lengths (the source text of lib/) ---- */

/* A path in the source tree: under $CACHEKIT_SOURCE_DIR, else next to the
 * fuzz corpus meson points at, else relative to the current directory
 * (make runs the tests from the top directory). */
static void src_path(char *out, size_t len, const char *rel)
{
    const char *src = getenv("CACHEKIT_SOURCE_DIR");
    const char *corpus = getenv("CACHEKIT_FUZZ_CORPUS");
    if (src != NULL && *src != '\0')
        snprintf(out, len, "%s/%s", src, rel);
    else if (corpus != NULL && *corpus != '\0')
        snprintf(out, len, "%s/../../../%s", corpus, rel);
    else
        snprintf(out, len, "%s", rel);
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;
    ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
    ck_assert(fseek(f, 0, SEEK_END) == 0);
    n = ftell(f);
    ck_assert(n >= 0 && fseek(f, 0, SEEK_SET) == 0);
    buf = malloc((size_t)n + 1);
    ck_assert(buf != NULL && fread(buf, 1, (size_t)n, f) == (size_t)n);
    buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}

START_TEST(commands_use_explicit_lengths)
{
    /* hiredis's printf-style entry points: a '%s' over user data would let a
     * space or a CRLF split one argument into many */
    static const char *const banned[] = {
        "redisCommand(", "redisvCommand(", "redisAppendCommand(", "redisvAppendCommand(",
        "redisFormatCommand(", "redisvFormatCommand(", "redisFormatSdsCommand(",
        "redisAsyncCommand(", "redisvAsyncCommand(", "redisGetReply(", "\"EVAL\"", NULL,
    };
    char dir[512], path[1024];
    DIR *d;
    struct dirent *e;
    int files = 0, argv_forms = 0;

    src_path(dir, sizeof dir, "lib");
    d = opendir(dir);
    ck_assert_msg(d != NULL, "cannot open %s (set CACHEKIT_SOURCE_DIR)", dir);
    while ((e = readdir(d)) != NULL) {
        size_t nl = strlen(e->d_name), len;
        if (nl < 3 || (strcmp(e->d_name + nl - 2, ".c") != 0 && strcmp(e->d_name + nl - 2, ".h") != 0))
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        char *src = read_file(path, &len);
        for (int i = 0; banned[i] != NULL; i++)
            ck_assert_msg(memmem(src, len, banned[i], strlen(banned[i])) == NULL,
                          "%s uses %s: build commands with explicit lengths (*Argv)", path,
                          banned[i]);
        for (const char *p = src; (p = strstr(p, "ck__resp_format(")) != NULL; p++)
            argv_forms++;
        files++;
        free(src);
    }
    closedir(d);
    ck_assert_int_ge(files, 20);
    /* conn.c (its definition and use) and l1_sub.c format through the one
     * RESP writer, which takes every argument with its length */
    ck_assert_int_ge(argv_forms, 3);
}
END_TEST

/* ---- scripts: static texts, pinned SHA1s ---- */

typedef struct pinned {
    const char *name;
    const char *sha;
    ck__script *script; /* NULL: static in its file, checked on the server only */
} pinned;

static void sha1_hex(const char *s, char out[41])
{
    unsigned char md[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)s, strlen(s), md);
    ckt_hex(md, sizeof md, out);
}

static ck_status fail_loader(void *user, const char *key, json_t **out)
{
    (void)user;
    (void)key;
    (void)out;
    return CK_E_LOADER;
}

START_TEST(scripts_are_pinned)
{
    /* Changing a script? Update its SHA here (the failure message prints it)
     * and say why in the commit. */
    pinned pins[] = {
        { "cache_write", "846f88bc0f6e8ed13b22a6a84483b467443ee732", NULL },
        { "cache_invalidate_all", "88e4f787fbf88ac91d29040d9a4f2e5fc6be9113", NULL },
        { "cache_invalidate_one", "215220fbb60659da6b05f277e94a53ebe69da0c7", NULL },
        { "cache_invalidate_tag", "3e47a018b89b7deb622b2a417a1a5903f39f908d", NULL },
        { "cache_fail_mark", "6a21ac8093aa405680f82867e7c895acac504751", NULL },
        { "cache_lead", "8846d1592efc01a40fb9aa31c4c38bac764a27a9", NULL },
        { "lock_acquire", "204a116dc90e1ebd631ad69a14e2d74e08eb51ee", &ck__lock_acquire_script },
        { "lock_extend", "ec1a63aa32ebb77d4396c8d1df48157706d7979a", &ck__lock_extend_script },
        { "lock_release", "d90ba8d5e88fc42ea74c452eb5491e9ce3006cc6", &ck__lock_release_script },
        { "rate_check", "0b0488c26e6edd536de5f5c8c462fcc58a15b435", &ck__rate_check_script },
        { "rate_peek", "fabc03dfb24406d47d802b9b2b89021e11953cd7", &ck__rate_peek_script },
        { "rate_log", "56e1b7c7d1e5bf95ddfe847e3f415c0145edd288", &ck__rate_log_script },
        { "slots", "6144d494096ecba524fab6c869eea1f0198cad11", &ck__slots_script },
    };
    size_t npins = sizeof pins / sizeof pins[0];
    ckt_redis *srv = ckt_redis_start(NULL);
    const char *url = ckt_redis_url(srv);
    ck_options o;
    ck_client *c = NULL;
    ck_cache_options co;
    ck_cache *k = NULL;
    json_t *v = NULL;
    ck_lock *lk = NULL;
    ck_rate_rule rule = { CK_RL_GCRA, 10, 1000, 0 }, log_rule = { CK_RL_SLIDING_LOG, 10, 1000, 0 };
    ck_rate_result rr;
    char sha[41];

    /* the library's SHA of each reachable script is SHA1 of its text */
    ck__rate_scripts_init();
    for (size_t i = 0; i < npins; i++) {
        if (pins[i].script == NULL)
            continue;
        ck_assert_str_eq(pins[i].script->name, pins[i].name);
        ck__script_init(pins[i].script);
        sha1_hex(pins[i].script->src, sha);
        ck_assert_str_eq(pins[i].script->sha, sha);
        ck_assert_msg(strcmp(sha, pins[i].sha) == 0, "script %s changed: its SHA1 is now %s",
                      pins[i].name, sha);
    }

    /* run every script once on a fresh server */
    ckt_options(&o, url);
    ck_assert_int_eq(ck_client_new(&o, &c), CK_OK);
    ck_cache_options_init(&co);
    co.name = "pins";
    ck_assert_int_eq(ck_cache_new(c, &co, &k), CK_OK);
    const char *tags[] = { "tg", NULL };
    json_t *one = json_integer(1);
    ck_assert_int_eq(ck_cache_set(k, "a", "k1", one, tags), CK_OK);              /* write */
    json_decref(one);
    ck_assert_int_eq(ck_cache_get(k, "a", "k2", fail_loader, NULL, &v, NULL), CK_E_LOADER); /* lead, fail mark */
    ck_assert_int_eq(ck_cache_invalidate(k, "a", "k1"), CK_OK);                  /* one */
    ck_assert_int_eq(ck_cache_invalidate(k, NULL, "k1"), CK_OK);                 /* all */
    ck_assert_int_eq(ck_cache_invalidate_tag(k, "tg"), CK_OK);                   /* tag */
    ck_assert_int_eq(ck_lock_acquire(c, "pins", 5000, 0, &lk), CK_OK);
    ck_assert_int_eq(ck_lock_extend(lk, 5000), CK_OK);
    ck_assert_int_eq(ck_lock_release(lk), CK_OK);
    ck_assert_int_eq(ck_rate_check(c, "pins", &rule, 1, 1, &rr), CK_OK);
    ck_assert_int_eq(ck_rate_peek(c, "pins", &rule, 1, &rr), CK_OK);
    ck_assert_int_eq(ck_rate_check(c, "pins", &log_rule, 1, 1, &rr), CK_OK); /* rate_log */
    ck_assert_int_eq(ck_slots_acquire(c, "pins", 2, "h", 1000, &rr), CK_OK);

    /* the server holds exactly the pinned scripts, no other */
    const char *ex[3 + sizeof pins / sizeof pins[0]] = { "SCRIPT", "EXISTS" };
    for (size_t i = 0; i < npins; i++)
        ex[2 + i] = pins[i].sha;
    ex[2 + npins] = NULL;
    redisReply *r = cmd(url, ex);
    ck_assert_int_eq(r->elements, npins);
    for (size_t i = 0; i < npins; i++)
        ck_assert_msg(r->element[i]->integer == 1,
                      "script %s (pinned %s) was not what the library loaded: a script changed",
                      pins[i].name, pins[i].sha);
    freeReplyObject(r);
    const char *info[] = { "INFO", "memory", NULL };
    r = cmd(url, info);
    const char *n = strstr(r->str, "number_of_cached_scripts:");
    ck_assert_ptr_nonnull(n);
    ck_assert_msg(atoi(n + strlen("number_of_cached_scripts:")) == (int)npins,
                  "the server holds %d scripts, %zu are pinned: a script is not pinned",
                  atoi(n + strlen("number_of_cached_scripts:")), npins);
    freeReplyObject(r);

    ck_cache_free(k);
    ck_client_free(c);
    ckt_redis_stop(srv);
}
END_TEST

/* ---- the least-privilege command list is minimal ---- */

#define ACL_MAX 64

/* tests/acl-commands: "+cmd" words, one a line, '#' comments. */
static int acl_commands(char cmds[ACL_MAX][48])
{
    char path[1024];
    size_t len;
    int n = 0;
    src_path(path, sizeof path, "tests/acl-commands");
    char *text = read_file(path, &len);
    for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        char word[48];
        if (line[0] != '+' || sscanf(line, "%47s", word) != 1)
            continue;
        ck_assert_int_lt(n, ACL_MAX);
        snprintf(cmds[n++], 48, "%s", word);
    }
    free(text);
    ck_assert_int_gt(n, 10);
    return n;
}

static void acl_user(const char *url, char cmds[ACL_MAX][48], int n, int skip)
{
    const char *argv[ACL_MAX + 16] = { "ACL", "SETUSER", "ckmin", "reset", "on", ">min-pw",
                                       "~*", "resetchannels", "&*", "-@all" };
    int a = 10;
    for (int i = 0; i < n; i++)
        if (i != skip)
            argv[a++] = cmds[i];
    argv[a] = NULL;
    cmd_ok(url, argv);
}

static int slot_free(void *arg)
{
    ck_rate_result r;
    ck_status st = ck_slots_acquire(arg, "min", 2, "h2", 60000, &r);
    return st != CK_OK || r.allowed; /* refused (the ACL): no use waiting */
}

static int l1_settled(void *arg)
{
    ckt_log *lg = arg;
    return ckt_log_has(lg, "L1 invalidations subscribed") || ckt_log_has(lg, "subscriber");
}

/* Every library call once (each command of the list is reached), on a
 * flushed server with no script cached. Returns how many expected-OK
 * calls did not answer CK_OK. */
static int acl_workload(const char *admin, const char *url, ckt_log *lg)
{
    static const char *const flush[] = { "FLUSHALL", NULL };
    static const char *const sflush[] = { "SCRIPT", "FLUSH", NULL };
    const char *tags[] = { "tg", NULL };
    const char *mkeys[] = { "k1", "k2" };
    json_t *v = NULL, *mv[2] = { NULL, NULL };
    ck_status mst[2];
    ck_options o;
    ck_client *c = NULL;
    ck_cache_options co;
    ck_cache *k = NULL, *k1 = NULL;
    ck_lock *lk = NULL;
    ck_rate_rule rules[7];
    ck_rate_result rr;
    int bad = 0;

    cmd_ok(admin, flush);
    cmd_ok(admin, sflush);
    ckt_options(&o, url);
    o.log = ckt_log_fn;
    o.log_user = lg;
    o.log_level = CK_LOG_DEBUG;
    o.breaker_failures = 1000;
    o.fail_mode = CK_FAIL_CLOSED;
    ck_assert_int_eq(ck_client_new(&o, &c), CK_OK);
    ck_cache_options_init(&co);
    co.name = "min";
    ck_assert_int_eq(ck_cache_new(c, &co, &k), CK_OK);
    co.name = "minl1";
    co.l1_max_entries = 8;
    ck_assert_int_eq(ck_cache_new(c, &co, &k1), CK_OK);

    bad += ck_client_ping(c) != CK_OK;
    json_t *one = json_integer(1);
    bad += ck_cache_set(k, "a", "k1", one, tags) != CK_OK;           /* write script */
    json_decref(one);
    bad += ck_cache_get(k, "a", "k1", NULL, NULL, &v, NULL) != CK_OK; /* GET */
    json_decref(v);
    v = NULL;
    bad += ck_cache_mget(k, "a", mkeys, 2, mv, mst) != CK_OK;        /* MGET */
    json_decref(mv[0]);
    bad += mst[0] != CK_OK;
    bad += ck_cache_get(k, "a", "k2", sec_loader, NULL, &v, NULL) != CK_OK; /* lead */
    json_decref(v);
    v = NULL;
    bad += ck_cache_get(k, "a", "k3", fail_loader, NULL, &v, NULL) != CK_E_LOADER; /* fail mark */
    bad += ck_cache_invalidate(k, "a", "k2") != CK_OK;
    bad += ck_cache_invalidate(k, NULL, "k1") != CK_OK;                /* SMEMBERS */
    bad += ck_cache_invalidate_tag(k, "tg") != CK_OK;                 /* SPOP */
    bad += ck_cache_get(k1, NULL, "k4", sec_loader, NULL, &v, NULL) != CK_OK; /* SUBSCRIBE */
    json_decref(v);
    v = NULL;
    ckt_wait_until(l1_settled, lg, ckt_under_valgrind() ? 20000 : 2000);
    bad += !ckt_log_has(lg, "L1 invalidations subscribed");

    bad += ck_lock_acquire(c, "min", 5000, 0, &lk) != CK_OK;
    if (lk != NULL) {
        bad += ck_lock_extend(lk, 5000) != CK_OK;
        bad += ck_lock_release(lk) != CK_OK;
    }

    for (int a = 0; a < 7; a++)
        rules[a] = (ck_rate_rule){ (ck_rl_algo)a, 1, 60000, 0 };
    bad += ck_rate_check(c, "min", rules, 7, 1, &rr) != CK_OK || !rr.allowed;
    bad += ck_rate_check(c, "min", rules, 7, 1, &rr) != CK_OK || rr.allowed; /* denied */
    bad += ck_rate_peek(c, "min", rules, 7, &rr) != CK_OK;
    bad += ck_rate_reset(c, "min") != CK_OK;                            /* UNLINK */

    /* slots: a holder that expires (pruned by the next acquire), touch, release */
    /* h0 keeps the keys alive (they expire with the last holder) while h1 expires */
    bad += ck_slots_acquire(c, "min", 2, "h0", 60000, &rr) != CK_OK || !rr.allowed;
    bad += ck_slots_acquire(c, "min", 2, "h1", 1, &rr) != CK_OK || !rr.allowed;
    bad += !ckt_wait_until(slot_free, c, 5000) ||
           ck_slots_acquire(c, "min", 2, "h2", 60000, &rr) != CK_OK || !rr.allowed;
    bad += ck_slots_touch(c, "min", "h2") != CK_OK;
    bad += ck_slots_release(c, "min", "h2") != CK_OK;

    ck_cache_free(k1);
    ck_cache_free(k);
    ck_client_free(c);
    return bad;
}

START_TEST(acl_list_is_minimal)
{
    char cmds[ACL_MAX][48];
    int n = acl_commands(cmds);
    ckt_redis *srv = ckt_redis_start(NULL);
    const char *admin = ckt_redis_url(srv);
    char url[128];
    ckt_log lg;
    int bad;

    /* db 1: SELECT is part of the handshake */
    snprintf(url, sizeof url, "redis://ckmin:min-pw@127.0.0.1:%d/1", ckt_redis_port(srv));
    ckt_log_init(&lg);

    /* the whole list: every call works, nothing is refused */
    acl_user(admin, cmds, n, -1);
    bad = acl_workload(admin, url, &lg);
    ck_assert_msg(bad == 0 && !ckt_log_has(&lg, "NOPERM") && !ckt_log_has(&lg, "refused"),
                  "%d calls failed with the full list:\n%s", bad, lg.buf);

    /* each command removed in turn: some call is refused, or (the two
     * optional ones) the feature they serve turns off */
    for (int i = 0; i < n; i++) {
        ckt_log_reset(&lg);
        acl_user(admin, cmds, n, i);
        bad = acl_workload(admin, url, &lg);
        if (strcmp(cmds[i], "+client|setname") == 0) {
            ck_assert_msg(bad == 0 && ckt_log_has(&lg, "CLIENT SETNAME refused"), "%s", lg.buf);
        } else if (strcmp(cmds[i], "+info") == 0) {
            ck_assert_msg(bad == 0 && ckt_log_has(&lg, "INFO memory refused"), "%s", lg.buf);
        } else {
            ck_assert_msg(bad > 0, "without %s every call still works: not needed?\n%s",
                          cmds[i], lg.buf);
            /* and the log says why: the operator sees the ACL is short */
            ck_assert_msg(ckt_log_has(&lg, "NOPERM") || ckt_log_has(&lg, "no permissions") ||
                              ckt_log_has(&lg, "can't run this command"),
                          "without %s %d calls fail, none logs why:\n%s", cmds[i], bad, lg.buf);
        }
    }
    ckt_log_free(&lg);
    ckt_redis_stop(srv);
}
END_TEST

/* docs/security.md names every command of the list (and so the reason). */
START_TEST(acl_list_is_documented)
{
    char cmds[ACL_MAX][48], path[1024];
    int n = acl_commands(cmds);
    size_t len;
    src_path(path, sizeof path, "docs/security.md");
    char *doc = read_file(path, &len);
    for (int i = 0; i < n; i++) {
        char word[64], esc[72], *bar;
        size_t j = 0;
        snprintf(word, sizeof word, "`%.47s`", cmds[i]);
        for (const char *p = word; *p != '\0'; p++) { /* `+client\|setname` in a table */
            if (*p == '|')
                esc[j++] = '\\';
            esc[j++] = *p;
        }
        esc[j] = '\0';
        bar = strstr(doc, esc);
        ck_assert_msg(bar != NULL, "docs/security.md does not explain %s", word);
    }
    free(doc);
}
END_TEST

Suite *ckt_suite(void)
{
    Suite *s = suite_create("security");
    TCase *tc = tcase_create("security");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, secrets_absent_on_success_and_failure);
    tcase_add_test(tc, keys_injective_over_adversarial_and_random_inputs);
    tcase_add_test(tc, cache_writes_distinct_keys);
    tcase_add_test(tc, commands_use_explicit_lengths);
    tcase_add_test(tc, scripts_are_pinned);
    tcase_add_test(tc, acl_list_is_minimal);
    tcase_add_test(tc, acl_list_is_documented);
    suite_add_tcase(s, tc);
    return s;
}

#include "ckt_main.h"
