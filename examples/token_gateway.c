/* token_gateway: the authentication path of an API gateway, on libcachekit
 * and SQLite. `make demo` runs it while it stops and restarts Redis.
 *
 *   token_gateway [--duration S] [--redis URL] [--workers N] [--tokens N]
 *
 * At start it creates a SQLite database in $TMPDIR (removed again at once:
 * the connections keep it open) with N tokens (default 3000) across 50
 * tenants. Worker threads then play requests (token, route) drawn from a
 * skewed distribution, 8% of them with tokens that do not exist. Per request:
 *
 *   1. ck_token_get: the token record, through the cache (an L1 tier in
 *      process memory, then Redis, then the SQLite loader; unknown tokens
 *      are cached as absences, so they do not reach the database either);
 *   2. ck_rate_check: the token's rules, all or nothing: requests per second
 *      (GCRA) and a daily budget (calendar day, UTC);
 *   3. ck_slots_acquire: one of the tenant's concurrency slots, held while
 *      the upstream call runs (a short sleep here), then released.
 *
 * Two schedulers (as two gateway instances would) run a periodic report
 * under ck_with_lock: only one of them runs it at a time.
 *
 * Once a second it prints a status line; at the end a table and the client's
 * statistics in Prometheus form. The client fails open (the default): while
 * Redis is down requests keep being answered, "degraded" counts the calls
 * answered without Redis, and the database sees only the keys the L1 tier
 * does not hold. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sqlite3.h>
#include <cachekit.h>

#define N_TENANTS 50
#define N_UNKNOWN 200     /* distinct tokens that do not exist */
#define UNKNOWN_PCT 8     /* share of requests that carry one */
#define SLOTS_PER_TENANT 4
#define MAX_WORKERS 64
#define JOB_PERIOD_MS 2000

typedef struct {
    int id;
    sqlite3 *db;
    sqlite3_stmt *lookup;
    uint64_t rng;
    int queried; /* the loader ran for the current request */
} worker;

static struct {
    ck_client *client;
    ck_cache *tokens;
    int ntokens;
    char (*known)[40];
    char unknown[N_UNKNOWN][40];
    volatile sig_atomic_t stop;
    atomic_uint_fast64_t requests, ok, unauthorized, per_second, daily, concurrency, errors,
        db_queries, db_requests, jobs_run, jobs_busy, jobs_skipped;
    pthread_mutex_t mu; /* latency samples (microseconds) */
    uint32_t *lat;
    size_t nlat, caplat;
    int log_budget;     /* library log lines left this second */
} G = {.mu = PTHREAD_MUTEX_INITIALIZER};

static const char *const routes[] = {"/v1/chat-messages", "/v1/completion-messages",
                                     "/v1/datasets", "/v1/files/upload", "/v1/workflows/run"};

/* Rules per token type, in the same order for every key: 0 = per second, 1 = per day. */
static const ck_rate_rule app_rules[] = {{CK_RL_GCRA, 50, 1000, 0}, {CK_RL_CALENDAR_DAY, 500, 0, 0}};
static const ck_rate_rule dataset_rules[] = {{CK_RL_GCRA, 10, 1000, 0}, {CK_RL_CALENDAR_DAY, 100, 0, 0}};

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !G.stop)
        ;
}

static uint64_t next_rand(uint64_t *s) /* xorshift64* */
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}

static void make_token(char out[40], uint64_t *rng)
{
    snprintf(out, 40, "ck-%016" PRIx64 "%08" PRIx32, next_rand(rng), (uint32_t)next_rand(rng));
}

static void on_signal(int sig)
{
    (void)sig;
    G.stop = 1;
}

/* Library log lines, at most 3 a second (an outage would print one per call). */
static void log_line(void *user, int level, const char *msg)
{
    (void)user;
    pthread_mutex_lock(&G.mu);
    if (G.log_budget > 0) {
        G.log_budget--;
        printf("        cachekit %s: %s\n", level == CK_LOG_ERROR ? "error" : "warning", msg);
    }
    pthread_mutex_unlock(&G.mu);
}

/* ---- the database ---------------------------------------------------- */

static int db_exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "sqlite: %s: %s\n", sql, err ? err : "?");
        sqlite3_free(err);
        return -1;
    }
    return 0;
}

/* Create the tokens table with G.ntokens rows; G.known gets the tokens. */
static int create_db(const char *path)
{
    sqlite3 *db;
    sqlite3_stmt *ins = NULL;
    uint64_t rng = 0x5eed5eed1234ULL;
    int rc = -1;

    if (sqlite3_open(path, &db) != SQLITE_OK) {
        fprintf(stderr, "sqlite: %s: %s\n", path, sqlite3_errmsg(db));
        sqlite3_close(db);
        return -1;
    }
    if (db_exec(db, "CREATE TABLE api_tokens (id TEXT PRIMARY KEY, app_id TEXT NOT NULL,"
                    " tenant_id TEXT NOT NULL, type TEXT NOT NULL, token TEXT NOT NULL UNIQUE,"
                    " created_at INTEGER NOT NULL, last_used_at INTEGER)") != 0 ||
        db_exec(db, "BEGIN") != 0)
        goto out;
    if (sqlite3_prepare_v2(db, "INSERT INTO api_tokens VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL)",
                           -1, &ins, NULL) != SQLITE_OK) {
        fprintf(stderr, "sqlite: %s\n", sqlite3_errmsg(db));
        goto out;
    }
    for (int i = 0; i < G.ntokens; i++) {
        char id[32], app[32], tenant[32];
        /* the first tenants own most tokens, and the hottest ones */
        int t = (int)(next_rand(&rng) % 3) == 0 ? i % 3 : i % N_TENANTS;

        snprintf(id, sizeof id, "tok-%05d", i);
        snprintf(app, sizeof app, "app-%04d", i / 4);
        snprintf(tenant, sizeof tenant, "tenant-%02d", t);
        make_token(G.known[i], &rng);
        sqlite3_bind_text(ins, 1, id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(ins, 2, app, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(ins, 3, tenant, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(ins, 4, i % 4 == 3 ? "dataset" : "app", -1, SQLITE_STATIC);
        sqlite3_bind_text(ins, 5, G.known[i], -1, SQLITE_STATIC);
        sqlite3_bind_int64(ins, 6, 1700000000 + i * 60);
        if (sqlite3_step(ins) != SQLITE_DONE) {
            fprintf(stderr, "sqlite: insert: %s\n", sqlite3_errmsg(db));
            goto out;
        }
        sqlite3_reset(ins);
    }
    for (int i = 0; i < N_UNKNOWN; i++)
        make_token(G.unknown[i], &rng);
    rc = db_exec(db, "COMMIT");
out:
    sqlite3_finalize(ins);
    sqlite3_close(db);
    return rc;
}

static int open_db(const char *path, sqlite3 **db, sqlite3_stmt **stmt, const char *sql)
{
    *stmt = NULL;
    if (sqlite3_open_v2(path, db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(*db, sql, -1, stmt, NULL) != SQLITE_OK) {
        fprintf(stderr, "sqlite: %s: %s\n", path, sqlite3_errmsg(*db));
        sqlite3_close(*db);
        *db = NULL;
        return -1;
    }
    return 0;
}

static char *column(sqlite3_stmt *q, int i, int *failed)
{
    const unsigned char *s = sqlite3_column_text(q, i);
    char *copy = s ? strdup((const char *)s) : NULL;
    if (s && !copy)
        *failed = 1;
    return copy;
}

/* The token loader: one indexed SELECT on the worker's own connection. */
static ck_status load_token(void *user, const char *token, const char *scope, ck_token **out)
{
    worker *w = user;
    sqlite3_stmt *q = w->lookup;
    ck_token *t;
    int rc, failed = 0;

    (void)scope;
    w->queried = 1;
    atomic_fetch_add(&G.db_queries, 1);
    sqlite3_reset(q);
    if (sqlite3_bind_text(q, 1, token, -1, SQLITE_TRANSIENT) != SQLITE_OK)
        return CK_E_LOADER;
    rc = sqlite3_step(q);
    if (rc == SQLITE_DONE)
        return CK_NOT_FOUND; /* cached as an absence */
    if (rc != SQLITE_ROW)
        return CK_E_LOADER;  /* nothing cached; ck_token_get says CK_E_LOADER */
    if ((t = calloc(1, sizeof *t)) == NULL)
        return CK_E_NOMEM;
    t->id = column(q, 0, &failed);
    t->app_id = column(q, 1, &failed);
    t->tenant_id = column(q, 2, &failed);
    t->type = column(q, 3, &failed);
    t->created_at = sqlite3_column_int64(q, 4);
    t->last_used_at = sqlite3_column_int64(q, 5);
    sqlite3_reset(q);
    if (failed || !t->id || !t->tenant_id || !t->type) {
        ck_token_free(t);
        return failed ? CK_E_NOMEM : CK_E_LOADER;
    }
    *out = t; /* the library frees it with ck_token_free */
    return CK_OK;
}

/* ---- the request path ------------------------------------------------- */

static void record_latency(uint64_t us)
{
    pthread_mutex_lock(&G.mu);
    if (G.nlat == G.caplat) {
        size_t cap = G.caplat ? G.caplat * 2 : 65536;
        uint32_t *p = realloc(G.lat, cap * sizeof *p);
        if (p == NULL) {
            pthread_mutex_unlock(&G.mu);
            return; /* a sample less */
        }
        G.lat = p;
        G.caplat = cap;
    }
    G.lat[G.nlat++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    pthread_mutex_unlock(&G.mu);
}

static const char *pick_token(worker *w)
{
    uint64_t r = next_rand(&w->rng);
    double u;

    if (r % 100 < UNKNOWN_PCT)
        return G.unknown[(r >> 8) % N_UNKNOWN];
    u = (double)(next_rand(&w->rng) >> 11) / 9007199254740992.0; /* [0, 1) */
    return G.known[(int)(u * u * u * G.ntokens)];                  /* skewed to the first */
}

static void handle_request(worker *w, uint64_t seq)
{
    const char *token = pick_token(w);
    const char *route = routes[seq % (sizeof routes / sizeof routes[0])];
    uint64_t t0 = now_us();
    ck_token *tok = NULL;
    ck_rate_result rr, sr;
    char key[CK_RATE_MAX_KEY], holder[64];
    ck_status st;

    (void)route; /* a real gateway would pick the upstream from it */
    w->queried = 0;
    atomic_fetch_add(&G.requests, 1);
    st = ck_token_get(G.tokens, token, NULL, load_token, w, &tok);
    if (w->queried)
        atomic_fetch_add(&G.db_requests, 1);
    if (st == CK_NOT_FOUND) { /* 401 */
        atomic_fetch_add(&G.unauthorized, 1);
        record_latency(now_us() - t0);
        return;
    }
    if (st != CK_OK) { /* 503: the database failed (CK_E_LOADER), or out of memory */
        atomic_fetch_add(&G.errors, 1);
        return;
    }

    /* Per-token rules, all or nothing. With CK_FAIL_OPEN the answer is
     * "allowed" (degraded) when Redis cannot answer; other errors leave
     * the fail mode's answer in rr too. */
    snprintf(key, sizeof key, "tok:%s", tok->id);
    st = ck_rate_check(G.client, key, strcmp(tok->type, "dataset") == 0 ? dataset_rules : app_rules,
                       2, 1, &rr);
    if (st != CK_OK && st != CK_E_PROTOCOL && st != CK_E_NOMEM) {
        atomic_fetch_add(&G.errors, 1); /* CK_E_INVALID: a bug; CK_E_UNAVAILABLE: fail-closed only */
        ck_token_free(tok);
        return;
    }
    if (!rr.allowed) { /* 429 + ck_rate_format_headers(&rr, ...) as the reply's headers */
        atomic_fetch_add(rr.rule == 1 ? &G.daily : &G.per_second, 1);
        record_latency(now_us() - t0);
        ck_token_free(tok);
        return;
    }

    /* A concurrency slot of the tenant, held while the upstream call runs. */
    snprintf(key, sizeof key, "tenant:%s", tok->tenant_id);
    snprintf(holder, sizeof holder, "gw%ld-w%d-%" PRIu64, (long)getpid(), w->id, seq);
    st = ck_slots_acquire(G.client, key, SLOTS_PER_TENANT, holder, 10000, &sr);
    record_latency(now_us() - t0);
    if (st == CK_OK && !sr.allowed) {
        atomic_fetch_add(&G.concurrency, 1);
    } else if (st != CK_OK && st != CK_E_PROTOCOL && st != CK_E_NOMEM) {
        atomic_fetch_add(&G.errors, 1);
    } else {
        sleep_us(1000 + (long)(next_rand(&w->rng) % 3000)); /* the upstream call */
        atomic_fetch_add(&G.ok, 1);
        /* A degraded acquire took no slot in Redis: nothing to release. A
         * failed release is harmless: the slot frees itself after stale_ms. */
        if (!sr.degraded)
            (void)ck_slots_release(G.client, key, holder);
    }
    ck_token_free(tok);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    for (uint64_t seq = 0; !G.stop; seq++)
        handle_request(w, seq);
    return NULL;
}

/* ---- the periodic job --------------------------------------------------- */

typedef struct {
    sqlite3 *db;
    sqlite3_stmt *report;
} scheduler;

/* Under the lock: the tenant with the most tokens (a report a real gateway
 * would write somewhere, fenced with ck_lock_fence(l)). */
static ck_status usage_report(void *user, const ck_lock *l)
{
    scheduler *s = user;
    int rc;

    sqlite3_reset(s->report);
    rc = sqlite3_step(s->report);
    sqlite3_reset(s->report);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return CK_E_LOADER;
    sleep_us(200000); /* the rest of the work */
    return ck_lock_valid(l) ? CK_OK : CK_E_LOCK_LOST;
}

static void *scheduler_main(void *arg)
{
    scheduler *s = arg;
    while (!G.stop) {
        ck_status st = ck_with_lock(G.client, "gateway:usage-report", 5000, 0, usage_report, s);
        atomic_fetch_add(st == CK_OK     ? &G.jobs_run
                         : st == CK_BUSY ? &G.jobs_busy
                                         : &G.jobs_skipped, 1); /* unavailable, lost */
        for (int i = 0; i < JOB_PERIOD_MS / 100 && !G.stop; i++)
            sleep_us(100000);
    }
    return NULL;
}

/* ---- reporting ------------------------------------------------------ */

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Percentiles of the samples from `from` on (sorts a copy). */
static void percentiles(size_t from, double *p50, double *p99, double *max)
{
    uint32_t *copy = NULL;
    size_t n;

    pthread_mutex_lock(&G.mu);
    n = G.nlat > from ? G.nlat - from : 0;
    if (n && (copy = malloc(n * sizeof *copy)) != NULL)
        memcpy(copy, G.lat + from, n * sizeof *copy);
    pthread_mutex_unlock(&G.mu);
    *p50 = *p99 = *max = 0;
    if (copy == NULL)
        return;
    qsort(copy, n, sizeof *copy, cmp_u32);
    *p50 = copy[n / 2] / 1000.0;
    *p99 = copy[n * 99 / 100] / 1000.0;
    *max = copy[n - 1] / 1000.0;
    free(copy);
}

static uint64_t get(atomic_uint_fast64_t *a)
{
    return atomic_load(a);
}

static int print_report(int seconds)
{
    ck_stats s;
    double p50, p99, max;
    uint64_t req = get(&G.requests);
    uint64_t denied = get(&G.per_second) + get(&G.daily) + get(&G.concurrency);
    char *prom;
    int n;

    ck_client_stats(G.client, &s);
    percentiles(0, &p50, &p99, &max);
    printf("\n  %-22s %10" PRIu64 "   in %d s, %.0f/s\n", "requests", req, seconds,
           seconds > 0 ? (double)req / seconds : 0.0);
    printf("  %-22s %10" PRIu64 "\n", "answered 200", get(&G.ok));
    printf("  %-22s %10" PRIu64 "   unknown tokens\n", "answered 401", get(&G.unauthorized));
    printf("  %-22s %10" PRIu64 "   %" PRIu64 " per-second rule, %" PRIu64 " daily budget, %" PRIu64
           " concurrency\n", "denied requests", denied, get(&G.per_second), get(&G.daily),
           get(&G.concurrency));
    printf("  %-22s %10" PRIu64 "\n", "errors (503)", get(&G.errors));
    printf("  %-22s %9.2f%%   lookups answered without the database (L1 share of hits %.0f%%)\n",
           "cache hit rate", req ? 100.0 * (double)(req - get(&G.db_requests)) / (double)req : 0.0,
           s.hits + s.null_hits ? 100.0 * (double)s.l1_hits / (double)(s.hits + s.null_hits) : 0.0);
    printf("  %-22s %10" PRIu64 "   for %d tokens and %d unknown ones\n", "database queries",
           get(&G.db_queries), G.ntokens, N_UNKNOWN);
    printf("  %-22s %10" PRIu64 "   calls answered without Redis (fail-open)\n", "degraded answers",
           s.degraded);
    printf("  %-22s %7.2f ms / %.2f ms   (max %.1f ms; the auth path, not the upstream call)\n",
           "latency p50 / p99", p50, p99, max);
    printf("  %-22s %10" PRIu64 "   runs under the lock, %" PRIu64 " busy (the other scheduler"
           " had it), %" PRIu64 " skipped\n", "periodic job", get(&G.jobs_run), get(&G.jobs_busy),
           get(&G.jobs_skipped));

    n = ck_stats_format_prometheus(&s, NULL, 0);
    if (n < 0 || (prom = malloc((size_t)n + 1)) == NULL)
        return -1;
    ck_stats_format_prometheus(&s, prom, (size_t)n + 1);
    printf("\nck_stats_format_prometheus:\n%s", prom);
    free(prom);
    return 0;
}

/* ---- main ------------------------------------------------------------ */

static int usage(void)
{
    fprintf(stderr, "usage: token_gateway [--duration S] [--redis URL] [--workers N] [--tokens N]\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *url = NULL;
    int duration = 30, nworkers = 8, started = 0, nsched = 0, rc = 1;
    char path[4096];
    ck_options o;
    ck_cache_options co;
    worker w[MAX_WORKERS];
    pthread_t wt[MAX_WORKERS], st[2];
    scheduler sched[2];
    struct sigaction sa;
    const char *tmp = getenv("TMPDIR");
    int fd;

    G.ntokens = 3000;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL)
            return usage();
        if (strcmp(argv[i], "--duration") == 0)
            duration = atoi(v);
        else if (strcmp(argv[i], "--redis") == 0)
            url = v;
        else if (strcmp(argv[i], "--workers") == 0)
            nworkers = atoi(v);
        else if (strcmp(argv[i], "--tokens") == 0)
            G.ntokens = atoi(v);
        else
            return usage();
        i++;
    }
    if (duration < 1 || nworkers < 1 || nworkers > MAX_WORKERS || G.ntokens < 1 ||
        G.ntokens > 1000000)
        return usage();
    setvbuf(stdout, NULL, _IOLBF, 0);
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    /* The database: created, opened by every thread, then unlinked, so that
     * nothing is left behind however the program ends. */
    snprintf(path, sizeof path, "%s/token_gateway.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if ((fd = mkstemp(path)) < 0) {
        perror(path);
        return 1;
    }
    close(fd);
    memset(w, 0, sizeof w);
    memset(sched, 0, sizeof sched);
    if ((G.known = calloc((size_t)G.ntokens, sizeof *G.known)) == NULL || create_db(path) != 0)
        goto out_unlink;
    for (int i = 0; i < nworkers; i++) {
        w[i].id = i;
        w[i].rng = 0x9e3779b97f4a7c15ULL * (uint64_t)(i + 1);
        if (open_db(path, &w[i].db, &w[i].lookup,
                    "SELECT id, app_id, tenant_id, type, created_at, last_used_at"
                    " FROM api_tokens WHERE token = ?1") != 0)
            goto out_unlink;
    }
    for (int i = 0; i < 2; i++)
        if (open_db(path, &sched[i].db, &sched[i].report,
                    "SELECT tenant_id, COUNT(*) FROM api_tokens GROUP BY tenant_id"
                    " ORDER BY 2 DESC LIMIT 1") != 0)
            goto out_unlink;
    unlink(path);
    path[0] = '\0';
    printf("token_gateway: SQLite database with %d tokens across %d tenants; %d workers, %d s\n",
           G.ntokens, N_TENANTS, nworkers, duration);

    ck_options_init(&o);
    o.url = url; /* NULL: $CACHEKIT_REDIS_URL, else redis://127.0.0.1:6379/0 */
    o.log = log_line;
    o.pool_size = nworkers + 4;
    if (ck_client_new(&o, &G.client) != CK_OK) {
        fprintf(stderr, "token_gateway: bad Redis URL or options\n");
        goto out;
    }
    ck_cache_options_init(&co);
    co.name = "api_token";
    co.ttl_ms = 600000;        /* a token record lives 10 minutes in Redis */
    co.null_ttl_ms = 60000;    /* an unknown token one minute */
    co.stale_ttl_ms = 300000;  /* fail-safe: serve an expired record while the database fails */
    co.l1_max_entries = 10000; /* the in-process tier: hot tokens cost no round trip */
    co.l1_ttl_ms = 30000;
    if (ck_cache_new(G.client, &co, &G.tokens) != CK_OK) {
        fprintf(stderr, "token_gateway: cannot create the token cache\n");
        goto out;
    }

    G.log_budget = 3;
    for (; started < nworkers; started++)
        if (pthread_create(&wt[started], NULL, worker_main, &w[started]) != 0) {
            G.stop = 1;
            break;
        }
    for (; nsched < 2 && !G.stop; nsched++)
        if (pthread_create(&st[nsched], NULL, scheduler_main, &sched[nsched]) != 0) {
            G.stop = 1;
            break;
        }

    {
        uint64_t t_start = now_us(), prev_req = 0, prev_db = 0, prev_denied = 0, prev_401 = 0,
                 prev_dbreq = 0, prev_degraded = 0;
        size_t prev_lat = 0;
        int sec = 0;

        printf("    time     req/s   hit%%   db q/s   401/s   429/s   degraded/s   p99 ms\n");
        while (!G.stop && sec < duration) {
            uint64_t req, db, dbreq, denied, u401, lat_n;
            double p50, p99, max;
            ck_stats s;

            sec++;
            while (!G.stop && now_us() < t_start + (uint64_t)sec * 1000000u)
                sleep_us(20000);
            req = get(&G.requests);
            db = get(&G.db_queries);
            dbreq = get(&G.db_requests);
            u401 = get(&G.unauthorized);
            denied = get(&G.per_second) + get(&G.daily) + get(&G.concurrency);
            ck_client_stats(G.client, &s);
            pthread_mutex_lock(&G.mu);
            lat_n = G.nlat;
            G.log_budget = 3;
            pthread_mutex_unlock(&G.mu);
            percentiles(prev_lat, &p50, &p99, &max);
            printf("  %4ds %9" PRIu64 " %6.1f %8" PRIu64 " %7" PRIu64 " %7" PRIu64 " %12" PRIu64
                   " %8.2f\n", sec, req - prev_req,
                   req > prev_req ? 100.0 * (double)((req - prev_req) - (dbreq - prev_dbreq)) /
                                        (double)(req - prev_req) : 0.0,
                   db - prev_db, u401 - prev_401, denied - prev_denied,
                   s.degraded - prev_degraded, p99);
            prev_req = req;
            prev_db = db;
            prev_dbreq = dbreq;
            prev_401 = u401;
            prev_denied = denied;
            prev_degraded = s.degraded;
            prev_lat = (size_t)lat_n;
        }
        G.stop = 1;
        for (int i = 0; i < started; i++)
            pthread_join(wt[i], NULL);
        for (int i = 0; i < nsched; i++)
            pthread_join(st[i], NULL);
        sec = (int)((now_us() - t_start + 500000) / 1000000);
        if (started == nworkers && print_report(sec) == 0)
            rc = 0;
    }

out:
    ck_cache_free(G.tokens);
    ck_client_free(G.client);
out_unlink:
    if (path[0])
        unlink(path);
    for (int i = 0; i < MAX_WORKERS; i++) {
        sqlite3_finalize(w[i].lookup);
        sqlite3_close(w[i].db);
    }
    for (int i = 0; i < 2; i++) {
        sqlite3_finalize(sched[i].report);
        sqlite3_close(sched[i].db);
    }
    free(G.known);
    free(G.lat);
    return rc;
}
