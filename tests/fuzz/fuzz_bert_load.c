/* fuzz_bert_load.c - libFuzzer harness: the input is a BERT tokenizer folder
 * packed as one file, its parts separated by a line "=====":
 *   vocab.txt [===== tokenizer_config.json [===== added_tokens.json
 *   [===== special_tokens_map.json]]]
 * (a part that is absent means the file is absent). The parts are written to
 * a scratch folder and loaded with qf_bert_load. A tokenizer that loads must
 * have [CLS]/[SEP]/[PAD]/[UNK] ids with tokens and must encode a few fixed
 * texts (the special names and the first vocab lines included) into ids that
 * all have a token. A second pass injects an allocation failure. */
#include "embed/bert.h"
#include "tests/fuzz/fuzz_util.h"

#define SEP "\n=====\n"

static const char *const files[] = {
    "vocab.txt", "tokenizer_config.json", "added_tokens.json", "special_tokens_map.json",
};
enum { N_FILES = sizeof files / sizeof files[0] };

static const char *dir;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    dir = fuzz_tmpdir();
    return 0;
}

static void encode_check(const qf_bert *t, const char *text, int faulting) {
    int64_t ids[16], mask[16];
    int n = 0;
    qf_status s = qf_bert_encode(t, text, 16, 1, ids, mask, &n);
    if (s != QF_OK) {
        fuzz_check_error(s);
        FUZZ_CHECK(s == QF_ERR_FORMAT || (faulting && s == QF_ERR_NOMEM));
        return;
    }
    FUZZ_CHECK(n >= 2 && n <= 16);
    for (int i = 0; i < 16; i++) FUZZ_CHECK(qf_bert_token(t, (int)ids[i]) != NULL);
}

static void run(int faulting) {
    qf_bert *t = (qf_bert *)1;
    qf_status s = qf_bert_load(dir, &t);
    if (s != QF_OK) {
        fuzz_check_error(s);
        FUZZ_CHECK(t == NULL);
        FUZZ_CHECK(s != QF_ERR_NOMEM || faulting);
        return;
    }
    int vs = qf_bert_vocab_size(t);
    FUZZ_CHECK(vs >= 1);
    int sp[4] = { qf_bert_cls_id(t), qf_bert_sep_id(t), qf_bert_pad_id(t), qf_bert_unk_id(t) };
    for (int k = 0; k < 4; k++) FUZZ_CHECK(sp[k] >= 0 && sp[k] < vs && qf_bert_token(t, sp[k]));
    FUZZ_CHECK(qf_bert_token(t, -1) == NULL && qf_bert_token(t, vs) == NULL);

    encode_check(t, "Hello, WORLD! caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 [CLS] [MASK][DEC] x", faulting);
    encode_check(t, "", faulting);
    /* the first vocab lines and the special names, as text */
    char buf[1024];
    size_t k = 0;
    for (int id = 0; id < vs && id < 24 && k < 512; id++) {
        const char *tok = qf_bert_token(t, id);
        if (!tok) continue;
        size_t l = strnlen(tok, 40);
        memcpy(buf + k, tok, l);
        k += l;
        buf[k++] = id % 3 ? ' ' : 'a';
    }
    for (int i = 0; i < 4 && k < 900; i++) {
        const char *tok = qf_bert_token(t, sp[i]);
        size_t l = strnlen(tok, 40);
        memcpy(buf + k, tok, l);
        k += l;
    }
    buf[k] = 0;
    encode_check(t, buf, faulting);
    qf_bert_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_reset();
    const uint8_t *part[N_FILES];
    size_t len[N_FILES];
    size_t np = fuzz_split(data, size, SEP, part, len, N_FILES);
    for (size_t i = 0; i < N_FILES; i++)
        fuzz_put_file(dir, files[i], i < np ? part[i] : NULL, i < np ? len[i] : 0);
    run(0);
    qf_alloc_fail_after((long)(fuzz_hash(data, size) % 40));
    run(1);
    fuzz_reset();
    return 0;
}
