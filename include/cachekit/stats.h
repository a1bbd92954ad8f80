/* libcachekit: statistics counters and their Prometheus text form. */
#ifndef CACHEKIT_STATS_H
#define CACHEKIT_STATS_H

#include <stddef.h>
#include <stdint.h>
#include "cachekit/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Totals since ck_client_new, summed over all caches of the client.
 * Filled by ck_client_stats(); a snapshot, each counter read atomically.
 * New counters are only ever appended.
 */
typedef struct ck_stats {
    uint64_t hits;           /**< answers with a value from Redis or L1 (l1_hits is the L1 share) */
    uint64_t null_hits;      /**< answers that were a cached absence */
    uint64_t misses;         /**< lookups that found nothing cached */
    uint64_t loads;          /**< loader calls */
    uint64_t load_errors;    /**< loader calls that failed */
    uint64_t stampede_waits; /**< callers that waited for another caller's load */
    uint64_t stale_served;   /**< values served past their logical expiry */
    uint64_t l1_hits;        /**< hits answered by the in-process tier */
    uint64_t redis_errors;   /**< commands that failed: I/O, timeout, error reply */
    uint64_t degraded;       /**< calls answered without Redis (fail-open/closed/local) */
    uint64_t breaker_opens;  /**< times the circuit breaker opened */
    uint64_t lock_acquired;
    uint64_t lock_busy;
    uint64_t lock_lost;
    uint64_t rate_allowed;
    uint64_t rate_denied;
    uint64_t pool_waits;     /**< checkouts that found no free connection in pool_wait_ms */
} ck_stats;

/**
 * Format `s` as Prometheus text exposition (`cachekit_<name>_total` counters,
 * with # HELP and # TYPE lines).
 * snprintf-style: writes at most `len` bytes, NUL-terminated when len > 0,
 * and returns the length the full text needs (excluding the NUL), so a
 * return value >= len means the output was truncated.
 * @param buf may be NULL when len is 0 (to size the buffer).
 * @return the needed length, or -1 if s is NULL or buf is NULL with len > 0.
 * Thread safety: any thread.
 */
CACHEKIT_API int ck_stats_format_prometheus(const ck_stats *s, char *buf, size_t len);

#ifdef __cplusplus
}
#endif

#endif
