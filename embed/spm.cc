/* spm.cc - the C face of libsentencepiece for the T5 tokenizer (see spm.h).
 *
 * SentencePiece does the segmentation and normalisation of each chunk; the
 * code here finds the special-token strings (HF's added-token split), maps
 * ids, and translates the library's status and exceptions into qf_status.
 * Nothing here re-implements the unigram model. */
#include "embed/spm.h"

#include <jansson.h>
#include <sentencepiece_processor.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>
#include <string>
#include <vector>

struct qf_spm {
    sentencepiece::SentencePieceProcessor sp;
    int n_pieces;                 /* sp.GetPieceSize()                  */
    int extra_ids;                /* <extra_id_0> .. <extra_id_{n-1}>   */
    int pad_id, eos_id, unk_id;   /* 0, 1, 2 in T5's spiece.model       */
    std::string pad, eos, unk;    /* their piece strings                */
};

static int read_extra_ids(const char *model_dir, int *out) {
    char path[4096];
    std::snprintf(path, sizeof path, "%s/tokenizer_config.json", model_dir);
    *out = 100;                   /* T5Tokenizer's default */
    std::FILE *f = std::fopen(path, "rb");
    if (!f) return 0;             /* optional */
    std::fclose(f);
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    if (!json_is_object(root)) {
        json_decref(root);
        qf_errorf(QF_ERR_FORMAT, "%s: line %d: %s", path, err.line, root ? "not an object" : err.text);
        return -1;
    }
    json_t *v = json_object_get(root, "extra_ids");
    int rc = 0;
    if (json_is_integer(v)) {
        json_int_t x = json_integer_value(v);
        if (x < 0 || x > 100000) {
            qf_errorf(QF_ERR_FORMAT, "%s: extra_ids %lld is out of range", path, (long long)x);
            rc = -1;
        } else {
            *out = (int)x;
        }
    }
    json_decref(root);
    return rc;
}

extern "C" qf_status qf_spm_load(const char *model_dir, qf_spm **out) {
    *out = nullptr;
    char path[4096];
    std::snprintf(path, sizeof path, "%s/spiece.model", model_dir);
    std::FILE *f = std::fopen(path, "rb");
    if (!f) return qf_errorf(QF_ERR_IO, "%s: cannot open (%s): a T5 checkpoint ships its SentencePiece model there",
                             path, std::strerror(errno));
    std::fclose(f);
    qf_spm *t = nullptr;
    try {
        t = new qf_spm();
        auto st = t->sp.Load(path);
        if (!st.ok()) {
            qf_status s = qf_errorf(QF_ERR_FORMAT, "%s: not a SentencePiece model (%s)", path, st.ToString().c_str());
            delete t;
            return s;
        }
        t->n_pieces = t->sp.GetPieceSize();
        t->pad_id = t->sp.pad_id();
        t->eos_id = t->sp.eos_id();
        t->unk_id = t->sp.unk_id();
        if (t->eos_id < 0) {
            delete t;
            return qf_errorf(QF_ERR_FORMAT, "%s: the model has no </s> piece (not a T5 tokenizer)", path);
        }
        if (t->pad_id >= 0) t->pad = t->sp.IdToPiece(t->pad_id);
        t->eos = t->sp.IdToPiece(t->eos_id);
        if (t->unk_id >= 0) t->unk = t->sp.IdToPiece(t->unk_id);
        if (read_extra_ids(model_dir, &t->extra_ids)) {
            delete t;
            return QF_ERR_FORMAT;
        }
    } catch (const std::bad_alloc &) {
        delete t;
        return qf_errorf(QF_ERR_NOMEM, "%s: out of memory", path);
    } catch (const std::exception &e) {
        delete t;
        return qf_errorf(QF_ERR_FORMAT, "%s: %s", path, e.what());
    }
    *out = t;
    return QF_OK;
}

extern "C" void qf_spm_free(qf_spm *t) { delete t; }

extern "C" int qf_spm_piece_size(const qf_spm *t) { return t->n_pieces; }
extern "C" int qf_spm_vocab_size(const qf_spm *t) { return t->n_pieces + t->extra_ids; }
extern "C" int qf_spm_eos_id(const qf_spm *t) { return t->eos_id; }
extern "C" int qf_spm_pad_id(const qf_spm *t) { return t->pad_id; }

/* Length of the special-token string at text[0..len) and its id, or 0:
 * `<pad>`, `</s>`, `<unk>` and `<extra_id_N>` with N < extra_ids written
 * canonically (HF's trie holds exactly those strings). */
static size_t special_at(const qf_spm *t, const char *p, size_t len, int *id) {
    if (len == 0 || *p != '<') return 0;
    const std::string *named[3] = { &t->pad, &t->eos, &t->unk };
    const int named_id[3] = { t->pad_id, t->eos_id, t->unk_id };
    for (int i = 0; i < 3; i++)
        if (!named[i]->empty() && named[i]->size() <= len && !std::memcmp(p, named[i]->data(), named[i]->size())) {
            *id = named_id[i];
            return named[i]->size();
        }
    static const char pre[] = "<extra_id_";
    const size_t np = sizeof pre - 1;
    if (len <= np || std::memcmp(p, pre, np)) return 0;
    size_t i = np;
    long n = 0;
    while (i < len && p[i] >= '0' && p[i] <= '9' && i - np < 7) n = n * 10 + (p[i++] - '0');
    size_t digits = i - np;
    if (digits == 0 || i >= len || p[i] != '>' || (digits > 1 && p[np] == '0') || n >= t->extra_ids) return 0;
    *id = t->n_pieces + t->extra_ids - 1 - (int)n;
    return i + 1;
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

extern "C" qf_status qf_spm_encode(const qf_spm *t, const char *text, int add_eos, int32_t **ids, int *n) {
    *ids = nullptr;
    *n = 0;
    const size_t len = std::strlen(text);
    for (size_t i = 0; i < len;) {
        int32_t cp;
        size_t bad, k = qf_utf8_next((const uint8_t *)text + i, len - i, &cp, &bad);
        if (!k) return qf_errorf(QF_ERR_FORMAT, "text is not valid UTF-8 at byte %zu", i);
        i += k;
    }
    try {
        std::vector<int> all, part;
        size_t start = 0;
        /* chunk [start, end) then a special token (or the end of the text) */
        auto flush = [&](size_t end) -> qf_status {
            size_t a = start, b = end;
            /* extra ids strip the whitespace around them (AddedToken lstrip/
             * rstrip); the normaliser drops it anyway, except that a chunk of
             * whitespace alone then vanishes */
            while (a < b && is_space(text[a])) a++;
            while (b > a && is_space(text[b - 1])) b--;
            if (a == b) return QF_OK;
            auto st = t->sp.Encode(std::string(text + start, end - start), &part);
            if (!st.ok()) return qf_errorf(QF_ERR_FORMAT, "SentencePiece: %s", st.ToString().c_str());
            all.insert(all.end(), part.begin(), part.end());
            return QF_OK;
        };
        for (size_t i = 0; i < len;) {
            int id;
            size_t k = special_at(t, text + i, len - i, &id);
            if (!k) { i++; continue; }
            qf_status s = flush(i);
            if (s) return s;
            all.push_back(id);
            i += k;
            start = i;
        }
        qf_status s = flush(len);
        if (s) return s;
        if (add_eos && (all.empty() || all.back() != t->eos_id)) all.push_back(t->eos_id);
        int32_t *buf = (int32_t *)qf_malloc((all.size() ? all.size() : 1) * sizeof *buf);
        if (!buf) return qf_errorf(QF_ERR_NOMEM, "out of memory for %zu token ids", all.size());
        for (size_t i = 0; i < all.size(); i++) buf[i] = all[i];
        *ids = buf;
        *n = (int)all.size();
        return QF_OK;
    } catch (const std::bad_alloc &) {
        return qf_errorf(QF_ERR_NOMEM, "out of memory tokenizing %zu bytes", len);
    } catch (const std::exception &e) {
        return qf_errorf(QF_ERR_FORMAT, "SentencePiece: %s", e.what());
    }
}

extern "C" qf_status qf_spm_decode(const qf_spm *t, const int32_t *ids, int n, char **out) {
    *out = nullptr;
    try {
        std::vector<int> keep;
        for (int i = 0; i < n; i++) {
            int id = ids[i];
            if (id < 0 || id >= t->n_pieces || id == t->pad_id || id == t->eos_id || id == t->unk_id) continue;
            keep.push_back(id);
        }
        std::string s;
        auto st = t->sp.Decode(keep, &s);
        if (!st.ok()) return qf_errorf(QF_ERR_FORMAT, "SentencePiece: %s", st.ToString().c_str());
        size_t a = 0, b = s.size();
        while (a < b && is_space(s[a])) a++;
        while (b > a && is_space(s[b - 1])) b--;
        char *buf = (char *)qf_malloc(b - a + 1);
        if (!buf) return qf_errorf(QF_ERR_NOMEM, "out of memory decoding %d ids", n);
        std::memcpy(buf, s.data() + a, b - a);
        buf[b - a] = 0;
        *out = buf;
        return QF_OK;
    } catch (const std::bad_alloc &) {
        return qf_errorf(QF_ERR_NOMEM, "out of memory decoding %d ids", n);
    } catch (const std::exception &e) {
        return qf_errorf(QF_ERR_FORMAT, "SentencePiece: %s", e.what());
    }
}
