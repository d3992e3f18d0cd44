/* test_bert.c - BERT WordPiece tokenizer edge cases on the real
 * bert-base-uncased vocab of the tiny-blip2-itm fixture (expected pieces are
 * given as token texts, their ids come from the vocab), plus hand-made model
 * folders for the loader's options and errors. */
#include "embed/bert.h"
#include "tests/testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static qf_bert *g_tok;

static void free_tok(void) { qf_bert_free(g_tok); }

static const qf_bert *tok(void) {
    if (!g_tok) {
        qf_status s = qf_bert_load(qf_fixture("tiny-blip2-itm"), &g_tok);
        if (s) {
            fprintf(stderr, "cannot load fixture tokenizer: %s\n", qf_last_error());
            abort();
        }
        atexit(free_tok);
    }
    return g_tok;
}

/* Tokenizes `text` with `t` and checks the piece texts against want[]
 * (NULL-terminated). Returns 1 when equal. */
static int pieces_are(const qf_bert *t, const char *text, const char *const *want) {
    int32_t ids[512];
    int n = -1;
    qf_status s = qf_bert_tokenize(t, text, ids, 512, &n);
    if (s) {
        fprintf(stderr, "\ntokenize failed: %s\n", qf_last_error());
        return 0;
    }
    int n_want = 0;
    while (want[n_want]) n_want++;
    int ok = n == n_want;
    for (int i = 0; ok && i < n; i++) {
        const char *got = qf_bert_token(t, ids[i]);
        ok = got && !strcmp(got, want[i]) && qf_bert_id(t, want[i]) == ids[i];
    }
    if (!ok) {
        fprintf(stderr, "\ntext \"%s\": got", text);
        for (int i = 0; i < n && i < 512; i++) fprintf(stderr, " '%s'", qf_bert_token(t, ids[i]));
        fprintf(stderr, ", want");
        for (int i = 0; i < n_want; i++) fprintf(stderr, " '%s'", want[i]);
        fprintf(stderr, "\n");
    }
    return ok;
}

#define EXPECT(text, ...) CU_ASSERT(pieces_are(tok(), (text), (const char *const[]){ __VA_ARGS__, NULL }))

/* Same ids for two spellings. */
static int same_ids(const char *a, const char *b) {
    int32_t ia[256], ib[256];
    int na = -1, nb = -2;
    if (qf_bert_tokenize(tok(), a, ia, 256, &na) || qf_bert_tokenize(tok(), b, ib, 256, &nb)) return 0;
    return na == nb && na <= 256 && !memcmp(ia, ib, (size_t)na * sizeof *ia);
}

static int count_pieces(const char *text) {
    int n = -1;
    if (qf_bert_tokenize(tok(), text, NULL, 0, &n)) return -1;
    return n;
}

static void test_load_fixture(void) {
    const qf_bert *t = tok();
    CU_ASSERT_EQUAL(qf_bert_vocab_size(t), 30523);   /* 30522 vocab.txt lines + [DEC] */
    CU_ASSERT_STRING_EQUAL(qf_bert_token(t, qf_bert_cls_id(t)), "[CLS]");
    CU_ASSERT_STRING_EQUAL(qf_bert_token(t, qf_bert_sep_id(t)), "[SEP]");
    CU_ASSERT_STRING_EQUAL(qf_bert_token(t, qf_bert_pad_id(t)), "[PAD]");
    CU_ASSERT_STRING_EQUAL(qf_bert_token(t, qf_bert_unk_id(t)), "[UNK]");
    CU_ASSERT_STRING_EQUAL(qf_bert_token(t, qf_bert_mask_id(t)), "[MASK]");
    CU_ASSERT_STRING_EQUAL(qf_bert_token(t, qf_bert_dec_id(t)), "[DEC]");
    CU_ASSERT_EQUAL(qf_bert_dec_id(t), qf_bert_vocab_size(t) - 1);
    CU_ASSERT_EQUAL(qf_bert_pad_id(t), 0);            /* the Q-Former's pad_token_id */
    CU_ASSERT_EQUAL(qf_bert_id(t, "[DEC]"), qf_bert_dec_id(t));
    CU_ASSERT_EQUAL(qf_bert_id(t, "no-such-token-here"), -1);
    CU_ASSERT_PTR_NULL(qf_bert_token(t, -1));
    CU_ASSERT_PTR_NULL(qf_bert_token(t, qf_bert_vocab_size(t)));
    /* The line number is the id. */
    CU_ASSERT_EQUAL(qf_bert_id(t, qf_bert_token(t, 1000)), 1000);
}

static void test_lower_and_accents(void) {
    EXPECT("Café", "cafe");
    EXPECT("naïve RÉSUMÉ", "naive", "resume");
    EXPECT("Cafe\xcc\x81", "cafe");                       /* decomposed é */
    EXPECT("e\xcc\x81", "e");
    CU_ASSERT(same_ids("\xc4\xb0stanbul", "istanbul"));   /* U+0130: lower is i + U+0307 */
    CU_ASSERT(same_ids("\xe2\x84\xaa", "k"));              /* KELVIN SIGN */
    /* Lower casing is per character: capital sigma always becomes σ, never
     * the final form ς (HF lower-cases with a one-character regex). */
    CU_ASSERT(same_ids("ΟΔΟΣ", "οδοσ"));
    CU_ASSERT(!same_ids("ΟΔΟΣ", "οδος"));
    EXPECT("ΟΔΟΣ", "ο", "##δ", "##ο", "##σ");
    /* NFD splits Hangul syllables into jamo; kana lose the voicing mark. */
    CU_ASSERT(same_ids("한", "\xe1\x84\x92\xe1\x85\xa1\xe1\x86\xab"));
    CU_ASSERT(same_ids("がな", "かな"));
}

static void test_cjk(void) {
    EXPECT("北京", "北", "京");
    EXPECT("ab北cd", "ab", "北", "cd");
    EXPECT("北京欢迎你 hello 世界", "北", "京", "[UNK]", "[UNK]", "[UNK]", "hello", "世", "[UNK]");
    /* Hiragana is not a "Chinese character": it stays one word for WordPiece. */
    EXPECT("ひらがな", "ひ", "##ら", "##か", "##な");
}

static void test_cleaning(void) {
    EXPECT("he\x01llo", "hello");                     /* Cc dropped, word joined */
    EXPECT("hel\xe2\x80\x8blo", "hello");             /* U+200B (Cf) dropped */
    EXPECT("hel\xef\xbf\xbdlo", "hello");             /* U+FFFD dropped */
    EXPECT("hel\xee\x80\x80lo", "hello");             /* private use (Co) dropped */
    EXPECT("hello\tworld\nagain\r\nx", "hello", "world", "again", "x");
    EXPECT("a\xc2\xa0" "b\xe2\x80\xa8" "c\xe3\x80\x80" "d", "a", "b", "c", "d"); /* NBSP, LS, ideographic space */
    EXPECT("  \t lots   of\n\n space  ", "lots", "of", "space");
}

static void test_punctuation_digits(void) {
    EXPECT("hello,world!", "hello", ",", "world", "!");
    EXPECT("$5 ^_^", "$", "5", "^", "_", "^");          /* ASCII symbols count as punctuation */
    EXPECT("«hi»", "«", "hi", "»");
    EXPECT("12.5", "12", ".", "5");
    EXPECT("s'il", "s", "'", "il");
    EXPECT("em-dash … ellipsis", "em", "-", "dash", "…", "el", "##lip", "##sis");
}

static void test_wordpiece(void) {
    EXPECT("unaffable", "una", "##ffa", "##ble");       /* longest match first, not "un" */
    EXPECT("tokenizer", "token", "##izer");
    EXPECT("running", "running");
    EXPECT("\xf0\x9f\x98\x80", "[UNK]");                /* emoji: not in the vocab */
    EXPECT("a\xf0\x9f\x98\x80", "[UNK]");               /* one bad char spoils the word */
    EXPECT("hi \xf0\x9f\x98\x80 there", "hi", "[UNK]", "there");
}

static void test_long_word(void) {
    char buf[512];
    memset(buf, 'a', 100); buf[100] = 0;
    int n100 = count_pieces(buf);
    CU_ASSERT(n100 > 1);
    memset(buf, 'a', 101); buf[101] = 0;
    EXPECT(buf, "[UNK]");
    /* The limit counts characters after accent stripping: 101 é -> [UNK],
     * 100 a + U+0301 (200 code points) -> 100 chars -> pieces as for 100 a. */
    buf[0] = 0;
    for (int i = 0; i < 101; i++) strcat(buf, "\xc3\xa9");
    EXPECT(buf, "[UNK]");
    buf[0] = 0;
    for (int i = 0; i < 100; i++) strcat(buf, "a\xcc\x81");
    CU_ASSERT_EQUAL(count_pieces(buf), n100);
}

static void test_special_tokens(void) {
    const qf_bert *t = tok();
    EXPECT("a [DEC] b", "a", "[DEC]", "b");
    EXPECT("x[DEC]y", "x", "[DEC]", "y");
    EXPECT("[DEC][DEC]", "[DEC]", "[DEC]");
    EXPECT("A[CLS]B", "a", "[CLS]", "b");
    EXPECT("[MASK]", "[MASK]");
    /* Matching is case sensitive, and lower casing spares only exact matches. */
    EXPECT("[dec]", "[", "dec", "]");
    EXPECT("[Dec]", "[", "dec", "]");
    EXPECT("[cls]", "[", "cl", "##s", "]");
    int32_t ids[4];
    int n = 0;
    CU_ASSERT_EQUAL(qf_bert_tokenize(t, "[DEC]", ids, 4, &n), QF_OK);
    CU_ASSERT_EQUAL(n, 1);
    CU_ASSERT_EQUAL(ids[0], qf_bert_dec_id(t));
}

static void test_invalid_utf8(void) {
    const char *bad[] = {
        "\xff", "ok \xc3", "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
        "abc\x80", "caf\xe9",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int32_t ids[8];
        int n = 99;
        CU_ASSERT_EQUAL(qf_bert_tokenize(tok(), bad[i], ids, 8, &n), QF_ERR_FORMAT);
        CU_ASSERT_EQUAL(n, 0);
        CU_ASSERT(strstr(qf_last_error(), "UTF-8") != NULL);
        int64_t eid[32], mask[32];
        CU_ASSERT_EQUAL(qf_bert_encode(tok(), bad[i], 32, 1, eid, mask, &n), QF_ERR_FORMAT);
        CU_ASSERT_EQUAL(n, 0);
    }
    CU_ASSERT(strstr(qf_last_error(), "offset 3") != NULL);   /* "caf\xe9" */
}

static void test_encode(void) {
    const qf_bert *t = tok();
    int64_t ids[40], mask[40];
    int n = -1;

    CU_ASSERT_EQUAL(qf_bert_encode(t, "", 32, 0, ids, mask, &n), QF_OK);
    CU_ASSERT_EQUAL(n, 2);
    CU_ASSERT_EQUAL(ids[0], qf_bert_cls_id(t));
    CU_ASSERT_EQUAL(ids[1], qf_bert_sep_id(t));
    CU_ASSERT(mask[0] == 1 && mask[1] == 1);

    CU_ASSERT_EQUAL(qf_bert_encode(t, " \t\n", 32, 1, ids, mask, &n), QF_OK);
    CU_ASSERT_EQUAL(n, 2);
    for (int i = 2; i < 32; i++) CU_ASSERT(ids[i] == qf_bert_pad_id(t) && mask[i] == 0);

    /* Truncation keeps [SEP] last and the first max_len-2 pieces. */
    const char *long_text = "one two three four five six seven eight nine ten eleven twelve "
                            "thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty "
                            "twenty one twenty two twenty three twenty four twenty five twenty six";
    int32_t pieces[64];
    int total = 0;
    CU_ASSERT_EQUAL(qf_bert_tokenize(t, long_text, pieces, 64, &total), QF_OK);
    CU_ASSERT(total > 30 && total <= 64);
    ids[32] = -7;
    CU_ASSERT_EQUAL(qf_bert_encode(t, long_text, QF_BERT_MAX_TXT_LEN, 1, ids, mask, &n), QF_OK);
    CU_ASSERT_EQUAL(n, 32);
    CU_ASSERT_EQUAL(ids[0], qf_bert_cls_id(t));
    CU_ASSERT_EQUAL(ids[31], qf_bert_sep_id(t));
    CU_ASSERT_EQUAL(ids[32], -7);                     /* nothing written past max_len */
    for (int i = 0; i < 30; i++) CU_ASSERT_EQUAL(ids[1 + i], pieces[i]);
    for (int i = 0; i < 32; i++) CU_ASSERT_EQUAL(mask[i], 1);

    /* Short max_len; mask may be NULL. */
    CU_ASSERT_EQUAL(qf_bert_encode(t, "hello world", 3, 0, ids, NULL, &n), QF_OK);
    CU_ASSERT_EQUAL(n, 3);
    CU_ASSERT_EQUAL(ids[1], qf_bert_id(t, "hello"));
    CU_ASSERT_EQUAL(ids[2], qf_bert_sep_id(t));
    CU_ASSERT_EQUAL(qf_bert_encode(t, "hello", 2, 0, ids, NULL, &n), QF_OK);
    CU_ASSERT(n == 2 && ids[1] == qf_bert_sep_id(t));
    CU_ASSERT_EQUAL(qf_bert_encode(t, "hello", 1, 0, ids, NULL, &n), QF_ERR_ARG);

    /* tokenize reports the full count but writes only cap ids. */
    int32_t few[3] = { -1, -1, -1 };
    CU_ASSERT_EQUAL(qf_bert_tokenize(t, "a b c d e", few, 2, &total), QF_OK);
    CU_ASSERT_EQUAL(total, 5);
    CU_ASSERT_EQUAL(few[1], qf_bert_id(t, "b"));
    CU_ASSERT_EQUAL(few[2], -1);
}

/* ---- hand-made model folders -------------------------------------------- */

static const char *write_model(const char *name, const char *vocab, const char *config,
                               const char *added) {
    static char dir[512];
    char path[600], cmd[700];
    snprintf(dir, sizeof dir, "%s/%s", qf_test_tmpdir(), name);
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir);
    if (system(cmd) != 0) abort();
    const char *files[3] = { "vocab.txt", "tokenizer_config.json", "added_tokens.json" };
    const char *bodies[3] = { vocab, config, added };
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        remove(path);
        if (!bodies[i]) continue;
        FILE *f = fopen(path, "wb");
        if (!f) abort();
        fputs(bodies[i], f);
        fclose(f);
    }
    return dir;
}

/* CRLF and CR line ends, no final newline, a duplicate (later line wins). */
static const char *small_vocab =
    "[PAD]\r\n[UNK]\r\n[CLS]\r[SEP]\n[MASK]\nHello\nhello\nCaf\xc3\xa9\ncaf\xc3\xa9\ncafe\n"
    "##lo\nhel\n,\nhello\nCAFE";

static void test_cased_config(void) {
    qf_bert *t = NULL;
    const char *dir = write_model("cased", small_vocab,
                                  "{\"do_lower_case\": false, \"bos_token\": null}", NULL);
    CU_ASSERT_EQUAL_FATAL(qf_bert_load(dir, &t), QF_OK);
    CU_ASSERT_EQUAL(qf_bert_vocab_size(t), 15);
    CU_ASSERT_EQUAL(qf_bert_sep_id(t), 3);
    CU_ASSERT_EQUAL(qf_bert_id(t, "hello"), 13);      /* duplicate: later line wins */
    CU_ASSERT_EQUAL(qf_bert_id(t, "CAFE"), 14);        /* last line without newline */
    CU_ASSERT_EQUAL(qf_bert_dec_id(t), -1);
    CU_ASSERT(pieces_are(t, "Hello, hello", (const char *const[]){ "Hello", ",", "hello", NULL }));
    /* No lower casing, no accent strip; NFC composes e + U+0301. */
    CU_ASSERT(pieces_are(t, "Cafe\xcc\x81", (const char *const[]){ "Caf\xc3\xa9", NULL }));
    CU_ASSERT(pieces_are(t, "CAFE", (const char *const[]){ "CAFE", NULL }));
    qf_bert_free(t);

    dir = write_model("lower-keep-accents", small_vocab,
                      "{\"do_lower_case\": true, \"strip_accents\": false}", NULL);
    CU_ASSERT_EQUAL_FATAL(qf_bert_load(dir, &t), QF_OK);
    CU_ASSERT(pieces_are(t, "CAF\xc3\x89", (const char *const[]){ "caf\xc3\xa9", NULL }));
    CU_ASSERT(pieces_are(t, "HELLO", (const char *const[]){ "hello", NULL }));
    qf_bert_free(t);

    /* Defaults without tokenizer_config.json: uncased, accents stripped. */
    dir = write_model("defaults", small_vocab, NULL, "{\"[NEW]\": 15}");
    CU_ASSERT_EQUAL_FATAL(qf_bert_load(dir, &t), QF_OK);
    CU_ASSERT_EQUAL(qf_bert_vocab_size(t), 16);
    CU_ASSERT(pieces_are(t, "CAF\xc3\x89 x[NEW]", (const char *const[]){ "cafe", "[UNK]", "[NEW]", NULL }));
    qf_bert_free(t);
}

static void test_load_errors(void) {
    qf_bert *t = (qf_bert *)1;
    CU_ASSERT_EQUAL(qf_bert_load("/nonexistent/model", &t), QF_ERR_IO);
    CU_ASSERT_PTR_NULL(t);
    CU_ASSERT(strstr(qf_last_error(), "/nonexistent/model/vocab.txt") != NULL);

    const char *dir = write_model("no-unk", "[PAD]\n[CLS]\n[SEP]\nhello\n", NULL, NULL);
    CU_ASSERT_EQUAL(qf_bert_load(dir, &t), QF_ERR_MISSING);
    CU_ASSERT(strstr(qf_last_error(), "[UNK]") != NULL);

    dir = write_model("bad-json", small_vocab, "{\"do_lower_case\": tru", NULL);
    CU_ASSERT_EQUAL(qf_bert_load(dir, &t), QF_ERR_FORMAT);
    CU_ASSERT(strstr(qf_last_error(), "tokenizer_config.json") != NULL);

    dir = write_model("bad-added", small_vocab, NULL, "{\"[NEW]\": \"x\"}");
    CU_ASSERT_EQUAL(qf_bert_load(dir, &t), QF_ERR_FORMAT);
    CU_ASSERT(strstr(qf_last_error(), "added_tokens.json") != NULL);

    dir = write_model("bad-utf8", "[PAD]\n[UNK]\n[CLS]\n[SEP]\n\xff\xfe\n", NULL, NULL);
    CU_ASSERT_EQUAL(qf_bert_load(dir, &t), QF_ERR_FORMAT);
    CU_ASSERT(strstr(qf_last_error(), "line 5") != NULL);

    dir = write_model("empty", "", NULL, NULL);
    CU_ASSERT_EQUAL(qf_bert_load(dir, &t), QF_ERR_FORMAT);
    qf_bert_free(NULL);
}

/* Every allocation of load and tokenize may fail: NOMEM comes back, no crash. */
static void test_alloc_failures(void) {
    const char *dir = qf_fixture("tiny-blip2-itm");
    int load_ok = 0, enc_ok = 0;
    for (long k = 0; k < 200 && !load_ok; k++) {
        qf_bert *t = NULL;
        qf_alloc_fail_after(k);
        qf_status s = qf_bert_load(dir, &t);
        qf_alloc_fail_after(-1);
        if (s == QF_OK) { load_ok = 1; qf_bert_free(t); }
        else { CU_ASSERT_EQUAL(s, QF_ERR_NOMEM); CU_ASSERT_PTR_NULL(t); }
    }
    CU_ASSERT(load_ok);
    for (long k = 0; k < 50 && !enc_ok; k++) {
        int64_t ids[32];
        int n = -1;
        qf_alloc_fail_after(k);
        qf_status s = qf_bert_encode(tok(), "Ünïcödé [DEC] text, ΟΔΟΣ 北京", 32, 1, ids, NULL, &n);
        qf_alloc_fail_after(-1);
        if (s == QF_OK) enc_ok = 1;
        else CU_ASSERT_EQUAL(s, QF_ERR_NOMEM);
    }
    CU_ASSERT(enc_ok);
}

static CU_TestInfo tests[] = {
    { "load_fixture", test_load_fixture },
    { "lower_and_accents", test_lower_and_accents },
    { "cjk", test_cjk },
    { "cleaning", test_cleaning },
    { "punctuation_digits", test_punctuation_digits },
    { "wordpiece", test_wordpiece },
    { "long_word", test_long_word },
    { "special_tokens", test_special_tokens },
    { "invalid_utf8", test_invalid_utf8 },
    { "encode", test_encode },
    { "cased_config", test_cased_config },
    { "load_errors", test_load_errors },
    { "alloc_failures", test_alloc_failures },
    CU_TEST_INFO_NULL,
};

int main(void) { return qf_test_main("bert", tests); }
