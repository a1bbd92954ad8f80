/* The client: options, the connection pool, leases with one deadline per
 * call, the timer that enforces ck_client_run's deadline, fork handling and
 * the counters. Every module reaches Redis through a lease, so deadlines,
 * the breaker and statistics are decided here and nowhere else. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "internal.h"
#include "l1.h"

#define CK__POOL_MAX 1024
#define CK__PREFIX_MAX 64

struct ck_client {
    ck_options opt;            /* url and prefix point at the copies below */
    char *url_copy;
    char *prefix_copy;
    ck__url url;
    ck__logger log;
    ck__breaker br;

    pthread_mutex_t mu;        /* guards everything below up to the counters */
    pthread_cond_t pool_cv;    /* a connection came back or a slot was freed */
    ck__conn **idle;           /* LIFO: the most recently used is warmest */
    int n_idle;
    int n_open;                /* idle + lent + being opened: never > pool_size */
    unsigned epoch;            /* bumped in a fork child: older connections are the parent's */
    ck__conn *orphans;         /* the parent's connections, closed lazily in a child */
    ck__conn *lent;            /* connections lent to ck_client_run, watched by the timer */
    int want_info;             /* maxmemory_policy not read yet */
    int warned_eviction;

    pthread_t timer;
    int timer_running;         /* the timer thread exists in this process */
    int timer_idle;            /* the timer waits with nothing armed */
    int64_t timer_wake_ns;     /* when the timer will look next */
    int stopping;
    pthread_cond_t timer_cv;

    struct ck__hub *hub;       /* L1 invalidations (l1_sub.c), created on first use */

    _Atomic uint64_t counters[CK__ST_COUNT];
    struct ck_client *reg_prev, *reg_next; /* registry, for fork handling */
};

/* ---- options ---- */

void ck_options_init(ck_options *o)
{
    if (o == NULL)
        return;
    memset(o, 0, sizeof *o);
    o->url = NULL;
    o->prefix = NULL;
    o->connect_timeout_ms = 200;
    o->command_timeout_ms = 100;
    o->pool_size = 8;
    o->pool_wait_ms = 50;
    o->fail_mode = CK_FAIL_OPEN;
    o->local_instances = 1;
    o->breaker_failures = 5;
    o->breaker_cooldown_ms = 1000;
    o->max_reply_bytes = (size_t)16 << 20;
    o->log = NULL;
    o->log_user = NULL;
    o->log_level = CK_LOG_WARN;
}

static int ck__valid_prefix(const char *p)
{
    size_t n = 0;

    for (; p[n] != '\0'; n++) {
        char ch = p[n];
        if (n >= CK__PREFIX_MAX ||
            !((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '.' || ch == '-'))
            return 0;
    }
    return n > 0;
}

/* The first nonsense in `o`, or NULL. */
static const char *ck__check_options(const ck_options *o)
{
    if (o->connect_timeout_ms <= 0)
        return "connect_timeout_ms must be > 0";
    if (o->command_timeout_ms <= 0)
        return "command_timeout_ms must be > 0";
    if (o->pool_size <= 0 || o->pool_size > CK__POOL_MAX)
        return "pool_size must be 1-1024";
    if (o->pool_wait_ms < 0)
        return "pool_wait_ms must be >= 0";
    if (o->fail_mode != CK_FAIL_OPEN && o->fail_mode != CK_FAIL_CLOSED &&
        o->fail_mode != CK_FAIL_LOCAL)
        return "fail_mode must be CK_FAIL_OPEN, CK_FAIL_CLOSED or CK_FAIL_LOCAL";
    if (o->local_instances <= 0)
        return "local_instances must be > 0";
    if (o->breaker_failures <= 0)
        return "breaker_failures must be > 0";
    if (o->breaker_cooldown_ms <= 0)
        return "breaker_cooldown_ms must be > 0";
    if (o->max_reply_bytes < 1024)
        return "max_reply_bytes must be >= 1024";
    if (o->prefix != NULL && !ck__valid_prefix(o->prefix))
        return "prefix must be 1-64 bytes of [A-Za-z0-9_.-]";
    return NULL;
}

/* ---- fork: the child never uses the parent's sockets ----
 * Every client is in a registry. Around fork() the registry and every
 * client's lock are held, so the child inherits consistent state; the child
 * then bumps each client's epoch and orphans the inherited connections
 * (closed without any I/O on first use) and forgets the parent's timer. */

static pthread_mutex_t ck__reg_mu = PTHREAD_MUTEX_INITIALIZER;
static ck_client *ck__reg_head;
static pthread_once_t ck__atfork_once = PTHREAD_ONCE_INIT;

static void ck__fork_prepare(void)
{
    pthread_mutex_lock(&ck__reg_mu);
    for (ck_client *c = ck__reg_head; c != NULL; c = c->reg_next) {
        pthread_mutex_lock(&c->mu);
        if (c->hub != NULL)
            ck__hub_fork_prepare(c->hub);
    }
}

static void ck__fork_parent(void)
{
    for (ck_client *c = ck__reg_head; c != NULL; c = c->reg_next) {
        if (c->hub != NULL)
            ck__hub_fork_parent(c->hub);
        pthread_mutex_unlock(&c->mu);
    }
    pthread_mutex_unlock(&ck__reg_mu);
}

static void ck__init_conds(ck_client *c)
{
    pthread_condattr_t ca;

    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->pool_cv, &ca);
    pthread_cond_init(&c->timer_cv, &ca);
    pthread_condattr_destroy(&ca);
}

static void ck__fork_child(void)
{
    for (ck_client *c = ck__reg_head; c != NULL; c = c->reg_next) {
        c->epoch++;
        while (c->n_idle > 0) {
            ck__conn *cn = c->idle[--c->n_idle];
            cn->next = c->orphans;
            c->orphans = cn;
        }
        /* Lent connections belong to threads that do not exist here (or to
         * the forking thread, which frees its own at put: epoch mismatch). */
        c->lent = NULL;
        c->n_open = 0;
        c->timer_running = 0;
        c->timer_idle = 0;
        c->stopping = 0;
        ck__init_conds(c); /* no thread waits on them in the child */
        if (c->hub != NULL)
            ck__hub_fork_child(c->hub);
        pthread_mutex_unlock(&c->mu);
    }
    pthread_mutex_unlock(&ck__reg_mu);
}

static void ck__install_atfork(void)
{
    pthread_atfork(ck__fork_prepare, ck__fork_parent, ck__fork_child);
}

/* ---- client ---- */

static char *ck__strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);

    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

ck_status ck_client_new(const ck_options *o, ck_client **out)
{
    ck_options defaults;
    const char *why, *url;
    char err[160];
    ck_client *c;
    ck__logger lg;
    ck_status st;

    if (out == NULL)
        return CK_E_INVALID;
    *out = NULL;
    if (o == NULL) {
        ck_options_init(&defaults);
        o = &defaults;
    }
    lg.fn = o->log;
    lg.user = o->log_user;
    lg.level = o->log_level;
    why = ck__check_options(o);
    if (why != NULL) {
        ck__log(&lg, CK_LOG_ERROR, "ck_client_new: %s", why);
        return CK_E_INVALID;
    }
    if (o->url != NULL && o->url[0] == '\0') {
        /* an explicit empty URL is a mistake, not a request for the default */
        ck__log(&lg, CK_LOG_ERROR, "ck_client_new: url is empty (NULL means the default)");
        return CK_E_INVALID;
    }
    url = o->url != NULL ? o->url : getenv("CACHEKIT_REDIS_URL");
    if (url == NULL || url[0] == '\0')
        url = "redis://127.0.0.1:6379/0";

    c = calloc(1, sizeof *c);
    if (c == NULL)
        return CK_E_NOMEM;
    st = ck__url_parse(url, &c->url, err, sizeof err);
    if (st != CK_OK) {
        ck__log(&lg, CK_LOG_ERROR, "ck_client_new: %s", err);
        free(c);
        return st;
    }
    c->opt = *o;
    c->url_copy = ck__strdup(url);
    c->prefix_copy = ck__strdup(o->prefix != NULL ? o->prefix : "ck");
    c->idle = calloc((size_t)o->pool_size, sizeof *c->idle);
    if (c->url_copy == NULL || c->prefix_copy == NULL || c->idle == NULL) {
        ck__url_clear(&c->url);
        free(c->url_copy);
        free(c->prefix_copy);
        free(c->idle);
        free(c);
        return CK_E_NOMEM;
    }
    c->opt.url = c->url_copy;
    c->opt.prefix = c->prefix_copy;
    c->log = lg;
    c->want_info = 1;
    ck__breaker_init(&c->br, o->breaker_failures, o->breaker_cooldown_ms);
    pthread_mutex_init(&c->mu, NULL);
    ck__init_conds(c);
    for (int i = 0; i < CK__ST_COUNT; i++)
        atomic_init(&c->counters[i], 0);

    pthread_once(&ck__atfork_once, ck__install_atfork);
    pthread_mutex_lock(&ck__reg_mu);
    c->reg_next = ck__reg_head;
    if (ck__reg_head != NULL)
        ck__reg_head->reg_prev = c;
    ck__reg_head = c;
    pthread_mutex_unlock(&ck__reg_mu);

    if (c->url.is_unix)
        ck__log(&lg, CK_LOG_INFO, "cachekit client for unix socket (db %d), pool %d", c->url.db,
                o->pool_size);
    else
        ck__log(&lg, CK_LOG_INFO, "cachekit client for %s:%d (db %d), pool %d", c->url.host,
                c->url.port, c->url.db, o->pool_size);
    *out = c;
    return CK_OK;
}

void ck_client_free(ck_client *c)
{
    ck__conn *cn;

    if (c == NULL)
        return;
    pthread_mutex_lock(&ck__reg_mu);
    if (c->reg_prev != NULL)
        c->reg_prev->reg_next = c->reg_next;
    else
        ck__reg_head = c->reg_next;
    if (c->reg_next != NULL)
        c->reg_next->reg_prev = c->reg_prev;
    pthread_mutex_unlock(&ck__reg_mu);

    pthread_mutex_lock(&c->mu);
    c->stopping = 1;
    pthread_cond_broadcast(&c->timer_cv);
    pthread_mutex_unlock(&c->mu);
    if (c->timer_running)
        pthread_join(c->timer, NULL);
    ck__hub_free(c->hub); /* stops the subscriber thread */

    while (c->n_idle > 0)
        ck__conn_free(c->idle[--c->n_idle]);
    while ((cn = c->orphans) != NULL) {
        c->orphans = cn->next;
        ck__conn_free(cn);
    }
    pthread_cond_destroy(&c->pool_cv);
    pthread_cond_destroy(&c->timer_cv);
    pthread_mutex_destroy(&c->mu);
    ck__url_clear(&c->url);
    free(c->idle);
    free(c->url_copy);
    free(c->prefix_copy);
    free(c);
}

/* ---- counters ---- */

void ck__count(ck_client *c, ck__counter which, uint64_t n)
{
    atomic_fetch_add_explicit(&c->counters[which], n, memory_order_relaxed);
}

void ck_client_stats(ck_client *c, ck_stats *out)
{
    uint64_t v[CK__ST_COUNT];

    if (c == NULL || out == NULL)
        return;
    for (int i = 0; i < CK__ST_COUNT; i++)
        v[i] = atomic_load_explicit(&c->counters[i], memory_order_relaxed);
    memset(out, 0, sizeof *out);
    out->hits = v[CK__ST_HITS];
    out->null_hits = v[CK__ST_NULL_HITS];
    out->misses = v[CK__ST_MISSES];
    out->loads = v[CK__ST_LOADS];
    out->load_errors = v[CK__ST_LOAD_ERRORS];
    out->stampede_waits = v[CK__ST_STAMPEDE_WAITS];
    out->stale_served = v[CK__ST_STALE_SERVED];
    out->l1_hits = v[CK__ST_L1_HITS];
    {
        /* L1 answers are counted in the caches' shards (see l1.c) */
        uint64_t h = 0, nh = 0;
        struct ck__hub *hub;
        pthread_mutex_lock(&c->mu);
        hub = c->hub;
        pthread_mutex_unlock(&c->mu);
        ck__hub_hits(hub, &h, &nh);
        out->l1_hits += h + nh;
        out->hits += h;
        out->null_hits += nh;
    }
    out->redis_errors = v[CK__ST_REDIS_ERRORS];
    out->degraded = v[CK__ST_DEGRADED];
    out->breaker_opens = v[CK__ST_BREAKER_OPENS];
    out->lock_acquired = v[CK__ST_LOCK_ACQUIRED];
    out->lock_busy = v[CK__ST_LOCK_BUSY];
    out->lock_lost = v[CK__ST_LOCK_LOST];
    out->rate_allowed = v[CK__ST_RATE_ALLOWED];
    out->rate_denied = v[CK__ST_RATE_DENIED];
    out->pool_waits = v[CK__ST_POOL_WAITS];
}

const ck__logger *ck__client_logger(const ck_client *c)
{
    return &c->log;
}

const ck_options *ck__client_options(const ck_client *c)
{
    return &c->opt;
}

const ck__url *ck__client_url(const ck_client *c)
{
    return &c->url;
}

struct ck__hub *ck__client_hub(ck_client *c)
{
    pthread_mutex_lock(&c->mu);
    if (c->hub == NULL)
        c->hub = ck__hub_new(c);
    struct ck__hub *h = c->hub;
    pthread_mutex_unlock(&c->mu);
    return h;
}

/* ---- leases ---- */

static void ck__abs_timespec(int64_t ns, struct timespec *ts)
{
    ts->tv_sec = (time_t)(ns / 1000000000);
    ts->tv_nsec = (long)(ns % 1000000000);
}

static void ck__free_list(ck__conn *cn)
{
    while (cn != NULL) {
        ck__conn *next = cn->next;
        ck__conn_free(cn);
        cn = next;
    }
}

static void ck__describe_server(const ck_client *c, char *buf, size_t len)
{
    if (c->url.is_unix)
        snprintf(buf, len, "unix socket");
    else
        snprintf(buf, len, "%s:%d", c->url.host, c->url.port);
}

/* The outcome of a failed Redis interaction, for the breaker and the log. */
static void ck__note_failure(ck_client *c, int probe, const char *what)
{
    char where[280];

    ck__count(c, CK__ST_REDIS_ERRORS, 1);
    ck__describe_server(c, where, sizeof where);
    if (ck__breaker_failure(&c->br, probe)) {
        ck__count(c, CK__ST_BREAKER_OPENS, 1);
        ck__log(&c->log, CK_LOG_ERROR,
                "redis %s: %s; circuit breaker open, calls fail fast for ~%d ms", where, what,
                c->opt.breaker_cooldown_ms);
    } else {
        ck__log(&c->log, CK_LOG_WARN, "redis %s: %s", where, what);
    }
}

/* Open a connection for a slot already counted in n_open. */
static ck_status ck__lease_connect(ck_client *c, ck__lease *l)
{
    int64_t deadline = ck__now_ns() + ck__ms_to_ns(c->opt.connect_timeout_ms);
    int want_info, evicting = 0, warn = 0;
    char what[96];
    ck__conn *cn = NULL;
    ck__fail why;
    int sys_err;
    ck_status st;

    pthread_mutex_lock(&c->mu);
    want_info = c->want_info;
    pthread_mutex_unlock(&c->mu);
    st = ck__conn_open(&c->url, deadline, &c->log, &want_info, &evicting, &cn, &why, &sys_err);
    if (st == CK_OK)
        ck__conn_read_timeout(cn, c->opt.command_timeout_ms);
    pthread_mutex_lock(&c->mu);
    if (st != CK_OK) {
        c->n_open--;
        pthread_cond_signal(&c->pool_cv);
    } else {
        cn->epoch = c->epoch;
        if (!want_info && c->want_info) {
            c->want_info = 0;
            warn = evicting && !c->warned_eviction;
            c->warned_eviction |= warn;
        }
    }
    pthread_mutex_unlock(&c->mu);
    if (st != CK_OK) {
        char es[64];

        if (sys_err != 0 && strerror_r(sys_err, es, sizeof es) == 0)
            snprintf(what, sizeof what, "connect: %s", es);
        else
            snprintf(what, sizeof what, "connect: %s", ck__fail_str(why));
        ck__note_failure(c, l->probe, what);
        return st == CK_E_NOMEM ? CK_E_NOMEM : CK_E_UNAVAILABLE;
    }
    if (warn)
        ck__log(&c->log, CK_LOG_WARN,
                "redis maxmemory-policy is not noeviction: lock and rate-limit keys can be "
                "evicted under memory pressure (set maxmemory-policy noeviction)");
    l->cn = cn;
    return CK_OK;
}

ck_status ck__lease_get(ck_client *c, const char *key, ck__lease *l)
{
    return ck__lease_get_for(c, key, CK__CMD_WRITE, l);
}

ck_status ck__lease_get_for(ck_client *c, const char *key, unsigned flags, ck__lease *l)
{
    struct timespec until;
    ck__conn *orphans;

    (void)key; /* the routing hook: a cluster layer picks the node from it */
    memset(l, 0, sizeof *l);
    l->c = c;
    if (!ck__breaker_allow(&c->br, &l->probe))
        return CK_E_UNAVAILABLE; /* no I/O, no log: this is the fast path */
    ck__abs_timespec(ck__now_ns() + ck__ms_to_ns(c->opt.pool_wait_ms), &until);

    pthread_mutex_lock(&c->mu);
    orphans = c->orphans;
    c->orphans = NULL;
    for (;;) {
        if (c->n_idle > 0) {
            ck__conn *cn = c->idle[--c->n_idle];

            pthread_mutex_unlock(&c->mu);
            /* A read on a clean connection goes without the check: if the
             * server closed it, the read fails with no reply byte and is
             * sent again (ck__command, ck__eval), and nothing but EOF can
             * be waiting on it. A write must not find out that way: it may
             * have run. */
            if (ck__conn_reusable(cn, (flags & CK__CMD_WRITE) || !cn->clean)) {
                l->cn = cn;
                l->reused = 1;
                break;
            }
            /* closed by the server (CLIENT KILL, timeout) or stray bytes:
             * replace it; the caller never sees this */
            ck__conn_free(cn);
            pthread_mutex_lock(&c->mu);
            c->n_open--;
            continue;
        }
        if (c->n_open < c->opt.pool_size) {
            ck_status st;

            c->n_open++;
            pthread_mutex_unlock(&c->mu);
            st = ck__lease_connect(c, l);
            if (st != CK_OK) {
                ck__free_list(orphans);
                return st;
            }
            break;
        }
        if (pthread_cond_timedwait(&c->pool_cv, &c->mu, &until) == ETIMEDOUT &&
            c->n_idle == 0 && c->n_open >= c->opt.pool_size) {
            pthread_mutex_unlock(&c->mu);
            ck__free_list(orphans);
            /* Redis is not at fault: do not feed the breaker */
            ck__breaker_abort_probe(&c->br, l->probe);
            ck__count(c, CK__ST_POOL_WAITS, 1);
            ck__log(&c->log, CK_LOG_WARN, "no free redis connection within pool_wait_ms=%d (pool_size %d)",
                    c->opt.pool_wait_ms, c->opt.pool_size);
            return CK_E_UNAVAILABLE;
        }
    }
    ck__free_list(orphans);
    l->deadline_ns = ck__now_ns() + ck__ms_to_ns(c->opt.command_timeout_ms);
    return CK_OK;
}

void ck__lease_put(ck__lease *l)
{
    ck_client *c = l->c;
    ck__conn *cn = l->cn;
    int discard;

    if (cn == NULL)
        return;
    l->cn = NULL;
    /* Outages were reported to the breaker by ck__note_failure; anything
     * else (including a reply too large or unparsable) means Redis answered. */
    if (!l->unavailable && !(l->failed && (l->fail == CK__FAIL_TIMEOUT || l->fail == CK__FAIL_IO)))
        ck__breaker_success(&c->br, l->probe);
    discard = l->failed;
    pthread_mutex_lock(&c->mu);
    if (cn->epoch != c->epoch) { /* lent before a fork: the parent's socket */
        pthread_mutex_unlock(&c->mu);
        ck__conn_free(cn);
        return;
    }
    if (discard)
        c->n_open--;
    else
        c->idle[c->n_idle++] = cn;
    pthread_cond_signal(&c->pool_cv);
    pthread_mutex_unlock(&c->mu);
    if (discard)
        ck__conn_free(cn);
}

ck_status ck__lease_exec(ck__lease *l, int argc, const char **argv, const size_t *argvlen,
                         unsigned flags, redisReply **out, int *ambiguous)
{
    ck_client *c = l->c;
    const char *const *av = argv;
    redisReply *r = NULL;
    ck__io io;

    *out = NULL;
    if (ambiguous != NULL)
        *ambiguous = 0;
    if (l->cn == NULL || l->failed)
        return CK_E_UNAVAILABLE;
    l->fail = ck__conn_pipeline(l->cn, 1, &argc, &av, &argvlen, l->deadline_ns,
                                c->opt.max_reply_bytes, &r, &io);
    l->io = io;
    if (l->fail != CK__FAIL_NONE) {
        char what[96];

        l->failed = 1; /* never reuse: a late reply would answer the next command */
        if (ambiguous != NULL)
            *ambiguous = io.sent;
        snprintf(what, sizeof what, "%.32s: %s", argv[0], ck__fail_str(l->fail));
        switch (l->fail) {
        case CK__FAIL_NOMEM:
            ck__count(c, CK__ST_REDIS_ERRORS, 1);
            return CK_E_NOMEM;
        case CK__FAIL_TOO_LARGE:
        case CK__FAIL_PROTOCOL:
            /* a data problem, not an outage: the breaker is not fed */
            ck__count(c, CK__ST_REDIS_ERRORS, 1);
            ck__log(&c->log, CK_LOG_ERROR, "redis %s (connection closed)", what);
            return CK_E_PROTOCOL;
        default:
            if (l->reused && l->fail == CK__FAIL_IO && io.received == 0) {
                /* A pooled connection the server closed while it sat idle
                 * (CLIENT KILL, timeout, restart) whose FIN the checkout did
                 * not see yet: says nothing about Redis now. The caller
                 * retries or reports it; the breaker hears the next attempt. */
                l->stale = 1;
                ck__breaker_abort_probe(&c->br, l->probe);
                ck__log(&c->log, CK_LOG_INFO, "redis %s on a pooled connection closed by the server",
                        what);
                return CK_E_UNAVAILABLE;
            }
            ck__note_failure(c, l->probe, what);
            return CK_E_UNAVAILABLE;
        }
    }
    l->cn->clean = 1; /* the whole reply was read */
    if (r->type == REDIS_REPLY_ERROR) {
        ck__errclass cls = ck__classify_error(r->str, r->len, (flags & CK__CMD_WRITE) != 0);

        if (cls == CK__ERR_UNAVAILABLE) {
            char e[64], what[112];

            ck__log_sanitize(e, sizeof e, r->str, r->len);
            snprintf(what, sizeof what, "%.32s: %s", argv[0], e);
            freeReplyObject(r);
            l->unavailable = 1;
            ck__note_failure(c, l->probe, what);
            return CK_E_UNAVAILABLE;
        }
        if (cls != CK__ERR_NOSCRIPT)
            ck__count(c, CK__ST_REDIS_ERRORS, 1);
    }
    *out = r;
    return CK_OK;
}

ck_status ck__lease_run(ck_client *c, const char *key, int argc, const char **argv,
                        const size_t *argvlen, unsigned flags, ck__lease *l, redisReply **out,
                        int *ambiguous)
{
    for (int attempt = 0;; attempt++) {
        /* the second attempt checks every idle connection: the first found
         * one closed, and the others were likely closed with it */
        ck_status st = ck__lease_get_for(c, key, attempt == 0 ? flags : CK__CMD_WRITE, l);

        if (st != CK_OK) {
            *out = NULL;
            if (ambiguous != NULL)
                *ambiguous = 0;
            return st;
        }
        st = ck__lease_exec(l, argc, argv, argvlen, flags, out, ambiguous);
        /* A pooled connection that died while idle (its FIN not yet seen at
         * checkout) fails at once with no reply byte: an idempotent command
         * is safe to send once more on a fresh connection; a write may have
         * run, so it is reported. */
        if (st == CK_E_UNAVAILABLE && l->stale) {
            if (attempt == 0 && !(flags & CK__CMD_WRITE)) {
                ck__lease_put(l);
                continue;
            }
            ck__count(c, CK__ST_REDIS_ERRORS, 1);
        }
        return st;
    }
}

ck_status ck__command(ck_client *c, const char *key, int argc, const char **argv,
                      const size_t *argvlen, unsigned flags, redisReply **out, int *ambiguous)
{
    ck__lease l;
    ck_status st = ck__lease_run(c, key, argc, argv, argvlen, flags, &l, out, ambiguous);

    ck__lease_put(&l);
    return st;
}

/* ---- the deadline timer for ck_client_run ----
 * A lent context is in blocking mode and hiredis's own calls do the I/O, so
 * poll() cannot bound them; instead one thread per client shuts the socket
 * down when a lent connection's deadline passes, and the pending read
 * returns. The thread sleeps until the earliest armed deadline. */

static void *ck__timer_main(void *arg)
{
    ck_client *c = arg;

    pthread_mutex_lock(&c->mu);
    while (!c->stopping) {
        int64_t now = ck__now_ns(), earliest = INT64_MAX;

        for (ck__conn *cn = c->lent; cn != NULL; cn = cn->next) {
            if (cn->fired)
                continue;
            if (cn->deadline_ns <= now) {
                shutdown(cn->ctx->fd, SHUT_RDWR);
                cn->fired = 1;
            } else if (cn->deadline_ns < earliest) {
                earliest = cn->deadline_ns;
            }
        }
        if (earliest == INT64_MAX) {
            c->timer_idle = 1;
            c->timer_wake_ns = INT64_MAX;
            pthread_cond_wait(&c->timer_cv, &c->mu);
            c->timer_idle = 0;
        } else {
            struct timespec ts;

            c->timer_wake_ns = earliest;
            ck__abs_timespec(earliest, &ts);
            pthread_cond_timedwait(&c->timer_cv, &c->mu, &ts);
        }
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

static ck_status ck__arm(ck_client *c, ck__conn *cn, int64_t deadline_ns)
{
    ck_status st = CK_OK;

    pthread_mutex_lock(&c->mu);
    cn->deadline_ns = deadline_ns;
    cn->fired = 0;
    cn->prev = NULL;
    cn->next = c->lent;
    if (c->lent != NULL)
        c->lent->prev = cn;
    c->lent = cn;
    if (!c->timer_running) {
        c->timer_wake_ns = INT64_MAX;
        if (pthread_create(&c->timer, NULL, ck__timer_main, c) == 0)
            c->timer_running = 1;
        else
            st = CK_E_NOMEM;
    } else if (deadline_ns < c->timer_wake_ns) {
        pthread_cond_signal(&c->timer_cv);
    }
    if (st != CK_OK) { /* unlink again: nothing would enforce the deadline */
        c->lent = cn->next;
        if (c->lent != NULL)
            c->lent->prev = NULL;
    }
    pthread_mutex_unlock(&c->mu);
    return st;
}

static int ck__disarm(ck_client *c, ck__conn *cn)
{
    int fired;

    pthread_mutex_lock(&c->mu);
    fired = cn->fired;
    if (cn->epoch == c->epoch) { /* after a fork in fn the list was reset */
        if (cn->prev != NULL)
            cn->prev->next = cn->next;
        else
            c->lent = cn->next;
        if (cn->next != NULL)
            cn->next->prev = cn->prev;
    }
    cn->prev = cn->next = NULL;
    pthread_mutex_unlock(&c->mu);
    return fired;
}

ck_status ck_client_run(ck_client *c, ck_redis_fn fn, void *user)
{
    sigset_t pipe_set, old_set;
    struct sigaction sa;
    redisContext *ctx;
    ck__lease l;
    ck_status st;
    int fired, mask_pipe;

    if (c == NULL || fn == NULL)
        return CK_E_INVALID;
    st = ck__lease_get(c, NULL, &l);
    if (st == CK_OK)
        st = ck__arm(c, l.cn, l.deadline_ns);
    if (st != CK_OK) {
        if (l.cn != NULL) {
            l.failed = 1;
            ck__lease_put(&l);
        }
        ck__count(c, CK__ST_DEGRADED, 1);
        return st == CK_E_NOMEM ? CK_E_NOMEM : CK_E_UNAVAILABLE;
    }
    ctx = l.cn->ctx;
    l.cn->guard.max_bytes = c->opt.max_reply_bytes;
    l.cn->clean = 0; /* the host's commands: it may leave a reply in flight */

    /* A write to a connection the server closed raises SIGPIPE. Unless the
     * process ignores it already (most servers do; then asking is one
     * syscall instead of two), block it in this thread while fn runs and
     * take back a SIGPIPE that fn's writes caused. */
    mask_pipe = !(sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_IGN);
    if (mask_pipe) {
        sigemptyset(&pipe_set);
        sigaddset(&pipe_set, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
    }
    st = fn(ctx, user);
    if (mask_pipe) {
        if (ctx->err != 0 && !sigismember(&old_set, SIGPIPE)) {
            sigset_t pending;
            struct timespec zero = {0, 0};

            if (sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE))
                sigtimedwait(&pipe_set, NULL, &zero);
        }
        pthread_sigmask(SIG_SETMASK, &old_set, NULL);
    }

    fired = ck__disarm(c, l.cn);
    if (fired || ctx->err != 0) {
        char what[96];

        l.failed = 1;
        l.fail = fired ? CK__FAIL_TIMEOUT : CK__FAIL_IO;
        snprintf(what, sizeof what, "ck_client_run: %s",
                 fired ? "deadline passed, connection shut down" : "connection failed");
        ck__note_failure(c, l.probe, what);
        ck__count(c, CK__ST_DEGRADED, 1);
        st = CK_E_UNAVAILABLE;
    } else if (sdslen(ctx->obuf) > 0 || ctx->reader->pos < ctx->reader->len) {
        /* fn left a command unsent or a reply unread: the connection is
         * out of step, so it is not reused (fn's status stands) */
        l.failed = 1;
        l.fail = CK__FAIL_PROTOCOL;
        ck__log(&c->log, CK_LOG_WARN, "ck_client_run: fn left unread replies; connection discarded");
    }
    ck__lease_put(&l);
    return st;
}

ck_status ck_client_ping(ck_client *c)
{
    static const char *const argv[] = {"PING"};
    static const size_t lens[] = {4};
    redisReply *r;
    ck_status st;

    if (c == NULL)
        return CK_E_INVALID;
    st = ck__command(c, NULL, 1, (const char **)argv, lens, 0, &r, NULL);
    if (st != CK_OK) {
        if (st == CK_E_UNAVAILABLE)
            ck__count(c, CK__ST_DEGRADED, 1);
        return st;
    }
    if (r->type == REDIS_REPLY_ERROR) { /* e.g. NOPERM: say why, as the other calls do */
        char e[96];
        ck__log_sanitize(e, sizeof e, r->str, r->len);
        ck__log(ck__client_logger(c), CK_LOG_ERROR, "ck_client_ping: redis error: %s", e);
    }
    if (r->type != REDIS_REPLY_STATUS || r->len != 4 || memcmp(r->str, "PONG", 4) != 0)
        st = CK_E_PROTOCOL;
    freeReplyObject(r);
    return st;
}
