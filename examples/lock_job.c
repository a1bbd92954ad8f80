/* lock_job: run a periodic job on one instance at a time, with ck_with_lock.
 *   lock_job [redis-url]   (default $CACHEKIT_REDIS_URL, else redis://127.0.0.1:6379/0) */
#include <stdio.h>
#include <inttypes.h>
#include <cachekit.h>

/* The job: runs while the lock is held; a watchdog extends it every ttl/3. */
static ck_status send_invoices(void *user, const ck_lock *l)
{
    int *sent = user;

    /* Check validity before each side effect, and hand the fencing token to
     * the storage you write, which rejects writes with an older fence. */
    for (int batch = 0; batch < 3; batch++) {
        if (!ck_lock_valid(l))
            return CK_E_LOCK_LOST;
        printf("  batch %d written with fence %" PRIu64 "\n", batch, ck_lock_fence(l));
        (*sent)++;
    }
    return CK_OK;
}

static ck_status run_job(ck_client *c, const char *who)
{
    int sent = 0;
    /* ttl 10 s (renewed by the watchdog), wait 0: skip if another instance runs it */
    ck_status st = ck_with_lock(c, "jobs:invoices", 10000, 0, send_invoices, &sent);

    switch (st) {
    case CK_OK:            printf("%s: job done, %d batches\n", who, sent); break;
    case CK_BUSY:          printf("%s: busy, another instance runs the job\n", who); break;
    case CK_E_LOCK_LOST:   printf("%s: lock lost after %d batches: stop\n", who, sent); break;
    case CK_E_UNAVAILABLE: printf("%s: Redis unavailable: job skipped (never a fake lock)\n", who); break;
    default:               printf("%s: %s\n", who, ck_strerror(st)); break;
    }
    return st;
}

int main(int argc, char **argv)
{
    ck_options o;
    ck_client *c;
    ck_lock *other;
    ck_status st, busy;

    ck_options_init(&o);
    o.url = argc > 1 ? argv[1] : NULL; /* NULL: $CACHEKIT_REDIS_URL or the default */
    if (ck_client_new(&o, &c) != CK_OK)
        return 1;

    /* While another instance holds the lock, this one skips its run. */
    st = ck_lock_acquire(c, "jobs:invoices", 10000, 0, &other);
    if (st != CK_OK) {
        fprintf(stderr, "acquire: %s\n", ck_strerror(st));
        ck_client_free(c);
        return 1;
    }
    printf("instance B holds the lock (fence %" PRIu64 ")\n", ck_lock_fence(other));
    busy = run_job(c, "instance A");
    st = ck_lock_release(other); /* frees `other` whatever it returns */
    if (st != CK_OK)
        fprintf(stderr, "release: %s\n", ck_strerror(st));
    else if (busy == CK_BUSY) /* now it is A's turn */
        st = run_job(c, "instance A");
    ck_client_free(c);
    return busy == CK_BUSY && st == CK_OK ? 0 : 1;
}
