/* test_bpe.c - OPT byte-level BPE: pre-tokenizer splits, round trips on
 * arbitrary valid UTF-8, invalid input, Python's U+FFFD rule on decode,
 * special tokens, clean-up, merge order and config handling on tiny
 * tokenizers written here, and the error paths under allocation failure.
 * Expected splits and replacement strings were checked against Python
 * (`regex` module, bytes.decode(errors="replace")). */
#include "embed/bpe.h"
#include "tests/testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define OPT_DIR "tiny-blip2-opt"

static qf_bpe *opt;

static qf_bpe *get_opt(void) {
    if (!opt) {
        qf_status s = qf_bpe_load(qf_fixture(OPT_DIR), &opt);
        if (s) fprintf(stderr, "\nload: %s\n", qf_last_error());
        QF_ASSERT(s == QF_OK);
    }
    return opt;
}

/* GPT-2 bytes_to_unicode, written out independently of the library. */
static int byte_cp(int b) {
    int printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    if (printable) return b;
    int n = 0;
    for (int c = 0; c < b; c++)
        if (!((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF))) n++;
    return 256 + n;
}

static size_t put_utf8(char *o, long cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | cp >> 6); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12); o[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18); o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Id of the single-byte token for byte b. */
static int byte_id(const qf_bpe *t, int b) {
    char s[5] = { 0 };
    put_utf8(s, byte_cp(b));
    return qf_bpe_id(t, s);
}

static void write_file(const char *dir, const char *name, const char *text) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    QF_ASSERT(f != NULL);
    fputs(text, f);
    fclose(f);
}

/* encode; returns the id count, ids copied into out (cap 256). */
static int enc(const qf_bpe *t, const char *text, size_t len, int add_bos, int32_t *out) {
    int32_t *ids = NULL;
    int n = -1;
    qf_status s = qf_bpe_encode_n(t, text, len, add_bos, &ids, &n);
    if (s) fprintf(stderr, "\nencode: %s\n", qf_last_error());
    CU_ASSERT_EQUAL_FATAL(s, QF_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ids);
    CU_ASSERT_FATAL(n >= 0 && n <= 256);
    memcpy(out, ids, (size_t)n * sizeof *ids);
    qf_free(ids);
    return n;
}

static void test_load_and_ids(void) {
    qf_bpe *t = get_opt();
    CU_ASSERT_EQUAL(qf_bpe_vocab_size(t), 50265);
    CU_ASSERT_EQUAL(qf_bpe_n_ids(t), 50265);
    CU_ASSERT_EQUAL(qf_bpe_bos_id(t), 2);
    CU_ASSERT_EQUAL(qf_bpe_eos_id(t), 2);
    CU_ASSERT_EQUAL(qf_bpe_unk_id(t), 2);
    CU_ASSERT_EQUAL(qf_bpe_pad_id(t), 1);
    CU_ASSERT_EQUAL(qf_bpe_add_bos(t), 1);
    CU_ASSERT_EQUAL(qf_bpe_clean_spaces(t), 1);
    CU_ASSERT_STRING_EQUAL(qf_bpe_token(t, 2), "</s>");
    CU_ASSERT_STRING_EQUAL(qf_bpe_token(t, 0), "<s>");
    CU_ASSERT_PTR_NULL(qf_bpe_token(t, -1));
    CU_ASSERT_PTR_NULL(qf_bpe_token(t, 50265));
    CU_ASSERT_EQUAL(qf_bpe_id(t, "</s>"), 2);
    CU_ASSERT_EQUAL(qf_bpe_id(t, "<pad>"), 1);
    CU_ASSERT_EQUAL(qf_bpe_id(t, "no such token at all"), -1);
    /* id <-> token agree over the whole vocabulary */
    int bad = 0;
    for (int id = 0; id < qf_bpe_vocab_size(t); id++) {
        const char *tok = qf_bpe_token(t, id);
        if (!tok || qf_bpe_id(t, tok) != id) bad++;
    }
    CU_ASSERT_EQUAL(bad, 0);
    /* every byte has its own token, "\n" is Ċ */
    for (int b = 0; b < 256; b++) CU_ASSERT(byte_id(t, b) >= 0);
    CU_ASSERT_STRING_EQUAL(qf_bpe_token(t, byte_id(t, '\n')), "\xC4\x8A");
    /* special = the named tokens only: </s>, <pad>; <s> and <unk> are plain entries */
    CU_ASSERT(qf_bpe_is_special(t, 1) && qf_bpe_is_special(t, 2));
    CU_ASSERT(!qf_bpe_is_special(t, 0) && !qf_bpe_is_special(t, 3) && !qf_bpe_is_special(t, 50265));
}

static void test_empty(void) {
    qf_bpe *t = get_opt();
    int32_t ids[256];
    CU_ASSERT_EQUAL(enc(t, "", 0, QF_BPE_BOS_DEFAULT, ids), 1);
    CU_ASSERT_EQUAL(ids[0], 2);
    CU_ASSERT_EQUAL(enc(t, "", 0, 1, ids), 1);
    CU_ASSERT_EQUAL(enc(t, "", 0, 0, ids), 0);
    int32_t *p = NULL;
    int n = -1;
    CU_ASSERT_EQUAL(qf_bpe_encode(t, "", 1, &p, &n), QF_OK);
    CU_ASSERT_EQUAL(n, 1);
    qf_free(p);
    char *out = NULL;
    CU_ASSERT_EQUAL(qf_bpe_decode(t, NULL, 0, 1, 1, &out), QF_OK);
    CU_ASSERT_STRING_EQUAL(out, "");
    qf_free(out);
    int32_t two = 2;
    CU_ASSERT_EQUAL(qf_bpe_decode(t, &two, 1, 1, 0, &out), QF_OK);
    CU_ASSERT_STRING_EQUAL(out, "");
    qf_free(out);
}

/* Splits of GPT-2's pattern, as the Python regex module gives them. */
static void test_pretokenize(void) {
    static const struct { const char *text; const char *parts[6]; } cases[] = {
        { "a  b", { "a", " ", " b" } },
        { "x\n\ny", { "x", "\n", "\n", "y" } },
        { "it's", { "it", "'s" } },
        { "'S", { "'", "S" } },
        { " 's", { " '", "s" } },
        { "a \n", { "a", " \n" } },
        { "\xE3\x80\x80x", { "\xE3\x80\x80", "x" } },                /* U+3000 */
        { "hello world!!  ", { "hello", " world", "!!", "  " } },
        { "12ab", { "12", "ab" } },
        { " 123", { " 123" } },
        { "a\t b", { "a", "\t", " b" } },
        { "na\xC3\xAFve \xE5\x8C\x97\xE4\xBA\xAC \xF0\x9F\x99\x82!",
          { "na\xC3\xAFve", " \xE5\x8C\x97\xE4\xBA\xAC", " \xF0\x9F\x99\x82!" } },
        { "we'll", { "we", "'ll" } },
        { "''s", { "''", "s" } },
        { "x\x1cy", { "x", "\x1c", "y" } },   /* U+001C: Python isspace, not White_Space */
        { "  ", { "  " } },
        { " ", { " " } },
        { "a\xC2\xA0" "b", { "a", "\xC2\xA0", "b" } },               /* NBSP */
        { "\xD9\xA3\xD9\xA4 \xE2\x85\xAB\xC2\xBD", { "\xD9\xA3\xD9\xA4", " \xE2\x85\xAB\xC2\xBD" } },
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const char *text = cases[c].text;
        size_t len = strlen(text), pos = 0;
        int k = 0, ok = 1;
        while (pos < len) {
            size_t e = qf_bpe_pretoken_end(text, len, pos);
            const char *want = cases[c].parts[k++];
            if (!want || e <= pos || e - pos != strlen(want) || memcmp(text + pos, want, e - pos)) {
                ok = 0;
                break;
            }
            pos = e;
        }
        if (ok && cases[c].parts[k]) ok = 0;
        if (!ok) fprintf(stderr, "\npre-tokens of case %zu differ\n", c);
        CU_ASSERT(ok);
    }
    CU_ASSERT_EQUAL(qf_bpe_pretoken_end("abc", 3, 3), 3);
    /* bytes that are not UTF-8 are one-byte "other" characters */
    CU_ASSERT_EQUAL(qf_bpe_pretoken_end("\x80\xFF" "a", 3, 0), 2);
    CU_ASSERT_EQUAL(qf_bpe_pretoken_end(" \xE2\x82", 3, 0), 3);
}

/* decode(encode(s)) == s, and with the BOS kept, "</s>" + s (the first
 * only when s holds no special token text, which skip_special drops). */
static int round_trip(const qf_bpe *t, const char *s, size_t len) {
    int32_t *ids = NULL;
    int n = 0;
    char *out = NULL, *with_bos = NULL;
    size_t out_len = 0, wb_len = 0;
    int ok = qf_bpe_encode_n(t, s, len, 1, &ids, &n) == QF_OK && n >= 1 && ids[0] == 2;
    for (int i = 1; ok && i < n; i++) ok = ids[i] >= 0 && ids[i] < qf_bpe_vocab_size(t);
    ok = ok && qf_bpe_decode_n(t, ids, n, 1, 0, &out, &out_len) == QF_OK;
    ok = ok && qf_bpe_decode_n(t, ids, n, 0, 0, &with_bos, &wb_len) == QF_OK;
    int has_special = memmem(s, len, "</s>", 4) || memmem(s, len, "<pad>", 5);
    ok = ok && (has_special || (out_len == len && memcmp(out, s, len) == 0 && out[len] == 0));
    ok = ok && wb_len == len + 4 && memcmp(with_bos, "</s>", 4) == 0 && memcmp(with_bos + 4, s, len) == 0;
    qf_free(ids);
    qf_free(out);
    qf_free(with_bos);
    return ok;
}

static void test_round_trip_fixed(void) {
    qf_bpe *t = get_opt();
    static const char *const texts[] = {
        "a photo of a cat", " leading space", "trailing space ", "trailing tab\t", "trailing newlines\n\n",
        "multiple   spaces  here", "tabs\tand\r\nCRLF\r", "\n\n\nx\n", "   ", "\t \t",
        "emoji \xF0\x9F\x99\x82\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x92\xBB test",
        "\xE5\x8C\x97\xE4\xBA\xAC Beijing \xE6\x9D\xB1\xE4\xBA\xAC", "e\xCC\x81 a\xCC\x8A\xCC\x81 combining",
        "naive caf\xC3\xA9 r\xC3\xA9sum\xC3\xA9", "I'll say we've got what they're after, don't I'd",
        "'S 'RE ''s", "numbers 12345 and 3.14159 \xD9\xA3 \xE2\x85\xAB",
        "ctrl \x01\x02\x1b[0m \x7f \xC2\x85 \xC2\xA0 \xE2\x80\xA8", "<s> <unk> <pad> </s> <pa d> </ s>",
        "Hello , world ! Is it ? yes ' no ' I do n't",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        int ok = round_trip(t, texts[i], strlen(texts[i]));
        if (!ok) fprintf(stderr, "\nround trip failed for text %zu\n", i);
        CU_ASSERT(ok);
    }
    /* NUL is byte 0x00, a token like any other */
    CU_ASSERT(round_trip(t, "a\0b \0", 5));
}

/* Random strings of code points from every plane (no surrogates). */
static void test_round_trip_random(void) {
    qf_bpe *t = get_opt();
    static const long ws[] = { 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680, 0x2000, 0x200A,
                               0x2028, 0x2029, 0x202F, 0x205F, 0x3000, 0x1C, 0x1F };
    uint64_t x = 0x9E3779B97F4A7C15ull;
    int failed = 0;
    char s[512];
    for (int it = 0; it < 3000; it++) {
        size_t len = 0;
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        int n_chars = (int)(x % 40);
        for (int c = 0; c < n_chars; c++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            long cp;
            switch ((x >> 8) % 8) {
            case 0: case 1: cp = 0x20 + (long)((x >> 16) % 0x5F); break;     /* ASCII */
            case 2: cp = ws[(x >> 16) % (sizeof ws / sizeof ws[0])]; break;  /* spaces */
            case 3: cp = (long)((x >> 16) % 0x20); break;                    /* controls, NUL */
            case 4: cp = 0x80 + (long)((x >> 16) % 0x780); break;            /* 2 bytes */
            case 5: cp = 0x800 + (long)((x >> 16) % (0x10000 - 0x800)); break;
            default: cp = 0x10000 + (long)((x >> 16) % 0x100000); break;     /* astral */
            }
            if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xE000;
            if (c % 7 == 3) s[len++] = '\'';
            len += put_utf8(s + len, cp);
        }
        if (!round_trip(t, s, len)) {
            if (failed++ < 3) fprintf(stderr, "\nround trip failed at iteration %d\n", it);
        }
    }
    CU_ASSERT_EQUAL(failed, 0);
}

static void test_invalid_utf8_input(void) {
    qf_bpe *t = get_opt();
    static const char *const bad[] = {
        "\x80", "abc\xBF", "\xC0\xAF", "\xC1\x81", "\xE0\x80\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80",
        "\xF5\x80\x80\x80", "\xFF", "ok \xE2\x82", "\xF0\x9F\x99", "\xC3", "x\xC3(",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int32_t *ids = (int32_t *)1;
        int n = -1;
        CU_ASSERT_EQUAL(qf_bpe_encode(t, bad[i], 1, &ids, &n), QF_ERR_FORMAT);
        CU_ASSERT_PTR_NULL(ids);
        CU_ASSERT_EQUAL(n, 0);
        CU_ASSERT(strstr(qf_last_error(), "UTF-8") != NULL && strstr(qf_last_error(), "byte") != NULL);
    }
    int32_t *ids = NULL;
    int n = 0;
    CU_ASSERT_EQUAL(qf_bpe_encode_n(t, "abc\xFF", 4, 1, &ids, &n), QF_ERR_FORMAT);
    CU_ASSERT(strstr(qf_last_error(), "byte 3") != NULL);
}

/* bytes.decode("utf-8", errors="replace"): one U+FFFD per maximal subpart. */
static void test_decode_invalid_bytes(void) {
    qf_bpe *t = get_opt();
    static const struct { const char *bytes; const char *want; } cases[] = {
        { "\x80", "\xEF\xBF\xBD" },
        { "\xE2\x82", "\xEF\xBF\xBD" },
        { "\xE2\x82" "a", "\xEF\xBF\xBD" "a" },
        { "\xE2(", "\xEF\xBF\xBD(" },
        { "\xC0\xAF", "\xEF\xBF\xBD\xEF\xBF\xBD" },
        { "\xED\xA0\x80", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD" },
        { "\xF0\x9F\x99", "\xEF\xBF\xBD" },
        { "\xF4\x90\x80\x80", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD" },
        { "\xFF\xFE", "\xEF\xBF\xBD\xEF\xBF\xBD" },
        { "a\xF0\x9F\x99\x82" "b", "a\xF0\x9F\x99\x82" "b" },
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int32_t ids[8];
        int n = 0;
        for (const char *p = cases[c].bytes; *p; p++) ids[n++] = byte_id(t, (uint8_t)*p);
        char *out = NULL;
        CU_ASSERT_EQUAL_FATAL(qf_bpe_decode(t, ids, n, 1, 0, &out), QF_OK);
        CU_ASSERT_STRING_EQUAL(out, cases[c].want);
        qf_free(out);
    }
}

static void test_special_tokens_in_text(void) {
    qf_bpe *t = get_opt();
    int32_t all[256], a[256], b[256];
    int n = enc(t, "a</s>b", 6, 0, all);
    int na = enc(t, "a", 1, 0, a), nb = enc(t, "b", 1, 0, b);
    CU_ASSERT_EQUAL_FATAL(n, na + 1 + nb);
    CU_ASSERT(memcmp(all, a, (size_t)na * sizeof *a) == 0);
    CU_ASSERT_EQUAL(all[na], 2);
    CU_ASSERT(memcmp(all + na + 1, b, (size_t)nb * sizeof *b) == 0);

    n = enc(t, "<pad><pad></s>", 14, 1, all);
    CU_ASSERT(n == 4 && all[0] == 2 && all[1] == 1 && all[2] == 1 && all[3] == 2);
    /* no stripping around them: the space stays with the next word */
    n = enc(t, "x </s> y", 8, 0, all);
    int32_t sp[256];
    int nsp = enc(t, " y", 2, 0, sp);
    CU_ASSERT(n >= 3 && all[n - nsp - 1] == 2 && memcmp(all + n - nsp, sp, (size_t)nsp * sizeof *sp) == 0);

    /* <s> is not special in OPT's config: BPE of "<", "s", ">" */
    int32_t lt[256], s1[256], gt[256];
    n = enc(t, "<s>", 3, 0, all);
    int nl = enc(t, "<", 1, 0, lt), ns = enc(t, "s", 1, 0, s1), ng = enc(t, ">", 1, 0, gt);
    CU_ASSERT(n == nl + ns + ng && n == 3 && all[0] == lt[0] && all[1] == s1[0] && all[2] == gt[0]);

    char *out = NULL;
    int32_t ids[] = { 0, 1, 2, 3 };
    CU_ASSERT_EQUAL(qf_bpe_decode(t, ids, 4, 1, 0, &out), QF_OK);
    CU_ASSERT_STRING_EQUAL(out, "<s><unk>");
    qf_free(out);
    CU_ASSERT_EQUAL(qf_bpe_decode(t, ids, 4, 0, 0, &out), QF_OK);
    CU_ASSERT_STRING_EQUAL(out, "<s><pad></s><unk>");
    qf_free(out);
}

static void test_clean_up(void) {
    qf_bpe *t = get_opt();
    const char *text = "Hello , world ! I do n't know . Is it ? yes ' no ' I 'm he 's we 've they 're . . done";
    int32_t *ids = NULL;
    int n = 0;
    CU_ASSERT_EQUAL_FATAL(qf_bpe_encode(t, text, 1, &ids, &n), QF_OK);
    char *raw = NULL, *clean = NULL;
    CU_ASSERT_EQUAL(qf_bpe_decode(t, ids, n, 1, 0, &raw), QF_OK);
    CU_ASSERT_EQUAL(qf_bpe_decode(t, ids, n, 1, 1, &clean), QF_OK);
    CU_ASSERT_STRING_EQUAL(raw, text);
    CU_ASSERT_STRING_EQUAL(clean, "Hello, world! I don't know. Is it? yes'no'I'm he's we've they're.. done");
    qf_free(raw);
    qf_free(clean);
    qf_free(ids);
}

static void test_decode_bad_ids(void) {
    qf_bpe *t = get_opt();
    char *out = (char *)1;
    int32_t ids[] = { 2, 100, 50265 };
    CU_ASSERT_EQUAL(qf_bpe_decode(t, ids, 3, 1, 0, &out), QF_ERR_ARG);
    CU_ASSERT_PTR_NULL(out);
    CU_ASSERT(strstr(qf_last_error(), "50265") != NULL);
    int32_t neg = -1;
    CU_ASSERT_EQUAL(qf_bpe_decode(t, &neg, 1, 1, 0, &out), QF_ERR_ARG);
    CU_ASSERT_EQUAL(qf_bpe_decode(t, NULL, 2, 1, 0, &out), QF_ERR_ARG);
}

/* A tiny tokenizer: the 256 byte tokens (ids = byte values, except 'z'
 * which is missing) plus merges "b c" (rank 0) and "a b" (rank 1). */
static const char *tiny_dir(const char *name, const char *merges, const char *config) {
    static char dir[8][512];
    static int slot;
    char *d = dir[slot++ & 7];
    snprintf(d, 512, "%s/%s", qf_test_tmpdir(), name);
    mkdir(d, 0700);
    char *vocab = malloc(1 << 16);
    QF_ASSERT(vocab != NULL);
    size_t n = 0;
    n += (size_t)sprintf(vocab + n, "{");
    for (int b = 0; b < 256; b++) {
        if (b == 'z') continue;
        char s[5] = { 0 };
        put_utf8(s, byte_cp(b));
        if (b == '"' || b == '\\') n += (size_t)sprintf(vocab + n, "\"\\%s\": %d, ", s, b);
        else n += (size_t)sprintf(vocab + n, "\"%s\": %d, ", s, b);
    }
    sprintf(vocab + n, "\"bc\": 256, \"ab\": 257, \"abc\": 258, \"aa\": 259, \"<x>\": 260}");
    write_file(d, "vocab.json", vocab);
    free(vocab);
    write_file(d, "merges.txt", merges);
    if (config) write_file(d, "tokenizer_config.json", config);
    return d;
}

static void test_merge_order(void) {
    qf_bpe *t = NULL;
    int32_t ids[256];
    CU_ASSERT_EQUAL_FATAL(qf_bpe_load(tiny_dir("merge", "#version: 0.2\nb c\na b\na a\n", NULL), &t), QF_OK);
    CU_ASSERT_EQUAL(qf_bpe_vocab_size(t), 260);
    /* lowest rank first: (b,c) before (a,b), then (a,bc) is no merge */
    CU_ASSERT(enc(t, "abc", 3, 0, ids) == 2 && ids[0] == 'a' && ids[1] == 256);
    CU_ASSERT(enc(t, "ab", 2, 0, ids) == 1 && ids[0] == 257);
    /* every occurrence of the best pair, left to right, non-overlapping */
    CU_ASSERT(enc(t, "aaaaa", 5, 0, ids) == 3 && ids[0] == 259 && ids[1] == 259 && ids[2] == 'a');
    /* no config: GPT-2's "<|endoftext|>" for bos/eos/unk, a new id; no BOS by default */
    CU_ASSERT_EQUAL(qf_bpe_add_bos(t), 0);
    CU_ASSERT_EQUAL(qf_bpe_bos_id(t), 261);
    CU_ASSERT_STRING_EQUAL(qf_bpe_token(t, 261), "<|endoftext|>");
    CU_ASSERT_EQUAL(qf_bpe_pad_id(t), -1);
    CU_ASSERT(enc(t, "ab", 2, QF_BPE_BOS_DEFAULT, ids) == 1);
    /* a byte missing from vocab.json becomes unk */
    CU_ASSERT(enc(t, "az", 2, 0, ids) == 2 && ids[0] == 'a' && ids[1] == 261);
    qf_bpe_free(t);

    /* HF drops the first line and whatever follows the last "\n" */
    CU_ASSERT_EQUAL_FATAL(qf_bpe_load(tiny_dir("nonl", "b c\na b", NULL), &t), QF_OK);
    CU_ASSERT(enc(t, "ab", 2, 0, ids) == 2 && ids[0] == 'a' && ids[1] == 'b');
    CU_ASSERT(enc(t, "bc", 2, 0, ids) == 2);
    qf_bpe_free(t);
}

static void test_config_tokens(void) {
    qf_bpe *t = NULL;
    int32_t ids[256];
    const char *cfg =
        "{\"bos_token\": {\"content\": \"<|endoftext|>\"}, \"unk_token\": \"<|endoftext|>\","
        " \"pad_token\": null, \"add_bos_token\": true, \"add_prefix_space\": true,"
        " \"model_max_length\": 1000000000000000019884624838656,"
        " \"added_tokens_decoder\": {\"260\": {\"content\": \"<x>\", \"special\": false, \"lstrip\": true,"
        " \"rstrip\": true}}}";
    CU_ASSERT_EQUAL_FATAL(qf_bpe_load(tiny_dir("cfg", "#version\nb c\na b\n", cfg), &t), QF_OK);
    CU_ASSERT_EQUAL(qf_bpe_bos_id(t), 261);
    CU_ASSERT_EQUAL(qf_bpe_eos_id(t), 261);
    CU_ASSERT_EQUAL(qf_bpe_add_bos(t), 1);
    CU_ASSERT(!qf_bpe_is_special(t, 260) && qf_bpe_is_special(t, 261));
    /* add_prefix_space: " ab"; <x> eats the spaces on both sides */
    int n = enc(t, "ab  <x>  ab", 11, QF_BPE_BOS_DEFAULT, ids);
    CU_ASSERT(n == 5 && ids[0] == 261 && ids[1] == ' ' && ids[2] == 257 && ids[3] == 260 && ids[4] == 257);
    /* a non-special added token is its own sub-text, joined with spaces */
    char *out = NULL;
    int32_t dec[] = { 261, 'a', 260, 'b', 'c' };
    CU_ASSERT_EQUAL(qf_bpe_decode(t, dec, 5, 1, 0, &out), QF_OK);
    CU_ASSERT_STRING_EQUAL(out, "a <x> bc");
    qf_free(out);
    CU_ASSERT_EQUAL(qf_bpe_decode(t, dec, 5, 0, 0, &out), QF_OK);
    CU_ASSERT_STRING_EQUAL(out, "<|endoftext|>a <x> bc");
    qf_free(out);
    qf_bpe_free(t);
}

static void test_load_errors(void) {
    qf_bpe *t = (qf_bpe *)1;
    CU_ASSERT_EQUAL(qf_bpe_load("/nonexistent/model", &t), QF_ERR_IO);
    CU_ASSERT_PTR_NULL(t);
    CU_ASSERT(strstr(qf_last_error(), "/nonexistent/model/vocab.json") != NULL);

    const char *d = tiny_dir("bad", "#version\n", NULL);
    write_file(d, "vocab.json", "{\"a\": 0, ");
    CU_ASSERT_EQUAL(qf_bpe_load(d, &t), QF_ERR_FORMAT);
    CU_ASSERT(strstr(qf_last_error(), "vocab.json") != NULL);
    write_file(d, "vocab.json", "{\"a\": \"zero\"}");
    CU_ASSERT_EQUAL(qf_bpe_load(d, &t), QF_ERR_FORMAT);
    CU_ASSERT(strstr(qf_last_error(), "'a'") != NULL);
    write_file(d, "vocab.json", "[1, 2]");
    CU_ASSERT_EQUAL(qf_bpe_load(d, &t), QF_ERR_FORMAT);
    write_file(d, "vocab.json", "{\"a\": 0}");
    char path[1024];
    snprintf(path, sizeof path, "%s/merges.txt", d);
    remove(path);
    CU_ASSERT_EQUAL(qf_bpe_load(d, &t), QF_ERR_IO);
    CU_ASSERT(strstr(qf_last_error(), "merges.txt") != NULL);
    write_file(d, "merges.txt", "#version\n");
    write_file(d, "tokenizer_config.json", "{\"bos_token\": ");
    CU_ASSERT_EQUAL(qf_bpe_load(d, &t), QF_ERR_FORMAT);
    CU_ASSERT(strstr(qf_last_error(), "tokenizer_config.json") != NULL);
    CU_ASSERT_PTR_NULL(t);
    qf_bpe_free(NULL);
}

/* Every allocation of load, encode and decode may fail: a status, no leak. */
static void test_alloc_failures(void) {
    const char *d = tiny_dir("alloc", "#version\nb c\na b\n",
                             "{\"add_bos_token\": true, \"added_tokens_decoder\": {\"260\": {\"content\": \"<x>\"}}}");
    qf_bpe *t = NULL;
    int loaded = 0;
    for (long k = 0; k < 200 && !loaded; k++) {
        qf_alloc_fail_after(k);
        qf_status s = qf_bpe_load(d, &t);
        qf_alloc_fail_after(-1);
        if (s == QF_OK) loaded = 1;
        else { CU_ASSERT(s == QF_ERR_NOMEM); CU_ASSERT_PTR_NULL(t); }
    }
    CU_ASSERT_FATAL(loaded);
    int encoded = 0, decoded = 0;
    for (long k = 0; k < 50 && !encoded; k++) {
        int32_t *ids = NULL;
        int n = 0;
        qf_alloc_fail_after(k);
        qf_status s = qf_bpe_encode(t, "abc <x> abc aaaa", 1, &ids, &n);
        qf_alloc_fail_after(-1);
        if (s == QF_OK) { encoded = 1; CU_ASSERT(n > 3); qf_free(ids); }
        else { CU_ASSERT(s == QF_ERR_NOMEM); CU_ASSERT_PTR_NULL(ids); }
    }
    int32_t ids[] = { 'a', 260, 256, 0xC3 };
    for (long k = 0; k < 50 && !decoded; k++) {
        char *out = NULL;
        qf_alloc_fail_after(k);
        qf_status s = qf_bpe_decode(t, ids, 4, 1, 1, &out);
        qf_alloc_fail_after(-1);
        if (s == QF_OK) { decoded = 1; CU_ASSERT_STRING_EQUAL(out, "a <x> bc\xEF\xBF\xBD"); qf_free(out); }
        else { CU_ASSERT(s == QF_ERR_NOMEM); CU_ASSERT_PTR_NULL(out); }
    }
    CU_ASSERT(encoded && decoded);
    qf_bpe_free(t);
}

static void test_free_opt(void) {
    qf_bpe_free(opt);
    opt = NULL;
}

static CU_TestInfo tests[] = {
    { "load_and_ids", test_load_and_ids },
    { "empty", test_empty },
    { "pretokenize", test_pretokenize },
    { "round_trip_fixed", test_round_trip_fixed },
    { "round_trip_random", test_round_trip_random },
    { "invalid_utf8_input", test_invalid_utf8_input },
    { "decode_invalid_bytes", test_decode_invalid_bytes },
    { "special_tokens_in_text", test_special_tokens_in_text },
    { "clean_up", test_clean_up },
    { "decode_bad_ids", test_decode_bad_ids },
    { "merge_order", test_merge_order },
    { "config_tokens", test_config_tokens },
    { "load_errors", test_load_errors },
    { "alloc_failures", test_alloc_failures },
    { "free", test_free_opt },
    CU_TEST_INFO_NULL,
};

int main(void) { return qf_test_main("bpe", tests); }
