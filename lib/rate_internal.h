/* Internals shared by the rate-limit files (ratelimit.c, slots.c,
 * rate_local.c, rate_scripts.c) and reached by their tests. Not public. */
#ifndef CACHEKIT_RATE_INTERNAL_H
#define CACHEKIT_RATE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"

/* ---- scripts (rate_scripts.c) ----
 * ck__rate_check_script: "#!lua" (a write script: refused up front under
 *   OOM, paused by CLIENT PAUSE WRITE), the multi-rule check.
 * ck__rate_peek_script: the same body under "#!lua flags=no-writes"; it
 *   takes the same arguments and never reaches a write command.
 * ck__rate_log_script: "#!lua", the check of one sliding-log rule alone
 *   (KEYS = {log}, ARGV = {cost, window_ms, limit}); replies the remaining
 *   count alone, an integer, when it admits a cost > 0.
 * ck__slots_script: acquire / touch / release of concurrency slots.
 * ck__rate_lua_bounds: the Lua text defining `bounds(algo, win_us, off_us,
 *   t_us)` (and `civil`, `fdiv`) that both rate scripts start with; tests run
 *   it with EVAL to compare it with the C version below. */
extern ck__script ck__rate_check_script;
extern ck__script ck__rate_peek_script;
extern ck__script ck__rate_log_script;
extern ck__script ck__slots_script;
extern const char ck__rate_lua_bounds[];
/* Assemble the rate scripts' sources (once); before any use of them. */
void ck__rate_scripts_init(void);

/* Algorithm numbers as the scripts know them (== ck_rl_algo values). */
#define CK__RL_LOG 0
#define CK__RL_SW 1
#define CK__RL_GCRA 2
#define CK__RL_FIXED 3
#define CK__RL_DAY 4
#define CK__RL_WEEK 5
#define CK__RL_MONTH 6

/* floor(a / b) for b > 0. */
static inline int64_t ck__floordiv(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

/* The window [*start, *end) in UTC microseconds holding t_us for a fixed or
 * calendar rule (algo CK__RL_FIXED .. CK__RL_MONTH); the same arithmetic as
 * the scripts' bounds(). off_us = utc_offset_min * 60e6. */
void ck__rate_bounds(int algo, int64_t win_us, int64_t off_us, int64_t t_us, int64_t *start,
                     int64_t *end);

/* ---- validation (ratelimit.c) ----
 * NULL when `key` is a valid limited key (then *len is its length), else
 * why not. Holder ids follow the same rule except that braces are fine. */
const char *ck__rate_check_key(const char *key, size_t *len, int is_holder);
/* Log "<fn>: <why> (key "<sanitized key>")" at WARN. */
void ck__rate_log_invalid(ck_client *c, const char *fn, const char *why, const char *key);

/* Key names "<prefix>:r:{<key>}:<suffix>" in a stack buffer, or the heap
 * when they do not fit. */
typedef struct ck__rate_keys {
    char stack[1536];
    char *buf;
    size_t base;     /* length of "<prefix>:r:{<key>}:" */
    const char *keys[2 * CK_RATE_MAX_RULES];
    size_t lens[2 * CK_RATE_MAX_RULES];
    int n;
} ck__rate_keys;
/* Build `n_rules` pairs "<base><i>", "<base><i>:l" (n_rules > 0), or, with
 * n_rules 0, the pair "<base>slots", "<base>slots:h". CK_E_NOMEM or CK_OK. */
ck_status ck__rate_keys_build(ck__rate_keys *k, const char *prefix, const char *key,
                              size_t keylen, size_t n_rules);
void ck__rate_keys_free(ck__rate_keys *k);

/* ---- the in-process limiter of CK_FAIL_LOCAL (rate_local.c) ----
 * Process-wide (state keyed by the Redis key names, so clients with the same
 * prefix share it, as one instance should), bounded (4096 rule states, 1024
 * slot holders; the least recently used state is dropped first), guarded by
 * one mutex, reset in a fork child. Each rule enforces
 * max(1, limit / instances). Sliding log and sliding window both run as the
 * two-bucket counter locally (bounded memory); GCRA, fixed and calendar
 * windows run as themselves on the host's clocks (CLOCK_MONOTONIC,
 * CLOCK_REALTIME for window boundaries). */
void ck__rate_local_check(const char *prefix, const char *key, size_t keylen,
                          const ck_rate_rule *rules, size_t n_rules, int64_t cost, int commit,
                          int instances, ck_rate_result *out);
void ck__rate_local_reset(const char *prefix, const char *key, size_t keylen);
/* Slots: 1 allowed, 0 denied; fills out. */
void ck__slots_local_acquire(const char *prefix, const char *key, size_t keylen,
                             int max_active, const char *holder, int stale_ms, int instances,
                             ck_rate_result *out);
int ck__slots_local_touch(const char *prefix, const char *key, size_t keylen, const char *holder);
int ck__slots_local_release(const char *prefix, const char *key, size_t keylen,
                            const char *holder);
/* Forget every local state (tests). */
void ck__rate_local_clear(void);

#endif
