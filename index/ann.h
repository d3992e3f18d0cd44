/* ann.h - approximate search that still returns the exact top k.
 *
 * An approximate FAISS index (IVF, PQ, SQ, HNSW, pooled vectors) only
 * proposes candidates; the exact BLIP-2 ITC score of each candidate is
 * computed from the features kept in the store, and the best k by that
 * score are returned. So an approximate index can miss images, never
 * mis-score them. How many it misses depends on two settings: nprobe (IVF
 * cells visited) and the candidate pool (images rescored exactly). At the
 * end of an index run qf_ann_tune picks the cheapest pair that reaches a
 * target recall@k on probe queries drawn from the stored features, with
 * ground truth from an exact scan of every stored feature, and records it
 * in the store's meta (search_nprobe, search_candidates, tune_*), where
 * `qformer search` finds it and `qformer info` shows it.
 *
 * It also chooses the factory for `--factory auto` (qf_ann_choose). */
#ifndef QF_ANN_H
#define QF_ANN_H

#include "embed/common.h"
#include "index/store.h"
#include "index/vindex.h"

#include <stddef.h>
#include <stdint.h>

/* Search settings. */
typedef struct {
    int nprobe;       /* IVF cells to visit; 0: the index's own (FAISS default 1)   */
    int candidates;   /* images rescored exactly; 0: max(4k, k + 32) (untuned)       */
} qf_ann_params;

/* What the search needs to know about an index (from the store's meta). */
typedef struct {
    int  n_query, dim;    /* stored features per image [n_query, dim]            */
    int  pooled;          /* FAISS holds one (mean) vector per image              */
    int  exact;           /* FAISS scores are exact (Flat over every vector)      */
    char factory[256];
} qf_ann_layout;

/* Reads the layout and the recorded (tuned) settings from the store.
 * QF_ERR_FORMAT names `db` when it is not a qformer index. */
qf_status qf_ann_layout_load(qf_store *st, const char *db, qf_ann_layout *lay, qf_ann_params *p);

/* 1 when `factory` gives exact scores over every stored vector (Flat). */
int qf_ann_factory_is_exact(const char *factory, int pooled);

/* Applies p->nprobe to an IVF index (no-op when 0 or not IVF). */
qf_status qf_ann_apply(qf_vindex *vi, const qf_ann_params *p);

typedef struct {
    int64_t image_id;
    float   itc;          /* exact: max over query vectors and stored features */
} qf_ann_hit;

/* The best k images for the query vectors qv[n_qv * dim] (borrowed): FAISS
 * candidates (k for an exact index, p->candidates otherwise), rescored
 * exactly from the store, ordered by itc descending then id ascending.
 * Images deleted or re-queued since the FAISS file was written are skipped
 * and the pool widened until k usable ones are found or FAISS has no more.
 * hits[k] caller-owned; *n_hits <= k. */
qf_status qf_ann_search(qf_store *st, const qf_vindex *vi, const qf_ann_layout *lay,
                        const qf_ann_params *p, int n_qv, const float *qv, int k,
                        qf_ann_hit *hits, int *n_hits);

/* Ground truth: for each of the nq query vectors q[nq * dim] (borrowed),
 * the exact top k images over every stored feature (one pass over the
 * store, batched GEMMs): ids[nq * k] and scores[nq * k] (caller-owned),
 * padded with -1 / -INFINITY when the store holds fewer than k images. */
qf_status qf_ann_exact(qf_store *st, int n_query, int dim, int nq, const float *q, int k,
                       int64_t *ids, float *scores);

/* Probe queries drawn from the store: the normalised mean of the feature
 * vectors of n ok images picked at random, every other one moved off its
 * image by random noise (cosine ~0.55) as text queries are (deterministic
 * in `seed`).
 * out[n * dim] caller-owned; *n_out < n when the store has fewer images. */
qf_status qf_ann_probes(qf_store *st, int n_query, int dim, int n, uint64_t seed, float *out, int *n_out);

typedef struct {
    qf_ann_params best;
    double  recall;       /* recall@k of `best` on the probes                 */
    double  target;
    int     reached;      /* recall >= target                                 */
    int     n_probes, k;
    double  seconds;
} qf_ann_tuning;

#define QF_ANN_TUNE_K        10
/* Recall@10 the tuning asks of its probe queries. Search at default
 * settings should return >= 95% of the exact top 10; text-like queries
 * measured 0.9715 at 6k images (IVF256,PQ32) with this target, 0.9455 with
 * 0.95, and well above the probes at 1M images (bench/scale.sh), where
 * 0.98 cost a scan of 1/8 of the index per query. */
#define QF_ANN_TUNE_TARGET   0.97
#define QF_ANN_TUNE_PROBES   200
#define QF_ANN_MAX_CANDIDATES 2048

/* Tunes nprobe and the candidate pool of `vi` on the store's own features
 * (see the file comment) and leaves vi set to the result. An exact layout
 * needs no tuning: best = {0, 0}, recall 1. If no setting reaches the
 * target, the best recall found is returned with reached = 0. vi may be
 * NULL for an exact layout (it is not read). */
qf_status qf_ann_tune(qf_store *st, qf_vindex *vi, const qf_ann_layout *lay, qf_ann_tuning *out);

/* Records a tuning (search_nprobe, search_candidates, tune_recall,
 * tune_target, tune_k, tune_probes, tune_images, tune_factory) in meta. */
qf_status qf_ann_tuning_save(qf_store *st, const qf_ann_layout *lay, const qf_ann_tuning *t,
                             int64_t n_images);

/* Whether the recorded tuning is missing or stale for this index: another
 * factory, or the number of images changed by more than 10%. */
qf_status qf_ann_needs_tuning(qf_store *st, const char *factory, int64_t n_images, int *needed);

/* ---- --factory auto ---------------------------------------------------------- */

/* Parses a byte size: "4G", "512M", "1.5G", "100000" (K/M/G/T binary).
 * QF_ERR_ARG with the text quoted when it does not parse or is <= 0. */
qf_status qf_ann_parse_bytes(const char *s, int64_t *out);

#define QF_ANN_DEFAULT_BUDGET ((int64_t)2 << 30)    /* --max-index-memory default */
/* Exact search (Flat) while one query scans at most this many vectors:
 * ~50 ms on a Zen 4 core pair (0.5 s measured for 3.2M). */
#define QF_ANN_FLAT_MAX_VECTORS 320000
/* Vectors an IVF/PQ index is trained on at most (a sample of the corpus). */
#define QF_ANN_TRAIN_MAX_VECTORS 262144

/* The factory `auto` means for n_vectors vectors of `dim` floats within a
 * memory budget (bytes): Flat (exact) while it is small and fits; beyond,
 * IVF<nlist> with the most accurate code that fits (Flat, SQ8, PQ64, PQ32,
 * PQ16), nlist ~ 4 sqrt(n) as a power of two, at most 1/39 of the
 * training sample (4096). factory[cap] and
 * reason[rcap] (caller-owned) receive the choice and one line of why. */
void qf_ann_choose(int64_t n_vectors, int dim, int64_t budget, char *factory, size_t cap,
                   char *reason, size_t rcap);

/* Estimated bytes in RAM of `factory` holding n_vectors of `dim`. */
int64_t qf_ann_index_bytes(const char *factory, int64_t n_vectors, int dim);

#endif
