/* The pool and connection lifecycle: a bounded pool under 16 threads, no fd
 * leak, pool exhaustion, server-side kills and restarts, the script registry
 * (NOSCRIPT), oversized replies, fork() and SIGPIPE. */
#define _GNU_SOURCE
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <dirent.h>
#include <unistd.h>
#include <hiredis/hiredis.h>

#include "ckt.h"
#include "internal.h"

static ck_client *pool_client(const char *url, int pool_size, int pool_wait_ms)
{
    /* the tests' own commands on the library's connections (ck_client_run,
     * the bump script): the host's to grant under make check-acl */
    static const char *const host_cmds[] = { "+incr", "+client|id", NULL };
    ck_options o;
    ck_client *c = NULL;
    ckt_acl_allow(host_cmds);
    ckt_options(&o, url);
    o.pool_size = pool_size;
    o.pool_wait_ms = pool_wait_ms;
    if (ckt_under_valgrind()) {
        o.command_timeout_ms = 2000;
        o.connect_timeout_ms = 2000;
    }
    ck_assert_int_eq(ck_client_new(&o, &c), CK_OK);
    return c;
}

static char my_name[32]; /* "ck:<pid>": the names of this process's connections */

static const char *name_prefix(void)
{
    snprintf(my_name, sizeof my_name, "ck:%d", (int)getpid());
    return my_name;
}

/* ---- 16 threads, pool_size 4 ---- */

typedef struct crowd {
    ck_client *c;
    int per_thread;
    _Atomic long errors;
    _Atomic int running;
    _Atomic int max_conns;
} crowd;

static ck_status incr_fn(redisContext *ctx, void *user)
{
    redisReply *r = redisCommand(ctx, "INCR %s", (const char *)user);
    if (r == NULL)
        return CK_E_UNAVAILABLE;
    ck_status st = r->type == REDIS_REPLY_INTEGER ? CK_OK : CK_E_PROTOCOL;
    freeReplyObject(r);
    return st;
}

static void *crowd_main(void *arg)
{
    crowd *w = arg;
    static const char *get[] = { "GET", "ckt:pool:n" };
    static const size_t getl[] = { 3, 10 };
    for (int i = 0; i < w->per_thread; i++) {
        ck_status st;
        if (i % 2 == 0) {
            st = ck_client_run(w->c, incr_fn, (void *)"ckt:pool:n");
        } else {
            redisReply *r = NULL;
            st = ck__command(w->c, "ckt:pool:n", 2, get, getl, 0, &r, NULL);
            if (r != NULL)
                freeReplyObject(r);
        }
        if (st != CK_OK)
            atomic_fetch_add(&w->errors, 1);
    }
    atomic_fetch_sub(&w->running, 1);
    return NULL;
}

START_TEST(sixteen_threads_four_connections)
{
    enum { THREADS = 16 };
    const char *del[] = { "DEL", "ckt:pool:n", NULL };
    const char *get[] = { "GET", "ckt:pool:n", NULL };
    pthread_t th[THREADS];
    crowd w = { .per_thread = ckt_under_valgrind() ? 20 : 400 };
    int fds0 = ckt_open_fds();
    redisReply *r = ckt_cmd_at(ckt_shared_url(), del);
    freeReplyObject(r);

    w.c = pool_client(ckt_shared_url(), 4, 5000); /* never deadlock: long waits are fine */
    atomic_store(&w.running, THREADS);
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, crowd_main, &w), 0);
    /* watch the server's view while they run */
    int most = 0;
    while (atomic_load(&w.running) > 0) {
        int n = ckt_clients_named(ckt_shared_url(), name_prefix());
        if (n > most)
            most = n;
        ckt_sleep_ms(5);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    ck_assert_int_eq(atomic_load(&w.errors), 0);
    ck_assert_int_le(most, 4);
    ck_assert_int_le(ckt_clients_named(ckt_shared_url(), name_prefix()), 4);
    r = ckt_cmd_at(ckt_shared_url(), get);
    ck_assert(r != NULL && r->type == REDIS_REPLY_STRING);
    ck_assert_int_eq(atoi(r->str), THREADS * ((w.per_thread + 1) / 2));
    freeReplyObject(r);
    ck_client_free(w.c);
    ck_assert_int_eq(ckt_open_fds(), fds0);
}
END_TEST

static int fd_goal;
static int fds_at_goal(void *arg)
{
    (void)arg;
    return ckt_open_fds() == fd_goal;
}

/* Failing calls of every kind leave no descriptor behind. */
START_TEST(no_fd_leak_on_failures)
{
    ckt_redis *r = ckt_redis_start(NULL);
    int fds0 = ckt_open_fds();
    ckt_proxy *p = ckt_proxy_start(ckt_redis_port(r));
    fd_goal = fds0 + 3 + 1 + 2; /* proxy (listener, wake pipe), our connection, its pair */
    ck_options o;
    ck_client *c = NULL;
    ckt_options(&o, ckt_proxy_url(p));
    o.breaker_failures = 100000;
    o.command_timeout_ms = 50;
    o.connect_timeout_ms = 50;
    ck_assert_int_eq(ck_client_new(&o, &c), CK_OK);
    static const ckt_proxy_mode modes[] = { CKT_PASS, CKT_RESET, CKT_BLACKHOLE, CKT_DRIP, CKT_PASS };
    for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
        ckt_proxy_set(p, modes[m], 20);
        for (int i = 0; i < 5; i++)
            (void)ck_client_ping(c);
    }
    ck_assert_int_eq(ck_client_ping(c), CK_OK);
    /* the proxy closes the pairs of failed connections as it notices them */
    ck_assert_msg(ckt_wait_until(fds_at_goal, NULL, 2000), "%d fds open, want %d",
                  ckt_open_fds(), fd_goal);
    ck_client_free(c);
    ckt_proxy_stop(p);
    ck_assert_int_eq(ckt_open_fds(), fds0);
    ckt_redis_stop(r);
}
END_TEST

/* ---- pool exhaustion ---- */

typedef struct holder {
    ck_client *c;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int inside, release;
} holder;

static ck_status hold_fn(redisContext *ctx, void *user)
{
    holder *h = user;
    (void)ctx;
    pthread_mutex_lock(&h->mu);
    h->inside = 1;
    pthread_cond_broadcast(&h->cv);
    while (!h->release)
        pthread_cond_wait(&h->cv, &h->mu);
    pthread_mutex_unlock(&h->mu);
    return CK_OK;
}

static void *holder_main(void *arg)
{
    holder *h = arg;
    ck_assert_int_eq(ck_client_run(h->c, hold_fn, h), CK_OK);
    return NULL;
}

START_TEST(pool_exhaustion_is_not_an_outage)
{
    enum { WAIT_MS = 30 };
    holder h = { .inside = 0, .release = 0 };
    pthread_t th;
    ck_options o;
    ck_stats s;
    ckt_options(&o, ckt_shared_url());
    o.pool_size = 1;
    o.pool_wait_ms = WAIT_MS;
    o.command_timeout_ms = 5000; /* the holder keeps its connection meanwhile */
    o.breaker_failures = 1;
    ck_assert_int_eq(ck_client_new(&o, &h.c), CK_OK);
    pthread_mutex_init(&h.mu, NULL);
    pthread_cond_init(&h.cv, NULL);
    ck_assert_int_eq(pthread_create(&th, NULL, holder_main, &h), 0);
    pthread_mutex_lock(&h.mu);
    while (!h.inside)
        pthread_cond_wait(&h.cv, &h.mu);
    pthread_mutex_unlock(&h.mu);

    int64_t t0 = ckt_now_us();
    ck_assert_int_eq(ck_client_ping(h.c), CK_E_UNAVAILABLE);
    int64_t dt = (ckt_now_us() - t0) / 1000;
    ck_assert_msg(dt >= WAIT_MS - 1 && dt <= WAIT_MS + ckt_slack_ms(), "waited %lld ms",
                  (long long)dt);

    pthread_mutex_lock(&h.mu);
    h.release = 1;
    pthread_cond_broadcast(&h.cv);
    pthread_mutex_unlock(&h.mu);
    pthread_join(th, NULL);

    ck_client_stats(h.c, &s);
    ck_assert_uint_eq(s.pool_waits, 1);
    ck_assert_uint_eq(s.breaker_opens, 0); /* breaker_failures = 1, yet closed */
    ck_assert_uint_eq(s.redis_errors, 0);
    ck_assert_uint_eq(s.degraded, 1);
    ck_assert_int_eq(ck_client_ping(h.c), CK_OK);
    ck_client_free(h.c);
    pthread_cond_destroy(&h.cv);
    pthread_mutex_destroy(&h.mu);
}
END_TEST

/* ---- server-side kills and restarts ---- */

static ck__script answer = { "ckt_answer", "return tonumber(ARGV[1]) + 1", "" };
static ck__script bump = { "ckt_bump", "return redis.call('INCR', KEYS[1])", "" };

static long long eval_answer(ck_client *c, long long x, ck_status *st)
{
    char arg[24];
    const char *args[] = { arg };
    size_t lens[1];
    const char *keys[] = { "ckt:pool:eval" };
    size_t klens[] = { 13 };
    redisReply *r = NULL;
    long long v = -1;
    lens[0] = (size_t)snprintf(arg, sizeof arg, "%lld", x);
    *st = ck__eval(c, &answer, 1, keys, klens, 1, args, lens, 0, &r, NULL);
    if (*st == CK_OK && r->type == REDIS_REPLY_INTEGER)
        v = r->integer;
    if (r != NULL)
        freeReplyObject(r);
    return v;
}

static ck_status eval_bump(ck_client *c)
{
    const char *keys[] = { "ckt:pool:bump" };
    size_t klens[] = { 13 };
    redisReply *r = NULL;
    ck_status st = ck__eval(c, &bump, 1, keys, klens, 0, NULL, NULL, CK__CMD_WRITE, &r, NULL);
    if (st == CK_OK && r->type != REDIS_REPLY_INTEGER)
        st = CK_E_PROTOCOL;
    if (r != NULL)
        freeReplyObject(r);
    return st;
}

typedef struct par { ck_client *c; _Atomic long errors; } par;

static void *par_main(void *arg)
{
    par *p = arg;
    ck_status st;
    if (ck_client_ping(p->c) != CK_OK)
        atomic_fetch_add(&p->errors, 1);
    if (eval_answer(p->c, 1, &st) != 2 || st != CK_OK)
        atomic_fetch_add(&p->errors, 1);
    return NULL;
}

/* Fill the pool with n connections by running n calls at once. */
static void fill_pool(ck_client *c, int n)
{
    pthread_t th[8];
    par p = { c, 0 };
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, par_main, &p), 0);
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    ck_assert_int_eq(atomic_load(&p.errors), 0);
}

START_TEST(client_kill_between_calls_costs_nothing)
{
    ck_client *c = pool_client(ckt_shared_url(), 4, 1000);
    ck_stats s;
    ck_status st;
    int rounds = ckt_under_valgrind() ? 5 : 40;
    for (int i = 0; i < rounds; i++) {
        fill_pool(c, 4);
        ck_assert_int_ge(ckt_kill_clients_named(ckt_shared_url(), name_prefix()), 1);
        ck_assert_int_eq(ck_client_ping(c), CK_OK);
        ck_assert_int_eq(eval_answer(c, i, &st), i + 1);
        ck_assert_int_eq(st, CK_OK);
        ck_assert_int_eq(eval_bump(c), CK_OK);          /* a writing script too */
        ck_assert_int_eq(ck_client_run(c, incr_fn, (void *)"ckt:pool:k"), CK_OK);
    }
    ck_client_stats(c, &s);
    ck_assert_uint_eq(s.redis_errors, 0);
    ck_assert_uint_eq(s.degraded, 0);
    ck_assert_uint_eq(s.breaker_opens, 0);
    ck_client_free(c);
}
END_TEST

START_TEST(restart_and_script_flush_are_invisible)
{
    ckt_redis *r = ckt_redis_start(NULL);
    ck_client *c = pool_client(ckt_redis_url(r), 4, 1000);
    const char *flush[] = { "SCRIPT", "FLUSH", NULL };
    ck_status st;
    ck_stats s;
    ck_assert_int_eq(eval_answer(c, 41, &st), 42);
    fill_pool(c, 3);
    for (int i = 0; i < 3; i++) {
        /* a restart without persistence forgets every script */
        ckt_redis_restart(r);
        ck_assert_int_eq(eval_answer(c, i, &st), i + 1);
        ck_assert_int_eq(st, CK_OK);
        ck_assert_int_eq(eval_bump(c), CK_OK);
        /* SCRIPT FLUSH between calls */
        redisReply *rep = ckt_redis_cmd(r, flush);
        ck_assert_ptr_nonnull(rep);
        freeReplyObject(rep);
        ck_assert_int_eq(eval_bump(c), CK_OK);
        ck_assert_int_eq(eval_answer(c, 7, &st), 8);
    }
    ck_client_stats(c, &s);
    ck_assert_uint_eq(s.redis_errors, 0);
    ck_assert_uint_eq(s.degraded, 0);
    ck_client_free(c);
    ckt_redis_stop(r);
}
END_TEST

/* ---- replies over max_reply_bytes ---- */

START_TEST(oversized_reply_is_abandoned)
{
    static const char *get[] = { "GET", "ckt:pool:big" };
    static const size_t getl[] = { 3, 12 };
    size_t big = 4u << 20;
    char *val = malloc(big);
    const char *set[] = { "SET", "ckt:pool:big", val, NULL };
    const char *lrange[] = { "RPUSH", "ckt:pool:list", NULL };
    ck_options o;
    ck_client *c = NULL;
    redisReply *r;
    ckt_log lg;
    ck_assert_ptr_nonnull(val);
    memset(val, 'x', big - 1);
    val[big - 1] = '\0';
    r = ckt_cmd_at(ckt_shared_url(), set);
    ck_assert_ptr_nonnull(r);
    freeReplyObject(r);
    free(val);
    (void)lrange;

    ckt_log_init(&lg);
    ckt_options(&o, ckt_shared_url());
    o.max_reply_bytes = 64 * 1024;
    o.log = ckt_log_fn;
    o.log_user = &lg;
    ck_assert_int_eq(ck_client_new(&o, &c), CK_OK);
    ck_assert_int_eq(ck_client_ping(c), CK_OK);
    ck_assert_int_eq(ckt_clients_named(ckt_shared_url(), name_prefix()), 1);
    r = NULL;
    ck_assert_int_eq(ck__command(c, "ckt:pool:big", 2, get, getl, 0, &r, NULL), CK_E_PROTOCOL);
    ck_assert_ptr_null(r);
    ck_assert(ckt_log_has(&lg, "connection closed"));
    /* the connection was closed, not kept with 4 MiB in flight */
    int64_t until = ckt_now_ms() + 2000;
    while (ckt_clients_named(ckt_shared_url(), name_prefix()) != 0 && ckt_now_ms() < until)
        ckt_sleep_ms(2);
    ck_assert_int_eq(ckt_clients_named(ckt_shared_url(), name_prefix()), 0);
    ck_assert_int_eq(ck_client_ping(c), CK_OK);
    ck_stats s;
    ck_client_stats(c, &s);
    ck_assert_uint_eq(s.breaker_opens, 0);
    ck_client_free(c);
    ckt_log_free(&lg);
}
END_TEST

/* A server that answers every command with +OK (INFO with an empty bulk),
 * and the GET of "ckt:hostile" with an array header announcing 999999999
 * elements, then nothing: what a broken or hostile endpoint can send. */
typedef struct hostile_srv {
    ckt_listener l;
    pthread_t th;
    atomic_int announced;
} hostile_srv;

/* One RESP request at *p (argv form); 0 when incomplete. */
static int next_request(const char **p, const char *end, int *info, int *hostile)
{
    const char *q = *p;
    long n, len;
    char *e;
    if (q >= end || *q != '*' || memchr(q, '\n', (size_t)(end - q)) == NULL)
        return 0;
    n = strtol(q + 1, &e, 10);
    q = strchr(q, '\n') + 1;
    for (long i = 0; i < n; i++) {
        if (q >= end || *q != '$' || memchr(q, '\n', (size_t)(end - q)) == NULL)
            return 0;
        len = strtol(q + 1, &e, 10);
        q = strchr(q, '\n') + 1;
        if (end - q < len + 2)
            return 0;
        if (i == 0 && len == 4 && memcmp(q, "INFO", 4) == 0)
            *info = 1;
        if (len == 11 && memcmp(q, "ckt:hostile", 11) == 0)
            *hostile = 1;
        q += len + 2;
    }
    *p = q;
    return 1;
}

static void *hostile_main(void *arg)
{
    hostile_srv *h = arg;
    char buf[4096];
    size_t have = 0;
    int fd = accept(h->l.fd, NULL, NULL);
    if (fd < 0)
        return NULL;
    for (;;) {
        ssize_t n = recv(fd, buf + have, sizeof buf - have, 0);
        const char *p = buf;
        int info = 0, hostile = 0;
        if (n <= 0)
            break;
        have += (size_t)n;
        while (next_request(&p, buf + have, &info, &hostile)) {
            const char *out = hostile ? "*999999999\r\n" : info ? "$0\r\n\r\n" : "+OK\r\n";
            /* before the send: the client may assert as soon as it reads */
            if (hostile)
                atomic_store(&h->announced, 1);
            if (send(fd, out, strlen(out), MSG_NOSIGNAL) < 0)
                break;
            info = hostile = 0;
        }
        have -= (size_t)(p - buf);
        memmove(buf, p, have);
    }
    close(fd);
    return NULL;
}

START_TEST(huge_array_header_is_refused_unallocated)
{
    static const char *get[] = { "GET", "ckt:hostile" };
    static const size_t getl[] = { 3, 11 };
    hostile_srv h;
    ck_options o;
    ck_client *c = NULL;
    redisReply *r = NULL;
    ckt_log lg;

    ckt_listener_open(&h.l);
    atomic_init(&h.announced, 0);
    ck_assert_int_eq(pthread_create(&h.th, NULL, hostile_main, &h), 0);
    ckt_log_init(&lg);
    ckt_options(&o, h.l.url);
    /* room for a loaded machine: without the guard the call would wait
     * these 3 s out and fail as CK_E_UNAVAILABLE */
    o.connect_timeout_ms = 3000;
    o.command_timeout_ms = 3000;
    o.log = ckt_log_fn;
    o.log_user = &lg;
    ck_assert_int_eq(ck_client_new(&o, &c), CK_OK);
    /* hiredis alone would allocate an 8 GB element table, then wait for
     * the elements until the deadline (CK_E_UNAVAILABLE): the guard refuses
     * the header at once, as a reply over max_reply_bytes */
    ck_assert_int_eq(ck__command(c, "ckt:hostile", 2, get, getl, 0, &r, NULL), CK_E_PROTOCOL);
    ck_assert_ptr_null(r);
    ck_assert_int_eq(atomic_load(&h.announced), 1);
    ck_assert(ckt_log_has(&lg, "larger than max_reply_bytes"));
    ck_client_free(c); /* closes the connection: the server thread ends */
    pthread_join(h.th, NULL);
    ckt_listener_close(&h.l);
    ckt_log_free(&lg);
}
END_TEST

/* ---- fork ---- */

static ck_status client_id_fn(redisContext *ctx, void *user)
{
    redisReply *r = redisCommand(ctx, "CLIENT ID");
    if (r == NULL)
        return CK_E_UNAVAILABLE;
    *(long long *)user = r->integer;
    freeReplyObject(r);
    return CK_OK;
}

/* Every other thread of this process is asleep (state S in /proc): the
 * client's timer thread has finished starting. GCC 12's ASan does not guard
 * its allocator across fork(), so forking while a new thread is still
 * setting up can deadlock the child; the library is not involved. */
static int other_threads_asleep(void *arg)
{
    char path[300], buf[256];
    int ok = 1;
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    (void)arg;
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || atoi(e->d_name) == (int)gettid())
            continue;
        snprintf(path, sizeof path, "/proc/self/task/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        char *rp = strrchr(buf, ')');
        if (rp == NULL || rp[1] != ' ' || rp[2] != 'S')
            ok = 0;
    }
    if (d != NULL)
        closedir(d);
    return ok;
}

START_TEST(fork_child_uses_its_own_connection)
{
    ck_client *c = pool_client(ckt_shared_url(), 2, 1000);
    long long parent_id = 0, again = 0;
    int status;
    ck_assert_int_eq(ck_client_run(c, client_id_fn, &parent_id), CK_OK);
    ck_assert(ckt_wait_until(other_threads_asleep, NULL, 5000));
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        long long child_id = 0;
        int ok = ck_client_run(c, client_id_fn, &child_id) == CK_OK && child_id != parent_id &&
                 child_id > 0 && ck_client_ping(c) == CK_OK;
        ck_client_free(c); /* must not disturb the parent's socket */
        _exit(ok ? 0 : 1);
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child failed");
    ck_assert_int_eq(ck_client_run(c, client_id_fn, &again), CK_OK);
    ck_assert_int_eq(again, parent_id); /* the parent's pooled connection survived */
    ck_client_free(c);
}
END_TEST

/* ---- SIGPIPE ---- */

static ck_status write_after_kill_fn(redisContext *ctx, void *user)
{
    size_t n = 1u << 20;
    char *v = malloc(n);
    redisReply *r;
    (void)user;
    if (v == NULL)
        return CK_E_NOMEM;
    memset(v, 'y', n - 1);
    v[n - 1] = '\0';
    /* our own connection dies under us, then we write a lot to it */
    ckt_kill_clients_named(ckt_shared_url(), name_prefix());
    for (int i = 0; i < 4; i++) {
        r = redisCommand(ctx, "SET ckt:pool:pipe %s", v);
        if (r == NULL)
            break;
        freeReplyObject(r);
    }
    free(v);
    return CK_OK;
}

START_TEST(sigpipe_never_reaches_the_host)
{
    ck_client *c;
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigaction(SIGPIPE, &sa, &old);
    c = pool_client(ckt_shared_url(), 1, 1000);
    ck_assert_int_eq(ck_client_ping(c), CK_OK);
    /* a dead connection inside ck_client_run: UNAVAILABLE, and we are alive */
    ck_assert_int_eq(ck_client_run(c, write_after_kill_fn, NULL), CK_E_UNAVAILABLE);
    /* and the library's own writes to a killed connection */
    for (int i = 0; i < 20; i++) {
        ckt_kill_clients_named(ckt_shared_url(), name_prefix());
        (void)ck_client_ping(c);
    }
    ck_assert_int_eq(ck_client_ping(c), CK_OK);
    ck_client_free(c);
    sigaction(SIGPIPE, &old, NULL);
}
END_TEST

Suite *ckt_suite(void)
{
    Suite *s = suite_create("pool");
    TCase *tc = tcase_create("pool");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, sixteen_threads_four_connections);
    tcase_add_test(tc, no_fd_leak_on_failures);
    tcase_add_test(tc, pool_exhaustion_is_not_an_outage);
    tcase_add_test(tc, client_kill_between_calls_costs_nothing);
    tcase_add_test(tc, restart_and_script_flush_are_invisible);
    tcase_add_test(tc, oversized_reply_is_abandoned);
    tcase_add_test(tc, huge_array_header_is_refused_unallocated);
    if (!ckt_under_tsan()) /* covered by the plain, ASan and valgrind runs */
        tcase_add_test(tc, fork_child_uses_its_own_connection);
    tcase_add_test(tc, sigpipe_never_reaches_the_host);
    suite_add_tcase(s, tc);
    return s;
}

#include "ckt_main.h"
