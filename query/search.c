/* search.c - see search.h. FAISS gives candidates; the exact scores come
 * from the features kept in the store, so Flat, IVF-PQ and pooled indexes
 * all report the exact BLIP-2 ITC score of what they retrieve. */
#include "query/search.h"

#include "embed/bert.h"
#include "embed/blip2.h"
#include "embed/image.h"
#include "index/store.h"
#include "index/vindex.h"
#include "query/caption.h"

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

/* Captions c[0..n_cap) (c[i].vis reused when the captioning checkpoint
 * has the same ViT), from the store's cache when there; new ones cached. */
static qf_status caption_stage(const qf_search_env *env, const qf_search_opts *o, cand *c, int n_cap,
                               qf_search_result *out) {
    qf_store *st = env->st;
    const qf_blip2 *m = env->m;
    qf_captioner *cap = NULL;
    qf_status s = QF_OK;
    if (!env->cap && (s = qf_captioner_load_as(o->caption_model, o->caption_dtype, &cap))) goto fail;
    qf_captioner *capr = env->cap ? env->cap : cap;
    qf_gen_params gp = o->gen ? *o->gen : *qf_captioner_defaults(capr);
    const qf_blip2 *cm = qf_captioner_model(capr);
    int same_vit = !strcmp(qf_blip2_vision_fingerprint(cm), qf_blip2_vision_fingerprint(m));
    char settings[160];
    snprintf(settings, sizeof settings, "beams=%d,max_new=%d,min_new=%d,lp=%g,rp=%g,eos=%d%s%s", gp.num_beams,
             gp.max_new_tokens, gp.min_new_tokens, gp.length_penalty, gp.repetition_penalty, gp.eos_id,
             o->caption_dtype == QF_OPT_F32 ? "" : ",w=",   /* F32 keys as before: exact captions */
             o->caption_dtype == QF_OPT_F32 ? "" : qf_opt_weights_name(o->caption_dtype));
    const char *prompt = o->prompt ? o->prompt : "";
    for (int i = 0; i < n_cap; i++) {
        char *text = NULL;
        if ((s = qf_store_caption_get(st, c[i].id, qf_blip2_fingerprint(cm), prompt, settings, &text, NULL)))
            goto fail;
        if (text) { c[i].caption = text; out->captions_cached++; continue; }
        qf_caption cp;
        if (same_vit && c[i].vis) s = qf_captioner_run_vis(capr, c[i].vis, prompt, &gp, &cp);
        else s = qf_captioner_run_file(capr, c[i].img->path, prompt, &gp, &cp);
        if (s && s != QF_ERR_NOMEM) {
            /* a file that vanished or became unreadable since it was
             * indexed leaves its caption empty instead of failing the
             * whole search; any other failure still fails it */
            qf_img probe = { 0 };
            char why[512];
            snprintf(why, sizeof why, "%s", qf_last_error());
            qf_status ps = qf_img_load(c[i].img->path, NULL, &probe);
            qf_img_free(&probe);
            if (ps && ps != QF_ERR_NOMEM) {
                qf_log(QF_LOG_WARN, "not captioned: %s", why);
                s = QF_OK;
                continue;
            }
            qf_errorf(s, "%s", why);
        }
        if (s) goto fail;
        char idbuf[16 * 64 + 8];
        size_t pos = 0;
        idbuf[pos++] = '[';
        for (int t = 0; t < cp.n_ids && pos < sizeof idbuf - 16; t++)
            pos += (size_t)snprintf(idbuf + pos, sizeof idbuf - pos, "%s%d", t ? "," : "", cp.ids[t]);
        snprintf(idbuf + pos, sizeof idbuf - pos, "]");
        if (qf_store_caption_put(st, c[i].id, qf_blip2_fingerprint(cm), prompt, settings, cp.text, idbuf))
            qf_log(QF_LOG_WARN, "caption of %s not cached: %s", c[i].img->path, qf_last_error());
        c[i].caption = cp.text;
        cp.text = NULL;
        qf_caption_free(&cp);
    }
fail:
    qf_captioner_free(cap);
    return s;
}

/* The candidates as results; captions move over. */
static qf_status fill_hits(cand *c, int n_c, qf_search_result *out) {
    out->hits = qf_calloc((size_t)(n_c ? n_c : 1), sizeof *out->hits);
    if (!out->hits) return qf_errorf(QF_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n_c; i++) {
        qf_hit *h = &out->hits[i];
        h->id = c[i].id;
        h->path = qf_strdup(c[i].img->path);
        h->width = c[i].img->width;
        h->height = c[i].img->height;
        h->itc = c[i].itc;
        h->has_itm = c[i].has_itm;
        h->itm = c[i].itm;
        h->score = c[i].score;
        h->caption = c[i].caption;
        c[i].caption = NULL;
        if (!h->path) return qf_errorf(QF_ERR_NOMEM, "out of memory");
        out->n = i + 1;
    }
    return QF_OK;
}

qf_status qf_search_run(const qf_search_opts *o, qf_search_result *out) {
    memset(out, 0, sizeof *out);
    qf_store *st = NULL;
    qf_blip2 *m = NULL;
    qf_blip2_state *bs = NULL;
    qf_bert *tok = NULL;
    qf_vindex *vi = NULL;
    char *model_path = NULL, *fp = NULL, *factory = NULL, *pooled_s = NULL;
    qf_status s;

    if (!o->text == !(o->image_path || o->image_data)) return qf_errorf(QF_ERR_ARG, "give either a text or an image to search for");
    if (o->rerank > 0 && !o->text) return qf_errorf(QF_ERR_ARG, "--rerank needs a text query (ITM scores image-text pairs)");
    if (o->caption > 0 && !o->caption_model) return qf_errorf(QF_ERR_ARG, "--caption needs --caption-model DIR (a BLIP-2 OPT checkpoint)");
    struct stat sb;
    if (stat(o->db_path, &sb) != 0) return qf_errorf(QF_ERR_IO, "%s: no such index database", o->db_path);
    if ((s = qf_store_open(o->db_path, o->caption > 0 ? 0 : QF_STORE_READONLY, &st))) goto done;
    if ((s = meta_str(st, "model_path", &model_path, o->db_path)) || (s = meta_str(st, "model_fingerprint", &fp, o->db_path)) ||
        (s = meta_str(st, "factory", &factory, o->db_path)) || (s = meta_str(st, "pooled", &pooled_s, o->db_path)))
        goto done;

    const char *mdir = o->model_dir ? o->model_dir : model_path;
    if ((s = qf_blip2_load(mdir, QF_BLIP2_ALL, &m))) goto done;
    if (strcmp(qf_blip2_fingerprint(m), fp)) {
        s = qf_errorf(QF_ERR_ARG, "%s: the index was built with another model (fingerprint %.16s, %s), not %s",
                      o->db_path, fp, model_path, mdir);
        goto done;
    }
    if ((s = qf_blip2_state_init(m, &bs))) goto done;
    qf_img_preproc pp;
    if ((s = qf_img_preproc_load(mdir, &pp))) goto done;
    if (o->text && (s = qf_bert_load(mdir, &tok))) goto done;

    /* the FAISS file beside the database (an index not written yet is an
     * empty index) */
    char faiss_path[4200];
    snprintf(faiss_path, sizeof faiss_path, "%s.faiss", o->db_path);
    if (stat(faiss_path, &sb) == 0) {
        if ((s = qf_vindex_read(faiss_path, &vi))) goto done;
        if (o->nprobe > 0 && (s = qf_vindex_set_param(vi, "nprobe", o->nprobe))) goto done;
    }
    qf_search_env env = { .st = st, .m = m, .bs = bs, .tok = tok, .pp = &pp, .vi = vi,
                          .factory = factory, .pooled = atoi(pooled_s) };
    s = qf_search_env_run(&env, o, out);
done:
    qf_free(model_path); qf_free(fp); qf_free(factory); qf_free(pooled_s);
    qf_vindex_free(vi);
    qf_bert_free(tok);
    qf_blip2_state_free(bs);
    qf_blip2_free(m);
    qf_store_close(st);
    return s;
}

qf_status qf_search_env_run(const qf_search_env *env, const qf_search_opts *o, qf_search_result *out) {
    memset(out, 0, sizeof *out);
    qf_store *st = env->st;
    const qf_blip2 *m = env->m;
    qf_blip2_state *bs = env->bs;
    const qf_vindex *vi = env->vi;
    const char *factory = env->factory;
    const int pooled = env->pooled;
    const qf_img_preproc pp = *env->pp;
    float *qv = NULL, *feats = NULL;
    qf_vindex_hit *vh = NULL;
    cand *c = NULL;
    int n_c = 0, n_qv = 1;
    int64_t ids[QF_BERT_MAX_TXT_LEN], mask[QF_BERT_MAX_TXT_LEN];
    int n_tok = 0;
    const int k = o->k > 0 ? o->k : 10;
    qf_status s = QF_OK;

    if (!o->text == !(o->image_path || o->image_data)) return qf_errorf(QF_ERR_ARG, "give either a text or an image to search for");
    if (o->rerank > 0 && !o->text) return qf_errorf(QF_ERR_ARG, "--rerank needs a text query (ITM scores image-text pairs)");
    if (o->caption > 0 && !env->cap && !o->caption_model) return qf_errorf(QF_ERR_ARG, "--caption needs --caption-model DIR (a BLIP-2 OPT checkpoint)");
    if (o->text && !env->tok) return qf_errorf(QF_ERR_ARG, "text search without a tokenizer");
    snprintf(out->mode, sizeof out->mode, "%s, %s", pooled ? "pooled (approximate)" : "exact", factory);
    const int Q = qf_blip2_n_query(m), E = qf_blip2_embed_dim(m);

    /* query vectors */
    if (o->text) {
        if ((s = qf_bert_encode(env->tok, o->text, QF_BERT_MAX_TXT_LEN, 0, ids, mask, &n_tok))) goto done;
        qv = qf_malloc((size_t)E * sizeof *qv);
        if (!qv) { s = qf_errorf(QF_ERR_NOMEM, "out of memory"); goto done; }
        if ((s = qf_blip2_text_feat(m, bs, ids, mask, n_tok, qv, NULL))) goto done;
    } else {
        const int S = qf_blip2_image_size(m);
        float *pix = qf_malloc((size_t)3 * S * S * sizeof *pix);
        qv = qf_malloc((size_t)Q * E * sizeof *qv);
        if (!pix || !qv) { qf_free(pix); s = qf_errorf(QF_ERR_NOMEM, "out of memory"); goto done; }
        if (o->image_data) {
            qf_img img = { 0 };
            s = qf_img_decode_mem(o->image_data, o->image_len, o->image_path, NULL, &img);
            if (!s) s = qf_img_preprocess(&pp, &img, pix, NULL);
            qf_img_free(&img);
        } else {
            s = qf_img_load_pixels(o->image_path, &pp, NULL, pix, NULL, NULL, NULL);
        }
        if (!s) s = qf_blip2_image_feats(m, bs, pix, qv, NULL, NULL);
        qf_free(pix);
        if (s) goto done;
        n_qv = Q;
    }

    /* candidates from FAISS (no index written yet: no results) */
    if (!vi) goto done;
    int exact_flat = !pooled && strstr(factory, "Flat") && !strstr(factory, "IVF") && !strstr(factory, "HNSW");
    int64_t kc = exact_flat ? k : (k * 4 > k + 32 ? k * 4 : k + 32), n_hits = 0;
    feats = qf_malloc((size_t)Q * E * sizeof *feats);
    if (!feats) { s = qf_errorf(QF_ERR_NOMEM, "out of memory"); goto done; }
    /* Exact ITC from the stored features. Images deleted or re-queued since
     * the FAISS file was written (during an index run, or after a killed
     * one) are skipped, even when the deletion lands between reading the
     * row and its features; FAISS is asked for more until k usable images
     * are found or it has no more. */
    for (;;) {
        qf_vindex_hit *nvh = qf_realloc(vh, (size_t)kc * sizeof *vh);
        if (!nvh) { s = qf_errorf(QF_ERR_NOMEM, "out of memory"); goto done; }
        vh = nvh;
        if ((s = qf_vindex_search_images(vi, n_qv, qv, pooled ? 1 : Q, kc, vh, &n_hits))) goto done;
        free_cands(c, n_c);
        n_c = 0;
        c = qf_calloc((size_t)(n_hits ? n_hits : 1), sizeof *c);
        if (!c) { s = qf_errorf(QF_ERR_NOMEM, "out of memory"); goto done; }
        for (int64_t i = 0; i < n_hits; i++) {
            qf_store_image *img = NULL;
            if ((s = qf_store_image_get(st, vh[i].image_id, &img))) goto done;
            if (!img || img->status != QF_IMAGE_OK) { qf_free(img); continue; }
            s = qf_store_feats_get(st, vh[i].image_id, Q, E, feats);
            if (s == QF_ERR_MISSING) {     /* deleted by an index run since the row was read */
                qf_free(img);
                s = QF_OK;
                continue;
            }
            if (s) { qf_free(img); goto done; }
            float best = -INFINITY;
            for (int a = 0; a < n_qv; a++) {
                float sc = qf_blip2_itc_score(feats, Q, qv + (size_t)a * E, E);
                if (sc > best) best = sc;
            }
            cand *x = &c[n_c++];
            x->id = vh[i].image_id;
            x->itc = x->score = best;
            x->img = img;
        }
        if (n_c >= k || n_hits < kc || kc > INT64_MAX / 4) break;   /* enough, or FAISS has no more */
        kc *= 2;
    }
    qsort(c, (size_t)n_c, sizeof *c, cand_cmp);
    if (n_c > k) {
        for (int i = k; i < n_c; i++) { qf_free(c[i].img); c[i].img = NULL; }
        n_c = k;
    }

    /* ITM rerank of the top N */
    int n_rr = o->rerank < n_c ? o->rerank : n_c;
    if (n_rr > 0) {
        int cached = 0, computed = 0;
        for (int i = 0; i < n_rr; i++) {
            int from_cache = 0;
            if ((s = vision_of(m, bs, st, &pp, &c[i], &from_cache))) goto done;
            if (from_cache < 0) continue;
            from_cache ? cached++ : computed++;
            float lg[2];
            if ((s = qf_blip2_itm(m, bs, c[i].vis, ids, mask, n_tok, lg))) goto done;
            c[i].itm = lg[1];
            c[i].has_itm = 1;
            c[i].score = c[i].itm + c[i].itc;
        }
        qsort(c, (size_t)n_rr, sizeof *c, rerank_cmp);
        snprintf(out->rerank_src, sizeof out->rerank_src, "%s",
                 cached && computed ? "cached F16 (some recomputed from the image files)" :
                 cached ? "cached F16 (--keep-vision)" : "recomputed from the image files");
    }

    /* captions of the first M, cached per (image, model, prompt, settings) */
    int n_cap = o->caption < n_c ? o->caption : n_c;
    if (n_cap > 0 && (s = caption_stage(env, o, c, n_cap, out))) goto done;
    s = fill_hits(c, n_c, out);
done:
    if (s) qf_search_result_free(out);
    free_cands(c, n_c > 0 ? n_c : 0);
    qf_free(vh); qf_free(qv); qf_free(feats);
    return s;
}

qf_status qf_search_caption_ids(const qf_search_env *env, const qf_search_opts *o, const int64_t *ids, int n,
                                qf_search_result *out) {
    memset(out, 0, sizeof *out);
    if (!env->cap && !o->caption_model) return qf_errorf(QF_ERR_ARG, "captions need a captioning checkpoint (--caption-model DIR)");
    cand *c = qf_calloc((size_t)(n > 0 ? n : 1), sizeof *c);
    if (!c) return qf_errorf(QF_ERR_NOMEM, "out of memory");
    qf_status s = QF_OK;
    int n_c = 0;
    for (; n_c < n; n_c++) {
        if ((s = qf_store_image_get(env->st, ids[n_c], &c[n_c].img))) goto done;
        if (!c[n_c].img || c[n_c].img->status != QF_IMAGE_OK) {
            s = qf_errorf(QF_ERR_MISSING, "no indexed image has id %lld", (long long)ids[n_c]);
            n_c++;
            goto done;
        }
        c[n_c].id = ids[n_c];
    }
    if ((s = caption_stage(env, o, c, n_c, out))) goto done;
    s = fill_hits(c, n_c, out);
done:
    if (s) qf_search_result_free(out);
    free_cands(c, n_c);
    return s;
}

void qf_search_result_free(qf_search_result *r) {
    if (!r) return;
    for (int i = 0; i < r->n; i++) { qf_free((char *)r->hits[i].path); qf_free((char *)r->hits[i].caption); }
    qf_free(r->hits);
    r->hits = NULL;
    r->n = 0;
}
