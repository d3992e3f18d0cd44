/* pipeline.h - the per-image indexing pipeline and a whole index run in one
 * process.
 *
 * A worker turns a work message (index/wire.h: i32 n, then per image i64 id,
 * str path) into a result message: each file is read once, hashed, decoded
 * from memory, preprocessed and embedded, on n_thr threads (one image per
 * thread at a time, each with its own model state and single-threaded BLAS,
 * so an image's bytes never depend on the thread or rank count). The
 * coordinator side builds work messages from the indexer's queue and feeds
 * result messages back into it. mpi/driver.c moves the same messages between
 * ranks; qf_index_run passes them in-process, so the stored bytes are the
 * same for any number of ranks.
 *
 * Result message: i32 n, then per image: i64 id, i32 status (0 ok, 1 bad
 * input), i32 w, i32 h, str sha256, str error, f32[Q*E] features (ok only),
 * f32[Nv*Dv] vision (ok, keep_vision). */
#ifndef QF_PIPELINE_H
#define QF_PIPELINE_H

#include "embed/common.h"
#include "index/indexer.h"
#include "index/wire.h"

/* Items per work message at most. */
#define QF_PIPELINE_MAX_BATCH 1024

typedef struct qf_pipeline qf_pipeline;

/* Threads per rank: `requested` when > 0, otherwise the node's cores shared
 * by `node_ranks` ranks (in a job of several ranks the coordinator only
 * writes, so its share goes to the workers). */
int qf_pipeline_threads(int requested, int node_ranks, int world_size);

/* Loads the model of `model_dir` and one state + buffers per thread. */
qf_status qf_pipeline_init(const char *model_dir, int keep_vision, int vit_bf16, int n_thr, qf_pipeline **out);
void      qf_pipeline_free(qf_pipeline *p);               /* NULL ok */

/* Work message -> result message (reset first), items in order. A bad file
 * is a result (status 1 + message), not a failure. */
qf_status qf_pipeline_process(qf_pipeline *p, qf_wire *work, qf_wire *res);

/* Coordinator: the next work message from the queue (at most `batch`
 * items); returns the items taken, 0 when the queue is empty. */
int qf_pipeline_next_work(qf_indexer *ix, int batch, qf_wire *work);

/* Coordinator: unpacks a result message into the indexer (the single
 * writer). q_e = qf_indexer_feat_floats, n_vis = qf_indexer_vis_values with
 * keep_vision, else 0; feats [q_e] and vis [n_vis] are caller scratch,
 * aligned as spans of the message are not. */
qf_status qf_pipeline_consume(qf_indexer *ix, qf_wire *res, int q_e, int n_vis, float *feats, float *vis);

/* A whole index run in this process: coordinator and worker in one (the run
 * mpi/driver.c does for a single rank). The report counts one rank. */
qf_status qf_index_run(const qf_index_opts *o, qf_index_report *r);

#endif
