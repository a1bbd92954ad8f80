/* libcachekit soak: N seconds (argv[1], default 60) of 16 threads mixing
 * cache gets with loaders, lock cycles and rate checks against a private
 * redis-server, while the main thread (the nemesis) cycles through faults:
 * CLIENT KILL of the library's connections, SCRIPT FLUSH, DEBUG SLEEP 0.3,
 * SIGSTOP/SIGCONT, a restart on the same port, CLIENT PAUSE 300 WRITE and
 * maxmemory pressure with allkeys-lru.
 *
 * Checkers (each counts violations; any violation exits 1):
 *   double grant  two lock handles of one name both ck_lock_valid() at one
 *                 instant, with no state-losing fault (restart, eviction)
 *                 since the older one was acquired
 *   fence order   a grant whose acquire was sent after another grant of the
 *                 same name returned carries a fence <= that grant's, or
 *                 two grants share a fence (restarts included: promised)
 *   stale write   a fenced resource rejects the write of a holder that is
 *                 still valid with no state-losing fault since its acquire
 *   rate          more admissions than the limit inside one fixed window, or
 *                 inside a span shorter than a sliding log's window (counted
 *                 from the client's send/receive times, so only admissions
 *                 surely inside the window; windows that saw a restart or
 *                 eviction are excused: Redis lost their counts). Fail-closed
 *                 client: all admissions; fail-open client: non-degraded ones
 *   wrong key     a cache answer whose value does not encode the key, scope
 *                 and cache it was asked for, or a value for an absent key
 *   deadline      a call slower than its documented bound + slack
 *   status        a status the documentation does not allow for that call
 *   fds / rss     fd count after freeing the clients differs from before
 *                 creating them; RSS grew more than SOAK_RSS_SLACK_KB after
 *                 the warm-up (not checked under ASan: its quarantine grows)
 *
 * Environment: SOAK_THREADS (16), SOAK_SLACK_MS (50), SOAK_RSS_SLACK_KB
 * (16384), SOAK_SANITIZE=1 (ASan build: larger slack, no RSS check),
 * SOAK_VERBOSE=1 (log every nemesis action), SOAK_NEMESIS=0 (no faults),
 * SOAK_NO_EXCUSE=1 (restarts and evictions excuse nothing: the checkers must
 * then report the documented losses, a test of the checkers themselves). Never uses port 6379. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "cachekit.h"
#include "../ckt_spawn.h"

/* ---------------------------------------------------------------- time */

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Wall clock, as Redis TIME reads it (same host). */
static int64_t real_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static int env_int(const char *name, int dflt)
{
    const char *v = getenv(name);
    return v != NULL && *v != '\0' ? atoi(v) : dflt;
}

/* ---------------------------------------------------------------- settings */

#define CONNECT_MS 200
#define COMMAND_MS 100
#define POOL_WAIT_MS 50
#define CALL_MS (CONNECT_MS + COMMAND_MS + POOL_WAIT_MS)
#define POOL_SIZE 8
#define BREAKER_COOLDOWN_MS 250
#define QUIET_MS 1500
#define LOCK_TTL_MS 1000
#define LOCK_WAIT_MS 200
#define WITH_LOCK_TTL_MS 600
#define STAMPEDE_WAIT_MS 200
#define LOADER_MAX_MS 5
#define N_KEYS 400
#define N_LOCKS 5
#define MAX_THREADS 64

static int g_verbose;
static int g_sanitize;
static int g_slack_us;
static int g_nemesis = 1;
static int g_no_excuse; /* SOAK_NO_EXCUSE=1: restarts and evictions excuse nothing (a
                           self-test of the checkers: they must then find violations) */

/* ---------------------------------------------------------------- violations */

enum {
    V_DOUBLE_GRANT, V_FENCE_ORDER, V_STALE_WRITE, V_RATE, V_WRONG_KEY, V_DEADLINE,
    V_STATUS, V_FDS, V_RSS, V__N
};
static const char *const v_names[V__N] = {
    "lock double grant", "fence order", "stale fenced write", "rate over limit",
    "wrong key / value", "deadline", "unexpected status", "fd growth", "rss growth"
};
static atomic_ulong g_viol[V__N];
static pthread_mutex_t g_print_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_printed[V__N];

static void violation(int kind, const char *fmt, ...)
{
    va_list ap;
    atomic_fetch_add(&g_viol[kind], 1);
    pthread_mutex_lock(&g_print_mu);
    if (g_printed[kind]++ < 12) { /* the first 12 of each checker */
        fprintf(stderr, "VIOLATION [%s] ", v_names[kind]);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
    }
    pthread_mutex_unlock(&g_print_mu);
}

static void note(const char *fmt, ...)
{
    va_list ap;
    if (!g_verbose)
        return;
    pthread_mutex_lock(&g_print_mu);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    pthread_mutex_unlock(&g_print_mu);
}

/* ---------------------------------------------------------------- per-kind figures */

enum {
    K_CACHE_GET, K_CACHE_SET, K_CACHE_INV, K_LOCK_ACQ, K_LOCK_REL, K_WITH_LOCK,
    K_RATE_CLOSED, K_RATE_OPEN, K__N
};
static const char *const k_names[K__N] = {
    "cache_get", "cache_set", "cache_invalidate", "lock_acquire", "lock_release",
    "with_lock", "rate_check (closed)", "rate_check (open)"
};
typedef struct kind_stats {
    atomic_ulong ops, ok, degraded, failed; /* failed: CK_E_UNAVAILABLE and other errors */
    atomic_llong max_us, max_net_us; /* net: minus the thread's run-queue wait */
    atomic_ulong sched_excused;      /* over the bound only by run-queue wait */
    int64_t bound_us;
} kind_stats;
static kind_stats g_k[K__N];

/* The calling thread's time spent runnable but not running (on a run queue),
 * from /proc/thread-self/schedstat: a deadline the library kept but the
 * scheduler did not let the thread notice is not the library's fault. */
static _Thread_local int t_sched_fd = -1;
static _Thread_local int64_t t_rq0;

static int64_t run_delay_us(void)
{
    char buf[128];
    unsigned long long run, wait;
    ssize_t n;
    if (t_sched_fd == -2)
        return 0;
    if (t_sched_fd < 0 && (t_sched_fd = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC)) < 0) {
        t_sched_fd = -2;
        return 0;
    }
    n = pread(t_sched_fd, buf, sizeof buf - 1, 0);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    return sscanf(buf, "%llu %llu", &run, &wait) == 2 ? (int64_t)(wait / 1000) : 0;
}

static void run_delay_close(void)
{
    if (t_sched_fd >= 0)
        close(t_sched_fd);
    t_sched_fd = -1;
}

static int64_t op_start(void)
{
    t_rq0 = run_delay_us();
    return mono_us();
}

/* Host stalls: a thread that sleeps 2 ms at a time and records every wake-up
 * more than 10 ms late. It calls nothing of the library, so such a gap is
 * time the host did not run the process (CPU steal on a VM, a starved run
 * queue); a call that overlaps it is not late by the library's doing. */
#define STALL_RING 8192
static struct { int64_t from, to; } g_stall[STALL_RING];
static unsigned g_nstall; /* total recorded; the ring keeps the last STALL_RING */
static int64_t g_stall_max_us;
static pthread_mutex_t g_stall_mu = PTHREAD_MUTEX_INITIALIZER;
static atomic_int g_stall_stop;

static void *stall_watch(void *arg)
{
    (void)arg;
    while (!atomic_load(&g_stall_stop)) {
        int64_t t = mono_us();
        sleep_ms(2);
        int64_t late = mono_us() - t - 2000;
        if (late > 10000) {
            pthread_mutex_lock(&g_stall_mu);
            g_stall[g_nstall % STALL_RING].from = t + 2000;
            g_stall[g_nstall % STALL_RING].to = t + 2000 + late;
            g_nstall++;
            if (late > g_stall_max_us)
                g_stall_max_us = late;
            pthread_mutex_unlock(&g_stall_mu);
        }
    }
    return NULL;
}

/* Time in [from, to] during which the watcher saw the host stalled. */
static int64_t stalled_during(int64_t from, int64_t to)
{
    int64_t sum = 0;
    pthread_mutex_lock(&g_stall_mu);
    unsigned n = g_nstall < STALL_RING ? g_nstall : STALL_RING;
    for (unsigned i = 0; i < n; i++) {
        int64_t a = g_stall[i].from > from ? g_stall[i].from : from;
        int64_t b = g_stall[i].to < to ? g_stall[i].to : to;
        if (b > a)
            sum += b - a;
    }
    pthread_mutex_unlock(&g_stall_mu);
    return sum;
}

static atomic_int g_nem_now = -1;
static int64_t g_start_us;
static const char *nem_name(int a);

static void record(int k, int64_t us, int ok, int degraded, int failed, const char *what)
{
    kind_stats *s = &g_k[k];
    int64_t rq = run_delay_us() - t_rq0, net = us - rq;
    long long cur = atomic_load(&s->max_us), curn = atomic_load(&s->max_net_us);
    if (rq < 0)
        rq = 0, net = us;
    atomic_fetch_add(&s->ops, 1);
    if (ok)
        atomic_fetch_add(&s->ok, 1);
    if (degraded)
        atomic_fetch_add(&s->degraded, 1);
    if (failed)
        atomic_fetch_add(&s->failed, 1);
    while (us > cur && !atomic_compare_exchange_weak(&s->max_us, &cur, us))
        ;
    if (us > s->bound_us / 2) {
        /* only slow calls pay for the stall watcher's view; the larger of the
         * two counts (they overlap) */
        int64_t now = mono_us(), st = stalled_during(now - us, now);
        if (st > rq)
            rq = st, net = us - st;
    }
    while (net > curn && !atomic_compare_exchange_weak(&s->max_net_us, &curn, net))
        ;
    if (us > s->bound_us + g_slack_us) {
        int a = atomic_load(&g_nem_now);
        if (net <= s->bound_us + g_slack_us)
            atomic_fetch_add(&s->sched_excused, 1);
        else
            violation(V_DEADLINE, "%s took %" PRId64 " ms (%" PRId64
                      " ms of it not run by the host) > bound %" PRId64 " ms + slack %d ms (%s; at %.1f s, nemesis: %s)", k_names[k],
                      us / 1000, rq / 1000, s->bound_us / 1000, g_slack_us / 1000, what,
                      (double)(mono_us() - g_start_us) / 1e6, a >= 0 ? nem_name(a) : "quiet");
    }
}

/* ---------------------------------------------------------------- state loss
 * A restart without persistence or an eviction forgets locks and counts:
 * documented. The lock checkers compare "loss epochs" (odd while maxmemory
 * pressure is on, +2 per restart); the rate checker excuses windows that
 * meet a loss interval (wall clock). */
static atomic_uint g_epoch;
#define MAX_LOSS 4096
static struct { int64_t from, to; } g_loss[MAX_LOSS];
static int g_nloss;
static pthread_mutex_t g_loss_mu = PTHREAD_MUTEX_INITIALIZER;

static int loss_begin(void)
{
    pthread_mutex_lock(&g_loss_mu);
    int i = g_nloss < MAX_LOSS ? g_nloss++ : MAX_LOSS - 1;
    g_loss[i].from = real_us();
    g_loss[i].to = INT64_MAX;
    pthread_mutex_unlock(&g_loss_mu);
    return i;
}
static void loss_end(int i)
{
    pthread_mutex_lock(&g_loss_mu);
    g_loss[i].to = real_us();
    pthread_mutex_unlock(&g_loss_mu);
}
/* Did any loss interval meet [from, to]? (margin: 50 ms each side) */
static int loss_during(int64_t from, int64_t to)
{
    int hit = 0;
    if (g_no_excuse)
        return 0;
    pthread_mutex_lock(&g_loss_mu);
    for (int i = 0; i < g_nloss && !hit; i++)
        if (g_loss[i].from - 50000 <= to && g_loss[i].to + 50000 >= from)
            hit = 1;
    pthread_mutex_unlock(&g_loss_mu);
    return hit;
}

/* ---------------------------------------------------------------- redis-server */

static struct {
    pid_t pid;
    int port;
    char dir[96];
    char url[64];
} g_srv;

/* One admin command on a fresh connection (2 s); the reply or NULL. */
static redisReply *admin(const char *const *argv)
{
    return ckt_cmd_port(g_srv.port, argv);
}

static int admin_ok(const char *const *argv)
{
    redisReply *r = admin(argv);
    int ok = r != NULL && r->type != REDIS_REPLY_ERROR;
    if (!ok)
        fprintf(stderr, "soak: admin %s %s failed: %s\n", argv[0], argv[1] ? argv[1] : "",
                r != NULL ? r->str : "no answer");
    if (r != NULL)
        freeReplyObject(r);
    return ok;
}

/* Start redis-server on g_srv.port; 0 when it answers PING. Called from the
 * main thread only: PR_SET_PDEATHSIG follows the thread that forked, and the
 * main thread lives as long as the process. */
static int srv_spawn(void)
{
    char portbuf[16];
    const char *argv[] = {
        "redis-server", "--port", portbuf, "--bind", "127.0.0.1", "--save", "",
        "--appendonly", "no", "--dir", g_srv.dir, "--logfile", "redis.log",
        "--daemonize", "no", "--enable-debug-command", "yes", "--maxclients", "1000", NULL
    };
    snprintf(portbuf, sizeof portbuf, "%d", g_srv.port);
    g_srv.pid = ckt_spawn_redis(argv);
    if (g_srv.pid < 0 || ckt_await_redis(g_srv.pid, g_srv.port) != 0) {
        g_srv.pid = 0;
        return -1;
    }
    return 0;
}

static void srv_kill(void)
{
    if (g_srv.pid > 0) {
        kill(g_srv.pid, SIGKILL);
        waitpid(g_srv.pid, NULL, 0);
        g_srv.pid = 0;
    }
}

static void srv_cleanup(void)
{
    char path[160];
    if (g_srv.dir[0] == '\0')
        return;
    if (g_srv.pid > 0)
        kill(g_srv.pid, SIGCONT);
    srv_kill();
    snprintf(path, sizeof path, "%s/redis.log", g_srv.dir);
    unlink(path);
    rmdir(g_srv.dir);
    g_srv.dir[0] = '\0';
}

static void on_signal(int sig)
{
    /* async-signal-safe: kill the server (it is also PR_SET_PDEATHSIG'd) */
    if (g_srv.pid > 0) {
        kill(g_srv.pid, SIGKILL);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static int srv_start(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(g_srv.dir, sizeof g_srv.dir, "%s/ckt-redis.XXXXXX",
             tmp != NULL && *tmp != '\0' && strlen(tmp) < 60 ? tmp : "/tmp");
    if (mkdtemp(g_srv.dir) == NULL) {
        g_srv.dir[0] = '\0';
        return -1;
    }
    atexit(srv_cleanup);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    for (int attempt = 0; attempt < 5; attempt++) {
        do
            g_srv.port = ckt_free_port();
        while (g_srv.port == 6379 || g_srv.port == 0);
        if (srv_spawn() == 0) {
            snprintf(g_srv.url, sizeof g_srv.url, "redis://127.0.0.1:%d", g_srv.port);
            return 0;
        }
    }
    return -1;
}

static int srv_restart(void)
{
    srv_kill();
    for (int i = 0; i < 100; i++) {
        if (srv_spawn() == 0)
            return 0;
        sleep_ms(20);
    }
    return -1;
}

/* CLIENT KILL every client named ck:*; returns how many. */
static int kill_library_clients(void)
{
    static const char *const list[] = { "CLIENT", "LIST", NULL };
    redisReply *rep = admin(list);
    int n = 0;
    if (rep == NULL || rep->type != REDIS_REPLY_STRING) {
        if (rep != NULL)
            freeReplyObject(rep);
        return -1;
    }
    for (char *line = rep->str; line != NULL && *line != '\0';) {
        char *eol = strchr(line, '\n');
        char *name = strstr(line, " name=");
        if (eol != NULL)
            *eol = '\0';
        if (name != NULL && strncmp(name + 6, "ck:", 3) == 0) {
            char id[32];
            const char *k[] = { "CLIENT", "KILL", "ID", id, NULL };
            snprintf(id, sizeof id, "%lld", strtoll(line + 3, NULL, 10));
            redisReply *kr = admin(k);
            if (kr != NULL) {
                if (kr->type == REDIS_REPLY_INTEGER || kr->type == REDIS_REPLY_STATUS)
                    n++;
                freeReplyObject(kr);
            }
        }
        line = eol != NULL ? eol + 1 : NULL;
    }
    freeReplyObject(rep);
    return n;
}

static long long info_field(const char *section, const char *field)
{
    const char *argv[] = { "INFO", section, NULL };
    redisReply *r = admin(argv);
    long long v = -1;
    if (r != NULL && r->type == REDIS_REPLY_STRING) {
        char pat[64];
        snprintf(pat, sizeof pat, "\n%s:", field);
        char *p = strstr(r->str, pat);
        if (p != NULL)
            v = strtoll(p + strlen(pat), NULL, 10);
    }
    if (r != NULL)
        freeReplyObject(r);
    return v;
}

/* ---------------------------------------------------------------- process */

static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    if (d == NULL)
        return -1;
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    return n - 3;
}

static long rss_kb(void)
{
    long pages = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL)
        return -1;
    if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
        rss = -1;
    fclose(f);
    return rss < 0 ? -1 : rss * (sysconf(_SC_PAGESIZE) / 1024);
}

/* ---------------------------------------------------------------- log */

static atomic_ulong g_log_count[4];
static char g_log_last_error[256];
static pthread_mutex_t g_log_mu = PTHREAD_MUTEX_INITIALIZER;

static void log_fn(void *user, int level, const char *msg)
{
    (void)user;
    if (level >= 0 && level < 4)
        atomic_fetch_add(&g_log_count[level], 1);
    if (level == CK_LOG_ERROR) {
        pthread_mutex_lock(&g_log_mu);
        snprintf(g_log_last_error, sizeof g_log_last_error, "%s", msg);
        pthread_mutex_unlock(&g_log_mu);
    }
    note("log L%d %s", level, msg);
}

/* ---------------------------------------------------------------- the cache workload */

static ck_client *g_open;   /* CK_FAIL_OPEN: cache, locks, "open" rate keys */
static ck_client *g_closed; /* CK_FAIL_CLOSED: "closed" rate keys */
#define N_CACHES 2
static ck_cache *g_cache[N_CACHES];
static const char *const g_cache_name[N_CACHES] = { "soak", "soakl1" };
static const char *const g_scopes[] = { "a", "b", NULL };
static atomic_int g_stop;

static int is_null_key(int i) { return i % 7 == 0; }

typedef struct load_ctx {
    const char *cache, *scope, *key;
    unsigned *seed;
} load_ctx;

static json_t *make_value(const char *cache, const char *scope, const char *key)
{
    return json_pack("{s:s, s:s, s:s}", "c", cache, "s", scope != NULL ? scope : "any", "k", key);
}

static ck_status loader(void *user, const char *key, json_t **out)
{
    load_ctx *lc = user;
    if (strcmp(key, lc->key) != 0)
        violation(V_WRONG_KEY, "loader called for '%s', the get was for '%s'", key, lc->key);
    if (rand_r(lc->seed) % 10 == 0)
        sleep_ms(1 + (int)(rand_r(lc->seed) % LOADER_MAX_MS));
    if (is_null_key(atoi(key + 1)))
        return CK_NOT_FOUND;
    *out = make_value(lc->cache, lc->scope, key);
    return *out != NULL ? CK_OK : CK_E_NOMEM;
}

static int value_matches(const json_t *v, const char *cache, const char *scope, const char *key)
{
    const char *c = json_string_value(json_object_get(v, "c"));
    const char *s = json_string_value(json_object_get(v, "s"));
    const char *k = json_string_value(json_object_get(v, "k"));
    return c != NULL && s != NULL && k != NULL && strcmp(c, cache) == 0 &&
           strcmp(s, scope != NULL ? scope : "any") == 0 && strcmp(k, key) == 0;
}

static void cache_op(unsigned *seed)
{
    int ci = (int)(rand_r(seed) % N_CACHES);
    int ki = (int)(rand_r(seed) % N_KEYS);
    const char *scope = g_scopes[rand_r(seed) % 3];
    const char *cname = g_cache_name[ci];
    char key[16];
    unsigned r = rand_r(seed) % 100;
    int64_t t0;
    ck_status st;
    snprintf(key, sizeof key, "k%d", ki);

    if (r < 4) { /* write the key's own value (or its absence) */
        json_t *v = is_null_key(ki) ? NULL : make_value(cname, scope, key);
        const char *tags[] = { "soak-tag", NULL };
        t0 = op_start();
        st = ck_cache_set(g_cache[ci], scope, key, v, tags);
        record(K_CACHE_SET, mono_us() - t0, st == CK_OK, 0, st != CK_OK, key);
        if (st != CK_OK && st != CK_E_UNAVAILABLE)
            violation(V_STATUS, "ck_cache_set: %s", ck_strerror(st));
        json_decref(v);
        return;
    }
    if (r < 6) {
        t0 = op_start();
        st = ck_cache_invalidate(g_cache[ci], rand_r(seed) % 2 ? scope : NULL, key);
        record(K_CACHE_INV, mono_us() - t0, st == CK_OK, 0, st != CK_OK, key);
        if (st != CK_OK && st != CK_E_UNAVAILABLE)
            violation(V_STATUS, "ck_cache_invalidate: %s", ck_strerror(st));
        return;
    }
    load_ctx lc = { cname, scope, key, seed };
    json_t *out = NULL;
    ck_get_info info;
    memset(&info, 0, sizeof info);
    t0 = op_start();
    st = ck_cache_get(g_cache[ci], scope, key, loader, &lc, &out, &info);
    record(K_CACHE_GET, mono_us() - t0, st == CK_OK || st == CK_NOT_FOUND, info.degraded,
           !(st == CK_OK || st == CK_NOT_FOUND), key);
    if (st == CK_OK) {
        if (is_null_key(ki))
            violation(V_WRONG_KEY, "%s %s/%s: a value for an absent key (source %d)", cname,
                      scope ? scope : "any", key, (int)info.source);
        else if (out == NULL || !value_matches(out, cname, scope, key)) {
            char *dump = out != NULL ? json_dumps(out, JSON_COMPACT) : NULL;
            violation(V_WRONG_KEY, "%s %s/%s answered %s (source %d)", cname,
                      scope ? scope : "any", key, dump ? dump : "NULL", (int)info.source);
            free(dump);
        }
    } else if (st == CK_NOT_FOUND) {
        if (!is_null_key(ki))
            violation(V_WRONG_KEY, "%s %s/%s: CK_NOT_FOUND for a present key (source %d)", cname,
                      scope ? scope : "any", key, (int)info.source);
    } else {
        /* fail-open with a loader that never fails: only OK or NOT_FOUND */
        violation(V_STATUS, "ck_cache_get %s/%s: %s (degraded %d)", scope ? scope : "any", key,
                  ck_strerror(st), info.degraded);
    }
    json_decref(out);
}

/* ---------------------------------------------------------------- the lock workload */

#define RING 256
typedef struct occupant {
    const ck_lock *l;
    unsigned epoch;
    int used;
} occupant;
typedef struct lock_state {
    pthread_mutex_t mu;
    char name[32];
    occupant occ[MAX_THREADS];
    struct { uint64_t fence; int64_t returned_us; } ring[RING];
    int ring_n, ring_i;
    uint64_t resource; /* highest fence the protected "storage" accepted */
    unsigned long accepted, rejected, skipped;
} lock_state;
static lock_state g_locks[N_LOCKS];

static int epoch_ok(unsigned e, unsigned now)
{
    return g_no_excuse || (e == now && (e % 2) == 0);
}

/* A grant: check the fence against the grants that returned before this
 * acquire was sent, then the overlap with current holders. Returns the slot. */
static int lock_enter(lock_state *s, const ck_lock *l, unsigned epoch, int64_t sent_us)
{
    uint64_t fence = ck_lock_fence(l);
    int slot = -1;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->ring_n; i++) {
        if (s->ring[i].fence == fence)
            violation(V_FENCE_ORDER, "%s: fence %" PRIu64 " handed out twice", s->name, fence);
        else if (s->ring[i].returned_us < sent_us && s->ring[i].fence > fence)
            violation(V_FENCE_ORDER, "%s: fence %" PRIu64 " granted after fence %" PRIu64,
                      s->name, fence, s->ring[i].fence);
    }
    s->ring[s->ring_i].fence = fence;
    s->ring[s->ring_i].returned_us = mono_us();
    s->ring_i = (s->ring_i + 1) % RING;
    if (s->ring_n < RING)
        s->ring_n++;

    unsigned now = atomic_load(&g_epoch);
    for (int i = 0; i < MAX_THREADS; i++) {
        occupant *o = &s->occ[i];
        if (!o->used) {
            if (slot < 0)
                slot = i;
            continue;
        }
        if (ck_lock_valid(o->l) && ck_lock_valid(l) && epoch_ok(o->epoch, now) &&
            epoch_ok(epoch, now))
            violation(V_DOUBLE_GRANT, "%s: fence %" PRIu64 " granted while fence %" PRIu64
                      " is still valid", s->name, fence, ck_lock_fence(o->l));
    }
    s->occ[slot].l = l;
    s->occ[slot].epoch = epoch;
    s->occ[slot].used = 1;

    /* the fenced write, as a correct host does it: only while valid */
    if (!ck_lock_valid(l)) {
        s->skipped++;
    } else if (fence < s->resource) {
        s->rejected++;
        if (epoch_ok(epoch, atomic_load(&g_epoch)))
            violation(V_STALE_WRITE, "%s: valid holder's fence %" PRIu64 " < stored %" PRIu64,
                      s->name, fence, s->resource);
    } else {
        s->resource = fence;
        s->accepted++;
    }
    pthread_mutex_unlock(&s->mu);
    return slot;
}

static void lock_leave(lock_state *s, int slot)
{
    pthread_mutex_lock(&s->mu);
    s->occ[slot].used = 0;
    s->occ[slot].l = NULL;
    pthread_mutex_unlock(&s->mu);
}

typedef struct with_ctx {
    lock_state *s;
    unsigned epoch;
    int64_t sent_us, fn_us;
    int hold_ms;
} with_ctx;

static ck_status with_fn(void *user, const ck_lock *l)
{
    with_ctx *w = user;
    int64_t t0 = mono_us();
    int slot = lock_enter(w->s, l, w->epoch, w->sent_us);
    if (w->hold_ms > 0)
        sleep_ms(w->hold_ms);
    lock_leave(w->s, slot);
    w->fn_us = mono_us() - t0;
    return CK_OK;
}

static void lock_op(unsigned *seed)
{
    lock_state *s = &g_locks[rand_r(seed) % N_LOCKS];
    unsigned epoch = atomic_load(&g_epoch);
    int64_t t0 = op_start();
    ck_status st;
    if (rand_r(seed) % 2) {
        ck_lock *l = NULL;
        st = ck_lock_acquire(g_open, s->name, LOCK_TTL_MS, LOCK_WAIT_MS, &l);
        record(K_LOCK_ACQ, mono_us() - t0, st == CK_OK, 0,
               st != CK_OK && st != CK_BUSY, s->name);
        if (st != CK_OK) {
            if (st != CK_BUSY && st != CK_E_UNAVAILABLE)
                violation(V_STATUS, "ck_lock_acquire %s: %s", s->name, ck_strerror(st));
            if (l != NULL)
                violation(V_STATUS, "ck_lock_acquire %s: %s with a lock", s->name, ck_strerror(st));
            return;
        }
        int slot = lock_enter(s, l, epoch, t0);
        int hold = rand_r(seed) % 40 == 0 ? 20 + (int)(rand_r(seed) % 30) : (int)(rand_r(seed) % 3);
        if (hold > 0)
            sleep_ms(hold);
        lock_leave(s, slot);
        t0 = op_start();
        st = ck_lock_release(l);
        record(K_LOCK_REL, mono_us() - t0, st == CK_OK, 0, st != CK_OK, s->name);
        if (st != CK_OK && st != CK_E_LOCK_LOST && st != CK_E_UNAVAILABLE)
            violation(V_STATUS, "ck_lock_release %s: %s", s->name, ck_strerror(st));
    } else {
        with_ctx w = { s, epoch, t0, 0,
                       rand_r(seed) % 30 == 0 ? 250 + (int)(rand_r(seed) % 250)
                                              : (int)(rand_r(seed) % 3) };
        st = ck_with_lock(g_open, s->name, WITH_LOCK_TTL_MS, LOCK_WAIT_MS, with_fn, &w);
        /* the library's share of the call: the total minus fn's own time */
        record(K_WITH_LOCK, mono_us() - t0 - w.fn_us, st == CK_OK, 0,
               st != CK_OK && st != CK_BUSY, s->name);
        if (st != CK_OK && st != CK_BUSY && st != CK_E_UNAVAILABLE && st != CK_E_LOCK_LOST)
            violation(V_STATUS, "ck_with_lock %s: %s", s->name, ck_strerror(st));
    }
}

/* ---------------------------------------------------------------- the rate workload */

typedef struct adm { int64_t sent, recv; } adm;

/* Append to a growing array of (sent, recv); out of memory ends the soak. */
static void adm_push(adm **v, size_t *n, size_t *cap, int64_t sent, int64_t recv)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 1024;
        adm *grown = realloc(*v, c * sizeof *grown);
        if (grown == NULL)
            abort();
        *v = grown;
        *cap = c;
    }
    (*v)[*n].sent = sent;
    (*v)[*n].recv = recv;
    (*n)++;
}
typedef struct rate_key {
    const char *key;
    ck_client **client;
    int closed;
    ck_rate_rule rule;
    pthread_mutex_t mu;
    adm *a;
    size_t n, cap;
    adm *d; /* denials answered by Redis (GCRA: the bucket was full then) */
    size_t nd, capd;
    unsigned long checks, allowed, denied, degraded, over, excused;
} rate_key;
static rate_key g_rate[] = {
    { "rc-fixed-0", &g_closed, 1, { CK_RL_FIXED, 20, 500, 0 }, PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0, NULL, 0, 0, 0, 0, 0, 0, 0, 0 },
    { "rc-fixed-1", &g_closed, 1, { CK_RL_FIXED, 20, 500, 0 }, PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0, NULL, 0, 0, 0, 0, 0, 0, 0, 0 },
    { "rc-log-0", &g_closed, 1, { CK_RL_SLIDING_LOG, 10, 1000, 0 }, PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0, NULL, 0, 0, 0, 0, 0, 0, 0, 0 },
    { "ro-fixed-0", &g_open, 0, { CK_RL_FIXED, 20, 500, 0 }, PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0, NULL, 0, 0, 0, 0, 0, 0, 0, 0 },
    { "ro-log-0", &g_open, 0, { CK_RL_SLIDING_LOG, 10, 1000, 0 }, PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0, NULL, 0, 0, 0, 0, 0, 0, 0, 0 },
    { "rc-gcra-0", &g_closed, 1, { CK_RL_GCRA, 20, 5000, 0 }, PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0, NULL, 0, 0, 0, 0, 0, 0, 0, 0 },
    { "ro-gcra-0", &g_open, 0, { CK_RL_GCRA, 20, 5000, 0 }, PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0, NULL, 0, 0, 0, 0, 0, 0, 0, 0 },
};
#define N_RATE (sizeof g_rate / sizeof g_rate[0])

static void rate_op(unsigned *seed)
{
    rate_key *rk = &g_rate[rand_r(seed) % N_RATE];
    ck_rate_result res;
    int64_t sent = real_us(), t0 = op_start();
    ck_status st = ck_rate_check(*rk->client, rk->key, &rk->rule, 1, 1, &res);
    int64_t recv = real_us();
    int counted;
    record(rk->closed ? K_RATE_CLOSED : K_RATE_OPEN, mono_us() - t0, st == CK_OK, res.degraded,
           st != CK_OK, rk->key);
    if (rk->closed) {
        if (st != CK_OK && st != CK_E_UNAVAILABLE && st != CK_E_PROTOCOL)
            violation(V_STATUS, "ck_rate_check %s: %s", rk->key, ck_strerror(st));
        if (res.allowed && (st != CK_OK || res.degraded))
            violation(V_RATE, "%s: fail-closed client admitted a degraded check (%s)", rk->key,
                      ck_strerror(st));
        counted = res.allowed;
    } else {
        if (st != CK_OK && st != CK_E_PROTOCOL)
            violation(V_STATUS, "ck_rate_check %s: %s", rk->key, ck_strerror(st));
        counted = res.allowed && !res.degraded;
    }
    pthread_mutex_lock(&rk->mu);
    rk->checks++;
    if (res.degraded)
        rk->degraded++;
    if (res.allowed)
        rk->allowed++;
    else
        rk->denied++;
    if (counted) {
        adm_push(&rk->a, &rk->n, &rk->cap, sent, recv);
    }
    if (st == CK_OK && !res.allowed && !res.degraded && rk->rule.algo == CK_RL_GCRA) {
        adm_push(&rk->d, &rk->nd, &rk->capd, sent, recv);
    }
    pthread_mutex_unlock(&rk->mu);
}

static int cmp_adm(const void *x, const void *y)
{
    const adm *a = x, *b = y;
    return a->sent < b->sent ? -1 : a->sent > b->sent;
}

static unsigned long g_rate_excused;

/* After the run: admissions surely inside one window, per key. */
static void rate_verify(void)
{
    for (size_t k = 0; k < N_RATE; k++) {
        rate_key *rk = &g_rate[k];
        int64_t w = rk->rule.window_ms * 1000;
        qsort(rk->a, rk->n, sizeof *rk->a, cmp_adm);
        if (rk->rule.algo == CK_RL_FIXED) {
            /* runs of admissions in one epoch-aligned window */
            size_t i = 0;
            while (i < rk->n) {
                int64_t idx = rk->a[i].sent / w;
                int64_t count = 0;
                size_t j = i;
                for (; j < rk->n && rk->a[j].sent / w == idx; j++)
                    if (rk->a[j].recv / w == idx)
                        count++;
                if (count > rk->rule.limit) {
                    if (loss_during(idx * w, (idx + 1) * w))
                        g_rate_excused++, rk->excused++;
                    else
                        rk->over++, violation(V_RATE, "%s: %" PRId64 " admissions in fixed window %" PRId64
                                  " (limit %" PRId64 ")", rk->key, count, idx, rk->rule.limit);
                }
                i = j;
            }
        } else if (rk->rule.algo == CK_RL_GCRA) {
            /* burst `limit`, then one per window/limit: admissions i..j (in
             * send order) all ran inside [sent_i, max recv], so there are at
             * most limit + span * limit / window + 1 of them */
            int64_t last_bad = -1;
            for (size_t i = 0; i < rk->n; i++) {
                int64_t maxrecv = rk->a[i].recv;
                for (size_t j = i; j < rk->n && rk->a[j].sent - rk->a[i].sent < 4 * w; j++) {
                    if (rk->a[j].recv > maxrecv)
                        maxrecv = rk->a[j].recv;
                    int64_t span = maxrecv - rk->a[i].sent;
                    int64_t allowed = rk->rule.limit + span * rk->rule.limit / w + 1;
                    if ((int64_t)(j - i + 1) > allowed && rk->a[i].sent > last_bad) {
                        last_bad = maxrecv;
                        if (loss_during(rk->a[i].sent - 2 * w, maxrecv))
                            g_rate_excused++, rk->excused++;
                        else
                            rk->over++, violation(V_RATE, "%s: %zu admissions within %" PRId64
                                      " ms (GCRA allows %" PRId64 ")", rk->key, j - i + 1,
                                      span / 1000, allowed);
                        break;
                    }
                }
            }
            /* after a denial at Redis time x (the bucket full: arrival
             * time > x + window - window/limit), k admissions up to time y
             * need (k - 1) * window/limit < y - x. x >= the denial's send,
             * y <= the admissions' last receive; admissions sent after the
             * denial's reply only; one admission of slack for rounding */
            qsort(rk->d, rk->nd, sizeof *rk->d, cmp_adm);
            int64_t last_bad_d = -1;
            for (size_t di = 0; di < rk->nd; di++) {
                int64_t x = rk->d[di].sent, after = rk->d[di].recv, maxrecv = 0, k = 0;
                size_t first = 0, hi = rk->n;
                if (x <= last_bad_d)
                    continue;
                while (first < hi) { /* the first admission sent at or after x */
                    size_t mid = first + (hi - first) / 2;
                    if (rk->a[mid].sent < x)
                        first = mid + 1;
                    else
                        hi = mid;
                }
                for (size_t j = first; j < rk->n && rk->a[j].sent - x < 4 * w; j++) {
                    if (rk->a[j].sent < after)
                        continue;
                    k++;
                    if (rk->a[j].recv > maxrecv)
                        maxrecv = rk->a[j].recv;
                    int64_t allowed = (maxrecv - x) * rk->rule.limit / w + 2;
                    if (k > allowed) {
                        last_bad_d = maxrecv;
                        if (loss_during(x, maxrecv))
                            g_rate_excused++, rk->excused++;
                        else
                            rk->over++, violation(V_RATE, "%s: %" PRId64 " admissions within %" PRId64
                                      " ms of a denial (GCRA allows %" PRId64 ")", rk->key, k,
                                      (maxrecv - x) / 1000, allowed);
                        break;
                    }
                }
            }
        } else {
            /* every set whose receive times end less than a window (minus
             * 1 ms) after the first one's send lies in one rolling window */
            int64_t last_bad = -1;
            for (size_t i = 0; i < rk->n; i++) {
                int64_t end = rk->a[i].sent + w - 1000, count = 0;
                for (size_t j = i; j < rk->n && rk->a[j].sent < end; j++)
                    if (rk->a[j].recv < end)
                        count++;
                if (count > rk->rule.limit && rk->a[i].sent > last_bad) {
                    last_bad = end;
                    if (loss_during(rk->a[i].sent - w, end))
                        g_rate_excused++, rk->excused++;
                    else
                        rk->over++, violation(V_RATE, "%s: %" PRId64 " admissions within %" PRId64
                                  " ms (limit %" PRId64 ")", rk->key, count,
                                  rk->rule.window_ms, rk->rule.limit);
                }
            }
        }
    }
}

/* ---------------------------------------------------------------- workers */

static void *worker(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg * 2654435761u ^ (unsigned)mono_us();
    while (!atomic_load(&g_stop)) {
        unsigned r = rand_r(&seed) % 100;
        if (r < 50)
            cache_op(&seed);
        else if (r < 65)
            lock_op(&seed);
        else
            rate_op(&seed);
    }
    run_delay_close();
    return NULL;
}

/* ---------------------------------------------------------------- nemesis */

enum { N_KILL, N_FLUSH, N_SLEEP, N_STOP, N_RESTART, N_PAUSE, N_MAXMEM, N__N };
static const char *const n_names[N__N] = {
    "CLIENT KILL ck:*", "SCRIPT FLUSH", "DEBUG SLEEP 0.3", "SIGSTOP 800 ms / SIGCONT",
    "restart (same port)", "CLIENT PAUSE 300 WRITE", "maxmemory pressure 1.5 s"
};
static unsigned long g_nem[N__N], g_nem_failed[N__N];
static int g_fd_base, g_fd_max;

static void quiet(int ms)
{
    int64_t end = mono_us() + (int64_t)ms * 1000;
    while (mono_us() < end) {
        int fds = open_fds();
        if (fds > g_fd_max)
            g_fd_max = fds;
        sleep_ms(50);
    }
}

static const char *nem_name(int a) { return a >= 0 && a < N__N ? n_names[a] : "?"; }

static void nemesis(int action, int round)
{
    int ok = 1;
    atomic_store(&g_nem_now, action);
    switch (action) {
    case N_KILL: {
        int n = kill_library_clients();
        note("nemesis: killed %d ck:* connections", n);
        ok = n >= 0;
        break;
    }
    case N_FLUSH: {
        static const char *const a[] = { "SCRIPT", "FLUSH", NULL };
        ok = admin_ok(a);
        break;
    }
    case N_SLEEP: {
        static const char *const a[] = { "DEBUG", "SLEEP", "0.3", NULL };
        ok = admin_ok(a);
        break;
    }
    case N_STOP:
        ok = kill(g_srv.pid, SIGSTOP) == 0;
        sleep_ms(800);
        ok = kill(g_srv.pid, SIGCONT) == 0 && ok;
        break;
    case N_RESTART: {
        int li = loss_begin();
        atomic_fetch_add(&g_epoch, 2);
        ok = srv_restart() == 0;
        loss_end(li);
        if (!ok) {
            fprintf(stderr, "soak: redis-server did not restart on port %d\n", g_srv.port);
            exit(2);
        }
        break;
    }
    case N_PAUSE: {
        static const char *const a[] = { "CLIENT", "PAUSE", "300", "WRITE", NULL };
        ok = admin_ok(a);
        break;
    }
    case N_MAXMEM: {
        /* alternate: evict below what is used, then a 1-byte limit (every
         * write OOM once the data is evicted) */
        long long used = info_field("memory", "used_memory");
        char lim[32];
        snprintf(lim, sizeof lim, "%lld", round % 2 == 0 && used > 0 ? used * 3 / 4 : 1LL);
        const char *pol[] = { "CONFIG", "SET", "maxmemory-policy", "allkeys-lru", NULL };
        const char *set[] = { "CONFIG", "SET", "maxmemory", lim, NULL };
        const char *off[] = { "CONFIG", "SET", "maxmemory", "0", NULL };
        const char *nopol[] = { "CONFIG", "SET", "maxmemory-policy", "noeviction", NULL };
        int li = loss_begin();
        atomic_fetch_add(&g_epoch, 1); /* odd: keys may vanish */
        ok = admin_ok(pol) && admin_ok(set);
        note("nemesis: maxmemory %s (used %lld)", lim, used);
        quiet(1500);
        ok = admin_ok(off) && ok;
        ok = admin_ok(nopol) && ok;
        atomic_fetch_add(&g_epoch, 1);
        loss_end(li);
        break;
    }
    }
    atomic_store(&g_nem_now, -1);
    g_nem[action]++;
    if (!ok)
        g_nem_failed[action]++;
    note("nemesis: %s%s", n_names[action], ok ? "" : " (failed)");
}

/* ---------------------------------------------------------------- main */

static ck_status make_client(ck_fail_mode mode, ck_client **out)
{
    ck_options o;
    ck_options_init(&o);
    o.url = g_srv.url;
    o.prefix = "soak";
    o.connect_timeout_ms = CONNECT_MS;
    o.command_timeout_ms = COMMAND_MS;
    o.pool_wait_ms = POOL_WAIT_MS;
    o.pool_size = POOL_SIZE;
    o.fail_mode = mode;
    o.breaker_cooldown_ms = BREAKER_COOLDOWN_MS;
    o.log = log_fn;
    o.log_level = CK_LOG_WARN;
    return ck_client_new(&o, out);
}

int main(int argc, char **argv)
{
    int seconds = argc > 1 ? atoi(argv[1]) : 60;
    int nthreads = env_int("SOAK_THREADS", 16);
    pthread_t th[MAX_THREADS];
    long rss_warm = -1, rss_end;
    int warm_s, fds_after;
    ck_stats so, sc;
    int64_t start;
    unsigned long total_viol = 0;

    g_verbose = env_int("SOAK_VERBOSE", 0);
    g_nemesis = env_int("SOAK_NEMESIS", 1);
    g_no_excuse = env_int("SOAK_NO_EXCUSE", 0);
    g_sanitize = env_int("SOAK_SANITIZE", 0);
    g_slack_us = env_int("SOAK_SLACK_MS", g_sanitize ? 150 : 50) * 1000;
    if (seconds <= 0)
        seconds = 60;
    if (nthreads < 1 || nthreads > MAX_THREADS)
        nthreads = 16;
    warm_s = seconds / 5 < 10 ? seconds / 5 : 10;

    g_k[K_CACHE_GET].bound_us = (int64_t)(STAMPEDE_WAIT_MS + LOADER_MAX_MS + 4 * CALL_MS) * 1000;
    g_k[K_CACHE_SET].bound_us = CALL_MS * 1000;
    g_k[K_CACHE_INV].bound_us = CALL_MS * 1000;
    g_k[K_LOCK_ACQ].bound_us = (int64_t)(LOCK_WAIT_MS + 2 * CALL_MS) * 1000;
    g_k[K_LOCK_REL].bound_us = 3 * CALL_MS * 1000;
    g_k[K_WITH_LOCK].bound_us = (int64_t)(LOCK_WAIT_MS + 2 * CALL_MS + 3 * CALL_MS) * 1000;
    g_k[K_RATE_CLOSED].bound_us = CALL_MS * 1000;
    g_k[K_RATE_OPEN].bound_us = CALL_MS * 1000;
    for (int i = 0; i < N_LOCKS; i++) {
        pthread_mutex_init(&g_locks[i].mu, NULL);
        snprintf(g_locks[i].name, sizeof g_locks[i].name, "soak-lock-%d", i);
    }

    if (srv_start() != 0) {
        fprintf(stderr, "soak: could not start redis-server (is it installed? make deps)\n");
        return 2;
    }
    printf("soak: %d s, %d threads, redis-server pid %d on %s, call deadline %d ms "
           "(pool wait %d + connect %d + command %d), slack %d ms\n",
           seconds, nthreads, (int)g_srv.pid, g_srv.url, CALL_MS, POOL_WAIT_MS, CONNECT_MS,
           COMMAND_MS, g_slack_us / 1000);
    fflush(stdout);

    g_fd_base = open_fds();
    g_fd_max = g_fd_base;
    if (make_client(CK_FAIL_OPEN, &g_open) != CK_OK || make_client(CK_FAIL_CLOSED, &g_closed) != CK_OK) {
        fprintf(stderr, "soak: ck_client_new failed\n");
        return 2;
    }
    for (int i = 0; i < N_CACHES; i++) {
        ck_cache_options co;
        ck_cache_options_init(&co);
        co.name = g_cache_name[i];
        co.ttl_ms = 2000;
        co.null_ttl_ms = 1000;
        co.stale_ttl_ms = 1000;
        co.stampede_lock_ms = 1000;
        co.stampede_wait_ms = STAMPEDE_WAIT_MS;
        if (i == 1) {
            co.l1_max_entries = 256;
            co.l1_ttl_ms = 1000;
        }
        if (ck_cache_new(g_open, &co, &g_cache[i]) != CK_OK) {
            fprintf(stderr, "soak: ck_cache_new failed\n");
            return 2;
        }
    }

    pthread_t stall_th;
    if (pthread_create(&stall_th, NULL, stall_watch, NULL) != 0) {
        fprintf(stderr, "soak: pthread_create failed\n");
        return 2;
    }
    start = g_start_us = mono_us();
    for (int i = 0; i < nthreads; i++)
        if (pthread_create(&th[i], NULL, worker, (void *)(uintptr_t)(i + 1)) != 0) {
            fprintf(stderr, "soak: pthread_create failed\n");
            return 2;
        }

    /* the nemesis: one action, a quiet second, the next */
    quiet(500);
    for (int round = 0, a = 0; mono_us() - start < (int64_t)seconds * 1000000; a++) {
        if (rss_warm < 0 && mono_us() - start >= (int64_t)warm_s * 1000000)
            rss_warm = rss_kb();
        if (g_nemesis)
            nemesis(a % N__N, round);
        if (a % N__N == N__N - 1)
            round++;
        quiet(QUIET_MS);
    }
    if (rss_warm < 0)
        rss_warm = rss_kb();
    atomic_store(&g_stop, 1);
    for (int i = 0; i < nthreads; i++)
        pthread_join(th[i], NULL);
    atomic_store(&g_stall_stop, 1);
    pthread_join(stall_th, NULL);
    double elapsed = (double)(mono_us() - start) / 1e6;
    rss_end = rss_kb();
    ck_client_stats(g_open, &so);
    ck_client_stats(g_closed, &sc);
    for (int i = 0; i < N_CACHES; i++)
        ck_cache_free(g_cache[i]);
    ck_client_free(g_open);
    ck_client_free(g_closed);
    fds_after = open_fds();

    rate_verify();
    if (fds_after != g_fd_base)
        violation(V_FDS, "%d fds open after freeing the clients, %d before creating them",
                  fds_after, g_fd_base);
    long rss_slack = env_int("SOAK_RSS_SLACK_KB", 16384);
    if (!g_sanitize && rss_end - rss_warm > rss_slack)
        violation(V_RSS, "RSS grew from %ld kB (after %d s) to %ld kB", rss_warm, warm_s, rss_end);

    /* ---- the table */
    unsigned long total_ops = 0;
    printf("\n%-20s %9s %7s %9s %9s %9s %8s %8s %8s %6s\n", "operation", "calls", "per s",
           "ok", "degraded", "failed", "max ms", "net ms", "bound ms", "rq>b");
    for (int k = 0; k < K__N; k++) {
        kind_stats *s = &g_k[k];
        total_ops += s->ops;
        printf("%-20s %9lu %7.0f %9lu %9lu %9lu %8.1f %8.1f %8" PRId64 " %6lu\n", k_names[k],
               (unsigned long)s->ops, (double)s->ops / elapsed, (unsigned long)s->ok,
               (unsigned long)s->degraded, (unsigned long)s->failed,
               (double)s->max_us / 1000.0, (double)s->max_net_us / 1000.0, s->bound_us / 1000,
               (unsigned long)s->sched_excused);
    }
    printf("%-20s %9lu %7.0f\n", "total", total_ops, (double)total_ops / elapsed);
    printf("(net ms: the slowest call minus the time the host did not run it: its thread's\n"
           " run-queue wait, or a stall the watcher thread saw; rq>b: calls over the bound only\n"
           " by such time, not counted as violations)\n");
    printf("host stalls (watcher woke > 10 ms late): %u, longest %.1f ms\n", g_nstall,
           (double)g_stall_max_us / 1000.0);

    printf("\n%-28s %6s\n", "nemesis action", "times");
    for (int i = 0; i < N__N; i++)
        printf("%-28s %6lu%s\n", n_names[i], g_nem[i], g_nem_failed[i] ? " (some failed)" : "");

    printf("\n%-12s %-16s %8s %8s %8s %9s %8s %5s %7s\n", "rate key", "rule", "checks",
           "allowed", "denied", "degraded", "counted", "over", "excused");
    for (size_t k = 0; k < N_RATE; k++) {
        rate_key *rk = &g_rate[k];
        char rule[32];
        snprintf(rule, sizeof rule, "%s %" PRId64 "/%" PRId64 "ms",
                 rk->rule.algo == CK_RL_FIXED ? "fixed" : rk->rule.algo == CK_RL_GCRA ? "gcra" : "log",
                 rk->rule.limit, rk->rule.window_ms);
        printf("%-12s %-16s %8lu %8lu %8lu %9lu %8zu %5lu %7lu\n", rk->key, rule, rk->checks,
               rk->allowed, rk->denied, rk->degraded, rk->n, rk->over, rk->excused);
    }
    printf("over-limit windows excused by a restart/eviction (documented loss): %lu\n", g_rate_excused);

    printf("\n%-14s %9s %9s %9s %9s\n", "lock", "fenced", "rejected", "skipped", "last fence");
    for (int i = 0; i < N_LOCKS; i++)
        printf("%-14s %9lu %9lu %9lu %" PRIu64 "\n", g_locks[i].name, g_locks[i].accepted,
               g_locks[i].rejected, g_locks[i].skipped, g_locks[i].resource);

    printf("\nclient stats (open / closed): degraded %" PRIu64 " / %" PRIu64
           ", redis_errors %" PRIu64 " / %" PRIu64 ", breaker_opens %" PRIu64 " / %" PRIu64
           ", lock_lost %" PRIu64 ", stale_served %" PRIu64 ", l1_hits %" PRIu64
           ", loads %" PRIu64 ", pool_waits %" PRIu64 " / %" PRIu64 "\n",
           so.degraded, sc.degraded, so.redis_errors, sc.redis_errors, so.breaker_opens,
           sc.breaker_opens, so.lock_lost, so.stale_served, so.l1_hits, so.loads, so.pool_waits,
           sc.pool_waits);
    printf("log: %lu errors, %lu warnings%s%s\n", (unsigned long)g_log_count[CK_LOG_ERROR],
           (unsigned long)g_log_count[CK_LOG_WARN], g_log_last_error[0] ? "; last error: " : "",
           g_log_last_error);
    printf("fds: %d before the clients, at most %d during, %d after freeing them\n",
           g_fd_base, g_fd_max, fds_after);
    printf("rss: %ld kB after %d s warm-up, %ld kB at the end (%+ld kB)%s\n", rss_warm, warm_s,
           rss_end, rss_end - rss_warm, g_sanitize ? " [not checked under ASan]" : "");

    printf("\n%-22s %10s\n", "checker", "violations");
    for (int v = 0; v < V__N; v++) {
        printf("%-22s %10lu\n", v_names[v], (unsigned long)g_viol[v]);
        total_viol += g_viol[v];
    }
    /* sanity: the soak did exercise every kind with Redis answering */
    int idle = 0;
    for (int k = 0; k < K__N; k++)
        if (g_k[k].ok == 0) {
            printf("no successful %s at all: the soak did not exercise it\n", k_names[k]);
            idle = 1;
        }
    printf("\nsoak %s: %.1f s, %lu operations, %lu violations\n",
           total_viol == 0 && !idle ? "PASSED" : "FAILED", elapsed, total_ops, total_viol);
    for (size_t k = 0; k < N_RATE; k++)
        free(g_rate[k].a), free(g_rate[k].d);
    srv_cleanup();
    return total_viol == 0 && !idle ? 0 : 1;
}
