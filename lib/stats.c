/* Prometheus text for ck_stats. snprintf-style, so a caller can size the
 * buffer with a first call of len 0. */
#include <stdio.h>
#include <string.h>

#include "internal.h"

static const struct {
    const char *name;
    size_t offset;
    const char *help;
} ck__metrics[] = {
#define M(f, h) { #f, offsetof(ck_stats, f), h }
    M(hits, "Cache answers with a value from Redis or L1."),
    M(null_hits, "Cache answers that were a cached absence."),
    M(misses, "Cache lookups that found nothing cached."),
    M(loads, "Loader calls."),
    M(load_errors, "Loader calls that failed."),
    M(stampede_waits, "Callers that waited for another caller's load."),
    M(stale_served, "Values served past their logical expiry."),
    M(l1_hits, "Cache hits answered by the in-process tier."),
    M(redis_errors, "Redis commands that failed."),
    M(degraded, "Calls answered without Redis."),
    M(breaker_opens, "Times the circuit breaker opened."),
    M(lock_acquired, "Locks acquired."),
    M(lock_busy, "Lock acquisitions that found the lock busy."),
    M(lock_lost, "Locks found lost on extend or release."),
    M(rate_allowed, "Rate checks that allowed the request."),
    M(rate_denied, "Rate checks that denied the request."),
    M(pool_waits, "Checkouts that found no free connection in time."),
#undef M
};

int ck_stats_format_prometheus(const ck_stats *s, char *buf, size_t len)
{
    size_t i, need = 0;

    if (s == NULL || (buf == NULL && len > 0))
        return -1;
    if (len > 0)
        buf[0] = '\0';
    for (i = 0; i < sizeof ck__metrics / sizeof ck__metrics[0]; i++) {
        uint64_t v;
        int n;

        memcpy(&v, (const char *)s + ck__metrics[i].offset, sizeof v);
        n = snprintf(need < len ? buf + need : NULL, need < len ? len - need : 0,
                     "# HELP cachekit_%s_total %s\n# TYPE cachekit_%s_total counter\n"
                     "cachekit_%s_total %llu\n",
                     ck__metrics[i].name, ck__metrics[i].help, ck__metrics[i].name,
                     ck__metrics[i].name, (unsigned long long)v);
        if (n < 0)
            return -1;
        need += (size_t)n;
    }
    return need > (size_t)0x7fffffff ? -1 : (int)need;
}
