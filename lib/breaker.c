/* The circuit breaker. Lock-free, because it is consulted on every call and
 * must cost well under a microsecond while open (no syscall but the vDSO
 * clock). States:
 *   CLOSED    calls go through; `breaker_failures` consecutive failures open it
 *   OPEN      calls fail at once until a jittered cooldown has passed
 *   HALF_OPEN exactly one caller (the probe) goes through; its outcome closes
 *             the breaker or opens it for another cooldown
 */
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

enum { CK__BR_CLOSED = 0, CK__BR_OPEN = 1, CK__BR_HALF_OPEN = 2 };

int64_t ck__now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void ck__breaker_init(ck__breaker *b, int failures, int cooldown_ms)
{
    atomic_init(&b->state, CK__BR_CLOSED);
    atomic_init(&b->failures, 0);
    atomic_init(&b->open_until_ns, 0);
    atomic_init(&b->rng, (uint64_t)ck__now_ns() ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)b);
    b->threshold = failures;
    b->cooldown_ms = cooldown_ms;
}

uint64_t ck__rand64(_Atomic uint64_t *state)
{
    /* splitmix64 over an atomic counter: good enough for jitter, and
     * thread-safe without a lock. Never used for secrets. */
    uint64_t z = atomic_fetch_add_explicit(state, 0x9e3779b97f4a7c15ULL, memory_order_relaxed);
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Cooldown with +-20% jitter, so that a fleet of clients that failed
 * together does not probe together. */
static int64_t ck__breaker_until(ck__breaker *b, int64_t now)
{
    int64_t base = ck__ms_to_ns(b->cooldown_ms);
    int64_t span = base / 5;
    int64_t jitter = span > 0 ? (int64_t)(ck__rand64(&b->rng) % (uint64_t)(2 * span + 1)) - span : 0;

    return now + base + jitter;
}

int ck__breaker_allow(ck__breaker *b, int *probe)
{
    int st = atomic_load_explicit(&b->state, memory_order_acquire);

    *probe = 0;
    if (st == CK__BR_CLOSED)
        return 1;
    if (st == CK__BR_HALF_OPEN) /* the probe is in flight */
        return 0;
    if (ck__now_ns() < atomic_load_explicit(&b->open_until_ns, memory_order_relaxed))
        return 0;
    /* cooldown over: the one caller that wins this exchange is the probe */
    if (atomic_compare_exchange_strong_explicit(&b->state, &st, CK__BR_HALF_OPEN,
                                                memory_order_acq_rel, memory_order_acquire)) {
        *probe = 1;
        return 1;
    }
    return 0;
}

int ck__breaker_is_open(ck__breaker *b)
{
    return atomic_load_explicit(&b->state, memory_order_acquire) != CK__BR_CLOSED;
}

void ck__breaker_success(ck__breaker *b, int probe)
{
    /* avoid a store (and a cache-line bounce) on the common path */
    if (atomic_load_explicit(&b->failures, memory_order_relaxed) != 0)
        atomic_store_explicit(&b->failures, 0, memory_order_relaxed);
    if (probe)
        atomic_store_explicit(&b->state, CK__BR_CLOSED, memory_order_release);
}

int ck__breaker_failure(ck__breaker *b, int probe)
{
    int expected = CK__BR_CLOSED;

    if (probe) { /* HALF_OPEN -> OPEN: nobody else writes while we hold the probe */
        atomic_store_explicit(&b->open_until_ns, ck__breaker_until(b, ck__now_ns()),
                              memory_order_relaxed);
        atomic_store_explicit(&b->state, CK__BR_OPEN, memory_order_release);
        return 1;
    }
    if (atomic_fetch_add_explicit(&b->failures, 1, memory_order_relaxed) + 1 < b->threshold)
        return 0;
    if (atomic_load_explicit(&b->state, memory_order_acquire) != CK__BR_CLOSED)
        return 0;
    /* Publish the cooldown before the state, so that no thread can see OPEN
     * with an old deadline and probe at once. Only the caller that moves
     * CLOSED -> OPEN counts the opening. */
    atomic_store_explicit(&b->open_until_ns, ck__breaker_until(b, ck__now_ns()),
                          memory_order_relaxed);
    if (!atomic_compare_exchange_strong_explicit(&b->state, &expected, CK__BR_OPEN,
                                                 memory_order_acq_rel, memory_order_acquire))
        return 0;
    atomic_store_explicit(&b->failures, 0, memory_order_relaxed);
    return 1;
}

void ck__breaker_abort_probe(ck__breaker *b, int probe)
{
    /* The probe could not even reach Redis for reasons that are not Redis's
     * fault (pool exhausted): hand the probe to the next caller at once. */
    if (probe) {
        atomic_store_explicit(&b->open_until_ns, 0, memory_order_relaxed);
        atomic_store_explicit(&b->state, CK__BR_OPEN, memory_order_release);
    }
}
