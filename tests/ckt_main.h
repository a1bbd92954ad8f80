/* main() for a check suite: each tests/check_<module>.c defines
 * `Suite *ckt_suite(void)` and includes this header once. CK_FORK and
 * CK_VERBOSITY (check's own variables) work as usual. */
#ifndef CKT_MAIN_H
#define CKT_MAIN_H

#include <stdlib.h>
#include <check.h>

Suite *ckt_suite(void);

int main(void)
{
    SRunner *sr = srunner_create(ckt_suite());
    int failed;

    srunner_run_all(sr, CK_ENV);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

#endif
