/* test_spm_golden.c - the T5 tokenizer of tests/fixtures/tiny-blip2-flan-t5
 * against the reference: every string of inputs/texts.json gives the ids of
 * expected.json "spm" and of expected.safetensors `spm.N.input_ids` (`</s>`
 * appended, `<extra_id_N>` cut out, an emoji as `<unk>`), decodes to the
 * stored text, the prompt gives `prompt_input_ids`, and every caption's
 * greedy and beam ids decode to the stored caption texts. */
#include "embed/safetensors.h"
#include "embed/spm.h"
#include "tests/testutil.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#define T5_DIR "tiny-blip2-flan-t5"

static qf_spm *tok;
static json_t *expected;
static qf_st *golden;

static int setup(void) {
    if (qf_spm_load(qf_fixture(T5_DIR), &tok)) {
        fprintf(stderr, "load: %s\n", qf_last_error());
        return 1;
    }
    json_error_t err;
    expected = json_load_file(qf_fixture(T5_DIR "/expected.json"), 0, &err);
    if (!expected) {
        fprintf(stderr, "expected.json: %s\n", err.text);
        return 1;
    }
    if (qf_st_open(qf_fixture(T5_DIR "/expected.safetensors"), &golden)) {
        fprintf(stderr, "expected.safetensors: %s\n", qf_last_error());
        return 1;
    }
    return 0;
}

static int json_ids(const json_t *arr, int32_t *out) {
    CU_ASSERT_FATAL(json_is_array(arr) && json_array_size(arr) <= 64);
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) out[i] = (int32_t)json_integer_value(v);
    return (int)json_array_size(arr);
}

static void check_encode(const char *text, const int32_t *want, int n_want, const char *what) {
    int32_t *ids = NULL;
    int n = 0;
    qf_status s = qf_spm_encode(tok, text, 1, &ids, &n);
    if (s) fprintf(stderr, "\n%s: %s\n", what, qf_last_error());
    CU_ASSERT_EQUAL_FATAL(s, QF_OK);
    int same = n == n_want && memcmp(ids, want, (size_t)n * sizeof *ids) == 0;
    if (!same) {
        fprintf(stderr, "\n%s: got", what);
        for (int i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "\n");
    }
    CU_ASSERT(same);
    qf_free(ids);
}

static void check_tensor(const char *name, const int32_t *want, int n_want) {
    int64_t shape[1] = { n_want };
    const void *raw = NULL;
    qf_status s = qf_st_get_raw(golden, name, QF_DT_I64, 1, shape, &raw);
    if (s) fprintf(stderr, "\n%s: %s\n", name, qf_last_error());
    CU_ASSERT_EQUAL_FATAL(s, QF_OK);
    const int64_t *v = raw;
    for (int i = 0; i < n_want; i++) CU_ASSERT_EQUAL(v[i], want[i]);
}

static void check_decode(const int32_t *ids, int n, const char *want, const char *what) {
    char *out = NULL;
    qf_status s = qf_spm_decode(tok, ids, n, &out);
    if (s) fprintf(stderr, "\n%s: %s\n", what, qf_last_error());
    CU_ASSERT_EQUAL_FATAL(s, QF_OK);
    if (strcmp(out, want)) fprintf(stderr, "\n%s: got '%s' expected '%s'\n", what, out, want);
    CU_ASSERT_STRING_EQUAL(out, want);
    qf_free(out);
}

static void test_texts(void) {
    json_t *spm = json_object_get(expected, "spm");
    CU_ASSERT_FATAL(json_array_size(spm) == 12);
    size_t i;
    json_t *e;
    json_array_foreach(spm, i, e) {
        int32_t want[64];
        int n = json_ids(json_object_get(e, "input_ids"), want);
        const char *text = json_string_value(json_object_get(e, "text"));
        char what[64], name[64];
        snprintf(what, sizeof what, "spm[%zu]", i);
        snprintf(name, sizeof name, "spm.%zu.input_ids", i);
        check_encode(text, want, n, what);
        check_tensor(name, want, n);
        check_decode(want, n, json_string_value(json_object_get(e, "decoded")), what);
    }
}

static void test_prompt(void) {
    json_t *p = json_object_get(expected, "prompt");
    int32_t want[64];
    int n = json_ids(json_object_get(p, "input_ids"), want);
    check_encode(json_string_value(json_object_get(p, "text")), want, n, "prompt");
    check_tensor("prompt_input_ids", want, n);
}

static void test_captions(void) {
    json_t *caps = json_object_get(expected, "captions");
    CU_ASSERT_FATAL(json_array_size(caps) == 6);
    size_t i;
    json_t *c;
    json_array_foreach(caps, i, c) {
        static const char *const mode[2] = { "noprompt", "prompt" };
        static const char *const kind[2] = { "greedy", "beam" };
        for (int m = 0; m < 2; m++)
            for (int k = 0; k < 2; k++) {
                json_t *x = json_object_get(c, mode[m]);
                char key[32], what[64];
                int32_t ids[64];
                snprintf(key, sizeof key, "%s_ids", kind[k]);
                int n = json_ids(json_object_get(x, key), ids);
                snprintf(key, sizeof key, "%s_text", kind[k]);
                snprintf(what, sizeof what, "caption %zu %s %s", i, mode[m], kind[k]);
                check_decode(ids, n, json_string_value(json_object_get(x, key)), what);
            }
    }
}

/* Rules the fixture strings do not all reach: `</s>` not appended twice,
 * named special tokens cut out, non-canonical extra ids left as text,
 * invalid UTF-8 refused with its offset. */
static void test_special(void) {
    int32_t *ids = NULL;
    int n = 0;
    CU_ASSERT_EQUAL_FATAL(qf_spm_encode(tok, "a cat</s>", 1, &ids, &n), QF_OK);
    CU_ASSERT(n >= 2 && ids[n - 1] == 1 && ids[n - 2] != 1);
    qf_free(ids);
    CU_ASSERT_EQUAL_FATAL(qf_spm_encode(tok, "<pad><unk><extra_id_99>", 0, &ids, &n), QF_OK);
    CU_ASSERT(n == 3 && ids[0] == 0 && ids[1] == 2 && ids[2] == 1000);
    qf_free(ids);
    /* <extra_id_100> does not exist with extra_ids 100: ordinary text */
    CU_ASSERT_EQUAL_FATAL(qf_spm_encode(tok, "<extra_id_100>", 0, &ids, &n), QF_OK);
    CU_ASSERT(n > 1);
    for (int i = 0; i < n; i++) CU_ASSERT(ids[i] < 1000);
    qf_free(ids);
    CU_ASSERT_EQUAL(qf_spm_encode(tok, "ab\xff", 1, &ids, &n), QF_ERR_FORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(qf_last_error(), "byte 2"));
    CU_ASSERT_EQUAL(qf_spm_vocab_size(tok), 1100);
    CU_ASSERT_EQUAL(qf_spm_piece_size(tok), 1000);
    /* decode drops special ids and ids no token has (the vocabulary padding) */
    int32_t d[] = { 0, 7, 1099, 35, 1151, 34, 1 };
    check_decode(d, 7, "a photo", "decode specials");
}

int main(void) {
    if (setup()) return 1;
    CU_TestInfo tests[] = {
        { "texts of inputs/texts.json", test_texts },
        { "prompt", test_prompt },
        { "caption texts", test_captions },
        { "special tokens", test_special },
        CU_TEST_INFO_NULL,
    };
    int rc = qf_test_main("spm_golden", tests);
    qf_spm_free(tok);
    qf_st_close(golden);
    json_decref(expected);
    return rc;
}
