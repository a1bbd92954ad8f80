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
 * header lines, parsed back, and their rounding up to seconds). The sanitizer writes only printable
 * ASCII, within dstlen, one byte per input byte up to the bound, and marks
 * a truncation with "...". */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>

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

/* "s seconds" is ms rounded up to whole seconds (ms >= 0), checked by its
 * definition, not by computing it: s * 1000 >= ms > (s - 1) * 1000. In
 * uint64_t nothing overflows (s <= 2^63 / 1000 + 1). `floor1`: at least 1. */
static int ckt_fz_format_is_secs(int64_t s, int64_t ms, int floor1)
{
    uint64_t us = (uint64_t)s, ums = (uint64_t)ms;

    if (s < 0 || s > INT64_MAX / 1000 + 1 || us * 1000 < ums)
        return 0;
    if (floor1 && s <= 1)
        return s == 1; /* then ms <= 1000, checked above */
    return s == 0 ? ms == 0 : (us - 1) * 1000 < ums;
}

/* One "Name: <integer>\r\n" line at *p: the integer, or 0 (and no
 * advance) when the next line is not `name`. Anything else fails. */
static int ckt_fz_format_line(const char **p, const char *name, int64_t *v)
{
    size_t nl = strlen(name);
    const char *q = *p;
    char *end;

    if (strncmp(q, name, nl) != 0 || strncmp(q + nl, ": ", 2) != 0)
        return 0;
    q += nl + 2;
    CKT_FUZZ_CHECK(*q == '-' || (*q >= '0' && *q <= '9'));
    errno = 0;
    *v = strtoll(q, &end, 10);
    CKT_FUZZ_CHECK(errno == 0 && end != q && strncmp(end, "\r\n", 2) == 0);
    *p = end + 2;
    return 1;
}

/* The header text parsed back: the lines in their order, each present
 * exactly when the result says so, each value what the field says. */
static void ckt_fz_format_headers_text(const ck_rate_result *r)
{
    char got[512];
    const char *p = got;
    int64_t v;
    int n = ck_rate_format_headers(r, got, sizeof got);

    CKT_FUZZ_CHECK(n >= 0 && (size_t)n < sizeof got && strlen(got) == (size_t)n);
    CKT_FUZZ_CHECK(ckt_fz_format_line(&p, "RateLimit-Limit", &v) && v == r->limit);
    if (ckt_fz_format_line(&p, "RateLimit-Remaining", &v))
        CKT_FUZZ_CHECK(r->remaining >= 0 && v == r->remaining);
    else
        CKT_FUZZ_CHECK(r->remaining < 0);
    if (ckt_fz_format_line(&p, "RateLimit-Reset", &v))
        CKT_FUZZ_CHECK(r->reset_after_ms >= 0 && ckt_fz_format_is_secs(v, r->reset_after_ms, 0));
    else
        CKT_FUZZ_CHECK(r->reset_after_ms < 0);
    if (ckt_fz_format_line(&p, "Retry-After", &v))
        CKT_FUZZ_CHECK(!r->allowed && r->retry_after_ms >= 0 &&
                       ckt_fz_format_is_secs(v, r->retry_after_ms, 1));
    else
        CKT_FUZZ_CHECK(r->allowed || r->retry_after_ms < 0);
    CKT_FUZZ_CHECK(*p == '\0'); /* nothing else */
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
