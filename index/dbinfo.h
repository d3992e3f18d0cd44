/* dbinfo.h - what `qformer info --db` reports about an index, and the
 * consistency check between the store and the FAISS file (--check). */
#ifndef QF_DBINFO_H
#define QF_DBINFO_H

#include "embed/common.h"
#include "index/store.h"

#include <jansson.h>
#include <stdint.h>

typedef struct {
    int64_t counts[QF_IMAGE_STATUS_COUNT];
    char    model_path[4096];
    char    fingerprint[80];
    char    factory[256];
    char    index_file[4096];
    int     dim, n_query, pooled, schema_version;
    int64_t generation, faiss_generation;
    int64_t db_bytes, faiss_bytes;   /* on disk (db includes -wal/-shm), -1 if absent */
    int64_t faiss_ntotal;            /* vectors in the FAISS file, -1 if unreadable  */
    /* search settings (index/ann.h): factory asked for ("auto" or a factory)
     * and why auto chose `factory`; the tuned nprobe/candidates (0: none)
     * and the recall@k they measured on tune_probes probe queries at
     * tune_images images (tune_recall < 0: never tuned) */
    char    store_dtype[16];         /* features in SQLite: "f32" or "f16"      */
    char    vision_dtype[16];        /* the ViT's arithmetic: "f32" or "bf16"  */
    char    factory_request[256];
    char    factory_reason[320];
    int     search_nprobe, search_candidates, tune_k, tune_probes;
    double  tune_recall, tune_target;
    int64_t tune_images;
} qf_dbinfo;

qf_status qf_dbinfo_get(const char *db_path, qf_dbinfo *out);

/* What `qformer info --db FILE.db --format json` prints, as a new jansson
 * object the caller releases (json_decref); NULL when a string is not
 * UTF-8 or memory runs out. */
json_t *qf_dbinfo_json(const char *db_path, const qf_dbinfo *d);

/* Calls fn for every image recorded as bad input (borrowed record). */
qf_status qf_dbinfo_failures(const char *db_path, qf_store_image_fn fn, void *user);

/* Checks SQLite's integrity, that every ok image has its features, and that
 * the FAISS file holds exactly the vectors of the ok images. With repair,
 * ok images without features are re-queued (status pending) and a FAISS
 * file out of step is marked stale, so the next `qformer index` run
 * rebuilds it. *problems receives the count found; lines describing each
 * finding and action go to log (may be NULL). */
typedef void (*qf_dbinfo_log_fn)(const char *line, void *user);
qf_status qf_dbinfo_check(const char *db_path, int repair, int64_t *problems, qf_dbinfo_log_fn log, void *user);

#endif
