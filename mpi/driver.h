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
#include "index/indexer.h"

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
