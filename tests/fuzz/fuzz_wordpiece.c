/* fuzz_wordpiece.c - libFuzzer harness: the input is a text (bytes up to the
 * first NUL) tokenized by the BERT WordPiece tokenizer, loaded once: the
 * fixture's (lower case, accent strip, CJK split, [DEC] added) and a variant
 * over the same vocab.txt (case kept, accents kept, no CJK split, one more
 * added token and an additional special token). Checks: every id has a
 * token; tokenize with a small cap, with cap 0 and with room for all agree;
 * qf_bert_encode gives [CLS] pieces [SEP] + [PAD] with the matching mask;
 * invalid UTF-8 is QF_ERR_FORMAT from both. A second pass injects an
 * allocation failure. */
#include "embed/bert.h"
#include "tests/fuzz/fuzz_util.h"

#define MAX_LEN QF_BERT_MAX_TXT_LEN

static qf_bert *tok[2];

static void load_variant(void) {
    const char *dir = fuzz_tmpdir();
    char link[4200];
    snprintf(link, sizeof link, "%s/vocab.txt", dir);
    if (symlink(fuzz_fixture("tiny-blip2-itm/vocab.txt"), link) != 0) fuzz_die("symlink");
    static const char cfg[] =
        "{\"do_lower_case\": false, \"strip_accents\": false, \"tokenize_chinese_chars\": false,"
        " \"added_tokens_decoder\": {\"30522\": {\"content\": \"[DEC]\"}},"
        " \"additional_special_tokens\": [\"[unused1]\", {\"content\": \"the\"}, \"\", 7]}";
    static const char added[] = "{\"[DEC]\": 30522, \"<img>\": 30523}";
    fuzz_put_file(dir, "tokenizer_config.json", cfg, sizeof cfg - 1);
    fuzz_put_file(dir, "added_tokens.json", added, sizeof added - 1);
    if (qf_bert_load(dir, &tok[1]) != QF_OK) fuzz_die("qf_bert_load (variant)");
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    if (qf_bert_load(fuzz_fixture("tiny-blip2-itm"), &tok[0]) != QF_OK) fuzz_die("qf_bert_load");
    load_variant();
    return 0;
}

static void run(const qf_bert *t, const char *text, size_t cap, int faulting) {
    int vs = qf_bert_vocab_size(t);
    /* each id stands for at least one code point of the lower-cased text,
     * which has at most 2 per input byte: room for all, checked below */
    size_t len = strlen(text);
    int room = (int)(2 * len + 1);
    int32_t *all = malloc((size_t)room * sizeof *all), small[4];
    if (!all) fuzz_die("malloc");
    int n0 = -1;
    qf_status s0 = qf_bert_tokenize(t, text, all, room, &n0);
    if (s0 != QF_OK) {
        fuzz_check_error(s0);
        FUZZ_CHECK(s0 == QF_ERR_FORMAT || (faulting && s0 == QF_ERR_NOMEM));
        FUZZ_CHECK(n0 == 0);
        if (s0 == QF_ERR_FORMAT) {
            FUZZ_CHECK(!fuzz_valid_utf8((const uint8_t *)text, len));
            int64_t ids[MAX_LEN];
            int nt = -1;
            qf_status se = qf_bert_encode(t, text, MAX_LEN, 1, ids, NULL, &nt);
            FUZZ_CHECK((se == QF_ERR_FORMAT || (faulting && se == QF_ERR_NOMEM)) && nt == 0);
        }
        free(all);
        return;
    }
    FUZZ_CHECK(fuzz_valid_utf8((const uint8_t *)text, len));
    FUZZ_CHECK(n0 >= 0 && n0 <= room);
    for (int i = 0; i < n0; i++) FUZZ_CHECK(all[i] >= 0 && all[i] < vs && qf_bert_token(t, all[i]));
    if (cap & 8) {                     /* truncated output, and counting only */
        int n1 = -1, n2 = -1;
        qf_status s1 = qf_bert_tokenize(t, text, small, (int)(cap % 5), &n1);
        qf_status s2 = qf_bert_tokenize(t, text, NULL, 0, &n2);
        if (!faulting) FUZZ_CHECK(s1 == QF_OK && s2 == QF_OK);
        if (s1 == QF_OK) {
            FUZZ_CHECK(n1 == n0);
            for (int i = 0; i < (int)(cap % 5) && i < n0; i++) FUZZ_CHECK(small[i] == all[i]);
        }
        if (s2 == QF_OK) FUZZ_CHECK(n2 == n0);
    }

    int64_t ids[MAX_LEN], mask[MAX_LEN];
    int nt = -1;
    qf_status se = qf_bert_encode(t, text, MAX_LEN, 1, ids, mask, &nt);
    if (se == QF_OK) {
        int np = n0 < MAX_LEN - 2 ? n0 : MAX_LEN - 2;
        FUZZ_CHECK(nt == np + 2);
        FUZZ_CHECK(ids[0] == qf_bert_cls_id(t) && ids[nt - 1] == qf_bert_sep_id(t));
        for (int i = 0; i < MAX_LEN; i++) {
            FUZZ_CHECK(mask[i] == (i < nt));
            if (i >= nt) FUZZ_CHECK(ids[i] == qf_bert_pad_id(t));
            if (i > 0 && i < nt - 1) FUZZ_CHECK(ids[i] == all[i - 1]);
        }
    } else {
        fuzz_check_error(se);
        FUZZ_CHECK(faulting && se == QF_ERR_NOMEM);
    }
    free(all);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_reset();
    char *text = fuzz_cstr(data, size);
    uint64_t h = fuzz_hash(data, size);
    for (int k = 0; k < 2; k++) run(tok[k], text, (size_t)h, 0);
    qf_alloc_fail_after((long)((h >> 8) % 6));
    run(tok[h >> 20 & 1], text, (size_t)h, 1);
    fuzz_reset();
    free(text);
    return 0;
}

