/* recall.h - `qformer info --db X --recall`: how much of the exact top k
 * the index's search returns at its current settings, and how fast.
 *
 * Queries: the texts of a file (one per line, encoded with the model the
 * index was built with) or, without one, probe vectors drawn from the
 * stored features (index/ann.h; another sample than the tuning's). Ground
 * truth is an exact scan of every stored feature; the search is the one
 * `qformer search` runs once it has the query vector (index/ann.h), so
 * the latency excludes the text encoder. */
#ifndef QF_RECALL_H
#define QF_RECALL_H

#include "embed/common.h"

typedef struct {
    const char *db_path;
    const char *queries_file;   /* NULL: probe vectors from the store            */
    const char *model_dir;      /* NULL: the model the index was built with      */
    int         k;              /* default 10                                    */
    int         n_probes;       /* probe queries without a file (default 100)    */
    int         nprobe, candidates;   /* overrides (0: the recorded settings)    */
} qf_recall_opts;

typedef struct {
    int    n_queries, k;
    double recall;              /* mean over queries of |returned ∩ exact| / k  */
    double p50_ms, p95_ms;      /* search latency per query                      */
    int    nprobe, candidates;  /* the settings measured (0: FAISS / exact)      */
    int    exact;               /* the index is exact (Flat)                     */
    char   source[32];          /* "text queries" or "probe vectors"             */
} qf_recall_result;

qf_status qf_recall_run(const qf_recall_opts *o, qf_recall_result *out);

#endif
