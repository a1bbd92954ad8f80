/* The client against real servers: TCP and unix sockets, ck_client_run,
 * options and URL validation, AUTH (password, ACL user), SELECT, statistics. */
#define _GNU_SOURCE
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <hiredis/hiredis.h>

#include "ckt.h"
#include "internal.h"

static ck_client *new_client(const char *url, ckt_log *lg)
{
    ck_options o;
    ck_client *c = NULL;
    ckt_options(&o, url);
    if (lg != NULL) {
        o.log = ckt_log_fn;
        o.log_user = lg;
        o.log_level = CK_LOG_DEBUG;
    }
    ck_assert_int_eq(ck_client_new(&o, &c), CK_OK);
    ck_assert_ptr_nonnull(c);
    return c;
}

START_TEST(ping_tcp_and_unix)
{
    char url[256];
    ck_client *c = new_client(ckt_shared_url(), NULL);
    ck_assert_int_eq(ck_client_ping(c), CK_OK);
    ck_client_free(c);

    snprintf(url, sizeof url, "unix://%s", ckt_shared_sock());
    c = new_client(url, NULL);
    ck_assert_int_eq(ck_client_ping(c), CK_OK);
    ck_client_free(c);
}
END_TEST

START_TEST(url_from_environment)
{
    ck_options o;
    ck_client *c = NULL;
    setenv("CACHEKIT_REDIS_URL", ckt_shared_url(), 1);
    ck_options_init(&o);
    ck_assert_ptr_null(o.url);
    ck_assert_int_eq(ck_client_new(&o, &c), CK_OK);
    ck_assert_int_eq(ck_client_ping(c), CK_OK);
    ck_client_free(c);
    /* NULL options mean the defaults, which read the same variable */
    ck_assert_int_eq(ck_client_new(NULL, &c), CK_OK);
    ck_assert_int_eq(ck_client_ping(c), CK_OK);
    ck_client_free(c);
    unsetenv("CACHEKIT_REDIS_URL");
}
END_TEST

typedef struct run_arg { int calls; ck_status ret; long long incr; } run_arg;

static ck_status incr_fn(redisContext *ctx, void *user)
{
    run_arg *a = user;
    redisReply *r = redisCommand(ctx, "INCR ckt:client:run");
    a->calls++;
    if (r == NULL)
        return CK_E_UNAVAILABLE;
    a->incr = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    return a->ret;
}

START_TEST(run_returns_fn_status)
{
    static const ck_status rets[] = { CK_OK, CK_NOT_FOUND, CK_MISS, CK_BUSY, CK_E_INVALID,
                                      CK_E_LOADER, CK_E_CORRUPT };
    static const char *const host_cmds[] = { "+incr", NULL }; /* incr_fn's, under check-acl */
    ckt_acl_allow(host_cmds);
    ck_client *c = new_client(ckt_shared_url(), NULL);
    run_arg a = { 0, CK_OK, 0 };
    for (size_t i = 0; i < sizeof rets / sizeof rets[0]; i++) {
        a.ret = rets[i];
        ck_assert_int_eq(ck_client_run(c, incr_fn, &a), rets[i]);
        ck_assert_int_eq(a.calls, (int)i + 1);
        ck_assert_int_eq(a.incr, (long long)i + 1);
    }
    ck_assert_int_eq(ck_client_run(c, NULL, &a), CK_E_INVALID);
    ck_assert_int_eq(ck_client_run(NULL, incr_fn, &a), CK_E_INVALID);
    ck_assert_int_eq(ck_client_ping(NULL), CK_E_INVALID);
    ck_client_free(c);
    ck_client_free(NULL);
}
END_TEST

static ck_status rcvtimeo_fn(redisContext *ctx, void *user)
{
    struct timeval tv;
    socklen_t len = sizeof tv;
    ck_assert_int_eq(getsockopt(ctx->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, &len), 0);
    *(long long *)user = (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
    return CK_OK;
}

/* A pooled connection's socket reads with the command timeout (the first
 * read of a reply blocks in recv() instead of poll() and recv(); the
 * deadline tests of check_faults show it never outlasts a call's deadline):
 * TCP and unix alike. */
START_TEST(connections_read_with_the_command_timeout)
{
    char url[256];
    snprintf(url, sizeof url, "unix://%s", ckt_shared_sock());
    for (int i = 0; i < 2; i++) {
        ck_options o;
        ck_client *c = NULL;
        long long ms = -1;
        ckt_options(&o, i == 0 ? ckt_shared_url() : url);
        o.command_timeout_ms = 1234;
        ck_assert_int_eq(ck_client_new(&o, &c), CK_OK);
        ck_assert_int_eq(ck_client_run(c, rcvtimeo_fn, &ms), CK_OK);
        /* the kernel keeps it in ticks (HZ 100-1000), rounded up */
        ck_assert_int_ge(ms, 1234);
        ck_assert_int_le(ms, 1244);
        ck_client_free(c);
    }
}
END_TEST

static ck_status bad_url_status(const char *url, ckt_log *lg)
{
    ck_options o;
    ck_client *c = (ck_client *)&o; /* must be reset to NULL on failure */
    ck_status st;
    ckt_options(&o, url);
    o.log = ckt_log_fn;
    o.log_user = lg;
    st = ck_client_new(&o, &c);
    ck_assert_ptr_null(c);
    return st;
}

START_TEST(bad_urls_are_invalid_and_logged)
{
    static const char *const bad[] = {
        "", "http://127.0.0.1:1", "redis://", "redis://127.0.0.1:0", "redis://127.0.0.1:65536",
        "redis://127.0.0.1:12x", "redis://127.0.0.1:1/-1", "redis://127.0.0.1:1/abc",
        "redis://127.0.0.1:1/99999999999", "unix://", "unix://relative/path",
        "unix:///tmp/x.sock?db=", "unix:///tmp/x.sock?db=1x", "redis://u:p%zz@127.0.0.1:1",
        "redis://[::1:1", "redis://127.0.0.1:1 /0", "redis://a\nb:1",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ckt_log lg;
        ckt_log_init(&lg);
        ck_assert_msg(bad_url_status(bad[i], &lg) == CK_E_INVALID, "url %zu accepted", i);
        ck_assert_msg(ckt_log_has(&lg, "ck_client_new"), "no log line for url %zu", i);
        ckt_log_free(&lg);
    }
}
END_TEST

START_TEST(bad_options_are_invalid)
{
    ck_options o;
    ck_client *c = NULL;
    ckt_log lg;
    struct { const char *what; void (*set)(ck_options *); } cases[6];
    int n = 0;
    ckt_log_init(&lg);
#define CASE(label, stmt) \
    do { ckt_options(&o, ckt_shared_url()); o.log = ckt_log_fn; o.log_user = &lg; stmt; \
         c = NULL; \
         ck_assert_msg(ck_client_new(&o, &c) == CK_E_INVALID, "%s accepted", label); \
         ck_assert_ptr_null(c); n++; } while (0)
    CASE("pool_size 0", o.pool_size = 0);
    CASE("pool_size -1", o.pool_size = -1);
    CASE("connect_timeout 0", o.connect_timeout_ms = 0);
    CASE("command_timeout -5", o.command_timeout_ms = -5);
    CASE("pool_wait -1", o.pool_wait_ms = -1);
    CASE("breaker_failures 0", o.breaker_failures = 0);
    CASE("breaker_cooldown -1", o.breaker_cooldown_ms = -1);
    CASE("fail_mode 7", o.fail_mode = (ck_fail_mode)7);
    CASE("local_instances 0", o.local_instances = 0);
    CASE("max_reply_bytes 0", o.max_reply_bytes = 0);
    CASE("prefix empty", o.prefix = "");
    CASE("prefix with colon", o.prefix = "a:b");
    CASE("prefix with brace", o.prefix = "a{b");
    CASE("prefix too long",
         o.prefix = "0123456789012345678901234567890123456789012345678901234567890123456789");
#undef CASE
    (void)cases;
    ck_assert_int_eq(lg.count >= n, 1);
    ck_assert_int_eq(ck_client_new(NULL, NULL), CK_E_INVALID);
    ckt_log_free(&lg);
}
END_TEST

static const char PASSWORD[] = "Pa:ss@w/rd%secret";
static const char PASSWORD_ENC[] = "Pa%3Ass%40w%2Frd%25secret";

START_TEST(password_auth_and_no_leak)
{
    const char *extra[] = { "--requirepass", PASSWORD, NULL };
    ckt_redis *r = ckt_redis_start(extra);
    char url[256];
    ck_client *c;
    ckt_log lg;

    ckt_log_init(&lg);
    snprintf(url, sizeof url, "redis://:%s@127.0.0.1:%d/0", PASSWORD_ENC, ckt_redis_port(r));
    c = new_client(url, &lg);
    ck_assert_int_eq(ck_client_ping(c), CK_OK);
    ck_client_free(c);

    /* wrong password: unavailable, logged, and neither password in the log */
    snprintf(url, sizeof url, "redis://:wrong%%2Dsecret-pw@127.0.0.1:%d", ckt_redis_port(r));
    c = new_client(url, &lg);
    ck_assert_int_eq(ck_client_ping(c), CK_E_UNAVAILABLE);
    ck_assert_int_eq(ck_client_ping(c), CK_E_UNAVAILABLE);
    ck_client_free(c);
    ck_assert(ckt_log_has(&lg, "authentication failed"));

    /* no password at all against requirepass */
    c = new_client(ckt_redis_url(r), &lg);
    ck_assert_int_eq(ck_client_ping(c), CK_E_UNAVAILABLE);
    ck_client_free(c);
    ck_assert(ckt_log_has(&lg, "requires a password"));

    ck_assert(!ckt_log_has(&lg, "secret"));
    ck_assert(!ckt_log_has(&lg, "Pa:ss"));
    ck_assert(!ckt_log_has(&lg, "Pa%3Ass"));
    ck_assert(!ckt_log_has(&lg, "wrong"));
    ck_assert(lg.count > 0);
    ckt_log_free(&lg);
    ckt_redis_stop(r);
}
END_TEST

/* The ACL of docs/client.md, as a command. */
static void acl_user(ckt_redis *r, const char *user, const char *pass, int with_optional)
{
    char pw[128];
    const char *full[] = { "ACL", "SETUSER", user, "reset", "on", pw, "~ck:*", "&ck:*", "+ping",
                           "+select", "+evalsha", "+script|load", "+client|setname", "+info",
                           NULL };
    redisReply *rep;
    snprintf(pw, sizeof pw, ">%s", pass);
    if (!with_optional)
        full[12] = NULL; /* drop +client|setname and +info */
    rep = ckt_redis_cmd(r, full);
    ck_assert_msg(rep != NULL && rep->type == REDIS_REPLY_STATUS, "ACL SETUSER failed");
    freeReplyObject(rep);
}

START_TEST(acl_user_with_minimal_commands)
{
    ckt_redis *r = ckt_redis_start(NULL);
    char url[256];
    ck_client *c;
    ckt_log lg;
    const char *who[] = { "ACL", "WHOAMI", NULL };

    ckt_log_init(&lg);
    acl_user(r, "ckapp", "app-secret-pw", 1);
    snprintf(url, sizeof url, "redis://ckapp:app-secret-pw@127.0.0.1:%d/2", ckt_redis_port(r));
    c = new_client(url, &lg);
    ck_assert_int_eq(ck_client_ping(c), CK_OK);
    ck_assert_int_eq(ckt_clients_named(ckt_redis_url(r), "ck:"), 1);
    ck_client_free(c);

    /* without the optional commands it still works (unnamed, no INFO check) */
    acl_user(r, "ckmin", "min-secret-pw", 0);
    snprintf(url, sizeof url, "redis://ckmin:min-secret-pw@127.0.0.1:%d", ckt_redis_port(r));
    c = new_client(url, &lg);
    ck_assert_int_eq(ck_client_ping(c), CK_OK);
    ck_assert_int_eq(ck_client_ping(c), CK_OK);
    ck_client_free(c);

    /* a wrong password for a real user */
    snprintf(url, sizeof url, "redis://ckapp:not-it@127.0.0.1:%d", ckt_redis_port(r));
    c = new_client(url, &lg);
    ck_assert_int_eq(ck_client_ping(c), CK_E_UNAVAILABLE);
    ck_client_free(c);
    ck_assert(ckt_log_has(&lg, "authentication failed for user ckapp"));
    ck_assert(!ckt_log_has(&lg, "secret-pw"));
    ck_assert(!ckt_log_has(&lg, "not-it"));

    redisReply *rep = ckt_redis_cmd(r, who);
    ck_assert_ptr_nonnull(rep);
    freeReplyObject(rep);
    ckt_log_free(&lg);
    ckt_redis_stop(r);
}
END_TEST

static ck_status client_info_fn(redisContext *ctx, void *user)
{
    char *out = user;
    redisReply *r = redisCommand(ctx, "CLIENT INFO");
    if (r == NULL)
        return CK_E_UNAVAILABLE;
    if (r->type == REDIS_REPLY_STRING)
        snprintf(out, 512, "%s", r->str);
    freeReplyObject(r);
    return CK_OK;
}

START_TEST(db_and_client_name)
{
    static const char *const host_cmds[] = { "+client|info", NULL }; /* under check-acl */
    char url[256], info[512] = "", name[64];
    ck_client *c;
    ckt_acl_allow(host_cmds);
    snprintf(url, sizeof url, "%s", ckt_shared_url());
    /* the harness's URL ends in /0: ask for db 5 instead */
    char *slash = strrchr(url, '/');
    ck_assert_ptr_nonnull(slash);
    snprintf(slash, sizeof url - (size_t)(slash - url), "/5");
    c = new_client(url, NULL);
    ck_assert_int_eq(ck_client_run(c, client_info_fn, info), CK_OK);
    ck_assert_msg(strstr(info, " db=5 ") != NULL, "CLIENT INFO: %s", info);
    snprintf(name, sizeof name, " name=ck:%d ", (int)getpid());
    ck_assert_msg(strstr(info, name) != NULL, "CLIENT INFO: %s", info);
    ck_client_free(c);

    snprintf(url, sizeof url, "unix://%s?db=7", ckt_shared_sock());
    c = new_client(url, NULL);
    ck_assert_int_eq(ck_client_run(c, client_info_fn, info), CK_OK);
    ck_assert_msg(strstr(info, " db=7 ") != NULL, "CLIENT INFO: %s", info);
    ck_client_free(c);

    /* a db the server does not have */
    snprintf(url, sizeof url, "%s", ckt_shared_url());
    slash = strrchr(url, '/');
    snprintf(slash, sizeof url - (size_t)(slash - url), "/999");
    ckt_log lg;
    ckt_log_init(&lg);
    c = new_client(url, &lg);
    ck_assert_int_eq(ck_client_ping(c), CK_E_UNAVAILABLE);
    ck_assert(ckt_log_has(&lg, "SELECT 999 failed"));
    ck_client_free(c);
    ckt_log_free(&lg);
}
END_TEST

START_TEST(stats_count_and_format)
{
    ck_client *c = new_client(ckt_shared_url(), NULL);
    ck_stats s;
    char buf[4096];
    int n;
    ck_assert_int_eq(ck_client_ping(c), CK_OK);
    ck_client_stats(c, &s);
    ck_assert_uint_eq(s.redis_errors, 0);
    ck_assert_uint_eq(s.degraded, 0);
    n = ck_stats_format_prometheus(&s, buf, sizeof buf);
    ck_assert_int_gt(n, 0);
    ck_assert_ptr_nonnull(strstr(buf, "cachekit_redis_errors_total 0"));
    ck_client_free(c);

    /* an unreachable server counts errors and degraded answers */
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", ckt_closed_port());
    c = new_client(url, NULL);
    ck_assert_int_eq(ck_client_ping(c), CK_E_UNAVAILABLE);
    ck_client_stats(c, &s);
    ck_assert_uint_eq(s.redis_errors, 1);
    ck_assert_uint_eq(s.degraded, 1);
    ck_client_free(c);
}
END_TEST

/* The maxmemory-policy warning is logged once per client. */
START_TEST(eviction_policy_warning_once)
{
    const char *extra[] = { "--maxmemory-policy", "allkeys-lru", NULL };
    ckt_redis *r = ckt_redis_start(extra);
    ckt_log lg;
    ck_client *c;
    ckt_log_init(&lg);
    c = new_client(ckt_redis_url(r), &lg);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(ck_client_ping(c), CK_OK);
    ckt_kill_clients_named(ckt_redis_url(r), "ck:");
    ck_assert_int_eq(ck_client_ping(c), CK_OK); /* a second connection */
    ck_assert(ckt_log_has(&lg, "maxmemory-policy is not noeviction"));
    const char *first = strstr(lg.buf, "maxmemory-policy is not noeviction");
    ck_assert_ptr_null(strstr(first + 1, "maxmemory-policy is not noeviction"));
    ck_client_free(c);
    ckt_log_free(&lg);
    ckt_redis_stop(r);
}
END_TEST

Suite *ckt_suite(void)
{
    Suite *s = suite_create("client");
    TCase *tc = tcase_create("client");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, ping_tcp_and_unix);
    tcase_add_test(tc, url_from_environment);
    tcase_add_test(tc, run_returns_fn_status);
    tcase_add_test(tc, connections_read_with_the_command_timeout);
    tcase_add_test(tc, bad_urls_are_invalid_and_logged);
    tcase_add_test(tc, bad_options_are_invalid);
    tcase_add_test(tc, password_auth_and_no_leak);
    tcase_add_test(tc, acl_user_with_minimal_commands);
    tcase_add_test(tc, db_and_client_name);
    tcase_add_test(tc, stats_count_and_format);
    tcase_add_test(tc, eviction_policy_warning_once);
    suite_add_tcase(s, tc);
    return s;
}

#include "ckt_main.h"
