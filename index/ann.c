/* ann.c - approximate search with exact rescoring, its tuning, and the
 * `--factory auto` choice (see ann.h).
 *
 * Recall of a candidate pool: the exact rescoring returns, among the
 * candidates, the k with the best exact score, so every true top-k image
 * that is a candidate is returned. recall@k is therefore |truth ∩ pool| / k,
 * and one FAISS search with the largest pool gives the recall of every
 * smaller pool (its prefixes) at once. */
#include "index/ann.h"

#include "embed/blip2.h"
#include "embed/ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static qf_status meta_int(qf_store *st, const char *key, int64_t def, int64_t *out) {
    char *v = NULL;
    qf_status s = qf_store_meta_get(st, key, &v);
    if (s) return s;
    *out = v ? strtoll(v, NULL, 10) : def;
    qf_free(v);
    return QF_OK;
}

static qf_status meta_set_fmt(qf_store *st, const char *key, const char *fmt, double v) {
    char buf[64];
    snprintf(buf, sizeof buf, fmt, v);
    return qf_store_meta_set(st, key, buf);
}

int qf_ann_factory_is_exact(const char *factory, int pooled) {
    return !pooled && qf_vindex_factory_exact(factory);
}

qf_status qf_ann_layout_load(qf_store *st, const char *db, qf_ann_layout *lay, qf_ann_params *p) {
    memset(lay, 0, sizeof *lay);
    memset(p, 0, sizeof *p);
    char *factory = NULL;
    int64_t pooled, nq, dim, nprobe, cand;
    qf_status s = qf_store_meta_get(st, "factory", &factory);
    if (s) return s;
    if (!factory)
        return qf_errorf(QF_ERR_FORMAT, "%s: not a qformer index (no 'factory' setting); run `qformer index` first", db);
    snprintf(lay->factory, sizeof lay->factory, "%s", factory);
    qf_free(factory);
    if ((s = meta_int(st, "pooled", 0, &pooled)) || (s = meta_int(st, "n_query", 0, &nq)) ||
        (s = meta_int(st, "dim", 0, &dim)) || (s = meta_int(st, "search_nprobe", 0, &nprobe)) ||
        (s = meta_int(st, "search_candidates", 0, &cand)))
        return s;
    if (nq <= 0 || dim <= 0 || nq > 4096 || dim > 1 << 16)
        return qf_errorf(QF_ERR_FORMAT, "%s: index settings n_query=%lld dim=%lld are not usable", db,
                         (long long)nq, (long long)dim);
    lay->n_query = (int)nq;
    lay->dim = (int)dim;
    lay->pooled = pooled != 0;
    lay->exact = qf_ann_factory_is_exact(lay->factory, lay->pooled);
    p->nprobe = nprobe > 0 && nprobe < 1 << 24 ? (int)nprobe : 0;
    p->candidates = cand > 0 && cand < 1 << 24 ? (int)cand : 0;
    return QF_OK;
}

qf_status qf_ann_apply(qf_vindex *vi, const qf_ann_params *p) {
    if (p->nprobe <= 0 || qf_vindex_nlist(vi) == 0) return QF_OK;
    int64_t nl = qf_vindex_nlist(vi);
    return qf_vindex_set_param(vi, "nprobe", p->nprobe < nl ? p->nprobe : (double)nl);
}

/* ---- search ------------------------------------------------------------------ */

static int hit_cmp(const void *a, const void *b) {     /* itc desc, id asc */
    const qf_ann_hit *x = a, *y = b;
    if (x->itc != y->itc) return x->itc > y->itc ? -1 : 1;
    return (x->image_id > y->image_id) - (x->image_id < y->image_id);
}

#define RESCORE_BATCH 64
#define COLD_READ_S   80e-6   /* one blob read: 20-40 us from the page cache, 90-500 us from disk */

static int vhit_by_id(const void *a, const void *b) {
    const qf_vindex_hit *x = a, *y = b;
    return (x->image_id > y->image_id) - (x->image_id < y->image_id);
}

qf_status qf_ann_search(qf_store *st, const qf_vindex *vi, const qf_ann_layout *lay,
                        const qf_ann_params *p, int n_qv, const float *qv, int k,
                        qf_ann_hit *hits, int *n_hits) {
    const int Q = lay->n_query, E = lay->dim, per = lay->pooled ? 1 : Q;
    qf_status s = QF_OK;
    qf_vindex_hit *vh = NULL;
    qf_ann_hit *got = NULL;
    int64_t *ids = NULL;
    float *feats = NULL;
    int found[RESCORE_BATCH];
    *n_hits = 0;
    if (k <= 0 || n_qv <= 0) return qf_errorf(QF_ERR_ARG, "search: k=%d n_qv=%d must be positive", k, n_qv);
    int64_t kc = lay->exact ? k : p->candidates > 0 ? (p->candidates > k ? p->candidates : k)
                                                    : (k * 4 > k + 32 ? k * 4 : k + 32);
    feats = qf_malloc((size_t)RESCORE_BATCH * Q * E * sizeof *feats);
    if (!feats) return qf_errorf(QF_ERR_NOMEM, "out of memory");
    int64_t n_got = 0;
    for (;;) {
        int64_t nh = 0;
        qf_vindex_hit *nvh = qf_realloc(vh, (size_t)kc * sizeof *vh);
        qf_ann_hit *ngot = nvh ? qf_realloc(got, (size_t)kc * sizeof *got) : NULL;
        int64_t *nids = ngot ? qf_realloc(ids, (size_t)kc * sizeof *ids) : NULL;
        if (nvh) vh = nvh;
        if (ngot) got = ngot;
        if (nids) ids = nids;
        if (!nids) { s = qf_errorf(QF_ERR_NOMEM, "out of memory (%lld candidates)", (long long)kc); goto done; }
        s = lay->exact ? qf_vindex_search_images(vi, n_qv, qv, per, kc, vh, &nh)
                       : qf_vindex_search_candidates(vi, n_qv, qv, per, kc, vh, &nh);
        if (s) goto done;
        n_got = 0;
        /* the candidates in id order (the B-tree's). With many of them the
         * first is read alone and timed: if it came from disk (the page
         * cache does not hold the database, e.g. 33 GB at 1M images), the
         * rest are read with read-ahead, several cold blobs at a time; warm,
         * read-ahead would only duplicate the reads on the same cores */
        qsort(vh, (size_t)nh, sizeof *vh, vhit_by_id);
        for (int64_t j = 0; j < nh; j++) ids[j] = vh[j].image_id;
        qf_store_prefetch *pf = NULL;
        for (int64_t i0 = 0, nb; i0 < nh; i0 += nb) {
            int probe = i0 == 0 && nh >= RESCORE_BATCH;
            nb = probe ? 1 : nh - i0 < RESCORE_BATCH ? nh - i0 : RESCORE_BATCH;
            double t0 = probe ? now() : 0;
            if ((s = qf_store_feats_get_many(st, nb, ids + i0, Q, E, feats, found))) { qf_store_prefetch_end(pf); goto done; }
            if (probe && now() - t0 > COLD_READ_S) pf = qf_store_feats_prefetch(st, nh, ids);
            for (int64_t j = 0; j < nb; j++) {
                if (!found[j]) continue;        /* deleted or re-queued since FAISS was written */
                const float *f = feats + (size_t)j * Q * E;
                float best = -INFINITY;
                for (int a = 0; a < n_qv; a++) {
                    float sc = qf_blip2_itc_score(f, Q, qv + (size_t)a * E, E);
                    if (sc > best) best = sc;
                }
                got[n_got++] = (qf_ann_hit){ ids[i0 + j], best };
            }
        }
        qf_store_prefetch_end(pf);
        if (n_got >= k || nh < kc || kc > INT32_MAX / 4) break;   /* enough, or FAISS has no more */
        kc *= 2;
    }
    qsort(got, (size_t)n_got, sizeof *got, hit_cmp);
    *n_hits = (int)(n_got < k ? n_got : k);
    memcpy(hits, got, (size_t)*n_hits * sizeof *hits);
done:
    qf_free(vh);
    qf_free(got);
    qf_free(ids);
    qf_free(feats);
    return s;
}

/* ---- exact ground truth ---------------------------------------------------------- */

typedef struct {
    int      Q, E, nq, k;
    const float *q;
    int64_t *ids;        /* [nq * k], kept sorted by score desc, id asc */
    float   *scores;
    float   *batch;      /* [EXACT_BATCH * Q * E] */
    int64_t  batch_ids[256];
    int      n_batch;
    float   *sim;        /* [EXACT_BATCH * Q * nq] */
} exact_ctx;

#define EXACT_BATCH 256

static void topk_insert(int64_t *ids, float *sc, int k, int64_t id, float s) {
    if (!(s > sc[k - 1]) && !(s == sc[k - 1] && (ids[k - 1] < 0 || id < ids[k - 1]))) return;
    int i = k - 1;
    while (i > 0 && (sc[i - 1] < s || (sc[i - 1] == s && (ids[i - 1] < 0 || ids[i - 1] > id)))) {
        sc[i] = sc[i - 1];
        ids[i] = ids[i - 1];
        i--;
    }
    sc[i] = s;
    ids[i] = id;
}

static void exact_flush(exact_ctx *c) {
    if (!c->n_batch) return;
    /* sim[b*Q + q, j] = feats[b*Q + q, :] . query[j, :] */
    qf_gemm(1, c->n_batch * c->Q, c->nq, c->E, c->batch, c->E, c->q, c->E, 0.0f, c->sim, c->nq);
    for (int b = 0; b < c->n_batch; b++)
        for (int j = 0; j < c->nq; j++) {
            float best = -INFINITY;
            for (int q = 0; q < c->Q; q++) {
                float v = c->sim[((size_t)b * c->Q + q) * c->nq + j];
                if (v > best) best = v;
            }
            topk_insert(c->ids + (size_t)j * c->k, c->scores + (size_t)j * c->k, c->k, c->batch_ids[b], best);
        }
    c->n_batch = 0;
}

static qf_status exact_feed(int64_t id, const float *feats, void *user) {
    exact_ctx *c = user;
    memcpy(c->batch + (size_t)c->n_batch * c->Q * c->E, feats, (size_t)c->Q * c->E * sizeof *feats);
    c->batch_ids[c->n_batch++] = id;
    if (c->n_batch == EXACT_BATCH) exact_flush(c);
    return QF_OK;
}

qf_status qf_ann_exact(qf_store *st, int n_query, int dim, int nq, const float *q, int k,
                       int64_t *ids, float *scores) {
    exact_ctx c = { .Q = n_query, .E = dim, .nq = nq, .k = k, .q = q, .ids = ids, .scores = scores };
    for (size_t i = 0; i < (size_t)nq * k; i++) { ids[i] = -1; scores[i] = -INFINITY; }
    c.batch = qf_malloc((size_t)EXACT_BATCH * n_query * dim * sizeof *c.batch);
    c.sim = qf_malloc((size_t)EXACT_BATCH * n_query * nq * sizeof *c.sim);
    qf_status s = !c.batch || !c.sim ? qf_errorf(QF_ERR_NOMEM, "exact scan: out of memory")
                                     : qf_store_feats_foreach(st, exact_feed, &c);
    if (!s) exact_flush(&c);
    qf_free(c.batch);
    qf_free(c.sim);
    return s;
}

/* ---- probes -------------------------------------------------------------------- */

static uint64_t splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

#define PROBE_NOISE 1.5     /* noise norm relative to the unit probe */

qf_status qf_ann_probes(qf_store *st, int n_query, int dim, int n, uint64_t seed, float *out, int *n_out) {
    int64_t *ids = NULL, n_ids = 0;
    float *f = NULL;
    *n_out = 0;
    qf_status s = qf_store_image_ids(st, QF_IMAGE_OK, &ids, &n_ids);
    if (s) return s;
    f = qf_malloc((size_t)n_query * dim * sizeof *f);
    if (!f) { s = qf_errorf(QF_ERR_NOMEM, "out of memory"); goto done; }
    /* partial Fisher-Yates: the first m ids become a random sample */
    int m = n < n_ids ? n : (int)n_ids;
    for (int i = 0; i < m; i++) {
        int64_t j = i + (int64_t)(splitmix(&seed) % (uint64_t)(n_ids - i));
        int64_t t = ids[i]; ids[i] = ids[j]; ids[j] = t;
    }
    int got = 0;
    for (int i = 0; i < m; i++) {
        s = qf_store_feats_get(st, ids[i], n_query, dim, f);
        if (s == QF_ERR_MISSING) { s = QF_OK; continue; }
        if (s) goto done;
        float *p = out + (size_t)got * dim;
        for (int e = 0; e < dim; e++) {
            double acc = 0;
            for (int q = 0; q < n_query; q++) acc += f[(size_t)q * dim + e];
            p[e] = (float)acc;
        }
        qf_l2_normalize(p, 1, dim);
        /* every other probe is moved away from its image like a text query
         * is from the images it describes (cosine ~0.55 to its source, as
         * BLIP-2's matching text-image pairs score ~0.4-0.5, against ~0.9
         * between an image and its own pooled vector): such queries sit
         * between images and are the harder ones for an IVF/PQ index */
        if (got % 2) {
            const double sigma = PROBE_NOISE / sqrt((double)dim);
            for (int e = 0; e < dim; e += 2) {
                double u1 = ((splitmix(&seed) >> 11) + 1.0) / 9007199254740993.0;
                double u2 = (splitmix(&seed) >> 11) / 9007199254740992.0, r = sqrt(-2 * log(u1));
                p[e] += (float)(sigma * r * cos(6.283185307179586 * u2));
                if (e + 1 < dim) p[e + 1] += (float)(sigma * r * sin(6.283185307179586 * u2));
            }
            qf_l2_normalize(p, 1, dim);
        }
        got++;
    }
    *n_out = got;
done:
    qf_free(ids);
    qf_free(f);
    return s;
}

/* ---- tuning --------------------------------------------------------------------- */

/* Rough cost of one query in microseconds on a Zen 4 core pair: scanning
 * the visited vectors' codes, plus reading and scoring each candidate's
 * features from SQLite (a 32 KiB blob + 32 dot products of 256: 29 us per
 * image measured with the database in the page cache at 100k images,
 * 58-183 us at 1M images, whose 33 GB do not fit it; bench/scale.sh). A model, not a timing, so that the same corpus always
 * gets the same settings. */
static double cost_us(int64_t ntotal, int64_t nlist, int64_t code_size, int nprobe, int cand) {
    double frac = nlist > 0 ? (double)nprobe / (double)nlist : 1.0;
    if (frac > 1) frac = 1;
    double scan = frac * (double)ntotal * (2.0 + (double)code_size / 4.0) * 1e-3;
    return scan + (double)cand * 50.0;
}

static int cmp_i32(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

qf_status qf_ann_tune(qf_store *st, qf_vindex *vi, const qf_ann_layout *lay, qf_ann_tuning *out) {
    const int k = QF_ANN_TUNE_K, E = lay->dim, per = lay->pooled ? 1 : lay->n_query;
    double t0 = now();
    memset(out, 0, sizeof *out);
    out->k = k;
    out->target = QF_ANN_TUNE_TARGET;
    if (lay->exact) {
        out->recall = 1;
        out->reached = 1;
        return QF_OK;
    }
    float *probes = NULL;
    int64_t *truth = NULL;
    float *tscore = NULL;
    qf_vindex_hit *vh = NULL;
    int *pos = NULL;
    int np = 0;
    qf_status s;
    probes = qf_malloc((size_t)QF_ANN_TUNE_PROBES * E * sizeof *probes);
    if (!probes) return qf_errorf(QF_ERR_NOMEM, "out of memory");
    if ((s = qf_ann_probes(st, lay->n_query, E, QF_ANN_TUNE_PROBES, 0x51f0c0de, probes, &np))) goto done;
    if (np == 0) { out->recall = 1; out->reached = 1; goto done; }
    truth = qf_malloc((size_t)np * k * sizeof *truth);
    tscore = qf_malloc((size_t)np * k * sizeof *tscore);
    vh = qf_malloc((size_t)QF_ANN_MAX_CANDIDATES * sizeof *vh);
    pos = qf_malloc((size_t)np * k * sizeof *pos);
    if (!truth || !tscore || !vh || !pos) { s = qf_errorf(QF_ERR_NOMEM, "out of memory"); goto done; }
    if ((s = qf_ann_exact(st, lay->n_query, E, np, probes, k, truth, tscore))) goto done;
    int n_truth = 0;
    for (int i = 0; i < np * k; i++) n_truth += truth[i] >= 0;
    if (n_truth == 0) { out->recall = 1; out->reached = 1; goto done; }
    int need = (int)ceil(out->target * n_truth - 1e-9);

    const int64_t nlist = qf_vindex_nlist(vi), code = qf_vindex_code_size(vi);
    const int64_t ntotal = qf_vindex_ntotal(vi);
    int64_t n_img = ntotal / per;
    int cmax = n_img < QF_ANN_MAX_CANDIDATES ? (int)(n_img > k ? n_img : k) : QF_ANN_MAX_CANDIDATES;
    double best_cost = INFINITY, best_recall = -1;
    qf_ann_params best = { 0, cmax }, fallback = { 0, cmax };
    for (int64_t nprobe = nlist ? 1 : 0;; nprobe *= 2) {
        if (nlist) {
            if (nprobe > nlist) nprobe = nlist;
            /* the cost grows with nprobe: once even k candidates at this
             * nprobe cost more than the best pair found, no larger nprobe
             * can win (and the widest scans are the slowest to try) */
            if (cost_us(ntotal, nlist, code, (int)nprobe, k) >= best_cost) break;
            if ((s = qf_vindex_set_param(vi, "nprobe", (double)nprobe))) goto done;
        }
        /* position of each true top-k image in this nprobe's candidate order */
        int m = 0;
        for (int j = 0; j < np; j++) {
            int64_t nh = 0;
            if ((s = qf_vindex_search_candidates(vi, 1, probes + (size_t)j * E,
                                                 per, cmax, vh, &nh)))
                goto done;
            for (int t = 0; t < k; t++) {
                int64_t id = truth[(size_t)j * k + t];
                if (id < 0) continue;
                int p = INT32_MAX;
                for (int64_t i = 0; i < nh; i++)
                    if (vh[i].image_id == id) { p = (int)i; break; }
                pos[m++] = p;
            }
        }
        qsort(pos, (size_t)m, sizeof *pos, cmp_i32);
        int at_max = 0;
        while (at_max < m && pos[at_max] < cmax) at_max++;
        double r_max = (double)at_max / n_truth;
        if (r_max > best_recall) { best_recall = r_max; fallback = (qf_ann_params){ (int)nprobe, cmax }; }
        if (at_max >= need) {
            int cand = pos[need - 1] + 1;
            if (cand < k) cand = k;
            double c = cost_us(ntotal, nlist, code, (int)nprobe, cand);
            if (c < best_cost) { best_cost = c; best = (qf_ann_params){ (int)nprobe, cand }; }
        }
        qf_log(QF_LOG_DEBUG, "tune: nprobe %lld: recall@%d %.3f with %d candidates", (long long)nprobe, k, r_max, cmax);
        if (!nlist || nprobe >= nlist || r_max >= 1.0) break;
    }
    out->reached = best_cost < INFINITY;
    if (!out->reached) best = fallback;
    out->best = best;
    /* the recall of the chosen pair, measured again */
    if (nlist && (s = qf_vindex_set_param(vi, "nprobe", best.nprobe))) goto done;
    int hit = 0;
    for (int j = 0; j < np; j++) {
        int64_t nh = 0;
        if ((s = qf_vindex_search_candidates(vi, 1, probes + (size_t)j * E, per, best.candidates, vh, &nh)))
            goto done;
        for (int t = 0; t < k; t++) {
            int64_t id = truth[(size_t)j * k + t];
            if (id < 0) continue;
            for (int64_t i = 0; i < nh; i++)
                if (vh[i].image_id == id) { hit++; break; }
        }
    }
    out->recall = (double)hit / n_truth;
done:
    out->n_probes = np;
    out->seconds = now() - t0;
    qf_free(probes); qf_free(truth); qf_free(tscore); qf_free(vh); qf_free(pos);
    return s;
}

qf_status qf_ann_tuning_save(qf_store *st, const qf_ann_layout *lay, const qf_ann_tuning *t,
                             int64_t n_images) {
    qf_status s;
    if ((s = meta_set_fmt(st, "search_nprobe", "%.0f", t->best.nprobe)) ||
        (s = meta_set_fmt(st, "search_candidates", "%.0f", t->best.candidates)) ||
        (s = meta_set_fmt(st, "tune_recall", "%.4f", t->recall)) ||
        (s = meta_set_fmt(st, "tune_target", "%.2f", t->target)) ||
        (s = meta_set_fmt(st, "tune_k", "%.0f", t->k)) ||
        (s = meta_set_fmt(st, "tune_probes", "%.0f", t->n_probes)) ||
        (s = meta_set_fmt(st, "tune_images", "%.0f", (double)n_images)) ||
        (s = qf_store_meta_set(st, "tune_factory", lay->factory)))
        return s;
    return QF_OK;
}

qf_status qf_ann_needs_tuning(qf_store *st, const char *factory, int64_t n_images, int *needed) {
    char *tf = NULL;
    int64_t ti;
    qf_status s = qf_store_meta_get(st, "tune_factory", &tf);
    if (!s) s = meta_int(st, "tune_images", -1, &ti);
    if (s) { qf_free(tf); return s; }
    *needed = !tf || strcmp(tf, factory) || ti < 0 || (double)llabs(n_images - ti) > 0.1 * (double)ti;
    qf_free(tf);
    return QF_OK;
}

/* ---- --factory auto -------------------------------------------------------------- */

qf_status qf_ann_parse_bytes(const char *s, int64_t *out) {
    char *end;
    double v = strtod(s, &end);
    double mul = 1;
    switch (*end) {
    case 'k': case 'K': mul = 1024.0; end++; break;
    case 'm': case 'M': mul = 1024.0 * 1024; end++; break;
    case 'g': case 'G': mul = 1024.0 * 1024 * 1024; end++; break;
    case 't': case 'T': mul = 1024.0 * 1024 * 1024 * 1024; end++; break;
    default: break;
    }
    if (*end == 'i' && end[-1] != 0 && mul > 1) end++;      /* "4Gi" */
    if (*end == 'B' || *end == 'b') end++;                    /* "4GB" */
    if (end == s || *end || !(v > 0) || v * mul > 9e18)
        return qf_errorf(QF_ERR_ARG, "'%s' is not a size (e.g. 4G, 512M, 100000)", s);
    *out = (int64_t)(v * mul);
    return QF_OK;
}

/* Code bytes per vector of the IVF codes auto chooses between. */
static int64_t code_bytes(const char *code, int dim) {
    if (!strcmp(code, "Flat")) return (int64_t)dim * 4;
    if (!strcmp(code, "SQ8")) return dim;
    if (!strncmp(code, "PQ", 2)) return atoi(code + 2);
    return (int64_t)dim * 4;
}

int64_t qf_ann_index_bytes(const char *factory, int64_t n, int dim) {
    const char *code = strrchr(factory, ',');
    code = code ? code + 1 : factory;
    if (!strstr(factory, "IVF"))            /* IDMap over Flat: vectors + the id map */
        return n * ((int64_t)dim * 4 + 8);
    int64_t nlist = atoll(strstr(factory, "IVF") + 3);
    /* codes + 8-byte ids in the lists, the coarse centroids */
    return n * (code_bytes(code, dim) + 8) + nlist * (int64_t)dim * 4;
}

void qf_ann_choose(int64_t n, int dim, int64_t budget, char *factory, size_t cap,
                   char *reason, size_t rcap) {
    char b1[32], b2[32], b3[32];
    int64_t flat = qf_ann_index_bytes("Flat", n, dim);
    if (n <= QF_ANN_FLAT_MAX_VECTORS && flat <= budget) {
        snprintf(factory, cap, "Flat");
        snprintf(reason, rcap, "%lld vectors: exact Flat fits (%s of %s) and scans fast enough",
                 (long long)n, qf_format_bytes((double)flat, b1, sizeof b1),
                 qf_format_bytes((double)budget, b2, sizeof b2));
        return;
    }
    /* nlist ~ 4 sqrt(n), a power of two >= 16, with >= 39 training vectors
     * per cell (FAISS's minimum for a stable k-means) in the training
     * sample, which holds at most QF_ANN_TRAIN_MAX_VECTORS: 4096 cells from
     * ~1M vectors on. That also bounds the build: assigning each vector to
     * its cell costs nlist dot products (32M vectors x 4096 cells ~ 8 min
     * on a Zen 4 core pair; 16384 would take half an hour). */
    const int64_t sample = n < QF_ANN_TRAIN_MAX_VECTORS ? n : QF_ANN_TRAIN_MAX_VECTORS;
    int64_t nlist = 16;
    while ((double)nlist * 2 <= 4 * sqrt((double)n) && nlist * 2 * 39 <= sample) nlist *= 2;
    static const char *const codes[] = { "Flat", "SQ8", "PQ64", "PQ32", "PQ16" };
    const char *code = "PQ16";
    for (size_t i = 0; i < sizeof codes / sizeof *codes; i++) {
        char f[64];
        snprintf(f, sizeof f, "IVF%lld,%s", (long long)nlist, codes[i]);
        if (!strncmp(codes[i], "PQ", 2) && dim % atoi(codes[i] + 2)) continue;
        if (qf_ann_index_bytes(f, n, dim) <= budget) { code = codes[i]; break; }
    }
    snprintf(factory, cap, "IVF%lld,%s", (long long)nlist, code);
    int64_t need = qf_ann_index_bytes(factory, n, dim);
    snprintf(reason, rcap, "%lld vectors: Flat would need %s%s; %s needs %s (budget %s)%s", (long long)n,
             qf_format_bytes((double)flat, b1, sizeof b1),
             flat > budget ? " (over budget)" : " and scan too slowly", factory,
             qf_format_bytes((double)need, b2, sizeof b2),
             qf_format_bytes((double)budget, b3, sizeof b3),
             need > budget ? ": over budget even so, raise --max-index-memory" : "");
}
