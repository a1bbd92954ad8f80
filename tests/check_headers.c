/* <cachekit.h> and <check.h> together, cachekit first (check_status.c and the
 * other suites include them the other way round): libcachekit defines none
 * of check's CK_ names. The Makefile also compiles each public header alone
 * as C and as C++. */
#include <cachekit.h>
#include <check.h>

START_TEST(test_both_orders_compile)
{
    /* check's own names still mean check's things */
    ck_assert_int_eq(CK_PASS, CK_PASS);
    ck_assert_int_ne(CK_NORMAL, CK_VERBOSE);
    /* and ours still mean ours */
    ck_assert_int_eq(CK_OK, 0);
    ck_assert_int_lt(CK_E_INVALID, 0);
}
END_TEST

Suite *ckt_suite(void)
{
    Suite *s = suite_create("headers");
    TCase *tc = tcase_create("headers");

    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, test_both_orders_compile);
    suite_add_tcase(s, tc);
    return s;
}

#include "ckt_main.h"
