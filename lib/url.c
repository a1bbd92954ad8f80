/* Redis URL parsing:
 *   redis://[user[:pass]@]host[:port][/db]      host may be [IPv6]
 *   unix://[user[:pass]@]/path[?db=N]
 * User and password may be percent-encoded. Errors describe the problem
 * without echoing the URL, so a password can never leak into a log line. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "internal.h"

#define CK__URL_MAX 4096
#define CK__HOST_MAX 255
#define CK__DB_MAX 1000000

static ck_status ck__url_fail(ck__url *u, char *err, size_t errlen, const char *why)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "invalid redis url: %s", why);
    ck__url_clear(u);
    return CK_E_INVALID;
}

static int ck__hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decode s[0..len) into a new string; NULL on bad escape, NUL byte or
 * allocation failure (*nomem tells which). */
static char *ck__pct_decode(const char *s, size_t len, int *nomem)
{
    char *out = malloc(len + 1);
    size_t i, o = 0;

    *nomem = out == NULL;
    if (out == NULL)
        return NULL;
    for (i = 0; i < len; i++) {
        if (s[i] == '%') {
            int hi, lo;
            if (i + 2 >= len) { /* "%" needs two hex digits */
                free(out);
                return NULL;
            }
            hi = ck__hexval(s[i + 1]);
            lo = ck__hexval(s[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                free(out);
                return NULL;
            }
            out[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return out;
}

static char *ck__strndup(const char *s, size_t n)
{
    char *d = malloc(n + 1);

    if (d != NULL) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* Decimal in [lo, hi] covering exactly s[0..len). */
static int ck__parse_int(const char *s, size_t len, long lo, long hi, int *out)
{
    long v = 0;
    size_t i;

    if (len == 0 || len > 9)
        return -1;
    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

/* userinfo = user[:pass] (before the last '@' of the authority). */
static ck_status ck__parse_userinfo(const char *s, size_t len, ck__url *u, char *err,
                                    size_t errlen)
{
    const char *colon = memchr(s, ':', len);
    size_t ulen = colon != NULL ? (size_t)(colon - s) : len;
    int nomem = 0;

    if (ulen > 0) {
        u->user = ck__pct_decode(s, ulen, &nomem);
        if (u->user == NULL)
            return nomem ? CK_E_NOMEM
                         : ck__url_fail(u, err, errlen, "bad percent-escape in user name");
    }
    if (colon != NULL) {
        size_t plen = len - ulen - 1;
        u->pass = ck__pct_decode(colon + 1, plen, &nomem);
        if (u->pass == NULL)
            return nomem ? CK_E_NOMEM
                         : ck__url_fail(u, err, errlen, "bad percent-escape in password");
        if (plen == 0) { /* "user:@host": no password given */
            free(u->pass);
            u->pass = NULL;
        }
    }
    if (u->user != NULL && u->pass == NULL)
        return ck__url_fail(u, err, errlen, "an ACL user needs a password");
    return CK_OK;
}

static ck_status ck__parse_tcp(const char *p, size_t len, ck__url *u, char *err, size_t errlen)
{
    const char *end = p + len, *slash, *at, *host, *hend, *port = NULL;
    ck_status st;

    slash = memchr(p, '/', len);
    if (slash == NULL)
        slash = end;
    /* the password may contain '@' once percent-decoding is considered, but a
     * raw '@' belongs to userinfo only up to the last one before the path */
    at = NULL;
    for (const char *q = p; q < slash; q++)
        if (*q == '@')
            at = q;
    if (at != NULL) {
        st = ck__parse_userinfo(p, (size_t)(at - p), u, err, errlen);
        if (st != CK_OK)
            return st;
        host = at + 1;
    } else {
        host = p;
    }
    if (host < slash && *host == '[') { /* [IPv6] */
        const char *rb = memchr(host, ']', (size_t)(slash - host));
        if (rb == NULL || rb == host + 1)
            return ck__url_fail(u, err, errlen, "unterminated or empty [IPv6] host");
        hend = rb;
        host++;
        if (rb + 1 < slash) {
            if (rb[1] != ':')
                return ck__url_fail(u, err, errlen, "garbage after [IPv6] host");
            port = rb + 2;
        }
    } else {
        const char *colon = memchr(host, ':', (size_t)(slash - host));
        hend = colon != NULL ? colon : slash;
        if (colon != NULL)
            port = colon + 1;
    }
    if (hend == host)
        return ck__url_fail(u, err, errlen, "missing host");
    if ((size_t)(hend - host) > CK__HOST_MAX)
        return ck__url_fail(u, err, errlen, "host name too long");
    for (const char *q = host; q < hend; q++) {
        unsigned char ch = (unsigned char)*q;
        if (ch <= 0x20 || ch >= 0x7f || ch == '@' || ch == '[' || ch == ']' || ch == '%' ||
            ch == '?' || ch == '#')
            return ck__url_fail(u, err, errlen, "bad character in host");
    }
    u->port = 6379;
    if (port != NULL && ck__parse_int(port, (size_t)(slash - port), 1, 65535, &u->port) != 0)
        return ck__url_fail(u, err, errlen, "port must be 1-65535");
    u->db = 0;
    if (slash < end && slash + 1 < end &&
        ck__parse_int(slash + 1, (size_t)(end - slash - 1), 0, CK__DB_MAX, &u->db) != 0)
        return ck__url_fail(u, err, errlen, "database must be a number 0-1000000");
    u->host = ck__strndup(host, (size_t)(hend - host));
    return u->host != NULL ? CK_OK : CK_E_NOMEM;
}

static ck_status ck__parse_unix(const char *p, size_t len, ck__url *u, char *err, size_t errlen)
{
    const char *end = p + len, *path, *q;
    size_t plen;
    ck_status st;

    path = memchr(p, '/', len);
    if (path == NULL)
        return ck__url_fail(u, err, errlen, "unix socket path must be absolute");
    if (path > p) { /* userinfo before the path: unix://user:pass@/path */
        if (path[-1] != '@')
            return ck__url_fail(u, err, errlen, "unix url has a host part");
        st = ck__parse_userinfo(p, (size_t)(path - 1 - p), u, err, errlen);
        if (st != CK_OK)
            return st;
    }
    q = memchr(path, '?', (size_t)(end - path));
    plen = (size_t)((q != NULL ? q : end) - path);
    if (plen < 2)
        return ck__url_fail(u, err, errlen, "missing unix socket path");
    if (plen >= sizeof(((struct sockaddr_un *)0)->sun_path))
        return ck__url_fail(u, err, errlen, "unix socket path too long");
    u->db = 0;
    if (q != NULL) {
        if ((size_t)(end - q) < 4 || memcmp(q, "?db=", 4) != 0 ||
            ck__parse_int(q + 4, (size_t)(end - q - 4), 0, CK__DB_MAX, &u->db) != 0)
            return ck__url_fail(u, err, errlen, "unix url accepts only ?db=N");
    }
    u->is_unix = 1;
    u->path = ck__strndup(path, plen);
    return u->path != NULL ? CK_OK : CK_E_NOMEM;
}

ck_status ck__url_parse(const char *s, ck__url *out, char *err, size_t errlen)
{
    size_t len;
    ck_status st;

    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (out == NULL)
        return CK_E_INVALID;
    memset(out, 0, sizeof *out);
    if (s == NULL)
        return ck__url_fail(out, err, errlen, "NULL");
    len = strnlen(s, CK__URL_MAX + 1);
    if (len > CK__URL_MAX)
        return ck__url_fail(out, err, errlen, "longer than 4096 bytes");
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] == 0x7f)
            return ck__url_fail(out, err, errlen, "contains a space or control character");
    if (len >= 8 && memcmp(s, "redis://", 8) == 0)
        st = ck__parse_tcp(s + 8, len - 8, out, err, errlen);
    else if (len >= 7 && memcmp(s, "unix://", 7) == 0)
        st = ck__parse_unix(s + 7, len - 7, out, err, errlen);
    else if (len >= 9 && memcmp(s, "rediss://", 9) == 0)
        st = ck__url_fail(out, err, errlen, "TLS (rediss://) is not supported");
    else
        st = ck__url_fail(out, err, errlen, "scheme must be redis:// or unix://");
    if (st == CK_E_NOMEM) {
        ck__url_clear(out);
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "out of memory parsing redis url");
    }
    return st;
}

void ck__url_clear(ck__url *u)
{
    if (u == NULL)
        return;
    free(u->host);
    free(u->path);
    free(u->user);
    if (u->pass != NULL) { /* do not leave the password in freed memory */
        volatile char *p = u->pass;
        while (*p)
            *p++ = '\0';
        free(u->pass);
    }
    memset(u, 0, sizeof *u);
}
