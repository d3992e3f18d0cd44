/* fuzz_bpe_encode.c - libFuzzer harness: the input is a text (any bytes, NUL
 * included) encoded by the fixture's OPT byte-level BPE tokenizer, loaded
 * once. Checks: qf_bpe_pretoken_end always advances and stays inside the
 * text; invalid UTF-8 is QF_ERR_FORMAT; valid text gives ids that all have
 * a token, `</s>` first (add_bos_token), the same ids through the
 * NUL-terminated entry point when the text has no NUL, and decodes back to
 * exactly the input when no special token was carved out of it. A second
 * pass injects an allocation failure. */
#include "embed/bpe.h"
#include "tests/fuzz/fuzz_util.h"

static qf_bpe *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    if (qf_bpe_load(fuzz_fixture("tiny-blip2-opt"), &tok) != QF_OK) fuzz_die("qf_bpe_load");
    return 0;
}

static void run(const uint8_t *data, size_t size, int faulting) {
    const char *text = (const char *)data;
    int32_t *ids = (int32_t *)1;
    int n = -1;
    qf_status s = qf_bpe_encode_n(tok, text, size, QF_BPE_BOS_DEFAULT, &ids, &n);
    if (s != QF_OK) {
        fuzz_check_error(s);
        FUZZ_CHECK(ids == NULL && n == 0);
        if (!fuzz_valid_utf8(data, size)) FUZZ_CHECK(s == QF_ERR_FORMAT);
        else FUZZ_CHECK(faulting && s == QF_ERR_NOMEM);
        return;
    }
    FUZZ_CHECK(fuzz_valid_utf8(data, size));
    FUZZ_CHECK(ids != NULL && n >= 1 && n <= (int)size + 1);
    FUZZ_CHECK(ids[0] == qf_bpe_bos_id(tok));
    int specials = 0;
    for (int i = 0; i < n; i++) {
        FUZZ_CHECK(qf_bpe_token(tok, ids[i]) != NULL);
        if (i > 0) specials += qf_bpe_is_special(tok, ids[i]);
    }
    if (!faulting && !memchr(data, 0, size)) {
        char *c = fuzz_cstr(data, size);
        int32_t *ids2 = NULL;
        int n2 = 0;
        FUZZ_CHECK(qf_bpe_encode(tok, c, QF_BPE_BOS_DEFAULT, &ids2, &n2) == QF_OK);
        FUZZ_CHECK(n2 == n && memcmp(ids, ids2, (size_t)n * sizeof *ids) == 0);
        qf_free(ids2);
        free(c);
    }
    char *out = NULL;
    size_t out_len = 0;
    s = qf_bpe_decode_n(tok, ids, n, 1, 0, &out, &out_len);
    if (s == QF_OK) {
        FUZZ_CHECK(out && out[out_len] == 0);
        FUZZ_CHECK(fuzz_valid_utf8((const uint8_t *)out, out_len));
        if (!specials) FUZZ_CHECK(out_len == size && memcmp(out, data, size) == 0);
        qf_free(out);
    } else {
        fuzz_check_error(s);
        FUZZ_CHECK(faulting && s == QF_ERR_NOMEM && out == NULL);
    }
    qf_free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_reset();
    const char *text = (const char *)data;
    for (size_t pos = 0; pos < size;) {
        size_t end = qf_bpe_pretoken_end(text, size, pos);
        FUZZ_CHECK(end > pos && end <= size);
        pos = end;
    }
    FUZZ_CHECK(qf_bpe_pretoken_end(text, size, size) == size);
    run(data, size, 0);
    qf_alloc_fail_after((long)(fuzz_hash(data, size) % 8));
    run(data, size, 1);
    fuzz_reset();
    return 0;
}
