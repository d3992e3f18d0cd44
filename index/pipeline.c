/* pipeline.c - the per-image indexing pipeline (see pipeline.h): read ->
 * hash -> decode -> preprocess -> embed -> pack, thread sizing, and the
 * in-process run. No MPI here: mpi/driver.c carries the same messages. */
#include "index/pipeline.h"

#include "embed/blip2.h"
#include "embed/digest.h"
#include "embed/image.h"
#include "index/store.h"

#include <cblas.h>
#include <omp.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- threads ------------------------------------------------------------ */

int qf_pipeline_threads(int requested, int node_ranks, int world_size) {
    if (requested > 0) return requested;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int ranks = node_ranks > 0 ? node_ranks : 1;
    /* the coordinator of a multi-rank job only writes: give its share to workers */
    int busy = world_size > 1 && ranks > 1 ? ranks - 1 : ranks;
    int t = (int)(cores / busy);
    return t > 0 ? t : 1;
}

/* ---- worker: files -> packed results ----------------------------------- */

typedef struct {
    qf_blip2_state *s;
    float          *pix, *vis, *feats;
} slot;

struct qf_pipeline {
    qf_blip2       *m;
    qf_img_preproc  pp;
    int             keep_vision, n_thr;
    slot           *slots;           /* per thread                   */
    qf_wire        *item;            /* per item of the current batch */
    int             cap_item;
};

void qf_pipeline_free(qf_pipeline *w) {
    if (!w) return;
    for (int t = 0; w->slots && t < w->n_thr; t++) {
        slot *sl = &w->slots[t];
        qf_blip2_state_free(sl->s);
        qf_free(sl->pix); qf_free(sl->vis); qf_free(sl->feats);
    }
    for (int i = 0; i < w->cap_item; i++) qf_wire_free(&w->item[i]);
    qf_free(w->item);
    qf_free(w->slots);
    qf_blip2_free(w->m);
    qf_free(w);
}

qf_status qf_pipeline_init(const char *model_dir, int keep_vision, int vit_bf16, int n_thr, qf_pipeline **out) {
    *out = NULL;
    qf_pipeline *w = qf_calloc(1, sizeof *w);
    if (!w) return qf_errorf(QF_ERR_NOMEM, "out of memory for a worker");
    qf_status s;
    if ((s = qf_blip2_load(model_dir, QF_BLIP2_ALL | (vit_bf16 ? QF_BLIP2_VISION_BF16 : 0), &w->m)) || (s = qf_img_preproc_load(model_dir, &w->pp)))
        goto fail;
    int S = qf_blip2_image_size(w->m);
    if ((s = qf_img_preproc_check(&w->pp, S, model_dir))) goto fail;
    size_t nv = (size_t)qf_blip2_n_vis(w->m) * qf_blip2_vis_dim(w->m);
    w->keep_vision = keep_vision;
    w->n_thr = n_thr;
    w->slots = qf_calloc((size_t)n_thr, sizeof *w->slots);
    if (!w->slots) { s = qf_errorf(QF_ERR_NOMEM, "out of memory for a worker"); goto fail; }
    for (int t = 0; t < n_thr; t++) {
        slot *sl = &w->slots[t];
        if ((s = qf_blip2_state_init(w->m, &sl->s))) goto fail;
        sl->pix = qf_malloc((size_t)3 * S * S * sizeof(float));
        sl->vis = qf_malloc(nv * sizeof(float));
        sl->feats = qf_malloc((size_t)qf_blip2_n_query(w->m) * qf_blip2_embed_dim(w->m) * sizeof(float));
        if (!sl->pix || !sl->vis || !sl->feats) { s = qf_errorf(QF_ERR_NOMEM, "out of memory for a worker"); goto fail; }
    }
    *out = w;
    return QF_OK;
fail:
    qf_pipeline_free(w);
    return s;
}

/* One image: read once, hash, decode from memory, preprocess, embed.
 * A bad file is a result (status 1 + message), not a failure of the run. */
static void embed_one(const qf_pipeline *w, slot *sl, int64_t id, const char *path, qf_wire *out) {
    char *bytes = NULL, hash[65] = "";
    size_t n = 0;
    qf_img img = { 0 };
    struct stat sb;
    qf_status s;
    /* Only regular files are read: a file swapped for a FIFO or a device
     * since the scan gets a clear message (qf_read_file opens with
     * O_NONBLOCK, so a FIFO swapped in after this check cannot hang it). */
    if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode))
        s = qf_errorf(QF_ERR_IO, "%s: not a regular file any more (replaced since the scan)", path);
    else
        s = qf_read_file(path, QF_IMG_DEFAULT_MAX_FILE_BYTES, &bytes, &n);
    if (!s) {
        qf_sha256_hex(bytes, n, hash);
        s = qf_img_decode_mem(bytes, n, path, NULL, &img);
    }
    qf_free(bytes);
    if (!s) s = qf_img_preprocess(&w->pp, &img, sl->pix, NULL);
    if (!s && (s = qf_blip2_image_feats(w->m, sl->s, sl->pix, sl->feats, sl->vis, NULL)))
        qf_error_prefix(s, "%s", path);
    qf_wire_put_i64(out, id);
    qf_wire_put_i32(out, s ? 1 : 0);
    qf_wire_put_i32(out, img.w);
    qf_wire_put_i32(out, img.h);
    qf_wire_put_str(out, hash);
    qf_wire_put_str(out, s ? qf_last_error() : "");
    if (!s) {
        qf_wire_put(out, sl->feats, (size_t)qf_blip2_n_query(w->m) * qf_blip2_embed_dim(w->m) * sizeof(float));
        if (w->keep_vision)
            qf_wire_put(out, sl->vis, (size_t)qf_blip2_n_vis(w->m) * qf_blip2_vis_dim(w->m) * sizeof(float));
    }
    qf_img_free(&img);
}

qf_status qf_pipeline_process(qf_pipeline *w, qf_wire *work, qf_wire *res) {
    qf_wire_reset(res);
    int32_t n = qf_wire_get_i32(work);
    if (n < 0 || n > QF_PIPELINE_MAX_BATCH) return qf_errorf(QF_ERR_MPI, "malformed work message (%d items)", n);
    if (n > w->cap_item) {
        qf_wire *it = qf_realloc(w->item, (size_t)n * sizeof *it);
        if (!it) return qf_errorf(QF_ERR_NOMEM, "out of memory");
        memset(it + w->cap_item, 0, (size_t)(n - w->cap_item) * sizeof *it);
        w->item = it;
        w->cap_item = n;
    }
    int64_t ids[QF_PIPELINE_MAX_BATCH];
    char *paths[QF_PIPELINE_MAX_BATCH];
    for (int32_t i = 0; i < n; i++) {
        ids[i] = qf_wire_get_i64(work);
        uint32_t len;
        const char *p = qf_wire_get_str(work, &len);
        paths[i] = p ? qf_malloc(len + 1) : NULL;
        if (!paths[i]) {
            for (int32_t k = 0; k < i; k++) qf_free(paths[k]);
            return qf_errorf(QF_ERR_MPI, "malformed work message");
        }
        memcpy(paths[i], p, len);
        paths[i][len] = 0;
        qf_wire_reset(&w->item[i]);
    }
    #pragma omp parallel for schedule(dynamic, 1) num_threads(w->n_thr)
    for (int32_t i = 0; i < n; i++) {
        int t = omp_get_thread_num();
        embed_one(w, &w->slots[t], ids[i], paths[i], &w->item[i]);
    }
    qf_wire_put_i32(res, n);
    int failed = 0;
    for (int32_t i = 0; i < n; i++) {
        failed |= w->item[i].failed;
        qf_wire_put(res, w->item[i].data, w->item[i].len);
        qf_free(paths[i]);
    }
    if (failed || res->failed) return qf_errorf(QF_ERR_NOMEM, "out of memory packing results");
    return QF_OK;
}

/* ---- coordinator: queue -> work, results -> indexer --------------------- */

int qf_pipeline_next_work(qf_indexer *ix, int batch, qf_wire *work) {
    qf_wire_reset(work);
    int64_t ids[QF_PIPELINE_MAX_BATCH];
    const char *paths[QF_PIPELINE_MAX_BATCH];
    if (batch > QF_PIPELINE_MAX_BATCH) batch = QF_PIPELINE_MAX_BATCH;
    int n = qf_indexer_next(ix, batch, ids, paths);
    qf_wire_put_i32(work, n);
    for (int i = 0; i < n; i++) { qf_wire_put_i64(work, ids[i]); qf_wire_put_str(work, paths[i]); }
    work->pos = 0;
    return n;
}

qf_status qf_pipeline_consume(qf_indexer *ix, qf_wire *res, int q_e, int n_vis, float *feats, float *vis) {
    res->pos = 0;
    int32_t n = qf_wire_get_i32(res);
    for (int32_t i = 0; i < n; i++) {
        qf_indexer_result r = { 0 };
        uint32_t hl, el;
        r.id = qf_wire_get_i64(res);
        int32_t status = qf_wire_get_i32(res);
        r.width = qf_wire_get_i32(res);
        r.height = qf_wire_get_i32(res);
        const char *h = qf_wire_get_str(res, &hl), *e = qf_wire_get_str(res, &el);
        char hash[65] = "", err[2048] = "";
        if (h && hl < sizeof hash) memcpy(hash, h, hl), hash[hl] = 0;
        if (e) { size_t m = el < sizeof err - 1 ? el : sizeof err - 1; memcpy(err, e, m); err[m] = 0; }
        r.sha256 = hash;
        r.ok = status == 0;
        r.error = r.ok ? NULL : err;
        if (r.ok) {
            qf_wire_get(res, feats, (size_t)q_e * sizeof(float));
            r.feats = feats;
            if (n_vis) { qf_wire_get(res, vis, (size_t)n_vis * sizeof(float)); r.vis = vis; }
        }
        if (res->failed) return qf_errorf(QF_ERR_MPI, "malformed result message");
        qf_status s = qf_indexer_put(ix, &r);
        if (s) return s;
    }
    return QF_OK;
}

/* ---- one process -------------------------------------------------------- */

qf_status qf_index_run(const qf_index_opts *o, qf_index_report *r) {
    memset(r, 0, sizeof *r);
    /* threads work on different images; BLAS stays single-threaded so the
     * numbers do not depend on the thread or rank count */
    int n_thr = qf_pipeline_threads(o->threads, 1, 1);
    openblas_set_num_threads(1);
    qf_indexer *ix = NULL;
    qf_pipeline *w = NULL;
    qf_wire work = { 0 }, res = { 0 };
    float *feats = NULL, *vis = NULL;
    qf_status s = qf_indexer_open(o, 1, &ix);
    if (s) goto done;
    int q_e = qf_indexer_feat_floats(ix), n_vis = o->keep_vision ? qf_indexer_vis_values(ix) : 0;
    feats = qf_malloc((size_t)q_e * sizeof *feats);
    vis = qf_malloc((size_t)(n_vis ? n_vis : 1) * sizeof *vis);
    if (!feats || !vis) { s = qf_errorf(QF_ERR_NOMEM, "out of memory"); goto done; }
    if ((s = qf_pipeline_init(o->model_dir, o->keep_vision, o->vit_bf16, n_thr, &w))) goto done;
    while (qf_pipeline_next_work(ix, o->batch, &work) > 0) {
        if ((s = qf_pipeline_process(w, &work, &res)) ||
            (s = qf_pipeline_consume(ix, &res, q_e, n_vis, feats, vis)))
            goto done;
    }
    s = qf_indexer_finish(ix, r);
done:
    r->ranks = 1;
    qf_free(feats);
    qf_free(vis);
    qf_wire_free(&work);
    qf_wire_free(&res);
    qf_pipeline_free(w);
    qf_indexer_close(ix);
    return s;
}
