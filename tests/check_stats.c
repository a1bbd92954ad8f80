/* ck_stats_format_prometheus: snprintf semantics, exact names, no overflow. */
#include <stdio.h>
#include <string.h>
#include <check.h>
#include <cachekit.h>

static ck_stats sample(void)
{
    ck_stats s;

    memset(&s, 0, sizeof s);
    s.hits = 12345678901234ULL;
    s.degraded = 7;
    s.pool_waits = 3;
    return s;
}

START_TEST(test_full_output)
{
    ck_stats s = sample();
    char buf[8192];
    int need = ck_stats_format_prometheus(&s, NULL, 0);

    ck_assert_int_gt(need, 0);
    ck_assert_int_lt(need, (int)sizeof buf);
    ck_assert_int_eq(ck_stats_format_prometheus(&s, buf, sizeof buf), need);
    ck_assert_uint_eq(strlen(buf), (size_t)need);
    ck_assert_ptr_nonnull(strstr(buf, "\ncachekit_hits_total 12345678901234\n"));
    ck_assert_ptr_nonnull(strstr(buf, "\ncachekit_degraded_total 7\n"));
    ck_assert_ptr_nonnull(strstr(buf, "\ncachekit_pool_waits_total 3\n"));
    ck_assert_ptr_nonnull(strstr(buf, "# TYPE cachekit_breaker_opens_total counter\n"));
    /* every counter of ck_stats is exported */
    {
        static const char *const names[] = {
            "hits", "null_hits", "misses", "loads", "load_errors", "stampede_waits",
            "stale_served", "l1_hits", "redis_errors", "degraded", "breaker_opens",
            "lock_acquired", "lock_busy", "lock_lost", "rate_allowed", "rate_denied", "pool_waits"};
        char want[64];
        ck_assert_uint_eq(sizeof names / sizeof names[0], sizeof(ck_stats) / sizeof(uint64_t));
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            snprintf(want, sizeof want, "\ncachekit_%s_total ", names[i]);
            ck_assert_msg(strstr(buf, want) != NULL, "missing %s", names[i]);
        }
    }
    ck_assert_int_eq(buf[need - 1], '\n');
}
END_TEST

START_TEST(test_tiny_buffers)
{
    ck_stats s = sample();
    char full[8192];
    int need = ck_stats_format_prometheus(&s, full, sizeof full);

    for (size_t len = 1; len < 300; len += 7) {
        char buf[320];
        memset(buf, 'Z', sizeof buf);
        ck_assert_int_eq(ck_stats_format_prometheus(&s, buf, len), need);
        ck_assert_int_eq(buf[len - 1], '\0');        /* NUL-terminated */
        ck_assert_int_eq(buf[len], 'Z');             /* guard byte untouched */
        ck_assert_int_eq(strncmp(buf, full, len - 1), 0); /* a prefix of the full text */
    }
}
END_TEST

START_TEST(test_bad_arguments)
{
    ck_stats s = sample();
    char buf[4];

    ck_assert_int_eq(ck_stats_format_prometheus(NULL, buf, sizeof buf), -1);
    ck_assert_int_eq(ck_stats_format_prometheus(&s, NULL, 10), -1);
}
END_TEST

Suite *ckt_suite(void)
{
    Suite *s = suite_create("stats");
    TCase *tc = tcase_create("prometheus");

    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, test_full_output);
    tcase_add_test(tc, test_tiny_buffers);
    tcase_add_test(tc, test_bad_arguments);
    suite_add_tcase(s, tc);
    return s;
}

#include "ckt_main.h"
