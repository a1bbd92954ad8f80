/* The text formatters with caller-sized buffers: ck_stats_format_prometheus
 * (include/cachekit/stats.h), ck_rate_format_headers
 * (include/cachekit/ratelimit.h) and the log sanitizer ck__log_sanitize
 * (lib/internal.h), with any field values and tiny buffers.
 *
 * Input: a selector byte, two bytes of buffer length (mostly tiny), then
 * the fields (raw bytes of the struct's integers, or the string).
 * Checked, as the headers promise (snprintf-style): the return value is the
 * full length, whatever the buffer; nothing is written past `len` (ASan
 * sees the exact buffer) nor anything at all when len is 0; the output is
 * NUL-terminated when len > 0 and is a prefix of the full text; buf NULL
 * with len > 0 is -1. The text says what the fields say (every counter; the
 * header lines and their rounding). The sanitizer writes only printable
 * ASCII, within dstlen, one byte per input byte up to the bound, and marks
 * a truncation with "...". */
#include <inttypes.h>

#include "fuzz.h"
#include "internal.h"

/* The snprintf contract, given the full text of length n. */
static void ckt_fz_format_contract(int (*fmt)(const void *, char *, size_t), const void *obj,
                                   size_t len)
{
    int n = fmt(obj, NULL, 0), n2;
    char *full, *buf;

    CKT_FUZZ_CHECK(n >= 0);
    CKT_FUZZ_CHECK(fmt(obj, NULL, 1) == -1);
    full = malloc((size_t)n + 1);
    if (full == NULL)
        abort();
    CKT_FUZZ_CHECK(fmt(obj, full, (size_t)n + 1) == n);
    CKT_FUZZ_CHECK(strlen(full) == (size_t)n);

    buf = ckt_fuzz_buf(len);
    n2 = fmt(obj, buf, len);
    CKT_FUZZ_CHECK(n2 == n);
    if (len == 0) {
        CKT_FUZZ_CHECK((unsigned char)buf[0] == 0x5a); /* untouched */
    } else {
        size_t k = (size_t)n < len - 1 ? (size_t)n : len - 1;
        CKT_FUZZ_CHECK(buf[k] == '\0');
        CKT_FUZZ_CHECK(memcmp(buf, full, k) == 0);
    }
    free(buf);
    free(full);
}

static int ckt_fz_format_stats(const void *s, char *buf, size_t len)
{
    return ck_stats_format_prometheus(s, buf, len);
}

static int ckt_fz_format_headers(const void *r, char *buf, size_t len)
{
    return ck_rate_format_headers(r, buf, len);
}

/* ceil(ms / 1000) for ms >= 0, without overflow */
static int64_t ckt_fz_format_secs(int64_t ms)
{
    return ms / 1000 + (ms % 1000 != 0);
}

static void ckt_fz_format_headers_text(const ck_rate_result *r)
{
    char want[512], got[512];
    int n = 0;

    n += snprintf(want + n, sizeof want - (size_t)n, "RateLimit-Limit: %" PRId64 "\r\n", r->limit);
    if (r->remaining >= 0)
        n += snprintf(want + n, sizeof want - (size_t)n, "RateLimit-Remaining: %" PRId64 "\r\n",
                      r->remaining);
    if (r->reset_after_ms >= 0)
        n += snprintf(want + n, sizeof want - (size_t)n, "RateLimit-Reset: %" PRId64 "\r\n",
                      ckt_fz_format_secs(r->reset_after_ms));
    if (!r->allowed && r->retry_after_ms >= 0) {
        int64_t s = ckt_fz_format_secs(r->retry_after_ms);
        n += snprintf(want + n, sizeof want - (size_t)n, "Retry-After: %" PRId64 "\r\n",
                      s < 1 ? 1 : s);
    }
    CKT_FUZZ_CHECK(ck_rate_format_headers(r, got, sizeof got) == n);
    CKT_FUZZ_CHECK(strcmp(got, want) == 0);
}

static void ckt_fz_format_stats_text(const ck_stats *s)
{
    static const char *const names[] = {
        "hits", "null_hits", "misses", "loads", "load_errors", "stampede_waits",
        "stale_served", "l1_hits", "redis_errors", "degraded", "breaker_opens",
        "lock_acquired", "lock_busy", "lock_lost", "rate_allowed", "rate_denied", "pool_waits",
    };
    uint64_t v[sizeof names / sizeof names[0]];
    int n = ck_stats_format_prometheus(s, NULL, 0);
    char *text = malloc((size_t)n + 1), line[128];

    CKT_FUZZ_CHECK(sizeof v == sizeof *s); /* every counter of ck_stats is listed here */
    memcpy(v, s, sizeof v);
    if (text == NULL)
        abort();
    ck_stats_format_prometheus(s, text, (size_t)n + 1);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(line, sizeof line, "\ncachekit_%s_total %" PRIu64 "\n", names[i], v[i]);
        CKT_FUZZ_CHECK(strstr(text, line) != NULL);
        snprintf(line, sizeof line, "# TYPE cachekit_%s_total counter\n", names[i]);
        CKT_FUZZ_CHECK(strstr(text, line) != NULL);
    }
    free(text);
}

static void ckt_fz_format_sanitize(ckt_fuzz_in *in, size_t dstlen)
{
    size_t len, o;
    char *s = ckt_fuzz_rest(in, &len), *dst = ckt_fuzz_buf(dstlen);

    ck__log_sanitize(dst, dstlen, s, len);
    if (dstlen == 0) {
        CKT_FUZZ_CHECK((unsigned char)dst[0] == 0x5a);
    } else {
        o = len < dstlen - 1 ? len : dstlen - 1;
        CKT_FUZZ_CHECK(dst[o] == '\0' && strlen(dst) == o);
        for (size_t i = 0; i < o; i++) {
            unsigned char ch = (unsigned char)dst[i];
            CKT_FUZZ_CHECK(ch >= 0x20 && ch < 0x7f);
            /* the "..." mark of a truncation may overwrite the last three */
            if (!(len > o && dstlen >= 4 && i + 3 >= o))
                CKT_FUZZ_CHECK(ch == (unsigned char)s[i] || ch == '?');
        }
        if (len > o && dstlen >= 4)
            CKT_FUZZ_CHECK(o >= 3 && memcmp(dst + o - 3, "...", 3) == 0);
    }
    free(dst);
    /* NULL reads as "(null)", bounded too */
    dst = ckt_fuzz_buf(dstlen);
    ck__log_sanitize(dst, dstlen, NULL, 5);
    if (dstlen > 0)
        CKT_FUZZ_CHECK(strncmp(dst, "(null)", dstlen - 1) == 0 && memchr(dst, '\0', dstlen));
    free(dst);
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ckt_fuzz_in in = { data, size };
    uint8_t sel = ckt_fuzz_u8(&in);
    uint16_t l = ckt_fuzz_u16(&in);
    /* mostly tiny buffers, sometimes up to 4 KiB (the full stats text) */
    size_t len = l & 0x8000 ? (size_t)(l & 0xfff) : (size_t)(l % 48);

    switch (sel % 3) {
    case 0: {
        ck_stats s;
        uint64_t *f = (uint64_t *)&s;
        for (size_t i = 0; i < sizeof s / sizeof *f; i++)
            f[i] = ckt_fuzz_u64(&in);
        ckt_fz_format_contract(ckt_fz_format_stats, &s, len);
        ckt_fz_format_stats_text(&s);
        CKT_FUZZ_CHECK(ck_stats_format_prometheus(NULL, NULL, 0) == -1);
        break;
    }
    case 1: {
        ck_rate_result r;
        memset(&r, 0, sizeof r);
        r.allowed = (int)(ckt_fuzz_u8(&in) & 1);
        r.limit = (int64_t)ckt_fuzz_u64(&in);
        r.remaining = (int64_t)ckt_fuzz_u64(&in);
        r.retry_after_ms = (int64_t)ckt_fuzz_u64(&in);
        r.reset_after_ms = (int64_t)ckt_fuzz_u64(&in);
        r.rule = (int)ckt_fuzz_u8(&in) - 1;
        r.degraded = (int)(ckt_fuzz_u8(&in) & 1);
        ckt_fz_format_contract(ckt_fz_format_headers, &r, len);
        ckt_fz_format_headers_text(&r);
        CKT_FUZZ_CHECK(ck_rate_format_headers(NULL, NULL, 0) == -1);
        break;
    }
    default:
        ckt_fz_format_sanitize(&in, len);
        break;
    }
    return 0;
}
