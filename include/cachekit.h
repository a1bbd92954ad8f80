/*
 * libcachekit — Redis-backed cache, locks and rate limits for C services.
 *
 * Include only this header. Link with `pkg-config --cflags --libs cachekit`.
 *
 * Thread safety
 *   - ck_client and ck_cache may be shared by any number of threads and
 *     called concurrently; so may every ck_rate_* / ck_slots_* call.
 *   - A ck_lock is used by one thread at a time; it may move between threads.
 *   - Loaders, ck_redis_fn functions and the log function may run on several
 *     threads at once. The log function must not call back into libcachekit.
 *   - libcachekit never modifies a json_t you pass in; every json_t it
 *     returns is a new reference of your own (values waiting threads share
 *     are deep-copied per caller), except a value answered from a cache's
 *     L1 tier (info->source == CK_SRC_L1): that one is shared, read-only.
 *   - Threads the library starts: one timer per client (the deadline of
 *     ck_client_run), one watchdog per running ck_with_lock (joined before
 *     it returns) and, with a cache that has an L1 tier, one invalidation
 *     subscriber per client. ck_client_free joins the client's.
 *
 * Ownership
 *   - ck_X_new(..., ck_X **out): the caller owns *out and frees it with
 *     ck_X_free(); every ck_X_free(NULL) is a no-op.
 *   - Strings in option structs are copied. ck_strerror() and ck_version()
 *     return static strings.
 *   - The redisContext handed to a ck_redis_fn is lent for that call only.
 *     No redisReply ever leaves the library.
 *
 * Errors: every function returns ck_status (>= 0 outcomes, < 0 errors);
 * details go to the log callback of ck_options, never containing secrets.
 */
#ifndef CACHEKIT_H
#define CACHEKIT_H

#include "cachekit/version.h"
#include "cachekit/common.h"
#include "cachekit/stats.h"
#include "cachekit/client.h"
#include "cachekit/cache.h"
#include "cachekit/lock.h"
#include "cachekit/ratelimit.h"

#endif
