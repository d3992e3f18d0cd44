/* driver.c - MPI bootstrap and message loops (see driver.h). All MPI calls
 * of the project are here.
 *
 * Messages (MPI_BYTE, the result and work formats of index/pipeline.h):
 *   worker -> 0, TAG_RESULT: a result message (n = 0 is the first request
 *       for work)
 *   0 -> worker, TAG_WORK: a work message
 *   0 -> worker, TAG_STOP: empty */
#include "mpi/driver.h"

#include "index/indexer.h"
#include "index/pipeline.h"
#include "index/wire.h"

#include <cblas.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

enum { TAG_RESULT = 11, TAG_WORK = 12, TAG_STOP = 13 };

static int mpi_on, world_rank, world_size = 1;

int qf_mpi_env_rank(void) {
    static const char *const rank_vars[] = { "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK" };
    static const char *const size_vars[] = { "OMPI_COMM_WORLD_SIZE", "PMI_SIZE" };
    for (size_t i = 0; i < sizeof rank_vars / sizeof rank_vars[0]; i++) {
        const char *v = getenv(rank_vars[i]);
        if (v) return v[0] && atoi(v) > 0 ? atoi(v) : 0;
    }
    for (size_t i = 0; i < sizeof size_vars / sizeof size_vars[0]; i++)
        if (getenv(size_vars[i])) return 0;
    return -1;
}

/* Launched by mpirun (OpenMPI), srun / PMI (Slurm, MPICH)? A launcher sets a
 * world size or a PMI rank; a rank variable alone (OMPI_COMM_WORLD_RANK set by
 * hand, as tests do to see the "[rank N]" log prefix) does not start MPI. */
static int launched(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK");
}

qf_status qf_mpi_init(int *argc, char ***argv) {
    if (!launched()) return QF_OK;   /* not launched by mpirun / srun */
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
    qf_pipeline *w = NULL;
    qf_wire work = { 0 }, res = { 0 };
    qf_status s = qf_pipeline_init(o->model_dir, o->keep_vision, o->vit_bf16, n_thr, &w);
    if (s) return s;
    qf_wire_put_i32(&res, 0);                    /* first request: no results */
    for (;;) {
        int tag;
        if ((s = send_wire(&res, 0, TAG_RESULT))) break;
        if ((s = recv_wire(&work, 0, NULL, &tag))) break;
        if (tag == TAG_STOP) break;
        if ((s = qf_pipeline_process(w, &work, &res))) break;
    }
    qf_wire_free(&work);
    qf_wire_free(&res);
    qf_pipeline_free(w);
    return s;
}

static qf_status coordinator(const qf_index_opts *o, qf_index_report *r) {
    qf_indexer *ix = NULL;
    qf_wire work = { 0 }, res = { 0 };
    float *feats = NULL, *vis = NULL;
    qf_status s = qf_indexer_open(o, world_size, &ix);
    if (s) goto done;
    int q_e = qf_indexer_feat_floats(ix), n_vis = o->keep_vision ? qf_indexer_vis_values(ix) : 0;
    feats = qf_malloc((size_t)q_e * sizeof *feats);
    vis = qf_malloc((size_t)(n_vis ? n_vis : 1) * sizeof *vis);
    if (!feats || !vis) { s = qf_errorf(QF_ERR_NOMEM, "out of memory"); goto done; }
    int active = world_size - 1;
    while (active > 0) {
        int src, tag;
        if ((s = recv_wire(&res, MPI_ANY_SOURCE, &src, &tag))) goto done;
        if (tag != TAG_RESULT) { s = qf_errorf(QF_ERR_MPI, "unexpected message tag %d from rank %d", tag, src); goto done; }
        qf_indexer_rank_done(ix, src, qf_wire_get_i32(&res));
        if ((s = qf_pipeline_consume(ix, &res, q_e, n_vis, feats, vis))) goto done;
        /* stopping (o->stop set): each worker gets TAG_STOP as its batch comes in */
        if (!(o->stop && *o->stop) && qf_pipeline_next_work(ix, o->batch, &work) > 0) {
            if ((s = send_wire(&work, src, TAG_WORK))) goto done;
        } else {
            qf_wire_reset(&work);
            if ((s = send_wire(&work, src, TAG_STOP))) goto done;
            active--;
        }
    }
    s = qf_indexer_finish(ix, r);
done:
    qf_free(feats);
    qf_free(vis);
    qf_wire_free(&work);
    qf_wire_free(&res);
    qf_indexer_close(ix);
    return s;
}

/* Ranks of this job on this node (the launcher's count, else all of them). */
static int local_ranks(void) {
    const char *e = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    if (!e) e = getenv("SLURM_NTASKS_PER_NODE");
    int n = e ? atoi(e) : world_size;
    return n > 0 ? n : 1;
}

qf_status qf_mpi_index_run(const qf_index_opts *o, qf_index_report *r) {
    qf_index_opts lo = *o;
    lo.threads = qf_pipeline_threads(o->threads, local_ranks(), world_size);
    if (world_size == 1) return qf_index_run(&lo, r);
    memset(r, 0, sizeof *r);
    /* threads work on different images; BLAS stays single-threaded so the
     * numbers do not depend on the thread or rank count */
    openblas_set_num_threads(1);
    qf_status s = world_rank == 0 ? coordinator(&lo, r) : worker_loop(&lo, lo.threads);
    r->ranks = world_size;
    return s;
}
