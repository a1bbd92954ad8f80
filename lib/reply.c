/* Error replies, classified once here so that every module degrades the
 * same way. The first word of a Redis error is its code. */
#include <string.h>

#include "internal.h"

static int ck__code_is(const char *s, size_t len, const char *code)
{
    size_t n = strlen(code);

    /* the code is the whole first word: "BUSY" must not match "BUSYKEY" */
    return len >= n && memcmp(s, code, n) == 0 && (len == n || s[n] == ' ');
}

ck__errclass ck__classify_error(const char *s, size_t len, int is_write)
{
    static const char *const unavailable[] = {
        "READONLY", "MISCONF", "LOADING", "BUSY", "MASTERDOWN",
        "CLUSTERDOWN", "TRYAGAIN", "NOREPLICAS",
    };
    size_t i;

    if (s == NULL)
        return CK__ERR_OTHER;
    for (i = 0; i < sizeof unavailable / sizeof unavailable[0]; i++)
        if (ck__code_is(s, len, unavailable[i]))
            return CK__ERR_UNAVAILABLE;
    /* Under maxmemory a read still works; only writes are refused. */
    if (ck__code_is(s, len, "OOM"))
        return is_write ? CK__ERR_UNAVAILABLE : CK__ERR_OTHER;
    if (ck__code_is(s, len, "NOSCRIPT"))
        return CK__ERR_NOSCRIPT;
    if (ck__code_is(s, len, "WRONGTYPE"))
        return CK__ERR_WRONGTYPE;
    if (ck__code_is(s, len, "WRONGPASS") || ck__code_is(s, len, "NOAUTH") ||
        ck__code_is(s, len, "NOPERM"))
        return CK__ERR_AUTH;
    return CK__ERR_OTHER;
}

ck_status ck__reply_status(const redisReply *r, int is_write)
{
    if (r == NULL)
        return CK_E_PROTOCOL;
    if (r->type != REDIS_REPLY_ERROR)
        return CK_OK;
    switch (ck__classify_error(r->str, r->len, is_write)) {
    case CK__ERR_UNAVAILABLE:
        return CK_E_UNAVAILABLE;
    case CK__ERR_WRONGTYPE:
        return CK_E_CORRUPT;
    case CK__ERR_AUTH:
        return CK_E_UNAVAILABLE;
    default:
        return CK_E_PROTOCOL;
    }
}
