/* test_bpe_golden.c - the OPT tokenizer of tests/fixtures/tiny-blip2-opt
 * against the reference: expected.json "bpe" (ids with BOS, byte-level
 * tokens, decoded text) and "prompt", the same ids in expected.safetensors
 * (`bpe.N.input_ids`, `prompt_input_ids`, I64), and every caption's greedy
 * and beam ids decoded to the stored texts exactly. */
#include "embed/safetensors.h"
#include "embed/bpe.h"
#include "tests/testutil.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#define OPT_DIR "tiny-blip2-opt"

static qf_bpe *tok;
static json_t *expected;
static qf_st *golden;

static int setup(void) {
    if (qf_bpe_load(qf_fixture(OPT_DIR), &tok)) {
        fprintf(stderr, "load: %s\n", qf_last_error());
        return 1;
    }
    json_error_t err;
    expected = json_load_file(qf_fixture(OPT_DIR "/expected.json"), 0, &err);
    if (!expected) {
        fprintf(stderr, "expected.json: %s\n", err.text);
        return 1;
    }
    if (qf_st_open(qf_fixture(OPT_DIR "/expected.safetensors"), &golden)) {
        fprintf(stderr, "expected.safetensors: %s\n", qf_last_error());
        return 1;
    }
    return 0;
}

/* ids of a JSON array into out (cap 64); returns the count. */
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
    qf_status s = qf_bpe_encode(tok, text, QF_BPE_BOS_DEFAULT, &ids, &n);
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

/* The same ids as I64 in expected.safetensors. */
static void check_tensor(const char *name, const int32_t *want, int n_want) {
    int64_t shape[1] = { n_want };
    const void *raw = NULL;
    qf_status s = qf_st_get_raw(golden, name, QF_DT_I64, 1, shape, &raw);
    if (s) fprintf(stderr, "\n%s: %s\n", name, qf_last_error());
    CU_ASSERT_EQUAL_FATAL(s, QF_OK);
    const int64_t *v = raw;
    for (int i = 0; i < n_want; i++) CU_ASSERT_EQUAL(v[i], want[i]);
}

static void check_decode(const int32_t *ids, int n, int skip, int clean, const char *want, const char *what) {
    char *out = NULL;
    qf_status s = qf_bpe_decode(tok, ids, n, skip, clean, &out);
    if (s) fprintf(stderr, "\n%s: %s\n", what, qf_last_error());
    CU_ASSERT_EQUAL_FATAL(s, QF_OK);
    if (strcmp(out, want)) fprintf(stderr, "\n%s: got '%s' expected '%s'\n", what, out, want);
    CU_ASSERT_STRING_EQUAL(out, want);
    qf_free(out);
}

static void test_bpe_entries(void) {
    const json_t *bpe = json_object_get(expected, "bpe");
    CU_ASSERT_FATAL(json_is_array(bpe) && json_array_size(bpe) == 14);
    size_t k;
    json_t *e;
    json_array_foreach(bpe, k, e) {
        char what[64], name[64];
        snprintf(what, sizeof what, "bpe[%zu]", k);
        const char *text = json_string_value(json_object_get(e, "text"));
        const char *decoded = json_string_value(json_object_get(e, "decoded"));
        CU_ASSERT_FATAL(text && decoded);
        CU_ASSERT_EQUAL(json_integer_value(json_object_get(e, "index")), (json_int_t)k);
        int32_t want[64];
        int n = json_ids(json_object_get(e, "input_ids"), want);
        CU_ASSERT_FATAL(n >= 1 && want[0] == qf_bpe_bos_id(tok));
        check_encode(text, want, n, what);
        snprintf(name, sizeof name, "bpe.%zu.input_ids", k);
        check_tensor(name, want, n);

        /* byte-level token strings, BOS excluded */
        const json_t *tokens = json_object_get(e, "tokens");
        CU_ASSERT_FATAL(json_is_array(tokens) && (int)json_array_size(tokens) == n - 1);
        for (int i = 1; i < n; i++) {
            const char *tk = qf_bpe_token(tok, want[i]);
            CU_ASSERT_PTR_NOT_NULL_FATAL(tk);
            CU_ASSERT_STRING_EQUAL(tk, json_string_value(json_array_get(tokens, (size_t)i - 1)));
            CU_ASSERT_EQUAL(qf_bpe_id(tok, tk), want[i]);
        }
        check_decode(want, n, 1, 0, decoded, what);
        check_decode(want, n, 1, 1, decoded, what);   /* nothing to clean in these texts */
        CU_ASSERT_STRING_EQUAL(decoded, text);
    }
}

static void test_prompt(void) {
    const json_t *p = json_object_get(expected, "prompt");
    const char *text = json_string_value(json_object_get(p, "text"));
    CU_ASSERT_FATAL(text != NULL);
    int32_t want[64];
    int n = json_ids(json_object_get(p, "input_ids"), want);
    check_encode(text, want, n, "prompt");
    check_tensor("prompt_input_ids", want, n);
    /* the prompt ids of every caption entry are these too */
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(expected, "captions"), i, c) {
        int32_t ids[64];
        int m = json_ids(json_object_get(json_object_get(c, "prompt"), "input_ids"), ids);
        CU_ASSERT(m == n && memcmp(ids, want, (size_t)n * sizeof *ids) == 0);
    }
}

/* Generated ids decode to the stored texts (skip_special_tokens=True). */
static void test_caption_texts(void) {
    const json_t *caps = json_object_get(expected, "captions");
    CU_ASSERT_FATAL(json_is_array(caps) && json_array_size(caps) == 6);
    static const char *const modes[] = { "noprompt", "prompt" };
    int checked = 0;
    size_t i;
    json_t *c;
    json_array_foreach(caps, i, c) {
        for (int m = 0; m < 2; m++) {
            const json_t *e = json_object_get(c, modes[m]);
            char what[96], name[64];
            int32_t ids[64];
            snprintf(what, sizeof what, "captions[%zu].%s.greedy", i, modes[m]);
            int n = json_ids(json_object_get(e, "greedy_ids"), ids);
            const char *greedy = json_string_value(json_object_get(e, "greedy_text"));
            const char *greedy_clean = json_string_value(json_object_get(e, "greedy_text_cleaned"));
            CU_ASSERT_FATAL(greedy && greedy_clean);
            check_decode(ids, n, 1, 0, greedy, what);
            check_decode(ids, n, 1, 1, greedy_clean, what);
            snprintf(name, sizeof name, "greedy.%s.%zu", modes[m], i);
            check_tensor(name, ids, n);

            /* HF 4.3x-style generate() output: [BOS] + new tokens */
            int32_t legacy[64];
            int nl = json_ids(json_object_get(e, "hf_generate_output_legacy"), legacy);
            snprintf(what, sizeof what, "captions[%zu].%s.legacy", i, modes[m]);
            if (m == 0) check_decode(legacy, nl, 1, 1, greedy_clean, what);

            snprintf(what, sizeof what, "captions[%zu].%s.beam", i, modes[m]);
            n = json_ids(json_object_get(e, "beam_ids"), ids);
            const char *beam = json_string_value(json_object_get(e, "beam_text"));
            CU_ASSERT_FATAL(beam != NULL);
            check_decode(ids, n, 1, 0, beam, what);
            check_decode(ids, n, 1, 1, beam, what);
            snprintf(name, sizeof name, "beam3.%s.%zu", modes[m], i);
            check_tensor(name, ids, n);

            /* with image tokens: 50265 is the processor's <image>, not in this
             * tokenizer's files, so HF's slow tokenizer has no token for it */
            int32_t img[64];
            int ni = json_ids(json_object_get(e, "hf_generate_output_with_image_tokens"), img);
            char *out = NULL;
            CU_ASSERT(ni > 0 && img[0] == 50265);
            CU_ASSERT_EQUAL(qf_bpe_decode(tok, img, ni, 1, 1, &out), QF_ERR_ARG);
            checked++;
        }
    }
    CU_ASSERT_EQUAL(checked, 12);
}

/* A beam text holds "\x81\x96" (id 49951, two continuation bytes): two U+FFFD. */
static void test_replacement_in_golden(void) {
    int32_t id = 49951;
    check_decode(&id, 1, 1, 0, "\xEF\xBF\xBD\xEF\xBF\xBD", "id 49951");
}

static void test_teardown(void) {
    qf_bpe_free(tok);
    json_decref(expected);
    qf_st_close(golden);
    tok = NULL;
    expected = NULL;
    golden = NULL;
}

static CU_TestInfo tests[] = {
    { "bpe_entries", test_bpe_entries },
    { "prompt", test_prompt },
    { "caption_texts", test_caption_texts },
    { "replacement_in_golden", test_replacement_in_golden },
    { "teardown", test_teardown },
    CU_TEST_INFO_NULL,
};

int main(void) {
    if (setup()) return 1;
    return qf_test_main("bpe_golden", tests);
}
