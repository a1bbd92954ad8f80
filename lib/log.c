/* Logging: format once into a bounded buffer, then hand it to the host.
 * Messages are built only when their level is enabled, so a disabled DEBUG
 * line costs one comparison. */
#include <stdio.h>
#include <string.h>

#include "internal.h"

#define CK__LOG_MAX 512

void ck__log(const ck__logger *lg, int level, const char *fmt, ...)
{
    char buf[CK__LOG_MAX];
    va_list ap;

    if (lg == NULL || lg->fn == NULL || level > lg->level)
        return;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap); /* truncation is fine for a log line */
    va_end(ap);
    lg->fn(lg->user, level, buf);
}

void ck__log_sanitize(char *dst, size_t dstlen, const char *s, size_t len)
{
    size_t i, o = 0;

    if (dstlen == 0)
        return;
    if (s == NULL) {
        snprintf(dst, dstlen, "(null)");
        return;
    }
    for (i = 0; i < len && o + 1 < dstlen; i++) {
        unsigned char ch = (unsigned char)s[i];
        dst[o++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
    }
    dst[o] = '\0';
    if (i < len && dstlen >= 4) /* truncated: mark it */
        memcpy(dst + (o >= 3 ? o - 3 : 0), "...", 4);
}
