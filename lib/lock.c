/* Distributed locks on one Redis.
 *
 * A lock is the key <prefix>:l:{<name>} holding a random 128-bit token (hex)
 * with a PX expiry; its fencing counter is <prefix>:l:{<name>}:f, which never
 * expires and is never deleted. Three scripts do all the work atomically:
 *
 *   acquire   set the lock if free (or if it already holds our token: an
 *             earlier attempt whose reply was lost), mint the fence
 *             max(previous + 1, TIME in µs), or answer "busy" with the
 *             holder's PTTL
 *   extend    PEXPIRE if the key holds our token
 *   release   DEL if the key holds our token
 *
 * extend and release answer 1 (done), 0 (key gone: expired) or -1 (another
 * holder's token), so the log can tell the two losses apart.
 *
 * Orphans. An acquire whose reply was lost (timeout or dropped connection
 * after the script was sent) may have taken the lock. Its (key, token) goes
 * into a small process-wide registry keyed by the server (a digest of the
 * client's URL) and the pid; the next lock call of this process on that
 * server that gets an answer from Redis deletes it with a compare-and-delete,
 * and an acquire of the same name takes it over instead (the acquire script
 * accepts its own token and mints a fresh fence). A release that cannot
 * reach Redis leaves its (key, token) there too. See docs/locks.md for why
 * a registry and not a background thread. */
#include <errno.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#if defined(__linux__) && defined(__GLIBC__) && \
    (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 25))
#  define CK__HAVE_GETRANDOM 1
#  include <sys/random.h>
#endif

#include "cache_internal.h" /* ck__valid_name (keys.c) */
#include "lock_internal.h"

#define CK__LOCK_NAME_MAX 512
#define CK__TOKEN_BYTES 16
#define CK__BACKOFF_MIN_MS 2
#define CK__BACKOFF_MAX_MS 100
#define CK__RELEASE_ATTEMPTS 3
#define CK__ORPHANS_MAX 256       /* process-wide; beyond it the soonest to expire is forgotten */
#define CK__ORPHAN_CLEAN_MAX 4    /* compare-and-deletes one call may add */

/* ---- scripts ---- */

/* Needs Redis >= 6.2 (SET ... GET). The fence is a Lua number: exact below
 * 2^53 (TIME in µs is ~2^51), passed to redis.call as "%.17g" (6.2) or the
 * shortest exact form (7.x), and returned as an integer reply. A WRONGTYPE
 * fence key makes the script fail after the lock was set: the caller
 * treats any script error as "our token may be there" (an orphan). */
ck__script ck__lock_acquire_script = {
    "lock_acquire",
    "if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then\n"
    "  if redis.call('GET', KEYS[1]) ~= ARGV[1] then\n"
    "    return {0, redis.call('PTTL', KEYS[1])}\n"
    "  end\n"
    /* our own token: an attempt whose reply was lost, or an orphan taken
     * over. Reset its TTL and mint a fresh fence: no two grants share one */
    "  redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "end\n"
    "local t = redis.call('TIME')\n"
    "local f = t[1] * 1000000 + t[2]\n"
    "local p = tonumber(redis.call('SET', KEYS[2], f, 'GET'))\n"
    "if p and p >= f then\n"
    "  if p >= 9007199254740991 then\n"
    "    redis.call('SET', KEYS[2], p)\n"
    "    redis.call('DEL', KEYS[1])\n"
    "    return redis.error_reply('ERR cachekit lock fence out of range')\n"
    "  end\n"
    "  f = p + 1\n"
    "  redis.call('SET', KEYS[2], f)\n"
    "end\n"
    "return {1, f}\n",
    ""};

ck__script ck__lock_extend_script = {
    "lock_extend",
    "local cur = redis.call('GET', KEYS[1])\n"
    "if cur == ARGV[1] then\n"
    "  redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "  return 1\n"
    "end\n"
    "if cur then return -1 end\n"
    "return 0\n",
    ""};

ck__script ck__lock_release_script = {
    "lock_release",
    "local cur = redis.call('GET', KEYS[1])\n"
    "if cur == ARGV[1] then\n"
    "  redis.call('DEL', KEYS[1])\n"
    "  return 1\n"
    "end\n"
    "if cur then return -1 end\n"
    "return 0\n",
    ""};

/* ---- small helpers ---- */

/* The margin by which a lock is considered gone before its TTL ends, for
 * the drift between our clock and Redis's: 1% of the TTL plus 2 ms. */
static int64_t ck__drift_ns(int ttl_ms)
{
    return ck__ms_to_ns(ttl_ms) / 100 + ck__ms_to_ns(2);
}

static void ck__sleep_ns(int64_t ns)
{
    struct timespec ts;

    if (ns <= 0)
        return;
    ts.tv_sec = (time_t)(ns / 1000000000);
    ts.tv_nsec = (long)(ns % 1000000000);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void ck__hex(const unsigned char *b, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[b[i] >> 4];
        out[2 * i + 1] = hex[b[i] & 15];
    }
    out[2 * n] = '\0';
}

static size_t ck__fmt_int(char *buf, size_t len, long long v)
{
    return (size_t)snprintf(buf, len, "%lld", v);
}

/* An error reply from a lock script (WRONGTYPE: another program's key
 * where ours should be; NOPERM: the ACL; ...), logged: CK_E_PROTOCOL.
 * "Can't serve now" errors never get here (the client layer returns them
 * as CK_E_UNAVAILABLE). */
static ck_status ck__script_error(ck_client *c, const char *what, const char *logname,
                                  const redisReply *r)
{
    char e[96];

    ck__log_sanitize(e, sizeof e, r->str, r->len);
    ck__log(ck__client_logger(c), CK_LOG_ERROR, "lock '%s': %s: redis replied %s", logname, what,
            e);
    return CK_E_PROTOCOL;
}

ck_lock *ck__lock_new(ck_client *c, const char *name, int ttl_ms)
{
    const char *prefix = ck__client_options(c)->prefix;
    size_t plen = strlen(prefix), nlen = strlen(name);
    /* <prefix>:l:{<name>}:f */
    size_t key_len = plen + 4 + nlen + 1;
    ck_lock *l = calloc(1, sizeof *l + key_len + 3);

    if (l == NULL)
        return NULL;
    l->c = c;
    l->ttl_ms = ttl_ms;
    l->key_len = key_len;
    memcpy(l->key, prefix, plen);
    memcpy(l->key + plen, ":l:{", 4);
    memcpy(l->key + plen + 4, name, nlen);
    memcpy(l->key + plen + 4 + nlen, "}:f", 4);
    atomic_init(&l->lost, 0);
    atomic_init(&l->valid_until_ns, 0);
    ck__log_sanitize(l->logname, sizeof l->logname, name, nlen);
    return l;
}

/* ---- the orphan registry ---- */

typedef struct ck__orphan {
    struct ck__orphan *next;
    char server[41];    /* SHA1 of the client's URL: any client of this
                           process for that server may clean it up */
    pid_t pid;          /* a fork child must not touch its parent's orphans */
    int64_t until_ns;   /* the key has expired by then on its own */
    char token[2 * CK__TOKEN_BYTES + 1];
    char logname[72];
    size_t key_len;
    char key[];
} ck__orphan;

static _Atomic unsigned ck__fork_gen;   /* bumped in every fork child */
static pthread_mutex_t ck__orph_mu = PTHREAD_MUTEX_INITIALIZER;
static ck__orphan *ck__orph_head;
static _Atomic int ck__orph_count;
static pthread_once_t ck__fork_once = PTHREAD_ONCE_INIT;

/* The registry's mutex is never held across I/O or another lock, so
 * holding it around fork() cannot deadlock, and the child finds it free. */
static void ck__fork_prepare(void) { pthread_mutex_lock(&ck__orph_mu); }
static void ck__fork_parent(void) { pthread_mutex_unlock(&ck__orph_mu); }
static void ck__fork_child(void)
{
    atomic_fetch_add(&ck__fork_gen, 1); /* no random byte of the parent's is reused */
    pthread_mutex_unlock(&ck__orph_mu);
}
static void ck__fork_install(void)
{
    pthread_atfork(ck__fork_prepare, ck__fork_parent, ck__fork_child);
}

/* Unlink expired entries and those of another process. Mutex held. */
static void ck__orph_purge(int64_t now, pid_t pid)
{
    for (ck__orphan **pp = &ck__orph_head; *pp != NULL;) {
        ck__orphan *o = *pp;

        if (o->until_ns <= now || o->pid != pid) {
            *pp = o->next;
            free(o);
            atomic_fetch_sub(&ck__orph_count, 1);
        } else {
            pp = &o->next;
        }
    }
}

static void ck__orph_insert(ck__orphan *o)
{
    pthread_mutex_lock(&ck__orph_mu);
    ck__orph_purge(ck__now_ns(), o->pid);
    if (atomic_load(&ck__orph_count) >= CK__ORPHANS_MAX) {
        /* forget the one that expires soonest: it only waits out its TTL */
        ck__orphan **victim = &ck__orph_head;
        for (ck__orphan **pp = &ck__orph_head; *pp != NULL; pp = &(*pp)->next)
            if ((*pp)->until_ns < (*victim)->until_ns)
                victim = pp;
        ck__orphan *v = *victim;
        *victim = v->next;
        free(v);
        atomic_fetch_sub(&ck__orph_count, 1);
    }
    o->next = ck__orph_head;
    ck__orph_head = o;
    atomic_fetch_add(&ck__orph_count, 1);
    pthread_mutex_unlock(&ck__orph_mu);
}

/* Which server a client talks to, for the registry: a digest, so that the
 * URL's password is not copied around. */
static void ck__server_id(const ck_client *c, char out[41])
{
    const char *url = ck__client_options(c)->url;

    ck__sha1_hex(url, strlen(url), out);
}

void ck__orphan_add(ck_client *c, const char *key, size_t key_len, const char *token,
                    const char *logname, int64_t until_ns)
{
    ck__orphan *o;

    if (until_ns <= ck__now_ns())
        return; /* expired already */
    o = malloc(sizeof *o + key_len + 1);
    if (o == NULL)
        return; /* it waits out its TTL */
    ck__server_id(c, o->server);
    o->pid = getpid();
    o->until_ns = until_ns;
    memcpy(o->token, token, sizeof o->token);
    snprintf(o->logname, sizeof o->logname, "%s", logname);
    o->key_len = key_len;
    memcpy(o->key, key, key_len);
    o->key[key_len] = '\0';
    ck__orph_insert(o);
}

/* Remove and return one live orphan on `c`'s server (for `key` when key !=
 * NULL), or NULL. The caller frees it or puts it back with ck__orph_insert. */
static ck__orphan *ck__orph_take(const ck_client *c, const char *key, size_t key_len)
{
    ck__orphan *found = NULL;
    char server[41];
    pid_t pid;

    if (atomic_load_explicit(&ck__orph_count, memory_order_relaxed) == 0)
        return NULL; /* the common case: no mutex */
    ck__server_id(c, server);
    pid = getpid();
    pthread_mutex_lock(&ck__orph_mu);
    ck__orph_purge(ck__now_ns(), pid);
    for (ck__orphan **pp = &ck__orph_head; *pp != NULL; pp = &(*pp)->next) {
        ck__orphan *o = *pp;

        if (memcmp(o->server, server, 40) == 0 &&
            (key == NULL || (o->key_len == key_len && memcmp(o->key, key, key_len) == 0))) {
            *pp = o->next;
            atomic_fetch_sub(&ck__orph_count, 1);
            found = o;
            break;
        }
    }
    pthread_mutex_unlock(&ck__orph_mu);
    return found;
}

int ck__orphan_count(const ck_client *c)
{
    char server[41];
    int n = 0;
    pid_t pid = getpid();

    ck__server_id(c, server);
    pthread_mutex_lock(&ck__orph_mu);
    ck__orph_purge(ck__now_ns(), pid);
    for (ck__orphan *o = ck__orph_head; o != NULL; o = o->next)
        n += memcmp(o->server, server, 40) == 0;
    pthread_mutex_unlock(&ck__orph_mu);
    return n;
}

/* Redis just answered a lock call of `c`: delete up to a few of its orphans.
 * Stops (and keeps the orphan) as soon as Redis cannot be reached. */
void ck__orphan_clean(ck_client *c)
{
    for (int i = 0; i < CK__ORPHAN_CLEAN_MAX; i++) {
        ck__orphan *o = ck__orph_take(c, NULL, 0);
        const char *keys[1];
        size_t klens[1];
        const char *args[1];
        size_t alens[1];
        redisReply *r = NULL;
        ck_status st;

        if (o == NULL)
            return;
        keys[0] = o->key;
        klens[0] = o->key_len;
        args[0] = o->token;
        alens[0] = 2 * CK__TOKEN_BYTES;
        st = ck__eval(c, &ck__lock_release_script, 1, keys, klens, 1, args, alens, CK__CMD_WRITE,
                      &r, NULL);
        if (st == CK_E_UNAVAILABLE) {
            ck__orph_insert(o);
            return;
        }
        if (st == CK_OK && r->type == REDIS_REPLY_INTEGER && r->integer == 1)
            ck__log(ck__client_logger(c), CK_LOG_INFO,
                    "lock '%s': deleted the lock left by an acquire or release whose reply was lost",
                    o->logname);
        freeReplyObject(r);
        free(o);
    }
}

/* ---- acquire ---- */

/* Parse the acquire script's reply. 1 = ours (*fence), 0 = busy (*pttl_ms,
 * -1 when unknown), < 0 = a status. */
static int ck__parse_acquire(ck_client *c, const ck_lock *l, const redisReply *r, uint64_t *fence,
                             long long *pttl_ms, ck_status *st)
{
    const redisReply *a, *b;

    if (r->type == REDIS_REPLY_ERROR) {
        *st = ck__script_error(c, "acquire", l->logname, r);
        return -1;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER)
        goto bad;
    a = r->element[0];
    b = r->element[1];
    if (a->integer == 0 && b->type == REDIS_REPLY_INTEGER) {
        *pttl_ms = b->integer;
        return 0;
    }
    if (a->integer == 1 && b->type == REDIS_REPLY_INTEGER && b->integer >= 1) {
        *fence = (uint64_t)b->integer;
        return 1;
    }
    if (a->integer == 1 && b->type == REDIS_REPLY_STRING && b->len > 0 && b->len < 21) {
        char buf[24], *end;
        unsigned long long v;

        memcpy(buf, b->str, b->len);
        buf[b->len] = '\0';
        errno = 0;
        v = strtoull(buf, &end, 10);
        if (errno == 0 && *end == '\0' && buf[0] >= '0' && buf[0] <= '9' && v >= 1) {
            *fence = v;
            return 1;
        }
    }
bad:
    ck__log(ck__client_logger(c), CK_LOG_ERROR,
            "lock '%s': unexpected reply to the acquire script (does another program use the "
            "lock or fence key?)",
            l->logname);
    *st = CK_E_PROTOCOL;
    return -1;
}

/* ---- random bytes ----
 * Tokens come from the kernel's CSPRNG (getrandom(2); OpenSSL's RAND_bytes
 * where that is missing), drawn 256 bytes at a time into a per-thread pool:
 * one syscall per ten acquires instead of one (or an OpenSSL DRBG round
 * trip, ~2 µs) each. A fork child must never hand out its parent's bytes
 * (two processes with one token would both "own" a lock), so the child
 * handler bumps a generation that every pool checks. */

#define CK__POOL_BYTES 256

static _Thread_local struct {
    int filled;
    unsigned gen; /* ck__fork_gen when filled */
    unsigned pos;
    unsigned char buf[CK__POOL_BYTES];
} ck__rnd;

static int ck__fill(unsigned char *buf, size_t n)
{
#if defined(CK__HAVE_GETRANDOM)
    size_t got = 0;

    while (got < n) {
        ssize_t r = getrandom(buf + got, n - got, 0);

        if (r > 0)
            got += (size_t)r;
        else if (r < 0 && errno == EINTR)
            continue;
        else
            break; /* ENOSYS (old kernel): OpenSSL below */
    }
    if (got == n)
        return 1;
#endif
    return RAND_bytes(buf, (int)n) == 1;
}

static ck_status ck__random(ck_client *c, unsigned char *out, size_t n)
{
    unsigned gen;

    pthread_once(&ck__fork_once, ck__fork_install);
    gen = atomic_load_explicit(&ck__fork_gen, memory_order_relaxed);

    if (!ck__rnd.filled || ck__rnd.gen != gen || ck__rnd.pos + n > CK__POOL_BYTES) {
        ck__rnd.filled = 0;
        if (!ck__fill(ck__rnd.buf, CK__POOL_BYTES)) {
            ck__log(ck__client_logger(c), CK_LOG_ERROR,
                    "lock: the system's random source failed; no lock taken");
            return CK_E_NOMEM;
        }
        ck__rnd.filled = 1;
        ck__rnd.gen = gen;
        ck__rnd.pos = 0;
    }
    memcpy(out, ck__rnd.buf + ck__rnd.pos, n);
    memset(ck__rnd.buf + ck__rnd.pos, 0, n); /* handed out once */
    ck__rnd.pos += (unsigned)n;
    return CK_OK;
}

ck_status ck_lock_acquire(ck_client *c, const char *name, int ttl_ms, int wait_ms, ck_lock **out)
{
    unsigned char rnd[CK__TOKEN_BYTES + 8];
    _Atomic uint64_t rng;
    char px[24];
    const char *keys[2], *args[2];
    size_t klens[2], alens[2];
    int64_t deadline, backoff_ms = CK__BACKOFF_MIN_MS;
    int adopted = 0;    /* we took over an orphan's token, not yet resolved */
    int lost_reply = 0; /* an attempt of this call may have run unseen */
    ck__orphan *adopt;
    ck_lock *l;
    ck_status st;

    if (out != NULL)
        *out = NULL;
    if (c == NULL || out == NULL || ttl_ms <= 0 || wait_ms < 0 ||
        !ck__valid_name(name, CK__LOCK_NAME_MAX)) {
        if (c != NULL)
            ck__log(ck__client_logger(c), CK_LOG_ERROR,
                    "ck_lock_acquire: invalid argument (name must be 1-512 bytes without '{', '}' "
                    "or control characters, ttl_ms > 0, wait_ms >= 0, out non-NULL)");
        return CK_E_INVALID;
    }
    l = ck__lock_new(c, name, ttl_ms);
    if (l == NULL)
        return CK_E_NOMEM;
    st = ck__random(c, rnd, sizeof rnd);
    if (st != CK_OK) {
        free(l);
        return st;
    }
    ck__hex(rnd, CK__TOKEN_BYTES, l->token);
    {
        uint64_t seed;
        memcpy(&seed, rnd + CK__TOKEN_BYTES, sizeof seed);
        atomic_init(&rng, seed);
    }
    /* An orphan on this server for this very name: take it over (the script
     * accepts its token and mints a new fence) rather than wait for it or
     * delete it first. Its token was never handed to a live ck_lock. */
    adopt = ck__orph_take(c, l->key, l->key_len);
    if (adopt != NULL) {
        memcpy(l->token, adopt->token, sizeof l->token);
        free(adopt);
        adopted = 1;
    }

    keys[0] = l->key;
    klens[0] = l->key_len;
    keys[1] = l->key;
    klens[1] = l->key_len + 2;
    args[0] = l->token;
    alens[0] = 2 * CK__TOKEN_BYTES;
    args[1] = px;
    alens[1] = ck__fmt_int(px, sizeof px, ttl_ms);
    deadline = ck__now_ns() + ck__ms_to_ns(wait_ms);

    for (;;) {
        int64_t sent = ck__now_ns(), now;
        redisReply *r = NULL;
        uint64_t fence = 0;
        long long pttl = -1;
        int amb = 0, got;

        st = ck__eval(c, &ck__lock_acquire_script, 2, keys, klens, 2, args, alens, CK__CMD_WRITE,
                      &r, &amb);
        if (st != CK_OK) {
            lost_reply |= amb;
            /* the script is idempotent for our token: after a lost reply,
             * try again while the caller's wait allows */
            if (st == CK_E_UNAVAILABLE && amb && ck__now_ns() < deadline)
                continue;
            break;
        }
        got = ck__parse_acquire(c, l, r, &fence, &pttl, &st);
        freeReplyObject(r);
        if (got < 0) {
            lost_reply = 1; /* the script may have failed after setting the lock */
            break;
        }
        if (got == 1) {
            l->fence = fence;
            atomic_store(&l->valid_until_ns, sent + ck__ms_to_ns(ttl_ms) - ck__drift_ns(ttl_ms));
            ck__count(c, CK__ST_LOCK_ACQUIRED, 1);
            ck__orphan_clean(c);
            *out = l;
            return CK_OK;
        }
        /* busy: someone else's token is in the key (an adopted orphan of
         * ours is gone), and Redis answered: a good moment for the orphans */
        adopted = 0;
        ck__orphan_clean(c);
        now = ck__now_ns();
        if (now >= deadline) {
            st = CK_BUSY;
            break;
        }
        {
            /* full jitter in [backoff/2, backoff], never past the holder's
             * remaining TTL nor past the caller's wait */
            int64_t b = ck__ms_to_ns(backoff_ms);
            int64_t sleep = b / 2 + (int64_t)(ck__rand64(&rng) % (uint64_t)(b / 2 + 1));

            if (pttl >= 0 && ck__ms_to_ns(pttl) + 500000 < sleep)
                sleep = ck__ms_to_ns(pttl) + 500000;
            if (sleep > deadline - now)
                sleep = deadline - now;
            ck__sleep_ns(sleep);
            backoff_ms = backoff_ms * 2 > CK__BACKOFF_MAX_MS ? CK__BACKOFF_MAX_MS : backoff_ms * 2;
        }
    }

    if (lost_reply || adopted) {
        if (lost_reply)
            ck__log(ck__client_logger(c), CK_LOG_WARN,
                    "lock '%s': acquire failed (%s) after a request that may have set the lock; "
                    "it will be deleted with its token once redis answers",
                    l->logname, ck_strerror(st));
        ck__orphan_add(c, l->key, l->key_len, l->token, l->logname,
                       ck__now_ns() + ck__ms_to_ns(ttl_ms) + ck__drift_ns(ttl_ms));
    }
    if (st == CK_BUSY)
        ck__count(c, CK__ST_LOCK_BUSY, 1);
    else if (st == CK_E_UNAVAILABLE)
        ck__count(c, CK__ST_DEGRADED, 1);
    free(l);
    return st;
}

/* ---- extend ---- */

void ck__lock_mark_lost(ck_lock *l)
{
    if (atomic_exchange(&l->lost, 1) == 0)
        ck__count(l->c, CK__ST_LOCK_LOST, 1);
}

ck_status ck__lock_renew(ck_lock *l, int ttl_ms, int clean)
{
    ck_client *c = l->c;
    char px[24];
    const char *keys[1] = {l->key};
    size_t klens[1] = {l->key_len};
    const char *args[2] = {l->token, px};
    size_t alens[2];
    redisReply *r = NULL;
    int64_t sent = 0;
    ck_status st = CK_E_UNAVAILABLE;

    alens[0] = 2 * CK__TOKEN_BYTES;
    alens[1] = ck__fmt_int(px, sizeof px, ttl_ms);
    /* compare-and-extend is idempotent: one more attempt after a failure */
    for (int attempt = 0; attempt < 2; attempt++) {
        sent = ck__now_ns();
        st = ck__eval(c, &ck__lock_extend_script, 1, keys, klens, 2, args, alens, CK__CMD_WRITE,
                      &r, NULL);
        if (st != CK_E_UNAVAILABLE)
            break;
    }
    if (st != CK_OK)
        return st;
    if (r->type == REDIS_REPLY_ERROR) {
        st = ck__script_error(c, "extend", l->logname, r);
    } else if (r->type != REDIS_REPLY_INTEGER || r->integer < -1 || r->integer > 1) {
        ck__log(ck__client_logger(c), CK_LOG_ERROR, "lock '%s': unexpected reply to extend",
                l->logname);
        st = CK_E_PROTOCOL;
    } else if (r->integer == 1) {
        l->ttl_ms = ttl_ms;
        atomic_store(&l->valid_until_ns, sent + ck__ms_to_ns(ttl_ms) - ck__drift_ns(ttl_ms));
    } else {
        ck__log(ck__client_logger(c), CK_LOG_WARN,
                r->integer == 0 ? "lock '%s': extend found the lock expired (key gone)"
                                : "lock '%s': extend found the lock owned by another holder",
                l->logname);
        ck__lock_mark_lost(l);
        st = CK_E_LOCK_LOST;
    }
    freeReplyObject(r);
    if (clean)
        ck__orphan_clean(c);
    return st;
}

ck_status ck_lock_extend(ck_lock *l, int ttl_ms)
{
    ck_status st;

    if (l == NULL || ttl_ms <= 0)
        return CK_E_INVALID;
    if (atomic_load(&l->lost))
        return CK_E_LOCK_LOST;
    st = ck__lock_renew(l, ttl_ms, 1);
    if (st == CK_E_UNAVAILABLE)
        ck__count(l->c, CK__ST_DEGRADED, 1);
    return st;
}

/* ---- release ---- */

ck_status ck_lock_release(ck_lock *l)
{
    ck_client *c;
    const char *keys[1];
    size_t klens[1];
    const char *args[1];
    size_t alens[1];
    redisReply *r = NULL;
    int64_t lost_reply_at = -1; /* when the first attempt whose reply was lost was sent */
    ck_status st = CK_E_UNAVAILABLE;

    if (l == NULL)
        return CK_E_INVALID;
    c = l->c;
    keys[0] = l->key;
    klens[0] = l->key_len;
    args[0] = l->token;
    alens[0] = 2 * CK__TOKEN_BYTES;
    /* compare-and-delete is idempotent: a timed-out release is sent again */
    for (int attempt = 0; attempt < CK__RELEASE_ATTEMPTS; attempt++) {
        int64_t sent = ck__now_ns();
        int amb = 0;

        st = ck__eval(c, &ck__lock_release_script, 1, keys, klens, 1, args, alens, CK__CMD_WRITE,
                      &r, &amb);
        if (st != CK_E_UNAVAILABLE)
            break;
        if (amb && lost_reply_at < 0)
            lost_reply_at = sent;
    }
    if (st == CK_OK) {
        if (r->type == REDIS_REPLY_ERROR) {
            st = ck__script_error(c, "release", l->logname, r);
        } else if (r->type != REDIS_REPLY_INTEGER || r->integer < -1 || r->integer > 1) {
            ck__log(ck__client_logger(c), CK_LOG_ERROR, "lock '%s': unexpected reply to release",
                    l->logname);
            st = CK_E_PROTOCOL;
        } else if (r->integer != 1) {
            if (lost_reply_at >= 0 && lost_reply_at < atomic_load(&l->valid_until_ns)) {
                /* an earlier attempt, sent while the lock was ours, deleted it */
                ck__log(ck__client_logger(c), CK_LOG_DEBUG,
                        "lock '%s': released (confirmed after a lost reply)", l->logname);
            } else {
                ck__log(ck__client_logger(c), CK_LOG_WARN,
                        r->integer == 0
                            ? "lock '%s': release found the lock expired (key gone); nothing deleted"
                            : "lock '%s': release found the lock owned by another holder; left it intact",
                        l->logname);
                ck__lock_mark_lost(l);
                st = CK_E_LOCK_LOST;
            }
        }
        freeReplyObject(r);
        ck__orphan_clean(c);
    } else if (st == CK_E_UNAVAILABLE) {
        int64_t until = atomic_load(&l->valid_until_ns) + 2 * ck__drift_ns(l->ttl_ms);

        ck__log(ck__client_logger(c), CK_LOG_WARN,
                "lock '%s': release could not reach redis; it will be deleted with its token once "
                "redis answers, or expire",
                l->logname);
        ck__orphan_add(c, l->key, l->key_len, l->token, l->logname, until);
        ck__count(c, CK__ST_DEGRADED, 1);
    }
    free(l);
    return st;
}

/* ---- accessors ---- */

uint64_t ck_lock_fence(const ck_lock *l)
{
    return l != NULL ? l->fence : 0;
}

int ck_lock_valid(const ck_lock *l)
{
    if (l == NULL || atomic_load(&((ck_lock *)l)->lost))
        return 0;
    return ck__now_ns() < atomic_load(&((ck_lock *)l)->valid_until_ns);
}
