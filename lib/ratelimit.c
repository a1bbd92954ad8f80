/* Rate limiting: argument checks, key names, the EVALSHA of the multi-rule
 * script (rate_scripts.c), and the fail modes when Redis cannot answer
 * (rate_local.c holds the in-process limiter of CK_FAIL_LOCAL). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rate_internal.h"

/* Decimal digits of v at dst (no NUL); returns their number. snprintf
 * showed up as a tenth of the client's CPU per check. */
static size_t ck__i64(char *dst, int64_t v)
{
    char tmp[24];
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    size_t n = 0, len;

    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0)
        tmp[n++] = '-';
    len = n;
    while (n > 0)
        *dst++ = tmp[--n];
    return len;
}

/* ---- validation ---- */

const char *ck__rate_check_key(const char *key, size_t *len, int is_holder)
{
    size_t n;

    if (key == NULL)
        return is_holder ? "holder_id is NULL" : "key is NULL";
    for (n = 0; key[n] != '\0'; n++) {
        unsigned char ch = (unsigned char)key[n];

        if (n >= CK_RATE_MAX_KEY)
            return is_holder ? "holder_id is longer than 512 bytes" : "key is longer than 512 bytes";
        if (ch < 0x20 || ch == 0x7f)
            return is_holder ? "holder_id contains a control character"
                             : "key contains a control character";
        if (!is_holder && (ch == '{' || ch == '}'))
            return "key contains '{' or '}'";
    }
    if (n == 0)
        return is_holder ? "holder_id is empty" : "key is empty";
    *len = n;
    return NULL;
}

void ck__rate_log_invalid(ck_client *c, const char *fn, const char *why, const char *key)
{
    char k[80];

    if (key != NULL)
        ck__log_sanitize(k, sizeof k, key, strnlen(key, 64));
    else
        snprintf(k, sizeof k, "(null)");
    ck__log(ck__client_logger(c), CK_LOG_WARN, "%s: invalid argument: %s (key \"%s\")", fn, why, k);
}

static const char *ck__rate_check_rules(const ck_rate_rule *rules, size_t n, char *buf, size_t len)
{
    if (rules == NULL)
        return "rules is NULL";
    if (n == 0)
        return "n_rules is 0";
    if (n > CK_RATE_MAX_RULES) {
        snprintf(buf, len, "n_rules %zu is more than CK_RATE_MAX_RULES (%d)", n, CK_RATE_MAX_RULES);
        return buf;
    }
    for (size_t i = 0; i < n; i++) {
        const ck_rate_rule *r = &rules[i];
        int calendar = r->algo >= CK_RL_CALENDAR_DAY && r->algo <= CK_RL_CALENDAR_MONTH;

        if ((int)r->algo < (int)CK_RL_SLIDING_LOG || (int)r->algo > (int)CK_RL_CALENDAR_MONTH)
            snprintf(buf, len, "rule %zu: unknown algorithm %d", i, (int)r->algo);
        else if (r->limit <= 0 || r->limit > CK_RATE_MAX_LIMIT)
            snprintf(buf, len, "rule %zu: limit %" PRId64 " is not in 1..2^50", i, r->limit);
        else if (r->algo == CK_RL_SLIDING_LOG && r->limit > CK_RATE_LOG_MAX_LIMIT)
            snprintf(buf, len,
                     "rule %zu: limit %" PRId64 " is more than CK_RATE_LOG_MAX_LIMIT (%d) for "
                     "CK_RL_SLIDING_LOG (one log entry per request); use CK_RL_SLIDING_WINDOW or "
                     "CK_RL_GCRA", i, r->limit, CK_RATE_LOG_MAX_LIMIT);
        else if (!calendar && (r->window_ms <= 0 || r->window_ms > CK_RATE_MAX_WINDOW_MS))
            snprintf(buf, len, "rule %zu: window_ms %" PRId64 " is not in 1..%" PRId64, i,
                     r->window_ms, CK_RATE_MAX_WINDOW_MS);
        else if (r->utc_offset_min <= -1440 || r->utc_offset_min >= 1440)
            snprintf(buf, len, "rule %zu: utc_offset_min %d is not in -1439..1439", i,
                     r->utc_offset_min);
        else
            continue;
        return buf;
    }
    return NULL;
}

/* ---- key names ---- */

ck_status ck__rate_keys_build(ck__rate_keys *k, const char *prefix, const char *key,
                              size_t keylen, size_t n_rules)
{
    size_t plen = strlen(prefix), base = plen + 4 + keylen + 2, need, pos;
    int pairs = n_rules > 0 ? (int)n_rules : 1;

    /* per pair: "<base><i>" and "<base><i>:l" (or "slots", "slots:h") + NULs */
    need = (size_t)pairs * 2 * (base + 10);
    k->buf = need <= sizeof k->stack ? k->stack : malloc(need);
    if (k->buf == NULL)
        return CK_E_NOMEM;
    k->base = base;
    k->n = 2 * pairs;
    pos = 0;
    for (int i = 0; i < pairs; i++) {
        for (int j = 0; j < 2; j++) {
            char *p = k->buf + pos;
            size_t m;

            memcpy(p, prefix, plen);
            memcpy(p + plen, ":r:{", 4);
            memcpy(p + plen + 4, key, keylen);
            memcpy(p + plen + 4 + keylen, "}:", 2);
            if (n_rules == 0) {
                m = j == 0 ? 5 : 7;
                memcpy(p + base, "slots:h", m);
            } else {
                m = ck__i64(p + base, i);
                if (j == 1) {
                    memcpy(p + base + m, ":l", 2);
                    m += 2;
                }
            }
            p[base + m] = '\0';
            k->keys[2 * i + j] = p;
            k->lens[2 * i + j] = base + m;
            pos += base + m + 1;
        }
    }
    return CK_OK;
}

void ck__rate_keys_free(ck__rate_keys *k)
{
    if (k->buf != k->stack)
        free(k->buf);
    k->buf = NULL;
}

/* ---- results ---- */

static void ck__rate_clear(ck_rate_result *out)
{
    memset(out, 0, sizeof *out);
    out->rule = -1;
}

static int64_t ck__rate_min_limit(const ck_rate_rule *rules, size_t n)
{
    int64_t m = rules[0].limit;

    for (size_t i = 1; i < n; i++)
        if (rules[i].limit < m)
            m = rules[i].limit;
    return m;
}

/* ceil(ms / 1000) for ms >= 0; (ms + 999) / 1000 overflows near INT64_MAX */
static int64_t ck__ms_to_s_up(int64_t ms)
{
    return ms / 1000 + (ms % 1000 != 0);
}

int ck_rate_format_headers(const ck_rate_result *r, char *buf, size_t len)
{
    char tmp[256];
    int n = 0, m;

    if (r == NULL || (buf == NULL && len > 0))
        return -1;
    m = snprintf(tmp, sizeof tmp, "RateLimit-Limit: %" PRId64 "\r\n", r->limit);
    n += m;
    if (r->remaining >= 0)
        n += snprintf(tmp + n, sizeof tmp - (size_t)n, "RateLimit-Remaining: %" PRId64 "\r\n",
                      r->remaining);
    if (r->reset_after_ms >= 0)
        n += snprintf(tmp + n, sizeof tmp - (size_t)n, "RateLimit-Reset: %" PRId64 "\r\n",
                      ck__ms_to_s_up(r->reset_after_ms));
    if (!r->allowed && r->retry_after_ms >= 0) {
        int64_t s = ck__ms_to_s_up(r->retry_after_ms);
        n += snprintf(tmp + n, sizeof tmp - (size_t)n, "Retry-After: %" PRId64 "\r\n",
                      s < 1 ? 1 : s);
    }
    if (len > 0) {
        size_t copy = (size_t)n < len - 1 ? (size_t)n : len - 1;
        memcpy(buf, tmp, copy);
        buf[copy] = '\0';
    }
    return n;
}

/* ---- the fail modes ---- */

/* Redis could not answer (st): fill `out` per the fail mode. */
static ck_status ck__rate_fallback(ck_client *c, ck_status st, const char *key, size_t keylen,
                                   const ck_rate_rule *rules, size_t n, int64_t cost, int commit,
                                   ck_rate_result *out)
{
    const ck_options *o = ck__client_options(c);

    ck__count(c, CK__ST_DEGRADED, 1);
    ck__rate_clear(out);
    switch (o->fail_mode) {
    case CK_FAIL_LOCAL:
        ck__rate_local_check(o->prefix, key, keylen, rules, n, cost, commit, o->local_instances, out);
        break;
    case CK_FAIL_CLOSED:
        out->allowed = 0;
        out->limit = ck__rate_min_limit(rules, n);
        out->remaining = -1;
        out->retry_after_ms = o->breaker_cooldown_ms > 0 ? o->breaker_cooldown_ms : 1;
        out->reset_after_ms = -1;
        break;
    default:
        out->allowed = 1;
        out->limit = ck__rate_min_limit(rules, n);
        out->remaining = -1;
        out->reset_after_ms = -1;
        break;
    }
    out->degraded = 1;
    if (st == CK_E_UNAVAILABLE)
        return o->fail_mode == CK_FAIL_CLOSED ? CK_E_UNAVAILABLE : CK_OK;
    return st;
}

/* ---- check and peek ---- */

/* The script's reply: {allowed, rule, limit, remaining, retry_after_ms,
 * reset_after_ms}, or, from a check by ck__rate_log_script of the rule
 * `one` (else NULL), the remaining count alone when it admitted a charge. */
static ck_status ck__rate_parse(const redisReply *r, const ck_rate_rule *one, ck_rate_result *out)
{
    long long v[6];

    if (one != NULL && r->type == REDIS_REPLY_INTEGER) {
        /* allowed, no rule denied, the rule's limit, remaining, no wait,
         * reset = the window the charge now lives in */
        v[0] = 1;
        v[1] = -1;
        v[2] = one->limit;
        v[3] = r->integer;
        v[4] = 0;
        v[5] = one->window_ms;
    } else {
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 6)
            return CK_E_PROTOCOL;
        for (int i = 0; i < 6; i++) {
            if (r->element[i]->type != REDIS_REPLY_INTEGER)
                return CK_E_PROTOCOL;
            v[i] = r->element[i]->integer;
        }
    }
    out->allowed = v[0] != 0;
    out->rule = (int)v[1];
    out->limit = v[2];
    out->remaining = v[3];
    out->retry_after_ms = v[4];
    out->reset_after_ms = v[5];
    out->degraded = 0;
    return CK_OK;
}

static ck_status ck__rate_run(ck_client *c, const char *fn, const char *key,
                              const ck_rate_rule *rules, size_t n_rules, int64_t cost, int commit,
                              ck_rate_result *out)
{
    char why[256], costbuf[24], specs[CK_RATE_MAX_RULES][80];
    const char *args[2 + CK_RATE_MAX_RULES];
    size_t arglens[2 + CK_RATE_MAX_RULES], keylen = 0;
    const char *bad;
    ck__rate_keys k;
    const ck_rate_rule *one; /* a check of one sliding-log rule: ck__rate_log_script */
    redisReply *r = NULL;
    int amb = 0;
    ck_status st;

    if (out == NULL || c == NULL) {
        if (c != NULL)
            ck__rate_log_invalid(c, fn, "out is NULL", key);
        return CK_E_INVALID;
    }
    ck__rate_clear(out);
    bad = ck__rate_check_key(key, &keylen, 0);
    if (bad == NULL)
        bad = ck__rate_check_rules(rules, n_rules, why, sizeof why);
    if (bad == NULL && cost < 0)
        bad = "cost is negative";
    if (bad != NULL) {
        ck__rate_log_invalid(c, fn, bad, key);
        return CK_E_INVALID;
    }

    /* any cost above the largest limit is denied with -1 alike; clamped so
     * that it stays exact in Lua */
    if (cost > CK_RATE_MAX_LIMIT)
        cost = CK_RATE_MAX_LIMIT + 1;
    one = commit && n_rules == 1 && rules[0].algo == CK_RL_SLIDING_LOG ? rules : NULL;
    args[0] = commit ? "c" : "p";
    arglens[0] = 1;
    arglens[1] = ck__i64(costbuf, commit ? cost : (int64_t)1);
    args[1] = costbuf;
    for (size_t i = 0; i < n_rules; i++) {
        const ck_rate_rule *ru = &rules[i];
        int calendar = ru->algo >= CK_RL_CALENDAR_DAY;
        char *p = specs[i];

        /* "algo window_ms utc_offset_min limit" */
        *p++ = (char)('0' + (int)ru->algo);
        *p++ = ' ';
        p += ck__i64(p, calendar ? 0 : ru->window_ms);
        *p++ = ' ';
        p += ck__i64(p, calendar || ru->algo == CK_RL_FIXED ? ru->utc_offset_min : 0);
        *p++ = ' ';
        p += ck__i64(p, ru->limit);
        arglens[2 + i] = (size_t)(p - specs[i]);
        args[2 + i] = specs[i];
    }
    ck__rate_scripts_init();
    st = ck__rate_keys_build(&k, ck__client_options(c)->prefix, key, keylen, n_rules);
    if (st == CK_OK) {
        ck__script *script = commit ? &ck__rate_check_script : &ck__rate_peek_script;
        unsigned flags = commit ? CK__CMD_WRITE : 0;

        if (one != NULL) {
            /* KEYS = {log}, ARGV = {cost, window, limit} */
            char win[24], lim[24];

            args[2] = win;
            arglens[2] = ck__i64(win, rules[0].window_ms);
            args[3] = lim;
            arglens[3] = ck__i64(lim, rules[0].limit);
            st = ck__eval(c, &ck__rate_log_script, 1, k.keys + 1, k.lens + 1, 3, args + 1,
                          arglens + 1, flags, &r, &amb);
        } else {
            st = ck__eval(c, script, k.n, k.keys, k.lens, 2 + (int)n_rules, args, arglens, flags,
                          &r, &amb);
        }
        ck__rate_keys_free(&k);
    }
    if (st == CK_OK) {
        if (r->type == REDIS_REPLY_ERROR) {
            char e[160];

            st = ck__reply_status(r, commit);
            if (st == CK_OK || st == CK_E_CORRUPT)
                st = CK_E_PROTOCOL;
            ck__log_sanitize(e, sizeof e, r->str, r->len);
            ck__log(ck__client_logger(c), CK_LOG_ERROR, "%s: redis error: %s", fn, e);
        } else if ((st = ck__rate_parse(r, one, out)) != CK_OK) {
            ck__log(ck__client_logger(c), CK_LOG_ERROR, "%s: unexpected reply from the script", fn);
        }
    } else if (amb && commit) {
        ck__log(ck__client_logger(c), CK_LOG_INFO,
                "%s: the reply was lost after the script was sent (it may have run); not resent",
                fn);
    }
    freeReplyObject(r);
    if (st != CK_OK)
        st = ck__rate_fallback(c, st, key, keylen, rules, n_rules, cost, commit, out);
    if (commit)
        ck__count(c, out->allowed ? CK__ST_RATE_ALLOWED : CK__ST_RATE_DENIED, 1);
    return st;
}

ck_status ck_rate_check(ck_client *c, const char *key, const ck_rate_rule *rules, size_t n_rules,
                        int64_t cost, ck_rate_result *out)
{
    return ck__rate_run(c, "ck_rate_check", key, rules, n_rules, cost, 1, out);
}

ck_status ck_rate_peek(ck_client *c, const char *key, const ck_rate_rule *rules, size_t n_rules,
                       ck_rate_result *out)
{
    return ck__rate_run(c, "ck_rate_peek", key, rules, n_rules, 1, 0, out);
}

ck_status ck_rate_reset(ck_client *c, const char *key)
{
    const char *argv[1 + 2 * CK_RATE_MAX_RULES];
    size_t lens[1 + 2 * CK_RATE_MAX_RULES], keylen = 0;
    const char *bad;
    ck__rate_keys k;
    redisReply *r = NULL;
    ck_status st;

    if (c == NULL)
        return CK_E_INVALID;
    if ((bad = ck__rate_check_key(key, &keylen, 0)) != NULL) {
        ck__rate_log_invalid(c, "ck_rate_reset", bad, key);
        return CK_E_INVALID;
    }
    ck__rate_local_reset(ck__client_options(c)->prefix, key, keylen);
    st = ck__rate_keys_build(&k, ck__client_options(c)->prefix, key, keylen, CK_RATE_MAX_RULES);
    if (st != CK_OK)
        return st;
    argv[0] = "UNLINK";
    lens[0] = 6;
    for (int i = 0; i < k.n; i++) {
        argv[1 + i] = k.keys[i];
        lens[1 + i] = k.lens[i];
    }
    st = ck__command(c, k.keys[0], 1 + k.n, argv, lens, CK__CMD_WRITE, &r, NULL);
    ck__rate_keys_free(&k);
    if (st == CK_OK && r->type == REDIS_REPLY_ERROR) {
        char e[160];

        st = ck__reply_status(r, 1);
        if (st == CK_OK || st == CK_E_CORRUPT)
            st = CK_E_PROTOCOL;
        ck__log_sanitize(e, sizeof e, r->str, r->len);
        ck__log(ck__client_logger(c), CK_LOG_ERROR, "ck_rate_reset: redis error: %s", e);
    } else if (st == CK_OK && r->type != REDIS_REPLY_INTEGER) {
        st = CK_E_PROTOCOL;
    }
    freeReplyObject(r);
    if (st == CK_E_UNAVAILABLE)
        ck__count(c, CK__ST_DEGRADED, 1);
    return st;
}
