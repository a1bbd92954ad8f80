/* libcachekit: rate limiting and concurrency slots, evaluated atomically in
 * Redis Lua scripts against Redis's own clock (see docs/ratelimit.md). */
#ifndef CACHEKIT_RATELIMIT_H
#define CACHEKIT_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>
#include "cachekit/common.h"
#include "cachekit/client.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Most rules one ck_rate_check() evaluates together. */
#define CK_RATE_MAX_RULES 16
/** Longest limited key (and slot holder id), in bytes. */
#define CK_RATE_MAX_KEY 512
/** Largest `limit` (and `max_active`) any rule accepts: 2^50, so every
 *  count stays exact in Lua's doubles. */
#define CK_RATE_MAX_LIMIT ((int64_t)1 << 50)
/** Largest `limit` of a CK_RL_SLIDING_LOG rule. The log keeps one sorted-set
 *  entry (~118 bytes of Redis memory) per admitted request still inside the
 *  window, so a full log of 10000 costs ~1.3 MB; for larger limits use
 *  CK_RL_SLIDING_WINDOW (two counters per key) or CK_RL_GCRA (one timestamp). */
#define CK_RATE_LOG_MAX_LIMIT 10000
/** Longest `window_ms`: 10 years of 365 days. */
#define CK_RATE_MAX_WINDOW_MS ((int64_t)315360000000)

/** Rate-limit algorithms. All run inside one Redis Lua script, read the clock
 *  with Redis TIME, and never trust the client's clock. */
typedef enum {
    /** Exact rolling window: a request of cost c is admitted iff the costs
     *  admitted in the last window_ms plus c are <= limit. One sorted-set
     *  entry per admitted request; limit <= CK_RATE_LOG_MAX_LIMIT. */
    CK_RL_SLIDING_LOG,
    /** Two-bucket weighted counter: the previous fixed bucket's count,
     *  weighted by how much of it still overlaps the rolling window, plus
     *  the current bucket's. Exact within the first window, approximate
     *  (it assumes the previous bucket's requests were evenly spread) after. */
    CK_RL_SLIDING_WINDOW,
    /** Generic cell rate algorithm (a leaky bucket as a single timestamp):
     *  burst = limit, then one unit per window_ms/limit. */
    CK_RL_GCRA,
    /** Fixed windows of window_ms aligned on the Unix epoch in the local time
     *  of utc_offset_min (window 3600000, offset +330: hours start at :30 UTC). */
    CK_RL_FIXED,
    /** Calendar day in the local time of utc_offset_min (window_ms ignored). */
    CK_RL_CALENDAR_DAY,
    /** Calendar week starting Monday 00:00 local time (window_ms ignored). */
    CK_RL_CALENDAR_WEEK,
    /** Calendar month starting on the 1st 00:00 local time (window_ms ignored). */
    CK_RL_CALENDAR_MONTH
} ck_rl_algo;

/**
 * One limit on a key. A rule's state lives in Redis under
 * `<prefix>:r:{<key>}:<rule index>` (a sliding log under `...:<index>:l`):
 * keep a key's rules in the same order. Changing a rule's algorithm, window
 * or offset starts that rule afresh (a sliding log keeps its entries, which
 * are events, when only its window changes); changing only its limit keeps
 * its state.
 */
typedef struct ck_rate_rule {
    ck_rl_algo algo;
    int64_t limit;       /**< 1 .. CK_RATE_MAX_LIMIT (CK_RATE_LOG_MAX_LIMIT for the log) */
    int64_t window_ms;   /**< 1 .. CK_RATE_MAX_WINDOW_MS; ignored by the calendar algorithms */
    int utc_offset_min;  /**< -1439 .. 1439: local time of CK_RL_FIXED and the calendar
                              windows (a fixed offset: daylight saving is not followed) */
} ck_rate_rule;

/**
 * The answer of ck_rate_check(), ck_rate_peek() and ck_slots_acquire().
 * Times are milliseconds from the moment Redis evaluated the call, rounded up.
 */
typedef struct ck_rate_result {
    int allowed;            /**< 1: admitted (and charged, for ck_rate_check) */
    /** The reported rule's limit. Allowed: the rule with the least remaining
     *  after the charge (the one that binds next); denied: the first denying rule. */
    int64_t limit;
    /** What the reported rule has left (after the charge when allowed;
     *  nothing was charged when denied). -1: unknown (degraded, no local limiter). */
    int64_t remaining;
    /** Denied: wait this long before the same cost can pass, the longest
     *  wait among the denying rules (assuming no other traffic); -1 = never,
     *  the cost exceeds a rule's limit. Allowed: 0. */
    int64_t retry_after_ms;
    /** Until the reported rule has its whole limit available again (0 when
     *  nothing is used); for fixed and calendar windows, the window's end.
     *  -1: unknown (degraded, no local limiter). */
    int64_t reset_after_ms;
    int rule;               /**< index of the first denying rule; -1 when allowed */
    int degraded;           /**< 1: Redis was not asked or did not answer; the fail mode decided */
} ck_rate_result;

/**
 * Format the HTTP headers of a result, one "Name: value\r\n" line each:
 * RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset (seconds, rounded up)
 * and, when denied and a retry can succeed, Retry-After (seconds, rounded up,
 * at least 1). Unknown fields (-1 in a degraded result) are left out.
 * snprintf-style: writes at most `len` bytes, NUL-terminated when len > 0, and
 * returns the length the full text needs (excluding the NUL); a return value
 * >= len means the output was truncated.
 * @param buf may be NULL when len is 0 (to size the buffer).
 * @return the needed length, or -1 if r is NULL or buf is NULL with len > 0.
 * Thread safety: any thread.
 */
CACHEKIT_API int ck_rate_format_headers(const ck_rate_result *r, char *buf, size_t len);

/**
 * Charge `cost` to every rule of `key`, all or nothing: the rules are all
 * evaluated in one script, and only if every rule admits the cost is it
 * charged to all of them; a denying rule charges none of the others.
 * @param key   1..CK_RATE_MAX_KEY bytes without '{', '}' or control characters
 *              (':' is fine); copied into the Redis key names.
 * @param rules 1..CK_RATE_MAX_RULES rules; rule i keeps its state under index i.
 * @param cost  >= 0. 0 charges nothing and is always allowed (it reads the
 *              state). A cost above a rule's limit is denied with
 *              retry_after_ms = -1.
 * @param out   [out] the answer; filled on every status except when it is NULL.
 * @return
 *   - CK_OK: `out` is the answer. From Redis (degraded 0), or, when Redis is
 *     unreachable, timed out, busy, refusing writes, denying a command by
 *     ACL (NOPERM), or the breaker is open: with CK_FAIL_OPEN
 *     allowed = 1 (remaining/reset -1), with CK_FAIL_LOCAL the in-process
 *     limiter's answer for limit/local_instances (at least 1) per rule;
 *     degraded = 1 in both.
 *   - CK_E_UNAVAILABLE: only with CK_FAIL_CLOSED, when Redis could not
 *     answer: allowed = 0, degraded = 1, retry_after_ms = breaker_cooldown_ms.
 *   - CK_E_PROTOCOL / CK_E_NOMEM: Redis answered with another error (a
 *     script error) or an unexpected reply, or an allocation failed; logged,
 *     and `out` holds the fail mode's answer with degraded = 1.
 *   - CK_E_INVALID: a NULL argument, a bad key, no or too many rules, a bad
 *     rule (limit, window or offset out of range), cost < 0; logged; `out`
 *     says allowed 0, degraded 0.
 * A consuming check whose reply was lost (a timeout after the script was
 * sent: it may have run) is never sent again; it gets the degraded answer.
 * Counts rate_allowed or rate_denied (and degraded) in the client's stats.
 * Thread safety: any thread, concurrently; exact across threads, processes
 * and hosts sharing the Redis server.
 */
CACHEKIT_API ck_status ck_rate_check(ck_client *c, const char *key, const ck_rate_rule *rules,
                                     size_t n_rules, int64_t cost, ck_rate_result *out);

/**
 * Would a request of cost 1 pass every rule now? Charges nothing and writes
 * nothing: a `no-writes` script, so it also runs while writes are paused
 * (CLIENT PAUSE WRITE) and on read-only replicas. `remaining` is what the
 * reported rule has now (nothing charged); `limit`, `rule`, `retry_after_ms`
 * and `reset_after_ms` are as ck_rate_check() would answer.
 * @return as ck_rate_check() (CK_FAIL_LOCAL peeks at the in-process limiter);
 *         not counted in rate_allowed / rate_denied.
 * Thread safety: any thread.
 */
CACHEKIT_API ck_status ck_rate_peek(ck_client *c, const char *key, const ck_rate_rule *rules,
                                    size_t n_rules, ck_rate_result *out);

/**
 * Forget the state of every rule of `key` (the keys of rule indexes
 * 0 .. CK_RATE_MAX_RULES-1) in Redis and in this process's local limiter.
 * Concurrency slots of the key are not touched.
 * @return CK_OK (also when there was nothing to forget), CK_E_INVALID (bad
 *         key, c NULL), CK_E_UNAVAILABLE (whatever the fail mode), CK_E_PROTOCOL.
 * Thread safety: any thread.
 */
CACHEKIT_API ck_status ck_rate_reset(ck_client *c, const char *key);

/**
 * Take one of `max_active` concurrency slots of `key` for `holder_id`.
 * A holder keeps its slot until ck_slots_release() or until `stale_ms` pass
 * without an acquire or a ck_slots_touch() by it, so a crashed holder never
 * leaks a slot. Acquiring again with a holder id that holds a slot takes no
 * second slot: it refreshes the slot (and its stale_ms) and is allowed.
 * The slots live under `<prefix>:r:{<key>}:slots` (+ `:slots:h`), with a TTL.
 * @param key       as for ck_rate_check().
 * @param max_active > 0.
 * @param holder_id 1..CK_RATE_MAX_KEY bytes without control characters;
 *                  unique per holder (e.g. host:pid:request id).
 * @param stale_ms  > 0.
 * @param out       [out] allowed; limit = max_active; remaining = free slots
 *                  after the call; denied: retry_after_ms = reset_after_ms =
 *                  time until the oldest holder goes stale (a release may come
 *                  sooner); allowed: retry_after_ms 0, reset_after_ms = stale_ms.
 * @return as ck_rate_check(): CK_OK (answer from Redis, or degraded per the
 *         fail mode: CK_FAIL_OPEN allows; CK_FAIL_LOCAL counts holders in
 *         this process against max_active/local_instances, at least 1),
 *         CK_E_UNAVAILABLE (CK_FAIL_CLOSED and Redis could not answer),
 *         CK_E_PROTOCOL, CK_E_NOMEM, CK_E_INVALID.
 * Counts rate_allowed / rate_denied. Thread safety: any thread.
 */
CACHEKIT_API ck_status ck_slots_acquire(ck_client *c, const char *key, int max_active,
                                        const char *holder_id, int stale_ms,
                                        ck_rate_result *out);

/**
 * Heartbeat: push `holder_id`'s slot expiry to now + the stale_ms it was
 * acquired with.
 * @return CK_OK, CK_E_LOCK_LOST (the holder has no live slot: it went stale
 *         or was released; acquire again), CK_E_INVALID, CK_E_UNAVAILABLE
 *         (whatever the fail mode; with CK_FAIL_LOCAL the local slot is
 *         touched too), CK_E_PROTOCOL.
 * Thread safety: any thread.
 */
CACHEKIT_API ck_status ck_slots_touch(ck_client *c, const char *key, const char *holder_id);

/**
 * Free `holder_id`'s slot.
 * @return CK_OK (freed), CK_NOT_FOUND (the holder had no live slot: already
 *         released or stale), CK_E_INVALID, CK_E_UNAVAILABLE (whatever the
 *         fail mode; the slot then frees itself after stale_ms), CK_E_PROTOCOL.
 * Thread safety: any thread.
 */
CACHEKIT_API ck_status ck_slots_release(ck_client *c, const char *key, const char *holder_id);

#ifdef __cplusplus
}
#endif

#endif
