/* The stored formats (lib/codec.c): what comes back from Redis is hostile.
 *
 * Input: a mode byte, a byte sizing the `why` buffer, then (mode 2..3) a
 * token argument up to a 0xff byte, then the payload.
 *   mode % 5 == 0: a cachekit envelope {"v":..,"x":..,"t":[..]}
 *   mode % 5 == 1: a plain-mode value (Dify's layout: the bare JSON)
 *   mode % 5 == 2: a Dify token record (plain mode: the bare record)
 *   mode % 5 == 3: a token record inside an envelope (hashed modes)
 *   mode % 5 == 4: an ISO 8601 timestamp, and 8 bytes of unix seconds
 * Checked: no crash, leak or read past the payload; `why` fits its buffer
 * and quotes nothing of the payload; ck__json_depth never underestimates
 * the parsed value's depth; what decodes re-encodes to something that
 * decodes to the same value (envelope and token records), and a token
 * record is refused for encoding exactly when a string is not UTF-8;
 * timestamps round-trip, and any int64 formats without overflow. */
#include "fuzz.h"
#include "cache_internal.h"

/* Depth of a parsed value, as ck__json_depth counts it (a scalar is 0). */
static int ckt_fz_codec_depth(const json_t *j)
{
    int most = 0, d;

    if (json_is_array(j)) {
        for (size_t i = 0; i < json_array_size(j); i++)
            if ((d = ckt_fz_codec_depth(json_array_get(j, i))) > most)
                most = d;
        return most + 1;
    }
    if (json_is_object(j)) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v)
            if ((d = ckt_fz_codec_depth(v)) > most)
                most = d;
        return most + 1;
    }
    return 0;
}

static void ckt_fz_codec_why(const char *why, size_t whylen, ck_status st)
{
    if (whylen == 0)
        return;
    if (st == CK_E_CORRUPT) { /* (untouched otherwise) */
        CKT_FUZZ_CHECK(memchr(why, '\0', whylen) != NULL);
        /* one of the fixed reasons, as much of it as fits */
        static const char *const reasons[] = {
            "JSON nested too deeply", "not JSON", "not a cachekit envelope",
            "token record is not an object", "token record has a missing or mistyped field",
        };
        size_t n = strlen(why), i;
        for (i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
            if (strncmp(why, reasons[i], n) == 0 && (n == whylen - 1 || n == strlen(reasons[i])))
                break;
        CKT_FUZZ_CHECK(i < sizeof reasons / sizeof reasons[0]);
    }
}

static int ckt_fz_codec_streq(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Years 1..9998 survive "unix seconds -> naive UTC text -> unix seconds";
 * the parser takes 4-digit years only. */
#define CKT_FZ_CODEC_T_MIN (-62135596800LL) /* 0001-01-01T00:00:00 */
#define CKT_FZ_CODEC_T_MAX 253370764800LL   /* 9999-01-01T00:00:00 */

static int ckt_fz_codec_t_ok(int64_t t)
{
    return t >= CKT_FZ_CODEC_T_MIN && t < CKT_FZ_CODEC_T_MAX;
}

/* jansson's own verdict on a C string (NULL is fine: JSON null) */
static int ckt_fz_codec_utf8(const char *s)
{
    json_t *j;
    if (s == NULL)
        return 1;
    j = json_string(s);
    json_decref(j);
    return j != NULL;
}

static void ckt_fz_codec_token(const json_t *v, const char *token, char *why, size_t whylen)
{
    ck_token *t = NULL, *t2 = NULL;
    ck_status st = ck__token_from_json(v, token, &t, whylen > 0 ? why : NULL, whylen);
    json_t *j;

    CKT_FUZZ_CHECK(st == CK_OK || st == CK_E_CORRUPT || st == CK_E_NOMEM);
    ckt_fz_codec_why(why, whylen, st);
    if (st != CK_OK) {
        CKT_FUZZ_CHECK(t == NULL);
        return;
    }
    CKT_FUZZ_CHECK(t != NULL && t->id != NULL);
    if (json_object_get(v, "token") == NULL || json_is_null(json_object_get(v, "token")))
        CKT_FUZZ_CHECK(ckt_fz_codec_streq(t->token, token));
    /* write it back as the loader path does, and read it again; only a
     * string JSON cannot carry (jansson refuses it too) is refused */
    st = ck__token_to_json(t, 1, &j);
    CKT_FUZZ_CHECK(st == CK_OK || st == CK_E_INVALID);
    CKT_FUZZ_CHECK((st == CK_E_INVALID) == !ckt_fz_codec_utf8(t->token));
    if (st != CK_OK) {
        CKT_FUZZ_CHECK(j == NULL);
        ck_token_free(t);
        return;
    }
    if (ckt_fz_codec_t_ok(t->created_at) && ckt_fz_codec_t_ok(t->last_used_at)) {
        st = ck__token_from_json(j, NULL, &t2, why, whylen);
        CKT_FUZZ_CHECK(st == CK_OK);
        CKT_FUZZ_CHECK(ckt_fz_codec_streq(t->id, t2->id));
        CKT_FUZZ_CHECK(ckt_fz_codec_streq(t->app_id, t2->app_id));
        CKT_FUZZ_CHECK(ckt_fz_codec_streq(t->tenant_id, t2->tenant_id));
        CKT_FUZZ_CHECK(ckt_fz_codec_streq(t->type, t2->type));
        CKT_FUZZ_CHECK(ckt_fz_codec_streq(t->token, t2->token));
        CKT_FUZZ_CHECK(t->created_at == t2->created_at);
        CKT_FUZZ_CHECK(t->last_used_at == t2->last_used_at);
        ck_token_free(t2);
    }
    json_decref(j);
    ck_token_free(t);
}

static void ckt_fz_codec_iso(const char *s, int64_t raw)
{
    int64_t t = 0, t2 = 0;
    char out[32];

    if (ck__iso8601_parse(s, &t) == 0 && ckt_fz_codec_t_ok(t)) {
        ck__iso8601_format(t, out);
        CKT_FUZZ_CHECK(ck__iso8601_parse(out, &t2) == 0 && t2 == t);
    }
    /* any int64 formats within the 32 bytes, NUL-terminated */
    memset(out, 0x5a, sizeof out);
    ck__iso8601_format(raw, out);
    CKT_FUZZ_CHECK(memchr(out, '\0', sizeof out) != NULL);
    if (ckt_fz_codec_t_ok(raw))
        CKT_FUZZ_CHECK(ck__iso8601_parse(out, &t2) == 0 && t2 == raw);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ckt_fuzz_in in = { data, size };
    int mode = ckt_fuzz_u8(&in) % 5;
    size_t whylen = ckt_fuzz_u8(&in) % 80, len;
    char *why = ckt_fuzz_buf(whylen), *token = NULL, *s;
    int plain = mode == 1 || mode == 2;
    json_t *value = NULL, *again = NULL;
    int64_t x = -1, x2 = -1;
    ck_status st;

    if (mode == 4) {
        int64_t raw = (int64_t)ckt_fuzz_u64(&in);
        s = ckt_fuzz_rest(&in, &len);
        ckt_fz_codec_iso(s, raw);
        free(s);
        free(why);
        return 0;
    }
    if (mode >= 2) {
        token = ckt_fuzz_field(&in, NULL);
        if (token[0] == '\0') { /* no argument */
            free(token);
            token = NULL;
        }
    }
    /* exactly `len` bytes, no NUL after them: the decoder must not need one */
    len = in.n;
    s = malloc(len > 0 ? len : 1);
    if (s == NULL)
        abort();
    if (len > 0)
        memcpy(s, in.p, len);

    st = ck__env_decode(s, len, plain, &value, &x, whylen > 0 ? why : NULL, whylen);
    CKT_FUZZ_CHECK(st == CK_OK || st == CK_E_CORRUPT);
    ckt_fz_codec_why(why, whylen, st);
    if (st == CK_OK) {
        json_t *parsed = json_loadb(s, len, JSON_DECODE_ANY, NULL);
        CKT_FUZZ_CHECK(parsed != NULL);
        /* never an underestimate (duplicate keys make the text deeper) */
        CKT_FUZZ_CHECK(ck__json_depth(s, len) >= ckt_fz_codec_depth(parsed));
        CKT_FUZZ_CHECK(ckt_fz_codec_depth(parsed) <= CK__DEPTH_MAX);
        json_decref(parsed);
        CKT_FUZZ_CHECK(plain ? x == 0 : x >= 0);
    } else {
        CKT_FUZZ_CHECK(value == NULL);
    }
    {
        /* the hand split of the envelope answers as the full parse does */
        json_t *full = NULL;
        int64_t xf = -1;
        ck_status sf = ck__env_decode_full(s, len, plain, &full, &xf, NULL, 0);
        CKT_FUZZ_CHECK(sf == st);
        if (st == CK_OK) {
            CKT_FUZZ_CHECK(xf == x);
            CKT_FUZZ_CHECK((full == NULL) == (value == NULL));
            CKT_FUZZ_CHECK(full == NULL || json_equal(full, value));
        }
        json_decref(full);
    }

    if (st == CK_OK && mode <= 1) {
        /* re-encode (as a set would) and decode again */
        static const char *const tags[] = { "t1", "tenant:x", NULL };
        size_t elen = 0;
        char *enc = ck__env_encode(value, x, mode == 0 ? tags : NULL, plain, &elen);
        CKT_FUZZ_CHECK(enc != NULL && elen == strlen(enc));
        st = ck__env_decode(enc, elen, plain, &again, &x2, why, whylen);
        CKT_FUZZ_CHECK(st == CK_OK);
        CKT_FUZZ_CHECK(x2 == x);
        CKT_FUZZ_CHECK((value == NULL && again == NULL) ||
                       (value != NULL && again != NULL && json_equal(value, again)));
        json_decref(again);
        free(enc);
    } else if (st == CK_OK && value != NULL) {
        ckt_fz_codec_token(value, token, why, whylen);
    }

    json_decref(value);
    free(s);
    free(token);
    free(why);
    return 0;
}
