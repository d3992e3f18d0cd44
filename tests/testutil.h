/* testutil.h - shared helpers for the CUnit test executables: a main() that
 * runs one suite in basic mode and fails the process on any failure, fixture
 * paths, float comparison and golden-tensor access. */
#ifndef QF_TESTUTIL_H
#define QF_TESTUTIL_H

#include <CUnit/Basic.h>
#include <stddef.h>
#include <stdint.h>

/* Runs the NULL-terminated tests as suite `name`; returns the exit code. */
int qf_test_main(const char *name, CU_TestInfo *tests);

/* "<QF_FIXTURES>/<rel>" in a static buffer rotating over 8 slots. */
const char *qf_fixture(const char *rel);

/* Temporary directory for this test process (created once, removed at exit
 * unless QF_KEEP_TMP is set). */
const char *qf_test_tmpdir(void);

/* Max over i of |a-b| - (atol + rtol*|b|); <= 0 means within tolerance.
 * *worst receives the index of the worst element. */
double qf_test_excess(const float *a, const float *b, size_t n,
                      double atol, double rtol, size_t *worst);

/* Asserts all |a-b| <= atol + rtol*|b|, printing the worst element on failure. */
#define QF_ASSERT_CLOSE(a, b, n, atol, rtol, what) do {                              \
    size_t w_ = 0;                                                                   \
    double ex_ = qf_test_excess((a), (b), (n), (atol), (rtol), &w_);                 \
    if (ex_ > 0) fprintf(stderr, "\n%s: element %zu: got %.8g expected %.8g\n",      \
                         (what), w_, (double)(a)[w_], (double)(b)[w_]);              \
    CU_ASSERT(ex_ <= 0);                                                             \
} while (0)

#endif
