/* Internals of the lock module, shared by lock.c and lock_watchdog.c (and
 * reached by tests/check_lock.c). Nothing here is public API. */
#ifndef CACHEKIT_LOCK_INTERNAL_H
#define CACHEKIT_LOCK_INTERNAL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"

struct ck_lock {
    ck_client *c;
    uint64_t fence;
    int ttl_ms;                      /* as last set (acquire, extend, watchdog) */
    _Atomic int lost;                /* known lost: stays set */
    _Atomic int64_t valid_until_ns;  /* CLOCK_MONOTONIC: send time + ttl - drift */
    char token[33];                  /* 16 random bytes, hex */
    char logname[72];                /* the name, sanitized and bounded, for logs */
    size_t key_len;                  /* <prefix>:l:{<name>}; + ":f" is the fence key */
    char key[];
};

/* The three scripts (lock.c); the benchmark runs them by hand too. */
extern ck__script ck__lock_acquire_script, ck__lock_extend_script, ck__lock_release_script;

/* A lock handle for `name` (validated by the caller), token and fence unset. */
ck_lock *ck__lock_new(ck_client *c, const char *name, int ttl_ms);
/* Mark lost (ck_lock_valid turns 0) and count lock_lost once per handle. */
void ck__lock_mark_lost(ck_lock *l);
/* Compare-and-extend to ttl_ms (one retry when Redis is unavailable). On
 * "expired" / "owned by another" the lock is marked lost and CK_E_LOCK_LOST
 * returned. `clean`: delete orphans afterwards if Redis answered. */
ck_status ck__lock_renew(ck_lock *l, int ttl_ms, int clean);

/* The orphan registry (see lock.c): locks that an acquire whose reply was
 * lost may have taken, or that a release could not delete, per server URL
 * and process. */
void ck__orphan_add(ck_client *c, const char *key, size_t key_len, const char *token,
                    const char *logname, int64_t until_ns);
void ck__orphan_clean(ck_client *c);
int ck__orphan_count(const ck_client *c); /* live orphans on c's server, this process */

#endif
