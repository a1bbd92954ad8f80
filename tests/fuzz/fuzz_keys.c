/* Key validation and building (lib/keys.c, ck__cache_prep in lib/cache.c,
 * the rate-limit keys of lib/ratelimit.c): what a host passes as names,
 * scopes, keys and tags, possibly straight from a request.
 *
 * Input: a mode byte (key hash mode, rule count), then fields separated by
 * 0xff bytes: client prefix, cache name, HMAC key, scope 1, key 1, scope 2,
 * key 2, tag, rate key / lock name / holder id. An empty scope is NULL.
 * No Redis is involved: a client does not connect until it is used.
 * Checked: every validator accepts exactly what its header says; a built
 * key has the documented layout, fits CK__RKEY_MAX (ASan sees the exact
 * buffer) and is NUL-terminated with the returned length; two different
 * (scope, key) pairs never share an entry key and equal ones always do
 * (NULL scope is "any"); entry keys never equal the scopes, lock or tag keys
 * of the same cache; digests are 64 hex digits and never the all-zero
 * failure value; rate keys are "<prefix>:r:{<key>}:<suffix>", all distinct. */
#include "fuzz.h"
#include "cache_priv.h"
#include "rate_internal.h"

static int ckt_fz_keys_ident(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '.' || s[i] == '-'))
            return 0;
    return 1;
}

/* 1..max bytes, none below 0x20, no DEL, none of `extra` */
static int ckt_fz_keys_printable(const char *s, size_t max, const char *extra)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch == 0x7f || (extra != NULL && strchr(extra, ch) != NULL))
            return 0;
    }
    return 1;
}

static void ckt_fz_keys_validators(const char *s)
{
    size_t len = 0, n = strlen(s);
    const char *why;

    CKT_FUZZ_CHECK(ck__valid_ident(s, CK__IDENT_MAX) == ckt_fz_keys_ident(s, CK__IDENT_MAX));
    CKT_FUZZ_CHECK(ck__valid_ident(s, 3) == ckt_fz_keys_ident(s, 3));
    CKT_FUZZ_CHECK(ck__valid_name(s, 512) == ckt_fz_keys_printable(s, 512, "{}"));
    CKT_FUZZ_CHECK(ck__valid_name(s, 5) == ckt_fz_keys_printable(s, 5, "{}"));
    CKT_FUZZ_CHECK(ck__valid_tag(s) == ckt_fz_keys_printable(s, CK__TAG_MAX, NULL));
    CKT_FUZZ_CHECK(ck__valid_cache_key(s, 1) == ckt_fz_keys_printable(s, CK__KEY_MAX, NULL));
    CKT_FUZZ_CHECK(ck__valid_cache_key(s, 0) == (n >= 1 && n <= CK__KEY_MAX));
    why = ck__rate_check_key(s, &len, 0);
    CKT_FUZZ_CHECK((why == NULL) == ckt_fz_keys_printable(s, CK_RATE_MAX_KEY, "{}"));
    CKT_FUZZ_CHECK(why != NULL || len == n);
    why = ck__rate_check_key(s, &len, 1);
    CKT_FUZZ_CHECK((why == NULL) == ckt_fz_keys_printable(s, CK_RATE_MAX_KEY, NULL));
    CKT_FUZZ_CHECK(ck__valid_ident(NULL, 64) == 0 && ck__valid_name(NULL, 64) == 0 &&
                   ck__valid_tag(NULL) == 0 && ck__valid_cache_key(NULL, 0) == 0);
}

static void ckt_fz_keys_hex(const char *h)
{
    CKT_FUZZ_CHECK(strlen(h) == 64);
    for (int i = 0; i < 64; i++)
        CKT_FUZZ_CHECK((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f'));
    CKT_FUZZ_CHECK(strspn(h, "0") != 64);
}

/* A built key in an exact CK__RKEY_MAX buffer: length and terminator. */
static void ckt_fz_keys_built(const char *buf, size_t n)
{
    CKT_FUZZ_CHECK(n < CK__RKEY_MAX && strlen(buf) == n);
}

typedef struct ckt_fz_keys_one {
    int ok;
    const char *scope; /* as passed */
    ck__ref *r;        /* heap, so that ASan sees the exact arrays */
} ckt_fz_keys_one;

static void ckt_fz_keys_prep(ck_cache *k, const char *prefix, const char *name, int mode,
                             const char *scope, const char *key, ckt_fz_keys_one *o)
{
    int want = (scope == NULL || (ckt_fz_keys_ident(scope, CK__IDENT_MAX) &&
                                  strcmp(scope, "s") != 0 && strcmp(scope, "t") != 0)) &&
               (mode == CK_KEY_PLAIN ? ckt_fz_keys_printable(key, CK__KEY_MAX, NULL)
                                     : strlen(key) >= 1 && strlen(key) <= CK__KEY_MAX);
    char *expect;

    o->scope = scope;
    o->r = malloc(sizeof *o->r);
    if (o->r == NULL)
        abort();
    o->ok = ck__cache_prep(k, "fuzz", scope, key, o->r) == CK_OK;
    CKT_FUZZ_CHECK(o->ok == want);
    if (!o->ok)
        return;
    ckt_fz_keys_hex(o->r->kh);
    ckt_fz_keys_built(o->r->entry, o->r->entry_len);
    expect = malloc(2 * CK__RKEY_MAX);
    if (expect == NULL)
        abort();
    if (mode == CK_KEY_PLAIN)
        snprintf(expect, 2 * CK__RKEY_MAX, "%s:%s:%s", name, scope != NULL ? scope : "any", key);
    else
        snprintf(expect, 2 * CK__RKEY_MAX, "%s:c:%s:%s:{%s}", prefix, name,
                 scope != NULL ? scope : "any", o->r->kh);
    CKT_FUZZ_CHECK(strcmp(expect, o->r->entry) == 0);
    free(expect);
}

static int ckt_fz_keys_same(const ckt_fz_keys_one *a, const ckt_fz_keys_one *b)
{
    const char *sa = a->scope != NULL ? a->scope : "any", *sb = b->scope != NULL ? b->scope : "any";
    return strcmp(sa, sb) == 0 && strcmp(a->r->key, b->r->key) == 0;
}

static void ckt_fz_keys_cache(const char *prefix, const char *name, int mode,
                              const char *hkey, size_t hlen, const char **scopes,
                              const char **keys, const char *tag)
{
    ck_options o;
    ck_cache_options co;
    ck_client *c = NULL;
    ck_cache *k = NULL;
    ckt_fz_keys_one one[2];
    int cst;

    ck_options_init(&o);
    o.url = "redis://127.0.0.1:1/0"; /* never connected: nothing here talks to Redis */
    o.prefix = prefix;
    if (ck_client_new(&o, &c) != CK_OK) {
        CKT_FUZZ_CHECK(!ckt_fz_keys_ident(prefix, 64));
        return;
    }
    CKT_FUZZ_CHECK(ckt_fz_keys_ident(prefix, 64));
    ck_cache_options_init(&co);
    co.name = name;
    co.key_hash = (ck_key_hash)mode;
    co.hmac_key = hkey;
    co.hmac_key_len = hlen;
    cst = ck_cache_new(c, &co, &k);
    CKT_FUZZ_CHECK((cst == CK_OK) ==
                   (ckt_fz_keys_ident(name, CK__IDENT_MAX) &&
                    (mode != CK_KEY_HMAC_SHA256 || hlen >= 16) &&
                    (mode != CK_KEY_PLAIN || strcmp(name, prefix) != 0)));
    if (cst != CK_OK) {
        ck_client_free(c);
        return;
    }
    for (int i = 0; i < 2; i++)
        ckt_fz_keys_prep(k, prefix, name, mode, scopes[i], keys[i], &one[i]);
    if (one[0].ok && one[1].ok)
        CKT_FUZZ_CHECK(ckt_fz_keys_same(&one[0], &one[1]) ==
                       (strcmp(one[0].r->entry, one[1].r->entry) == 0));
    /* the index keys of the same cache are other keys */
    for (int i = 0; i < 2; i++) {
        char *b = malloc(CK__RKEY_MAX), th[65];
        size_t n;
        if (b == NULL)
            abort();
        if (!one[i].ok) {
            free(b);
            continue;
        }
        for (int j = 0; j < 2; j++) {
            if (!one[j].ok)
                continue;
            n = ck__key_scopes(&k->ks, one[j].r->kh, b);
            ckt_fz_keys_built(b, n);
            CKT_FUZZ_CHECK(strcmp(b, one[i].r->entry) != 0);
            n = ck__key_lock(&k->ks, one[j].r->scope, one[j].r->kh, b);
            ckt_fz_keys_built(b, n);
            CKT_FUZZ_CHECK(strcmp(b, one[i].r->entry) != 0);
        }
        if (ck__valid_tag(tag)) {
            ck__digest(&k->ks, 't', tag, strlen(tag), th);
            ckt_fz_keys_hex(th);
            /* a tag never hashes like a key (domains) */
            CKT_FUZZ_CHECK(strcmp(th, one[i].r->kh) != 0);
            n = ck__key_tag(&k->ks, th, b);
            ckt_fz_keys_built(b, n);
            CKT_FUZZ_CHECK(strcmp(b, one[i].r->entry) != 0);
        }
        free(b);
    }
    for (int i = 0; i < 2; i++)
        free(one[i].r);
    ck_cache_free(k);
    ck_client_free(c);
}

static void ckt_fz_keys_rate(const char *prefix, const char *key, size_t n_rules)
{
    ck__rate_keys *rk;
    size_t len = 0;

    if (!ckt_fz_keys_ident(prefix, 64) || ck__rate_check_key(key, &len, 0) != NULL)
        return;
    rk = malloc(sizeof *rk);
    if (rk == NULL)
        abort();
    CKT_FUZZ_CHECK(ck__rate_keys_build(rk, prefix, key, len, n_rules) == CK_OK);
    CKT_FUZZ_CHECK(rk->n == 2 * (int)(n_rules > 0 ? n_rules : 1));
    CKT_FUZZ_CHECK(rk->base == strlen(prefix) + 4 + len + 2);
    for (int i = 0; i < rk->n; i++) {
        char want[CK_RATE_MAX_KEY + 128];
        if (n_rules == 0)
            snprintf(want, sizeof want, "%s:r:{%s}:%s", prefix, key, i == 0 ? "slots" : "slots:h");
        else
            snprintf(want, sizeof want, "%s:r:{%s}:%d%s", prefix, key, i / 2, i % 2 ? ":l" : "");
        CKT_FUZZ_CHECK(strcmp(rk->keys[i], want) == 0 && rk->lens[i] == strlen(want));
        for (int j = 0; j < i; j++)
            CKT_FUZZ_CHECK(strcmp(rk->keys[i], rk->keys[j]) != 0);
    }
    ck__rate_keys_free(rk);
    free(rk);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ckt_fuzz_in in = { data, size };
    uint8_t m = ckt_fuzz_u8(&in);
    int mode = m % 3 == 0 ? CK_KEY_SHA256 : m % 3 == 1 ? CK_KEY_HMAC_SHA256 : CK_KEY_PLAIN;
    size_t n_rules = (size_t)(m >> 2) % (CK_RATE_MAX_RULES + 1), hlen;
    char *prefix = ckt_fuzz_field(&in, NULL), *name = ckt_fuzz_field(&in, NULL);
    char *hkey = ckt_fuzz_field(&in, &hlen);
    char *f[4], *tag, *rkey;
    const char *scopes[2], *keys[2];

    for (int i = 0; i < 4; i++)
        f[i] = ckt_fuzz_field(&in, NULL);
    tag = ckt_fuzz_field(&in, NULL);
    rkey = ckt_fuzz_rest(&in, NULL);
    scopes[0] = f[0][0] != '\0' ? f[0] : NULL;
    keys[0] = f[1];
    scopes[1] = f[2][0] != '\0' ? f[2] : NULL;
    keys[1] = f[3];

    ckt_fz_keys_validators(prefix);
    ckt_fz_keys_validators(f[1]);
    ckt_fz_keys_validators(rkey);
    ckt_fz_keys_cache(prefix, name, mode, hkey, hlen, scopes, keys, tag);
    ckt_fz_keys_rate(prefix, rkey, n_rules);

    free(prefix);
    free(name);
    free(hkey);
    for (int i = 0; i < 4; i++)
        free(f[i]);
    free(tag);
    free(rkey);
    return 0;
}
