/* libcachekit: distributed locks on one Redis — a random token per holder,
 * compare-and-delete release, compare-and-extend, fencing tokens, bounded
 * waiting and a watchdog (ck_with_lock). See docs/locks.md. */
#ifndef CACHEKIT_LOCK_H
#define CACHEKIT_LOCK_H

#include <stdint.h>
#include "cachekit/common.h"
#include "cachekit/client.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * A held lock. Opaque. Owned by one thread at a time (it may move between
 * threads); ck_lock_fence() and ck_lock_valid() may be called from any
 * thread while ck_with_lock's watchdog runs.
 */
typedef struct ck_lock ck_lock;

/**
 * Acquire the lock `name` for `ttl_ms`, waiting up to `wait_ms` while
 * someone else holds it (jittered backoff from 2 ms doubling to 100 ms,
 * never sleeping past the holder's remaining TTL or past `wait_ms`).
 *
 * The lock is the Redis key `<prefix>:l:{<name>}` holding a random 128-bit
 * token (from the system's cryptographic source); the same script mints the
 * fence on `<prefix>:l:{<name>}:f`, a key that never expires.
 *
 * When Redis is unreachable, times out or the circuit breaker is open this
 * returns CK_E_UNAVAILABLE in every fail mode: never a fake lock. If the
 * acquire script may have run but its reply was lost, it is retried with
 * the same token while wait_ms allows; otherwise the library deletes that
 * orphan lock (compare-and-delete with its token) as soon as Redis answers
 * a later lock call of this process on that server, or takes it over when
 * the same name is acquired again.
 *
 * @param c       the client
 * @param name    1-512 bytes, no '{', '}' or control characters (':' is fine)
 * @param ttl_ms  > 0: the lock expires this long after it was set unless extended
 * @param wait_ms >= 0: 0 = one attempt
 * @param out     [out] on CK_OK a new lock the caller ends with ck_lock_release();
 *                NULL on any other status
 * @return CK_OK, CK_BUSY (held elsewhere for all of wait_ms), CK_E_UNAVAILABLE,
 *         CK_E_INVALID (an argument above is out of range, or NULL),
 *         CK_E_PROTOCOL (the lock key holds something else, e.g. another type),
 *         CK_E_NOMEM.
 *         Returns within wait_ms + one call deadline (pool_wait_ms +
 *         connect_timeout_ms + command_timeout_ms), and one more only if it
 *         is deleting an orphan (see above) when Redis stalls.
 * Thread safety: any thread; `c` may be shared.
 */
CACHEKIT_API ck_status ck_lock_acquire(ck_client *c, const char *name, int ttl_ms, int wait_ms,
                                       ck_lock **out);

/**
 * Reset the lock's TTL to `ttl_ms` from now, if it is still ours
 * (compare-and-extend on the token). A lost reply is retried once (the
 * script is idempotent).
 * @return CK_OK; CK_E_LOCK_LOST when the key expired (logged as "expired")
 *         or carries another holder's token (logged as "owned by another
 *         holder"), or the lock was already known lost (no I/O then);
 *         CK_E_UNAVAILABLE (the lock is not marked lost: the caller decides);
 *         CK_E_INVALID (l NULL, ttl_ms <= 0); CK_E_PROTOCOL.
 * Thread safety: the lock's owner thread only.
 */
CACHEKIT_API ck_status ck_lock_extend(ck_lock *l, int ttl_ms);

/**
 * Release the lock if it is still ours (compare-and-delete on the token)
 * and free `l`, whatever the outcome. A release whose reply was lost or that
 * could not be sent is retried (at most 3 attempts); if all fail, the key
 * is deleted later like an orphan of an acquire (see ck_lock_acquire), or
 * expires at its TTL.
 * @return CK_OK; CK_E_LOCK_LOST when the key had expired or carried another
 *         holder's token (that holder's lock is left intact); CK_E_UNAVAILABLE;
 *         CK_E_PROTOCOL; CK_E_INVALID (l NULL, nothing freed).
 * Thread safety: the lock's owner thread only; `l` is invalid afterwards.
 */
CACHEKIT_API ck_status ck_lock_release(ck_lock *l);

/**
 * The lock's fencing token: strictly increasing per name across all
 * holders, processes and clients, also after FLUSHALL, an eviction of the
 * fence key or a Redis restart without persistence (it is
 * max(previous + 1, Redis TIME in microseconds)). Pass it to the storage
 * you protect and have that storage reject writes carrying an older fence.
 * @return the fence (>= 1); 0 when l is NULL.
 * Thread safety: any thread while `l` exists.
 */
CACHEKIT_API uint64_t ck_lock_fence(const ck_lock *l);

/**
 * @return 1 while the lock is held as far as this process can tell: it is not
 * known lost (by a release, an extend or a watchdog renewal that failed or
 * found the key gone or another holder's), and its TTL, counted from when
 * the last successful acquire or extend was sent, minus a drift margin of
 * 1% + 2 ms, has not run out. 0 otherwise, and for NULL.
 * Once the lock is known lost this stays 0. Without a known loss it can
 * turn 1 again only after a successful ck_lock_extend, which proves that
 * the key kept our token all along.
 * Thread safety: any thread while `l` exists (atomics; no I/O).
 */
CACHEKIT_API int ck_lock_valid(const ck_lock *l);

/**
 * The work ck_with_lock runs under the lock. `l` is borrowed: use it only
 * for ck_lock_fence() and ck_lock_valid() (check the latter before side
 * effects that must not happen without the lock, or better, fence them).
 * @return any status; ck_with_lock returns it unless the lock was lost.
 */
typedef ck_status (*ck_locked_fn)(void *user, const ck_lock *l);

/**
 * Acquire `name` (as ck_lock_acquire), run `fn(user, lock)`, then release.
 * While `fn` runs, a watchdog thread extends the lock to `ttl_ms` every
 * ttl_ms/3. A renewal that fails (Redis unavailable, after one retry) or
 * finds the lock expired or owned by someone else marks the lock lost:
 * ck_lock_valid() turns 0 at once and stays 0. The watchdog is stopped and
 * joined before the release is sent.
 * @return the acquire's status when it did not succeed (CK_BUSY,
 *         CK_E_UNAVAILABLE, CK_E_INVALID, ...; fn is not called);
 *         CK_E_LOCK_LOST when the lock was lost while fn ran (or the release
 *         found it gone), whatever fn returned: never CK_OK after a loss;
 *         otherwise fn's status. CK_E_NOMEM if the watchdog thread could not
 *         be started (fn is not called, the lock is released).
 * Thread safety: any thread; fn runs on the calling thread.
 */
CACHEKIT_API ck_status ck_with_lock(ck_client *c, const char *name, int ttl_ms, int wait_ms,
                                    ck_locked_fn fn, void *user);

#ifdef __cplusplus
}
#endif

#endif
