/* testutil.c - see testutil.h. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[256];

static void cleanup_tmp(void) {
    if (!tmpdir[0] || getenv("QF_KEEP_TMP")) return;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
}

const char *qf_test_tmpdir(void) {
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/qftest.XXXXXX");
        if (!mkdtemp(tmpdir)) { perror("mkdtemp"); abort(); }
        atexit(cleanup_tmp);
    }
    return tmpdir;
}

const char *qf_fixture(const char *rel) {
    static char bufs[8][1024];
    static int slot;
    char *b = bufs[slot++ & 7];
    snprintf(b, 1024, "%s/%s", QF_FIXTURES, rel);
    return b;
}

double qf_test_excess(const float *a, const float *b, size_t n,
                      double atol, double rtol, size_t *worst) {
    double ex = -INFINITY;
    *worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]) - (atol + rtol * fabs((double)b[i]));
        if (isnan(a[i]) != isnan(b[i])) d = INFINITY;
        if (d > ex) { ex = d; *worst = i; }
    }
    return n ? ex : 0;
}

int qf_test_main(const char *name, CU_TestInfo *tests) {
    CU_SuiteInfo suites[] = { { (char *)name, NULL, NULL, NULL, NULL, tests }, CU_SUITE_INFO_NULL };
    if (CU_initialize_registry() != CUE_SUCCESS) return 2;
    if (CU_register_suites(suites) != CUE_SUCCESS) return 2;
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    unsigned run = CU_get_number_of_tests_run();
    CU_cleanup_registry();
    if (run == 0) { fprintf(stderr, "no test ran\n"); return 3; }
    return failed ? 1 : 0;
}
