/* recall.c - see recall.h. */
#include "query/recall.h"

#include "embed/bert.h"
#include "embed/blip2.h"
#include "index/ann.h"
#include "index/store.h"
#include "index/vindex.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The non-empty lines of `path` encoded as text features q[n * dim]. */
static qf_status text_queries(qf_store *st, const qf_recall_opts *o, int dim, float **q, int *n) {
    char *model_path = NULL, *fp = NULL, *line = NULL;
    qf_blip2 *m = NULL;
    qf_blip2_state *bs = NULL;
    qf_bert *tok = NULL;
    size_t cap = 0;
    int nq = 0, qcap = 0;
    FILE *f = fopen(o->queries_file, "r");
    qf_status s;
    *q = NULL;
    *n = 0;
    if (!f) return qf_errorf(QF_ERR_IO, "%s: cannot open the queries file", o->queries_file);
    if ((s = qf_store_meta_get(st, "model_path", &model_path)) || (s = qf_store_meta_get(st, "model_fingerprint", &fp)))
        goto done;
    const char *mdir = o->model_dir ? o->model_dir : model_path;
    if (!mdir) { s = qf_errorf(QF_ERR_FORMAT, "%s: records no model; give --model", o->db_path); goto done; }
    if ((s = qf_blip2_load(mdir, QF_BLIP2_ALL, &m))) goto done;
    if (fp && strcmp(qf_blip2_fingerprint(m), fp)) {
        s = qf_errorf(QF_ERR_ARG, "%s: the index was built with another model than %s", o->db_path, mdir);
        goto done;
    }
    if (qf_blip2_embed_dim(m) != dim) {
        s = qf_errorf(QF_ERR_SHAPE, "%s: model %s has %d-dim features, the index %d", o->db_path, mdir,
                      qf_blip2_embed_dim(m), dim);
        goto done;
    }
    if ((s = qf_blip2_state_init(m, &bs)) || (s = qf_bert_load(mdir, &tok))) goto done;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (!len) continue;
        if (nq == qcap) {
            qcap = qcap ? 2 * qcap : 64;
            float *nqv = qf_realloc(*q, (size_t)qcap * dim * sizeof **q);
            if (!nqv) { s = qf_errorf(QF_ERR_NOMEM, "out of memory"); goto done; }
            *q = nqv;
        }
        int64_t ids[QF_BERT_MAX_TXT_LEN], mask[QF_BERT_MAX_TXT_LEN];
        int n_tok = 0;
        if ((s = qf_bert_encode(tok, line, QF_BERT_MAX_TXT_LEN, 0, ids, mask, &n_tok)) ||
            (s = qf_blip2_text_feat(m, bs, ids, mask, n_tok, *q + (size_t)nq * dim, NULL)))
            goto done;
        nq++;
    }
    if (nq == 0) s = qf_errorf(QF_ERR_ARG, "%s: no queries (one text per line)", o->queries_file);
    *n = nq;
done:
    fclose(f);
    free(line);
    qf_free(model_path); qf_free(fp);
    qf_bert_free(tok);
    qf_blip2_state_free(bs);
    qf_blip2_free(m);
    if (s) { qf_free(*q); *q = NULL; *n = 0; }
    return s;
}

qf_status qf_recall_run(const qf_recall_opts *o, qf_recall_result *out) {
    memset(out, 0, sizeof *out);
    qf_store *st = NULL;
    qf_vindex *vi = NULL;
    float *q = NULL, *tsc = NULL;
    int64_t *truth = NULL;
    double *lat = NULL;
    qf_ann_hit *hits = NULL;
    int nq = 0;
    const int k = o->k > 0 ? o->k : 10;
    char *faiss_path = NULL;
    struct stat sb;
    qf_status s;
    if (stat(o->db_path, &sb) != 0) return qf_errorf(QF_ERR_IO, "%s: no such index database", o->db_path);
    if ((s = qf_store_open(o->db_path, QF_STORE_READONLY, &st))) return s;
    qf_ann_layout lay;
    qf_ann_params p;
    if ((s = qf_ann_layout_load(st, o->db_path, &lay, &p))) goto done;
    if (o->nprobe > 0) p.nprobe = o->nprobe;
    if (o->candidates > 0) p.candidates = o->candidates;
    if (!(faiss_path = qf_store_index_path(o->db_path))) { s = qf_errorf(QF_ERR_NOMEM, "out of memory"); goto done; }
    if ((s = qf_vindex_read(faiss_path, &vi))) goto done;
    if (o->nprobe > 0 && (s = qf_vindex_set_param(vi, "nprobe", o->nprobe))) goto done;
    if ((s = qf_ann_apply(vi, &p))) goto done;
    if (o->queries_file) {
        if ((s = text_queries(st, o, lay.dim, &q, &nq))) goto done;
        snprintf(out->source, sizeof out->source, "text queries");
    } else {
        int want = o->n_probes > 0 ? o->n_probes : 100;
        q = qf_malloc((size_t)want * lay.dim * sizeof *q);
        if (!q) { s = qf_errorf(QF_ERR_NOMEM, "out of memory"); goto done; }
        if ((s = qf_ann_probes(st, lay.n_query, lay.dim, want, 0x1f0ull, q, &nq))) goto done;
        if (nq == 0) { s = qf_errorf(QF_ERR_ARG, "%s: the index holds no images", o->db_path); goto done; }
        snprintf(out->source, sizeof out->source, "probe vectors");
    }
    truth = qf_malloc((size_t)nq * k * sizeof *truth);
    tsc = qf_malloc((size_t)nq * k * sizeof *tsc);
    lat = qf_malloc((size_t)nq * sizeof *lat);
    hits = qf_malloc((size_t)k * sizeof *hits);
    if (!truth || !tsc || !lat || !hits) { s = qf_errorf(QF_ERR_NOMEM, "out of memory"); goto done; }
    if ((s = qf_ann_exact(st, lay.n_query, lay.dim, nq, q, k, truth, tsc))) goto done;
    double sum = 0;
    for (int j = 0; j < nq; j++) {
        int nh = 0, want = 0, hit = 0;
        double t0 = now();
        if ((s = qf_ann_search(st, vi, &lay, &p, 1, q + (size_t)j * lay.dim, k, hits, &nh))) goto done;
        lat[j] = (now() - t0) * 1e3;
        for (int t = 0; t < k; t++) {
            int64_t id = truth[(size_t)j * k + t];
            if (id < 0) continue;
            want++;
            for (int i = 0; i < nh; i++)
                if (hits[i].image_id == id) { hit++; break; }
        }
        sum += want ? (double)hit / want : 1.0;
    }
    qsort(lat, (size_t)nq, sizeof *lat, cmp_d);
    out->n_queries = nq;
    out->k = k;
    out->recall = sum / nq;
    out->p50_ms = lat[nq / 2];
    out->p95_ms = lat[(int)floor(0.95 * (nq - 1))];
    out->nprobe = p.nprobe;
    out->candidates = lay.exact ? 0 : p.candidates > 0 ? p.candidates : (4 * k > k + 32 ? 4 * k : k + 32);
    out->exact = lay.exact;
done:
    qf_free(q); qf_free(tsc); qf_free(truth); qf_free(lat); qf_free(hits);
    qf_free(faiss_path);
    qf_vindex_free(vi);
    qf_store_close(st);
    return s;
}
