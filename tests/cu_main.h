/*
 * Shared main() of the CUnit runners (tests/unit and tests/system).
 *
 * The runner registers every suite named in its list, runs them all (or only
 * the suites named on the command line) and ends with one line
 * "<label>: N passed, N failed" that tests/run.sh adds up.
 */
#ifndef CONVOY_TESTS_CU_MAIN_H
#define CONVOY_TESTS_CU_MAIN_H

#include <CUnit/Basic.h>
#include <stdio.h>
#include <string.h>

typedef void (*cu_register_fn)(void);

static inline int cu_main(const char *label, const cu_register_fn *suites, size_t nsuites, int argc,
                          char **argv)
{
    if (CU_initialize_registry() != CUE_SUCCESS) {
        fprintf(stderr, "%s: CU_initialize_registry: %s\n", label, CU_get_error_msg());
        return 2;
    }
    for (size_t i = 0; i < nsuites; i++)
        suites[i]();
    if (CU_get_error() != CUE_SUCCESS) {
        fprintf(stderr, "%s: registering suites: %s\n", label, CU_get_error_msg());
        return 2;
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    /* CUnit resets its counts at every run: add them up across runs. */
    unsigned run = 0, failed = 0, suites_failed = 0;
    for (int i = argc <= 1 ? 0 : 1; i < (argc <= 1 ? 1 : argc); i++) {
        CU_pSuite s = argc <= 1 ? NULL : CU_get_suite(argv[i]);
        if (argc > 1 && s == NULL) {
            fprintf(stderr, "%s: no suite named '%s'\n", label, argv[i]);
            CU_cleanup_registry();
            return 2;
        }
        if (s)
            CU_basic_run_suite(s);
        else
            CU_basic_run_tests();
        run += CU_get_number_of_tests_run();
        failed += CU_get_number_of_tests_failed();
        suites_failed += CU_get_number_of_suites_failed();
    }
    CU_cleanup_registry();
    /* A suite whose setup failed ran none of its tests: count it as a failure. */
    printf("\n%s: %u passed, %u failed\n", label, run - failed, failed + suites_failed);
    return failed + suites_failed ? 1 : 0;
}

#endif
