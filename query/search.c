/* search.c - see search.h. FAISS gives candidates; the exact scores come
 * from the features kept in the store, so Flat, IVF-PQ and pooled indexes
 * all report the exact BLIP-2 ITC score of what they retrieve. */
#include "query/search.h"

#include "embed/bert.h"
#include "embed/blip2.h"
#include "embed/image.h"
#include "index/store.h"
#include "index/ann.h"
#include "index/vindex.h"
#include "embed/caption.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    int64_t id;
    float   itc, itm, score;
    int     has_itm;
    float  *vis;                 /* vision features when computed/cached */
    qf_store_image *img;
    char   *caption;
} cand;

static int cand_cmp(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static qf_status meta_str(qf_store *st, const char *key, char **v, const char *db) {
    qf_status s = qf_store_meta_get(st, key, v);
    if (!s && !*v) s = qf_errorf(QF_ERR_FORMAT, "%s: not a qformer index (no '%s' setting); run `qformer index` first", db, key);
    return s;
}

static void free_cands(cand *c, int n) {
    for (int i = 0; c && i < n; i++) { qf_free(c[i].vis); qf_free(c[i].img); qf_free(c[i].caption); }
    qf_free(c);
}

static qf_status vision_of(const qf_blip2 *m, qf_blip2_state *bs, qf_store *st, const qf_img_preproc *pp, cand *c,
                           int *from_cache) {
    const int Nv = qf_blip2_n_vis(m), Dv = qf_blip2_vis_dim(m), S = qf_blip2_image_size(m);
    float *x = NULL;
    int n_tok = 0, dim = 0;
    qf_status s = qf_store_vision_get(st, c->id, &x, &n_tok, &dim);
    if (s) return s;
    if (x && n_tok == Nv && dim == Dv) { c->vis = x; *from_cache = 1; return QF_OK; }
    qf_free(x);
    *from_cache = 0;
    float *pix = qf_malloc((size_t)3 * S * S * sizeof *pix);
    c->vis = qf_malloc((size_t)Nv * Dv * sizeof *c->vis);
    if (!pix || !c->vis) { qf_free(pix); return qf_errorf(QF_ERR_NOMEM, "out of memory"); }
    s = qf_img_load_pixels(c->img->path, pp, NULL, pix, NULL, NULL, NULL);
    if (s && s != QF_ERR_NOMEM) {
        /* the file vanished, became unreadable or was replaced since it was
         * indexed: this hit gets no ITM score (it failed the whole search) */
        qf_log(QF_LOG_WARN, "not reranked: %s", qf_last_error());
        qf_free(pix);
        qf_free(c->vis);
        c->vis = NULL;
        *from_cache = -1;
        return QF_OK;
    }
    if (!s) s = qf_blip2_vision(m, bs, pix, c->vis);
    qf_free(pix);
    return s;
}

/* Reranked hits first (by score), then those that could not be reranked. */
static int rerank_cmp(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->has_itm != y->has_itm) return x->has_itm ? -1 : 1;
    return cand_cmp(a, b);
}

/* Everything one search holds; released by ctx_free. The stages use env;
 * qf_search_run's open_index fills it from what it loads (owned here), a
 * caller of qf_search_env_run from what it keeps loaded (borrowed). */
typedef struct {
    const qf_search_opts *o;
    int             k;            /* results wanted                          */
    int             want;         /* candidates by ITC: max(k, rerank N)     */
    qf_search_env   env;
    qf_store       *st;           /* owned (open_index)                      */
    int             faiss_missing;   /* no FAISS file beside the database     */
    char            faiss_why[512];  /* why it could not be read ("" if read) */
    qf_blip2       *m;
    qf_blip2_state *bs;
    qf_bert        *tok;
    qf_vindex      *vi;
    qf_img_preproc  pp;
    const char     *mdir;         /* the model used (o->model_dir or the index's) */
    char           *model_path, *fp, *factory, *pooled_s;
    float          *qv;           /* query vectors [n_qv, E]                  */
    int             n_qv;
    int64_t         ids[QF_BERT_MAX_TXT_LEN], mask[QF_BERT_MAX_TXT_LEN];
    int             n_tok;        /* text query tokens (ITM input)            */
    cand           *c;            /* candidates, best first after rank_itc    */
    int             n_c;
} search_ctx;

static void ctx_free(search_ctx *x) {
    free_cands(x->c, x->n_c > 0 ? x->n_c : 0);
    qf_free(x->qv);
    qf_free(x->model_path); qf_free(x->fp); qf_free(x->factory); qf_free(x->pooled_s);
    qf_vindex_free(x->vi);
    qf_bert_free(x->tok);
    qf_blip2_state_free(x->bs);
    qf_blip2_free(x->m);
    qf_store_close(x->st);
}

/* The arguments, given what is loaded. */
static qf_status check_args(const qf_search_opts *o, const qf_search_env *env) {
    if (!o->text == !(o->image_path || o->image_data)) return qf_errorf(QF_ERR_ARG, "give either a text or an image to search for");
    if (o->rerank > 0 && !o->text) return qf_errorf(QF_ERR_ARG, "--rerank needs a text query (ITM scores image-text pairs)");
    if (o->caption > 0 && !o->caption_model && !(env && env->cap))
        return qf_errorf(QF_ERR_ARG, "--caption needs --caption-model DIR (a BLIP-2 OPT checkpoint)");
    return QF_OK;
}

/* Stage 1 (qf_search_run): the arguments, the store and its settings, the
 * model the index was built with (same fingerprint), its tokenizer, and the
 * FAISS file beside the database (none yet: an empty index). */
static qf_status open_index(search_ctx *x) {
    const qf_search_opts *o = x->o;
    qf_status s;
    if ((s = check_args(o, NULL))) return s;
    struct stat sb;
    if (stat(o->db_path, &sb) != 0) return qf_errorf(QF_ERR_IO, "%s: no such index database", o->db_path);
    /* captions are cached in the store when this process may write it */
    if ((s = qf_store_open(o->db_path, o->caption > 0 ? QF_STORE_IF_WRITABLE : QF_STORE_READONLY, &x->st))) return s;
    if ((s = meta_str(x->st, "model_path", &x->model_path, o->db_path)) ||
        (s = meta_str(x->st, "model_fingerprint", &x->fp, o->db_path)) ||
        (s = meta_str(x->st, "factory", &x->factory, o->db_path)) ||
        (s = meta_str(x->st, "pooled", &x->pooled_s, o->db_path)))
        return s;
    x->mdir = o->model_dir ? o->model_dir : x->model_path;
    struct stat mb;
    if (!o->model_dir && stat(x->mdir, &mb) != 0)
        return qf_errorf(QF_ERR_IO, "%s was built with the model %s, which is not there any more; pass --model "
                         "with its folder or ORG/NAME", o->db_path, x->mdir);
    if ((s = qf_blip2_load(x->mdir, QF_BLIP2_ALL, &x->m))) return s;
    if (strcmp(qf_blip2_fingerprint(x->m), x->fp))
        return qf_errorf(QF_ERR_ARG, "%s: the index was built with another model (fingerprint %.16s, %s), not %s",
                         o->db_path, x->fp, x->model_path, x->mdir);
    if ((s = qf_blip2_state_init(x->m, &x->bs)) || (s = qf_img_preproc_load(x->mdir, &x->pp))) return s;
    if ((s = qf_img_preproc_check(&x->pp, qf_blip2_image_size(x->m), x->mdir))) return s;
    if (o->text && (s = qf_bert_load(x->mdir, &x->tok))) return s;
    char *faiss_path = qf_store_index_path(o->db_path);
    if (!faiss_path) return qf_errorf(QF_ERR_NOMEM, "out of memory");
    /* missing or unreadable: rank_itc answers from the stored features */
    x->faiss_missing = stat(faiss_path, &sb) != 0;
    if (!x->faiss_missing && qf_vindex_read(faiss_path, &x->vi)) {
        snprintf(x->faiss_why, sizeof x->faiss_why, "%s", qf_last_error());
        x->vi = NULL;
    } else if (x->vi) {
        qf_ann_layout lay;
        qf_ann_params ap;
        if (!(s = qf_ann_layout_load(x->st, o->db_path, &lay, &ap))) {
            if (o->nprobe > 0) ap.nprobe = o->nprobe;
            if (!(s = qf_ann_apply(x->vi, &ap)) && o->nprobe > 0) s = qf_vindex_set_param(x->vi, "nprobe", o->nprobe);
        }
    }
    qf_free(faiss_path);
    x->env = (qf_search_env){ .st = x->st, .m = x->m, .bs = x->bs, .tok = x->tok, .pp = &x->pp, .vi = x->vi,
                              .factory = x->factory, .pooled = atoi(x->pooled_s) };
    return s;
}

/* Stage 2: the query vectors: one text feature, or an image's n_query. */
static qf_status query_vectors(search_ctx *x) {
    const qf_search_env *e = &x->env;
    const int Q = qf_blip2_n_query(e->m), E = qf_blip2_embed_dim(e->m);
    qf_status s;
    if (x->o->text) {
        if (!e->tok) return qf_errorf(QF_ERR_ARG, "text search without a tokenizer");
        if ((s = qf_bert_encode(e->tok, x->o->text, QF_BERT_MAX_TXT_LEN, 0, x->ids, x->mask, &x->n_tok))) return s;
        if (x->n_tok == QF_BERT_MAX_TXT_LEN) {     /* truncated? count the whole text once */
            enum { LONG = 4096 };
            int64_t *all = qf_malloc((size_t)LONG * sizeof *all);
            int n_all = 0;
            if (!all) return qf_errorf(QF_ERR_NOMEM, "out of memory");
            if (!(s = qf_bert_encode(e->tok, x->o->text, LONG, 0, all, NULL, &n_all)) && n_all > x->n_tok)
                qf_log(QF_LOG_WARN, "the query is %s%d tokens long; BLIP-2 reads the first %d (its max_txt_len), "
                       "the rest is ignored", n_all == LONG ? "over " : "", n_all, QF_BERT_MAX_TXT_LEN);
            qf_free(all);
            if (s) return s;
        }
        x->n_qv = 1;
        if (!(x->qv = qf_malloc((size_t)E * sizeof *x->qv))) return qf_errorf(QF_ERR_NOMEM, "out of memory");
        return qf_blip2_text_feat(e->m, e->bs, x->ids, x->mask, x->n_tok, x->qv, NULL);
    }
    const int S = qf_blip2_image_size(e->m);
    float *pix = qf_malloc((size_t)3 * S * S * sizeof *pix);
    x->qv = qf_malloc((size_t)Q * E * sizeof *x->qv);
    if (!pix || !x->qv) { qf_free(pix); return qf_errorf(QF_ERR_NOMEM, "out of memory"); }
    if (x->o->image_data) {          /* an encoded image in memory (an upload) */
        qf_img img = { 0 };
        s = qf_img_decode_mem(x->o->image_data, x->o->image_len, x->o->image_path, NULL, &img);
        if (!s) s = qf_img_preprocess(e->pp, &img, pix, NULL);
        qf_img_free(&img);
    } else {
        s = qf_img_load_pixels(x->o->image_path, e->pp, NULL, pix, NULL, NULL, NULL);
    }
    if (!s) s = qf_blip2_image_feats(e->m, e->bs, pix, x->qv, NULL, NULL);
    qf_free(pix);
    x->n_qv = Q;
    return s;
}

/* The fallback without a readable FAISS file: the exact ITC score of every
 * ok image from its stored features (a full scan), kept as (id, score). */
typedef struct { int64_t id; float score; } scored;
typedef struct {
    const float *qv;
    int          n_qv, Q, E;
    scored      *v;
    size_t       n, cap;
} full_scan;

static qf_status scan_one(int64_t id, const float *feats, void *user) {
    full_scan *f = user;
    if (f->n == f->cap) {
        size_t cap = f->cap ? 2 * f->cap : 1024;
        scored *v = qf_realloc(f->v, cap * sizeof *v);
        if (!v) return qf_errorf(QF_ERR_NOMEM, "out of memory scanning the stored features");
        f->v = v;
        f->cap = cap;
    }
    float best = -INFINITY;
    for (int a = 0; a < f->n_qv; a++) {
        float sc = qf_blip2_itc_score(feats, f->Q, f->qv + (size_t)a * f->E, f->E);
        if (sc > best) best = sc;
    }
    f->v[f->n].id = id;
    f->v[f->n].score = best;
    f->n++;
    return QF_OK;
}

static int scored_cmp(const void *a, const void *b) {
    const scored *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* The best x->want images by exact ITC over all stored features. */
static qf_status rank_store(search_ctx *x) {
    full_scan f = { .qv = x->qv, .n_qv = x->n_qv, .Q = qf_blip2_n_query(x->env.m), .E = qf_blip2_embed_dim(x->env.m) };
    qf_status s = qf_store_feats_foreach(x->env.st, scan_one, &f);
    if (s) goto done;
    if (f.n) qsort(f.v, f.n, sizeof *f.v, scored_cmp);
    free_cands(x->c, x->n_c);
    x->n_c = 0;
    if (!(x->c = qf_calloc((size_t)x->want, sizeof *x->c))) { s = qf_errorf(QF_ERR_NOMEM, "out of memory"); goto done; }
    for (size_t i = 0; i < f.n && x->n_c < x->want; i++) {
        qf_store_image *img = NULL;
        if ((s = qf_store_image_get(x->env.st, f.v[i].id, &img))) goto done;
        if (!img || img->status != QF_IMAGE_OK) { qf_free(img); continue; }
        cand *cd = &x->c[x->n_c++];
        cd->id = f.v[i].id;
        cd->itc = cd->score = f.v[i].score;
        cd->img = img;
    }
done:
    qf_free(f.v);
    return s;
}

/* Stage 3: FAISS candidates (the file beside the database) rescored exactly
 * from the stored features with the settings tuned at index time unless
 * overridden (index/ann.h; the tuned nprobe was applied when the index was
 * loaded: open_index, or the server's snapshot), the best `want` kept (k, or the rerank depth when
 * that is larger). Images deleted or re-queued since the FAISS file was
 * written are skipped (qf_ann_search widens the pool to find them). Without a
 * readable FAISS file (not written yet, deleted, corrupt) the answer comes
 * from the features in the store, exact, by a full scan, with a warning that
 * says what rebuilds it. */
static qf_status rank_itc(search_ctx *x, qf_search_result *out) {
    const int k = x->want;
    const qf_vindex *vi = x->env.vi;
    qf_ann_hit *ah = NULL;
    qf_status s = QF_OK;
    if (!vi) {
        const char *db = x->o->db_path;
        if ((s = rank_store(x))) return s;
        if (x->n_c > 0 && !db)        /* a loaded environment (serve) */
            qf_log(QF_LOG_WARN, "the vector index is missing or unreadable; answering from the stored features "
                   "(a full scan); `qformer index` on the database rebuilds it");
        else if (x->n_c > 0 && !x->faiss_why[0])
            qf_log(QF_LOG_WARN, "%s: the vector index is missing; answering from the features stored in it "
                   "(a full scan); `qformer index --db %s PATH...` rebuilds it", db, db);
        else if (x->n_c > 0)
            qf_log(QF_LOG_WARN, "%s; answering from the features stored in %s (a full scan); re-run "
                   "`qformer index --db %s PATH...` to rebuild the vector index", x->faiss_why, db, db);
        return QF_OK;
    }
    qf_ann_layout lay;
    qf_ann_params ap;
    if ((s = qf_ann_layout_load(x->env.st, x->o->db_path ? x->o->db_path : "the index", &lay, &ap))) goto done;
    if (x->o->nprobe > 0) ap.nprobe = x->o->nprobe;
    if (x->o->candidates > 0) ap.candidates = x->o->candidates;
    if (!lay.exact)
        snprintf(out->mode, sizeof out->mode, "%s, %s, nprobe %d, %d candidates rescored exactly",
                 x->env.pooled ? "pooled (approximate)" : "exact scores", x->env.factory, ap.nprobe,
                 ap.candidates > 0 ? ap.candidates : (k * 4 > k + 32 ? k * 4 : k + 32));
    int n_ah = 0;
    if (!(ah = qf_malloc((size_t)k * sizeof *ah))) { s = qf_errorf(QF_ERR_NOMEM, "out of memory"); goto done; }
    if ((s = qf_ann_search(x->env.st, vi, &lay, &ap, x->n_qv, x->qv, k, ah, &n_ah))) goto done;
    free_cands(x->c, x->n_c);
    x->n_c = 0;
    if (!(x->c = qf_calloc((size_t)(n_ah ? n_ah : 1), sizeof *x->c))) { s = qf_errorf(QF_ERR_NOMEM, "out of memory"); goto done; }
    for (int i = 0; i < n_ah; i++) {
        qf_store_image *img = NULL;
        if ((s = qf_store_image_get(x->env.st, ah[i].image_id, &img))) goto done;
        if (!img || img->status != QF_IMAGE_OK) { qf_free(img); continue; }   /* deleted since */
        cand *cd = &x->c[x->n_c++];
        cd->id = ah[i].image_id;
        cd->itc = cd->score = ah[i].itc;
        cd->img = img;
    }
    qsort(x->c, (size_t)x->n_c, sizeof *x->c, cand_cmp);
done:
    qf_free(ah);
    return s;
}

/* Stage 4: ITM rerank of the top N (text queries); then the first k stay
 * (N above k: the best k of the N, as LAVIS: ITC top-k_test, then ITM). */
static void cut_to_k(search_ctx *x) {
    for (int i = x->k; i < x->n_c; i++) {
        qf_free(x->c[i].img); x->c[i].img = NULL;
        qf_free(x->c[i].vis); x->c[i].vis = NULL;
    }
    if (x->n_c > x->k) x->n_c = x->k;
}

static qf_status rerank_itm(search_ctx *x, qf_search_result *out) {
    int n_rr = x->o->rerank < x->n_c ? x->o->rerank : x->n_c;
    if (n_rr <= 0) { cut_to_k(x); return QF_OK; }
    int cached = 0, computed = 0;
    for (int i = 0; i < n_rr; i++) {
        cand *cd = &x->c[i];
        int from_cache = 0;
        qf_status s = vision_of(x->env.m, x->env.bs, x->env.st, x->env.pp, cd, &from_cache);
        if (s) return s;
        if (from_cache < 0) continue;
        from_cache ? cached++ : computed++;
        float lg[2];
        if ((s = qf_blip2_itm(x->env.m, x->env.bs, cd->vis, x->ids, x->mask, x->n_tok, lg))) return s;
        cd->itm = lg[1];
        cd->has_itm = 1;
        cd->score = cd->itm + cd->itc;
    }
    qsort(x->c, (size_t)n_rr, sizeof *x->c, rerank_cmp);
    snprintf(out->rerank_src, sizeof out->rerank_src, "%s",
             cached && computed ? "cached F16 (some recomputed from the image files)" :
             cached ? "cached F16 (--keep-vision)" : "recomputed from the image files");
    cut_to_k(x);
    return QF_OK;
}

/* One caption; a file that vanished or became unreadable since it was
 * indexed leaves the caption empty (QF_OK, cp->text NULL) instead of failing
 * the whole search; any other failure still fails it. */
static qf_status caption_one(qf_captioner *cap, int same_vit, const cand *cd, const char *prompt,
                             const qf_gen_params *gp, qf_caption *cp) {
    memset(cp, 0, sizeof *cp);
    qf_status s = same_vit && cd->vis ? qf_captioner_run_vis(cap, cd->vis, prompt, gp, cp)
                                      : qf_captioner_run_file(cap, cd->img->path, prompt, gp, cp);
    if (!s || s == QF_ERR_NOMEM) return s;
    qf_img probe = { 0 };
    char why[512];
    snprintf(why, sizeof why, "%s", qf_last_error());
    qf_status ps = qf_img_load(cd->img->path, NULL, &probe);
    qf_img_free(&probe);
    if (ps && ps != QF_ERR_NOMEM) {
        qf_log(QF_LOG_WARN, "not captioned: %s", why);
        return QF_OK;
    }
    return qf_errorf(s, "%s", why);
}

/* Stage 5: captions of the first M, cached in the store per (image, model,
 * prompt, settings). */
static qf_status caption_hits(search_ctx *x, qf_search_result *out) {
    const qf_search_opts *o = x->o;
    int n_cap = o->caption < x->n_c ? o->caption : x->n_c;
    if (n_cap <= 0) return QF_OK;
    qf_captioner *own = NULL, *cap = x->env.cap;
    qf_status s = cap ? QF_OK : qf_captioner_load(o->caption_model, o->caption_dtype, &own);
    if (s) return s;
    if (!cap) cap = own;
    qf_gen_params gp = o->gen ? *o->gen : *qf_captioner_defaults(cap);
    const qf_blip2 *cm = qf_captioner_model(cap);
    int same_vit = !strcmp(qf_blip2_vision_fingerprint(cm), qf_blip2_vision_fingerprint(x->env.m));
    char settings[160];
    qf_caption_settings(&gp, o->caption_dtype, settings, sizeof settings);
    const char *prompt = o->prompt ? o->prompt : "";
    int ro_noted = 0;
    for (int i = 0; i < n_cap && !s; i++) {
        cand *cd = &x->c[i];
        char *text = NULL;
        if ((s = qf_store_caption_get(x->env.st, cd->id, qf_blip2_fingerprint(cm), prompt, settings, &text, NULL)))
            break;
        if (text) { cd->caption = text; out->captions_cached++; continue; }
        qf_caption cp;
        if ((s = caption_one(cap, same_vit, cd, prompt, &gp, &cp)) || !cp.text) { qf_caption_free(&cp); continue; }
        char *ids_json = qf_caption_ids_json(&cp);
        if (!ids_json) s = qf_errorf(QF_ERR_NOMEM, "out of memory");
        else if (qf_store_is_readonly(x->env.st)) {
            if (!ro_noted) qf_log(QF_LOG_WARN, "%s is read-only here: new captions are not cached", o->db_path);
            ro_noted = 1;
        } else if (qf_store_caption_put(x->env.st, cd->id, qf_blip2_fingerprint(cm), prompt, settings, cp.text, ids_json))
            qf_log(QF_LOG_WARN, "caption of %s not cached: %s", cd->img->path, qf_last_error());
        qf_free(ids_json);
        cd->caption = cp.text;
        cp.text = NULL;
        qf_caption_free(&cp);
    }
    qf_captioner_free(own);
    return s;
}

/* The candidates as results; strings move to (or are copied into) out. */
static qf_status fill_result(search_ctx *x, qf_search_result *out) {
    out->hits = qf_calloc((size_t)(x->n_c ? x->n_c : 1), sizeof *out->hits);
    if (!out->hits) return qf_errorf(QF_ERR_NOMEM, "out of memory");
    for (int i = 0; i < x->n_c; i++) {
        cand *cd = &x->c[i];
        qf_hit *h = &out->hits[i];
        h->id = cd->id;
        h->path = qf_strdup(cd->img->path);
        h->width = cd->img->width;
        h->height = cd->img->height;
        h->itc = cd->itc;
        h->has_itm = cd->has_itm;
        h->itm = cd->itm;
        h->score = cd->score;
        h->caption = cd->caption;
        cd->caption = NULL;
        if (h->caption) {            /* as users print it, as `caption` does: stripped */
            char *t = (char *)h->caption, *b = t;
            while (*b && isspace((unsigned char)*b)) b++;
            size_t n = strlen(b);
            while (n && isspace((unsigned char)b[n - 1])) n--;
            memmove(t, b, n);
            t[n] = 0;
        }
        if (!h->path) return qf_errorf(QF_ERR_NOMEM, "out of memory");
        out->n = i + 1;
    }
    return QF_OK;
}

/* Stages 2-6 over x->env. */
static qf_status run_stages(search_ctx *x, qf_search_result *out) {
    qf_status s;
    snprintf(out->mode, sizeof out->mode, "%s, %s", x->env.pooled ? "pooled (approximate)" : "exact", x->env.factory);
    if (!(s = query_vectors(x)) && !(s = rank_itc(x, out)) && !(s = rerank_itm(x, out)) && !(s = caption_hits(x, out)))
        s = fill_result(x, out);
    return s;
}

qf_status qf_search_run(const qf_search_opts *o, qf_search_result *out) {
    memset(out, 0, sizeof *out);
    search_ctx x = { .o = o, .k = o->k > 0 ? o->k : 10 };
    x.want = o->rerank > x.k ? o->rerank : x.k;
    qf_status s;
    if (!(s = open_index(&x))) s = run_stages(&x, out);
    if (s) qf_search_result_free(out);
    ctx_free(&x);
    return s;
}

qf_status qf_search_env_run(const qf_search_env *env, const qf_search_opts *o, qf_search_result *out) {
    memset(out, 0, sizeof *out);
    search_ctx x = { .o = o, .k = o->k > 0 ? o->k : 10, .env = *env };
    x.want = o->rerank > x.k ? o->rerank : x.k;
    qf_status s;
    if (!(s = check_args(o, env))) s = run_stages(&x, out);
    if (s) qf_search_result_free(out);
    ctx_free(&x);
    return s;
}

qf_status qf_search_caption_ids(const qf_search_env *env, const qf_search_opts *o, const int64_t *ids, int n,
                                qf_search_result *out) {
    memset(out, 0, sizeof *out);
    if (!env->cap && !o->caption_model)
        return qf_errorf(QF_ERR_ARG, "captions need a captioning checkpoint (--caption-model DIR)");
    qf_search_opts co = *o;
    co.caption = n;
    search_ctx x = { .o = &co, .k = n, .env = *env };
    qf_status s = QF_OK;
    if (!(x.c = qf_calloc((size_t)(n > 0 ? n : 1), sizeof *x.c))) return qf_errorf(QF_ERR_NOMEM, "out of memory");
    for (; x.n_c < n && !s; x.n_c++) {
        cand *cd = &x.c[x.n_c];
        cd->id = ids[x.n_c];
        if (!(s = qf_store_image_get(env->st, cd->id, &cd->img)) && (!cd->img || cd->img->status != QF_IMAGE_OK))
            s = qf_errorf(QF_ERR_MISSING, "no indexed image has id %lld", (long long)cd->id);
    }
    if (!s && !(s = caption_hits(&x, out))) s = fill_result(&x, out);
    if (s) qf_search_result_free(out);
    ctx_free(&x);
    return s;
}

void qf_search_result_free(qf_search_result *r) {
    if (!r) return;
    for (int i = 0; i < r->n; i++) { qf_free((char *)r->hits[i].path); qf_free((char *)r->hits[i].caption); }
    qf_free(r->hits);
    r->hits = NULL;
    r->n = 0;
}
