/* bpe.c - GPT-2 byte-level BPE with HF GPT2Tokenizer semantics (see bpe.h).
 * BPE runs on raw bytes: vocab.json and merges.txt are mapped back from the
 * byte-level alphabet once at load. Every symbol (vocab entry, merge part or
 * result, single byte) is interned in one open-addressing table, merges in a
 * second keyed by the pair of symbol indices; all strings sit in one pool
 * addressed by offsets, untouched after load. */
#include "embed/bpe.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <utf8proc.h>

#define JSON_MAX_BYTES   (64u << 20)
#define MERGES_MAX_BYTES (64u << 20)
#define MAX_ID           (1 << 24)
#define NONE             UINT32_MAX

enum { F_SPECIAL = 1, F_ADDED = 2 };   /* per id: skipped by decode / matched whole */
enum { C_L, C_N, C_WS, C_O };          /* pre-tokenizer character classes          */

typedef struct { uint32_t off, len; int32_t id; } sym;   /* id: vocab id or -1 */

typedef struct {
    uint32_t off, len;     /* content in the pool */
    int32_t  id;
    uint8_t  lstrip, rstrip;
} added_tok;

struct qf_bpe {
    char     *pool;         /* every string, NUL-terminated where it is a token text */
    size_t    pool_len, pool_cap;

    sym      *syms;         /* interned byte strings                            */
    uint32_t  n_syms, cap_syms;
    int32_t  *slots;        /* open addressing over syms, -1 = empty            */
    uint32_t  n_slots;      /* power of two                                     */
    int32_t   byte_sym[256];

    uint64_t *mkey;         /* (a << 32 | b), UINT64_MAX = empty                */
    uint32_t *mrank;
    int32_t  *mres;         /* symbol of a+b                                    */
    uint32_t  n_mslots, n_merges;

    int       n_ids, n_vocab;
    uint32_t *id_text_off, *id_text_len;   /* token text (UTF-8), NONE = no token */
    uint32_t *id_raw_off,  *id_raw_len;    /* bytes it decodes to                 */
    uint8_t  *id_flags;

    added_tok *added;
    int        n_added, cap_added;

    int bos_id, eos_id, unk_id, pad_id;
    int add_bos, add_prefix_space, clean_spaces;
};

/* ---- byte-level alphabet (GPT-2 bytes_to_unicode) -------------------------- */

/* Printable Latin-1 bytes ('!'..'~', 0xA1..0xAC, 0xAE..0xFF) stand for
 * themselves; the other 68 (0x00..0x20, 0x7F..0xA0, 0xAD) map to 256+n in
 * byte order. Returns the byte of code point `cp`, or -1 when `cp` is
 * outside the alphabet. */
static int cp_to_byte(int32_t cp) {
    if ((cp >= '!' && cp <= '~') || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF)) return cp;
    if (cp >= 256 && cp <= 256 + 32) return cp - 256;             /* 0x00..0x20 */
    if (cp >= 256 + 33 && cp <= 256 + 66) return cp - 289 + 0x7F;  /* 0x7F..0xA0 */
    if (cp == 256 + 67) return 0xAD;
    return -1;
}

/* ---- UTF-8 ------------------------------------------------------------------ */

/* regex module's \s: the Unicode White_Space property. */
static int is_white_space(int32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

/* Python str.isspace (used by HF's strip of added-token neighbours): the
 * White_Space set plus the separators U+001C..U+001F. */
static int py_isspace(int32_t c) { return is_white_space(c) || (c >= 0x1C && c <= 0x1F); }

static int char_class(int32_t c) {
    if (c < 0) return C_O;
    if (is_white_space(c)) return C_WS;
    switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO:
        return C_L;
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO:
        return C_N;
    default:
        return C_O;
    }
}

/* Class and byte length of the character at s[0..n); invalid bytes are
 * one-byte "other" characters. */
static int class_at(const uint8_t *s, size_t n, size_t *len, int32_t *cp_out) {
    int32_t cp = -1;
    size_t bad = 1;
    size_t l = qf_utf8_next(s, n, &cp, &bad);
    if (!l) { l = 1; cp = -1; }
    *len = l;
    if (cp_out) *cp_out = cp;
    return char_class(cp);
}

size_t qf_bpe_pretoken_end(const char *text, size_t len, size_t pos) {
    const uint8_t *s = (const uint8_t *)text;
    if (pos >= len) return len;

    /* 's|'t|'re|'ve|'m|'ll|'d */
    if (s[pos] == '\'' && pos + 1 < len) {
        uint8_t c1 = s[pos + 1], c2 = pos + 2 < len ? s[pos + 2] : 0;
        if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return pos + 2;
        if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l'))
            return pos + 3;
    }

    size_t l;
    int32_t cp;
    int c = class_at(s + pos, len - pos, &l, &cp);
    size_t p = pos;
    /* ` ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+`: an ASCII space joins the run of
     * the class that follows it, unless that is whitespace. */
    if (cp == ' ' && pos + 1 < len) {
        size_t l1;
        int c1 = class_at(s + pos + 1, len - pos - 1, &l1, NULL);
        if (c1 != C_WS) { c = c1; p = pos + 1; l = l1; }
    }
    if (c != C_WS) {
        size_t q = p + l;
        while (q < len) {
            if (class_at(s + q, len - q, &l, NULL) != c) break;
            q += l;
        }
        return q;
    }

    /* `\s+(?!\S)|\s+`: a whitespace run reaching the end is taken whole; one
     * followed by a non-space gives back its last character (which then
     * prefixes the next word when it is a space), unless it is that single
     * character. */
    size_t q = pos, last = pos;
    while (q < len) {
        if (class_at(s + q, len - q, &l, NULL) != C_WS) break;
        last = q;
        q += l;
    }
    if (q == len) return len;
    return last > pos ? last : q;
}

/* ---- growable buffers ------------------------------------------------------- */

typedef struct { char *p; size_t n, cap; } buf;

static qf_status buf_reserve(buf *b, size_t extra) {
    if (b->n + extra + 1 <= b->cap) return QF_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->n + extra + 1) cap *= 2;
    char *p = qf_realloc(b->p, cap);
    if (!p) return qf_errorf(QF_ERR_NOMEM, "bpe: out of memory (%zu bytes)", cap);
    b->p = p;
    b->cap = cap;
    return QF_OK;
}

static qf_status buf_add(buf *b, const void *data, size_t n) {
    qf_status s = buf_reserve(b, n);
    if (s) return s;
    if (n) memcpy(b->p + b->n, data, n);
    b->n += n;
    b->p[b->n] = 0;
    return QF_OK;
}

typedef struct { int32_t *p; int n, cap; } ivec;

static qf_status ivec_push(ivec *v, int32_t x) {
    if (v->n == v->cap) {
        if (v->cap > INT_MAX / 2) return qf_errorf(QF_ERR_LIMIT, "bpe: too many tokens");
        int cap = v->cap ? v->cap * 2 : 64;
        int32_t *p = qf_realloc(v->p, (size_t)cap * sizeof *p);
        if (!p) return qf_errorf(QF_ERR_NOMEM, "bpe: out of memory (%d ids)", cap);
        v->p = p;
        v->cap = cap;
    }
    v->p[v->n++] = x;
    return QF_OK;
}

/* ---- string pool and symbol table ------------------------------------------ */

static qf_status pool_add(qf_bpe *t, const void *data, size_t n, uint32_t *off) {
    if (t->pool_len + n + 1 > UINT32_MAX)
        return qf_errorf(QF_ERR_LIMIT, "bpe: vocabulary strings exceed 4 GiB");
    if (t->pool_len + n + 1 > t->pool_cap) {
        size_t cap = t->pool_cap ? t->pool_cap : 1 << 16;
        while (cap < t->pool_len + n + 1) cap *= 2;
        char *p = qf_realloc(t->pool, cap);
        if (!p) return qf_errorf(QF_ERR_NOMEM, "bpe: out of memory (%zu bytes)", cap);
        t->pool = p;
        t->pool_cap = cap;
    }
    *off = (uint32_t)t->pool_len;
    if (n) memcpy(t->pool + t->pool_len, data, n);
    t->pool[t->pool_len + n] = 0;
    t->pool_len += n + 1;
    return QF_OK;
}

static uint64_t hash_bytes(const void *data, size_t n) {
    const uint8_t *p = data;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static uint64_t hash_u64(uint64_t x) {
    x ^= x >> 30; x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27; x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static int32_t sym_find(const qf_bpe *t, const void *data, size_t n) {
    uint32_t mask = t->n_slots - 1;
    for (uint32_t i = (uint32_t)hash_bytes(data, n) & mask;; i = (i + 1) & mask) {
        int32_t k = t->slots[i];
        if (k < 0) return -1;
        const sym *y = &t->syms[k];
        if (y->len == n && memcmp(t->pool + y->off, data, n) == 0) return k;
    }
}

static qf_status sym_rehash(qf_bpe *t, uint32_t n_slots) {
    int32_t *slots = qf_malloc((size_t)n_slots * sizeof *slots);
    if (!slots) return qf_errorf(QF_ERR_NOMEM, "bpe: out of memory (%u symbol slots)", n_slots);
    for (uint32_t i = 0; i < n_slots; i++) slots[i] = -1;
    for (uint32_t k = 0; k < t->n_syms; k++) {
        const sym *y = &t->syms[k];
        uint32_t i = (uint32_t)hash_bytes(t->pool + y->off, y->len) & (n_slots - 1);
        while (slots[i] >= 0) i = (i + 1) & (n_slots - 1);
        slots[i] = (int32_t)k;
    }
    qf_free(t->slots);
    t->slots = slots;
    t->n_slots = n_slots;
    return QF_OK;
}

/* Index of the symbol with these bytes, created (id -1) when new. `data`
 * must not point into the pool. */
static qf_status sym_intern(qf_bpe *t, const void *data, size_t n, int32_t *out) {
    int32_t k = sym_find(t, data, n);
    if (k >= 0) { *out = k; return QF_OK; }
    qf_status s;
    if ((t->n_syms + 1) * 2 > t->n_slots && (s = sym_rehash(t, t->n_slots * 2))) return s;
    if (t->n_syms == t->cap_syms) {
        uint32_t cap = t->cap_syms ? t->cap_syms * 2 : 1024;
        sym *p = qf_realloc(t->syms, (size_t)cap * sizeof *p);
        if (!p) return qf_errorf(QF_ERR_NOMEM, "bpe: out of memory (%u symbols)", cap);
        t->syms = p;
        t->cap_syms = cap;
    }
    uint32_t off;
    if ((s = pool_add(t, data, n, &off))) return s;
    k = (int32_t)t->n_syms++;
    t->syms[k] = (sym){ off, (uint32_t)n, -1 };
    uint32_t mask = t->n_slots - 1;
    uint32_t i = (uint32_t)hash_bytes(data, n) & mask;
    while (t->slots[i] >= 0) i = (i + 1) & mask;
    t->slots[i] = k;
    *out = k;
    return QF_OK;
}

/* Rank and result of merging symbols a, b; 0 when they do not merge. */
static int merge_find(const qf_bpe *t, int32_t a, int32_t b, uint32_t *rank, int32_t *res) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    uint32_t mask = t->n_mslots - 1;
    for (uint32_t i = (uint32_t)hash_u64(key) & mask;; i = (i + 1) & mask) {
        if (t->mkey[i] == UINT64_MAX) return 0;
        if (t->mkey[i] == key) { *rank = t->mrank[i]; *res = t->mres[i]; return 1; }
    }
}

/* A repeated pair takes the later rank, as HF's dict(zip(merges, ranks)). */
static void merge_put(qf_bpe *t, int32_t a, int32_t b, uint32_t rank, int32_t res) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    uint32_t mask = t->n_mslots - 1;
    uint32_t i = (uint32_t)hash_u64(key) & mask;
    while (t->mkey[i] != UINT64_MAX && t->mkey[i] != key) i = (i + 1) & mask;
    if (t->mkey[i] == UINT64_MAX) t->n_merges++;
    t->mkey[i] = key;
    t->mrank[i] = rank;
    t->mres[i] = res;
}

/* Byte-level text -> raw bytes into `out` (room for n bytes). Returns the
 * byte count, or -1 when a character is outside the byte-level alphabet. */
static long unmap_bytes(const char *text, size_t n, uint8_t *out) {
    const uint8_t *s = (const uint8_t *)text;
    size_t i = 0, k = 0;
    while (i < n) {
        int32_t cp;
        size_t bad;
        size_t l = qf_utf8_next(s + i, n - i, &cp, &bad);
        int b = l ? cp_to_byte(cp) : -1;
        if (b < 0) return -1;
        out[k++] = (uint8_t)b;
        i += l;
    }
    return (long)k;
}

/* ---- loading ---------------------------------------------------------------- */

static qf_status join_path(char *dst, size_t n, const char *dir, const char *name) {
    if ((size_t)snprintf(dst, n, "%s/%s", dir, name) >= n)
        return qf_errorf(QF_ERR_ARG, "%s/%s: path too long", dir, name);
    return QF_OK;
}

/* Parses `dir/name`; a missing file gives *out = NULL when optional.
 * Tokenizer configs hold integers beyond 64 bits (model_max_length = 1e30),
 * so they are read with every integer as a double (flags). */
static qf_status load_json(const char *dir, const char *name, int optional, size_t flags, json_t **out) {
    char path[4096];
    qf_status s = join_path(path, sizeof path, dir, name);
    if (s) return s;
    *out = NULL;
    struct stat st;
    if (optional && stat(path, &st) != 0 && errno == ENOENT) return QF_OK;
    char *text = NULL;
    size_t len = 0;
    if ((s = qf_read_file(path, JSON_MAX_BYTES, &text, &len))) return s;
    json_error_t jerr;
    json_t *root = json_loadb(text, len, flags, &jerr);
    qf_free(text);
    if (!root) return qf_errorf(QF_ERR_FORMAT, "%s: line %d: %s", path, jerr.line, jerr.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return qf_errorf(QF_ERR_FORMAT, "%s: not a JSON object", path);
    }
    *out = root;
    return QF_OK;
}

static qf_status grow_ids(qf_bpe *t, int n_ids) {
    if (n_ids <= t->n_ids) return QF_OK;
    uint32_t *a = qf_realloc(t->id_text_off, (size_t)n_ids * sizeof *a);
    if (a) t->id_text_off = a;
    uint32_t *b = a ? qf_realloc(t->id_text_len, (size_t)n_ids * sizeof *b) : NULL;
    if (b) t->id_text_len = b;
    uint32_t *c = b ? qf_realloc(t->id_raw_off, (size_t)n_ids * sizeof *c) : NULL;
    if (c) t->id_raw_off = c;
    uint32_t *d = c ? qf_realloc(t->id_raw_len, (size_t)n_ids * sizeof *d) : NULL;
    if (d) t->id_raw_len = d;
    uint8_t *e = d ? qf_realloc(t->id_flags, (size_t)n_ids) : NULL;
    if (e) t->id_flags = e;
    if (!e) return qf_errorf(QF_ERR_NOMEM, "bpe: out of memory (%d ids)", n_ids);
    for (int i = t->n_ids; i < n_ids; i++) {
        t->id_text_off[i] = t->id_raw_off[i] = NONE;
        t->id_text_len[i] = t->id_raw_len[i] = 0;
        t->id_flags[i] = 0;
    }
    t->n_ids = n_ids;
    return QF_OK;
}

/* Sets the text of `id` and the bytes it decodes to (the byte-level
 * inverse, or the text itself when it is outside that alphabet). */
static qf_status set_id_text(qf_bpe *t, int id, const char *text, size_t n, uint8_t *scratch) {
    qf_status s = grow_ids(t, id + 1);
    if (s) return s;
    uint32_t off = 0;   /* set by pool_add on success; initialised for -O3 flow analysis */
    if ((s = pool_add(t, text, n, &off))) return s;
    t->id_text_off[id] = off;
    t->id_text_len[id] = (uint32_t)n;
    long k = unmap_bytes(text, n, scratch);
    if (k < 0) {
        t->id_raw_off[id] = off;
        t->id_raw_len[id] = (uint32_t)n;
    } else {
        if ((s = pool_add(t, scratch, (size_t)k, &off))) return s;
        t->id_raw_off[id] = off;
        t->id_raw_len[id] = (uint32_t)k;
    }
    return QF_OK;
}

static qf_status load_vocab(qf_bpe *t, const char *dir) {
    json_t *root = NULL;
    uint8_t *scratch = NULL;
    qf_status s = load_json(dir, "vocab.json", 0, 0, &root);
    if (s) return s;
    size_t n = json_object_size(root);
    if (n == 0 || n > MAX_ID) {
        s = qf_errorf(QF_ERR_FORMAT, "%s/vocab.json: %zu entries (expected 1..%d)", dir, n, MAX_ID);
        goto fail;
    }
    int max_id = -1;
    const char *key;
    json_t *val;
    size_t max_len = 0;
    json_object_foreach(root, key, val) {
        if (!json_is_integer(val) || json_integer_value(val) < 0 || json_integer_value(val) >= MAX_ID) {
            s = qf_errorf(QF_ERR_FORMAT, "%s/vocab.json: token '%s' has id that is not an integer in [0, %d)",
                          dir, key, MAX_ID);
            goto fail;
        }
        if ((int)json_integer_value(val) > max_id) max_id = (int)json_integer_value(val);
        if (strlen(key) > max_len) max_len = strlen(key);
    }
    if ((s = grow_ids(t, max_id + 1))) goto fail;
    scratch = qf_malloc(max_len + 1);
    if (!scratch) { s = qf_errorf(QF_ERR_NOMEM, "bpe: out of memory"); goto fail; }
    json_object_foreach(root, key, val) {
        int id = (int)json_integer_value(val);
        size_t kl = strlen(key);
        if ((s = set_id_text(t, id, key, kl, scratch))) goto fail;
        long k = unmap_bytes(key, kl, scratch);
        if (k >= 0) {   /* a token outside the byte-level alphabet can never come out of BPE */
            int32_t y;
            if ((s = sym_intern(t, scratch, (size_t)k, &y))) goto fail;
            t->syms[y].id = id;
        }
    }
    t->n_vocab = (int)n;
fail:
    qf_free(scratch);
    json_decref(root);
    return s;
}

static int is_ascii_space(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static qf_status load_merges(qf_bpe *t, const char *dir) {
    char path[4096];
    char *text = NULL;
    uint8_t *scratch = NULL;
    size_t len = 0;
    qf_status s = join_path(path, sizeof path, dir, "merges.txt");
    if (s) return s;
    if ((s = qf_read_file(path, MERGES_MAX_BYTES, &text, &len))) return s;

    size_t n_lines = 1;
    for (size_t i = 0; i < len; i++) n_lines += text[i] == '\n';
    uint32_t n_mslots = 16;
    while (n_mslots < 2 * n_lines) n_mslots *= 2;
    t->mkey = qf_malloc((size_t)n_mslots * sizeof *t->mkey);
    t->mrank = qf_malloc((size_t)n_mslots * sizeof *t->mrank);
    t->mres = qf_malloc((size_t)n_mslots * sizeof *t->mres);
    scratch = qf_malloc(len + 1);
    if (!t->mkey || !t->mrank || !t->mres || !scratch) {
        s = qf_errorf(QF_ERR_NOMEM, "%s: out of memory for %zu merges", path, n_lines);
        goto fail;
    }
    t->n_mslots = n_mslots;
    for (uint32_t i = 0; i < n_mslots; i++) t->mkey[i] = UINT64_MAX;

    /* HF: read().split("\n")[1:-1], rank = position in that list; lines that
     * are not two symbols keep their rank and never match. */
    size_t line_start = 0, line_no = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && text[i] != '\n') continue;
        size_t a = line_start, e = i;
        line_start = i + 1;
        size_t this_line = line_no++;
        if (this_line == 0 || i == len) continue;   /* header, and the part after the last "\n" */
        const char *part[3];
        size_t plen[3];
        int np = 0;
        while (a < e && np < 3) {
            while (a < e && is_ascii_space(text[a])) a++;
            if (a == e) break;
            size_t b = a;
            while (b < e && !is_ascii_space(text[b])) b++;
            part[np] = text + a;
            plen[np++] = b - a;
            a = b;
        }
        while (a < e && is_ascii_space(text[a])) a++;
        if (np != 2 || a != e) continue;
        long ka = unmap_bytes(part[0], plen[0], scratch);
        long kb = ka < 0 ? -1 : unmap_bytes(part[1], plen[1], scratch + ka);
        if (ka < 0 || kb < 0) continue;   /* outside the alphabet: can never match */
        int32_t ya, yb, yab;
        if ((s = sym_intern(t, scratch, (size_t)ka, &ya))) goto fail;
        if ((s = sym_intern(t, scratch + ka, (size_t)kb, &yb))) goto fail;
        if ((s = sym_intern(t, scratch, (size_t)(ka + kb), &yab))) goto fail;
        merge_put(t, ya, yb, (uint32_t)(this_line - 1), yab);
    }
fail:
    qf_free(scratch);
    qf_free(text);
    return s;
}

/* Content of a special-token value: "str" or {"content": "str"}. */
static const char *tok_content(const json_t *v) {
    if (json_is_string(v)) return json_string_value(v);
    if (json_is_object(v) && json_is_string(json_object_get(v, "content")))
        return json_string_value(json_object_get(v, "content"));
    return NULL;
}

/* An id read with JSON_DECODE_INT_AS_REAL: integral and in [0, MAX_ID). */
static int json_id(const json_t *v) {
    if (!json_is_number(v)) return -1;
    double d = json_number_value(v);
    return d >= 0 && d < MAX_ID && d == (double)(int)d ? (int)d : -1;
}

static int json_flag(const json_t *o, const char *key, int def) {
    json_t *v = json_is_object(o) ? json_object_get(o, key) : NULL;
    return json_is_boolean(v) ? json_is_true(v) : def;
}

static int find_added(const qf_bpe *t, const char *s, size_t n) {
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].len == n && memcmp(t->pool + t->added[i].off, s, n) == 0) return i;
    return -1;
}

/* Id of a token text: added tokens first, then vocab.json. */
static int lookup_id(const qf_bpe *t, const char *s, size_t n, uint8_t *scratch) {
    int a = find_added(t, s, n);
    if (a >= 0) return t->added[a].id;
    long k = unmap_bytes(s, n, scratch);
    if (k < 0) return -1;
    int32_t y = sym_find(t, scratch, (size_t)k);
    return y < 0 ? -1 : t->syms[y].id;
}

/* Registers an added token (matched whole in text); id < 0 takes the vocab
 * id of the content or, failing that, the next free id. */
static qf_status add_token(qf_bpe *t, const char *content, int id, int lstrip, int rstrip,
                           uint8_t *scratch, int *id_out) {
    size_t n = strlen(content);
    int a = find_added(t, content, n);
    if (a >= 0) { if (id_out) *id_out = t->added[a].id; return QF_OK; }
    if (n == 0) { if (id_out) *id_out = -1; return QF_OK; }
    if (id < 0) id = lookup_id(t, content, n, scratch);
    if (id < 0) id = t->n_ids;
    if (id >= MAX_ID)
        return qf_errorf(QF_ERR_FORMAT, "bpe: added token '%s' has id %d >= %d", content, id, MAX_ID);
    if (t->n_added == t->cap_added) {
        int cap = t->cap_added ? t->cap_added * 2 : 16;
        added_tok *p = qf_realloc(t->added, (size_t)cap * sizeof *p);
        if (!p) return qf_errorf(QF_ERR_NOMEM, "bpe: out of memory (%d added tokens)", cap);
        t->added = p;
        t->cap_added = cap;
    }
    qf_status s = set_id_text(t, id, content, n, scratch);
    if (s) return s;
    t->added[t->n_added++] = (added_tok){ t->id_text_off[id], (uint32_t)n, id,
                                          (uint8_t)lstrip, (uint8_t)rstrip };
    t->id_flags[id] |= F_ADDED;
    if (id_out) *id_out = id;
    return QF_OK;
}

static const char *const special_keys[] = {
    "bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token",
};
enum { K_BOS, K_EOS, K_UNK, K_SEP, K_PAD, K_CLS, K_MASK, N_KEYS };

/* Value of a special-token key: special_tokens_map.json overrides
 * tokenizer_config.json; *present tells whether either file has the key. */
static const json_t *special_value(const json_t *cfg, const json_t *map, const char *key, int *present) {
    const json_t *v = map ? json_object_get(map, key) : NULL;
    if (!v) v = cfg ? json_object_get(cfg, key) : NULL;
    *present = v != NULL;
    return v;
}

static qf_status load_config(qf_bpe *t, const char *dir) {
    json_t *cfg = NULL, *map = NULL, *added = NULL;
    uint8_t *scratch = NULL;
    qf_status s;
    if ((s = load_json(dir, "tokenizer_config.json", 1, JSON_DECODE_INT_AS_REAL, &cfg))) goto fail;
    if ((s = load_json(dir, "special_tokens_map.json", 1, JSON_DECODE_INT_AS_REAL, &map))) goto fail;
    if ((s = load_json(dir, "added_tokens.json", 1, JSON_DECODE_INT_AS_REAL, &added))) goto fail;
    scratch = qf_malloc(1 << 16);
    if (!scratch) { s = qf_errorf(QF_ERR_NOMEM, "bpe: out of memory"); goto fail; }

    t->add_bos = json_flag(cfg, "add_bos_token", 0);
    t->add_prefix_space = json_flag(cfg, "add_prefix_space", 0);
    t->clean_spaces = json_flag(cfg, "clean_up_tokenization_spaces", 0);

    /* tokenizer_config's added_tokens_decoder: {"id": {"content", "lstrip", "rstrip", ...}} */
    json_t *dec = cfg ? json_object_get(cfg, "added_tokens_decoder") : NULL;
    if (json_is_object(dec)) {
        const char *key;
        json_t *v;
        json_object_foreach(dec, key, v) {
            char *end;
            long id = strtol(key, &end, 10);
            const char *c = tok_content(v);
            if (*end || id < 0 || id >= MAX_ID || !c || strlen(c) >= (1 << 16)) {
                s = qf_errorf(QF_ERR_FORMAT, "%s/tokenizer_config.json: added_tokens_decoder entry '%s' "
                              "needs an id in [0, %d) and a content string", dir, key, MAX_ID);
                goto fail;
            }
            if ((s = add_token(t, c, (int)id, json_flag(v, "lstrip", 0), json_flag(v, "rstrip", 0),
                               scratch, NULL))) goto fail;
        }
    }
    if (added) {
        const char *key;
        json_t *v;
        json_object_foreach(added, key, v) {
            if (json_id(v) < 0 || strlen(key) >= (1 << 16)) {
                s = qf_errorf(QF_ERR_FORMAT, "%s/added_tokens.json: '%s' needs an integer id in [0, %d)",
                              dir, key, MAX_ID);
                goto fail;
            }
            if ((s = add_token(t, key, json_id(v), 0, 0, scratch, NULL))) goto fail;
        }
    }

    /* Named special tokens (GPT2Tokenizer wraps plain strings as AddedToken
     * with lstrip = rstrip = False). */
    int ids[N_KEYS];
    for (int k = 0; k < N_KEYS; k++) {
        int present;
        const json_t *v = special_value(cfg, map, special_keys[k], &present);
        const char *c = tok_content(v);
        if (!present && (k == K_BOS || k == K_EOS || k == K_UNK)) c = "<|endoftext|>";
        ids[k] = -1;
        if (!c) continue;
        if (strlen(c) >= (1 << 16)) {
            s = qf_errorf(QF_ERR_FORMAT, "%s: %s is too long", dir, special_keys[k]);
            goto fail;
        }
        if ((s = add_token(t, c, -1, json_flag(v, "lstrip", 0), json_flag(v, "rstrip", 0),
                           scratch, &ids[k]))) goto fail;
        if (ids[k] >= 0) t->id_flags[ids[k]] |= F_SPECIAL;
    }
    int present;
    const json_t *extra = special_value(cfg, map, "additional_special_tokens", &present);
    if (json_is_array(extra)) {
        size_t i;
        json_t *v;
        json_array_foreach(extra, i, v) {
            const char *c = tok_content(v);
            int id;
            if (!c || strlen(c) >= (1 << 16)) continue;
            if ((s = add_token(t, c, -1, json_flag(v, "lstrip", 0), json_flag(v, "rstrip", 0),
                               scratch, &id))) goto fail;
            if (id >= 0) t->id_flags[id] |= F_SPECIAL;
        }
    }
    t->bos_id = ids[K_BOS];
    t->eos_id = ids[K_EOS];
    t->unk_id = ids[K_UNK];
    t->pad_id = ids[K_PAD];
fail:
    qf_free(scratch);
    json_decref(cfg);
    json_decref(map);
    json_decref(added);
    return s;
}

qf_status qf_bpe_load(const char *model_dir, qf_bpe **out) {
    *out = NULL;
    qf_bpe *t = qf_calloc(1, sizeof *t);
    if (!t) return qf_errorf(QF_ERR_NOMEM, "bpe: out of memory");
    t->bos_id = t->eos_id = t->unk_id = t->pad_id = -1;
    qf_status s = sym_rehash(t, 1 << 17);
    if (s) goto fail;
    if ((s = load_vocab(t, model_dir))) goto fail;
    for (int b = 0; b < 256; b++) {
        uint8_t c = (uint8_t)b;
        if ((s = sym_intern(t, &c, 1, &t->byte_sym[b]))) goto fail;
    }
    if ((s = load_merges(t, model_dir))) goto fail;
    if ((s = load_config(t, model_dir))) goto fail;
    *out = t;
    return QF_OK;
fail:
    qf_bpe_free(t);
    return s;
}

void qf_bpe_free(qf_bpe *t) {
    if (!t) return;
    qf_free(t->pool);
    qf_free(t->syms);
    qf_free(t->slots);
    qf_free(t->mkey);
    qf_free(t->mrank);
    qf_free(t->mres);
    qf_free(t->id_text_off);
    qf_free(t->id_text_len);
    qf_free(t->id_raw_off);
    qf_free(t->id_raw_len);
    qf_free(t->id_flags);
    qf_free(t->added);
    qf_free(t);
}

/* ---- encode ------------------------------------------------------------------ */

/* Per-encode scratch for one pre-token of up to `len` bytes: its symbols,
 * and for each adjacent pair its merge rank (UINT32_MAX: none) and result. */
typedef struct {
    int32_t  *sym, *res;
    uint32_t *rank;
    uint8_t  *fresh;   /* symbol made by the last merge pass */
} scratch;

static void pair_at(const qf_bpe *t, scratch *w, size_t i) {
    if (!merge_find(t, w->sym[i], w->sym[i + 1], &w->rank[i], &w->res[i])) w->rank[i] = UINT32_MAX;
}

/* BPE of one pre-token's bytes, as HF's GPT2Tokenizer.bpe: take the pair of
 * lowest rank, merge every occurrence of it left to right, repeat. A rank
 * names one pair, so positions holding the best rank are that pair. Only
 * the ranks next to merged symbols are looked up again. */
static qf_status bpe_word(const qf_bpe *t, const uint8_t *s, size_t n, scratch *w, ivec *ids) {
    size_t m = n;
    for (size_t i = 0; i < n; i++) w->sym[i] = t->byte_sym[s[i]];
    for (size_t i = 0; i + 1 < m; i++) pair_at(t, w, i);
    while (m > 1) {
        uint32_t best = UINT32_MAX;
        for (size_t i = 0; i + 1 < m; i++)
            if (w->rank[i] < best) best = w->rank[i];
        if (best == UINT32_MAX) break;
        size_t k = 0;
        for (size_t i = 0; i < m; k++) {
            if (i + 1 < m && w->rank[i] == best) {
                w->sym[k] = w->res[i];
                w->fresh[k] = 1;
                i += 2;
            } else {   /* k <= i: compaction in place */
                w->sym[k] = w->sym[i];
                w->rank[k] = w->rank[i];
                w->res[k] = w->res[i];
                w->fresh[k] = 0;
                i++;
            }
        }
        m = k;
        for (size_t i = 0; i + 1 < m; i++)
            if (w->fresh[i] || w->fresh[i + 1]) pair_at(t, w, i);
    }
    for (size_t i = 0; i < m; i++) {
        int32_t id = t->syms[w->sym[i]].id;
        if (id < 0) id = t->unk_id;
        if (id < 0)
            return qf_errorf(QF_ERR_FORMAT,
                             "bpe: token '%.*s' is not in vocab.json and there is no unk token",
                             (int)t->syms[w->sym[i]].len, t->pool + t->syms[w->sym[i]].off);
        qf_status st = ivec_push(ids, id);
        if (st) return st;
    }
    return QF_OK;
}

static qf_status encode_text(const qf_bpe *t, const uint8_t *s, size_t a, size_t e, scratch *w, ivec *ids) {
    while (a < e) {
        size_t b = qf_bpe_pretoken_end((const char *)s, e, a);
        qf_status st = bpe_word(t, s + a, b - a, w, ids);
        if (st) return st;
        a = b;
    }
    return QF_OK;
}

/* Longest added token starting at s[i], -1 if none. */
static int match_added(const qf_bpe *t, const uint8_t *s, size_t len, size_t i) {
    int best = -1;
    for (int k = 0; k < t->n_added; k++) {
        const added_tok *a = &t->added[k];
        if (a->len <= len - i && (best < 0 || a->len > t->added[best].len) &&
            memcmp(t->pool + a->off, s + i, a->len) == 0)
            best = k;
    }
    return best;
}

typedef struct { size_t a, e; int added; } piece;

qf_status qf_bpe_encode_n(const qf_bpe *t, const char *text, size_t len, int add_bos,
                          int32_t **ids_out, int *n_out) {
    *ids_out = NULL;
    *n_out = 0;
    if (!text && len) return qf_errorf(QF_ERR_ARG, "bpe: NULL text");
    for (size_t i = 0; i < len;) {
        int32_t cp;
        size_t bad, l = qf_utf8_next((const uint8_t *)text + i, len - i, &cp, &bad);
        if (!l) return qf_errorf(QF_ERR_FORMAT, "bpe: text is not valid UTF-8 at byte %zu (0x%02x)",
                                 i, (unsigned)(uint8_t)text[i]);
        i += l;
    }
    if (add_bos == QF_BPE_BOS_DEFAULT) add_bos = t->add_bos;
    if (add_bos && t->bos_id < 0) return qf_errorf(QF_ERR_ARG, "bpe: the tokenizer has no bos token");

    ivec ids = { 0 };
    piece *pc = NULL;
    void *block = NULL;
    char *prefixed = NULL;
    qf_status s = QF_OK;
    if (add_bos && (s = ivec_push(&ids, t->bos_id))) goto fail;
    if (t->add_prefix_space) {   /* prepare_for_tokenization: " " + text */
        prefixed = qf_malloc(len + 2);
        if (!prefixed) { s = qf_errorf(QF_ERR_NOMEM, "bpe: out of memory"); goto fail; }
        prefixed[0] = ' ';
        if (len) memcpy(prefixed + 1, text, len);
        text = prefixed;
        len++;
    }
    const uint8_t *u = (const uint8_t *)text;

    /* carve out added tokens: leftmost, then longest */
    size_t n_pc = 0, cap_pc = 0;
    for (size_t i = 0, start = 0; i <= len;) {
        int k = i < len && t->n_added ? match_added(t, u, len, i) : -1;
        if (k < 0 && i < len) { i++; continue; }
        if (n_pc + 2 > cap_pc) {
            cap_pc = cap_pc ? cap_pc * 2 : 16;
            piece *p = qf_realloc(pc, cap_pc * sizeof *p);
            if (!p) { s = qf_errorf(QF_ERR_NOMEM, "bpe: out of memory"); goto fail; }
            pc = p;
        }
        pc[n_pc++] = (piece){ start, i, -1 };
        if (k < 0) break;
        pc[n_pc++] = (piece){ i, i + t->added[k].len, k };
        i += t->added[k].len;
        start = i;
    }
    /* lstrip/rstrip eat the whitespace of the neighbouring text (Python str.strip) */
    for (size_t j = 0; j < n_pc; j++) {
        if (pc[j].added < 0) continue;
        const added_tok *a = &t->added[pc[j].added];
        if (a->rstrip && j + 1 < n_pc && pc[j + 1].added < 0) {
            piece *r = &pc[j + 1];
            size_t l;
            int32_t cp;
            while (r->a < r->e) {
                class_at(u + r->a, r->e - r->a, &l, &cp);
                if (!py_isspace(cp)) break;
                r->a += l;
            }
        }
        if (a->lstrip && j > 0 && pc[j - 1].added < 0) {
            piece *q = &pc[j - 1];
            size_t keep = q->a, l;
            int32_t cp;
            for (size_t i = q->a; i < q->e; i += l) {
                class_at(u + i, q->e - i, &l, &cp);
                if (!py_isspace(cp)) keep = i + l;
            }
            q->e = keep;
        }
    }

    size_t room = len ? len : 1;
    block = qf_malloc(room * (2 * sizeof(int32_t) + sizeof(uint32_t) + 1));
    if (!block) { s = qf_errorf(QF_ERR_NOMEM, "bpe: out of memory for a %zu-byte text", len); goto fail; }
    scratch w = { block, (int32_t *)block + room, (uint32_t *)((int32_t *)block + 2 * room),
                  (uint8_t *)((int32_t *)block + 3 * room) };
    for (size_t j = 0; j < n_pc; j++) {
        if (pc[j].added >= 0) s = ivec_push(&ids, t->added[pc[j].added].id);
        else s = encode_text(t, u, pc[j].a, pc[j].e, &w, &ids);
        if (s) goto fail;
    }
    if (!ids.p && !(ids.p = qf_malloc(sizeof *ids.p))) {   /* never hand out NULL */
        s = qf_errorf(QF_ERR_NOMEM, "bpe: out of memory");
        goto fail;
    }
    *ids_out = ids.p;
    *n_out = ids.n;
    ids.p = NULL;
fail:
    qf_free(ids.p);
    qf_free(pc);
    qf_free(block);
    qf_free(prefixed);
    return s;
}

qf_status qf_bpe_encode(const qf_bpe *t, const char *text, int add_bos, int32_t **ids, int *n) {
    return qf_bpe_encode_n(t, text, text ? strlen(text) : 0, add_bos, ids, n);
}

/* ---- decode ------------------------------------------------------------------ */

/* Python bytes.decode("utf-8", errors="replace"). */
static qf_status utf8_replace(const uint8_t *s, size_t n, buf *out) {
    static const char repl[3] = { (char)0xEF, (char)0xBF, (char)0xBD };
    qf_status st = buf_reserve(out, n);
    if (st) return st;
    for (size_t i = 0; i < n;) {
        int32_t cp;
        size_t bad, l = qf_utf8_next(s + i, n - i, &cp, &bad);
        if (l) st = buf_add(out, s + i, l), i += l;
        else st = buf_add(out, repl, 3), i += bad;
        if (st) return st;
    }
    return QF_OK;
}

/* One sub-text of HF's _decode: sub-texts are joined with single spaces. */
static qf_status add_sub(buf *out, int *n_sub, const char *s, size_t n) {
    qf_status st = QF_OK;
    if (*n_sub && (st = buf_add(out, " ", 1))) return st;
    ++*n_sub;
    return buf_add(out, s, n);
}

static qf_status flush_sub(buf *out, int *n_sub, buf *cur, buf *tmp, int keep_empty) {
    tmp->n = 0;
    qf_status st = utf8_replace((const uint8_t *)cur->p, cur->n, tmp);
    if (st) return st;
    cur->n = 0;
    if (tmp->n == 0 && !keep_empty) return QF_OK;
    return add_sub(out, n_sub, tmp->p ? tmp->p : "", tmp->n);
}

/* HF clean_up_tokenization: ten str.replace passes in order. All patterns are
 * ASCII and shrink, so bytewise in-place rewriting is exact. */
static size_t clean_up(char *p, size_t n) {
    static const char *const pat[][2] = {
        { " .", "." }, { " ?", "?" }, { " !", "!" }, { " ,", "," }, { " ' ", "'" },
        { " n't", "n't" }, { " 'm", "'m" }, { " 's", "'s" }, { " 've", "'ve" }, { " 're", "'re" },
    };
    for (size_t k = 0; k < sizeof pat / sizeof pat[0]; k++) {
        size_t pl = strlen(pat[k][0]), rl = strlen(pat[k][1]), w = 0;
        for (size_t r = 0; r < n;) {
            if (r + pl <= n && memcmp(p + r, pat[k][0], pl) == 0) {
                memmove(p + w, pat[k][1], rl);
                w += rl;
                r += pl;
            } else {
                p[w++] = p[r++];
            }
        }
        n = w;
    }
    p[n] = 0;
    return n;
}

qf_status qf_bpe_decode_n(const qf_bpe *t, const int32_t *ids, int n, int skip_special,
                          int clean_spaces, char **out_text, size_t *out_len) {
    *out_text = NULL;
    if (out_len) *out_len = 0;
    if (n < 0 || (n > 0 && !ids)) return qf_errorf(QF_ERR_ARG, "bpe: decode of %d ids from NULL", n);
    buf out = { 0 }, cur = { 0 }, tmp = { 0 };
    int n_sub = 0, cur_tokens = 0;
    qf_status s = QF_OK;
    for (int i = 0; i < n; i++) {
        int id = ids[i];
        if (id < 0 || id >= t->n_ids || t->id_text_off[id] == NONE) {
            s = qf_errorf(QF_ERR_ARG, "bpe: id %d (position %d) has no token (vocabulary of %d ids)",
                          id, i, t->n_ids);
            goto fail;
        }
        uint8_t f = t->id_flags[id];
        if (skip_special && (f & F_SPECIAL)) continue;
        if ((f & F_ADDED) && !(f & F_SPECIAL)) {
            /* legacy added token: its own sub-text, taken verbatim */
            if (cur_tokens && (s = flush_sub(&out, &n_sub, &cur, &tmp, 0))) goto fail;
            cur_tokens = 0;
            if ((s = add_sub(&out, &n_sub, t->pool + t->id_text_off[id], t->id_text_len[id]))) goto fail;
        } else {
            if ((s = buf_add(&cur, t->pool + t->id_raw_off[id], t->id_raw_len[id]))) goto fail;
            cur_tokens++;
        }
    }
    if (cur_tokens && (s = flush_sub(&out, &n_sub, &cur, &tmp, 1))) goto fail;
    if ((s = buf_reserve(&out, 0))) goto fail;
    if (clean_spaces) out.n = clean_up(out.p, out.n);
    out.p[out.n] = 0;
    *out_text = out.p;
    if (out_len) *out_len = out.n;
    out.p = NULL;
fail:
    qf_free(out.p);
    qf_free(cur.p);
    qf_free(tmp.p);
    return s;
}

qf_status qf_bpe_decode(const qf_bpe *t, const int32_t *ids, int n, int skip_special,
                        int clean_spaces, char **out) {
    return qf_bpe_decode_n(t, ids, n, skip_special, clean_spaces, out, NULL);
}

/* ---- accessors --------------------------------------------------------------- */

int qf_bpe_vocab_size(const qf_bpe *t) { return t->n_vocab; }
int qf_bpe_n_ids(const qf_bpe *t) { return t->n_ids; }

const char *qf_bpe_token(const qf_bpe *t, int id) {
    if (id < 0 || id >= t->n_ids || t->id_text_off[id] == NONE) return NULL;
    return t->pool + t->id_text_off[id];
}

int qf_bpe_id(const qf_bpe *t, const char *token) {
    size_t n = strlen(token);
    uint8_t small[256];
    uint8_t *scratch = n <= sizeof small ? small : qf_malloc(n);
    if (!scratch) return -1;
    int id = lookup_id(t, token, n, scratch);
    if (scratch != small) qf_free(scratch);
    return id;
}

int qf_bpe_is_special(const qf_bpe *t, int id) {
    return id >= 0 && id < t->n_ids && (t->id_flags[id] & F_SPECIAL) != 0;
}

int qf_bpe_bos_id(const qf_bpe *t) { return t->bos_id; }
int qf_bpe_eos_id(const qf_bpe *t) { return t->eos_id; }
int qf_bpe_pad_id(const qf_bpe *t) { return t->pad_id; }
int qf_bpe_unk_id(const qf_bpe *t) { return t->unk_id; }
int qf_bpe_add_bos(const qf_bpe *t) { return t->add_bos; }
int qf_bpe_clean_spaces(const qf_bpe *t) { return t->clean_spaces; }
