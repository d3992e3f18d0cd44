/* indexer.h - the single writer of an index run: reconciles a corpus scan
 * with the store (new, changed, unchanged, vanished files), queues the work
 * in id order, takes results (features or per-file errors) and commits them
 * in transactions at checkpoints, and brings the FAISS index up to date at
 * the end (incrementally when it was in sync, rebuilt from the stored
 * features otherwise, e.g. after a killed run).
 *
 * The store is the source of truth: features are kept in SQLite, so a crash
 * at any point loses at most the uncommitted results, never the index. */
#ifndef QF_INDEXER_H
#define QF_INDEXER_H

#include "embed/common.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    long   done, total;       /* results received / queued this run      */
    long   failed;            /* bad inputs among them                    */
    double elapsed;           /* seconds since the work started           */
    double rate;              /* images/s overall                         */
    int    ranks;             /* processes in the job                     */
    const long *per_rank;     /* results per rank [ranks] (rank 0 = self) */
} qf_index_progress;

typedef struct {
    const char        *model_dir;
    const char        *db_path;
    const char        *factory;        /* NULL: the DB's, or "auto" for a new DB        */
    int64_t            max_index_memory; /* auto's budget in bytes; 0: the DB's, else 2 GiB */
    const char *const *roots;          /* files, folders, @LIST files                   */
    int                n_roots;
    int                batch;          /* images per work unit (default 8)               */
    int                threads;        /* BLAS threads per rank; 0 = cores / local ranks */
    int                pooled;         /* -1: the DB's (default exact); 0/1              */
    const char        *store_dtype;    /* features in SQLite: "f32"/"f16"; NULL: the DB's (f32) */
    int                vit_bf16;       /* ViT in BF16 (recorded; never mixed with F32)    */
    int                keep_vision;    /* cache vision features (F16) for --rerank       */
    int                checkpoint;     /* commit every N results (default 64)            */
    int                retry_failed;   /* re-try images recorded as errors               */
    void (*on_progress)(const qf_index_progress *p, void *user);   /* rank 0; may be NULL */
    void              *progress_user;
} qf_index_opts;

typedef struct {
    long   files;        /* candidates found by the scan        */
    long   unchanged;    /* skipped: already indexed, unchanged  */
    long   queued;       /* embedded this run (new/changed/left) */
    long   embedded;     /* of which succeeded                   */
    long   failed;       /* of which recorded as bad input       */
    long   removed;      /* vanished files dropped               */
    long   scan_errors;  /* paths that could not be scanned      */
    long   total_ok;     /* images in the index after the run    */
    int    ranks;
    double seconds;
    int    rebuilt;      /* FAISS index rebuilt from the store   */
    char   factory[256];        /* the FAISS factory in use            */
    char   factory_reason[320]; /* auto: why ("" otherwise)            */
    int    tuned;               /* search settings tuned this run      */
    int    nprobe, candidates;  /* the search settings recorded        */
    double recall;              /* recall@10 they measured on probes   */
    int    recall_reached;      /* >= the tuning target                */
} qf_index_report;

typedef struct qf_indexer qf_indexer;

typedef struct {
    int64_t         id;
    int             ok;
    int             width, height;
    const char     *sha256;      /* hex of the file's bytes ("" if unreadable) */
    const char     *error;       /* bad input: the message (ok == 0)           */
    const float    *feats;       /* [n_query, dim] ITC features (ok)           */
    const float    *vis;         /* [n_vis, vis_dim] vision features or NULL   */
} qf_indexer_result;

/* Opens (creating) the store with the run lock, checks the model against
 * the one the index was built with, scans the roots and queues the work. */
qf_status qf_indexer_open(const qf_index_opts *o, int ranks, qf_indexer **out);
void      qf_indexer_close(qf_indexer *ix);      /* NULL ok; rolls back uncommitted work */

int qf_indexer_feat_floats(const qf_indexer *ix);   /* n_query * dim            */
int qf_indexer_vis_values(const qf_indexer *ix);    /* n_vis * vis_dim          */

/* Next up to `max` queued images; paths are borrowed, valid until close. */
int  qf_indexer_next(qf_indexer *ix, int max, int64_t *ids, const char **paths);
/* Progress accounting: `rank` delivered n results. */
void qf_indexer_rank_done(qf_indexer *ix, int rank, int n);
/* Stores one result (inside the current checkpoint transaction). */
qf_status qf_indexer_put(qf_indexer *ix, const qf_indexer_result *r);
/* Commits, brings FAISS up to date, writes it atomically, fills the report. */
qf_status qf_indexer_finish(qf_indexer *ix, qf_index_report *r);

#endif
