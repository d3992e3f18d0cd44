/* driver.h - MPI only: the bootstrap and the coordinator/worker message
 * loops of a distributed `qformer index` run. This folder is the only one
 * that names MPI; the per-image pipeline and the message format are in
 * index/pipeline.h.
 *
 * Rank 0 is the coordinator: it scans the corpus and the store, assigns ids
 * in sorted path order, hands out batches on demand, receives features, and
 * is the single writer of SQLite and FAISS. Ranks > 0 decode and embed.
 * With one process (no mpirun, or -np 1) the run is index/pipeline.h's
 * qf_index_run. Results do not depend on the number of ranks: same ids, same
 * bit-identical vectors. */
#ifndef QF_DRIVER_H
#define QF_DRIVER_H

#include "embed/common.h"
#include "index/indexer.h"

/* The rank an MPI launcher (mpirun / OpenMPI, srun / PMI, PMIx) gave this
 * process in its environment, before MPI is initialised: >= 0 when launched
 * by one, -1 otherwise. The one place that knows the launchers' variables. */
int qf_mpi_env_rank(void);

/* Initialises MPI when launched by mpirun/srun (qf_mpi_env_rank() >= 0);
 * otherwise runs as a single process without MPI. */
qf_status qf_mpi_init(int *argc, char ***argv);
void      qf_mpi_finalize(void);
int       qf_mpi_rank(void);
int       qf_mpi_size(void);
/* On a fatal error in one rank: abort the whole job. */
void      qf_mpi_abort(int code);

/* Runs on every rank (qf_index_run when there is one); the report is filled
 * on rank 0. */
qf_status qf_mpi_index_run(const qf_index_opts *o, qf_index_report *r);

#endif
