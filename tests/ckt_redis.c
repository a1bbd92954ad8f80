/* Test support: private redis-servers, admin commands, logs, fds, time.
 * See ckt.h. Linux-specific where it helps (PR_SET_PDEATHSIG, /proc). */
#define _GNU_SOURCE
#include "ckt.h"
#include "ckt_spawn.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

/* ---- time ---- */

int64_t ckt_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t ckt_now_ms(void) { return ckt_now_us() / 1000; }

void ckt_sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

int ckt_wait_until(int (*cond)(void *), void *arg, int timeout_ms)
{
    int64_t end = ckt_now_ms() + timeout_ms;
    for (;;) {
        if (cond(arg))
            return 1;
        if (ckt_now_ms() >= end)
            return 0;
        ckt_sleep_ms(2);
    }
}

int ckt_under_valgrind(void)
{
    const char *v = getenv("CACHEKIT_TEST_VALGRIND");
    return v != NULL && *v != '\0' && *v != '0';
}

int ckt_under_tsan(void)
{
    const char *v = getenv("CACHEKIT_TEST_TSAN");
    return v != NULL && *v != '\0' && *v != '0';
}

int ckt_under_sanitizer(void)
{
    const char *v = getenv("CACHEKIT_TEST_SANITIZE");
    return v != NULL && *v != '\0' && *v != '0';
}

int ckt_scaled(int ms)
{
    if (ckt_under_valgrind())
        return 10 * ms;
    if (ckt_under_tsan())
        return 5 * ms;
    return ckt_under_sanitizer() ? 2 * ms : ms;
}

int ckt_slack_ms(void)
{
    return ckt_under_valgrind() ? 1000 : ckt_under_tsan() ? 100 : ckt_under_sanitizer() ? 30 : 15;
}

/* ---- shared server ---- */

const char *ckt_shared_url(void)
{
    const char *u = getenv("CACHEKIT_TEST_REDIS_URL");
    if (u == NULL || *u == '\0')
        ck_abort_msg("CACHEKIT_TEST_REDIS_URL is not set: run tests through "
                     "tests/run-with-redis.sh (make check does)");
    return u;
}

const char *ckt_shared_sock(void)
{
    const char *s = getenv("CACHEKIT_TEST_REDIS_SOCK");
    if (s == NULL || *s == '\0')
        ck_abort_msg("CACHEKIT_TEST_REDIS_SOCK is not set: run through run-with-redis.sh");
    return s;
}

const char *ckt_admin_url(void)
{
    const char *u = getenv("CACHEKIT_TEST_REDIS_ADMIN_URL");
    return u != NULL && *u != '\0' ? u : ckt_shared_url();
}

int ckt_acl_mode(void)
{
    const char *v = getenv("CACHEKIT_TEST_ACL");
    return v != NULL && strcmp(v, "1") == 0;
}

void ckt_acl_allow(const char *const *cmds)
{
    const char *argv[40] = { "ACL", "SETUSER", "ckuser" };
    int n = 3;
    redisReply *r;
    if (!ckt_acl_mode())
        return;
    for (; cmds[n - 3] != NULL && n < 39; n++)
        argv[n] = cmds[n - 3];
    argv[n] = NULL;
    r = ckt_cmd_at(ckt_admin_url(), argv);
    ck_assert_msg(r != NULL && r->type == REDIS_REPLY_STATUS, "ACL SETUSER ckuser %s failed: %s",
                  cmds[0], r != NULL && r->str != NULL ? r->str : "no reply");
    freeReplyObject(r);
}

/* ---- private servers ---- */

struct ckt_redis {
    pid_t pid;
    int port;
    char dir[64];
    char sock[96];
    char url[64];
    char **extra;
};

static int free_port(void)
{
    int port = ckt_free_port();
    ck_assert_msg(port > 0, "no free loopback port: %s", strerror(errno));
    return port;
}

int ckt_closed_port(void)
{
    return free_port(); /* never 6379 */
}

static int spawn(ckt_redis *r)
{
    char portbuf[16];
    const char *argv[64];
    int n = 0;
    pid_t pid;

    snprintf(portbuf, sizeof portbuf, "%d", r->port);
    argv[n++] = "redis-server";
    argv[n++] = "--port"; argv[n++] = portbuf;
    argv[n++] = "--bind"; argv[n++] = "127.0.0.1";
    argv[n++] = "--unixsocket"; argv[n++] = r->sock;
    argv[n++] = "--unixsocketperm"; argv[n++] = "700";
    argv[n++] = "--save"; argv[n++] = "";
    argv[n++] = "--appendonly"; argv[n++] = "no";
    argv[n++] = "--dir"; argv[n++] = r->dir;
    argv[n++] = "--logfile"; argv[n++] = "redis.log";
    argv[n++] = "--daemonize"; argv[n++] = "no";
    argv[n++] = "--enable-debug-command"; argv[n++] = "yes";
    for (char **e = r->extra; e != NULL && *e != NULL && n < 62; e++)
        argv[n++] = *e;
    argv[n] = NULL;

    pid = ckt_spawn_redis(argv);
    ck_assert_msg(pid >= 0, "fork: %s", strerror(errno));
    r->pid = pid;
    /* ready when it answers PING; gone (port taken) when it exited */
    if (ckt_await_redis(pid, r->port) != 0) {
        r->pid = 0;
        return -1;
    }
    return 0;
}

ckt_redis *ckt_redis_start(const char *const *extra)
{
    ckt_redis *r = calloc(1, sizeof *r);
    size_t n = 0;
    ck_assert(r != NULL);
    const char *tmp = getenv("TMPDIR");
    snprintf(r->dir, sizeof r->dir, "%s/ckt-redis.XXXXXX",
             tmp != NULL && *tmp != '\0' && strlen(tmp) < 40 ? tmp : "/tmp");
    ck_assert_msg(mkdtemp(r->dir) != NULL, "mkdtemp: %s", strerror(errno));
    snprintf(r->sock, sizeof r->sock, "%s/redis.sock", r->dir);
    while (extra != NULL && extra[n] != NULL)
        n++;
    r->extra = calloc(n + 1, sizeof *r->extra);
    ck_assert(r->extra != NULL);
    for (size_t i = 0; i < n; i++)
        r->extra[i] = strdup(extra[i]);
    for (int attempt = 0; attempt < 5; attempt++) {
        r->port = free_port();
        if (spawn(r) == 0) {
            snprintf(r->url, sizeof r->url, "redis://127.0.0.1:%d", r->port);
            return r;
        }
    }
    ck_abort_msg("could not start redis-server (is it installed? make deps)");
    return NULL;
}

void ckt_redis_kill(ckt_redis *r)
{
    if (r == NULL || r->pid <= 0)
        return;
    kill(r->pid, SIGKILL);
    waitpid(r->pid, NULL, 0);
    r->pid = 0;
}

void ckt_redis_restart(ckt_redis *r)
{
    ckt_redis_kill(r);
    for (int i = 0; i < 50; i++) {
        if (spawn(r) == 0)
            return;
        ckt_sleep_ms(20);
    }
    ck_abort_msg("redis-server did not restart on port %d", r->port);
}

void ckt_redis_stop(ckt_redis *r)
{
    char path[160];
    if (r == NULL)
        return;
    if (r->pid > 0)
        kill(r->pid, SIGCONT);
    ckt_redis_kill(r);
    snprintf(path, sizeof path, "%s/redis.log", r->dir);
    unlink(path);
    unlink(r->sock);
    rmdir(r->dir);
    for (char **e = r->extra; e != NULL && *e != NULL; e++)
        free(*e);
    free(r->extra);
    free(r);
}

int ckt_redis_port(const ckt_redis *r) { return r->port; }
const char *ckt_redis_url(const ckt_redis *r) { return r->url; }
const char *ckt_redis_sock(const ckt_redis *r) { return r->sock; }
pid_t ckt_redis_pid(const ckt_redis *r) { return r->pid; }
void ckt_redis_pause(ckt_redis *r) { ck_assert(r->pid > 0 && kill(r->pid, SIGSTOP) == 0); }
void ckt_redis_resume(ckt_redis *r) { ck_assert(r->pid > 0 && kill(r->pid, SIGCONT) == 0); }

static int url_port(const char *url)
{
    const char *p = strrchr(url, ':');
    ck_assert_msg(strncmp(url, "redis://", 8) == 0 && p != NULL, "test URL %s", url);
    return atoi(p + 1);
}

redisReply *ckt_cmd_at(const char *url, const char *const *argv)
{
    return ckt_cmd_port(url_port(url), argv);
}

redisReply *ckt_redis_cmd(const ckt_redis *r, const char *const *argv)
{
    return ckt_cmd_at(r->url, argv);
}

/* Walk CLIENT LIST; for each client named prefix*, count it or kill it. */
static int clients_named(const char *url, const char *prefix, int kill_them)
{
    static const char *const list[] = { "CLIENT", "LIST", NULL };
    redisReply *rep = ckt_cmd_at(url, list);
    int n = 0;
    ck_assert_msg(rep != NULL && rep->type == REDIS_REPLY_STRING, "CLIENT LIST failed");
    for (char *line = rep->str; line != NULL && *line != '\0';) {
        char *eol = strchr(line, '\n');
        char *name = strstr(line, " name=");
        if (eol != NULL)
            *eol = '\0';
        if (name != NULL && strncmp(name + 6, prefix, strlen(prefix)) == 0) {
            n++;
            if (kill_them) {
                char id[32];
                const char *k[] = { "CLIENT", "KILL", "ID", id, NULL };
                snprintf(id, sizeof id, "%lld", strtoll(line + 3, NULL, 10));
                redisReply *kr = ckt_cmd_at(url, k);
                if (kr != NULL)
                    freeReplyObject(kr);
            }
        }
        line = eol != NULL ? eol + 1 : NULL;
    }
    freeReplyObject(rep);
    return n;
}

int ckt_clients_named(const char *url, const char *prefix)
{
    return clients_named(url, prefix, 0);
}

int ckt_kill_clients_named(const char *url, const char *prefix)
{
    return clients_named(url, prefix, 1);
}

/* ---- listener that never accepts ---- */

void ckt_listener_open(ckt_listener *l)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    l->fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert(l->fd >= 0);
    ck_assert(bind(l->fd, (struct sockaddr *)&a, sizeof a) == 0);
    ck_assert(listen(l->fd, 1) == 0);
    ck_assert(getsockname(l->fd, (struct sockaddr *)&a, &alen) == 0);
    l->port = ntohs(a.sin_port);
    snprintf(l->url, sizeof l->url, "redis://127.0.0.1:%d", l->port);
}

void ckt_listener_close(ckt_listener *l)
{
    if (l->fd >= 0)
        close(l->fd);
    l->fd = -1;
}

/* ---- logs ---- */

void ckt_log_init(ckt_log *l)
{
    memset(l, 0, sizeof *l);
    pthread_mutex_init(&l->mu, NULL);
}

void ckt_log_free(ckt_log *l)
{
    free(l->buf);
    pthread_mutex_destroy(&l->mu);
}

void ckt_log_fn(void *user, int level, const char *msg)
{
    ckt_log *l = user;
    size_t need = strlen(msg) + 16;
    pthread_mutex_lock(&l->mu);
    if (l->len + need + 1 > l->cap) {
        size_t cap = (l->cap + need) * 2;
        char *nb = realloc(l->buf, cap);
        if (nb == NULL) {
            pthread_mutex_unlock(&l->mu);
            return;
        }
        l->buf = nb;
        l->cap = cap;
    }
    l->len += (size_t)snprintf(l->buf + l->len, l->cap - l->len, "L%d %s\n", level, msg);
    l->count++;
    pthread_mutex_unlock(&l->mu);
    if (getenv("CKT_SHOW_LOG") != NULL)
        fprintf(stderr, "log L%d %s\n", level, msg);
}

int ckt_log_has(ckt_log *l, const char *needle)
{
    int found;
    pthread_mutex_lock(&l->mu);
    found = l->buf != NULL && memmem(l->buf, l->len, needle, strlen(needle)) != NULL;
    pthread_mutex_unlock(&l->mu);
    return found;
}

void ckt_log_reset(ckt_log *l)
{
    pthread_mutex_lock(&l->mu);
    l->len = 0;
    l->count = 0;
    if (l->buf != NULL)
        l->buf[0] = '\0';
    pthread_mutex_unlock(&l->mu);
}

/* ---- process ---- */

int ckt_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    ck_assert(d != NULL);
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    return n - 3; /* ".", ".." and the directory's own fd */
}

void ckt_options(ck_options *o, const char *url)
{
    ck_options_init(o);
    o->url = url;
    /* valgrind runs ~50x slower, ThreadSanitizer ~5-15x: keep functional
     * tests about function (CI's TSan run once failed four suites on 100 ms
     * timeouts while the VM host stalled it) */
    if (ckt_under_valgrind()) {
        o->connect_timeout_ms = 3000;
        o->command_timeout_ms = 2000;
        o->pool_wait_ms = 2000;
    } else if (ckt_under_tsan() || ckt_under_sanitizer()) {
        o->connect_timeout_ms = 1000;
        o->command_timeout_ms = 500;
        o->pool_wait_ms = 500;
    } else {
        o->connect_timeout_ms = 200;
        o->command_timeout_ms = 100;
        o->pool_wait_ms = 50;
    }
}
