/* vindex.c - the vector index over the FAISS C API; the only file that
 * calls FAISS, so every FAISS error is translated here.
 *
 * Invariant: vi->index is either an IVF index (possibly behind transforms),
 * which stores caller ids itself, or an IndexIDMap over an index that
 * cannot (Flat, HNSW, PQ, SQ). IDMap is never put over IVF: IDMap::remove_ids
 * assumes the sub-index renumbers its vectors after a removal, which IVF
 * does not, and ids would then come back wrong. */
#include "index/vindex.h"

#include <faiss/c_api/AutoTune_c.h>
#include <faiss/c_api/IndexIVF_c.h>
#include <faiss/c_api/IndexPreTransform_c.h>
#include <faiss/c_api/Index_c.h>
#include <faiss/c_api/MetaIndexes_c.h>
#include <faiss/c_api/error_c.h>
#include <faiss/c_api/impl/AuxIndexStructures_c.h>
#include <faiss/c_api/index_factory_c.h>
#include <faiss/c_api/index_io_c.h>
#include <faiss/c_api/utils/distances_c.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct qf_vindex {
    FaissIndex *index;          /* owned; IVF or IDMap over a non-IVF index */
    int         dim;
    int64_t     min_train;      /* largest k-means the training runs; 0: none */
    char        train_token[48];/* factory component that sets min_train     */
};

/* ---- FAISS error text ------------------------------------------------------ */

/* The last FAISS error without the C++ location FAISS puts in front of it
 * ("Error in <signature> at <file>:<line>: Error: '<cond>' failed: "). */
static const char *faiss_msg(void) {
    const char *m = faiss_get_last_error();
    if (!m || !*m) return "unknown FAISS error";
    if (strncmp(m, "Error in ", 9) == 0) {
        const char *at = strstr(m, " at ");
        const char *c = at ? strstr(at + 4, ": ") : NULL;
        if (c) m = c + 2;
    }
    if (strncmp(m, "Error: '", 8) == 0) {
        const char *f = strstr(m, "' failed: ");
        if (f) m = f + 10;
    }
    return m;
}

/* ---- structure helpers ----------------------------------------------------- */

int qf_vindex_factory_exact(const char *factory) {
    return factory && strstr(factory, "Flat") && !strstr(factory, "IVF") && !strstr(factory, "HNSW");
}

/* The IVF index inside `ix` (itself, behind transforms or an IDMap), NULL if none. */
static FaissIndexIVF *find_ivf(FaissIndex *ix) {
    for (int depth = 0; ix && depth < 8; depth++) {
        FaissIndexIVF *ivf = faiss_IndexIVF_cast(ix);
        if (ivf) return ivf;
        FaissIndexPreTransform *pt = faiss_IndexPreTransform_cast(ix);
        if (pt) { ix = faiss_IndexPreTransform_index(pt); continue; }
        FaissIndexIDMap *map = faiss_IndexIDMap_cast(ix);
        if (map) { ix = faiss_IndexIDMap_sub_index(map); continue; }
        break;
    }
    return NULL;
}

static int ends_with(const char *s, size_t n, const char *suffix) {
    size_t m = strlen(suffix);
    return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

/* "PQ<m>" or "PQ<m>x<b>" exactly: a product quantizer FAISS would train
 * with polysemous code reassignment unless told "np". */
static int plain_pq(const char *t, size_t n) {
    size_t i = 2;
    if (n < 3 || strncmp(t, "PQ", 2) != 0 || !isdigit((unsigned char)t[2])) return 0;
    while (i < n && isdigit((unsigned char)t[i])) i++;
    if (i < n && t[i] == 'x') {
        if (++i == n || !isdigit((unsigned char)t[i])) return 0;
        while (i < n && isdigit((unsigned char)t[i])) i++;
    }
    return i == n;
}

static int64_t leading_int(const char *s) {
    if (!isdigit((unsigned char)*s)) return -1;
    long long v = strtoll(s, NULL, 10);
    return v < 0 || v > (1LL << 40) ? -1 : (int64_t)v;
}

/* Checks one factory component (PQ/OPQ m divides the dimension it sees,
 * no fast-scan) and raises vi->min_train to the size of the k-means it
 * needs: IVF<n> -> n, IMI<a>x<b> -> 2^b, PQ<m>[x<b>] -> 2^b (b = 8 by
 * default), OPQ<m> -> 256. Other components train without a minimum FAISS
 * can tell us beforehand. *cur_dim tracks the dimension through PCA, RR
 * and OPQ transforms. */
static qf_status scan_component(qf_vindex *vi, const char *factory, const char *t, size_t n,
                                int *cur_dim) {
    int64_t need = 0;
    /* Dimension seen by this component (transforms change it); PQ and OPQ
     * need it to be a multiple of m, checked here because FAISS leaks a
     * half-built index when its factory fails on that. */
    int64_t m = 0, out = 0;
    if (n > 3 && strncmp(t, "PCA", 3) == 0) {
        const char *p = t + 3;
        while (*p == 'W' || *p == 'R') p++;
        out = leading_int(p);
    } else if (n > 2 && strncmp(t, "RR", 2) == 0) {
        out = leading_int(t + 2);
    } else if (n > 3 && strncmp(t, "OPQ", 3) == 0) {
        m = leading_int(t + 3);
        const char *u = memchr(t, '_', n);
        out = u ? leading_int(u + 1) : *cur_dim;
    } else if (n > 2 && strncmp(t, "PQ", 2) == 0) {
        m = leading_int(t + 2);
    }
    int64_t d = out > 0 ? out : *cur_dim;
    if (m > 0 && d % m != 0)
        return qf_errorf(QF_ERR_ARG, "FAISS factory '%s': %.*s needs the dimension (%lld) to be a "
                         "multiple of %lld", factory, (int)n, t, (long long)d, (long long)m);
    if (out > 0) *cur_dim = (int)out;
    if (ends_with(t, n, "fs") || ends_with(t, n, "fsr"))
        return qf_errorf(QF_ERR_ARG, "FAISS factory '%s': fast-scan encoding '%.*s' cannot remove "
                         "vectors, which incremental indexing needs; use PQ<m> without 'x4fs'",
                         factory, (int)n, t);
    if (n > 3 && strncmp(t, "IVF", 3) == 0) {
        need = leading_int(t + 3);
    } else if (n > 3 && strncmp(t, "IMI", 3) == 0) {
        const char *x = memchr(t, 'x', n);
        int64_t b = x ? leading_int(x + 1) : -1;
        need = b > 0 && b < 31 ? (int64_t)1 << b : 0;
    } else if (n > 3 && strncmp(t, "OPQ", 3) == 0) {
        need = 256;
    } else if (n > 2 && strncmp(t, "PQ", 2) == 0 && isdigit((unsigned char)t[2])) {
        const char *p = t + 2;
        while (isdigit((unsigned char)*p)) p++;
        int64_t b = (*p == 'x') ? leading_int(p + 1) : 8;
        need = b > 0 && b < 31 ? (int64_t)1 << b : 0;
    }
    if (need > vi->min_train) {
        vi->min_train = need;
        snprintf(vi->train_token, sizeof vi->train_token, "%.*s", (int)(n < 40 ? n : 40), t);
    }
    return QF_OK;
}

/* ---- lifecycle ------------------------------------------------------------- */

qf_status qf_vindex_create(const char *factory, int dim, qf_vindex **out) {
    qf_status st = QF_OK;
    qf_vindex *vi = NULL;
    FaissIndex *ix = NULL;
    char *desc = NULL;
    *out = NULL;
    const char *given = factory && *factory ? factory : "Flat";
    if (dim <= 0) return qf_errorf(QF_ERR_ARG, "vector index: dimension %d must be positive", dim);

    /* We choose the id wrapping ourselves (see the file comment). */
    const char *f = given;
    if (strncmp(f, "IDMap2,", 7) == 0) f += 7;
    else if (strncmp(f, "IDMap,", 6) == 0) f += 6;

    vi = qf_calloc(1, sizeof *vi);
    /* room for "np" after every component */
    desc = qf_malloc(2 * strlen(f) + 3);
    if (!vi || !desc) { st = qf_errorf(QF_ERR_NOMEM, "vector index: out of memory"); goto fail; }
    vi->dim = dim;
    snprintf(vi->train_token, sizeof vi->train_token, "%s", f);
    size_t len = 0;
    int cur_dim = dim;
    for (const char *t = f; *t;) {
        size_t n = strcspn(t, ",");
        if ((st = scan_component(vi, given, t, n, &cur_dim)) != QF_OK) goto fail;
        memcpy(desc + len, t, n);
        len += n;
        /* Polysemous training only serves Hamming-filtered search, which
         * is never enabled here, and costs ~50x the PQ training itself. */
        if (plain_pq(t, n)) { memcpy(desc + len, "np", 2); len += 2; }
        t += n;
        if (*t == ',') desc[len++] = *t++;
    }
    desc[len] = 0;

    if (faiss_index_factory(&ix, dim, desc, METRIC_INNER_PRODUCT) != 0) {
        st = qf_errorf(QF_ERR_ARG, "FAISS factory '%s' (dim %d) is not usable: %s", given, dim,
                       faiss_msg());
        goto fail;
    }
    if (!find_ivf(ix)) {
        FaissIndexIDMap *map = NULL;
        if (faiss_IndexIDMap_new(&map, ix) != 0) {
            st = qf_errorf(QF_ERR_INDEX, "FAISS factory '%s': cannot wrap in IDMap: %s", given,
                           faiss_msg());
            goto fail;
        }
        faiss_IndexIDMap_set_own_fields(map, 1);
        ix = map;
    }
    if (faiss_Index_is_trained(ix)) vi->min_train = 0;
    vi->index = ix;
    qf_free(desc);
    *out = vi;
    return QF_OK;

fail:
    faiss_Index_free(ix);
    qf_free(desc);
    qf_free(vi);
    return st;
}

qf_status qf_vindex_read(const char *path, qf_vindex **out) {
    FaissIndex *ix = NULL;
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return qf_errorf(QF_ERR_IO, "%s: cannot open vector index: %s", path, strerror(errno));
    close(fd);
    if (faiss_read_index_fname(path, 0, &ix) != 0)
        return qf_errorf(QF_ERR_INDEX, "%s: not a readable FAISS index: %s", path, faiss_msg());
    if (faiss_Index_metric_type(ix) != METRIC_INNER_PRODUCT) {
        faiss_Index_free(ix);
        return qf_errorf(QF_ERR_INDEX, "%s: FAISS index metric is not inner product", path);
    }
    qf_vindex *vi = qf_calloc(1, sizeof *vi);
    if (!vi) {
        faiss_Index_free(ix);
        return qf_errorf(QF_ERR_NOMEM, "%s: out of memory", path);
    }
    vi->index = ix;
    vi->dim = faiss_Index_d(ix);
    vi->min_train = faiss_Index_is_trained(ix) ? 0 : 1;
    snprintf(vi->train_token, sizeof vi->train_token, "this index");
    *out = vi;
    return QF_OK;
}

/* fsyncs the directory holding `path` so a rename into it is durable. */
static qf_status fsync_parent(const char *path) {
    const char *slash = strrchr(path, '/');
    char dir[4096];
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else if ((size_t)(slash - path) < sizeof dir) snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    else return qf_errorf(QF_ERR_IO, "%s: path too long", path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return qf_errorf(QF_ERR_IO, "%s: cannot open directory: %s", dir, strerror(errno));
    int rc = fsync(fd);
    int err = errno;
    close(fd);
    if (rc != 0 && err != EINVAL)  /* some filesystems do not sync directories */
        return qf_errorf(QF_ERR_IO, "%s: fsync: %s", dir, strerror(err));
    return QF_OK;
}

qf_status qf_vindex_write(const qf_vindex *vi, const char *path) {
    qf_status st = QF_OK;
    char tmp[4200];
    FILE *f = NULL;
    int n = snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof tmp) return qf_errorf(QF_ERR_IO, "%s: path too long", path);
    f = fopen(tmp, "wbe");
    if (!f) return qf_errorf(QF_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    if (faiss_write_index(vi->index, f) != 0) {
        st = qf_errorf(QF_ERR_INDEX, "%s: writing the FAISS index failed: %s", tmp, faiss_msg());
        goto fail;
    }
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
        st = qf_errorf(QF_ERR_IO, "%s: write/fsync: %s", tmp, strerror(errno));
        goto fail;
    }
    FILE *g = f;
    f = NULL;
    if (fclose(g) != 0) {
        st = qf_errorf(QF_ERR_IO, "%s: close: %s", tmp, strerror(errno));
        goto fail;
    }
    if (rename(tmp, path) != 0) {
        st = qf_errorf(QF_ERR_IO, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
        goto fail;
    }
    return fsync_parent(path);

fail:
    if (f) fclose(f);
    unlink(tmp);
    return st;
}

void qf_vindex_free(qf_vindex *vi) {
    if (!vi) return;
    faiss_Index_free(vi->index);
    qf_free(vi);
}

int     qf_vindex_dim(const qf_vindex *vi)        { return vi->dim; }
int64_t qf_vindex_ntotal(const qf_vindex *vi)     { return faiss_Index_ntotal(vi->index); }
int     qf_vindex_is_trained(const qf_vindex *vi) { return faiss_Index_is_trained(vi->index) != 0; }

void qf_vindex_train_size(const qf_vindex *vi, int64_t *min_n, int64_t *good_n) {
    int64_t m = faiss_Index_is_trained(vi->index) ? 0 : vi->min_train;
    if (min_n) *min_n = m;
    if (good_n) *good_n = m * 256;   /* FAISS max_points_per_centroid */
}

/* ---- training, adding, removing -------------------------------------------- */

qf_status qf_vindex_train(qf_vindex *vi, int64_t n, const float *x) {
    if (faiss_Index_is_trained(vi->index)) return QF_OK;
    const char *hint = strncmp(vi->train_token, "IVF", 3) == 0 ? "a smaller nlist" : "fewer PQ bits";
    if (n < vi->min_train || n <= 0)
        return qf_errorf(QF_ERR_ARG, "%s needs at least %lld training vectors, the corpus has %lld; "
                         "use --factory Flat or %s", vi->train_token,
                         (long long)(vi->min_train > 1 ? vi->min_train : 1), (long long)n, hint);
    if (faiss_Index_train(vi->index, n, x) != 0) {
        const char *m = faiss_msg();
        if (strstr(m, "Number of training points"))
            return qf_errorf(QF_ERR_ARG, "training the vector index on %lld vectors: %s; use --factory "
                             "Flat or a smaller index", (long long)n, m);
        return qf_errorf(QF_ERR_INDEX, "training the vector index on %lld vectors: %s",
                         (long long)n, m);
    }
    return QF_OK;
}

qf_status qf_vindex_add(qf_vindex *vi, int64_t n, const float *x, const int64_t *ids) {
    if (n == 0) return QF_OK;
    if (n < 0) return qf_errorf(QF_ERR_ARG, "vector index: cannot add %lld vectors", (long long)n);
    if (!faiss_Index_is_trained(vi->index))
        return qf_errorf(QF_ERR_ARG, "vector index: add before training (the index type needs "
                         "qf_vindex_train first)");
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0) return qf_errorf(QF_ERR_ARG, "vector index: negative id %lld", (long long)ids[i]);
    if (faiss_Index_add_with_ids(vi->index, n, x, ids) != 0)
        return qf_errorf(QF_ERR_INDEX, "adding %lld vectors to the vector index: %s", (long long)n,
                         faiss_msg());
    return QF_OK;
}

qf_status qf_vindex_remove(qf_vindex *vi, int64_t n, const int64_t *ids, int64_t *n_removed) {
    FaissIDSelectorBatch *sel = NULL;
    size_t removed = 0;
    if (n_removed) *n_removed = 0;
    if (n <= 0) return QF_OK;
    if (faiss_IDSelectorBatch_new(&sel, (size_t)n, ids) != 0)
        return qf_errorf(QF_ERR_NOMEM, "removing %lld ids from the vector index: %s", (long long)n,
                         faiss_msg());
    int rc = faiss_Index_remove_ids(vi->index, (const FaissIDSelector *)sel, &removed);
    faiss_IDSelector_free((FaissIDSelector *)sel);
    if (rc != 0) {
        const char *m = faiss_msg();
        if (strstr(m, "not implemented"))
            return qf_errorf(QF_ERR_UNSUPPORTED, "this vector index type (e.g. HNSW) cannot remove "
                             "vectors; re-index into a new database or use Flat/IVF (%s)", m);
        return qf_errorf(QF_ERR_INDEX, "removing %lld ids from the vector index: %s", (long long)n, m);
    }
    if (n_removed) *n_removed = (int64_t)removed;
    return QF_OK;
}

/* ---- search ------------------------------------------------------------------ */

qf_status qf_vindex_search(const qf_vindex *vi, int64_t nq, const float *q, int64_t k,
                           float *scores, int64_t *ids) {
    if (nq <= 0 || k <= 0)
        return qf_errorf(QF_ERR_ARG, "vector search: nq=%lld k=%lld must be positive",
                         (long long)nq, (long long)k);
    if (faiss_Index_search(vi->index, nq, q, k, scores, ids) != 0)
        return qf_errorf(QF_ERR_INDEX, "vector search (k=%lld): %s", (long long)k, faiss_msg());
    for (int64_t i = 0; i < nq * k; i++)
        if (ids[i] < 0) scores[i] = -INFINITY;
    return QF_OK;
}

qf_status qf_vindex_set_param(qf_vindex *vi, const char *name, double value) {
    FaissParameterSpace *ps = NULL;
    if (strcmp(name, "nprobe") == 0 && !find_ivf(vi->index))
        return qf_errorf(QF_ERR_ARG, "vector index: nprobe applies to IVF indexes only");
    if (faiss_ParameterSpace_new(&ps) != 0)
        return qf_errorf(QF_ERR_NOMEM, "vector index: %s", faiss_msg());
    int rc = faiss_ParameterSpace_set_index_parameter(ps, vi->index, name, value);
    faiss_ParameterSpace_free(ps);
    if (rc != 0)
        return qf_errorf(QF_ERR_ARG, "vector index: cannot set %s=%g: %s", name, value, faiss_msg());
    return QF_OK;
}

typedef struct { int64_t id; int64_t pos; } id_pos;

static int cmp_id_pos(const void *a, const void *b) {
    int64_t x = ((const id_pos *)a)->id, y = ((const id_pos *)b)->id;
    return (x > y) - (x < y);
}

qf_status qf_vindex_reconstruct(const qf_vindex *vi, int64_t n, const int64_t *ids, float *out) {
    qf_status st = QF_OK;
    FaissIndexIDMap *map = faiss_IndexIDMap_cast(vi->index);
    if (!map)
        return qf_errorf(QF_ERR_UNSUPPORTED, "vector index: vectors cannot be read back from an IVF "
                         "index (FAISS keeps no id -> vector map for it)");
    idx_t *id_map = NULL;
    size_t size = 0;
    faiss_IndexIDMap_id_map(map, &id_map, &size);
    FaissIndex *sub = faiss_IndexIDMap_sub_index(map);
    id_pos *sorted = qf_malloc((size ? size : 1) * sizeof *sorted);
    if (!sorted) return qf_errorf(QF_ERR_NOMEM, "vector index: out of memory (%zu ids)", size);
    for (size_t i = 0; i < size; i++) sorted[i] = (id_pos){ id_map[i], (int64_t)i };
    qsort(sorted, size, sizeof *sorted, cmp_id_pos);
    for (int64_t i = 0; i < n; i++) {
        id_pos key = { ids[i], 0 };
        const id_pos *hit = size ? bsearch(&key, sorted, size, sizeof *sorted, cmp_id_pos) : NULL;
        if (!hit) {
            st = qf_errorf(QF_ERR_ARG, "vector index: id %lld is not stored", (long long)ids[i]);
            goto done;
        }
        if (faiss_Index_reconstruct(sub, hit->pos, out + i * vi->dim) != 0) {
            st = qf_errorf(QF_ERR_INDEX, "vector index: reading back id %lld: %s", (long long)ids[i],
                           faiss_msg());
            goto done;
        }
    }
done:
    qf_free(sorted);
    return st;
}

/* ---- exact multi-vector image search ----------------------------------------- */

static int cmp_hit_rank(const void *a, const void *b) {   /* score desc, id asc */
    const qf_vindex_hit *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return (x->image_id > y->image_id) - (x->image_id < y->image_id);
}

static int cmp_hit_image(const void *a, const void *b) {  /* id asc, score desc */
    const qf_vindex_hit *x = a, *y = b;
    if (x->image_id != y->image_id) return x->image_id < y->image_id ? -1 : 1;
    return (x->score < y->score) - (x->score > y->score);
}

/* Keeps one entry per image (its best score) and sorts by rank; returns the count. */
static int64_t reduce_images(qf_vindex_hit *h, int64_t n) {
    if (n == 0) return 0;
    qsort(h, (size_t)n, sizeof *h, cmp_hit_image);
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++)
        if (m == 0 || h[m - 1].image_id != h[i].image_id) h[m++] = h[i];
    qsort(h, (size_t)m, sizeof *h, cmp_hit_rank);
    return m;
}

/* FAISS vector hits ids/scores[n] (id -1: none) as the best `limit` images
 * (vector id / n_query), each scored by its best vector, into hits; cand
 * holds n entries of scratch. Returns the number of images written. */
static int64_t best_images(const int64_t *ids, const float *scores, size_t n, int n_query, int64_t limit,
                           qf_vindex_hit *cand, qf_vindex_hit *hits) {
    int64_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= 0) cand[m++] = (qf_vindex_hit){ ids[i] / n_query, scores[i] };
    m = reduce_images(cand, m);
    if (m > limit) m = limit;
    memcpy(hits, cand, (size_t)m * sizeof *hits);
    return m;
}

qf_status qf_vindex_search_images(const qf_vindex *vi, int n_q, const float *q,
                                  int n_query, int64_t k,
                                  qf_vindex_hit *hits, int64_t *n_hits) {
    qf_status st = QF_OK;
    /* Flat scans of a few queries: FAISS's default (BLAS only from 20
     * queries) runs one query on one thread with its own SIMD loop; the BLAS
     * path is several times faster even for a single text query. */
    faiss_set_distance_compute_blas_threshold(1);
    float *scores = NULL;
    int64_t *ids = NULL;
    qf_vindex_hit *cand = NULL;
    *n_hits = 0;
    if (n_q <= 0 || n_query <= 0 || k <= 0)
        return qf_errorf(QF_ERR_ARG, "image search: n_q=%d n_query=%d k=%lld must be positive",
                         n_q, n_query, (long long)k);
    int64_t ntotal = faiss_Index_ntotal(vi->index);
    if (ntotal == 0) return QF_OK;

    /* (k + 1) images' worth of vectors: with k only, the k-th image's best
     * vector is often the last one retrieved (always so when pooled), which
     * the exactness test below cannot accept. */
    int64_t kp = k < ntotal / n_query ? (k + 1) * n_query : ntotal;
    if (kp > ntotal) kp = ntotal;
    for (;;) {
        size_t cap = (size_t)n_q * (size_t)kp;
        qf_free(scores); qf_free(ids); qf_free(cand);
        scores = qf_malloc(cap * sizeof *scores);
        ids = qf_malloc(cap * sizeof *ids);
        cand = qf_malloc(cap * sizeof *cand);
        if (!scores || !ids || !cand) {
            st = qf_errorf(QF_ERR_NOMEM, "image search: out of memory (%lld results)", (long long)cap);
            goto done;
        }
        if (faiss_Index_search(vi->index, n_q, q, kp, scores, ids) != 0) {
            st = qf_errorf(QF_ERR_INDEX, "image search (k'=%lld): %s", (long long)kp, faiss_msg());
            goto done;
        }
        /* Exact for query j when its list is exhausted (fewer than kp
         * results: nothing else is reachable) or its k-th image scores
         * strictly above the last vector retrieved: every vector above that
         * one is in the list, so every image's best vector is too, and an
         * image with a tied score can not be hiding past the cut. */
        int exact = 1;
        for (int j = 0; j < n_q && exact; j++) {
            const float *s = scores + (size_t)j * kp;
            const int64_t *id = ids + (size_t)j * kp;
            int64_t m = 0;
            for (int64_t i = 0; i < kp; i++)
                if (id[i] >= 0) cand[m++] = (qf_vindex_hit){ id[i] / n_query, s[i] };
            if (m < kp) continue;
            float last = s[kp - 1];
            int64_t ni = reduce_images(cand, m);
            if (ni < k || !(cand[k - 1].score > last)) exact = 0;
        }
        if (exact || kp >= ntotal) break;
        kp = kp > ntotal / 2 ? ntotal : kp * 2;
    }

    *n_hits = best_images(ids, scores, (size_t)n_q * (size_t)kp, n_query, k, cand, hits);
done:
    qf_free(scores);
    qf_free(ids);
    qf_free(cand);
    return st;
}

/* ---- approximate candidates ------------------------------------------------- */

int64_t qf_vindex_nlist(const qf_vindex *vi) {
    FaissIndexIVF *ivf = find_ivf(vi->index);
    return ivf ? (int64_t)faiss_IndexIVF_nlist(ivf) : 0;
}

int64_t qf_vindex_code_size(const qf_vindex *vi) {
    size_t n = 0;
    FaissIndexIVF *ivf = find_ivf(vi->index);
    FaissIndex *ix = vi->index;
    FaissIndexIDMap *map = faiss_IndexIDMap_cast(ix);
    if (map) ix = faiss_IndexIDMap_sub_index(map);
    if (ivf) {
        /* an IVF index's sa_code_size adds the list number; its stored code is the rest */
        size_t full = 0;
        if (faiss_Index_sa_code_size((FaissIndex *)ivf, &full) != 0) return 0;
        int64_t nl = (int64_t)faiss_IndexIVF_nlist(ivf), list_bytes = 0;
        for (int64_t v = nl - 1; v > 0; v >>= 8) list_bytes++;
        return (int64_t)full > list_bytes ? (int64_t)full - list_bytes : (int64_t)full;
    }
    if (faiss_Index_sa_code_size(ix, &n) != 0) return 0;
    return (int64_t)n;
}

qf_status qf_vindex_search_candidates(const qf_vindex *vi, int n_q, const float *q,
                                      int n_query, int64_t n_images,
                                      qf_vindex_hit *hits, int64_t *n_hits) {
    qf_status st = QF_OK;
    *n_hits = 0;
    if (n_q <= 0 || n_query <= 0 || n_images <= 0)
        return qf_errorf(QF_ERR_ARG, "candidate search: n_q=%d n_query=%d n=%lld must be positive",
                         n_q, n_query, (long long)n_images);
    faiss_set_distance_compute_blas_threshold(1);
    int64_t ntotal = faiss_Index_ntotal(vi->index);
    if (ntotal == 0) return QF_OK;
    int64_t kp = n_images > ntotal / n_query ? ntotal : n_images * n_query;
    size_t cap = (size_t)n_q * (size_t)kp;
    float *scores = qf_malloc(cap * sizeof *scores);
    int64_t *ids = qf_malloc(cap * sizeof *ids);
    qf_vindex_hit *cand = qf_malloc(cap * sizeof *cand);
    if (!scores || !ids || !cand) {
        st = qf_errorf(QF_ERR_NOMEM, "candidate search: out of memory (%lld results)", (long long)cap);
        goto done;
    }
    if (faiss_Index_search(vi->index, n_q, q, kp, scores, ids) != 0) {
        st = qf_errorf(QF_ERR_INDEX, "candidate search (k'=%lld): %s", (long long)kp, faiss_msg());
        goto done;
    }
    *n_hits = best_images(ids, scores, cap, n_query, n_images, cand, hits);
done:
    qf_free(scores);
    qf_free(ids);
    qf_free(cand);
    return st;
}
