/* Logging: levels filter, lines are bounded, hostile bytes are neutralised. */
#include <stdio.h>
#include <string.h>
#include <check.h>
#include <cachekit.h>
#include "internal.h"

static char last[1024];
static int calls, last_level;

static void capture(void *user, int level, const char *msg)
{
    (void)user;
    calls++;
    last_level = level;
    snprintf(last, sizeof last, "%s", msg);
}

START_TEST(test_levels)
{
    ck__logger lg = {capture, NULL, CK_LOG_WARN};

    calls = 0;
    ck__log(&lg, CK_LOG_DEBUG, "hidden %d", 1);
    ck__log(&lg, CK_LOG_INFO, "hidden %d", 2);
    ck_assert_int_eq(calls, 0);
    ck__log(&lg, CK_LOG_WARN, "shown %d", 3);
    ck_assert_int_eq(calls, 1);
    ck_assert_str_eq(last, "shown 3");
    ck_assert_int_eq(last_level, CK_LOG_WARN);
    ck__log(&lg, CK_LOG_ERROR, "err");
    ck_assert_int_eq(calls, 2);
    ck__log(NULL, CK_LOG_ERROR, "no logger");
    lg.fn = NULL;
    ck__log(&lg, CK_LOG_ERROR, "no fn");
    ck_assert_int_eq(calls, 2);
}
END_TEST

START_TEST(test_long_line_bounded)
{
    ck__logger lg = {capture, NULL, CK_LOG_DEBUG};
    char big[4096];

    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    ck__log(&lg, CK_LOG_ERROR, "%s", big);
    ck_assert_uint_lt(strlen(last), 1024);
    ck_assert_uint_gt(strlen(last), 100);
}
END_TEST

START_TEST(test_sanitize)
{
    char out[16];

    ck__log_sanitize(out, sizeof out, "ok\nFAKE\x01", 8);
    ck_assert_str_eq(out, "ok?FAKE?");
    ck__log_sanitize(out, sizeof out, "abcdefghijklmnopqrstuvwxyz", 26);
    ck_assert_uint_eq(strlen(out), 15);
    ck_assert_str_eq(out + 12, "...");
    ck__log_sanitize(out, sizeof out, NULL, 3);
    ck_assert_str_eq(out, "(null)");
    ck__log_sanitize(out, 1, "abc", 3);
    ck_assert_str_eq(out, "");
}
END_TEST

Suite *ckt_suite(void)
{
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("log");

    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, test_levels);
    tcase_add_test(tc, test_long_line_bounded);
    tcase_add_test(tc, test_sanitize);
    suite_add_tcase(s, tc);
    return s;
}

#include "ckt_main.h"
