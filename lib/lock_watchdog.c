/* ck_with_lock: acquire, run the host's function while a watchdog thread
 * renews the lock every ttl/3, stop and join the watchdog, release.
 *
 * The watchdog is the only thread that writes to the lock while fn runs;
 * fn gets a const handle and reads fence and validity (atomics). A renewal
 * that fails or finds the lock gone marks it lost and ends the watchdog: a
 * lock that could not be renewed is never reported as held. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "lock_internal.h"

typedef struct ck__watchdog {
    ck_lock *l;
    int ttl_ms;
    pthread_mutex_t mu;
    pthread_cond_t cv;  /* CLOCK_MONOTONIC */
    int stop;
} ck__watchdog;

static void ck__abs_ts(int64_t ns, struct timespec *ts)
{
    ts->tv_sec = (time_t)(ns / 1000000000);
    ts->tv_nsec = (long)(ns % 1000000000);
}

static void *ck__watchdog_main(void *arg)
{
    ck__watchdog *w = arg;
    ck_lock *l = w->l;
    int64_t period = ck__ms_to_ns(w->ttl_ms) / 3;
    int64_t next;

    if (period < ck__ms_to_ns(1))
        period = ck__ms_to_ns(1);
    next = ck__now_ns() + period;
    pthread_mutex_lock(&w->mu);
    while (!w->stop) {
        int64_t now = ck__now_ns();
        ck_status st;

        if (now < next) {
            struct timespec ts;

            ck__abs_ts(next, &ts);
            pthread_cond_timedwait(&w->cv, &w->mu, &ts);
            continue;
        }
        pthread_mutex_unlock(&w->mu);
        st = ck__lock_renew(l, w->ttl_ms, 0);
        pthread_mutex_lock(&w->mu);
        if (st != CK_OK) {
            if (st != CK_E_LOCK_LOST) { /* lost ones were logged and marked by renew */
                ck__log(ck__client_logger(l->c), CK_LOG_WARN,
                        "lock '%s': watchdog renewal failed (%s); lock marked lost", l->logname,
                        ck_strerror(st));
                ck__lock_mark_lost(l);
            }
            break;
        }
        next = now + period;
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

ck_status ck_with_lock(ck_client *c, const char *name, int ttl_ms, int wait_ms, ck_locked_fn fn,
                       void *user)
{
    ck__watchdog w;
    pthread_condattr_t ca;
    pthread_t th;
    ck_lock *l = NULL;
    ck_status st, rel;
    int valid_at_end, lost;

    if (fn == NULL)
        return CK_E_INVALID;
    st = ck_lock_acquire(c, name, ttl_ms, wait_ms, &l);
    if (st != CK_OK)
        return st;

    w.l = l;
    w.ttl_ms = ttl_ms;
    w.stop = 0;
    pthread_mutex_init(&w.mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w.cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&th, NULL, ck__watchdog_main, &w) != 0) {
        ck__log(ck__client_logger(c), CK_LOG_ERROR,
                "lock '%s': could not start the watchdog thread; lock released, fn not called",
                l->logname);
        ck_lock_release(l);
        pthread_cond_destroy(&w.cv);
        pthread_mutex_destroy(&w.mu);
        return CK_E_NOMEM;
    }

    st = fn(user, l);
    valid_at_end = ck_lock_valid(l);

    /* stop the watchdog before the release is sent: no renewal may race it */
    pthread_mutex_lock(&w.mu);
    w.stop = 1;
    pthread_cond_signal(&w.cv);
    pthread_mutex_unlock(&w.mu);
    pthread_join(th, NULL);
    pthread_cond_destroy(&w.cv);
    pthread_mutex_destroy(&w.mu);

    lost = atomic_load(&l->lost);
    rel = ck_lock_release(l); /* frees l */
    if (lost || rel == CK_E_LOCK_LOST || (rel != CK_OK && !valid_at_end)) {
        /* the log says which (renewal, release, or an expiry we cannot rule out) */
        if (!lost && rel != CK_E_LOCK_LOST)
            ck__log(ck__client_logger(c), CK_LOG_WARN,
                    "ck_with_lock: the lock's TTL ran out while fn ran and the release could not "
                    "confirm it was still held (%s): reporting it lost",
                    ck_strerror(rel));
        return CK_E_LOCK_LOST;
    }
    return st;
}
