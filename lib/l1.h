/* The in-process L1 tier (l1.c) and the client's invalidation subscriber
 * (l1_sub.c).
 *
 * An L1 maps (scope, key) to a decoded value or an absence. It is split in
 * shards, each with its own hash table, second-chance list and reader slots
 * (a lock per slot: a hit locks its thread's slot, a change all of them),
 * so a hit takes one lock no other core writes and touches no socket.
 * Entries are also indexed by key hash (the digest the Redis keys carry),
 * which is what invalidation messages name.
 *
 * Correctness against concurrent invalidation rests on one counter: every
 * drop or clear bumps `gen` BEFORE it removes entries, and a reader records
 * `gen` before its Redis read and inserts only if it is unchanged (checked
 * under the shard lock). A value read before an invalidation is therefore
 * either refused or removed by it, whatever the interleaving. */
#ifndef CACHEKIT_L1_H
#define CACHEKIT_L1_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "internal.h"

typedef struct ck__l1 ck__l1;

/* NULL on allocation failure. At most max_entries entries, ever. */
ck__l1 *ck__l1_new(size_t max_entries);
void ck__l1_free(ck__l1 *l);

/* The clock L1 runs on: CLOCK_MONOTONIC, read coarsely (ms precision). */
int64_t ck__l1_now(void);

/* Look up (scope, key); scope NULL is "any" (scope_len, strlen(scope), is
 * then ignored). 1: found and fresh at now_ns (or, with allow_stale, still
 * kept): *value is a new reference (NULL for a cached absence), *stale says
 * whether it was past its freshness. 0: not there. The value is shared:
 * callers never modify it. Fresh answers to lookups without allow_stale are
 * counted (ck__l1_hits); the others are the caller's to count. */
int ck__l1_get(ck__l1 *l, const char *scope, size_t scope_len, const char *key, size_t klen,
               int64_t now_ns, int allow_stale, json_t **value, int *stale);

/* The invalidation counter, read before the Redis read whose answer may be
 * inserted. */
uint64_t ck__l1_gen(ck__l1 *l);

/* Insert or replace (scope, key) with `value` (a reference the tier takes
 * over, NULL for an absence), fresh until fresh_ns and kept for a fallback
 * until keep_ns (CLOCK_MONOTONIC). Refused (value released) when an
 * invalidation happened since `gen` was read. */
void ck__l1_put(ck__l1 *l, uint64_t gen, const char *scope, size_t scope_len, const char *key,
                size_t klen, const char kh[65], json_t *value, int64_t fresh_ns,
                int64_t keep_ns);

/* Drop every scope of the key with this hash (64 hex digits). */
void ck__l1_drop_kh(ck__l1 *l, const char *kh);
/* Drop everything. */
void ck__l1_clear(ck__l1 *l);
/* Add the counted answers (values, absences) to *hits and *null_hits. */
void ck__l1_hits(ck__l1 *l, uint64_t *hits, uint64_t *null_hits);
/* Entries held now (all shards; a snapshot). */
size_t ck__l1_count(ck__l1 *l);

/* ---- the subscriber (l1_sub.c) ----
 * One thread per client, started with the first cache that has an L1. It
 * subscribes to <prefix>:inv:<cache> for every such cache, applies what it
 * receives, PINGs an idle connection, and reconnects after a drop. A cache's
 * L1 answers on its own only while that cache's channel is subscribed
 * (ck__l1_live); after any break every L1 of the client is cleared when the
 * subscription is back, because messages may have been missed. */
struct ck_cache;
typedef struct ck__hub ck__hub;

/* Register / unregister a cache with an L1 (ck_cache_new / ck_cache_free).
 * Register starts the thread if needed; CK_E_NOMEM or CK_OK. */
ck_status ck__hub_register(ck_client *c, struct ck_cache *k);
void ck__hub_unregister(struct ck_cache *k);
/* Called from the cache's slow path: restarts the thread in a fork child. */
void ck__hub_ensure(struct ck_cache *k);
/* client.c: creation (on first use), ck_client_free, the fork handlers. */
ck__hub *ck__hub_new(ck_client *c);
void ck__hub_free(ck__hub *h);
/* L1 answers counted in the caches' shards (and of caches freed since). */
void ck__hub_hits(ck__hub *h, uint64_t *hits, uint64_t *null_hits);
void ck__hub_fork_prepare(ck__hub *h);
void ck__hub_fork_parent(ck__hub *h);
void ck__hub_fork_child(ck__hub *h);

/* Apply one invalidation message to a cache (parsing it; exposed for the
 * fuzzers and tests). Messages from the cache itself are skipped. */
void ck__l1_apply(struct ck_cache *k, const char *msg, size_t len);
/* Drop the key named by one of the cache's entry keys; 0 if s is none. */
int ck__l1_drop_entry(struct ck_cache *k, const char *s, size_t len);
/* A fresh random id for the cache's messages (ck_cache_new). */
void ck__iid_init(struct ck_cache *k);

#endif
