/* bert.c - BERT WordPiece tokenizer, HF slow `BertTokenizer` semantics (see
 * bert.h). Text is decoded once to code points; every later stage works on
 * int32 arrays and only WordPiece look-ups go back to UTF-8 bytes. The vocab
 * is an open-addressing hash (FNV-1a, linear probing) whose keys point into
 * the vocab file buffer; an optional "##" prefix is hashed without copying.
 * Unicode data (categories, lower case, decompositions) comes from utf8proc. */
#include "embed/bert.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <utf8proc.h>

#define MAX_VOCAB_BYTES  (64u << 20)
#define MAX_JSON_BYTES   (16u << 20)
#define MAX_TEXT_BYTES   (64u << 20)
#define MAX_ID           (1 << 24)
#define MAX_SPECIALS     256

typedef struct {
    const char *key;     /* NULL = empty slot */
    uint32_t    len;
    int32_t     id;
} slot;

typedef struct {
    const char *text;    /* UTF-8, owned by the pool */
    uint32_t    len;
    int32_t     id;
    int32_t    *cps;     /* decoded, for matching in the text */
    int         n_cps;
} special;

struct qf_bert {
    char      *vocab_buf;        /* vocab.txt, lines NUL-terminated in place */
    char     **pool;             /* other owned strings                      */
    int        n_pool, cap_pool;
    slot      *tab;              /* vocab.txt entries only (WordPiece set)   */
    uint32_t   tab_mask;
    const char **id_tok;         /* id -> token text (NULL = no token)       */
    int        n_ids;
    special   *added;            /* added tokens (added_tokens.json, decoder) */
    int        n_added;
    special   *nosplit;          /* specials + added, longest first          */
    int        n_nosplit;
    int        cls, sep, pad, unk, mask, dec;
    int        lower, chinese, strip;
};

/* ---- small helpers -------------------------------------------------------- */

static uint32_t fnv1a(int prefix, const char *s, size_t n) {
    uint32_t h = 2166136261u;
    if (prefix) { h = (h ^ '#') * 16777619u; h = (h ^ '#') * 16777619u; }
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static int key_eq(const slot *e, int prefix, const char *s, size_t n) {
    size_t p = prefix ? 2 : 0;
    if (e->len != n + p) return 0;
    if (prefix && (e->key[0] != '#' || e->key[1] != '#')) return 0;
    return memcmp(e->key + p, s, n) == 0;
}

/* Vocab id of ("##" if prefix) + s[0..n), -1 if absent. */
static int vocab_find(const qf_bert *t, int prefix, const char *s, size_t n) {
    uint32_t i = fnv1a(prefix, s, n) & t->tab_mask;
    for (;; i = (i + 1) & t->tab_mask) {
        const slot *e = &t->tab[i];
        if (!e->key) return -1;
        if (key_eq(e, prefix, s, n)) return e->id;
    }
}

/* Later duplicates win, as in HF's load_vocab (a dict filled line by line). */
static void vocab_put(qf_bert *t, const char *key, uint32_t len, int32_t id) {
    uint32_t i = fnv1a(0, key, len) & t->tab_mask;
    for (;; i = (i + 1) & t->tab_mask) {
        slot *e = &t->tab[i];
        if (!e->key) { e->key = key; e->len = len; e->id = id; return; }
        if (key_eq(e, 0, key, len)) { e->id = id; return; }
    }
}

static int added_find(const qf_bert *t, int prefix, const char *s, size_t n) {
    size_t p = prefix ? 2 : 0;
    for (int i = 0; i < t->n_added; i++) {
        const special *a = &t->added[i];
        if (a->len != n + p) continue;
        if (prefix && (a->text[0] != '#' || a->text[1] != '#')) continue;
        if (memcmp(a->text + p, s, n) == 0) return a->id;
    }
    return -1;
}

/* HF convert_tokens_to_ids: added tokens first, then vocab.txt. */
static int token_id(const qf_bert *t, int prefix, const char *s, size_t n) {
    int id = t->n_added ? added_find(t, prefix, s, n) : -1;
    return id >= 0 ? id : vocab_find(t, prefix, s, n);
}

static char *pool_dup(qf_bert *t, const char *s) {
    if (t->n_pool == t->cap_pool) {
        int cap = t->cap_pool ? 2 * t->cap_pool : 16;
        char **p = qf_realloc(t->pool, (size_t)cap * sizeof *p);
        if (!p) return NULL;
        t->pool = p;
        t->cap_pool = cap;
    }
    char *d = qf_strdup(s);
    if (d) t->pool[t->n_pool++] = d;
    return d;
}

/* Decodes NUL-free UTF-8 s[0..n) into cps (room for n). Returns the count,
 * or -1 - (byte offset of the first invalid sequence). */
static long decode_utf8(const char *s, size_t n, int32_t *cps) {
    size_t i = 0;
    long k = 0;
    while (i < n) {
        int32_t cp;
        size_t bad, r = qf_utf8_next((const uint8_t *)s + i, n - i, &cp, &bad);
        if (!r) return -1 - (long)i;
        cps[k++] = cp;
        i += r;
    }
    return k;
}

static size_t encode_utf8(const int32_t *cps, size_t n, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++)
        o += (size_t)utf8proc_encode_char(cps[i], (utf8proc_uint8_t *)out + o);
    return o;
}

/* ---- Unicode classes, as transformers' tokenization_utils defines them ---- */

static int cat(int32_t c) { return (int)utf8proc_category(c); }

/* _is_control: category C* (Cc Cf Cs Co Cn) except \t \n \r. */
static int is_control(int32_t c) {
    if (c == '\t' || c == '\n' || c == '\r') return 0;
    int k = cat(c);
    return k == UTF8PROC_CATEGORY_CN || k >= UTF8PROC_CATEGORY_CC;
}

/* _is_whitespace: space, \t, \n, \r or category Zs. */
static int is_whitespace(int32_t c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || cat(c) == UTF8PROC_CATEGORY_ZS;
}

/* Python str.isspace(), which str.split() uses: after cleaning only ' ',
 * U+2028 and U+2029 can remain, the rest is listed for completeness. */
static int py_isspace(int32_t c) {
    if ((c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85) return 1;
    if (c == 0x2028 || c == 0x2029) return 1;
    return c > 0x7F && cat(c) == UTF8PROC_CATEGORY_ZS;
}

/* _is_punctuation: non-alphanumeric printable ASCII, or category P*. */
static int is_punct(int32_t c) {
    if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
        (c >= 123 && c <= 126))
        return 1;
    int k = cat(c);
    return k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_PO;
}

/* BasicTokenizer._is_chinese_char: the CJK ideograph blocks, nothing else
 * (no Hiragana, Katakana or Hangul). */
static int is_chinese(int32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* Python's str.lower() of a one-character string: the simple lower-case
 * mapping, except U+0130 whose full mapping has two code points (the only
 * unconditional multi-code-point lower mapping in SpecialCasing.txt). */
static int py_lower1(int32_t c, int32_t out[2]) {
    if (c == 0x130) { out[0] = 'i'; out[1] = 0x307; return 2; }
    out[0] = utf8proc_tolower(c);
    return 1;
}

/* ---- growable code point buffer ------------------------------------------ */

typedef struct { int32_t *v; size_t n, cap; } cpvec;

static int cv_reserve(cpvec *c, size_t extra) {
    if (c->n + extra <= c->cap) return 0;
    size_t cap = c->cap ? c->cap : 64;
    while (cap < c->n + extra) cap *= 2;
    int32_t *v = qf_realloc(c->v, cap * sizeof *v);
    if (!v) return -1;
    c->v = v;
    c->cap = cap;
    return 0;
}

/* Appends the canonical decomposition of x[0..n) in canonical order (NFD). */
static int nfd_append(cpvec *c, const int32_t *x, size_t n) {
    size_t first = c->n;
    for (size_t i = 0; i < n; i++) {
        for (;;) {
            utf8proc_ssize_t room = (utf8proc_ssize_t)(c->cap - c->n);
            utf8proc_ssize_t r = room > 0
                ? utf8proc_decompose_char(x[i], c->v + c->n, room, UTF8PROC_DECOMPOSE, NULL)
                : 8;
            if (r < 0) return -1;
            if (r <= room) { c->n += (size_t)r; break; }
            if (cv_reserve(c, (size_t)r)) return -1;
        }
    }
    /* Canonical ordering: stable sort of each run of non-starters by class. */
    for (size_t i = first + 1; i < c->n; i++) {
        for (size_t j = i; j > first; j--) {
            int a = utf8proc_get_property(c->v[j - 1])->combining_class;
            int b = utf8proc_get_property(c->v[j])->combining_class;
            if (b == 0 || a <= b) break;
            int32_t tmp = c->v[j]; c->v[j] = c->v[j - 1]; c->v[j - 1] = tmp;
        }
    }
    return 0;
}

/* ---- encoding ----------------------------------------------------------- */

typedef struct {
    const qf_bert *t;
    int32_t *out;
    int      cap, n;
    cpvec    norm;           /* one word after NFC/NFD */
    char     u8[4 * QF_BERT_MAX_WORD_CHARS + 8];
} run;

static void emit(run *r, int id) {
    if (r->n < r->cap) r->out[r->n] = id;
    r->n++;
}

/* WordpieceTokenizer.tokenize on one piece: greedy longest match first,
 * continuations looked up with "##"; any unmatched rest -> one [UNK]. */
static void wordpiece(run *r, const int32_t *p, size_t m) {
    const qf_bert *t = r->t;
    if (m > QF_BERT_MAX_WORD_CHARS) { emit(r, t->unk); return; }
    size_t off[QF_BERT_MAX_WORD_CHARS + 1];
    off[0] = 0;
    for (size_t i = 0; i < m; i++)
        off[i + 1] = off[i] + encode_utf8(p + i, 1, r->u8 + off[i]);
    int sub[QF_BERT_MAX_WORD_CHARS];
    int n_sub = 0;
    size_t start = 0;
    while (start < m) {
        size_t end = m;
        int hit = 0;
        for (; end > start; end--) {
            const char *s = r->u8 + off[start];
            size_t len = off[end] - off[start];
            if (vocab_find(t, start > 0, s, len) >= 0) {   /* `substr in self.vocab` */
                sub[n_sub++] = token_id(t, start > 0, s, len);
                hit = 1;
                break;
            }
        }
        if (!hit) { emit(r, t->unk); return; }
        start = end;
    }
    for (int i = 0; i < n_sub; i++) emit(r, sub[i]);
}

/* One whitespace-separated token of BasicTokenizer: (lower casing was done
 * on the whole text), accent strip or NFC, punctuation split, WordPiece. */
static qf_status word(run *r, const int32_t *w, size_t n) {
    const qf_bert *t = r->t;
    r->norm.n = 0;
    if (nfd_append(&r->norm, w, n)) return qf_errorf(QF_ERR_NOMEM, "bert: out of memory");
    size_t nx = r->norm.n;
    int32_t *x = r->norm.v;
    if (t->strip) {
        /* _run_strip_accents: NFD, drop Mn. (The NFC HF applies first is
         * invisible here: NFD(NFC(s)) = NFD(s).) */
        size_t k = 0;
        for (size_t i = 0; i < nx; i++)
            if (cat(x[i]) != UTF8PROC_CATEGORY_MN) x[k++] = x[i];
        nx = k;
    } else if (nx) {
        utf8proc_ssize_t k = utf8proc_normalize_utf32(x, (utf8proc_ssize_t)nx,
                                                      UTF8PROC_COMPOSE | UTF8PROC_STABLE);
        if (k < 0) return qf_errorf(QF_ERR_FORMAT, "bert: NFC failed: %s", utf8proc_errmsg(k));
        nx = (size_t)k;
    }
    /* _run_split_on_punc: each punctuation char alone, runs between kept. */
    size_t start = 0;
    for (size_t i = 0; i < nx; i++) {
        if (!is_punct(x[i])) continue;
        if (i > start) wordpiece(r, x + start, i - start);
        wordpiece(r, x + i, 1);
        start = i + 1;
    }
    if (nx > start) wordpiece(r, x + start, nx - start);
    return QF_OK;
}

/* BasicTokenizer.tokenize + WordPiece on text between two added tokens.
 * buf has room for 3 * n code points. */
static qf_status segment(run *r, const int32_t *s, size_t n, int32_t *buf) {
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {            /* _clean_text + CJK split */
        int32_t c = s[i];
        if (c == 0 || c == 0xFFFD || is_control(c)) continue;
        if (is_whitespace(c)) {
            buf[m++] = ' ';
        } else if (r->t->chinese && is_chinese(c)) {
            buf[m++] = ' '; buf[m++] = c; buf[m++] = ' ';
        } else {
            buf[m++] = c;
        }
    }
    for (size_t i = 0; i < m;) {                /* whitespace_tokenize */
        if (py_isspace(buf[i])) { i++; continue; }
        size_t j = i;
        while (j < m && !py_isspace(buf[j])) j++;
        qf_status st = word(r, buf + i, j - i);
        if (st) return st;
        i = j;
    }
    return QF_OK;
}

/* Longest no-split token starting at s[i], or NULL. */
static const special *match_nosplit(const qf_bert *t, const int32_t *s, size_t n, size_t i) {
    for (int k = 0; k < t->n_nosplit; k++) {   /* sorted longest first */
        const special *sp = &t->nosplit[k];
        if ((size_t)sp->n_cps <= n - i &&
            memcmp(s + i, sp->cps, (size_t)sp->n_cps * sizeof *s) == 0)
            return sp;
    }
    return NULL;
}

qf_status qf_bert_tokenize(const qf_bert *t, const char *text, int32_t *ids, int cap,
                           int *n_total) {
    QF_ASSERT(t && text && n_total && cap >= 0 && (ids || cap == 0));
    *n_total = 0;
    qf_status st = QF_OK;
    int32_t *cps = NULL, *low = NULL, *buf = NULL;
    run r = { .t = t, .out = ids, .cap = cap };

    size_t len = strlen(text);
    if (len > MAX_TEXT_BYTES)
        return qf_errorf(QF_ERR_LIMIT, "bert: text of %zu bytes, more than the %u allowed",
                         len, MAX_TEXT_BYTES);
    cps = qf_malloc((len + 1) * sizeof *cps);
    if (!cps) { st = qf_errorf(QF_ERR_NOMEM, "bert: out of memory"); goto fail; }
    long n = decode_utf8(text, len, cps);
    if (n < 0) {
        st = qf_errorf(QF_ERR_FORMAT, "bert: text is not valid UTF-8 (bad byte 0x%02x at offset %ld)",
                       (unsigned char)text[-1 - n], -1 - n);
        goto fail;
    }

    /* PreTrainedTokenizer.tokenize with do_lower_case lower-cases the text
     * before splitting off added tokens, one character at a time (regex
     * `(special|...)|(.+?)`), leaving the special tokens as they are: so
     * no final-sigma rule, "[DEC]" stays special and "[dec]" is plain text. */
    const int32_t *src = cps;
    size_t ns = (size_t)n;
    if (t->lower) {
        low = qf_malloc((2 * ns + 1) * sizeof *low);
        if (!low) { st = qf_errorf(QF_ERR_NOMEM, "bert: out of memory"); goto fail; }
        size_t k = 0;
        for (size_t i = 0; i < ns;) {
            const special *sp = match_nosplit(t, cps, ns, i);
            if (sp) {
                memcpy(low + k, cps + i, (size_t)sp->n_cps * sizeof *low);
                k += (size_t)sp->n_cps;
                i += (size_t)sp->n_cps;
            } else {
                k += (size_t)py_lower1(cps[i++], low + k);
            }
        }
        src = low;
        ns = k;
    }

    buf = qf_malloc((3 * ns + 1) * sizeof *buf);
    if (!buf) { st = qf_errorf(QF_ERR_NOMEM, "bert: out of memory"); goto fail; }

    /* Added-token split (HF's trie): leftmost, longest; each added token is
     * one id, the text between goes through BasicTokenizer + WordPiece. */
    size_t seg = 0;
    for (size_t i = 0; i < ns;) {
        const special *sp = match_nosplit(t, src, ns, i);
        if (!sp) { i++; continue; }
        if ((st = segment(&r, src + seg, i - seg, buf))) goto fail;
        emit(&r, sp->id);
        i += (size_t)sp->n_cps;
        seg = i;
    }
    if ((st = segment(&r, src + seg, ns - seg, buf))) goto fail;
    *n_total = r.n;

fail:
    qf_free(r.norm.v);
    qf_free(buf);
    qf_free(low);
    qf_free(cps);
    return st;
}

qf_status qf_bert_encode(const qf_bert *t, const char *text, int max_len, int pad,
                         int64_t *ids, int64_t *mask, int *n_tokens) {
    QF_ASSERT(t && text && ids && n_tokens);
    *n_tokens = 0;
    if (max_len < 2)
        return qf_errorf(QF_ERR_ARG, "bert: max_len %d leaves no room for [CLS] and [SEP]", max_len);
    int32_t *pieces = qf_malloc((size_t)max_len * sizeof *pieces);
    if (!pieces) return qf_errorf(QF_ERR_NOMEM, "bert: out of memory");
    int total = 0;
    qf_status st = qf_bert_tokenize(t, text, pieces, max_len - 2, &total);
    if (st) { qf_free(pieces); return st; }
    int n = total < max_len - 2 ? total : max_len - 2;   /* truncation="longest_first" */
    ids[0] = t->cls;
    for (int i = 0; i < n; i++) ids[1 + i] = pieces[i];
    ids[n + 1] = t->sep;
    qf_free(pieces);
    int used = n + 2;
    if (mask)
        for (int i = 0; i < used; i++) mask[i] = 1;
    if (pad) {
        for (int i = used; i < max_len; i++) {
            ids[i] = t->pad;
            if (mask) mask[i] = 0;
        }
    }
    *n_tokens = used;
    return QF_OK;
}

/* ---- loading ------------------------------------------------------------- */

static qf_status load_json(const char *path, int required, json_t **out) {
    *out = NULL;
    char *buf = NULL;
    size_t n = 0;
    if (!required && access(path, F_OK) != 0) return QF_OK;
    qf_status st = qf_read_file(path, MAX_JSON_BYTES, &buf, &n);
    if (st) return st;
    json_error_t err;
    *out = json_loadb(buf, n, 0, &err);
    qf_free(buf);
    if (!*out)
        return qf_errorf(QF_ERR_FORMAT, "%s: line %d: %s", path, err.line, err.text);
    if (!json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return qf_errorf(QF_ERR_FORMAT, "%s: top level is not a JSON object", path);
    }
    return QF_OK;
}

/* A token name in HF files: "[CLS]" or {"content": "[CLS]", ...}. */
static const char *token_name(json_t *v) {
    if (json_is_string(v)) return json_string_value(v);
    if (json_is_object(v)) {
        json_t *c = json_object_get(v, "content");
        if (json_is_string(c)) return json_string_value(c);
    }
    return NULL;
}

static qf_status set_id(qf_bert *t, int id, const char *tok, const char *file) {
    if (id < 0 || id >= MAX_ID)
        return qf_errorf(QF_ERR_FORMAT, "%s: token '%s' has id %d, outside [0, %d)", file, tok, id, MAX_ID);
    if (id >= t->n_ids) {
        const char **p = qf_realloc(t->id_tok, (size_t)(id + 1) * sizeof *p);
        if (!p) return qf_errorf(QF_ERR_NOMEM, "%s: out of memory", file);
        for (int i = t->n_ids; i <= id; i++) p[i] = NULL;
        t->id_tok = p;
        t->n_ids = id + 1;
    }
    t->id_tok[id] = tok;
    return QF_OK;
}

static qf_status special_init(special *sp, const char *text, int id, const char *file) {
    size_t len = strlen(text);
    sp->text = text;
    sp->len = (uint32_t)len;
    sp->id = id;
    sp->cps = qf_malloc((len + 1) * sizeof *sp->cps);
    if (!sp->cps) return qf_errorf(QF_ERR_NOMEM, "%s: out of memory", file);
    long n = decode_utf8(text, len, sp->cps);
    if (n < 0) return qf_errorf(QF_ERR_FORMAT, "%s: token is not valid UTF-8", file);
    sp->n_cps = (int)n;
    return QF_OK;
}

static qf_status add_token(qf_bert *t, const char *tok, json_int_t id, const char *file) {
    if (!tok[0]) return qf_errorf(QF_ERR_FORMAT, "%s: empty added token", file);
    if (id < 0 || id >= MAX_ID)
        return qf_errorf(QF_ERR_FORMAT, "%s: token '%s' has id %lld, outside [0, %d)",
                         file, tok, (long long)id, MAX_ID);
    for (int i = 0; i < t->n_added; i++)
        if (!strcmp(t->added[i].text, tok)) {   /* same token listed twice */
            t->added[i].id = (int32_t)id;
            return set_id(t, (int)id, t->added[i].text, file);
        }
    if (t->n_added == MAX_SPECIALS)
        return qf_errorf(QF_ERR_LIMIT, "%s: more than %d added tokens", file, MAX_SPECIALS);
    const char *d = pool_dup(t, tok);
    if (!d) return qf_errorf(QF_ERR_NOMEM, "%s: out of memory", file);
    special *sp = &t->added[t->n_added++];
    memset(sp, 0, sizeof *sp);
    qf_status st = special_init(sp, d, (int)id, file);
    if (st) return st;
    return set_id(t, (int)id, d, file);
}

static qf_status add_line(qf_bert *t, const char *tok, size_t len, size_t id, const char *path) {
    for (size_t k = 0; k < len;) {
        int32_t cp;
        size_t bad, r = qf_utf8_next((const uint8_t *)tok + k, len - k, &cp, &bad);
        if (!r) return qf_errorf(QF_ERR_FORMAT, "%s: line %zu is not valid UTF-8", path, id + 1);
        k += r;
    }
    vocab_put(t, tok, (uint32_t)len, (int32_t)id);
    t->id_tok[id] = tok;
    return QF_OK;
}

static qf_status load_vocab(qf_bert *t, const char *path) {
    size_t n = 0;
    qf_status st = qf_read_file(path, MAX_VOCAB_BYTES, &t->vocab_buf, &n);
    if (st) return st;
    char *b = t->vocab_buf;
    /* Python text mode: universal newlines (\n, \r\n, \r end a line). */
    size_t lines = 0;
    for (size_t i = 0; i < n; i++)
        if (b[i] == '\n' || (b[i] == '\r' && (i + 1 == n || b[i + 1] != '\n'))) lines++;
    if (n && b[n - 1] != '\n' && b[n - 1] != '\r') lines++;
    if (lines == 0) return qf_errorf(QF_ERR_FORMAT, "%s: empty vocabulary", path);
    if (lines >= MAX_ID) return qf_errorf(QF_ERR_LIMIT, "%s: %zu lines, more than %d", path, lines, MAX_ID);

    uint32_t cap = 64;
    while (cap < 2 * lines) cap *= 2;
    t->tab = qf_calloc(cap, sizeof *t->tab);
    t->tab_mask = cap - 1;
    t->id_tok = qf_calloc(lines, sizeof *t->id_tok);
    if (!t->tab || !t->id_tok) return qf_errorf(QF_ERR_NOMEM, "%s: out of memory", path);
    t->n_ids = (int)lines;

    size_t id = 0, start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && b[i] != '\n' && b[i] != '\r') continue;
        if (i == n && start == n) break;           /* no unterminated last line */
        size_t end = i;
        if (i < n && b[i] == '\r' && i + 1 < n && b[i + 1] == '\n') i++;
        b[end] = 0;
        if ((st = add_line(t, b + start, end - start, id++, path))) return st;
        start = i + 1;
    }
    QF_ASSERT(id == lines);
    return QF_OK;
}

static const char *const special_keys[] = {
    "cls_token", "sep_token", "pad_token", "unk_token", "mask_token", "bos_token", "eos_token",
};
enum { SK_CLS, SK_SEP, SK_PAD, SK_UNK, SK_MASK, SK_BOS, SK_EOS, SK_COUNT };

static qf_status read_specials(qf_bert *t, json_t *j, const char **names, const char *file) {
    for (int k = 0; k < SK_COUNT; k++) {
        json_t *v = json_object_get(j, special_keys[k]);
        if (!v) continue;
        if (json_is_null(v)) { names[k] = NULL; continue; }
        const char *s = token_name(v);
        if (!s) return qf_errorf(QF_ERR_FORMAT, "%s: '%s' is neither a string nor {\"content\": ...}",
                                 file, special_keys[k]);
        if (!(names[k] = pool_dup(t, s))) return qf_errorf(QF_ERR_NOMEM, "%s: out of memory", file);
    }
    return QF_OK;
}

static int cmp_len_desc(const void *a, const void *b) {
    const special *x = a, *y = b;
    return (y->n_cps > x->n_cps) - (y->n_cps < x->n_cps);
}

static qf_status add_nosplit(qf_bert *t, const char *text, int id, const char *file) {
    for (int i = 0; i < t->n_nosplit; i++)
        if (!strcmp(t->nosplit[i].text, text)) return QF_OK;
    if (t->n_nosplit == 2 * MAX_SPECIALS)
        return qf_errorf(QF_ERR_LIMIT, "%s: too many special tokens", file);
    special *sp = &t->nosplit[t->n_nosplit++];
    memset(sp, 0, sizeof *sp);
    return special_init(sp, text, id, file);
}

/* tokenizer_config.json: flags, special token names, added tokens;
 * *strip: strip_accents (-1 when None), *extra: additional_special_tokens. */
static qf_status read_config(qf_bert *t, json_t *cfg, const char **names, const char *path, int *strip,
                             json_t **extra) {
    qf_status st;
    json_t *v;
    if ((v = json_object_get(cfg, "do_lower_case")) && json_is_boolean(v)) t->lower = json_is_true(v);
    if ((v = json_object_get(cfg, "tokenize_chinese_chars")) && json_is_boolean(v))
        t->chinese = json_is_true(v);
    if ((v = json_object_get(cfg, "strip_accents")) && json_is_boolean(v)) *strip = json_is_true(v);
    if ((v = json_object_get(cfg, "do_basic_tokenize")) && json_is_false(v)) {
        return qf_errorf(QF_ERR_UNSUPPORTED, "%s: do_basic_tokenize false is not supported", path);
    }
    if ((v = json_object_get(cfg, "never_split")) && !json_is_null(v) &&
        !(json_is_array(v) && json_array_size(v) == 0)) {
        return qf_errorf(QF_ERR_UNSUPPORTED, "%s: a never_split list is not supported", path);
    }
    if ((st = read_specials(t, cfg, names, path))) return st;
    *extra = json_object_get(cfg, "additional_special_tokens");
    json_t *dec = json_object_get(cfg, "added_tokens_decoder");
    if (json_is_object(dec)) {
        const char *key;
        json_t *val;
        json_object_foreach(dec, key, val) {
            const char *tok = token_name(val);
            char *end = NULL;
            long id = strtol(key, &end, 10);
            if (!tok || !end || *end || end == key) {
                return qf_errorf(QF_ERR_FORMAT, "%s: added_tokens_decoder entry '%s' is malformed", path, key);
            }
            if ((st = add_token(t, tok, id, path))) return st;
        }
    }
    return QF_OK;
}

qf_status qf_bert_load(const char *model_dir, qf_bert **out) {
    QF_ASSERT(model_dir && out);
    *out = NULL;
    char path[4096];
    json_t *cfg = NULL, *added = NULL, *smap = NULL;
    qf_status st = QF_OK;
    const char *names[SK_COUNT] = { "[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]", NULL, NULL };
    json_t *extra = NULL;   /* additional_special_tokens */

    qf_bert *t = qf_calloc(1, sizeof *t);
    if (!t) return qf_errorf(QF_ERR_NOMEM, "%s: out of memory", model_dir);
    t->added = qf_calloc(MAX_SPECIALS, sizeof *t->added);
    t->nosplit = qf_calloc(2 * MAX_SPECIALS, sizeof *t->nosplit);
    if (!t->added || !t->nosplit) { st = qf_errorf(QF_ERR_NOMEM, "%s: out of memory", model_dir); goto fail; }

    snprintf(path, sizeof path, "%s/vocab.txt", model_dir);
    if ((st = load_vocab(t, path))) goto fail;

    /* tokenizer_config.json: flags, special token names, added tokens. */
    snprintf(path, sizeof path, "%s/tokenizer_config.json", model_dir);
    if ((st = load_json(path, 0, &cfg))) goto fail;
    t->lower = 1;
    t->chinese = 1;
    int strip = -1;                               /* None: follows lower */
    if (cfg && (st = read_config(t, cfg, names, path, &strip, &extra))) goto fail;
    t->strip = strip < 0 ? t->lower : strip;

    snprintf(path, sizeof path, "%s/added_tokens.json", model_dir);
    if ((st = load_json(path, 0, &added))) goto fail;
    if (added) {
        const char *key;
        json_t *val;
        json_object_foreach(added, key, val) {
            if (!json_is_integer(val)) {
                st = qf_errorf(QF_ERR_FORMAT, "%s: id of '%s' is not an integer", path, key);
                goto fail;
            }
            if ((st = add_token(t, key, json_integer_value(val), path))) goto fail;
        }
    }

    snprintf(path, sizeof path, "%s/special_tokens_map.json", model_dir);
    if ((st = load_json(path, 0, &smap))) goto fail;
    if (smap) {
        if ((st = read_specials(t, smap, names, path))) goto fail;
        json_t *e = json_object_get(smap, "additional_special_tokens");
        if (e) extra = e;
    }

    /* Special ids (convert_tokens_to_ids: added first, then vocab). */
    int sid[SK_COUNT];
    for (int k = 0; k < SK_COUNT; k++)
        sid[k] = names[k] ? token_id(t, 0, names[k], strlen(names[k])) : -1;
    for (int k = SK_CLS; k <= SK_UNK; k++)
        if (sid[k] < 0) {
            st = qf_errorf(QF_ERR_MISSING, "%s: %s '%s' is not in vocab.txt nor an added token",
                           model_dir, special_keys[k], names[k] ? names[k] : "(null)");
            goto fail;
        }
    t->cls = sid[SK_CLS];
    t->sep = sid[SK_SEP];
    t->pad = sid[SK_PAD];
    t->unk = sid[SK_UNK];
    t->mask = sid[SK_MASK];
    t->dec = sid[SK_BOS];

    /* Never split: every special token and every added token that has an id. */
    for (int k = 0; k < SK_COUNT; k++)
        if (names[k] && names[k][0] && sid[k] >= 0 && (st = add_nosplit(t, names[k], sid[k], model_dir)))
            goto fail;
    if (json_is_array(extra)) {
        size_t i;
        json_t *v;
        json_array_foreach(extra, i, v) {
            const char *s = token_name(v);
            if (!s || !s[0]) continue;
            int id = token_id(t, 0, s, strlen(s));
            const char *d = pool_dup(t, s);
            if (!d) { st = qf_errorf(QF_ERR_NOMEM, "%s: out of memory", model_dir); goto fail; }
            if (id >= 0 && (st = add_nosplit(t, d, id, model_dir))) goto fail;
        }
    }
    for (int i = 0; i < t->n_added; i++)
        if ((st = add_nosplit(t, t->added[i].text, t->added[i].id, model_dir))) goto fail;
    qsort(t->nosplit, (size_t)t->n_nosplit, sizeof *t->nosplit, cmp_len_desc);

    json_decref(cfg);
    json_decref(added);
    json_decref(smap);
    *out = t;
    return QF_OK;

fail:
    json_decref(cfg);
    json_decref(added);
    json_decref(smap);
    qf_bert_free(t);
    return st;
}

void qf_bert_free(qf_bert *t) {
    if (!t) return;
    if (t->added)
        for (int i = 0; i < MAX_SPECIALS; i++) qf_free(t->added[i].cps);
    if (t->nosplit)
        for (int i = 0; i < 2 * MAX_SPECIALS; i++) qf_free(t->nosplit[i].cps);
    for (int i = 0; i < t->n_pool; i++) qf_free(t->pool[i]);
    qf_free(t->pool);
    qf_free(t->added);
    qf_free(t->nosplit);
    qf_free(t->id_tok);
    qf_free(t->tab);
    qf_free(t->vocab_buf);
    qf_free(t);
}

int qf_bert_vocab_size(const qf_bert *t) { return t->n_ids; }

const char *qf_bert_token(const qf_bert *t, int id) {
    return id >= 0 && id < t->n_ids ? t->id_tok[id] : NULL;
}

int qf_bert_id(const qf_bert *t, const char *token) {
    return token_id(t, 0, token, strlen(token));
}

int qf_bert_cls_id(const qf_bert *t)  { return t->cls; }
int qf_bert_sep_id(const qf_bert *t)  { return t->sep; }
int qf_bert_pad_id(const qf_bert *t)  { return t->pad; }
int qf_bert_unk_id(const qf_bert *t)  { return t->unk; }
int qf_bert_mask_id(const qf_bert *t) { return t->mask; }
int qf_bert_dec_id(const qf_bert *t)  { return t->dec; }
