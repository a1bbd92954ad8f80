/* The `make demo` program: talk to Redis through libcachekit, then stop the
 * server and show what a service sees when Redis is gone: every call returns
 * within its deadline, then the breaker opens and calls cost nanoseconds.
 *
 *   demo [redis-url [redis-pidfile]]
 *
 * Without arguments it uses $CACHEKIT_REDIS_URL and $CACHEKIT_TEST_REDIS_PIDFILE
 * (scripts/demo.sh sets both for a throwaway redis-server). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <hiredis/hiredis.h>

#include <cachekit.h>

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void log_line(void *user, int level, const char *msg)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};

    (void)user;
    printf("      [cachekit %s] %s\n", names[level < 0 ? 0 : level > 3 ? 3 : level], msg);
}

/* A ck_redis_fn: the host's own Redis code, run on a pooled connection. */
static ck_status count_visit(redisContext *ctx, void *user)
{
    static const char *const argv[] = {"INCR", "demo:visits"};
    static const size_t lens[] = {4, 11};
    redisReply *r = redisCommandArgv(ctx, 2, (const char **)argv, lens);

    if (r == NULL)
        return CK_E_UNAVAILABLE; /* the library maps this anyway */
    if (r->type == REDIS_REPLY_INTEGER)
        *(long long *)user = r->integer;
    freeReplyObject(r);
    return CK_OK;
}

static int stop_server(const char *pidfile)
{
    FILE *f = fopen(pidfile, "r");
    long pid = 0;

    if (f == NULL || fscanf(f, "%ld", &pid) != 1 || pid <= 1) {
        if (f != NULL)
            fclose(f);
        return -1;
    }
    fclose(f);
    if (kill((pid_t)pid, SIGKILL) != 0)
        return -1;
    for (int i = 0; i < 500 && kill((pid_t)pid, 0) == 0; i++) { /* gone within 5 s */
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *url = argc > 1 ? argv[1] : getenv("CACHEKIT_REDIS_URL");
    const char *pidfile = argc > 2 ? argv[2] : getenv("CACHEKIT_TEST_REDIS_PIDFILE");
    long long visits = 0;
    ck_options o;
    ck_client *c;
    ck_status st;
    ck_stats stats;
    char prom[4096];
    double t;

    signal(SIGPIPE, SIG_IGN); /* as any server does */
    printf("libcachekit %s demo\n\n", ck_version());
    ck_options_init(&o);
    o.url = url; /* NULL: $CACHEKIT_REDIS_URL or redis://127.0.0.1:6379/0 */
    o.command_timeout_ms = 100;
    o.connect_timeout_ms = 200;
    o.breaker_failures = 3;
    o.breaker_cooldown_ms = 5000;
    o.log = log_line;
    o.log_level = CK_LOG_WARN;
    if ((st = ck_client_new(&o, &c)) != CK_OK) {
        fprintf(stderr, "ck_client_new: %s\n", ck_strerror(st));
        return 1;
    }

    printf("1. PING through the pool\n");
    t = now_ms();
    st = ck_client_ping(c);
    printf("   ck_client_ping -> %s (%.2f ms)\n\n", ck_strerror(st), now_ms() - t);
    if (st != CK_OK)
        return 1;

    printf("2. The host's own command through ck_client_run (INCR demo:visits)\n");
    for (int i = 0; i < 3; i++) {
        st = ck_client_run(c, count_visit, &visits);
        printf("   ck_client_run -> %s, visits = %lld\n", ck_strerror(st), visits);
    }
    printf("\n");

    if (pidfile == NULL || stop_server(pidfile) != 0) {
        printf("3. (no redis pidfile given: not stopping the server)\n");
        ck_client_free(c);
        return 0;
    }
    printf("3. redis-server stopped (SIGKILL). Fail-open: every call returns within its\n"
           "   deadline with CK_E_UNAVAILABLE; the host decides what to serve.\n");
    for (int i = 1; i <= 5; i++) {
        t = now_ms();
        st = ck_client_run(c, count_visit, &visits);
        printf("   call %d -> %s (%.3f ms)\n", i, ck_strerror(st), now_ms() - t);
    }
    {
        const int n = 1000000;
        t = now_ms();
        for (int i = 0; i < n; i++)
            ck_client_run(c, count_visit, &visits);
        printf("   breaker open: %d more calls took %.0f ns each, with no network I/O\n\n", n,
               (now_ms() - t) * 1e6 / n);
    }

    printf("4. Statistics (Prometheus text, excerpt)\n");
    ck_client_stats(c, &stats);
    ck_stats_format_prometheus(&stats, prom, sizeof prom);
    for (char *line = strtok(prom, "\n"); line != NULL; line = strtok(NULL, "\n"))
        if (line[0] != '#' && (strstr(line, "degraded") || strstr(line, "breaker") ||
                               strstr(line, "redis_errors")))
            printf("   %s\n", line);
    ck_client_free(c);
    printf("\ndone\n");
    return 0;
}
