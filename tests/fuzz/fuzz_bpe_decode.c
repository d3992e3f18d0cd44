/* fuzz_bpe_decode.c - libFuzzer harness: qf_bpe_decode_n on the fixture's
 * OPT tokenizer (loaded once). Input: byte 0 holds flags (bit 0
 * skip_special, bit 1 clean_up_tokenization_spaces, bit 2 fold each id into
 * [-2, n_ids + 2) so most ids are valid), the rest is little-endian int32
 * ids. Checks: an id with no token is QF_ERR_ARG, otherwise the result is
 * NUL-terminated valid UTF-8 of the length reported, the same through
 * qf_bpe_decode, and cleaning spaces never makes it longer. A second pass
 * injects an allocation failure. */
#include "embed/bpe.h"
#include "tests/fuzz/fuzz_util.h"

static qf_bpe *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    if (qf_bpe_load(fuzz_fixture("tiny-blip2-opt"), &tok) != QF_OK) fuzz_die("qf_bpe_load");
    return 0;
}

static void run(const int32_t *ids, int n, int skip, int clean, int faulting) {
    int valid = 1;
    for (int i = 0; i < n; i++)
        if (!qf_bpe_token(tok, ids[i])) valid = 0;
    char *out = (char *)1;
    size_t len = 7;
    qf_status s = qf_bpe_decode_n(tok, ids, n, skip, clean, &out, &len);
    if (s != QF_OK) {
        fuzz_check_error(s);
        FUZZ_CHECK(out == NULL && len == 0);
        if (!faulting) FUZZ_CHECK(!valid && s == QF_ERR_ARG);
        else FUZZ_CHECK(s == QF_ERR_NOMEM || (!valid && s == QF_ERR_ARG));
        return;
    }
    FUZZ_CHECK(valid && out && out[len] == 0);
    FUZZ_CHECK(fuzz_valid_utf8((const uint8_t *)out, len));
    char *plain = NULL;
    s = qf_bpe_decode(tok, ids, n, skip, clean, &plain);
    if (s == QF_OK) {
        FUZZ_CHECK(memcmp(plain, out, len + 1) == 0);
        qf_free(plain);
    } else {
        FUZZ_CHECK(faulting && s == QF_ERR_NOMEM && plain == NULL);
    }
    if (clean) {
        char *raw = NULL;
        size_t raw_len = 0;
        if (qf_bpe_decode_n(tok, ids, n, skip, 0, &raw, &raw_len) == QF_OK) {
            FUZZ_CHECK(raw_len >= len);
            qf_free(raw);
        }
    }
    qf_free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_reset();
    if (size == 0) return 0;
    int flags = data[0];
    int n = (int)((size - 1) / 4);
    int32_t *ids = malloc(((size_t)n + 1) * sizeof *ids);
    if (!ids) fuzz_die("malloc");
    uint32_t span = (uint32_t)qf_bpe_n_ids(tok) + 4;
    for (int i = 0; i < n; i++) {
        const uint8_t *p = data + 1 + 4 * (size_t)i;
        uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        ids[i] = flags & 4 ? (int32_t)(u % span) - 2 : (int32_t)u;
    }
    run(ids, n, flags & 1, flags >> 1 & 1, 0);
    qf_alloc_fail_after((long)(fuzz_hash(data, size) % 8));
    run(ids, n, flags & 1, flags >> 1 & 1, 1);
    fuzz_reset();
    free(ids);
    return 0;
}
