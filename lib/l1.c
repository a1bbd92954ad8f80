/* The in-process L1 tier: sharded hash tables, approximate LRU per shard
 * (second chance). See l1.h for the invalidation rule (the `gen` counter). */
#define _POSIX_C_SOURCE 200809L
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "l1.h"

#define CK__L1_SHARDS_MAX 64
/* Reader slots per shard: a reader locks its thread's slot, a writer all
 * of them. See ck__l1s. */
#define CK__L1_SLOTS 8

/* The coarse clock (the last tick, 1-4 ms old) costs a few ns instead of
 * ~20; freshness is in milliseconds, so an entry lives at most one tick
 * longer. Both clocks count from the same origin. */
int64_t ck__l1_now(void)
{
#if defined(CLOCK_MONOTONIC_COARSE)
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC_COARSE, &ts) == 0)
        return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
#endif
    return ck__now_ns();
}

typedef struct ck__l1e {
    /* what a hit reads, from the entry's first cache line (entries are
     * allocated 64-byte aligned): the chain, the key's length, the times,
     * and the value pointers of slots 0 and 1 (2-7: the next line) */
    struct ck__l1e *hnext;       /* chain by (scope, key) */
    uint64_t h;
    size_t klen;                 /* bytes of k: scope, '\0', key */
    int64_t fresh_ns, keep_ns;
    _Atomic int used;            /* read since it was inserted or passed over
                                    (set by readers under their slot lock
                                    only: hence atomic, relaxed) */
    json_t *val[CK__L1_SLOTS];   /* val[0]: the value (NULL: a cached absence);
                                    val[i]: slot i's own deep copy of it, made
                                    at its first hit under its lock (see
                                    ck__l1e_value) */
    /* what writers use */
    struct ck__l1e *knext;       /* chain by key hash */
    struct ck__l1e *prev, *next; /* insertion order, newest first */
    uint64_t kh64;
    char kh[64];
    char k[];
} ck__l1e;

/* A shard is locked like a big-reader lock: a hit locks one of the shard's
 * CK__L1_SLOTS locks, the one of its thread's slot, and changes nothing
 * but that slot's counters (and an entry's `used` mark, once); anything that
 * changes the table or the list (put, drop, clear, eviction) locks every
 * slot, in order. With one mutex per shard every hit wrote the shard's lock
 * line, and two cores reading at random pulled each shard's line back and
 * forth; a slot's line stays with the core whose threads use it. */
typedef struct ck__l1slot {
    alignas(64) atomic_int mu;      /* a cache line of its own; see ck__l1_lock */
    uint64_t hits, null_hits;       /* fresh answers of this slot's readers:
                                       not the client's shared atomics */
} ck__l1slot;

typedef struct ck__l1s {
    ck__l1slot slot[CK__L1_SLOTS];
    alignas(64) ck__l1e **tab, **ktab; /* written under every slot lock */
    size_t mask, max_mask; /* the tables grow with n, up to max_mask + 1 */
    ck__l1e *head, *tail;
    size_t n, cap;
} ck__l1s;

/* This thread's reader slot (+1; 0 = not chosen yet): threads take slots
 * in turn, so up to CK__L1_SLOTS reading threads share no lock. */
static _Atomic unsigned ck__l1_next_slot;
static _Thread_local unsigned ck__l1_my_slot;

static unsigned ck__l1_slot(void)
{
    if (ck__l1_my_slot == 0)
        ck__l1_my_slot = atomic_fetch_add_explicit(&ck__l1_next_slot, 1, memory_order_relaxed) %
                             CK__L1_SLOTS + 1;
    return ck__l1_my_slot - 1;
}

/* A slot's lock is a test-and-set spinlock, not a pthread mutex: a hit
 * then pays one atomic exchange and a plain store where the mutex cost two
 * locked instructions and two calls into libc, 6-9% of an L1 lookup (both
 * in one process, 61 alternating rounds, three runs). Holders are brief: a
 * reader for one lookup, a writer for one insert or removal; a clear or a
 * table doubling is O(entries) and rare, and a waiter yields its CPU after
 * a short spin rather than burn it. */
#if defined(__x86_64__) || defined(__i386__)
#define CK__CPU_RELAX() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define CK__CPU_RELAX() __asm__ __volatile__("yield")
#else
#define CK__CPU_RELAX() ((void)0)
#endif

static inline void ck__l1_lock(atomic_int *m)
{
    while (atomic_exchange_explicit(m, 1, memory_order_acquire))
        for (unsigned i = 0; atomic_load_explicit(m, memory_order_relaxed); i++) {
            if (i < 64)
                CK__CPU_RELAX();
            else
                sched_yield();
        }
}

static inline void ck__l1_unlock(atomic_int *m)
{
    atomic_store_explicit(m, 0, memory_order_release);
}

static void ck__l1s_lock_all(ck__l1s *s)
{
    for (int i = 0; i < CK__L1_SLOTS; i++)
        ck__l1_lock(&s->slot[i].mu);
}

static void ck__l1s_unlock_all(ck__l1s *s)
{
    for (int i = CK__L1_SLOTS - 1; i >= 0; i--)
        ck__l1_unlock(&s->slot[i].mu);
}

struct ck__l1 {
    _Atomic uint64_t gen;
    unsigned shift; /* shard = top `bits` of the hash: 64 - bits */
    size_t nshards;
    ck__l1s *shards;
};

/* The scope a NULL scope stands for, as in the Redis keys. */
static const char ck__l1_any[] = "any";

/* The table's hash of (scope, key): eight bytes at a time, each word
 * folded in with one multiply (whose top bits, the shard, depend on every
 * bit folded so far; the low bits, the bucket, get the top half xored in),
 * the two lengths folded in first so that ("ab", "c") and ("a", "bc")
 * differ. Byte-at-a-time FNV-1a was a tenth of an L1 hit: one dependent
 * multiply per byte, 9.7 ns against 5.4 here for a 3-byte scope and a
 * 9-byte key. Not exposed to hash flooding from outside in any way that
 * matters: a chain only costs its own shard's lookups, and the shard's cap
 * bounds it. */
static inline uint64_t ck__l1_fold(uint64_t h, uint64_t w)
{
    h = (h ^ w) * 0x9e3779b97f4a7c15ULL;
    return h ^ (h >> 32);
}

static inline uint64_t ck__l1_rd4(const char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* The tail of 1-7 bytes in two overlapping reads (4-7) or three byte reads
 * (1-3), as wyhash does: every byte is read, nothing past the end. */
static inline uint64_t ck__l1_fold_bytes(uint64_t h, const char *p, size_t n)
{
    uint64_t w;

    for (; n >= 8; p += 8, n -= 8) {
        memcpy(&w, p, 8);
        h = ck__l1_fold(h, w);
    }
    if (n >= 4)
        h = ck__l1_fold(h, ck__l1_rd4(p) << 32 | ck__l1_rd4(p + n - 4));
    else if (n > 0)
        h = ck__l1_fold(h, (uint64_t)(unsigned char)p[0] << 16 |
                               (uint64_t)(unsigned char)p[n >> 1] << 8 | (unsigned char)p[n - 1]);
    return h;
}

static uint64_t ck__l1_hash(const char *sc, size_t sl, const char *key, size_t klen)
{
    uint64_t h = ck__l1_fold(0x243f6a8885a308d3ULL, (uint64_t)sl << 32 ^ (uint64_t)klen);

    h = ck__l1_fold_bytes(ck__l1_fold_bytes(h, sc, sl), key, klen);
    /* one more multiply spreads the last word into the low bits too */
    h = (h ^ (h >> 29)) * 0xbf58476d1ce4e5b9ULL;
    return h ^ (h >> 32);
}

static uint64_t ck__kh64(const char *kh)
{
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        char ch = kh[i];
        v = v << 4 | (uint64_t)(ch <= '9' ? ch - '0' : (ch | 0x20) - 'a' + 10);
    }
    return v;
}

/* A shard's tables start small and double while n exceeds a quarter of
 * their size, up to the size the cap needs (a load of one, as before).
 * Sized for the cap from the start, a tier of 100 000 entries holding 1 000
 * hot ones spread each hit's bucket over a megabyte of tables: a cache miss
 * on every hit. */
#define CK__L1_TAB_MIN 8

ck__l1 *ck__l1_new(size_t max_entries)
{
    ck__l1 *l;
    size_t ns = 1, tabsz = CK__L1_TAB_MIN;
    unsigned bits = 0;

    if (max_entries == 0)
        return NULL;
    /* at least 16 entries a shard, or LRU order means little */
    while (ns * 2 <= CK__L1_SHARDS_MAX && ns * 2 * 16 <= max_entries) {
        ns *= 2;
        bits++;
    }
    l = calloc(1, sizeof *l);
    if (l == NULL)
        return NULL;
    atomic_init(&l->gen, 1);
    l->nshards = ns;
    l->shift = 64 - bits;
    l->shards = aligned_alloc(alignof(ck__l1s), ns * sizeof *l->shards);
    if (l->shards == NULL) {
        free(l);
        return NULL;
    }
    memset(l->shards, 0, ns * sizeof *l->shards);
    while (tabsz < max_entries / ns)
        tabsz *= 2;
    for (size_t i = 0; i < ns; i++) {
        ck__l1s *s = &l->shards[i];
        for (int j = 0; j < CK__L1_SLOTS; j++)
            atomic_init(&s->slot[j].mu, 0);
        s->cap = max_entries / ns; /* the total never exceeds max_entries */
        s->mask = CK__L1_TAB_MIN - 1;
        s->max_mask = tabsz - 1;
        s->tab = calloc(CK__L1_TAB_MIN, sizeof *s->tab);
        s->ktab = calloc(CK__L1_TAB_MIN, sizeof *s->ktab);
        if (s->tab == NULL || s->ktab == NULL) {
            l->nshards = i + 1;
            ck__l1_free(l);
            return NULL;
        }
    }
    return l;
}

/* Drop the tier's reference to a shared value. jansson's json_decref
 * decrements with release order only; when the tier drops the last
 * reference of a value that other threads were reading, the free must also
 * acquire (the usual reference-count rule), or their reads and the free are
 * unordered (harmless on x86, a data race for the language and for TSan). */
static void ck__json_release(json_t *v)
{
    if (v != NULL && __atomic_load_n(&v->refcount, __ATOMIC_RELAXED) != (size_t)-1 &&
        __atomic_sub_fetch(&v->refcount, 1, __ATOMIC_ACQ_REL) == 0)
        json_delete(v);
}

static void ck__l1e_free(ck__l1e *e)
{
    for (int i = 0; i < CK__L1_SLOTS; i++)
        ck__json_release(e->val[i]);
    free(e);
}

static void ck__l1e_free_list(ck__l1e *e)
{
    while (e != NULL) {
        ck__l1e *next = e->next;
        ck__l1e_free(e);
        e = next;
    }
}

/* Empty the shard; its entries, still linked in insertion order, are the
 * caller's to free (after unlocking: readers wait on a clear only for
 * the tables' memset, not for every value's free). */
static ck__l1e *ck__l1s_detach(ck__l1s *s)
{
    ck__l1e *e = s->head;

    memset(s->tab, 0, (s->mask + 1) * sizeof *s->tab);
    memset(s->ktab, 0, (s->mask + 1) * sizeof *s->ktab);
    s->head = s->tail = NULL;
    s->n = 0;
    return e;
}

void ck__l1_free(ck__l1 *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->nshards; i++) {
        ck__l1s *s = &l->shards[i];
        if (s->tab != NULL && s->ktab != NULL)
            ck__l1e_free_list(ck__l1s_detach(s));
        free(s->tab);
        free(s->ktab);
    }
    free(l->shards);
    free(l);
}

static ck__l1s *ck__l1_shard(ck__l1 *l, uint64_t h)
{
    return &l->shards[l->shift == 64 ? 0 : h >> l->shift];
}

static void ck__lru_unlink(ck__l1s *s, ck__l1e *e)
{
    if (e->prev != NULL)
        e->prev->next = e->next;
    else
        s->head = e->next;
    if (e->next != NULL)
        e->next->prev = e->prev;
    else
        s->tail = e->prev;
}

static void ck__lru_push(ck__l1s *s, ck__l1e *e)
{
    e->prev = NULL;
    e->next = s->head;
    if (s->head != NULL)
        s->head->prev = e;
    s->head = e;
    if (s->tail == NULL)
        s->tail = e;
}

/* Unlink e from both chains and the LRU list, and free it. */
static void ck__l1s_remove(ck__l1s *s, ck__l1e *e)
{
    ck__l1e **pp;
    for (pp = &s->tab[e->h & s->mask]; *pp != e; pp = &(*pp)->hnext) {
    }
    *pp = e->hnext;
    for (pp = &s->ktab[e->kh64 & s->mask]; *pp != e; pp = &(*pp)->knext) {
    }
    *pp = e->knext;
    ck__lru_unlink(s, e);
    s->n--;
    ck__l1e_free(e);
}

/* Double both tables (every slot lock held). Out of memory, they stay as
 * they are: chains grow longer, lookups stay correct. */
static void ck__l1s_grow(ck__l1s *s)
{
    size_t size = (s->mask + 1) * 2;
    ck__l1e **tab = calloc(size, sizeof *tab), **ktab = calloc(size, sizeof *ktab);

    if (tab == NULL || ktab == NULL) {
        free(tab);
        free(ktab);
        return;
    }
    free(s->tab);
    free(s->ktab);
    s->tab = tab;
    s->ktab = ktab;
    s->mask = size - 1;
    for (ck__l1e *e = s->head; e != NULL; e = e->next) {
        e->hnext = tab[e->h & s->mask];
        tab[e->h & s->mask] = e;
        e->knext = ktab[e->kh64 & s->mask];
        ktab[e->kh64 & s->mask] = e;
    }
}

/* A hit's cache misses come one after another: the bucket, the entry's
 * first line, its key's bytes (two lines on), the value's reference count.
 * Asking for the key's line and the value while the entry's first line is
 * on its way overlaps three of them. */
#if defined(__GNUC__)
#define CK__PREFETCH(p) __builtin_prefetch(p)
#else
#define CK__PREFETCH(p) ((void)0)
#endif

/* slot: the reader slot whose value to fetch early (writers: any) */
static ck__l1e *ck__l1s_find(ck__l1s *s, uint64_t h, const char *sc, size_t sl, const char *key,
                             size_t klen, unsigned slot)
{
    for (ck__l1e *e = s->tab[h & s->mask]; e != NULL; e = e->hnext) {
        CK__PREFETCH(e->k);
        if (e->h == h && e->klen == sl + 1 + klen) {
            CK__PREFETCH(e->val[slot]); /* NULL: a no-op */
            if (memcmp(e->k, sc, sl + 1) == 0 && memcmp(e->k + sl + 1, key, klen) == 0)
                return e;
        }
    }
    return NULL;
}

/* The value a reader of `slot` hands out (its lock held). Every answer
 * takes a reference: with one shared json_t, two cores reading the same
 * entry wrote the same reference count and pulled its cache line back and
 * forth on every hit. So each slot but the first gets its own deep copy,
 * made once (on failure the shared value serves). Up to CK__L1_SLOTS copies
 * of an entry read by as many threads: the price of hits that share no
 * written cache line. */
static json_t *ck__l1e_value(ck__l1e *e, unsigned slot)
{
    if (e->val[slot] == NULL && e->val[0] != NULL)
        e->val[slot] = json_deep_copy(e->val[0]);
    return e->val[slot] != NULL ? e->val[slot] : e->val[0];
}

int ck__l1_get(ck__l1 *l, const char *scope, size_t scope_len, const char *key, size_t klen,
               int64_t now_ns, int allow_stale, json_t **value, int *stale)
{
    const char *sc = scope != NULL ? scope : ck__l1_any;
    size_t sl = scope != NULL ? scope_len : sizeof ck__l1_any - 1;
    uint64_t h = ck__l1_hash(sc, sl, key, klen);
    ck__l1s *s = ck__l1_shard(l, h);
    unsigned slot = ck__l1_slot();
    ck__l1slot *me = &s->slot[slot];
    ck__l1e *e;
    int found = 0;

    /* a reader: this slot's lock; the table and the list do not change
     * under it. An expired entry stays until a writer evicts or replaces
     * it (the shard's cap still bounds them). */
    ck__l1_lock(&me->mu);
    e = ck__l1s_find(s, h, sc, sl, key, klen, slot);
    if (e != NULL) {
        if (now_ns < e->fresh_ns) {
            /* second chance, not move-to-front: a hit on a marked entry
             * writes nothing to it or its neighbours, so two cores reading
             * the same entries do not pull their cache lines back and forth */
            if (!atomic_load_explicit(&e->used, memory_order_relaxed))
                atomic_store_explicit(&e->used, 1, memory_order_relaxed);
            *stale = 0;
            found = 1;
            if (!allow_stale) {
                if (e->val[0] != NULL)
                    me->hits++;
                else
                    me->null_hits++;
            }
        } else if (allow_stale && now_ns < e->keep_ns) {
            *stale = 1;
            found = 1;
        }
        if (found)
            *value = json_incref(ck__l1e_value(e, slot));
    }
    ck__l1_unlock(&me->mu);
    return found;
}

uint64_t ck__l1_gen(ck__l1 *l)
{
    return atomic_load_explicit(&l->gen, memory_order_acquire);
}

void ck__l1_put(ck__l1 *l, uint64_t gen, const char *scope, size_t scope_len, const char *key,
                size_t klen, const char kh[65], json_t *value, int64_t fresh_ns,
                int64_t keep_ns)
{
    const char *sc = scope != NULL ? scope : ck__l1_any;
    size_t sl = scope != NULL ? scope_len : sizeof ck__l1_any - 1;
    uint64_t h = ck__l1_hash(sc, sl, key, klen);
    ck__l1s *s = ck__l1_shard(l, h);
    /* 64-byte aligned (aligned_alloc wants a multiple of it): what a hit
     * reads is then one cache line, the key's bytes another */
    ck__l1e *e = aligned_alloc(64, (sizeof *e + sl + 1 + klen + 63) & ~(size_t)63), *old;

    if (e == NULL) {
        json_decref(value);
        return;
    }
    e->h = h;
    e->kh64 = ck__kh64(kh);
    memcpy(e->kh, kh, 64);
    e->fresh_ns = fresh_ns;
    e->keep_ns = keep_ns > fresh_ns ? keep_ns : fresh_ns;
    memset(e->val, 0, sizeof e->val);
    e->val[0] = value;
    e->klen = sl + 1 + klen;
    memcpy(e->k, sc, sl + 1);
    memcpy(e->k + sl + 1, key, klen);

    ck__l1s_lock_all(s);
    /* checked under the shard's locks: an invalidation bumps gen before it
     * takes them to remove entries, so it either sees e or e is refused
     * here */
    if (atomic_load_explicit(&l->gen, memory_order_acquire) != gen) {
        ck__l1s_unlock_all(s);
        ck__l1e_free(e);
        return;
    }
    old = ck__l1s_find(s, h, sc, sl, key, klen, 0);
    atomic_init(&e->used, 0);
    if (old != NULL) {
        ck__l1s_remove(s, old);
    } else if (s->n >= s->cap) {
        /* evict the oldest entry not read since it was inserted or last
         * passed over; a read one moves to the front, unmarked. Ends: each
         * pass-over clears a mark */
        while (atomic_load_explicit(&s->tail->used, memory_order_relaxed)) {
            ck__l1e *t = s->tail;
            atomic_store_explicit(&t->used, 0, memory_order_relaxed);
            ck__lru_unlink(s, t);
            ck__lru_push(s, t);
        }
        ck__l1s_remove(s, s->tail);
    }
    if (s->n * 4 > s->mask && s->mask < s->max_mask)
        ck__l1s_grow(s);
    e->hnext = s->tab[h & s->mask];
    s->tab[h & s->mask] = e;
    e->knext = s->ktab[e->kh64 & s->mask];
    s->ktab[e->kh64 & s->mask] = e;
    ck__lru_push(s, e);
    s->n++;
    ck__l1s_unlock_all(s);
}

void ck__l1_drop_kh(ck__l1 *l, const char *kh)
{
    uint64_t k64 = ck__kh64(kh);

    atomic_fetch_add_explicit(&l->gen, 1, memory_order_acq_rel);
    /* the shard follows the (scope, key) hash, so any shard may hold it */
    for (size_t i = 0; i < l->nshards; i++) {
        ck__l1s *s = &l->shards[i];
        ck__l1s_lock_all(s);
        ck__l1e *e = s->ktab[k64 & s->mask];
        while (e != NULL) {
            ck__l1e *next = e->knext;
            if (e->kh64 == k64 && memcmp(e->kh, kh, 64) == 0)
                ck__l1s_remove(s, e);
            e = next;
        }
        ck__l1s_unlock_all(s);
    }
}

void ck__l1_clear(ck__l1 *l)
{
    atomic_fetch_add_explicit(&l->gen, 1, memory_order_acq_rel);
    for (size_t i = 0; i < l->nshards; i++) {
        ck__l1s *s = &l->shards[i];
        ck__l1e *gone;

        ck__l1s_lock_all(s);
        gone = ck__l1s_detach(s);
        ck__l1s_unlock_all(s);
        ck__l1e_free_list(gone);
    }
}

void ck__l1_hits(ck__l1 *l, uint64_t *hits, uint64_t *null_hits)
{
    for (size_t i = 0; i < l->nshards; i++)
        for (int j = 0; j < CK__L1_SLOTS; j++) {
            ck__l1slot *sl = &l->shards[i].slot[j];
            ck__l1_lock(&sl->mu);
            *hits += sl->hits;
            *null_hits += sl->null_hits;
            ck__l1_unlock(&sl->mu);
        }
}

size_t ck__l1_count(ck__l1 *l)
{
    size_t n = 0;
    for (size_t i = 0; i < l->nshards; i++) {
        /* n changes under every slot lock: one is enough to read it */
        ck__l1_lock(&l->shards[i].slot[0].mu);
        n += l->shards[i].n;
        ck__l1_unlock(&l->shards[i].slot[0].mu);
    }
    return n;
}
