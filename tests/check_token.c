/* The token layer: records through the cache, tenant invalidation, no raw
 * token in Redis in the hashed modes, and compatibility with Dify's Python
 * ApiTokenCache in both directions (tests/fixtures/dify/dify_cache.py). */
#define _GNU_SOURCE
#include <check.h>
#include <libgen.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ckt.h"
#include "cache_priv.h"

static _Atomic int loads;

/* The "database": tokens tok-A* belong to tenant-A, tok-B* to tenant-B,
 * anything else does not exist. */
static ck_status token_db(void *user, const char *token, const char *scope, ck_token **out)
{
    ck_token *t;
    (void)user;
    atomic_fetch_add(&loads, 1);
    if (strncmp(token, "tok-", 4) != 0)
        return CK_NOT_FOUND;
    t = calloc(1, sizeof *t);
    t->id = strdup("id-1");
    t->app_id = strdup("app-1");
    t->tenant_id = strdup(token[4] == 'A' ? "tenant-A" : "tenant-B");
    t->type = strdup(scope != NULL ? scope : "app");
    t->token = strdup(token);
    t->created_at = 1705314600;   /* 2024-01-15T10:30:00Z */
    t->last_used_at = 1705318200; /* 2024-01-15T11:30:00Z */
    *out = t;
    return CK_OK;
}

static ck_status broken_db(void *user, const char *token, const char *scope, ck_token **out)
{
    (void)user; (void)token; (void)scope; (void)out;
    atomic_fetch_add(&loads, 1);
    return CK_E_UNAVAILABLE;
}

static ck_client *client_for(const char *url)
{
    ck_options o;
    ck_client *c = NULL;
    ckt_options(&o, url);
    ck_assert_int_eq(ck_client_new(&o, &c), CK_OK);
    return c;
}

static ck_cache *cache_for(ck_client *c, const char *name, ck_key_hash mode)
{
    ck_cache_options o;
    ck_cache *k = NULL;
    ck_cache_options_init(&o);
    o.name = name;
    o.key_hash = mode;
    if (mode == CK_KEY_HMAC_SHA256) {
        o.hmac_key = "an-hmac-key-of-32-bytes-secret!!";
        o.hmac_key_len = 32;
    }
    ck_assert_int_eq(ck_cache_new(c, &o, &k), CK_OK);
    return k;
}

START_TEST(token_get_hits_and_fields)
{
    ck_client *c = client_for(ckt_shared_url());
    ck_cache *k = cache_for(c, "tok1", CK_KEY_SHA256);
    ck_token *t = NULL;
    atomic_store(&loads, 0);
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(ck_token_get(k, "tok-A1", "app", token_db, NULL, &t), CK_OK);
        ck_assert_str_eq(t->id, "id-1");
        ck_assert_str_eq(t->tenant_id, "tenant-A");
        ck_assert_str_eq(t->type, "app");
        ck_assert_str_eq(t->token, "tok-A1");
        ck_assert_int_eq(t->created_at, 1705314600);
        ck_assert_int_eq(t->last_used_at, 1705318200);
        ck_token_free(t);
    }
    ck_assert_int_eq(atomic_load(&loads), 1);
    /* absent tokens: one load per null_ttl */
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(ck_token_get(k, "nope", "app", token_db, NULL, &t), CK_NOT_FOUND);
    ck_assert_ptr_null(t);
    ck_assert_int_eq(atomic_load(&loads), 2);
    /* a failing database: CK_E_LOADER, nothing cached */
    ck_assert_int_eq(ck_token_get(k, "tok-A9", "app", broken_db, NULL, &t), CK_E_LOADER);
    ck_assert_int_eq(ck_token_get(k, "tok-A9", "app", NULL, NULL, &t), CK_MISS);
    ck_assert_int_eq(ck_token_get(k, NULL, "app", token_db, NULL, &t), CK_E_INVALID);
    ck_assert_int_eq(ck_token_get(k, "tok-A1", "app", token_db, NULL, NULL), CK_E_INVALID);
    ck_token_free(NULL);
    ck_cache_free(k);
    ck_client_free(c);
}
END_TEST

START_TEST(tenant_invalidation_is_exact)
{
    ck_client *c = client_for(ckt_shared_url());
    ck_cache *k = cache_for(c, "tok2", CK_KEY_SHA256);
    ck_token *t = NULL;
    static const char *const toks[] = { "tok-A1", "tok-A2", "tok-A3", "tok-B1", "tok-B2" };
    atomic_store(&loads, 0);
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(ck_token_get(k, toks[i], "app", token_db, NULL, &t), CK_OK);
        ck_token_free(t);
    }
    ck_assert_int_eq(atomic_load(&loads), 5);
    ck_assert_int_eq(ck_token_invalidate_tenant(k, "tenant-A"), CK_OK);
    for (int i = 0; i < 5; i++) {
        ck_status st = ck_token_get(k, toks[i], "app", NULL, NULL, &t);
        ck_assert_int_eq(st, toks[i][4] == 'A' ? CK_MISS : CK_OK);
        ck_token_free(t);
    }
    ck_assert_int_eq(ck_token_invalidate_tenant(k, ""), CK_E_INVALID);
    ck_assert_int_eq(ck_token_invalidate_tenant(k, "bad\ntenant"), CK_E_INVALID);
    ck_cache_free(k);
    ck_client_free(c);
}
END_TEST

/* Every key and every value in the server, searched for a needle. */
static int redis_contains(const char *url, const char *needle)
{
    const char *keys[] = { "KEYS", "*", NULL };
    redisReply *all = ckt_cmd_at(url, keys);
    int found = 0;
    ck_assert(all != NULL && all->type == REDIS_REPLY_ARRAY);
    for (size_t i = 0; i < all->elements && !found; i++) {
        const char *name = all->element[i]->str;
        const char *type[] = { "TYPE", name, NULL };
        redisReply *ty = ckt_cmd_at(url, type);
        if (strstr(name, needle) != NULL)
            found = 1;
        if (strcmp(ty->str, "string") == 0) {
            const char *get[] = { "GET", name, NULL };
            redisReply *v = ckt_cmd_at(url, get);
            found |= v->type == REDIS_REPLY_STRING && memmem(v->str, v->len, needle,
                                                             strlen(needle)) != NULL;
            freeReplyObject(v);
        } else if (strcmp(ty->str, "set") == 0) {
            const char *sm[] = { "SMEMBERS", name, NULL };
            redisReply *v = ckt_cmd_at(url, sm);
            for (size_t j = 0; j < v->elements; j++)
                found |= strstr(v->element[j]->str, needle) != NULL;
            freeReplyObject(v);
        }
        freeReplyObject(ty);
    }
    freeReplyObject(all);
    return found;
}

START_TEST(raw_token_never_reaches_redis_in_hashed_modes)
{
    static const ck_key_hash modes[] = { CK_KEY_SHA256, CK_KEY_HMAC_SHA256 };
    ckt_redis *r = ckt_redis_start(NULL);
    for (size_t m = 0; m < 2; m++) {
        ck_client *c = client_for(ckt_redis_url(r));
        ck_cache *k = cache_for(c, "api_token", modes[m]);
        ck_token *t = NULL;
        ck_assert_int_eq(ck_token_get(k, "tok-A-SECRETVALUE", "app", token_db, NULL, &t), CK_OK);
        ck_assert_str_eq(t->token, "tok-A-SECRETVALUE");
        ck_token_free(t);
        ck_assert_int_eq(ck_token_get(k, "tok-A-SECRETVALUE", "app", token_db, NULL, &t), CK_OK);
        ck_assert_str_eq(t->token, "tok-A-SECRETVALUE"); /* filled from the argument */
        ck_token_free(t);
        ck_assert_int_eq(ck_token_get(k, "missing-SECRETVALUE", NULL, token_db, NULL, &t),
                         CK_NOT_FOUND);
        ck_assert(!redis_contains(ckt_redis_url(r), "SECRETVALUE"));
        ck_assert(!redis_contains(ckt_redis_url(r), "hmac-key"));
        ck_cache_free(k);
        ck_client_free(c);
    }
    ckt_redis_stop(r);
}
END_TEST

START_TEST(corrupt_token_record_is_dropped)
{
    ck_client *c = client_for(ckt_shared_url());
    ck_cache *k = cache_for(c, "tok3", CK_KEY_SHA256);
    ck_token *t = NULL;
    json_t *bad = json_pack("{s:i, s:s}", "id", 5, "type", "app");
    ck_assert_int_eq(ck_cache_set(k, "app", "tok-A5", bad, NULL), CK_OK);
    json_decref(bad);
    atomic_store(&loads, 0);
    ck_assert_int_eq(ck_token_get(k, "tok-A5", "app", token_db, NULL, &t), CK_E_CORRUPT);
    ck_assert_ptr_null(t);
    ck_assert_int_eq(ck_token_get(k, "tok-A5", "app", token_db, NULL, &t), CK_OK);
    ck_assert_int_eq(atomic_load(&loads), 1);
    ck_token_free(t);
    ck_cache_free(k);
    ck_client_free(c);
}
END_TEST

/* ---- Dify compatibility ---- */

static char py[512], fixture[512];

static void dify_paths(void)
{
    char here[512];
    snprintf(here, sizeof here, "%s", __FILE__);
    snprintf(py, sizeof py, "%s/fixtures/dify/dify_cache.py", dirname(here));
    snprintf(here, sizeof here, "%s", __FILE__);
    snprintf(fixture, sizeof fixture, "%s/fixtures/dify/token.json", dirname(here));
}

/* Run the Python side; returns its exit status, output in out. */
static int dify(int port, const char *args, char *out, size_t outlen)
{
    char cmd[1600];
    FILE *f;
    size_t n;
    /* Debian's interpreter, which sees python3-redis (a pyenv python on
     * PATH would not); CKT_PYTHON overrides */
    const char *python = getenv("CKT_PYTHON");
    if (python == NULL)
        python = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
    snprintf(cmd, sizeof cmd, "%s %s %d %s 2>&1", python, py, port, args);
    f = popen(cmd, "r");
    ck_assert_ptr_nonnull(f);
    n = fread(out, 1, outlen - 1, f);
    out[n] = '\0';
    return pclose(f);
}

START_TEST(dify_python_writes_c_reads)
{
    ckt_redis *r = ckt_redis_start(NULL);
    ck_client *c = client_for(ckt_redis_url(r));
    ck_cache *k = cache_for(c, "api_token", CK_KEY_PLAIN);
    ck_token *t = NULL;
    char out[2048], args[1100];
    dify_paths();
    snprintf(args, sizeof args, "set app-py-token app %s", fixture);
    ck_assert_msg(dify(ckt_redis_port(r), args, out, sizeof out) == 0, "python: %s", out);
    ck_assert_int_eq(dify(ckt_redis_port(r), "set-null app-gone app", out, sizeof out), 0);

    atomic_store(&loads, 0);
    ck_assert_int_eq(ck_token_get(k, "app-py-token", "app", token_db, NULL, &t), CK_OK);
    ck_assert_str_eq(t->id, "9f0a7c1e-1111-4a2b-9c3d-000000000001");
    ck_assert_str_eq(t->app_id, "app-0001");
    ck_assert_str_eq(t->tenant_id, "tenant-A");
    ck_assert_str_eq(t->token, "app-py-token");
    ck_assert_int_eq(t->created_at, 1705314600);
    ck_assert_int_eq(t->last_used_at, 0);
    ck_token_free(t);
    ck_assert_int_eq(ck_token_get(k, "app-gone", "app", token_db, NULL, &t), CK_NOT_FOUND);
    ck_assert_int_eq(atomic_load(&loads), 0); /* both answered from Python's entries */

    /* C invalidates the tenant through Dify's own tenant index */
    ck_assert_int_eq(ck_token_invalidate_tenant(k, "tenant-A"), CK_OK);
    ck_assert_int_eq(dify(ckt_redis_port(r), "get app-py-token app", out, sizeof out), 0);
    ck_assert_str_eq(out, "MISS\n");
    ck_cache_free(k);
    ck_client_free(c);
    ckt_redis_stop(r);
}
END_TEST

START_TEST(dify_c_writes_python_reads)
{
    ckt_redis *r = ckt_redis_start(NULL);
    ck_client *c = client_for(ckt_redis_url(r));
    ck_cache *k = cache_for(c, "api_token", CK_KEY_PLAIN);
    ck_token *t = NULL;
    char out[2048];
    dify_paths();
    ck_assert_int_eq(ck_token_get(k, "tok-Acshared", "app", token_db, NULL, &t), CK_OK);
    ck_token_free(t);
    ck_assert_int_eq(ck_token_get(k, "unknown", "dataset", token_db, NULL, &t), CK_NOT_FOUND);
    ck_assert_msg(dify(ckt_redis_port(r), "get tok-Acshared app", out, sizeof out) == 0,
                  "python: %s", out);
    ck_assert_str_eq(out, "id=id-1 app_id=app-1 tenant_id=tenant-A type=app token=tok-Acshared "
                          "last_used_at=2024-01-15T11:30:00 created_at=2024-01-15T10:30:00\n");
    ck_assert_int_eq(dify(ckt_redis_port(r), "get unknown dataset", out, sizeof out), 0);
    ck_assert_str_eq(out, "NULL\n");
    /* Python's invalidate_by_tenant finds what C wrote */
    ck_assert_int_eq(dify(ckt_redis_port(r), "invalidate-tenant tenant-A", out, sizeof out), 0);
    ck_assert_int_eq(ck_token_get(k, "tok-Acshared", "app", NULL, NULL, &t), CK_MISS);
    ck_cache_free(k);
    ck_client_free(c);
    ckt_redis_stop(r);
}
END_TEST

Suite *ckt_suite(void)
{
    Suite *s = suite_create("token");
    TCase *tc = tcase_create("token");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, token_get_hits_and_fields);
    tcase_add_test(tc, tenant_invalidation_is_exact);
    tcase_add_test(tc, raw_token_never_reaches_redis_in_hashed_modes);
    tcase_add_test(tc, corrupt_token_record_is_dropped);
    tcase_add_test(tc, dify_python_writes_c_reads);
    tcase_add_test(tc, dify_c_writes_python_reads);
    suite_add_tcase(s, tc);
    return s;
}

#include "ckt_main.h"
