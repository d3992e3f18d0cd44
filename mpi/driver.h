/* driver.h - `qformer index`: the distributed indexing driver.
 *
 * The same code runs with one process (no mpirun) or N MPI ranks. Rank 0 is
 * the coordinator: it scans the corpus and the store, assigns ids in sorted
 * path order, hands out batches on demand, receives features, and is the
 * single writer of SQLite and FAISS. Workers (ranks > 0, or rank 0 itself
 * when alone) decode and embed. Results do not depend on the number of
 * ranks: same ids, same bit-identical vectors. All MPI calls of the project
 * live in driver.c. */
#ifndef QF_DRIVER_H
#define QF_DRIVER_H

#include "embed/common.h"

typedef struct {
    const char        *model_dir;
    const char        *db_path;
    const char        *factory;        /* NULL: the DB's, or "Flat" for a new DB        */
    const char *const *roots;          /* files, folders, @LIST files                   */
    int                n_roots;
    int                batch;          /* images per work unit (default 8)               */
    int                threads;        /* BLAS threads per rank; 0 = cores / local ranks */
    int                pooled;         /* -1: the DB's (default exact); 0/1              */
    int                keep_vision;    /* cache vision features (F16) for --rerank       */
    int                checkpoint;     /* commit every N results (default 64)            */
    int                progress;       /* 0 quiet, 1 log lines, 2 progress bar           */
    int                retry_failed;   /* re-try images recorded as errors               */
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
} qf_index_report;

/* Initialises MPI when launched by mpirun/srun (detected from the
 * environment); otherwise runs as a single process without MPI. */
qf_status qf_mpi_init(int *argc, char ***argv);
void      qf_mpi_finalize(void);
int       qf_mpi_rank(void);
int       qf_mpi_size(void);
/* On a fatal error in one rank: abort the whole job. */
void      qf_mpi_abort(int code);

/* Runs on every rank; the report is filled on rank 0. */
qf_status qf_index_run(const qf_index_opts *o, qf_index_report *r);

#endif
