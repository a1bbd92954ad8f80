/* libcachekit: the cache — cache-aside with a host loader, null-caching,
 * tags, stampede protection, fail-safe stale values — and the typed token
 * layer on top of it. */
#ifndef CACHEKIT_CACHE_H
#define CACHEKIT_CACHE_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "cachekit/common.h"
#include "cachekit/client.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Opaque. Thread-safe: share one cache between all threads. */
typedef struct ck_cache ck_cache;

/** How a key reaches Redis. */
typedef enum {
    CK_KEY_SHA256 = 0,  /**< hex SHA-256 of the key: no raw key in Redis (default) */
    CK_KEY_HMAC_SHA256, /**< HMAC-SHA-256 with hmac_key: not even guessable offline */
    CK_KEY_PLAIN        /**< the raw key, Dify-compatible layout and bare JSON values */
} ck_key_hash;

/** Where an answer of ck_cache_get came from. */
typedef enum { CK_SRC_NONE = 0, CK_SRC_L1, CK_SRC_REDIS, CK_SRC_LOADER } ck_source;

/** Optional out-parameter of ck_cache_get. */
typedef struct ck_get_info {
    ck_source source; /**< where the answer came from */
    int degraded;     /**< Redis was skipped or failed on this call */
    int stale;        /**< a value past its logical expiry was served */
} ck_get_info;

/**
 * The host's loader: look `key` up in the database.
 * @return CK_OK with *out set (a new reference; ownership moves to the
 *         cache): the value is cached for ttl_ms.
 *         CK_NOT_FOUND: the key does not exist; the absence is cached for
 *         null_ttl_ms.
 *         Anything else: nothing is cached, ck_cache_get returns CK_E_LOADER.
 * Runs on the calling thread; several loaders (for different keys) may run
 * at once. It must not call back into the same cache for the same key.
 */
typedef ck_status (*ck_loader_fn)(void *user, const char *key, json_t **out);

/** Cache options: call ck_cache_options_init() first, then set fields. */
typedef struct ck_cache_options {
    const char *name;        /**< 1-64 bytes of [A-Za-z0-9_.-], e.g. "api_token"; required */
    int ttl_ms;              /**< lifetime of a value, default 600000 */
    int null_ttl_ms;         /**< lifetime of a cached absence, default 60000 */
    int jitter_pct;          /**< +-% random spread of both TTLs, 0-50, default 10 */
    ck_key_hash key_hash;    /**< default CK_KEY_SHA256 */
    const void *hmac_key;    /**< CK_KEY_HMAC_SHA256: the secret (copied), 16+ bytes */
    size_t hmac_key_len;
    int stampede_lock_ms;    /**< cross-instance single-flight lock, default 5000, 0 = off */
    int stampede_wait_ms;    /**< followers wait this long for the leader, default 2000 */
    int stale_ttl_ms;        /**< fail-safe: keep serving an expired value this long
                                  when the loader fails, default 0 = off; not
                                  with CK_KEY_PLAIN (bare values have no expiry) */
    size_t l1_max_entries;   /**< in-process L1 tier: at most this many entries
                                  (values and absences, approximate LRU), 0 = off
                                  (default), at most 16777216. An entry holds
                                  one copy of its value per thread that read
                                  it (at most 8). Starts the client's
                                  invalidation subscriber (one thread, one
                                  connection) with the first such cache. */
    int l1_ttl_ms;           /**< L1 entry lifetime (never past the entry's own
                                  expiry), default 30000 */
} ck_cache_options;

/** Fill `o` with the defaults (name NULL: set it). NULL is a no-op. */
CACHEKIT_API void ck_cache_options_init(ck_cache_options *o);

/**
 * Create a cache on a client. The client must outlive the cache.
 * @return CK_OK, CK_E_INVALID (bad name or option, logged), CK_E_NOMEM.
 */
CACHEKIT_API ck_status ck_cache_new(ck_client *c, const ck_cache_options *o, ck_cache **out);

/** Free the cache. NULL is a no-op. No call on `k` may be running. Free
 * every cache before its client. */
CACHEKIT_API void ck_cache_free(ck_cache *k);

/**
 * Cache-aside lookup: one GET on a hit; on a miss one caller (per process
 * and, with stampede_lock_ms, across processes) runs `loader` and caches the
 * answer, while the others wait for it. With the L1 tier, a hit on a value
 * read in the last l1_ttl_ms touches no socket (info->source CK_SRC_L1);
 * writes and invalidations by any instance reach L1 over Pub/Sub, and L1
 * answers on its own only while that subscription is up. While Redis
 * fails, L1 answers what it holds (fresh, or marked stale within
 * stale_ttl_ms) before the fail mode applies.
 * @param scope  NULL (stored as "any") or 1-64 bytes of [A-Za-z0-9_.-];
 *               "s" and "t" are reserved (they name the indexes).
 * @param key    non-empty, at most 4096 bytes, no NUL.
 * @param loader NULL: only look (CK_MISS when nothing is cached).
 * @param out    [out] on CK_OK a new reference the caller json_decref()s;
 *               NULL otherwise. May be NULL to only test presence. A value
 *               from L1 (info->source == CK_SRC_L1) is shared with the tier
 *               and other threads: read it, never modify it (json_deep_copy()
 *               it first). Values from Redis or the loader are the caller's.
 * @param info   [out] optional.
 * @return CK_OK (value), CK_NOT_FOUND (cached or loaded absence), CK_MISS
 *         (nothing cached, no loader), CK_E_LOADER (loader failed and no
 *         stale value), CK_E_UNAVAILABLE (Redis failed and CK_FAIL_CLOSED, or
 *         no loader), CK_E_INVALID, CK_E_NOMEM.
 *         With CK_FAIL_OPEN and Redis down the loader is called directly,
 *         nothing is cached and info->degraded = 1.
 */
CACHEKIT_API ck_status ck_cache_get(ck_cache *k, const char *scope, const char *key,
                                    ck_loader_fn loader, void *user, json_t **out,
                                    ck_get_info *info);

/**
 * Write a value (or, with value NULL, an absence) and index it under `tags`
 * (NULL-terminated list, at most 16, each 1-256 bytes without control
 * characters; may be NULL). `value` is not modified or stolen.
 * @return CK_OK, CK_E_UNAVAILABLE (never blocks past the deadline),
 *         CK_E_INVALID, CK_E_NOMEM.
 */
CACHEKIT_API ck_status ck_cache_set(ck_cache *k, const char *scope, const char *key,
                                    json_t *value, const char *const *tags);

/**
 * Remove `key` in one scope, or with scope NULL in every scope it was
 * written under (through a per-key scope index: no SCAN, no KEYS).
 * @return CK_OK (also when nothing was cached), CK_E_UNAVAILABLE, CK_E_INVALID.
 */
CACHEKIT_API ck_status ck_cache_invalidate(ck_cache *k, const char *scope, const char *key);

/**
 * Remove exactly the entries written with `tag`, in batches of 256 keys.
 * @return CK_OK, CK_E_UNAVAILABLE (some entries may remain: call again),
 *         CK_E_INVALID.
 */
CACHEKIT_API ck_status ck_cache_invalidate_tag(ck_cache *k, const char *tag);

/**
 * Look up `n` keys (at most 1024) in one round trip, without loading (and
 * without the L1 tier: always from Redis).
 * out[i]: a new reference or NULL; st[i]: CK_OK, CK_NOT_FOUND, CK_MISS,
 * CK_E_CORRUPT (entry dropped) or CK_E_INVALID (bad key).
 * @return CK_OK when Redis answered; CK_E_UNAVAILABLE (every st[i] too),
 *         CK_E_INVALID.
 */
CACHEKIT_API ck_status ck_cache_mget(ck_cache *k, const char *scope, const char *const *keys,
                                     size_t n, json_t **out, ck_status *st);

/* ---- the token layer ---- */

/** An API token record. Strings are owned by the record (NULL = none). */
typedef struct ck_token {
    char *id, *app_id, *tenant_id, *type, *token;
    int64_t last_used_at, created_at; /**< unix seconds, 0 = none */
} ck_token;

/**
 * The host's token loader: look the token up in the database.
 * @return CK_OK with *out (allocated with malloc/strdup or ck_token_new-style
 *         code; the library frees it with ck_token_free), CK_NOT_FOUND, or
 *         an error (nothing cached, ck_token_get returns CK_E_LOADER).
 */
typedef ck_status (*ck_token_loader_fn)(void *user, const char *token, const char *scope,
                                        ck_token **out);

/**
 * Validate a token through the cache: one GET on a hit. The record is
 * cached under the tag of its tenant. In the hashed key modes the stored
 * record carries no token: ck_token.token is filled from `token`.
 * @param out [out] on CK_OK a new record freed with ck_token_free().
 * @return as ck_cache_get.
 */
CACHEKIT_API ck_status ck_token_get(ck_cache *k, const char *token, const char *scope,
                                    ck_token_loader_fn loader, void *user, ck_token **out);

/** Remove every cached token of a tenant. @return as ck_cache_invalidate_tag. */
CACHEKIT_API ck_status ck_token_invalidate_tenant(ck_cache *k, const char *tenant_id);

/** Free a record and its strings. NULL is a no-op. */
CACHEKIT_API void ck_token_free(ck_token *t);

#ifdef __cplusplus
}
#endif

#endif
