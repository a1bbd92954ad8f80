/* The client's invalidation subscriber: one thread and one dedicated
 * connection per client, for every cache of that client that keeps an L1.
 *
 * The thread owns its connection; the hub lock guards the list of caches
 * and the per-cache "SUBSCRIBE sent" marks. Messages are applied under the
 * hub lock, so ck_cache_free (which unregisters under it) never races with
 * a message for the cache it frees.
 *
 * After a drop (EOF, reset, no answer to PING) every L1 of the client stops
 * answering on its own (l1_live = 0) until its channel is subscribed again;
 * then it is cleared, because messages may have been missed meanwhile. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "cache_priv.h"

#define CK__HUB_PING_MS 1000    /* PING an idle subscription this often */
#define CK__HUB_DEAD_MS 3000    /* no answer to it this long: reconnect */
#define CK__HUB_BACKOFF_MAX_MS 2000

/* ---- instance ids ---- */

static void ck__iid_set(ck_cache *k, uint64_t v)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--, v >>= 4)
        k->iid[i] = hex[v & 15];
    k->iid[16] = '\0';
}

/* Instances must not share an id (one would skip the other's messages):
 * from the system's CSPRNG, mixed with the clock if that fails. */
void ck__iid_init(ck_cache *k)
{
    uint64_t v = 0;
    if (RAND_bytes((unsigned char *)&v, sizeof v) != 1)
        v = ck__rand64(&k->rng) ^ (uint64_t)getpid() << 40;
    ck__iid_set(k, v);
}

/* splitmix64 */
static uint64_t ck__mix(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

struct ck__hub {
    ck_client *c;
    pthread_mutex_t mu;
    ck_cache *caches;
    pthread_t th;
    int running;  /* the thread exists in this process */
    int stopping;
    int wake[2];  /* a byte here wakes the thread: new cache, or stop */
    int down_logged;
    uint64_t gone_hits, gone_null_hits; /* of caches freed */
};

ck__hub *ck__hub_new(ck_client *c)
{
    ck__hub *h = calloc(1, sizeof *h);
    if (h == NULL)
        return NULL;
    h->c = c;
    h->wake[0] = h->wake[1] = -1;
    pthread_mutex_init(&h->mu, NULL);
    return h;
}

static void ck__hub_poke(ck__hub *h)
{
    if (h->wake[1] >= 0) {
        ssize_t n = write(h->wake[1], "x", 1); /* full pipe: already poked */
        (void)n;
    }
}

static void ck__hub_drain(ck__hub *h)
{
    char buf[64];
    while (read(h->wake[0], buf, sizeof buf) > 0) {
    }
}

/* Wait up to ms for a poke. */
static void ck__hub_nap(ck__hub *h, int ms)
{
    struct pollfd p = { h->wake[0], POLLIN, 0 };
    if (poll(&p, 1, ms) > 0)
        ck__hub_drain(h);
}

static int ck__hub_stopping(ck__hub *h)
{
    pthread_mutex_lock(&h->mu);
    int s = h->stopping;
    pthread_mutex_unlock(&h->mu);
    return s;
}

/* Every cache stops answering from L1 on its own. */
static void ck__hub_all_down(ck__hub *h)
{
    pthread_mutex_lock(&h->mu);
    for (ck_cache *k = h->caches; k != NULL; k = k->hub_next) {
        atomic_store(&k->l1_live, 0);
        k->hub_sent = 0;
    }
    pthread_mutex_unlock(&h->mu);
}

/* Send all of buf (a small command) before deadline. */
static int ck__hub_send(int fd, const char *buf, size_t len)
{
    int64_t until = ck__now_ns() + ck__ms_to_ns(CK__HUB_DEAD_MS);
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int left = (int)((until - ck__now_ns()) / 1000000);
            struct pollfd p = { fd, POLLOUT, 0 };
            if (left <= 0 || poll(&p, 1, left) <= 0)
                return -1;
            continue;
        }
        return -1;
    }
    return 0;
}

static int ck__hub_command(int fd, int argc, const char **argv, const size_t *lens)
{
    const char *const *av = argv;
    char stack[512], *cmd;
    size_t n = 0;
    int rc;

    if ((cmd = ck__resp_format(stack, sizeof stack, 1, &argc, &av, &lens, &n)) == NULL)
        return -1;
    rc = ck__hub_send(fd, cmd, n);
    if (cmd != stack)
        free(cmd);
    return rc;
}

/* SUBSCRIBE the channels of caches that have not asked yet. */
static int ck__hub_subscribe_new(ck__hub *h, int fd)
{
    const char *argv[65];
    size_t lens[65];
    int n = 1, rc = 0;

    argv[0] = "SUBSCRIBE";
    lens[0] = 9;
    pthread_mutex_lock(&h->mu);
    for (ck_cache *k = h->caches; k != NULL; k = k->hub_next) {
        if (k->hub_sent)
            continue;
        k->hub_sent = 1;
        argv[n] = k->chan;
        lens[n] = k->chan_len;
        if (++n == 65) {
            rc = ck__hub_command(fd, n, argv, lens);
            n = 1;
            if (rc != 0)
                break;
        }
    }
    if (rc == 0 && n > 1)
        rc = ck__hub_command(fd, n, argv, lens);
    pthread_mutex_unlock(&h->mu);
    return rc;
}

static int ck__is(const redisReply *r, const char *s)
{
    size_t n = strlen(s);
    return r->type == REDIS_REPLY_STRING && r->len == n && strncasecmp(r->str, s, n) == 0;
}

static void ck__hub_dispatch(ck__hub *h, redisReply *r)
{
    if (r->type == REDIS_REPLY_ERROR) { /* SUBSCRIBE refused (NOPERM): L1 stays paused */
        char e[96];
        ck__log_sanitize(e, sizeof e, r->str, r->len);
        ck__log(ck__client_logger(h->c), CK_LOG_WARN,
                "L1 invalidation subscriber: redis refused: %s", e);
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2)
        return;
    redisReply *kind = r->element[0], *chan = r->element[1];
    int is_msg = ck__is(kind, "message") && r->elements == 3 &&
                 r->element[2]->type == REDIS_REPLY_STRING;
    int is_sub = ck__is(kind, "subscribe");

    if ((!is_msg && !is_sub) || chan->type != REDIS_REPLY_STRING)
        return; /* pong, unsubscribe: nothing to do */
    pthread_mutex_lock(&h->mu);
    for (ck_cache *k = h->caches; k != NULL; k = k->hub_next) {
        if (k->chan_len != chan->len || memcmp(k->chan, chan->str, chan->len) != 0)
            continue;
        if (is_msg) {
            ck__l1_apply(k, r->element[2]->str, r->element[2]->len);
        } else if (k->hub_sent && !atomic_load(&k->l1_live)) {
            /* anything held may have missed a message: start empty */
            ck__l1_clear(k->l1);
            atomic_store(&k->l1_live, 1);
            ck__log(ck__client_logger(h->c), CK_LOG_DEBUG,
                    "cache %s: L1 invalidations subscribed", k->name);
        }
    }
    pthread_mutex_unlock(&h->mu);
}

/* One connection's life: returns when it broke or the hub stops. */
static void ck__hub_session(ck__hub *h, ck__conn *cn)
{
    int fd = cn->ctx->fd;
    int64_t last_rx = ck__now_ns(), ping_at = 0;
    char buf[16384];

    for (;;) {
        struct pollfd p[2] = { { fd, POLLIN, 0 }, { h->wake[0], POLLIN, 0 } };
        int64_t now;

        if (ck__hub_stopping(h) || ck__hub_subscribe_new(h, fd) != 0)
            return;
        if (poll(p, 2, 250) < 0 && errno != EINTR)
            return;
        if (p[1].revents != 0)
            ck__hub_drain(h);
        if (p[0].revents != 0) {
            ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
            void *rep = NULL;
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
                return;
            if (n > 0) {
                if (redisReaderFeed(cn->ctx->reader, buf, (size_t)n) != REDIS_OK)
                    return;
                for (;;) {
                    if (redisReaderGetReply(cn->ctx->reader, &rep) != REDIS_OK)
                        return;
                    if (rep == NULL)
                        break;
                    ck__hub_dispatch(h, rep);
                    freeReplyObject(rep);
                }
                last_rx = ck__now_ns();
                ping_at = 0;
            }
        }
        now = ck__now_ns();
        if (ping_at != 0 && now - ping_at > ck__ms_to_ns(CK__HUB_DEAD_MS)) {
            ck__log(ck__client_logger(h->c), CK_LOG_WARN,
                    "L1 invalidation subscriber: no answer for %d ms, reconnecting",
                    CK__HUB_DEAD_MS);
            return;
        }
        if (ping_at == 0 && now - last_rx > ck__ms_to_ns(CK__HUB_PING_MS)) {
            const char *argv[1] = { "PING" };
            size_t lens[1] = { 4 };
            if (ck__hub_command(fd, 1, argv, lens) != 0)
                return;
            ping_at = now;
        }
    }
}

static void *ck__hub_main(void *arg)
{
    ck__hub *h = arg;
    int backoff = 50;
    const ck_options *o = ck__client_options(h->c);
    const ck__logger *lg = ck__client_logger(h->c);

    while (!ck__hub_stopping(h)) {
        ck__conn *cn = NULL;
        ck__fail why;
        int want_info = 0, evicting = 0, err;
        ck_status st = ck__conn_open(ck__client_url(h->c),
                                     ck__now_ns() + ck__ms_to_ns(o->connect_timeout_ms), lg,
                                     &want_info, &evicting, &cn, &why, &err);
        if (st != CK_OK) {
            if (!h->down_logged)
                ck__log(lg, CK_LOG_WARN,
                        "L1 invalidation subscriber cannot connect (%s); L1 answers only "
                        "when Redis fails until it can",
                        ck__fail_str(why));
            h->down_logged = 1;
            ck__hub_nap(h, backoff);
            backoff = backoff * 2 > CK__HUB_BACKOFF_MAX_MS ? CK__HUB_BACKOFF_MAX_MS : backoff * 2;
            continue;
        }
        if (h->down_logged)
            ck__log(lg, CK_LOG_INFO, "L1 invalidation subscriber connected again");
        h->down_logged = 0;
        backoff = 50;
        ck__hub_session(h, cn);
        ck__hub_all_down(h);
        ck__conn_free(cn);
        if (!ck__hub_stopping(h)) {
            ck__log(lg, CK_LOG_WARN,
                    "L1 invalidation subscription lost; L1 paused until it is back");
            h->down_logged = 1;
            ck__hub_nap(h, backoff);
        }
    }
    return NULL;
}

/* Start the thread (hub lock held). */
static ck_status ck__hub_start(ck__hub *h)
{
    if (h->running)
        return CK_OK;
    if (h->wake[0] < 0) {
        if (pipe(h->wake) != 0)
            return CK_E_NOMEM;
        for (int i = 0; i < 2; i++) {
            fcntl(h->wake[i], F_SETFL, fcntl(h->wake[i], F_GETFL) | O_NONBLOCK);
            fcntl(h->wake[i], F_SETFD, FD_CLOEXEC);
        }
    }
    h->stopping = 0;
    if (pthread_create(&h->th, NULL, ck__hub_main, h) != 0)
        return CK_E_NOMEM;
    h->running = 1;
    return CK_OK;
}

ck_status ck__hub_register(ck_client *c, ck_cache *k)
{
    ck__hub *h = ck__client_hub(c);
    ck_status st;

    if (h == NULL)
        return CK_E_NOMEM;
    pthread_mutex_lock(&h->mu);
    st = ck__hub_start(h);
    if (st == CK_OK) {
        k->hub_sent = 0;
        atomic_store(&k->l1_live, 0);
        k->hub_next = h->caches;
        h->caches = k;
        k->hub = h;
        ck__hub_poke(h);
    }
    pthread_mutex_unlock(&h->mu);
    return st;
}

void ck__hub_unregister(ck_cache *k)
{
    ck__hub *h = k->hub;
    if (h == NULL)
        return;
    pthread_mutex_lock(&h->mu);
    for (ck_cache **pp = &h->caches; *pp != NULL; pp = &(*pp)->hub_next) {
        if (*pp == k) {
            *pp = k->hub_next;
            break;
        }
    }
    ck__l1_hits(k->l1, &h->gone_hits, &h->gone_null_hits);
    pthread_mutex_unlock(&h->mu);
}

void ck__hub_hits(ck__hub *h, uint64_t *hits, uint64_t *null_hits)
{
    if (h == NULL)
        return;
    pthread_mutex_lock(&h->mu);
    *hits += h->gone_hits;
    *null_hits += h->gone_null_hits;
    for (ck_cache *k = h->caches; k != NULL; k = k->hub_next)
        ck__l1_hits(k->l1, hits, null_hits);
    pthread_mutex_unlock(&h->mu);
}

void ck__hub_ensure(ck_cache *k)
{
    ck__hub *h = k->hub;
    if (h == NULL)
        return;
    pthread_mutex_lock(&h->mu);
    if (!h->running && h->caches != NULL)
        (void)ck__hub_start(h);
    pthread_mutex_unlock(&h->mu);
}

void ck__hub_free(ck__hub *h)
{
    if (h == NULL)
        return;
    pthread_mutex_lock(&h->mu);
    h->stopping = 1;
    ck__hub_poke(h);
    pthread_mutex_unlock(&h->mu);
    if (h->running)
        pthread_join(h->th, NULL);
    for (int i = 0; i < 2; i++)
        if (h->wake[i] >= 0)
            close(h->wake[i]);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

void ck__hub_fork_prepare(ck__hub *h)
{
    pthread_mutex_lock(&h->mu);
}

void ck__hub_fork_parent(ck__hub *h)
{
    pthread_mutex_unlock(&h->mu);
}

/* The child has no subscriber thread: its L1s stop answering on their own
 * until a new thread (started on the next Redis read) subscribes again.
 * The parent's wake pipe is not ours to write to. The thread's connection
 * is left as it is (its memory may be mid-update; the child must not free
 * it, and must not shut down a socket the parent still uses). */
void ck__hub_fork_child(ck__hub *h)
{
    for (ck_cache *k = h->caches; k != NULL; k = k->hub_next) {
        atomic_store(&k->l1_live, 0);
        k->hub_sent = 0;
        /* a new id: the parent would skip the child's messages as its own
         * (no CSPRNG call here: it may hold locks of threads gone now) */
        ck__iid_set(k, ck__mix(strtoull(k->iid, NULL, 16) ^ (uint64_t)getpid() << 32 ^
                               (uint64_t)ck__now_ns()));
    }
    if (h->wake[0] >= 0) {
        close(h->wake[0]);
        close(h->wake[1]);
        h->wake[0] = h->wake[1] = -1;
    }
    h->running = 0;
    h->stopping = 0;
    pthread_mutex_unlock(&h->mu);
}

/* ---- messages ---- */


static int ck__hex64(const char *s, size_t len)
{
    if (len != 64)
        return 0;
    for (size_t i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

/* The key hash of an entry key of this cache, or 0 if it is not one. */
static int ck__entry_kh(ck_cache *k, const char *s, size_t len, char kh[65])
{
    if (k->opt.key_hash != CK_KEY_PLAIN) {
        /* ...:{<64 hex>} */
        if (len < 66 || s[len - 1] != '}' || s[len - 66] != '{' || !ck__hex64(s + len - 65, 64))
            return 0;
        memcpy(kh, s + len - 65, 64);
        kh[64] = '\0';
        return 1;
    }
    /* <name>:<scope>:<key> (Dify's layout): the digest of the key */
    size_t nl = strlen(k->name);
    const char *sc, *colon;
    if (len <= nl + 1 || memcmp(s, k->name, nl) != 0 || s[nl] != ':')
        return 0;
    sc = s + nl + 1;
    colon = memchr(sc, ':', len - (size_t)(sc - s));
    if (colon == NULL || colon == sc)
        return 0;
    colon++;
    if (colon >= s + len || (size_t)(s + len - colon) > CK__KEY_MAX)
        return 0;
    ck__digest(&k->ks, 'k', colon, (size_t)(s + len - colon), kh);
    return 1;
}

int ck__l1_drop_entry(ck_cache *k, const char *s, size_t len)
{
    char kh[65];
    if (!ck__entry_kh(k, s, len, kh))
        return 0;
    ck__l1_drop_kh(k->l1, kh);
    return 1;
}

/* "<iid> <seq> k <kh>": one key (all its scopes).
 * "<iid> <seq> e <entry key>\n<entry key>...": a tag's entries.
 * Anything else, or a part that does not parse: clear the whole L1, which
 * is always safe. */
void ck__l1_apply(ck_cache *k, const char *msg, size_t len)
{
    const char *p = msg, *end = msg + len, *sp;
    char kh[65];

    if (k->l1 == NULL)
        return;
    if (len < 21 || msg[16] != ' ')
        goto clear;
    if (memcmp(msg, k->iid, 16) == 0 && atomic_load(&k->l1_skip_own))
        return; /* our own write: applied locally once its reply came */
    p = msg + 17;
    sp = memchr(p, ' ', (size_t)(end - p));
    if (sp == NULL || sp == p || end - sp < 3 || sp[2] != ' ')
        goto clear;
    p = sp + 3;
    if (sp[1] == 'k') {
        if (!ck__hex64(p, (size_t)(end - p)))
            goto clear;
        memcpy(kh, p, 64);
        kh[64] = '\0';
        ck__l1_drop_kh(k->l1, kh);
        return;
    }
    if (sp[1] == 'e') {
        while (p < end) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            const char *e = nl != NULL ? nl : end;
            if (!ck__l1_drop_entry(k, p, (size_t)(e - p)))
                goto clear;
            p = nl != NULL ? nl + 1 : end;
        }
        return;
    }
clear:
    ck__l1_clear(k->l1);
}
