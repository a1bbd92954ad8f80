/* ck_strerror: a distinct static string for every status, never NULL. */
#include <string.h>
#include <check.h>
#include <cachekit.h>

static const ck_status all[] = {CK_OK, CK_NOT_FOUND, CK_MISS, CK_BUSY, CK_E_INVALID,
                                CK_E_NOMEM, CK_E_UNAVAILABLE, CK_E_PROTOCOL, CK_E_CORRUPT,
                                CK_E_LOADER, CK_E_LOCK_LOST};
#define N_ALL (sizeof all / sizeof all[0])

START_TEST(test_strerror_distinct)
{
    for (size_t i = 0; i < N_ALL; i++) {
        const char *a = ck_strerror(all[i]);
        ck_assert_ptr_nonnull(a);
        ck_assert_uint_gt(strlen(a), 0);
        ck_assert_str_ne(a, ck_strerror((ck_status)1234));
        for (size_t j = i + 1; j < N_ALL; j++)
            ck_assert_str_ne(a, ck_strerror(all[j]));
    }
}
END_TEST

START_TEST(test_strerror_unknown)
{
    ck_assert_str_eq(ck_strerror((ck_status)1234), "unknown status");
    ck_assert_str_eq(ck_strerror((ck_status)-99), "unknown status");
}
END_TEST

START_TEST(test_errors_negative)
{
    /* the contract: the four outcomes are >= 0, every error is < 0 */
    for (size_t i = 0; i < N_ALL; i++)
        ck_assert_int_eq(all[i] < 0, i >= 4);
}
END_TEST

Suite *ckt_suite(void)
{
    Suite *s = suite_create("status");
    TCase *tc = tcase_create("strerror");

    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, test_strerror_distinct);
    tcase_add_test(tc, test_strerror_unknown);
    tcase_add_test(tc, test_errors_negative);
    suite_add_tcase(s, tc);
    return s;
}

#include "ckt_main.h"
