/* Error-reply classification: the single place that decides whether an error
 * degrades (and feeds the breaker), is recovered, or is a protocol error;
 * and the RESP writer of the library's own I/O loop. */
#include <stdlib.h>
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

/* ck__resp_format writes what hiredis's redisFormatCommandArgv writes,
 * byte for byte, for 1-4 commands of 1-12 arguments of every length class
 * (empty, 1-2-3-4 digit lengths, binary bytes with CR, LF and NUL), into the
 * caller's buffer when it fits and a malloc'd one when not. */
START_TEST(test_resp_format_matches_hiredis)
{
    static const size_t lens[] = { 0, 1, 9, 10, 99, 100, 999, 1000, 5000 };
    unsigned seed = 12345;
    char *pool = malloc(5000);

    ck_assert_ptr_nonnull(pool);
    for (size_t i = 0; i < 5000; i++)
        pool[i] = (char)("ab\r\n\0\xff$*"[i % 8]);
    for (int round = 0; round < 500; round++) {
        enum { MAXC = 4, MAXA = 12 };
        int n = 1 + (int)((seed = seed * 1103515245u + 12345u) >> 16) % MAXC, argc[MAXC];
        const char *av[MAXC][MAXA], *const *argv[MAXC];
        size_t al[MAXC][MAXA], want_len = 0, got_len = 0;
        const size_t *argvlen[MAXC];
        char *want = NULL, stack[1024], *got;

        for (int i = 0; i < n; i++) {
            char *one = NULL;
            int len;
            argc[i] = 1 + (int)((seed = seed * 1103515245u + 12345u) >> 16) % MAXA;
            for (int j = 0; j < argc[i]; j++) {
                size_t l = lens[((seed = seed * 1103515245u + 12345u) >> 16) % 9];
                av[i][j] = pool + (5000 - l) / 2;
                al[i][j] = l;
            }
            argv[i] = av[i];
            argvlen[i] = al[i];
            len = redisFormatCommandArgv(&one, argc[i], av[i], al[i]);
            ck_assert_int_gt(len, 0);
            want = realloc(want, want_len + (size_t)len);
            ck_assert_ptr_nonnull(want);
            memcpy(want + want_len, one, (size_t)len);
            want_len += (size_t)len;
            redisFreeCommand(one);
        }
        got = ck__resp_format(stack, sizeof stack, n, argc, argv, argvlen, &got_len);
        ck_assert_ptr_nonnull(got);
        ck_assert_uint_eq(got_len, want_len);
        ck_assert_msg(memcmp(got, want, want_len) == 0, "round %d differs from hiredis", round);
        ck_assert(want_len <= sizeof stack ? got == stack : got != stack);
        if (got != stack)
            free(got);
        /* no room at all: always the heap, the same bytes */
        got = ck__resp_format(stack, 0, n, argc, argv, argvlen, &got_len);
        ck_assert(got != NULL && got != stack && got_len == want_len);
        ck_assert(memcmp(got, want, want_len) == 0);
        free(got);
        free(want);
    }
    {
        int bad = -1;
        const char *const *none[1] = { NULL };
        const size_t *nolens[1] = { NULL };
        char stack[16];
        size_t len;
        ck_assert_ptr_null(ck__resp_format(stack, sizeof stack, 1, &bad, none, nolens, &len));
    }
    free(pool);
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
    tcase_add_test(tc, test_resp_format_matches_hiredis);
    suite_add_tcase(s, tc);
    return s;
}

#include "ckt_main.h"
