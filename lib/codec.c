/* What the cache stores: the JSON envelope, Dify's bare records, token
 * records and their ISO 8601 timestamps. Decoders take (bytes, length) from
 * Redis and treat them as hostile: bounded nesting, strict types, and a
 * reason for every rejection that never quotes the payload. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache_internal.h"

int ck__json_depth(const char *s, size_t len)
{
    const char *p = s, *end = s + len;
    int depth = 0, most = 0;

    /* Only the structural bytes matter; string bodies are skipped with
     * memchr (this runs on every hit, ahead of the parser). */
    while (p < end) {
        char ch = *p++;
        if (ch == '"') {
            for (;;) {
                const char *q = memchr(p, '"', (size_t)(end - p));
                const char *b;
                size_t n = 0;
                if (q == NULL)
                    return most;
                for (b = q; b > p && b[-1] == '\\'; b--) /* backslashes right before */
                    n++;
                p = q + 1;
                if (n % 2 == 0)
                    break;
            }
        } else if (ch == '[' || ch == '{') {
            if (++depth > most)
                most = depth;
        } else if (ch == ']' || ch == '}') {
            depth--;
        }
    }
    return most;
}

char *ck__env_encode(const json_t *value, int64_t expiry_ms, const char *const *tags,
                     int plain, size_t *len)
{
    json_t *env, *t;
    char *s;

    if (plain) {
        s = value != NULL ? json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY) : strdup("null");
    } else {
        env = json_object();
        t = json_array();
        if (env == NULL || t == NULL) {
            json_decref(env);
            json_decref(t);
            return NULL;
        }
        for (size_t i = 0; tags != NULL && tags[i] != NULL; i++)
            json_array_append_new(t, json_string(tags[i]));
        /* written in this order (jansson keeps insertion order): the
         * value last, so that a reader can hand its bytes to the parser
         * alone (ck__env_split). A reference, not a copy: the value is
         * only read (the host promises not to modify it during the call) */
        json_object_set_new(env, "x", json_integer(expiry_ms));
        json_object_set_new(env, "t", t);
        json_object_set(env, "v", value != NULL ? (json_t *)value : json_null());
        s = json_dumps(env, JSON_COMPACT);
        json_decref(env);
    }
    if (s != NULL && len != NULL)
        *len = strlen(s);
    return s;
}

static void ck__why(char *why, size_t whylen, const char *s)
{
    if (why != NULL && whylen > 0)
        snprintf(why, whylen, "%s", s);
}

/* The envelope as ck__env_encode writes it, {"x":N,"t":[...],"v":V}, split
 * by hand: 1 with *expiry_ms and V's bytes [*v, *v + *vlen), or 0 for
 * anything else (another order, whitespace, escapes or bytes outside
 * printable ASCII in a tag, a number that is not plain digits), which the
 * full parse then judges. A hit parses only the value: the envelope's own
 * object, integer and array cost jansson ~0.7 us of a ~6 us parse of a
 * 300-byte record. Whatever this accepts, the full parse reads alike:
 * three distinct keys, a non-negative integer, an array of strings, and V
 * one JSON text (checked by the value's own parse, which rejects trailing
 * bytes such as a duplicate key). */
static int ck__env_split(const char *s, size_t len, int64_t *expiry_ms, const char **v,
                         size_t *vlen)
{
    static const char head[] = "{\"x\":", mid[] = ",\"t\":[", tail[] = ",\"v\":";
    const char *p = s, *end = s + len;
    int64_t x = 0;
    int digits = 0;

    if (len < sizeof head - 1 || memcmp(p, head, sizeof head - 1) != 0)
        return 0;
    p += sizeof head - 1;
    /* JSON has no leading zeros; 18 digits stay within int64_t (more are
     * left to the full parse, before they can overflow here) */
    for (; p < end && *p >= '0' && *p <= '9'; p++, digits++) {
        if (digits == 18)
            return 0;
        x = x * 10 + (*p - '0');
    }
    if (digits == 0 || (digits > 1 && p[-digits] == '0'))
        return 0;
    if ((size_t)(end - p) < sizeof mid - 1 || memcmp(p, mid, sizeof mid - 1) != 0)
        return 0;
    p += sizeof mid - 1;
    if (p < end && *p != ']') {
        for (;;) {
            if (p >= end || *p++ != '"')
                return 0;
            while (p < end && *p != '"') {
                if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e || *p == '\\')
                    return 0;
                p++;
            }
            if (p >= end)
                return 0;
            p++; /* the closing quote */
            if (p < end && *p == ',') {
                p++;
                continue;
            }
            break;
        }
    }
    if (p >= end || *p++ != ']')
        return 0;
    if ((size_t)(end - p) < sizeof tail - 1 + 2 || memcmp(p, tail, sizeof tail - 1) != 0 ||
        end[-1] != '}')
        return 0;
    p += sizeof tail - 1;
    *expiry_ms = x;
    *v = p;
    *vlen = (size_t)(end - 1 - p);
    return 1;
}

ck_status ck__env_decode(const char *s, size_t len, int plain, json_t **value,
                         int64_t *expiry_ms, char *why, size_t whylen)
{
    json_error_t err;
    json_t *v;
    const char *vs;
    size_t vlen;

    if (!plain && ck__env_split(s, len, expiry_ms, &vs, &vlen)) {
        *value = NULL;
        /* the envelope adds one level around the value */
        if (ck__json_depth(vs, vlen) + 1 > CK__DEPTH_MAX) {
            *expiry_ms = 0;
            ck__why(why, whylen, "JSON nested too deeply");
            return CK_E_CORRUPT;
        }
        v = json_loadb(vs, vlen, JSON_DECODE_ANY, &err);
        if (v != NULL) {
            if (!json_is_null(v))
                *value = v;
            else
                json_decref(v);
            return CK_OK;
        }
        /* not one JSON text: the full parse says why */
    }
    return ck__env_decode_full(s, len, plain, value, expiry_ms, why, whylen);
}

ck_status ck__env_decode_full(const char *s, size_t len, int plain, json_t **value,
                              int64_t *expiry_ms, char *why, size_t whylen)
{
    json_error_t err;
    json_t *j, *v, *x;

    *value = NULL;
    *expiry_ms = 0;
    if (ck__json_depth(s, len) > CK__DEPTH_MAX) {
        ck__why(why, whylen, "JSON nested too deeply");
        return CK_E_CORRUPT;
    }
    /* duplicate keys: the last one wins (jansson's rule), as for any reader */
    j = json_loadb(s, len, JSON_DECODE_ANY, &err);
    if (j == NULL) {
        ck__why(why, whylen, "not JSON");
        return CK_E_CORRUPT;
    }
    if (plain) {
        if (json_is_null(j)) {
            json_decref(j);
            return CK_OK;
        }
        *value = j;
        return CK_OK;
    }
    v = json_object_get(j, "v");
    x = json_object_get(j, "x");
    if (!json_is_object(j) || v == NULL || !json_is_integer(x) || json_integer_value(x) < 0 ||
        json_object_size(j) > 3 ||
        (json_object_get(j, "t") != NULL && !json_is_array(json_object_get(j, "t")))) {
        json_decref(j);
        ck__why(why, whylen, "not a cachekit envelope");
        return CK_E_CORRUPT;
    }
    *expiry_ms = json_integer_value(x);
    if (!json_is_null(v))
        *value = json_incref(v);
    json_decref(j);
    return CK_OK;
}

/* ---- ISO 8601 ---- */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static int64_t ck__days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void ck__civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int ck__digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

int ck__iso8601_parse(const char *s, int64_t *unix_s)
{
    static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    int y, mo, d, h, mi, sec, oh = 0, om = 0, sign = 0;
    size_t len = strlen(s), i = 19;

    if (len < 19 || ck__digits(s, 4, &y) || s[4] != '-' || ck__digits(s + 5, 2, &mo) ||
        s[7] != '-' || ck__digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != ' ') ||
        ck__digits(s + 11, 2, &h) || s[13] != ':' || ck__digits(s + 14, 2, &mi) ||
        s[16] != ':' || ck__digits(s + 17, 2, &sec))
        return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || sec > 60)
        return -1;
    if (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return -1;
    if (i < len && s[i] == '.') { /* fractions: dropped (unix seconds) */
        size_t f = ++i;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == f || i - f > 9)
            return -1;
    }
    if (i < len && (s[i] == 'Z' || s[i] == 'z')) {
        i++;
    } else if (i < len && (s[i] == '+' || s[i] == '-')) {
        sign = s[i] == '-' ? -1 : 1;
        if (len - i == 6 && s[i + 3] == ':') {
            if (ck__digits(s + i + 1, 2, &oh) || ck__digits(s + i + 4, 2, &om))
                return -1;
        } else if (len - i == 5) {
            if (ck__digits(s + i + 1, 2, &oh) || ck__digits(s + i + 3, 2, &om))
                return -1;
        } else {
            return -1;
        }
        if (oh > 23 || om > 59)
            return -1;
        i = len;
    }
    if (i != len)
        return -1;
    *unix_s = ck__days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec -
              (int64_t)sign * (oh * 3600 + om * 60);
    return 0;
}

void ck__iso8601_format(int64_t unix_s, char out[32])
{
    /* floor division without negating (INT64_MIN has no positive) */
    int64_t days = unix_s / 86400, rem = unix_s % 86400, y;
    int m, d;

    if (rem < 0) {
        rem += 86400;
        days--;
    }

    ck__civil_from_days(days, &y, &m, &d);
    snprintf(out, 32, "%04lld-%02d-%02dT%02d:%02d:%02d", (long long)y, m, d, (int)(rem / 3600),
             (int)(rem / 60 % 60), (int)(rem % 60));
}

/* ---- token records ---- */

/* Strict UTF-8, as jansson checks it: no overlong forms, no surrogates,
 * nothing above U+10FFFF. */
static int ck__utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;

    while (*p != 0) {
        unsigned c = *p++, cp, min;
        int n;

        if (c < 0x80)
            continue;
        if ((c & 0xe0) == 0xc0) {
            n = 1, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            n = 2, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            n = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        for (; n > 0; n--, p++) {
            if ((*p & 0xc0) != 0x80) /* also stops at the NUL */
                return 0;
            cp = cp << 6 | (*p & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
    }
    return 1;
}

static int ck__set_str(json_t *j, const char *name, const char *s)
{
    return json_object_set_new(j, name, s != NULL ? json_string(s) : json_null());
}

static int ck__set_time(json_t *j, const char *name, int64_t t)
{
    char buf[32];
    if (t == 0)
        return json_object_set_new(j, name, json_null());
    ck__iso8601_format(t, buf);
    return json_object_set_new(j, name, json_string(buf));
}

ck_status ck__token_to_json(const ck_token *t, int with_token, json_t **out)
{
    const char *const strs[] = { t->id, t->app_id, t->tenant_id, t->type,
                                 with_token ? t->token : NULL };
    json_t *j;

    *out = NULL;
    /* JSON has no way to carry other bytes: refuse rather than drop a field */
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        if (strs[i] != NULL && !ck__utf8_valid(strs[i]))
            return CK_E_INVALID;
    j = json_object();
    if (j == NULL)
        return CK_E_NOMEM;
    /* Dify's CachedApiToken field order */
    if (ck__set_str(j, "id", t->id) || ck__set_str(j, "app_id", t->app_id) ||
        ck__set_str(j, "tenant_id", t->tenant_id) || ck__set_str(j, "type", t->type) ||
        (with_token && ck__set_str(j, "token", t->token)) ||
        ck__set_time(j, "last_used_at", t->last_used_at) ||
        ck__set_time(j, "created_at", t->created_at)) {
        json_decref(j);
        return CK_E_NOMEM;
    }
    *out = j;
    return CK_OK;
}

/* A string field: absent or null -> NULL; a string -> copy; else -1. */
static int ck__field_str(const json_t *j, const char *name, char **out)
{
    const json_t *f = json_object_get(j, name);
    *out = NULL;
    if (f == NULL || json_is_null(f))
        return 0;
    if (!json_is_string(f))
        return -1;
    *out = strdup(json_string_value(f));
    return *out != NULL ? 0 : -1;
}

static int ck__field_time(const json_t *j, const char *name, int64_t *out)
{
    const json_t *f = json_object_get(j, name);
    *out = 0;
    if (f == NULL || json_is_null(f))
        return 0;
    if (json_is_integer(f)) { /* unix seconds, as some writers store them */
        *out = json_integer_value(f);
        return 0;
    }
    if (!json_is_string(f))
        return -1;
    return ck__iso8601_parse(json_string_value(f), out);
}

ck_status ck__token_from_json(const json_t *j, const char *token, ck_token **out,
                              char *why, size_t whylen)
{
    ck_token *t;

    *out = NULL;
    if (!json_is_object(j)) {
        ck__why(why, whylen, "token record is not an object");
        return CK_E_CORRUPT;
    }
    t = calloc(1, sizeof *t);
    if (t == NULL)
        return CK_E_NOMEM;
    if (ck__field_str(j, "id", &t->id) || ck__field_str(j, "app_id", &t->app_id) ||
        ck__field_str(j, "tenant_id", &t->tenant_id) || ck__field_str(j, "type", &t->type) ||
        ck__field_str(j, "token", &t->token) ||
        ck__field_time(j, "last_used_at", &t->last_used_at) ||
        ck__field_time(j, "created_at", &t->created_at) || t->id == NULL) {
        ck_token_free(t);
        ck__why(why, whylen, "token record has a missing or mistyped field");
        return CK_E_CORRUPT;
    }
    if (t->token == NULL && token != NULL) {
        t->token = strdup(token);
        if (t->token == NULL) {
            ck_token_free(t);
            return CK_E_NOMEM;
        }
    }
    *out = t;
    return CK_OK;
}
