/* Error-reply classification: the single place that decides whether an error
 * degrades (and feeds the breaker), is recovered, or is a protocol error. */
#include <string.h>
#include <check.h>
#include <cachekit.h>
#include "internal.h"

static ck__errclass cls(const char *s, int w)
{
    return ck__classify_error(s, strlen(s), w);
}

START_TEST(test_unavailable_codes)
{
    static const char *const codes[] = {
        "READONLY You can't write against a read only replica.",
        "MISCONF Redis is configured to save RDB snapshots",
        "LOADING Redis is loading the dataset in memory",
        "BUSY Redis is busy running a script.",
        "MASTERDOWN Link with MASTER is down",
        "CLUSTERDOWN The cluster is down",
        "TRYAGAIN Multiple keys request during rehashing of slot",
        "NOREPLICAS Not enough good replicas to write.",
        "BUSY",
    };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        ck_assert_int_eq(cls(codes[i], 0), CK__ERR_UNAVAILABLE);
        ck_assert_int_eq(cls(codes[i], 1), CK__ERR_UNAVAILABLE);
    }
}
END_TEST

START_TEST(test_oom_only_for_writes)
{
    const char *oom = "OOM command not allowed when used memory > 'maxmemory'.";

    ck_assert_int_eq(cls(oom, 1), CK__ERR_UNAVAILABLE);
    ck_assert_int_eq(cls(oom, 0), CK__ERR_OTHER);
}
END_TEST

START_TEST(test_special_codes)
{
    ck_assert_int_eq(cls("NOSCRIPT No matching script. Please use EVAL.", 1), CK__ERR_NOSCRIPT);
    ck_assert_int_eq(cls("WRONGTYPE Operation against a key holding the wrong kind of value", 0),
                     CK__ERR_WRONGTYPE);
    ck_assert_int_eq(cls("WRONGPASS invalid username-password pair", 0), CK__ERR_AUTH);
    ck_assert_int_eq(cls("NOAUTH Authentication required.", 0), CK__ERR_AUTH);
    ck_assert_int_eq(cls("NOPERM this user has no permissions", 0), CK__ERR_AUTH);
}
END_TEST

START_TEST(test_other_and_prefixes)
{
    /* the code is the whole first word */
    ck_assert_int_eq(cls("BUSYKEY Target key name already exists.", 1), CK__ERR_OTHER);
    ck_assert_int_eq(cls("ERR unknown command", 1), CK__ERR_OTHER);
    ck_assert_int_eq(cls("", 1), CK__ERR_OTHER);
    ck_assert_int_eq(cls("busy lowercase is not the code", 1), CK__ERR_OTHER);
    ck_assert_int_eq(ck__classify_error(NULL, 0, 1), CK__ERR_OTHER);
    /* not NUL-terminated and cut inside the code: must not read past len */
    {
        char buf[4] = {'B', 'U', 'S', 'Y'};
        ck_assert_int_eq(ck__classify_error(buf, 3, 0), CK__ERR_OTHER);
        ck_assert_int_eq(ck__classify_error(buf, 4, 0), CK__ERR_UNAVAILABLE);
    }
}
END_TEST

START_TEST(test_reply_status)
{
    redisReply ok = {0}, err = {0};

    ok.type = REDIS_REPLY_STATUS;
    ok.str = (char *)"OK";
    ok.len = 2;
    ck_assert_int_eq(ck__reply_status(&ok, 1), CK_OK);
    err.type = REDIS_REPLY_ERROR;
    err.str = (char *)"LOADING loading";
    err.len = strlen(err.str);
    ck_assert_int_eq(ck__reply_status(&err, 0), CK_E_UNAVAILABLE);
    err.str = (char *)"WRONGTYPE x";
    err.len = strlen(err.str);
    ck_assert_int_eq(ck__reply_status(&err, 0), CK_E_CORRUPT);
    err.str = (char *)"ERR x";
    err.len = strlen(err.str);
    ck_assert_int_eq(ck__reply_status(&err, 0), CK_E_PROTOCOL);
    ck_assert_int_eq(ck__reply_status(NULL, 0), CK_E_PROTOCOL);
}
END_TEST

Suite *ckt_suite(void)
{
    Suite *s = suite_create("reply");
    TCase *tc = tcase_create("classify");

    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, test_unavailable_codes);
    tcase_add_test(tc, test_oom_only_for_writes);
    tcase_add_test(tc, test_special_codes);
    tcase_add_test(tc, test_other_and_prefixes);
    tcase_add_test(tc, test_reply_status);
    suite_add_tcase(s, tc);
    return s;
}

#include "ckt_main.h"
