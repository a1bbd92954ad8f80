/* The linked library is the one the headers describe. */
#include <stdio.h>
#include <check.h>
#include <cachekit.h>

START_TEST(test_version_number)
{
    ck_assert_int_eq(ck_version_number(), CK_VERSION_NUMBER);
    ck_assert_int_eq(CK_VERSION_NUMBER,
                     (CK_VERSION_MAJOR << 16) | (CK_VERSION_MINOR << 8) | CK_VERSION_PATCH);
}
END_TEST

START_TEST(test_version_string)
{
    char expect[32];

    snprintf(expect, sizeof expect, "%d.%d.%d", CK_VERSION_MAJOR, CK_VERSION_MINOR,
             CK_VERSION_PATCH);
    ck_assert_str_eq(ck_version(), CK_VERSION_STRING);
    ck_assert_str_eq(ck_version(), expect);
}
END_TEST

Suite *ckt_suite(void)
{
    Suite *s = suite_create("version");
    TCase *tc = tcase_create("version");

    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, test_version_number);
    tcase_add_test(tc, test_version_string);
    suite_add_tcase(s, tc);
    return s;
}

#include "ckt_main.h"
