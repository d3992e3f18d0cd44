/* test_bert_golden.c - the BERT tokenizer against the tiny-blip2-itm goldens:
 * expected.json "texts" (word pieces, unpadded input_ids) and
 * expected.safetensors text_input_ids / text_attention_mask [n_txt, 32] I64
 * (padded). The safetensors file is parsed here directly (u64 header length,
 * JSON header, little-endian payload) so this test depends on nothing but
 * the tokenizer. */
#include "embed/bert.h"
#include "tests/testutil.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

/* Copies the I64 tensor `name` of a safetensors file; checks dtype and shape. */
static int64_t *read_i64(const char *path, const char *name, int64_t rows, int64_t cols) {
    char *buf = NULL;
    size_t n = 0;
    int64_t *out = NULL;
    json_t *hdr = NULL;
    if (qf_read_file(path, 64u << 20, &buf, &n) != QF_OK || n < 8) goto done;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | (unsigned char)buf[i];
    if (hlen > n - 8) goto done;
    hdr = json_loadb(buf + 8, (size_t)hlen, 0, NULL);
    json_t *t = json_object_get(hdr, name);
    json_t *shape = json_object_get(t, "shape"), *offs = json_object_get(t, "data_offsets");
    const char *dtype = json_string_value(json_object_get(t, "dtype"));
    if (!t || !dtype || strcmp(dtype, "I64") ||
        json_array_size(shape) != 2 || json_integer_value(json_array_get(shape, 0)) != rows ||
        json_integer_value(json_array_get(shape, 1)) != cols || json_array_size(offs) != 2)
        goto done;
    size_t b = (size_t)json_integer_value(json_array_get(offs, 0));
    size_t e = (size_t)json_integer_value(json_array_get(offs, 1));
    size_t want = (size_t)(rows * cols) * sizeof(int64_t);
    if (e - b != want || 8 + hlen + e > n) goto done;
    out = qf_malloc(want);
    const unsigned char *p = (const unsigned char *)buf + 8 + hlen + b;
    for (int64_t i = 0; out && i < rows * cols; i++) {
        uint64_t v = 0;
        for (int k = 7; k >= 0; k--) v = (v << 8) | p[8 * i + k];
        out[i] = (int64_t)v;
    }
done:
    if (!out) fprintf(stderr, "\n%s: cannot read I64 [%lld,%lld] tensor '%s'\n",
                      path, (long long)rows, (long long)cols, name);
    json_decref(hdr);
    qf_free(buf);
    return out;
}

static qf_bert *tok;
static json_t *expected;

static void load_all(void) {
    if (!tok) CU_ASSERT_EQUAL_FATAL(qf_bert_load(qf_fixture("tiny-blip2-itm"), &tok), QF_OK);
    if (!expected) {
        json_error_t err;
        expected = json_load_file(qf_fixture("tiny-blip2-itm/expected.json"), 0, &err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(expected);
    }
}

static void test_texts_match_inputs(void) {
    load_all();
    json_t *inputs = json_load_file(qf_fixture("tiny-blip2-itm/inputs/texts.json"), 0, NULL);
    json_t *texts = json_object_get(expected, "texts");
    CU_ASSERT_FATAL(json_is_array(inputs) && json_is_array(texts));
    CU_ASSERT_EQUAL(json_array_size(inputs), json_array_size(texts));
    for (size_t i = 0; i < json_array_size(texts) && i < json_array_size(inputs); i++)
        CU_ASSERT_STRING_EQUAL(json_string_value(json_array_get(inputs, i)),
                               json_string_value(json_object_get(json_array_get(texts, i), "text")));
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(expected, "qformer_max_txt_len")),
                    QF_BERT_MAX_TXT_LEN);
    json_decref(inputs);
}

static void test_wordpieces_and_ids(void) {
    load_all();
    json_t *texts = json_object_get(expected, "texts");
    size_t i;
    json_t *e;
    CU_ASSERT(json_array_size(texts) >= 8);
    json_array_foreach(texts, i, e) {
        const char *text = json_string_value(json_object_get(e, "text"));
        json_t *wp = json_object_get(e, "wordpieces");
        json_t *want = json_object_get(e, "input_ids");
        CU_ASSERT_FATAL(text && json_is_array(wp) && json_is_array(want));

        int32_t pieces[256];
        int n = -1;
        CU_ASSERT_EQUAL_FATAL(qf_bert_tokenize(tok, text, pieces, 256, &n), QF_OK);
        int ok = (size_t)n == json_array_size(wp);
        for (int k = 0; ok && k < n; k++) {
            const char *got = qf_bert_token(tok, pieces[k]);
            ok = got && !strcmp(got, json_string_value(json_array_get(wp, (size_t)k)));
        }
        if (!ok) fprintf(stderr, "\ntext %zu: word pieces differ (got %d, want %zu)\n",
                         i, n, json_array_size(wp));
        CU_ASSERT(ok);

        int64_t ids[QF_BERT_MAX_TXT_LEN], mask[QF_BERT_MAX_TXT_LEN];
        int n_tok = -1;
        CU_ASSERT_EQUAL_FATAL(qf_bert_encode(tok, text, QF_BERT_MAX_TXT_LEN, 0, ids, mask, &n_tok), QF_OK);
        CU_ASSERT_EQUAL(n_tok, json_integer_value(json_object_get(e, "num_tokens")));
        CU_ASSERT_EQUAL((size_t)n_tok, json_array_size(want));
        for (int k = 0; k < n_tok && (size_t)k < json_array_size(want); k++) {
            if (ids[k] != json_integer_value(json_array_get(want, (size_t)k)))
                fprintf(stderr, "\ntext %zu: id %d is %lld, want %lld\n", i, k, (long long)ids[k],
                        (long long)json_integer_value(json_array_get(want, (size_t)k)));
            CU_ASSERT_EQUAL(ids[k], json_integer_value(json_array_get(want, (size_t)k)));
            CU_ASSERT_EQUAL(mask[k], 1);
        }
    }
}

static void test_padded_tensors(void) {
    load_all();
    json_t *texts = json_object_get(expected, "texts");
    int64_t n_txt = (int64_t)json_array_size(texts), L = QF_BERT_MAX_TXT_LEN;
    const char *path = qf_fixture("tiny-blip2-itm/expected.safetensors");
    int64_t *want_ids = read_i64(path, "text_input_ids", n_txt, L);
    int64_t *want_mask = read_i64(path, "text_attention_mask", n_txt, L);
    CU_ASSERT_FATAL(want_ids && want_mask);
    int mismatches = 0;
    for (int64_t i = 0; i < n_txt; i++) {
        const char *text = json_string_value(json_object_get(json_array_get(texts, (size_t)i), "text"));
        int64_t ids[QF_BERT_MAX_TXT_LEN], mask[QF_BERT_MAX_TXT_LEN];
        int n = 0;
        CU_ASSERT_EQUAL_FATAL(qf_bert_encode(tok, text, (int)L, 1, ids, mask, &n), QF_OK);
        for (int64_t k = 0; k < L; k++) {
            if (ids[k] != want_ids[i * L + k] || mask[k] != want_mask[i * L + k]) {
                if (mismatches++ < 5)
                    fprintf(stderr, "\ntext %lld pos %lld: got id %lld mask %lld, want %lld %lld\n",
                            (long long)i, (long long)k, (long long)ids[k], (long long)mask[k],
                            (long long)want_ids[i * L + k], (long long)want_mask[i * L + k]);
            }
        }
    }
    CU_ASSERT_EQUAL(mismatches, 0);
    qf_free(want_ids);
    qf_free(want_mask);
}

static void test_cleanup(void) {
    qf_bert_free(tok);
    tok = NULL;
    json_decref(expected);
    expected = NULL;
}

static CU_TestInfo tests[] = {
    { "texts_match_inputs", test_texts_match_inputs },
    { "wordpieces_and_ids", test_wordpieces_and_ids },
    { "padded_tensors", test_padded_tensors },
    { "cleanup", test_cleanup },
    CU_TEST_INFO_NULL,
};

int main(void) { return qf_test_main("bert_golden", tests); }
