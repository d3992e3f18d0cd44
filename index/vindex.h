/* vindex.h - the vector index: a FAISS index (inner product) behind an
 * opaque handle, with 64-bit ids chosen by the caller, atomic file writes,
 * and the exact BLIP-2 multi-vector image search.
 *
 * Ids: in multi-vector mode, vector q of image i has id i * n_query + q;
 * pooled mode (one vector per image, id = image id) is n_query = 1. All
 * FAISS errors are translated here (QF_ERR_INDEX, or QF_ERR_ARG for bad
 * caller input such as a factory string that does not parse). */
#ifndef QF_VINDEX_H
#define QF_VINDEX_H

#include "embed/common.h"

#include <stdint.h>

typedef struct qf_vindex qf_vindex;

/* Builds an empty index of `dim` dimensions from a FAISS factory string
 * (NULL or "" = "Flat"), metric inner product. Indexes that cannot take
 * caller ids themselves (Flat, HNSW, PQ, SQ...) are wrapped in an IDMap;
 * IVF indexes (also behind OPQ/PCA transforms) store ids themselves and are
 * not wrapped. A leading "IDMap," / "IDMap2," in `factory` is accepted and
 * ignored (IDMap over IVF would map ids wrongly after a removal). Fast-scan
 * encodings ("...fs") are refused: they cannot remove vectors. Product
 * quantizers are trained without polysemous reassignment ("PQ16" behaves
 * as "PQ16np"): it only helps Hamming-filtered search, never used here,
 * and multiplies training time ~50x.
 * Errors: QF_ERR_ARG (dim <= 0, unparsable factory, fast-scan; the message
 * quotes the string), QF_ERR_NOMEM. *out: new index the caller owns
 * (qf_vindex_free), NULL on failure. */
qf_status qf_vindex_create(const char *factory, int dim, qf_vindex **out);

/* 1 when an index built from `factory` scores every stored vector exactly
 * (a Flat index, not behind IVF or HNSW), so a search needs no over-fetch. */
int qf_vindex_factory_exact(const char *factory);

/* Reads an index written by qf_vindex_write. QF_ERR_IO if `path` cannot
 * be opened, QF_ERR_INDEX if FAISS cannot read it or its metric is not
 * inner product. *out: new index the caller owns, NULL on failure. */
qf_status qf_vindex_read(const char *path, qf_vindex **out);

/* Writes the index atomically: "<path>.tmp.<pid>" is written and fsynced,
 * renamed over `path`, and the directory fsynced; on failure the temporary
 * is removed and `path` is left as it was. QF_ERR_IO, QF_ERR_INDEX. */
qf_status qf_vindex_write(const qf_vindex *vi, const char *path);

void qf_vindex_free(qf_vindex *vi);               /* NULL ok */

int     qf_vindex_dim(const qf_vindex *vi);
int64_t qf_vindex_ntotal(const qf_vindex *vi);    /* vectors stored */
int     qf_vindex_is_trained(const qf_vindex *vi);

/* Training-set sizes for an untrained index: *min_n is the fewest vectors
 * qf_vindex_train accepts (the largest k-means it runs: nlist for IVF,
 * 2^nbits for PQ/OPQ), *good_n the count above which FAISS subsamples
 * anyway (256 per centroid). Both 0 for an index that needs no training.
 * Either pointer may be NULL. */
void qf_vindex_train_size(const qf_vindex *vi, int64_t *min_n, int64_t *good_n);

/* Trains on n vectors x[n * dim] (borrowed). A trained index is left
 * untouched (QF_OK). QF_ERR_ARG when n is below the minimum, e.g.
 * "IVF4096 needs at least 4096 training vectors, the corpus has 100; use
 * --factory Flat or a smaller nlist"; QF_ERR_INDEX otherwise. */
qf_status qf_vindex_train(qf_vindex *vi, int64_t n, const float *x);

/* Adds n vectors x[n * dim] with ids[n] (both borrowed; ids >= 0). The
 * index must be trained (QF_ERR_ARG otherwise). Ids are not checked for
 * duplicates: remove an id before adding it again. */
qf_status qf_vindex_add(qf_vindex *vi, int64_t n, const float *x, const int64_t *ids);

/* Removes every vector whose id is in ids[n] (borrowed; absent ids are
 * ignored). *n_removed (may be NULL) receives the count removed.
 * QF_ERR_UNSUPPORTED for index types that cannot remove (HNSW). */
qf_status qf_vindex_remove(qf_vindex *vi, int64_t n, const int64_t *ids, int64_t *n_removed);

/* Plain k-NN: for each of the nq queries q[nq * dim], the k best vectors,
 * scores[nq * k] descending and ids[nq * k] (caller-owned). Missing
 * results (fewer than k vectors reachable) have id -1 and score -INFINITY. */
qf_status qf_vindex_search(const qf_vindex *vi, int64_t nq, const float *q, int64_t k,
                           float *scores, int64_t *ids);

/* Sets a FAISS search parameter by name through ParameterSpace, e.g.
 * "nprobe" (IVF) or "efSearch" (HNSW). QF_ERR_ARG when the parameter does
 * not apply to this index type or the value is out of range. */
qf_status qf_vindex_set_param(qf_vindex *vi, const char *name, double value);

/* Stored vectors read back (for checks and tools: export reads the exact
 * features from the store instead): out[n * dim] (caller-owned)
 * receives the vectors with ids[n] (borrowed), exact for Flat and decoded
 * approximations for PQ/SQ. QF_ERR_ARG if an id is absent;
 * QF_ERR_UNSUPPORTED for IVF indexes (FAISS keeps no id -> vector map). */
qf_status qf_vindex_reconstruct(const qf_vindex *vi, int64_t n, const int64_t *ids, float *out);

/* One image of a multi-vector search. */
typedef struct {
    int64_t image_id;
    float   score;      /* max over query vectors and the image's vectors */
} qf_vindex_hit;

/* Exact BLIP-2 ranking over images: the index holds vectors with id
 * image_id * n_query + q (0 <= q < n_query). q[n_q * dim] (borrowed) are
 * the query vectors (1 for a text query; an image's n_query vectors for an
 * image query). Each image scores max over query vectors and its own
 * vectors; hits[k] (caller-owned) receives the best k images by score
 * descending, ties by image id ascending, *n_hits how many (< k when the
 * index holds fewer images). The search asks FAISS for k * n_query vectors
 * per query and doubles that until the k-th image is strictly above the
 * last vector retrieved or every vector was seen, so the result is exact
 * for Flat (ties included) and as good as the index allows otherwise. */
qf_status qf_vindex_search_images(const qf_vindex *vi, int n_q, const float *q,
                                  int n_query, int64_t k,
                                  qf_vindex_hit *hits, int64_t *n_hits);

/* IVF cells (nlist) of an IVF index, also behind transforms; 0 for other
 * types. */
int64_t qf_vindex_nlist(const qf_vindex *vi);

/* Bytes per stored vector code (FAISS sa_code_size: 4 * dim for Flat, m
 * for PQm); 0 when FAISS cannot tell. */
int64_t qf_vindex_code_size(const qf_vindex *vi);

/* Approximate candidates for exact rescoring: one FAISS search per query
 * vector for n_images * n_query vectors (capped at the index size), reduced
 * to images by their best (index-scored) vector over all query vectors;
 * hits[n_images] (caller-owned) receives the first n_images images in that
 * order (ties by image id), *n_hits how many. Unlike
 * qf_vindex_search_images it never widens the search: with an approximate
 * index its scores are estimates, so no test on them can prove exactness;
 * the caller rescores the candidates exactly (index/ann.h). */
qf_status qf_vindex_search_candidates(const qf_vindex *vi, int n_q, const float *q,
                                      int n_query, int64_t n_images,
                                      qf_vindex_hit *hits, int64_t *n_hits);

#endif
