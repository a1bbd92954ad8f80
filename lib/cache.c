/* The cache: cache-aside over the client layer.
 *
 * Hit path: one GET. Miss path: one caller per process (a "flight") and,
 * with stampede_lock_ms, one per fleet (SET NX on the entry's lock key)
 * runs the loader; the write script stores the entry and its scope and tag
 * indexes in one round trip, so invalidation never needs SCAN or KEYS.
 * Everything that reaches Redis goes through ck__command / ck__eval, so the
 * deadlines, the breaker and the statistics of the client apply. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache_internal.h"
#include "cache_priv.h"

/* ---- scripts ---- */

/* KEYS: entry, scopes index, stampede lock, tag indexes...
 * ARGV: payload, physical PX, scope, leader token ("" = none), channel,
 * invalidation message. Indexes live as long as their longest entry (PTTL
 * only grows). Every mutating script publishes on the cache's channel from
 * inside the script, so no instance's L1 can miss a change that happened. */
static ck__script ck__write_script = { "cache_write",
    "local px = tonumber(ARGV[2])\n"
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', px)\n"
    "redis.call('SADD', KEYS[2], ARGV[3])\n"
    "if redis.call('PTTL', KEYS[2]) < px then redis.call('PEXPIRE', KEYS[2], px) end\n"
    "for i = 4, #KEYS do\n"
    "  redis.call('SADD', KEYS[i], KEYS[1])\n"
    "  if redis.call('PTTL', KEYS[i]) < px then redis.call('PEXPIRE', KEYS[i], px) end\n"
    "end\n"
    "if ARGV[4] ~= '' and redis.call('GET', KEYS[3]) == ARGV[4] then\n"
    "  redis.call('DEL', KEYS[3])\n"
    "end\n"
    "redis.call('PUBLISH', ARGV[5], ARGV[6])\n"
    "return 1\n", "" };

/* KEYS: scopes index. ARGV: entry key head, entry key tail, "any",
 * channel, message. Every scope recorded for the key, plus "any" (Dify's
 * default scope). */
static ck__script ck__inval_all_script = { "cache_invalidate_all",
    "local n = 0\n"
    "local seen = {}\n"
    "for _, s in ipairs(redis.call('SMEMBERS', KEYS[1])) do\n"
    "  seen[s] = true\n"
    "  n = n + redis.call('DEL', ARGV[1] .. s .. ARGV[2])\n"
    "end\n"
    "if not seen[ARGV[3]] then n = n + redis.call('DEL', ARGV[1] .. ARGV[3] .. ARGV[2]) end\n"
    "redis.call('DEL', KEYS[1])\n"
    "redis.call('PUBLISH', ARGV[4], ARGV[5])\n"
    "return n\n", "" };

/* KEYS: entry. ARGV: channel, message. One scope of a key. */
static ck__script ck__inval_one_script = { "cache_invalidate_one",
    "local n = redis.call('DEL', KEYS[1])\n"
    "redis.call('PUBLISH', ARGV[1], ARGV[2])\n"
    "return n\n", "" };

/* KEYS: tag index. ARGV: batch size, channel, message head. Pops a
 * bounded batch of entry keys, deletes them, publishes them (one per line
 * after the head) and returns them; the caller repeats until a short batch. */
static ck__script ck__inval_tag_script = { "cache_invalidate_tag",
    "local m = redis.call('SPOP', KEYS[1], tonumber(ARGV[1]))\n"
    "for _, k in ipairs(m) do redis.call('DEL', k) end\n"
    "if #m > 0 then redis.call('PUBLISH', ARGV[2], ARGV[3] .. table.concat(m, '\\n')) end\n"
    "return m\n", "" };

/* KEYS: stampede lock. ARGV: leader token, marker PX. A leader whose
 * loader failed leaves "F" so that followers stop waiting at once. */
static ck__script ck__fail_mark_script = { "cache_fail_mark",
    "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
    "  redis.call('SET', KEYS[1], 'F', 'PX', tonumber(ARGV[2]))\n"
    "end\n"
    "return 1\n", "" };

/* KEYS: stampede lock, entry. ARGV: token, PX, "1" to check the entry.
 * Leadership is free when nobody holds it or the last leader failed ("F").
 * On a real miss the entry is checked in the same step: a leader that
 * finished between our GET and this script has written it (and released
 * the lock), and loading again would hit the database twice. */
static ck__script ck__lead_script = { "cache_lead",
    "if ARGV[3] == '1' then\n"
    "  local e = redis.call('GET', KEYS[2])\n"
    "  if e then return {2, e} end\n"
    "end\n"
    "local v = redis.call('GET', KEYS[1])\n"
    "if v and v ~= 'F' then return {0} end\n"
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))\n"
    "return {1}\n", "" };

#define CK__TAG_BATCH 256
#define CK__L1_MAX_ENTRIES ((size_t)1 << 24)
#define CK__FAIL_MARK_MS 1000

/* ---- options and lifetime ---- */

void ck_cache_options_init(ck_cache_options *o)
{
    if (o == NULL)
        return;
    memset(o, 0, sizeof *o);
    o->ttl_ms = 600000;
    o->null_ttl_ms = 60000;
    o->jitter_pct = 10;
    o->key_hash = CK_KEY_SHA256;
    o->stampede_lock_ms = 5000;
    o->stampede_wait_ms = 2000;
    o->stale_ttl_ms = 0;
    o->l1_max_entries = 0;
    o->l1_ttl_ms = 30000;
}

static const char *ck__options_check(const ck_cache_options *o, const char *prefix)
{
    if (!ck__valid_ident(o->name, CK__IDENT_MAX))
        return "name must be 1-64 bytes of [A-Za-z0-9_.-]";
    if (o->ttl_ms <= 0 || o->null_ttl_ms <= 0)
        return "ttl_ms and null_ttl_ms must be > 0";
    if (o->jitter_pct < 0 || o->jitter_pct > 50)
        return "jitter_pct must be 0-50";
    if (o->key_hash != CK_KEY_SHA256 && o->key_hash != CK_KEY_HMAC_SHA256 &&
        o->key_hash != CK_KEY_PLAIN)
        return "key_hash must be CK_KEY_SHA256, CK_KEY_HMAC_SHA256 or CK_KEY_PLAIN";
    if (o->key_hash == CK_KEY_HMAC_SHA256 && (o->hmac_key == NULL || o->hmac_key_len < 16))
        return "CK_KEY_HMAC_SHA256 needs an hmac_key of at least 16 bytes";
    if (o->stampede_lock_ms < 0 || o->stampede_wait_ms < 0 || o->stale_ttl_ms < 0)
        return "stampede_lock_ms, stampede_wait_ms and stale_ttl_ms must be >= 0";
    if ((int64_t)o->ttl_ms * (100 + o->jitter_pct) / 100 + o->stale_ttl_ms > INT32_MAX)
        return "ttl_ms + stale_ttl_ms too large";
    if (o->l1_max_entries > CK__L1_MAX_ENTRIES)
        return "l1_max_entries must be at most 16777216";
    if (o->l1_ttl_ms <= 0)
        return "l1_ttl_ms must be > 0";
    /* plain keys are "<name>:...": a name equal to the prefix could forge
     * the library's own "<prefix>:c:..." keys */
    if (o->key_hash == CK_KEY_PLAIN && strcmp(o->name, prefix) == 0)
        return "with CK_KEY_PLAIN the cache name must differ from the client prefix";
    /* a bare value carries no logical expiry: it would be served as fresh
     * (by both sides) for the whole ttl + stale_ttl it lives in Redis */
    if (o->key_hash == CK_KEY_PLAIN && o->stale_ttl_ms > 0)
        return "stale_ttl_ms needs the envelope's expiry: not available with CK_KEY_PLAIN";
    return NULL;
}

ck_status ck_cache_new(ck_client *c, const ck_cache_options *o, ck_cache **out)
{
    ck_cache *k;
    const char *why;

    if (out == NULL)
        return CK_E_INVALID;
    *out = NULL;
    if (c == NULL || o == NULL)
        return CK_E_INVALID;
    why = ck__options_check(o, ck__client_options(c)->prefix);
    if (why != NULL) {
        ck__log(ck__client_logger(c), CK_LOG_ERROR, "ck_cache_new: %s", why);
        return CK_E_INVALID;
    }
    k = calloc(1, sizeof *k);
    if (k == NULL)
        return CK_E_NOMEM;
    k->c = c;
    k->opt = *o;
    k->name = strdup(o->name);
    k->prefix = strdup(ck__client_options(c)->prefix);
    if (o->key_hash == CK_KEY_HMAC_SHA256) {
        k->hkey = malloc(o->hmac_key_len);
        if (k->hkey != NULL)
            memcpy(k->hkey, o->hmac_key, o->hmac_key_len);
    }
    if (k->name == NULL || k->prefix == NULL ||
        (o->key_hash == CK_KEY_HMAC_SHA256 && k->hkey == NULL)) {
        ck_cache_free(k);
        return CK_E_NOMEM;
    }
    k->opt.name = k->name;
    k->opt.hmac_key = NULL; /* only the copy, wiped on free */
    k->ks.prefix = k->prefix;
    k->ks.name = k->name;
    k->ks.mode = o->key_hash;
    k->ks.hkey = k->hkey;
    k->ks.hkey_len = o->hmac_key_len;
    atomic_init(&k->rng, (uint64_t)ck__now_ns() ^ (uint64_t)(uintptr_t)k);
    pthread_mutex_init(&k->mu, NULL);
    k->chan_len = (size_t)snprintf(k->chan, sizeof k->chan, "%s:inv:%s", k->prefix, k->name);
    ck__iid_init(k);
    atomic_init(&k->seq, 0);
    atomic_init(&k->l1_live, 0);
    atomic_init(&k->l1_skip_own, 1);
    if (o->l1_max_entries > 0) {
        ck_status st;
        k->l1_ttl_ns = ck__ms_to_ns(o->l1_ttl_ms);
        k->l1_stale_ns = ck__ms_to_ns(o->stale_ttl_ms);
        k->l1 = ck__l1_new(o->l1_max_entries);
        st = k->l1 != NULL ? ck__hub_register(c, k) : CK_E_NOMEM;
        if (st != CK_OK) {
            ck_cache_free(k);
            return st;
        }
    }
    *out = k;
    return CK_OK;
}

void ck_cache_free(ck_cache *k)
{
    if (k == NULL)
        return;
    ck__hub_unregister(k); /* no message reaches k after this */
    ck__l1_free(k->l1);
    if (k->hkey != NULL) {
        volatile unsigned char *p = k->hkey;
        for (size_t i = 0; i < k->ks.hkey_len; i++)
            p[i] = 0;
        free(k->hkey);
    }
    free(k->name);
    free(k->prefix);
    pthread_mutex_destroy(&k->mu);
    free(k);
}

/* ---- small helpers ---- */

int64_t ck__wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int ck__jitter(ck_cache *k, int ms)
{
    int pct = k->opt.jitter_pct;
    if (pct == 0)
        return ms;
    int64_t spread = (int64_t)ms * pct / 100;
    int64_t r = (int64_t)(ck__rand64(&k->rng) % (uint64_t)(2 * spread + 1)) - spread;
    return (int)(ms + r > 1 ? ms + r : 1);
}

static void ck__sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

const ck__logger *ck__cache_logger(const ck_cache *k)
{
    return ck__client_logger(k->c);
}

ck_status ck__cache_check(ck_cache *k, const char *fn, const char *scope, const char *key,
                          ck__ref *r)
{
    int plain = k->opt.key_hash == CK_KEY_PLAIN;
    /* the length is kept: the L1 lookup hashes the scope's bytes */
    r->scope_len = scope != NULL ? ck__ident_len(scope, CK__IDENT_MAX) : 0;
    if (scope != NULL &&
        (r->scope_len == 0 || (r->scope_len == 1 && (scope[0] == 's' || scope[0] == 't')))) {
        ck__log(ck__cache_logger(k), CK_LOG_ERROR,
                "%s: scope must be NULL or 1-64 bytes of [A-Za-z0-9_.-], not \"s\" or \"t\"", fn);
        return CK_E_INVALID;
    }
    r->key_len = ck__cache_key_len(key, plain);
    if (r->key_len == 0) {
        ck__log(ck__cache_logger(k), CK_LOG_ERROR,
                "%s: key must be 1-4096 bytes%s", fn, plain ? " without control characters" : "");
        return CK_E_INVALID;
    }
    r->scope = scope;
    r->key = key;
    r->hashed = 0;
    return CK_OK;
}

static void ck__ref_hash(ck_cache *k, ck__ref *r)
{
    if (r->hashed)
        return;
    ck__digest(&k->ks, 'k', r->key, r->key_len, r->kh);
    r->entry_len = ck__key_entry(&k->ks, r->scope, r->kh, r->key, r->entry);
    r->hashed = 1;
}

ck_status ck__cache_prep(ck_cache *k, const char *fn, const char *scope, const char *key,
                         ck__ref *r)
{
    ck_status st = ck__cache_check(k, fn, scope, key, r);
    if (st == CK_OK)
        ck__ref_hash(k, r);
    return st;
}

/* Drop an entry that could not be decoded (best effort: it expires anyway). */
static void ck__drop_corrupt(ck_cache *k, const ck__ref *r, const char *why)
{
    const char *argv[2] = { "DEL", r->entry };
    size_t lens[2] = { 3, r->entry_len };
    redisReply *rep = NULL;
    char sk[72];

    ck__log_sanitize(sk, sizeof sk, r->scope != NULL ? r->scope : "any",
                     strlen(r->scope != NULL ? r->scope : "any"));
    ck__log(ck__cache_logger(k), CK_LOG_WARN, "cache %s: dropped a corrupt entry (scope %s): %s",
            k->name, sk, why);
    if (ck__command(k->c, r->entry, 2, argv, lens, CK__CMD_WRITE, &rep, NULL) == CK_OK)
        freeReplyObject(rep);
}

/* GET the entry. CK_OK: *value (NULL = cached absence), *expiry_ms;
 * CK_MISS: nothing (or a corrupt entry, dropped); CK_E_UNAVAILABLE. */
ck_status ck__cache_read(ck_cache *k, const ck__ref *r, json_t **value, int64_t *expiry_ms)
{
    const char *argv[2] = { "GET", r->entry };
    size_t lens[2] = { 3, r->entry_len };
    redisReply *rep = NULL;
    ck_status st;
    char why[96];

    *value = NULL;
    *expiry_ms = 0;
    st = ck__command(k->c, r->entry, 2, argv, lens, 0, &rep, NULL);
    if (st != CK_OK)
        return st == CK_E_PROTOCOL ? CK_MISS : st; /* oversized: dropped like corrupt */
    if (rep->type == REDIS_REPLY_NIL) {
        freeReplyObject(rep);
        return CK_MISS;
    }
    if (rep->type == REDIS_REPLY_STRING) {
        st = ck__env_decode(rep->str, rep->len, k->opt.key_hash == CK_KEY_PLAIN, value,
                            expiry_ms, why, sizeof why);
        freeReplyObject(rep);
        if (st == CK_OK)
            return CK_OK;
        ck__drop_corrupt(k, r, why);
        return CK_MISS;
    }
    if (rep->type == REDIS_REPLY_ERROR &&
        ck__classify_error(rep->str, rep->len, 0) == CK__ERR_WRONGTYPE) {
        freeReplyObject(rep);
        ck__drop_corrupt(k, r, "WRONGTYPE: the key holds another type");
        return CK_MISS;
    }
    if (rep->type == REDIS_REPLY_ERROR) { /* e.g. NOPERM: say why */
        char e[96];
        ck__log_sanitize(e, sizeof e, rep->str, rep->len);
        ck__log(ck__cache_logger(k), CK_LOG_ERROR, "cache %s: GET failed: %s", k->name, e);
    }
    freeReplyObject(rep);
    return CK_E_PROTOCOL;
}

/* The invalidation message naming one key: "<iid> <seq> k <kh>". */
static size_t ck__inv_msg(ck_cache *k, const char *kh, char *buf, size_t len)
{
    unsigned long long seq = atomic_fetch_add(&k->seq, 1) + 1;
    return (size_t)snprintf(buf, len, "%s %llu k %s", k->iid, seq, kh);
}

/* After a write or invalidation of key hash kh, whatever its outcome: drop
 * this cache's own L1 copy (its own message is skipped when it arrives). A
 * write whose outcome is unknown may still run after this drop, so from
 * then on this cache applies its own messages too. */
static void ck__l1_after_write(ck_cache *k, const char *kh, ck_status st)
{
    if (k->l1 == NULL)
        return;
    if (st != CK_OK)
        atomic_store(&k->l1_skip_own, 0);
    if (kh != NULL)
        ck__l1_drop_kh(k->l1, kh);
    else
        ck__l1_clear(k->l1);
}

/* Store value (NULL = absence) with its indexes; releases the stampede
 * lock when `token` is ours. */
ck_status ck__cache_write(ck_cache *k, const ck__ref *r, const json_t *value,
                          const char *const *tags, char **tagkeys, size_t ntagkeys,
                          const char *token)
{
    const char *keys[3 + CK__TAGS_MAX];
    size_t klens[3 + CK__TAGS_MAX];
    const char *args[6];
    size_t alens[6];
    char scopes[CK__RKEY_MAX], lock[CK__RKEY_MAX], px[24], msg[128];
    char *payload;
    size_t plen;
    int ttl = ck__jitter(k, value != NULL ? k->opt.ttl_ms : k->opt.null_ttl_ms);
    int64_t expiry = ck__wall_ms() + ttl;
    redisReply *rep = NULL;
    ck_status st;

    payload = ck__env_encode(value, expiry, tags, k->opt.key_hash == CK_KEY_PLAIN, &plen);
    if (payload == NULL)
        return CK_E_NOMEM;
    keys[0] = r->entry;
    klens[0] = r->entry_len;
    klens[1] = ck__key_scopes(&k->ks, r->kh, scopes);
    keys[1] = scopes;
    klens[2] = ck__key_lock(&k->ks, r->scope, r->kh, lock);
    keys[2] = lock;
    for (size_t i = 0; i < ntagkeys && i < CK__TAGS_MAX; i++) {
        keys[3 + i] = tagkeys[i];
        klens[3 + i] = strlen(tagkeys[i]);
    }
    args[0] = payload;
    alens[0] = plen;
    alens[1] = (size_t)snprintf(px, sizeof px, "%lld", (long long)ttl + k->opt.stale_ttl_ms);
    args[1] = px;
    args[2] = r->scope != NULL ? r->scope : "any";
    alens[2] = strlen(args[2]);
    args[3] = token != NULL ? token : "";
    alens[3] = strlen(args[3]);
    args[4] = k->chan;
    alens[4] = k->chan_len;
    args[5] = msg;
    alens[5] = ck__inv_msg(k, r->kh, msg, sizeof msg);
    st = ck__eval(k->c, &ck__write_script, 3 + (int)ntagkeys, keys, klens, 6, args, alens,
                  CK__CMD_WRITE, &rep, NULL);
    free(payload);
    if (st == CK_OK) {
        if (rep->type == REDIS_REPLY_ERROR) {
            char e[96];
            ck__log_sanitize(e, sizeof e, rep->str, rep->len);
            ck__log(ck__cache_logger(k), CK_LOG_ERROR, "cache %s: write failed: %s", k->name, e);
            st = CK_E_PROTOCOL;
        }
        freeReplyObject(rep);
    }
    ck__l1_after_write(k, r->kh, st);
    return st;
}

/* Tag index keys for a public ck_cache_set / loader result. */
static ck_status ck__tag_keys(ck_cache *k, const char *const *tags, char **out, size_t *n)
{
    *n = 0;
    for (size_t i = 0; tags != NULL && tags[i] != NULL; i++) {
        char th[65];
        if (i >= CK__TAGS_MAX || !ck__valid_tag(tags[i])) {
            ck__log(ck__cache_logger(k), CK_LOG_ERROR,
                    "cache %s: at most 16 tags of 1-256 bytes without control characters",
                    k->name);
            return CK_E_INVALID;
        }
        out[i] = malloc(CK__RKEY_MAX);
        if (out[i] == NULL)
            return CK_E_NOMEM;
        *n = i + 1;
        ck__digest(&k->ks, 't', tags[i], strlen(tags[i]), th);
        ck__key_tag(&k->ks, th, out[i]);
    }
    return CK_OK;
}

void ck__free_keys(char **keys, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(keys[i]);
}

/* ---- the miss path ---- */

/* Try to become the fleet-wide leader for this entry. 1 = leader (token
 * filled), 0 = someone else leads, -1 = Redis failed. */
/* Try to become the fleet-wide leader for this entry. 1 = leader (token
 * filled), 0 = someone else leads, 2 = the entry appeared (*value, *status
 * set), -1 = Redis failed. `check` asks for the entry check (a real miss,
 * not a stale refresh). */
static int ck__stampede_lead(ck_cache *k, const ck__ref *r, char token[33], int check,
                             json_t **value, ck_status *status)
{
    char lock[CK__RKEY_MAX], px[16];
    const char *keys[2] = { lock, r->entry };
    size_t klens[2];
    const char *args[3] = { token, px, check ? "1" : "0" };
    size_t alens[3];
    redisReply *rep = NULL;
    uint64_t a = ck__rand64(&k->rng), b = ck__rand64(&k->rng);
    int won = -1;

    snprintf(token, 33, "%016llx%016llx", (unsigned long long)a, (unsigned long long)b);
    klens[0] = ck__key_lock(&k->ks, r->scope, r->kh, lock);
    klens[1] = r->entry_len;
    alens[0] = 32;
    alens[1] = (size_t)snprintf(px, sizeof px, "%d", k->opt.stampede_lock_ms);
    alens[2] = 1;
    if (ck__eval(k->c, &ck__lead_script, 2, keys, klens, 3, args, alens, CK__CMD_WRITE, &rep,
                 NULL) != CK_OK)
        return -1;
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1 &&
        rep->element[0]->type == REDIS_REPLY_INTEGER) {
        won = (int)rep->element[0]->integer;
        if (won == 2) {
            int64_t x;
            char why[96];
            redisReply *e = rep->element[1];
            if (rep->elements != 2 || e->type != REDIS_REPLY_STRING ||
                ck__env_decode(e->str, e->len, k->opt.key_hash == CK_KEY_PLAIN, value, &x, why,
                               sizeof why) != CK_OK)
                won = -1; /* odd: load without leadership */
            else
                *status = *value != NULL ? CK_OK : CK_NOT_FOUND;
        }
    }
    freeReplyObject(rep);
    return won;
}

static void ck__stampede_fail(ck_cache *k, const ck__ref *r, const char *token)
{
    char lock[CK__RKEY_MAX], px[16];
    const char *keys[1] = { lock };
    size_t klens[1];
    const char *args[2] = { token, px };
    size_t alens[2];
    redisReply *rep = NULL;

    klens[0] = ck__key_lock(&k->ks, r->scope, r->kh, lock);
    alens[0] = strlen(token);
    alens[1] = (size_t)snprintf(px, sizeof px, "%d", CK__FAIL_MARK_MS);
    if (ck__eval(k->c, &ck__fail_mark_script, 1, keys, klens, 2, args, alens, CK__CMD_WRITE,
                 &rep, NULL) == CK_OK)
        freeReplyObject(rep);
}

/* Follow another instance's load: poll entry and lock with jittered
 * backoff (5 ms doubling to 100 ms) until the value appears, the leader
 * fails, or stampede_wait_ms / the caller's time is up.
 * 1: found (*value, *status set); 0: load yourself. */
static int ck__stampede_follow(ck_cache *k, const ck__ref *r, json_t **value, ck_status *status)
{
    char lock[CK__RKEY_MAX];
    const char *argv[3] = { "MGET", r->entry, lock };
    size_t lens[3];
    int64_t until = ck__now_ns() + ck__ms_to_ns(k->opt.stampede_wait_ms);
    int wait = 5;

    lens[0] = 4;
    lens[1] = r->entry_len;
    lens[2] = ck__key_lock(&k->ks, r->scope, r->kh, lock);
    ck__count(k->c, CK__ST_STAMPEDE_WAITS, 1);
    for (;;) {
        int64_t left = (until - ck__now_ns()) / 1000000;
        redisReply *rep = NULL;
        int w;

        if (left <= 0)
            return 0;
        w = wait / 2 + (int)(ck__rand64(&k->rng) % (uint64_t)(wait / 2 + 1));
        ck__sleep_ms(w < left ? w : (int)left);
        wait = wait * 2 > 100 ? 100 : wait * 2;
        if (ck__command(k->c, r->entry, 3, argv, lens, 0, &rep, NULL) != CK_OK)
            return 0;
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2) {
            freeReplyObject(rep);
            return 0;
        }
        redisReply *e = rep->element[0], *l = rep->element[1];
        if (e->type == REDIS_REPLY_STRING) {
            int64_t x;
            char why[96];
            ck_status st = ck__env_decode(e->str, e->len, k->opt.key_hash == CK_KEY_PLAIN, value,
                                          &x, why, sizeof why);
            freeReplyObject(rep);
            if (st != CK_OK)
                return 0;
            *status = *value != NULL ? CK_OK : CK_NOT_FOUND;
            return 1;
        }
        int failed = l->type == REDIS_REPLY_STRING && l->len == 1 && l->str[0] == 'F';
        int gone = l->type == REDIS_REPLY_NIL;
        freeReplyObject(rep);
        if (failed || gone) /* the leader failed, or finished without a write */
            return 0;
    }
}

/* Run the loader and cache its answer. */
static ck_status ck__load(ck_cache *k, const ck__ref *r, const ck__loader *ld,
                          const char *token, json_t **value, int *degraded)
{
    json_t *v = NULL;
    char *tagkeys[CK__TAGS_MAX];
    size_t ntag = 0;
    ck_status st;

    ck__count(k->c, CK__ST_LOADS, 1);
    st = ld->load(ld, r->key, &v);
    if (st == CK_OK && v == NULL)
        st = CK_E_LOADER; /* a loader bug: CK_OK without a value */
    if (st != CK_OK && st != CK_NOT_FOUND) {
        json_decref(v);
        ck__count(k->c, CK__ST_LOAD_ERRORS, 1);
        if (token != NULL)
            ck__stampede_fail(k, r, token);
        return CK_E_LOADER;
    }
    if (st == CK_NOT_FOUND) {
        json_decref(v);
        v = NULL;
    }
    if (v != NULL && ld->tags != NULL && ld->tags(ld, v, tagkeys, &ntag) != CK_OK)
        ntag = 0;
    if (ck__cache_write(k, r, v, NULL, tagkeys, ntag, token) != CK_OK)
        *degraded = 1; /* answered, but not cached */
    ck__free_keys(tagkeys, ntag);
    *value = v;
    return v != NULL ? CK_OK : CK_NOT_FOUND;
}

/* The miss path after the in-process flight was won: fleet leadership,
 * following, loading, and the stale fallback. */
static ck_status ck__miss(ck_cache *k, const ck__ref *r, const ck__loader *ld, json_t *stale,
                          json_t **value, ck_get_info *info)
{
    char token[33];
    int lead = 1;
    ck_status st;

    if (k->opt.stampede_lock_ms > 0) {
        lead = ck__stampede_lead(k, r, token, stale == NULL, value, &st);
        if (lead == 2) {
            info->source = CK_SRC_REDIS;
            ck__count(k->c, st == CK_OK ? CK__ST_HITS : CK__ST_NULL_HITS, 1);
            return st;
        }
        if (lead == 0 && stale != NULL) {
            /* someone is refreshing: serve the stale value meanwhile */
            *value = json_incref(stale);
            info->stale = 1;
            info->source = CK_SRC_REDIS;
            ck__count(k->c, CK__ST_STALE_SERVED, 1);
            return CK_OK;
        }
        if (lead == 0 && ck__stampede_follow(k, r, value, &st)) {
            info->source = CK_SRC_REDIS;
            ck__count(k->c, st == CK_OK ? CK__ST_HITS : CK__ST_NULL_HITS, 1);
            return st;
        }
        if (lead < 0)
            info->degraded = 1;
    }
    info->source = CK_SRC_LOADER;
    st = ck__load(k, r, ld, lead == 1 && k->opt.stampede_lock_ms > 0 ? token : NULL, value,
                  &info->degraded);
    if (st == CK_E_LOADER && stale != NULL) {
        *value = json_incref(stale);
        info->stale = 1;
        info->source = CK_SRC_REDIS;
        ck__count(k->c, CK__ST_STALE_SERVED, 1);
        return CK_OK;
    }
    return st;
}

/* ---- in-process single flight ---- */

typedef struct ck__flight {
    struct ck__flight *next;
    char *entry;
    int refs, done;
    ck_status st;
    json_t *value;
    ck_get_info info;
    pthread_cond_t cv;
} ck__flight;

static void ck__flight_unref(ck__flight *f)
{
    if (--f->refs == 0) {
        json_decref(f->value);
        pthread_cond_destroy(&f->cv);
        free(f->entry);
        free(f);
    }
}

static ck_status ck__miss_shared(ck_cache *k, const ck__ref *r, const ck__loader *ld,
                                 json_t *stale, json_t **value, ck_get_info *info)
{
    ck__flight *f, **pp;
    ck_status st;

    pthread_mutex_lock(&k->mu);
    for (f = k->flights; f != NULL; f = f->next)
        if (strcmp(f->entry, r->entry) == 0)
            break;
    if (f != NULL) { /* follow this process's leader */
        struct timespec until;
        int64_t ns;
        int timed_out = 0;

        clock_gettime(CLOCK_MONOTONIC, &until);
        ns = until.tv_nsec + (int64_t)k->opt.stampede_wait_ms * 1000000;
        until.tv_sec += ns / 1000000000;
        until.tv_nsec = ns % 1000000000;
        f->refs++;
        ck__count(k->c, CK__ST_STAMPEDE_WAITS, 1);
        while (!f->done && !timed_out)
            timed_out = pthread_cond_timedwait(&f->cv, &k->mu, &until) == ETIMEDOUT;
        if (f->done) {
            st = f->st;
            *info = f->info;
            *value = f->value != NULL ? json_deep_copy(f->value) : NULL;
            if (f->value != NULL && *value == NULL)
                st = CK_E_NOMEM;
            ck__flight_unref(f);
            pthread_mutex_unlock(&k->mu);
            return st;
        }
        ck__flight_unref(f);
        pthread_mutex_unlock(&k->mu);
        return ck__miss(k, r, ld, stale, value, info); /* the leader is slow: go alone */
    }
    f = calloc(1, sizeof *f);
    if (f == NULL || (f->entry = strdup(r->entry)) == NULL) {
        free(f);
        pthread_mutex_unlock(&k->mu);
        return CK_E_NOMEM;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&f->cv, &ca);
    pthread_condattr_destroy(&ca);
    f->refs = 1;
    f->next = k->flights;
    k->flights = f;
    pthread_mutex_unlock(&k->mu);

    st = ck__miss(k, r, ld, stale, value, info);

    pthread_mutex_lock(&k->mu);
    for (pp = &k->flights; *pp != f; pp = &(*pp)->next) {
    }
    *pp = f->next;
    f->done = 1;
    f->st = st;
    f->info = *info;
    f->value = *value != NULL ? json_deep_copy(*value) : NULL;
    pthread_cond_broadcast(&f->cv);
    ck__flight_unref(f);
    pthread_mutex_unlock(&k->mu);
    return st;
}

/* ---- get ---- */

/* An answer from L1 (*out is a shared reference). `counted`: the shard
 * counted it (the hot path); the fallback answers are counted here. */
static ck_status ck__l1_answer(ck_cache *k, json_t *v, int stale, int counted, json_t **out,
                               ck_get_info *info)
{
    info->source = CK_SRC_L1;
    info->stale = stale;
    if (!counted) {
        ck__count(k->c, CK__ST_L1_HITS, 1);
        ck__count(k->c, v != NULL ? CK__ST_HITS : CK__ST_NULL_HITS, 1);
    }
    if (stale)
        ck__count(k->c, CK__ST_STALE_SERVED, 1);
    *out = v;
    return v != NULL ? CK_OK : CK_NOT_FOUND;
}

/* Keep what Redis answered (expiry: the entry's logical expiry, wall ms,
 * 0 = none) in L1, unless an invalidation came since gen was read. */
static void ck__l1_keep(ck_cache *k, const ck__ref *r, uint64_t gen, const json_t *v,
                        int64_t expiry)
{
    int64_t now = ck__now_ns(), life = k->l1_ttl_ns;
    json_t *copy = NULL;

    if (expiry != 0) {
        int64_t left = ck__ms_to_ns(expiry - ck__wall_ms());
        if (left <= 0)
            return;
        if (left < life)
            life = left;
    }
    /* the caller owns v and may change it: L1 keeps its own copy */
    if (v != NULL && (copy = json_deep_copy(v)) == NULL)
        return;
    ck__l1_put(k->l1, gen, r->scope, r->scope_len, r->key, r->key_len, r->kh, copy,
               now + life, now + life + k->l1_stale_ns);
}

ck_status ck__cache_get(ck_cache *k, ck__ref *r, const ck__loader *ld, json_t **out,
                        ck_get_info *info)
{
    json_t *v = NULL;
    int64_t expiry;
    uint64_t gen = 0;
    int stale;
    ck_status st;

    if (k->l1 != NULL) {
        /* the hit path: no digest, no socket, one shard lock */
        if (atomic_load_explicit(&k->l1_live, memory_order_acquire) &&
            ck__l1_get(k->l1, r->scope, r->scope_len, r->key, r->key_len, ck__l1_now(), 0, &v,
                       &stale))
            return ck__l1_answer(k, v, 0, 1, out, info);
        gen = ck__l1_gen(k->l1);
        ck__hub_ensure(k);
    }
    ck__ref_hash(k, r);
    st = ck__cache_read(k, r, &v, &expiry);
    if (st == CK_E_UNAVAILABLE || st == CK_E_PROTOCOL) {
        ck__count(k->c, CK__ST_DEGRADED, 1);
        info->degraded = 1;
        /* Redis failed: what L1 holds (fresh, or within stale_ttl_ms) is
         * the best answer there is, also while the subscription is down */
        if (k->l1 != NULL &&
            ck__l1_get(k->l1, r->scope, r->scope_len, r->key, r->key_len, ck__l1_now(), 1, &v,
                       &stale))
            return ck__l1_answer(k, v, stale, 0, out, info);
        if (ck__client_options(k->c)->fail_mode == CK_FAIL_CLOSED)
            return CK_E_UNAVAILABLE;
        if (ld == NULL)
            return CK_E_UNAVAILABLE;
        /* fail open: straight to the database, nothing cached */
        info->source = CK_SRC_LOADER;
        ck__count(k->c, CK__ST_LOADS, 1);
        st = ld->load(ld, r->key, &v);
        if (st == CK_OK && v != NULL) {
            *out = v;
            return CK_OK;
        }
        json_decref(v);
        if (st == CK_NOT_FOUND)
            return CK_NOT_FOUND;
        ck__count(k->c, CK__ST_LOAD_ERRORS, 1);
        return CK_E_LOADER;
    }
    if (st == CK_OK) {
        if (expiry == 0 || expiry > ck__wall_ms() || k->opt.stale_ttl_ms == 0) {
            if (k->l1 != NULL)
                ck__l1_keep(k, r, gen, v, expiry);
            info->source = CK_SRC_REDIS;
            ck__count(k->c, v != NULL ? CK__ST_HITS : CK__ST_NULL_HITS, 1);
            *out = v;
            return v != NULL ? CK_OK : CK_NOT_FOUND;
        }
        /* logically expired, kept for fail-safe: refresh, serving it if
         * the refresh fails */
        if (ld == NULL) {
            info->source = CK_SRC_REDIS;
            info->stale = 1;
            ck__count(k->c, CK__ST_STALE_SERVED, 1);
            *out = v;
            return v != NULL ? CK_OK : CK_NOT_FOUND;
        }
    }
    ck__count(k->c, CK__ST_MISSES, 1);
    if (ld == NULL)
        return CK_MISS;
    st = ck__miss_shared(k, r, ld, v, out, info);
    json_decref(v);
    return st;
}

/* The public loader, adapted. */
typedef struct ck__public_loader {
    ck__loader base;
    ck_loader_fn fn;
    void *user;
} ck__public_loader;

static ck_status ck__public_load(const ck__loader *ld, const char *key, json_t **out)
{
    const ck__public_loader *p = (const ck__public_loader *)ld;
    *out = NULL;
    return p->fn(p->user, key, out);
}

ck_status ck_cache_get(ck_cache *k, const char *scope, const char *key, ck_loader_fn loader,
                       void *user, json_t **out, ck_get_info *info)
{
    ck_get_info local;
    json_t *v = NULL;
    ck__ref r;
    ck_status st;
    ck__public_loader pl = { { ck__public_load, NULL }, loader, user };

    if (out != NULL)
        *out = NULL;
    if (info == NULL)
        info = &local;
    memset(info, 0, sizeof *info);
    if (k == NULL)
        return CK_E_INVALID;
    st = ck__cache_check(k, "ck_cache_get", scope, key, &r);
    if (st != CK_OK)
        return st;
    st = ck__cache_get(k, &r, loader != NULL ? &pl.base : NULL, &v, info);
    if (out != NULL)
        *out = v;
    else
        json_decref(v);
    return st;
}

/* ---- set / invalidate / mget ---- */

ck_status ck_cache_set(ck_cache *k, const char *scope, const char *key, json_t *value,
                       const char *const *tags)
{
    char *tagkeys[CK__TAGS_MAX];
    size_t ntag = 0;
    ck__ref r;
    ck_status st;

    if (k == NULL)
        return CK_E_INVALID;
    st = ck__cache_prep(k, "ck_cache_set", scope, key, &r);
    if (st == CK_OK)
        st = ck__tag_keys(k, tags, tagkeys, &ntag);
    if (st == CK_OK)
        st = ck__cache_write(k, &r, value, tags, tagkeys, ntag, NULL);
    ck__free_keys(tagkeys, ntag);
    if (st == CK_E_UNAVAILABLE)
        ck__count(k->c, CK__ST_DEGRADED, 1);
    return st;
}

static ck_status ck__expect_int(ck_cache *k, ck_status st, redisReply *rep, long long *n)
{
    if (st != CK_OK)
        return st;
    if (rep->type == REDIS_REPLY_INTEGER) {
        if (n != NULL)
            *n = rep->integer;
    } else {
        char e[96] = "unexpected reply";
        if (rep->type == REDIS_REPLY_ERROR)
            ck__log_sanitize(e, sizeof e, rep->str, rep->len);
        ck__log(ck__cache_logger(k), CK_LOG_ERROR, "cache %s: %s", k->name, e);
        st = CK_E_PROTOCOL;
    }
    freeReplyObject(rep);
    return st;
}

ck_status ck_cache_invalidate(ck_cache *k, const char *scope, const char *key)
{
    char msg[128];
    redisReply *rep = NULL;
    ck__ref r;
    ck_status st;

    if (k == NULL)
        return CK_E_INVALID;
    st = ck__cache_prep(k, "ck_cache_invalidate", scope, key, &r);
    if (st != CK_OK)
        return st;
    if (scope != NULL) {
        const char *keys[1] = { r.entry };
        size_t klens[1] = { r.entry_len };
        const char *args[2] = { k->chan, msg };
        size_t alens[2] = { k->chan_len, ck__inv_msg(k, r.kh, msg, sizeof msg) };
        st = ck__eval(k->c, &ck__inval_one_script, 1, keys, klens, 2, args, alens, CK__CMD_WRITE,
                      &rep, NULL);
    } else {
        char scopes[CK__RKEY_MAX], head[CK__RKEY_MAX], tail[CK__RKEY_MAX];
        const char *keys[1] = { scopes };
        size_t klens[1];
        const char *args[5] = { head, tail, "any", k->chan, msg };
        size_t alens[5];
        /* the entry key is head .. scope .. tail: split it at "any" */
        size_t n = ck__key_entry(&k->ks, NULL, r.kh, key, head);
        size_t hl = k->opt.key_hash == CK_KEY_PLAIN ? strlen(k->name) + 1
                                                    : strlen(k->prefix) + 3 + strlen(k->name) + 1;
        memcpy(tail, head + hl + 3, n - hl - 3 + 1);
        head[hl] = '\0';
        klens[0] = ck__key_scopes(&k->ks, r.kh, scopes);
        alens[0] = hl;
        alens[1] = n - hl - 3;
        alens[2] = 3;
        alens[3] = k->chan_len;
        alens[4] = ck__inv_msg(k, r.kh, msg, sizeof msg);
        st = ck__eval(k->c, &ck__inval_all_script, 1, keys, klens, 5, args, alens, CK__CMD_WRITE,
                      &rep, NULL);
    }
    st = ck__expect_int(k, st, rep, NULL);
    ck__l1_after_write(k, r.kh, st);
    if (st == CK_E_UNAVAILABLE)
        ck__count(k->c, CK__ST_DEGRADED, 1);
    return st;
}

/* This cache's own L1 after a tag batch: drop what the batch named. */
static void ck__l1_after_tag(ck_cache *k, ck_status st, const redisReply *rep)
{
    if (k->l1 == NULL)
        return;
    if (st != CK_OK) {
        ck__l1_after_write(k, NULL, st); /* unsure which: all of it */
        return;
    }
    for (size_t i = 0; i < rep->elements; i++) {
        const redisReply *e = rep->element[i];
        if (e->type != REDIS_REPLY_STRING || !ck__l1_drop_entry(k, e->str, e->len)) {
            ck__l1_clear(k->l1);
            return;
        }
    }
}

ck_status ck__cache_invalidate_tagkey(ck_cache *k, const char *tagkey)
{
    const char *keys[1] = { tagkey };
    size_t klens[1] = { strlen(tagkey) };
    char batch[16], head[64];
    const char *args[3] = { batch, k->chan, head };
    size_t alens[3];
    size_t n;
    ck_status st;

    alens[0] = (size_t)snprintf(batch, sizeof batch, "%d", CK__TAG_BATCH);
    alens[1] = k->chan_len;
    do {
        redisReply *rep = NULL;
        unsigned long long seq = atomic_fetch_add(&k->seq, 1) + 1;
        alens[2] = (size_t)snprintf(head, sizeof head, "%s %llu e ", k->iid, seq);
        st = ck__eval(k->c, &ck__inval_tag_script, 1, keys, klens, 3, args, alens, CK__CMD_WRITE,
                      &rep, NULL);
        if (st == CK_OK && rep->type != REDIS_REPLY_ARRAY) {
            char e[96] = "unexpected reply";
            if (rep->type == REDIS_REPLY_ERROR)
                ck__log_sanitize(e, sizeof e, rep->str, rep->len);
            ck__log(ck__cache_logger(k), CK_LOG_ERROR, "cache %s: %s", k->name, e);
            st = CK_E_PROTOCOL;
        }
        ck__l1_after_tag(k, st, rep);
        n = st == CK_OK ? rep->elements : 0;
        if (rep != NULL)
            freeReplyObject(rep);
    } while (st == CK_OK && n == CK__TAG_BATCH);
    if (st == CK_E_UNAVAILABLE)
        ck__count(k->c, CK__ST_DEGRADED, 1);
    return st;
}

ck_status ck_cache_invalidate_tag(ck_cache *k, const char *tag)
{
    char *tk[1];
    size_t n = 0;
    const char *tags[2] = { tag, NULL };
    ck_status st;

    if (k == NULL)
        return CK_E_INVALID;
    st = ck__tag_keys(k, tags, tk, &n);
    if (st == CK_OK)
        st = ck__cache_invalidate_tagkey(k, tk[0]);
    ck__free_keys(tk, n);
    return st;
}

ck_status ck_cache_mget(ck_cache *k, const char *scope, const char *const *keys, size_t n,
                        json_t **out, ck_status *st)
{
    const char **argv = NULL;
    size_t *lens = NULL;
    ck__ref *refs = NULL;
    size_t *map = NULL, m = 0;
    redisReply *rep = NULL;
    ck_status rs;

    if (k == NULL || keys == NULL || out == NULL || st == NULL || n == 0 || n > 1024)
        return CK_E_INVALID;
    for (size_t i = 0; i < n; i++) {
        out[i] = NULL;
        st[i] = CK_E_INVALID;
    }
    refs = malloc(n * sizeof *refs);
    argv = malloc((n + 1) * sizeof *argv);
    lens = malloc((n + 1) * sizeof *lens);
    map = malloc(n * sizeof *map);
    if (refs == NULL || argv == NULL || lens == NULL || map == NULL) {
        rs = CK_E_NOMEM;
        goto done;
    }
    argv[0] = "MGET";
    lens[0] = 4;
    for (size_t i = 0; i < n; i++) {
        if (ck__cache_prep(k, "ck_cache_mget", scope, keys[i], &refs[m]) != CK_OK)
            continue;
        map[m] = i;
        argv[m + 1] = refs[m].entry;
        lens[m + 1] = refs[m].entry_len;
        m++;
    }
    if (m == 0) {
        rs = CK_OK;
        goto done;
    }
    rs = ck__command(k->c, argv[1], (int)m + 1, argv, lens, 0, &rep, NULL);
    if (rs == CK_OK && rep->type == REDIS_REPLY_ERROR) { /* e.g. NOPERM: say why */
        char e[96];
        ck__log_sanitize(e, sizeof e, rep->str, rep->len);
        ck__log(ck__cache_logger(k), CK_LOG_ERROR, "cache %s: MGET failed: %s", k->name, e);
    }
    if (rs == CK_OK && (rep->type != REDIS_REPLY_ARRAY || rep->elements != m))
        rs = CK_E_PROTOCOL;
    if (rs != CK_OK) {
        for (size_t j = 0; j < m; j++)
            st[map[j]] = rs;
        if (rs == CK_E_UNAVAILABLE)
            ck__count(k->c, CK__ST_DEGRADED, 1);
        goto done;
    }
    for (size_t j = 0; j < m; j++) {
        redisReply *e = rep->element[j];
        size_t i = map[j];
        if (e->type == REDIS_REPLY_STRING) {
            int64_t x;
            char why[96];
            if (ck__env_decode(e->str, e->len, k->opt.key_hash == CK_KEY_PLAIN, &out[i], &x, why,
                               sizeof why) == CK_OK) {
                st[i] = out[i] != NULL ? CK_OK : CK_NOT_FOUND;
                ck__count(k->c, out[i] != NULL ? CK__ST_HITS : CK__ST_NULL_HITS, 1);
            } else {
                st[i] = CK_E_CORRUPT;
                ck__drop_corrupt(k, &refs[j], why);
            }
        } else {
            st[i] = CK_MISS;
            ck__count(k->c, CK__ST_MISSES, 1);
        }
    }
done:
    if (rep != NULL)
        freeReplyObject(rep);
    free(refs);
    free(argv);
    free(lens);
    free(map);
    return rs;
}
