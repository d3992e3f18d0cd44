/* store.h - the SQLite metadata store of an index: images (path, size,
 * mtime, content hash, size in pixels, status, error), index settings
 * (meta), the exact ITC features of each image, cached captions and the
 * optional F16 vision-feature cache.
 *
 * The schema is compiled in from schema/NNN_*.sql and migrated forward on
 * open (PRAGMA user_version). WAL journal, synchronous=NORMAL, foreign keys
 * on, 5 s busy timeout. All SQLite errors are translated here (QF_ERR_DB).
 * A qf_store is used from one thread at a time. */
#ifndef QF_STORE_H
#define QF_STORE_H

#include "embed/common.h"

#include <stdint.h>

typedef struct qf_store qf_store;

enum {
    QF_STORE_READONLY = 1 << 0,  /* open an existing database read-only, no migration */
    QF_STORE_LOCK     = 1 << 1,  /* take the exclusive indexer lock ("<db>.lock") */
    QF_STORE_IF_WRITABLE = 1 << 2,/* read-write when this process may write the file and
                                    its folder, else read-only (qf_store_is_readonly) */
};

/* Opens (creating it unless QF_STORE_READONLY) the database at `path`
 * and brings its schema to the version this binary knows. With
 * QF_STORE_LOCK the indexer lock is taken first: an flock on "<path>.lock"
 * held until qf_store_close, released by the kernel if the process dies,
 * so a killed indexer never blocks the next run; a second holder gets
 * QF_ERR_BUSY naming the pid and host of the first. Errors: QF_ERR_DB
 * (not a database, SQLite failure), QF_ERR_UNSUPPORTED (database written
 * by a newer qformer: schema version above ours; or, read-only, an older
 * schema that needs `qformer index` to migrate), QF_ERR_FORMAT (read-only:
 * an empty database, no schema yet), QF_ERR_IO (lock file),
 * QF_ERR_BUSY, QF_ERR_ARG (READONLY with LOCK). *out: new store the caller
 * owns (qf_store_close), NULL on failure. */
qf_status qf_store_open(const char *path, unsigned flags, qf_store **out);
/* Read-only stores open a database this process cannot write (a shared copy,
 * another user's folder, a read-only mount) without writing anything: in
 * a folder it cannot write, a WAL database whose -wal/-shm files are absent
 * is opened immutable (SQLite reads the file alone, no locks), so a writer
 * elsewhere must not change it meanwhile. */
int       qf_store_is_readonly(const qf_store *st);
void      qf_store_close(qf_store *st);            /* NULL ok; releases the lock */

/* Schema version of the open database (PRAGMA user_version). */
int qf_store_schema_version(const qf_store *st);
/* Schema version this binary creates (number of schema/NNN_*.sql files). */
int qf_store_binary_schema_version(void);

/* Transactions (BEGIN IMMEDIATE / COMMIT / ROLLBACK); not nestable.
 * Without one, every write commits on its own. On a read-only store,
 * begin opens a read transaction: one consistent snapshot for several
 * reads (end it with commit or rollback). Rollback is a no-op outside a
 * transaction. */
qf_status qf_store_begin(qf_store *st);
qf_status qf_store_commit(qf_store *st);
qf_status qf_store_rollback(qf_store *st);

/* Durability barrier: checkpoints the WAL into the database file with
 * fsyncs (synchronous=NORMAL alone may lose the last commits on power
 * loss, never consistency). Call it at points the vector index file must
 * agree with, e.g. right after qf_vindex_write. Outside a transaction. */
qf_status qf_store_checkpoint(qf_store *st);

/* The vector index file of a database, always beside it: "<db_path>.faiss".
 * A new string the caller frees (qf_free); NULL when out of memory. */
char *qf_store_index_path(const char *db_path);

/* ---- meta: index settings as text ----------------------------------------------
 * Keys used by qformer: model_path, model_fingerprint, factory, dim,
 * n_query, pooled, generation, faiss_generation. */
/* *value: new string the caller frees (qf_free), NULL if the key is absent. */
qf_status qf_store_meta_get(qf_store *st, const char *key, char **value);
qf_status qf_store_meta_set(qf_store *st, const char *key, const char *value);

/* ---- images ----------------------------------------------------------------------- */

typedef enum {
    QF_IMAGE_PENDING = 0,        /* registered, not embedded yet           */
    QF_IMAGE_OK,                 /* embedded, its vectors are in the index */
    QF_IMAGE_ERROR,              /* could not be read/decoded; see error   */
    QF_IMAGE_STATUS_COUNT
} qf_image_status;

const char *qf_image_status_str(qf_image_status s);  /* "pending", "ok", "error" */

typedef struct {
    int64_t         id;
    const char     *path;
    int64_t         size;         /* bytes */
    int64_t         mtime_ns;
    const char     *content_hash; /* SHA-256 hex or NULL */
    int             width, height;/* 0 when unknown */
    qf_image_status status;
    const char     *error;        /* NULL unless status is QF_IMAGE_ERROR */
    int64_t         indexed_at;   /* unix seconds of the last mark, 0 if never */
} qf_store_image;

/* Registers `path` (new row) or re-registers it after a change (same id,
 * new size/mtime/hash): status becomes pending, width/height/error and the
 * stored ITC features are cleared; changed content (hashes differ when
 * both are known, else size or mtime differ) also drops the image's
 * cached captions and vision features. `hash` may be NULL. *id receives
 * the image id. Ids are never reused after a delete. */
qf_status qf_store_image_upsert(qf_store *st, const char *path, int64_t size, int64_t mtime_ns,
                                const char *hash, int64_t *id);

/* Looks an image up by path / by id. *out: one allocation holding the
 * record and its strings, freed with qf_free; NULL when there is no such
 * image (still QF_OK). */
qf_status qf_store_image_lookup(qf_store *st, const char *path, qf_store_image **out);
qf_status qf_store_image_get(qf_store *st, int64_t id, qf_store_image **out);

/* Calls fn for every image with the given status (-1: all), in id order.
 * The record and its strings are borrowed, valid during the call. fn must
 * not write to the store (collect ids, act afterwards); a non-QF_OK return
 * stops the walk and is returned. */
typedef qf_status (*qf_store_image_fn)(const qf_store_image *img, void *user);
qf_status qf_store_image_foreach(qf_store *st, int status, qf_store_image_fn fn, void *user);

/* Ids of the images with the given status (-1: all), ascending. *ids: new
 * array the caller frees (qf_free), NULL when *n is 0. */
qf_status qf_store_image_ids(qf_store *st, int status, int64_t **ids, int64_t *n);

/* Marks an image embedded (ok) or failed (error, with `error` message;
 * width/height 0 when unknown). Sets indexed_at to now. QF_ERR_ARG if the
 * id does not exist. */
qf_status qf_store_image_mark_ok(qf_store *st, int64_t id, int width, int height);
qf_status qf_store_image_mark_error(qf_store *st, int64_t id, int width, int height,
                                    const char *error);

/* Records the content hash (SHA-256 hex) of an image, e.g. once the
 * embedder has read the file. Setting the first hash of an image keeps its
 * captions and caches; QF_ERR_ARG if the id does not exist. */
qf_status qf_store_image_set_hash(qf_store *st, int64_t id, const char *hash);

/* Deletes an image with its captions and cached features (absent id: QF_OK). */
qf_status qf_store_image_delete(qf_store *st, int64_t id);

/* counts[QF_IMAGE_STATUS_COUNT] (caller-owned) receives the number of
 * images in each status. */
qf_status qf_store_image_counts(qf_store *st, int64_t *counts);

/* ---- ITC features ----------------------------------------------------------------------
 * The exact float32 features [n_query, dim] of each embedded image (what
 * the FAISS index is built from). They belong to ok images: an image that
 * goes back to pending or to error loses them. Stored little-endian. */
/* Storage type of the features: float32 (default, exact) or IEEE half
 * (meta store_dtype 'f16', table image_feats_f16: half the size; values
 * read back within 2^-11 relative, so exact rescoring within ~1e-3 of
 * F32). Read from meta at open; set_feats_f16 records it (the caller
 * makes sure no features of the other type are stored). Every feats_*
 * call converts, so readers always see float32. */
int       qf_store_feats_f16(const qf_store *st);
qf_status qf_store_set_feats_f16(qf_store *st, int f16);
/* feats[n_query * dim] (borrowed). Inserts or replaces. */
qf_status qf_store_feats_put(qf_store *st, int64_t image_id, int n_query, int dim, const float *feats);
/* Copies the features into out[n_query * dim] (caller-owned).
 * QF_ERR_MISSING if the image has none, QF_ERR_SHAPE if they were stored
 * with another shape. */
qf_status qf_store_feats_get(qf_store *st, int64_t image_id, int n_query, int dim, float *out);
/* Batch read for exact rescoring: the features of images ids[n] (borrowed)
 * into out[n * n_query * dim] (caller-owned), through one prepared
 * statement; found[n] (caller-owned) is 1 where the image has features, 0
 * where it has none (deleted or re-queued since the caller saw its id; its
 * rows of out are left as they were). QF_ERR_SHAPE as qf_store_feats_get. */
qf_status qf_store_feats_get_many(qf_store *st, int64_t n, const int64_t *ids, int n_query, int dim,
                                  float *out, int *found);
/* Calls fn for the features of every ok image, in image id order; feats
 * [n_query * dim as stored] is borrowed, valid during the call. fn must not
 * write to the store; a non-QF_OK return stops the walk and is returned. */
/* Read-ahead for a qf_store_feats_get_many over `ids` (in that order):
 * background readers on their own read-only connections bring the blobs
 * into the OS page cache while the caller reads them, so that cold reads
 * overlap. Only a hint: it changes no result and reports no error (NULL
 * when it could not start). `ids` must stay valid, and the store open,
 * until qf_store_prefetch_end stops and joins them (NULL ok). */
typedef struct qf_store_prefetch qf_store_prefetch;
qf_store_prefetch *qf_store_feats_prefetch(qf_store *st, int64_t n, const int64_t *ids);
void qf_store_prefetch_end(qf_store_prefetch *pf);

typedef qf_status (*qf_store_feats_fn)(int64_t image_id, const float *feats, void *user);
qf_status qf_store_feats_foreach(qf_store *st, qf_store_feats_fn fn, void *user);

/* ---- captions ---------------------------------------------------------------------- */

/* Key: (image, model fingerprint, prompt, settings text such as
 * "greedy,max_new_tokens=30"). *text and *ids_json: new strings the caller
 * frees (qf_free), both NULL when absent. ids_json may be NULL if unwanted. */
qf_status qf_store_caption_get(qf_store *st, int64_t image_id, const char *fingerprint,
                               const char *prompt, const char *settings,
                               char **text, char **ids_json);
/* Inserts or replaces. QF_ERR_DB if the image does not exist. */
qf_status qf_store_caption_put(qf_store *st, int64_t image_id, const char *fingerprint,
                               const char *prompt, const char *settings,
                               const char *text, const char *ids_json);

/* ---- vision-feature cache (--keep-vision) --------------------------------------------
 * Stored as IEEE half precision (little-endian), converted with
 * round-to-nearest-even; values beyond ±65504 become ±inf. */
/* x[n_tok * dim] (borrowed). Inserts or replaces. */
qf_status qf_store_vision_put(qf_store *st, int64_t image_id, int n_tok, int dim, const float *x);
/* *x: new array [n_tok * dim] the caller frees (qf_free), NULL when the
 * image has no cached features. */
qf_status qf_store_vision_get(qf_store *st, int64_t image_id, float **x, int *n_tok, int *dim);

/* ---- checks --------------------------------------------------------------- */

/* PRAGMA integrity_check and foreign_key_check: QF_OK when both pass,
 * QF_ERR_DB with SQLite's report otherwise. */
qf_status qf_store_integrity_check(qf_store *st);

#endif
