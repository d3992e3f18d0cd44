/* driver.c - the indexing driver (see driver.h). All MPI calls of the
 * project are here.
 *
 * Messages (MPI_BYTE, packed with mpi/wire.h):
 *   worker -> 0, TAG_RESULT: i32 n, then per image: i64 id, i32 status
 *       (0 ok, 1 bad input), i32 w, i32 h, str sha256, str error,
 *       f32[Q*E] features (ok only), f32[Nv*Dv] vision (ok, keep_vision)
 *       (n = 0 is the first request for work)
 *   0 -> worker, TAG_WORK: i32 n, then per image: i64 id, str path
 *   0 -> worker, TAG_STOP: empty
 * Alone (one process), the coordinator runs the worker function itself on
 * the same packed buffers, so the stored bytes are the same for any N. */
#include "mpi/driver.h"

#include "embed/blip2.h"
#include "embed/image.h"
#include "index/indexer.h"
#include "index/store.h"
#include "mpi/wire.h"

#include <cblas.h>
#include <mpi.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { TAG_RESULT = 11, TAG_WORK = 12, TAG_STOP = 13 };

static int mpi_on, world_rank, world_size = 1;

qf_status qf_mpi_init(int *argc, char ***argv) {
    /* launched by mpirun (OpenMPI), srun / PMI (Slurm, MPICH)? */
    if (!getenv("OMPI_COMM_WORLD_SIZE") && !getenv("PMI_SIZE") && !getenv("PMIX_RANK") &&
        !getenv("PMI_RANK"))
        return QF_OK;
    int provided;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return qf_errorf(QF_ERR_MPI, "MPI_Init failed");
    mpi_on = 1;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    return QF_OK;
}

void qf_mpi_finalize(void) {
    if (mpi_on) MPI_Finalize();
    mpi_on = 0;
}

int qf_mpi_rank(void) { return world_rank; }
int qf_mpi_size(void) { return world_size; }

void qf_mpi_abort(int code) {
    if (mpi_on && world_size > 1) MPI_Abort(MPI_COMM_WORLD, code);
}

static qf_status mpi_check(int rc, const char *what) {
    if (rc == MPI_SUCCESS) return QF_OK;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return qf_errorf(QF_ERR_MPI, "rank %d: %s: %.*s", world_rank, what, len, msg);
}

/* ---- threads ------------------------------------------------------------ */

static int local_ranks(void) {
    const char *e = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    if (!e) e = getenv("SLURM_NTASKS_PER_NODE");
    int n = e ? atoi(e) : world_size;
    return n > 0 ? n : 1;
}

static int pick_threads(int requested) {
    if (requested > 0) return requested;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int ranks = local_ranks();
    /* the coordinator of a multi-rank job only writes: give its share to workers */
    int busy = world_size > 1 && ranks > 1 ? ranks - 1 : ranks;
    int t = (int)(cores / busy);
    return t > 0 ? t : 1;
}

/* ---- worker: files -> packed results ----------------------------------- */

/* A rank embeds the images of a batch on `n_thr` threads, one image per
 * thread at a time, each with its own state and single-threaded BLAS: an
 * image's bytes never depend on how many threads or ranks the job has. */
typedef struct {
    qf_blip2_state *s;
    float          *pix, *vis, *feats;
    qf_wire         out;             /* this thread's packed results */
} slot;

typedef struct {
    qf_blip2       *m;
    qf_img_preproc  pp;
    int             keep_vision, n_thr;
    slot           *slots;
    qf_wire        *item;            /* per item of the current batch */
    int             cap_item;
} worker;

static void worker_free(worker *w) {
    for (int t = 0; w->slots && t < w->n_thr; t++) {
        slot *sl = &w->slots[t];
        qf_blip2_state_free(sl->s);
        qf_free(sl->pix); qf_free(sl->vis); qf_free(sl->feats);
        qf_wire_free(&sl->out);
    }
    for (int i = 0; i < w->cap_item; i++) qf_wire_free(&w->item[i]);
    qf_free(w->item);
    qf_free(w->slots);
    qf_blip2_free(w->m);
    memset(w, 0, sizeof *w);
}

static qf_status worker_init(worker *w, const char *model_dir, int keep_vision, int n_thr) {
    memset(w, 0, sizeof *w);
    qf_status s;
    if ((s = qf_blip2_load(model_dir, QF_BLIP2_ALL, &w->m)) || (s = qf_img_preproc_load(model_dir, &w->pp)))
        goto fail;
    int S = qf_blip2_image_size(w->m);
    if (w->pp.height != S || w->pp.width != S) {
        s = qf_errorf(QF_ERR_FORMAT, "%s: preprocessor size %dx%d differs from vision image_size %d",
                      model_dir, w->pp.width, w->pp.height, S);
        goto fail;
    }
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
    return QF_OK;
fail:
    worker_free(w);
    return s;
}

/* One image: read once, hash, decode from memory, preprocess, embed.
 * A bad file is a result (status 1 + message), not a failure of the run. */
static void embed_one(const worker *w, slot *sl, int64_t id, const char *path, qf_wire *out) {
    char *bytes = NULL, hash[65] = "";
    size_t n = 0;
    qf_img img = { 0 };
    struct stat sb;
    qf_status s;
    /* A file swapped for a FIFO since the scan made fopen in qf_read_file
     * block, and the run hang, for ever: only regular files are read. (A
     * swap within this window still could; qf_read_file opening with
     * O_NONBLOCK would close it.) */
    if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode))
        s = qf_errorf(QF_ERR_IO, "%s: not a regular file any more (replaced since the scan)", path);
    else
        s = qf_read_file(path, QF_IMG_DEFAULT_MAX_FILE_BYTES, &bytes, &n);
    if (!s) {
        qf_store_hash_buf(bytes, n, hash);
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

/* work buffer (i32 n, n x (i64 id, str path)) -> result buffer, items in order */
static qf_status process_work(worker *w, qf_wire *work, qf_wire *res) {
    qf_wire_reset(res);
    int32_t n = qf_wire_get_i32(work);
    if (n < 0 || n > 1024) return qf_errorf(QF_ERR_MPI, "malformed work message (%d items)", n);
    if (n > w->cap_item) {
        qf_wire *it = qf_realloc(w->item, (size_t)n * sizeof *it);
        if (!it) return qf_errorf(QF_ERR_NOMEM, "out of memory");
        memset(it + w->cap_item, 0, (size_t)(n - w->cap_item) * sizeof *it);
        w->item = it;
        w->cap_item = n;
    }
    int64_t ids[1024];
    char *paths[1024];
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

static qf_status send_wire(const qf_wire *wb, int dest, int tag) {
    if (wb->len > (size_t)INT32_MAX) return qf_errorf(QF_ERR_LIMIT, "message of %zu bytes is too large", wb->len);
    return mpi_check(MPI_Send(wb->data, (int)wb->len, MPI_BYTE, dest, tag, MPI_COMM_WORLD), "MPI_Send");
}

static qf_status recv_wire(qf_wire *wb, int source, int *src_out, int *tag_out) {
    MPI_Status st;
    int count = 0;
    qf_status s = mpi_check(MPI_Probe(source, MPI_ANY_TAG, MPI_COMM_WORLD, &st), "MPI_Probe");
    if (s) return s;
    MPI_Get_count(&st, MPI_BYTE, &count);
    qf_wire_reset(wb);
    qf_wire_put(wb, NULL, 0);
    if ((size_t)count > wb->cap) {
        unsigned char *d = qf_realloc(wb->data, (size_t)count);
        if (!d) return qf_errorf(QF_ERR_NOMEM, "out of memory receiving %d bytes", count);
        wb->data = d;
        wb->cap = (size_t)count;
    }
    s = mpi_check(MPI_Recv(wb->data, count, MPI_BYTE, st.MPI_SOURCE, st.MPI_TAG, MPI_COMM_WORLD, MPI_STATUS_IGNORE),
                  "MPI_Recv");
    wb->len = (size_t)count;
    wb->pos = 0;
    if (src_out) *src_out = st.MPI_SOURCE;
    if (tag_out) *tag_out = st.MPI_TAG;
    return s;
}

static qf_status worker_loop(const qf_index_opts *o, int n_thr) {
    worker w;
    qf_wire work = { 0 }, res = { 0 };
    qf_status s = worker_init(&w, o->model_dir, o->keep_vision, n_thr);
    if (s) return s;
    qf_wire_put_i32(&res, 0);                    /* first request: no results */
    for (;;) {
        int tag;
        if ((s = send_wire(&res, 0, TAG_RESULT))) break;
        if ((s = recv_wire(&work, 0, NULL, &tag))) break;
        if (tag == TAG_STOP) break;
        if ((s = process_work(&w, &work, &res))) break;
    }
    qf_wire_free(&work);
    qf_wire_free(&res);
    worker_free(&w);
    return s;
}

/* ---- coordinator ------------------------------------------------------- */

/* Builds the next work message from the queue; returns items taken. */
static int next_work(qf_indexer *ix, int batch, qf_wire *work) {
    qf_wire_reset(work);
    int64_t ids[1024];
    const char *paths[1024];
    if (batch > 1024) batch = 1024;
    int n = qf_indexer_next(ix, batch, ids, paths);
    qf_wire_put_i32(work, n);
    for (int i = 0; i < n; i++) { qf_wire_put_i64(work, ids[i]); qf_wire_put_str(work, paths[i]); }
    work->pos = 0;
    return n;
}

/* Unpacks a result buffer into the indexer (the single writer). feats
 * [q_e] and vis [n_vis] are aligned scratch: spans of the message are not. */
static qf_status consume(qf_indexer *ix, qf_wire *res, int q_e, int n_vis, float *feats, float *vis) {
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

static int stopped(const qf_index_opts *o) { return o->stop && *o->stop; }

static qf_status coordinator(const qf_index_opts *o, int n_thr, qf_index_report *r) {
    qf_indexer *ix = NULL;
    worker w = { 0 };
    qf_wire work = { 0 }, res = { 0 };
    float *feats = NULL, *vis = NULL;
    int alone = world_size == 1;
    qf_status s = qf_indexer_open(o, world_size, &ix);
    if (s) goto done;
    int q_e = qf_indexer_feat_floats(ix), n_vis = o->keep_vision ? qf_indexer_vis_values(ix) : 0;
    feats = qf_malloc((size_t)q_e * sizeof *feats);
    vis = qf_malloc((size_t)(n_vis ? n_vis : 1) * sizeof *vis);
    if (!feats || !vis) { s = qf_errorf(QF_ERR_NOMEM, "out of memory"); goto done; }
    if (alone) {
        if ((s = worker_init(&w, o->model_dir, o->keep_vision, n_thr))) goto done;
        while (!stopped(o) && next_work(ix, o->batch, &work) > 0) {
            if ((s = process_work(&w, &work, &res)) || (s = consume(ix, &res, q_e, n_vis, feats, vis))) goto done;
        }
    } else {
        int active = world_size - 1;
        while (active > 0) {
            int src, tag;
            if ((s = recv_wire(&res, MPI_ANY_SOURCE, &src, &tag))) goto done;
            if (tag != TAG_RESULT) { s = qf_errorf(QF_ERR_MPI, "unexpected message tag %d from rank %d", tag, src); goto done; }
            qf_indexer_rank_done(ix, src, qf_wire_get_i32(&res));
            if ((s = consume(ix, &res, q_e, n_vis, feats, vis))) goto done;
            /* stopping: each worker gets TAG_STOP as its current batch comes in */
            if (!stopped(o) && next_work(ix, o->batch, &work) > 0) {
                if ((s = send_wire(&work, src, TAG_WORK))) goto done;
            } else {
                qf_wire_reset(&work);
                if ((s = send_wire(&work, src, TAG_STOP))) goto done;
                active--;
            }
        }
    }
    s = qf_indexer_finish(ix, r);
done:
    qf_free(feats);
    qf_free(vis);
    qf_wire_free(&work);
    qf_wire_free(&res);
    worker_free(&w);
    qf_indexer_close(ix);
    return s;
}

qf_status qf_index_run(const qf_index_opts *o, qf_index_report *r) {
    memset(r, 0, sizeof *r);
    /* threads work on different images; BLAS stays single-threaded so the
     * numbers do not depend on the thread or rank count */
    int n_thr = pick_threads(o->threads);
    openblas_set_num_threads(1);
    qf_status s = world_rank == 0 ? coordinator(o, n_thr, r) : worker_loop(o, n_thr);
    r->ranks = world_size;
    return s;
}
