/* fuzz_spm_encode.c - libFuzzer harness: the input is a text (any bytes; it
 * ends at the first NUL, as the C string the API takes) encoded by the
 * Flan-T5 fixture's SentencePiece tokenizer, loaded once. Checks: invalid
 * UTF-8 is QF_ERR_FORMAT; valid text gives ids inside the vocabulary (pieces
 * + extra ids) ending in `</s>` exactly once at the end unless the text itself
 * wrote it; with add_eos 0 the same ids without the final `</s>`; special ids
 * only where the text holds `<`; decode gives valid UTF-8 without surrounding
 * spaces. A second pass injects an allocation failure. */
#include "embed/spm.h"
#include "tests/fuzz/fuzz_util.h"

static qf_spm *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    if (qf_spm_load(fuzz_fixture("tiny-blip2-flan-t5"), &tok) != QF_OK) fuzz_die("qf_spm_load");
    return 0;
}

static void run(const char *text, size_t len, int faulting) {
    int32_t *ids = (int32_t *)1;
    int n = -1;
    qf_status s = qf_spm_encode(tok, text, 1, &ids, &n);
    if (s != QF_OK) {
        fuzz_check_error(s);
        FUZZ_CHECK(ids == NULL && n == 0);
        if (!fuzz_valid_utf8((const uint8_t *)text, len)) FUZZ_CHECK(s == QF_ERR_FORMAT);
        else FUZZ_CHECK(faulting && s == QF_ERR_NOMEM);
        return;
    }
    FUZZ_CHECK(fuzz_valid_utf8((const uint8_t *)text, len));
    const int eos = qf_spm_eos_id(tok), V = qf_spm_vocab_size(tok), P = qf_spm_piece_size(tok);
    FUZZ_CHECK(ids != NULL && n >= 1 && ids[n - 1] == eos);
    int has_lt = memchr(text, '<', len) != NULL;
    for (int i = 0; i < n; i++) {
        FUZZ_CHECK(ids[i] >= 0 && ids[i] < V);
        if (i < n - 1 && (ids[i] == eos || ids[i] == qf_spm_pad_id(tok) || ids[i] >= P)) FUZZ_CHECK(has_lt);
    }
    if (!faulting) {
        int32_t *ids2 = NULL;
        int n2 = 0;
        FUZZ_CHECK(qf_spm_encode(tok, text, 0, &ids2, &n2) == QF_OK);
        /* without add_eos: the same ids, less the appended </s> (a </s> the
         * text wrote stays) */
        FUZZ_CHECK(n2 == n || n2 == n - 1);
        FUZZ_CHECK(memcmp(ids, ids2, (size_t)n2 * sizeof *ids) == 0);
        qf_free(ids2);
    }
    char *out = NULL;
    s = qf_spm_decode(tok, ids, n, &out);
    if (s == QF_OK) {
        size_t ol = strlen(out);
        FUZZ_CHECK(fuzz_valid_utf8((const uint8_t *)out, ol));
        FUZZ_CHECK(ol == 0 || (out[0] != ' ' && out[ol - 1] != ' '));
        qf_free(out);
    } else {
        fuzz_check_error(s);
        FUZZ_CHECK(faulting && s == QF_ERR_NOMEM && out == NULL);
    }
    qf_free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_reset();
    char *text = fuzz_cstr(data, size);
    size_t len = strlen(text);
    run(text, len, 0);
    qf_alloc_fail_after((long)(fuzz_hash(data, size) % 4));
    run(text, len, 1);
    fuzz_reset();
    free(text);
    return 0;
}
