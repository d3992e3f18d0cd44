/* fuzz_bpe_load.c - libFuzzer harness: the input is a GPT-2 BPE tokenizer
 * folder packed as one file, its parts separated by a line "=====":
 *   vocab.json [===== merges.txt [===== tokenizer_config.json
 *   [===== special_tokens_map.json [===== added_tokens.json]]]]
 * (an absent part means an absent file; merges.txt is required by the
 * loader). The parts are written to a scratch folder and loaded with
 * qf_bpe_load. A tokenizer that loads must encode a few fixed texts (and
 * the special names) into ids that all have a token and decode them back
 * into valid UTF-8, and decode every id that has a token. A second pass
 * injects an allocation failure. */
#include "embed/bpe.h"
#include "tests/fuzz/fuzz_util.h"

#define SEP "\n=====\n"

static const char *const files[] = {
    "vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
};
enum { N_FILES = sizeof files / sizeof files[0] };

static const char *dir;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    dir = fuzz_tmpdir();
    return 0;
}

static void roundtrip(const qf_bpe *t, const char *text, int faulting) {
    int32_t *ids = NULL;
    int n = 0;
    for (int bos = 0; bos < 2; bos++) {
        qf_status s = qf_bpe_encode(t, text, bos ? QF_BPE_BOS_DEFAULT : 0, &ids, &n);
        if (s != QF_OK) {
            fuzz_check_error(s);
            /* no unk token and a piece outside vocab.json; no bos token */
            FUZZ_CHECK(s == QF_ERR_FORMAT || s == QF_ERR_ARG || (faulting && s == QF_ERR_NOMEM));
            continue;
        }
        for (int i = 0; i < n; i++) FUZZ_CHECK(qf_bpe_token(t, ids[i]) != NULL);
        for (int skip = 0; skip < 2; skip++) {
            char *out = NULL;
            size_t len = 0;
            s = qf_bpe_decode_n(t, ids, n, skip, !skip, &out, &len);
            if (s != QF_OK) {
                fuzz_check_error(s);
                FUZZ_CHECK(faulting && s == QF_ERR_NOMEM);
                continue;
            }
            FUZZ_CHECK(out[len] == 0 && fuzz_valid_utf8((const uint8_t *)out, len));
            qf_free(out);
        }
        qf_free(ids);
    }
}

static void run(int faulting) {
    qf_bpe *t = (qf_bpe *)1;
    qf_status s = qf_bpe_load(dir, &t);
    if (s != QF_OK) {
        fuzz_check_error(s);
        FUZZ_CHECK(t == NULL);
        FUZZ_CHECK(s != QF_ERR_NOMEM || faulting);
        return;
    }
    int n_ids = qf_bpe_n_ids(t);
    FUZZ_CHECK(n_ids >= 1 && qf_bpe_vocab_size(t) >= 1);
    FUZZ_CHECK(qf_bpe_token(t, -1) == NULL && qf_bpe_token(t, n_ids) == NULL);
    int sp[4] = { qf_bpe_bos_id(t), qf_bpe_eos_id(t), qf_bpe_pad_id(t), qf_bpe_unk_id(t) };
    for (int k = 0; k < 4; k++) FUZZ_CHECK(sp[k] == -1 || qf_bpe_token(t, sp[k]) != NULL);

    roundtrip(t, "Hello world, it's a  test\n\t x 12.5 caf\xc3\xa9 \xe4\xb8\xad </s><pad>", faulting);
    roundtrip(t, "", faulting);
    char buf[600];
    size_t k = 0;
    for (int i = 0; i < 4; i++) {
        const char *tok = sp[i] >= 0 ? qf_bpe_token(t, sp[i]) : NULL;
        if (!tok) continue;
        size_t l = strnlen(tok, 100);
        memcpy(buf + k, tok, l);
        k += l;
        buf[k++] = ' ';
    }
    buf[k] = 0;
    if (fuzz_valid_utf8((const uint8_t *)buf, k)) roundtrip(t, buf, faulting);

    /* every id that has a token decodes (at most 4096 of the first 65536) */
    int32_t ids[4096];
    int n = 0;
    for (int id = 0; id < n_ids && id < 65536 && n < 4096; id++)
        if (qf_bpe_token(t, id)) ids[n++] = id;
    char *out = NULL;
    size_t len = 0;
    s = qf_bpe_decode_n(t, ids, n, 0, 1, &out, &len);
    if (s == QF_OK) {
        FUZZ_CHECK(out[len] == 0 && fuzz_valid_utf8((const uint8_t *)out, len));
        qf_free(out);
    } else {
        fuzz_check_error(s);
        FUZZ_CHECK(faulting && s == QF_ERR_NOMEM);
    }
    qf_bpe_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_reset();
    const uint8_t *part[N_FILES];
    size_t len[N_FILES];
    size_t np = fuzz_split(data, size, SEP, part, len, N_FILES);
    for (size_t i = 0; i < N_FILES; i++)
        fuzz_put_file(dir, files[i], i < np ? part[i] : NULL, i < np ? len[i] : 0);
    run(0);
    qf_alloc_fail_after((long)(fuzz_hash(data, size) % 48));
    run(1);
    fuzz_reset();
    return 0;
}
