/* test_common.c - status strings, error text, allocation seam. */
#include "embed/common.h"
#include "tests/testutil.h"

#include <string.h>

static void test_status_str(void) {
    for (int s = 0; s < QF_STATUS_COUNT; s++) {
        CU_ASSERT_PTR_NOT_NULL(qf_status_str((qf_status)s));
        CU_ASSERT(strlen(qf_status_str((qf_status)s)) > 0);
    }
    CU_ASSERT_STRING_EQUAL(qf_status_str((qf_status)999), "unknown status");
}

static void test_errorf_prefix(void) {
    qf_status s = qf_errorf(QF_ERR_SHAPE, "tensor '%s' is [%d]", "x", 3);
    CU_ASSERT_EQUAL(s, QF_ERR_SHAPE);
    CU_ASSERT_STRING_EQUAL(qf_last_error(), "tensor 'x' is [3]");
    qf_error_prefix(s, "%s", "model.safetensors");
    CU_ASSERT_STRING_EQUAL(qf_last_error(), "model.safetensors: tensor 'x' is [3]");
}

static void test_alloc_fail(void) {
    qf_alloc_fail_after(1);
    void *a = qf_malloc(8);
    void *b = qf_malloc(8);
    qf_alloc_fail_after(-1);
    CU_ASSERT_PTR_NOT_NULL(a);
    CU_ASSERT_PTR_NULL(b);
    qf_free(a);
    qf_free(NULL);
}

static void test_read_file_limit(void) {
    char *buf; size_t n;
    CU_ASSERT_EQUAL(qf_read_file(qf_fixture("tiny-blip2-itm/config.json"), 10, &buf, &n), QF_ERR_LIMIT);
    CU_ASSERT(strstr(qf_last_error(), "config.json") != NULL);
    CU_ASSERT_EQUAL(qf_read_file(qf_fixture("tiny-blip2-itm/config.json"), 1 << 20, &buf, &n), QF_OK);
    CU_ASSERT(n > 100 && buf[n] == 0);
    qf_free(buf);
    CU_ASSERT_EQUAL(qf_read_file("/nonexistent/x", 10, &buf, &n), QF_ERR_IO);
    CU_ASSERT(strstr(qf_last_error(), "/nonexistent/x") != NULL);
}

static CU_TestInfo tests[] = {
    { "status_str", test_status_str },
    { "errorf_prefix", test_errorf_prefix },
    { "alloc_fail", test_alloc_fail },
    { "read_file_limit", test_read_file_limit },
    CU_TEST_INFO_NULL,
};

int main(void) { return qf_test_main("common", tests); }
