/* The in-process limiter behind CK_FAIL_LOCAL: while Redis cannot answer,
 * each process enforces max(1, limit / local_instances) per key and rule on
 * its own clocks, so N instances together stay near the limit.
 *
 * Bounded memory, no allocation: 4096 rule states in a 4-way set-associative
 * table and 1024 slot holders, dropped least recently used first (a dropped
 * state starts afresh: the limiter errs on the permissive side). One mutex
 * guards it all; degraded mode is not the hot path. States are keyed by a
 * 64-bit hash of the Redis key name, so clients with the same prefix share
 * them, as one instance should. A fork child starts empty. */
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "rate_internal.h"

#define CK__LSETS 1024
#define CK__LWAYS 4
#define CK__LSLOTS 1024

typedef struct ck__lstate {
    uint64_t h;    /* hash of "<prefix>:r:{<key>}:<i>"; 0 = empty */
    uint64_t sig;  /* algorithm, window, offset: a change starts afresh */
    uint64_t used; /* LRU tick */
    int64_t a, b, c;
    double f;
} ck__lstate;

typedef struct ck__lslot {
    uint64_t kh, hh;   /* key and holder hashes; kh 0 = empty */
    int64_t expiry_us; /* CLOCK_MONOTONIC */
    int stale_ms;
} ck__lslot;

static pthread_mutex_t ck__lmu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t ck__lonce = PTHREAD_ONCE_INIT;
static ck__lstate ck__ltab[CK__LSETS][CK__LWAYS];
static ck__lslot ck__lslots[CK__LSLOTS];
static uint64_t ck__ltick;

static void ck__local_prepare(void) { pthread_mutex_lock(&ck__lmu); }
static void ck__local_parent(void) { pthread_mutex_unlock(&ck__lmu); }
static void ck__local_child(void)
{
    memset(ck__ltab, 0, sizeof ck__ltab);
    memset(ck__lslots, 0, sizeof ck__lslots);
    pthread_mutex_unlock(&ck__lmu);
}
static void ck__local_once(void)
{
    pthread_atfork(ck__local_prepare, ck__local_parent, ck__local_child);
}
static void ck__local_lock(void)
{
    pthread_once(&ck__lonce, ck__local_once);
    pthread_mutex_lock(&ck__lmu);
}

/* FNV-1a, then a final mix (splitmix64's) so that the low bits pick sets well. */
static uint64_t ck__fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;

    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}
static uint64_t ck__mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return z != 0 ? z : 1;
}
static uint64_t ck__key_hash(const char *prefix, const char *key, size_t keylen)
{
    uint64_t h = 0xcbf29ce484222325ULL;

    h = ck__fnv(h, prefix, strlen(prefix));
    h = ck__fnv(h, ":r:{", 4);
    h = ck__fnv(h, key, keylen);
    return ck__fnv(h, "}:", 2);
}

static int64_t ck__mono_us(void)
{
    return ck__now_ns() / 1000;
}
static int64_t ck__real_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- window arithmetic (the scripts' bounds() in C) ---- */

static void ck__civil(int64_t z, int64_t *y, int *m, int *d)
{
    int64_t era, doe, yoe, doy, mp;

    z += 719468;
    era = ck__floordiv(z, 146097);
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

void ck__rate_bounds(int algo, int64_t win_us, int64_t off_us, int64_t t_us, int64_t *start,
                     int64_t *end)
{
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const int64_t day = INT64_C(86400000000);
    int64_t l = t_us + off_us, d, s, y;
    int m, dd, n;

    if (algo == CK__RL_FIXED) {
        s = ck__floordiv(l, win_us) * win_us - off_us;
        *start = s;
        *end = s + win_us;
        return;
    }
    d = ck__floordiv(l, day);
    if (algo == CK__RL_DAY) {
        *start = d * day - off_us;
        *end = (d + 1) * day - off_us;
        return;
    }
    if (algo == CK__RL_WEEK) {
        s = d - (((d + 3) % 7) + 7) % 7;
        *start = s * day - off_us;
        *end = (s + 7) * day - off_us;
        return;
    }
    ck__civil(d, &y, &m, &dd);
    n = mdays[m - 1];
    if (m == 2 && y % 4 == 0 && (y % 100 != 0 || y % 400 == 0))
        n = 29;
    s = d - dd + 1;
    *start = s * day - off_us;
    *end = (s + n) * day - off_us;
}

/* ---- one rule, evaluated on a copy of its state ---- */

typedef struct ck__leval {
    int ok;
    int64_t rem, wait, reset; /* us; wait -1 = never */
} ck__leval;

static int64_t ck__ceil_d(double x)
{
    int64_t i = (int64_t)x;
    return (double)i < x ? i + 1 : i;
}

/* `s` holds the stored state (a fresh one is zeroed with h 0); on ok it is
 * updated to the state after charging `cost`. */
static void ck__local_eval(const ck_rate_rule *r, int64_t lim, ck__lstate *s, int fresh,
                           int64_t cost, int64_t charge, ck__leval *ev)
{
    int64_t win = r->window_ms * 1000;

    ev->wait = 0;
    if (r->algo == CK_RL_SLIDING_LOG || r->algo == CK_RL_SLIDING_WINDOW) {
        int64_t t = ck__mono_us(), b = ck__floordiv(t, win), cur = 0, prev = 0, el, rest, carry;
        double pw;

        if (!fresh) {
            if (s->a >= b) {
                b = s->a;
                cur = s->b;
                prev = s->c;
            } else if (s->a == b - 1) {
                prev = s->b;
            }
        }
        el = t - b * win;
        if (el < 0)
            el = 0;
        rest = win - el;
        pw = (double)prev * (double)rest;
        carry = ck__ceil_d(pw / (double)win);
        ev->ok = pw + (double)(cur + cost) * (double)win <= (double)lim * (double)win;
        if (ev->ok) {
            ev->rem = lim - carry - cur - charge;
            s->a = b;
            s->b = cur + cost;
            s->c = prev;
            cur += charge;
        } else {
            ev->rem = lim - carry - cur;
            if (cost > lim)
                ev->wait = -1;
            else if (cur + cost <= lim)
                ev->wait = ck__ceil_d((double)win - (double)(lim - cur - cost) * (double)win /
                                      (double)prev) - el;
            else
                ev->wait = rest + (cur > 0 ? ck__ceil_d((double)win - (double)(lim - cost) *
                                                        (double)win / (double)cur) : 0);
        }
        ev->reset = cur > 0 ? (b + 2) * win - t : prev > 0 ? rest : 0;
    } else if (r->algo == CK_RL_GCRA) {
        int64_t t = ck__mono_us(), ta = t, ip;
        double tf = 0, x, ahead0, ahead, a2;

        if (!fresh && s->a >= t) {
            ta = s->a;
            tf = s->f;
        }
        x = tf + (double)cost * (double)win / (double)lim;
        ip = (int64_t)x;
        ahead0 = (double)(ta - t) + tf;
        ahead = (double)(ta - t) + x;
        ev->ok = ahead <= (double)win * (1 + 1e-9) + 1e-6;
        a2 = ahead0;
        if (ev->ok) {
            if (charge > 0)
                a2 = ahead;
            s->a = ta + ip;
            s->f = x - (double)ip;
        } else {
            ev->wait = cost > lim ? -1 : ck__ceil_d(ahead - (double)win);
        }
        ev->rem = (int64_t)(((double)win - a2) * (double)lim / (double)win + 1e-6);
        if ((double)win - a2 < 0)
            ev->rem = 0;
        ev->reset = a2 > 0 ? ck__ceil_d(a2) : 0;
    } else {
        int64_t t = ck__real_us(), st, en, n = 0;

        ck__rate_bounds((int)r->algo, win, (int64_t)r->utc_offset_min * 60000000, t, &st, &en);
        if (!fresh && s->a == st)
            n = s->b;
        ev->ok = n + cost <= lim;
        if (ev->ok) {
            s->a = st;
            s->b = n + cost;
            n += charge;
        } else {
            ev->wait = cost > lim ? -1 : en - t;
        }
        ev->rem = lim - n;
        ev->reset = n > 0 ? en - t : 0;
    }
    if (ev->rem < 0)
        ev->rem = 0;
}

static uint64_t ck__rule_sig(const ck_rate_rule *r)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    int calendar = r->algo >= CK_RL_CALENDAR_DAY;
    int64_t v[3] = {(int64_t)r->algo, calendar ? 0 : r->window_ms,
                    calendar || r->algo == CK_RL_FIXED ? r->utc_offset_min : 0};

    /* the two sliding algorithms share the local counter */
    if (r->algo == CK_RL_SLIDING_LOG)
        v[0] = CK_RL_SLIDING_WINDOW;
    return ck__fnv(h, v, sizeof v);
}

static ck__lstate *ck__local_find(uint64_t h)
{
    ck__lstate *set = ck__ltab[h % CK__LSETS];

    for (int w = 0; w < CK__LWAYS; w++)
        if (set[w].h == h)
            return &set[w];
    return NULL;
}

static ck__lstate *ck__local_insert(uint64_t h)
{
    ck__lstate *set = ck__ltab[h % CK__LSETS], *victim = &set[0];

    for (int w = 0; w < CK__LWAYS; w++) {
        if (set[w].h == h || set[w].h == 0)
            return &set[w];
        if (set[w].used < victim->used)
            victim = &set[w];
    }
    return victim;
}

static int64_t ck__us_to_ms(int64_t us)
{
    return us < 0 ? -1 : (us + 999) / 1000;
}

void ck__rate_local_check(const char *prefix, const char *key, size_t keylen,
                          const ck_rate_rule *rules, size_t n_rules, int64_t cost, int commit,
                          int instances, ck_rate_result *out)
{
    ck__lstate next[CK_RATE_MAX_RULES];
    uint64_t base = ck__key_hash(prefix, key, keylen);
    int ok_all = 1, rep = -1;
    int64_t retry = 0, rep_lim = 0, rep_rem = 0, rep_reset = 0;
    int64_t charge = commit ? cost : 0, test = commit ? cost : 1;

    if (instances < 1)
        instances = 1;
    ck__local_lock();
    for (size_t i = 0; i < n_rules; i++) {
        char idx[12];
        int n = snprintf(idx, sizeof idx, "%zu", i);
        uint64_t h = ck__mix(ck__fnv(base, idx, (size_t)n)), sig = ck__rule_sig(&rules[i]);
        int64_t lim = rules[i].limit / instances;
        ck__lstate *cur = ck__local_find(h);
        ck__leval ev;
        int fresh = cur == NULL || cur->sig != sig;

        if (lim < 1)
            lim = 1;
        memset(&next[i], 0, sizeof next[i]);
        if (!fresh)
            next[i] = *cur;
        next[i].h = h;
        next[i].sig = sig;
        ck__local_eval(&rules[i], lim, &next[i], fresh, test, charge, &ev);
        if (ev.ok) {
            if (ok_all && (rep < 0 || ev.rem < rep_rem)) {
                rep = (int)i;
                rep_lim = lim;
                rep_rem = ev.rem;
                rep_reset = ev.reset;
            }
        } else {
            if (ok_all) {
                ok_all = 0;
                rep = (int)i;
                rep_lim = lim;
                rep_rem = ev.rem;
                rep_reset = ev.reset;
            }
            if (ev.wait < 0 || retry < 0)
                retry = -1;
            else if (ev.wait > retry)
                retry = ev.wait;
        }
    }
    if (ok_all && commit && cost > 0) {
        for (size_t i = 0; i < n_rules; i++) {
            ck__lstate *slot = ck__local_insert(next[i].h);

            *slot = next[i];
            slot->used = ++ck__ltick;
        }
    }
    pthread_mutex_unlock(&ck__lmu);
    out->allowed = ok_all;
    out->rule = ok_all ? -1 : rep;
    out->limit = rep_lim;
    out->remaining = rep_rem;
    out->retry_after_ms = ck__us_to_ms(retry);
    out->reset_after_ms = ck__us_to_ms(rep_reset);
}

void ck__rate_local_reset(const char *prefix, const char *key, size_t keylen)
{
    uint64_t base = ck__key_hash(prefix, key, keylen);

    ck__local_lock();
    for (int i = 0; i < CK_RATE_MAX_RULES; i++) {
        char idx[12];
        int n = snprintf(idx, sizeof idx, "%d", i);
        ck__lstate *s = ck__local_find(ck__mix(ck__fnv(base, idx, (size_t)n)));

        if (s != NULL)
            memset(s, 0, sizeof *s);
    }
    pthread_mutex_unlock(&ck__lmu);
}

/* ---- slots ---- */

static uint64_t ck__holder_hash(const char *holder)
{
    return ck__mix(ck__fnv(0x84222325cbf29ce4ULL, holder, strlen(holder)));
}

void ck__slots_local_acquire(const char *prefix, const char *key, size_t keylen,
                             int max_active, const char *holder, int stale_ms, int instances,
                             ck_rate_result *out)
{
    uint64_t kh = ck__mix(ck__fnv(ck__key_hash(prefix, key, keylen), "slots", 5));
    uint64_t hh = ck__holder_hash(holder);
    int64_t now = ck__mono_us(), oldest = INT64_MAX;
    int lim = max_active / (instances < 1 ? 1 : instances), live = 0;
    ck__lslot *mine = NULL, *free_slot = NULL;

    if (lim < 1)
        lim = 1;
    ck__local_lock();
    for (int i = 0; i < CK__LSLOTS; i++) {
        ck__lslot *s = &ck__lslots[i];

        if (s->kh != 0 && s->expiry_us <= now)
            memset(s, 0, sizeof *s);
        if (s->kh == 0) {
            if (free_slot == NULL)
                free_slot = s;
            continue;
        }
        if (s->kh != kh)
            continue;
        if (s->hh == hh)
            mine = s;
        live++;
        if (s->expiry_us < oldest)
            oldest = s->expiry_us;
    }
    out->limit = lim;
    if (mine == NULL && live < lim && free_slot != NULL) {
        mine = free_slot;
        mine->kh = kh;
        mine->hh = hh;
        live++;
    }
    if (mine != NULL) {
        mine->expiry_us = now + (int64_t)stale_ms * 1000;
        mine->stale_ms = stale_ms;
        out->allowed = 1;
        out->remaining = lim > live ? lim - live : 0;
        out->retry_after_ms = 0;
        out->reset_after_ms = stale_ms;
    } else if (live < lim) {
        /* the table is full of other keys' holders: answer as fail-open */
        out->allowed = 1;
        out->remaining = -1;
        out->retry_after_ms = 0;
        out->reset_after_ms = -1;
    } else {
        out->allowed = 0;
        out->rule = 0;
        out->remaining = 0;
        out->retry_after_ms = out->reset_after_ms = ck__us_to_ms(oldest - now);
    }
    pthread_mutex_unlock(&ck__lmu);
}

static ck__lslot *ck__slots_local_find(const char *prefix, const char *key, size_t keylen,
                                       const char *holder, int64_t now)
{
    uint64_t kh = ck__mix(ck__fnv(ck__key_hash(prefix, key, keylen), "slots", 5));
    uint64_t hh = ck__holder_hash(holder);

    for (int i = 0; i < CK__LSLOTS; i++) {
        ck__lslot *s = &ck__lslots[i];

        if (s->kh == kh && s->hh == hh && s->expiry_us > now)
            return s;
    }
    return NULL;
}

int ck__slots_local_touch(const char *prefix, const char *key, size_t keylen, const char *holder)
{
    int64_t now = ck__mono_us();
    ck__lslot *s;

    ck__local_lock();
    s = ck__slots_local_find(prefix, key, keylen, holder, now);
    if (s != NULL)
        s->expiry_us = now + (int64_t)s->stale_ms * 1000;
    pthread_mutex_unlock(&ck__lmu);
    return s != NULL;
}

int ck__slots_local_release(const char *prefix, const char *key, size_t keylen,
                            const char *holder)
{
    ck__lslot *s;

    ck__local_lock();
    s = ck__slots_local_find(prefix, key, keylen, holder, ck__mono_us());
    if (s != NULL)
        memset(s, 0, sizeof *s);
    pthread_mutex_unlock(&ck__lmu);
    return s != NULL;
}

void ck__rate_local_clear(void)
{
    ck__local_lock();
    memset(ck__ltab, 0, sizeof ck__ltab);
    memset(ck__lslots, 0, sizeof ck__lslots);
    pthread_mutex_unlock(&ck__lmu);
}
