/* indexer.c - the single writer of an index run (see indexer.h).
 *
 * Generations: meta "generation" is bumped by every committed write
 * transaction; meta "faiss_generation" records the generation the FAISS
 * file was written at. At the start of a run they are equal exactly when the
 * file holds the vectors of every ok image and nothing else; then the run
 * updates it incrementally (remove old ids, add new ones). Otherwise (a
 * killed run, a lost file, a new factory) it is rebuilt from the features
 * stored in SQLite. */
#include "index/indexer.h"

#include "embed/blip2.h"
#include "index/ann.h"
#include "index/scan.h"
#include "index/store.h"
#include "index/vindex.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>


typedef struct { int64_t id; char *path; } queued;

typedef struct {            /* a result waiting for the next checkpoint */
    int64_t id;
    int     ok, width, height;
    char    sha256[65];
    char   *error;
    float  *feats, *vis;
} held_result;

struct qf_indexer {
    qf_index_opts   o;
    qf_store       *st;
    qf_blip2_config cfg;
    char            fingerprint[65];
    char            factory[256];  /* the FAISS factory in use (auto: the last choice) */
    int             auto_factory;  /* --factory auto: chosen at finish from the corpus size */
    int64_t         budget;        /* --max-index-memory, bytes                          */
    char            factory_request[256]; /* what was asked for: auto or a factory       */
    const char     *vision_dtype;  /* "f32" or "bf16": the ViT's arithmetic (static)     */
    int             feats_f16;     /* features stored as F16                             */
    char           *faiss_path;
    int             Q, E, n_vis, vis_dim, pooled;
    int64_t         generation;
    int             in_sync;       /* FAISS file agrees with the store at start */
    int             in_txn;
    int             created;       /* this run created the database file */
    int             finished;      /* qf_indexer_finish succeeded        */
    int             settings_pending;   /* new database: meta written with the first results */
    int             settings_changed;   /* factory / pooled changed: FAISS to rebuild        */
    held_result    *held;          /* results not written yet (flush)          */
    size_t          n_held, cap_held, held_bytes;

    queued         *queue;         /* pending images, id order */
    size_t          n_queue, cap_queue, next;
    int64_t        *stale;         /* images whose old vectors must leave FAISS */
    size_t          n_stale, cap_stale;
    int64_t        *fresh;         /* images that became ok this run           */
    size_t          n_fresh, cap_fresh;

    qf_index_report rep;
    int             ranks;
    long           *per_rank;
    double          t0;
};

/* Room for element n in the array at *(void **)arr of *cap elements of
 * `elem` bytes, doubling when full. */
static qf_status reserve(void *arr, size_t *cap, size_t n, size_t elem) {
    if (n < *cap) return QF_OK;
    size_t c = *cap ? 2 * *cap : 256;
    void *a = qf_realloc(*(void **)arr, c * elem);
    if (!a) return qf_errorf(QF_ERR_NOMEM, "out of memory (%zu entries)", c);
    *(void **)arr = a;
    *cap = c;
    return QF_OK;
}

static qf_status push_id(int64_t **arr, size_t *n, size_t *cap, int64_t id) {
    qf_status s = reserve(arr, cap, *n, sizeof **arr);
    if (!s) (*arr)[(*n)++] = id;
    return s;
}

static qf_status meta_int(qf_store *st, const char *key, int64_t def, int64_t *out) {
    char *v = NULL;
    qf_status s = qf_store_meta_get(st, key, &v);
    if (s) return s;
    *out = v ? strtoll(v, NULL, 10) : def;
    qf_free(v);
    return QF_OK;
}

static qf_status meta_set_int(qf_store *st, const char *key, int64_t v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", (long long)v);
    return qf_store_meta_set(st, key, buf);
}

/* Commits the open checkpoint transaction, bumping the generation. */
static qf_status commit(qf_indexer *ix) {
    if (!ix->in_txn) return QF_OK;
    qf_status s = meta_set_int(ix->st, "generation", ++ix->generation);
    if (!s) s = qf_store_commit(ix->st);
    if (!s) ix->in_txn = 0;
    return s;
}

static qf_status begin(qf_indexer *ix) {
    if (ix->in_txn) return QF_OK;
    qf_status s = qf_store_begin(ix->st);
    if (!s) ix->in_txn = 1;
    return s;
}

static void held_free(held_result *h) {
    qf_free(h->error);
    qf_free(h->feats);
    qf_free(h->vis);
    memset(h, 0, sizeof *h);
}

/* ---- settings: model, factory, layout ----------------------------------- */

/* The settings of this run into meta, inside the caller's transaction. */
static qf_status write_settings(qf_indexer *ix) {
    qf_store *st = ix->st;
    char abs_model[PATH_MAX];
    qf_status s;
    if (!realpath(ix->o.model_dir, abs_model)) snprintf(abs_model, sizeof abs_model, "%s", ix->o.model_dir);
    if ((s = qf_store_meta_set(st, "model_path", abs_model)) ||
        (s = qf_store_meta_set(st, "model_fingerprint", ix->fingerprint)) ||
        (s = qf_store_meta_set(st, "factory", ix->factory)) ||
        (s = qf_store_meta_set(st, "factory_request", ix->factory_request)) ||
        (s = qf_store_meta_set(st, "vision_dtype", ix->vision_dtype)) ||
        (s = qf_store_set_feats_f16(st, ix->feats_f16)) ||
        (s = meta_set_int(st, "max_index_memory", ix->budget)) ||
        (s = meta_set_int(st, "pooled", ix->pooled)) ||
        (s = meta_set_int(st, "dim", ix->E)) ||
        (s = meta_set_int(st, "n_query", ix->Q)) ||
        (ix->settings_changed && (s = meta_set_int(st, "faiss_generation", -1))))
        return s;
    return QF_OK;
}

static qf_status check_settings(qf_indexer *ix) {
    qf_store *st = ix->st;
    char *fp = NULL, *factory = NULL, *pooled = NULL, *model_path = NULL, *request = NULL;
    int64_t budget = 0;
    qf_status s;
    if ((s = qf_store_meta_get(st, "model_fingerprint", &fp)) || (s = qf_store_meta_get(st, "factory", &factory)) ||
        (s = qf_store_meta_get(st, "pooled", &pooled)) || (s = qf_store_meta_get(st, "model_path", &model_path)) ||
        (s = qf_store_meta_get(st, "factory_request", &request)) ||
        (s = meta_int(st, "max_index_memory", QF_ANN_DEFAULT_BUDGET, &budget)))
        goto done;
    if (fp && strcmp(fp, ix->fingerprint)) {
        s = qf_errorf(QF_ERR_ARG, "%s was built with another model (%s, fingerprint %.16s); this model's "
                      "fingerprint is %.16s: use a new --db for it", ix->o.db_path,
                      model_path ? model_path : "?", fp, ix->fingerprint);
        goto done;
    }
    /* the ViT's arithmetic is recorded: F32 and BF16 features never share an index */
    char *vdt = NULL;
    const char *want_dt = ix->o.vit_bf16 ? "bf16" : "f32";
    int64_t counts[QF_IMAGE_STATUS_COUNT];
    if ((s = qf_store_meta_get(st, "vision_dtype", &vdt)) || (s = qf_store_image_counts(st, counts))) goto done;
    if (strcmp(vdt ? vdt : "f32", want_dt) && counts[QF_IMAGE_OK] > 0) {
        s = qf_errorf(QF_ERR_ARG, "%s holds features computed with a %s ViT; --dtype %s would mix %s and %s "
                      "features in one index: run with --dtype %s, or index into a new --db",
                      ix->o.db_path, vdt ? vdt : "f32", want_dt, vdt ? vdt : "f32", want_dt, vdt ? vdt : "f32");
        qf_free(vdt);
        goto done;
    }
    qf_free(vdt);
    /* the features' storage type: a database holding features keeps its own */
    const char *have_st = qf_store_feats_f16(st) ? "f16" : "f32";
    const char *want_st = ix->o.store_dtype ? ix->o.store_dtype : have_st;
    if (strcmp(want_st, "f32") && strcmp(want_st, "f16")) {
        s = qf_errorf(QF_ERR_ARG, "--store-dtype must be f32 or f16, not '%s'", want_st);
        goto done;
    }
    if (strcmp(want_st, have_st) && counts[QF_IMAGE_OK] > 0) {
        s = qf_errorf(QF_ERR_ARG, "%s stores its features as %s; --store-dtype %s cannot apply to a database "
                      "that holds features: index into a new --db", ix->o.db_path, have_st, want_st);
        goto done;
    }
    int db_pooled = pooled ? atoi(pooled) : 0;
    ix->pooled = ix->o.pooled >= 0 ? ix->o.pooled : db_pooled;
    /* what was asked for: this run's --factory, else the database's request
     * (a database from before `auto` asked for its factory), else auto */
    const char *req = ix->o.factory ? ix->o.factory : request ? request : factory ? factory : "auto";
    ix->auto_factory = !strcmp(req, "auto");
    ix->budget = ix->o.max_index_memory > 0 ? ix->o.max_index_memory : budget;
    snprintf(ix->factory, sizeof ix->factory, "%s",
             !ix->auto_factory ? req : factory ? factory : "Flat");   /* auto decides at finish */
    snprintf(ix->factory_request, sizeof ix->factory_request, "%s", req);
    ix->vision_dtype = want_dt;
    ix->feats_f16 = !strcmp(want_st, "f16");
    ix->settings_changed = (factory && strcmp(factory, ix->factory)) || (pooled && db_pooled != ix->pooled);
    /* A new database records its model with the first results, once the
     * model has embedded something: a model that fails to load or run does
     * not claim the database (the right one was refused next). The feature
     * storage type is known now, before any feature is written. */
    if (!fp) { ix->settings_pending = 1; goto done; }
    if ((s = qf_store_begin(st))) goto done;
    if ((s = write_settings(ix))) { qf_store_rollback(st); goto done; }
    s = qf_store_commit(st);
done:
    qf_free(fp); qf_free(factory); qf_free(pooled); qf_free(model_path); qf_free(request);
    return s;
}

/* ---- reconcile the scan with the store ----------------------------------- */

typedef struct {
    qf_store_image *rows;   /* copies (strings duplicated) */
    size_t          n, cap;
} image_list;

static qf_status collect(const qf_store_image *img, void *user) {
    image_list *l = user;
    qf_status s = reserve(&l->rows, &l->cap, l->n, sizeof *l->rows);
    if (s) return s;
    qf_store_image *d = &l->rows[l->n];
    *d = *img;
    d->path = qf_strdup(img->path);
    d->content_hash = NULL;
    d->error = NULL;
    if (!d->path) return qf_errorf(QF_ERR_NOMEM, "out of memory");
    l->n++;
    return QF_OK;
}

static void image_list_free(image_list *l) {
    for (size_t i = 0; i < l->n; i++) qf_free((char *)l->rows[i].path);
    qf_free(l->rows);
}

static int row_cmp(const void *a, const void *b) {
    return strcmp(((const qf_store_image *)a)->path, ((const qf_store_image *)b)->path);
}

static int under_root(const char *path, char *const *roots, int n) {
    for (int i = 0; i < n; i++) {
        size_t l = strlen(roots[i]);
        if (!strncmp(path, roots[i], l) && (path[l] == '/' || path[l] == 0)) return 1;
    }
    return 0;
}

static int str_cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* 1 if `path` or one of its parent folders is among the sorted paths the
 * scan could not read (an unreadable folder, an I/O error). */
static int under_scan_error(const char *path, char *const *errs, size_t n) {
    if (!n) return 0;
    char buf[PATH_MAX];
    size_t len = strlen(path);
    if (len >= sizeof buf) return 0;
    memcpy(buf, path, len + 1);
    for (;;) {
        const char *key = buf;
        if (bsearch(&key, errs, n, sizeof *errs, str_cmp)) return 1;
        char *slash = strrchr(buf, '/');
        if (!slash || slash == buf) return 0;
        *slash = 0;
    }
}

static qf_status reconcile(qf_indexer *ix) {
    qf_scan scan;
    image_list old = { 0 };
    char **roots = NULL, **errs = NULL;
    int n_roots = 0;
    qf_status s = qf_scan_run(ix->o.roots, ix->o.n_roots, &scan);
    if (s) return s;
    ix->rep.files = (long)scan.n_files;
    ix->rep.scan_errors = (long)scan.n_errors;
    errs = qf_calloc(scan.n_errors + 1, sizeof *errs);
    if (!errs) { s = qf_errorf(QF_ERR_NOMEM, "out of memory"); goto done; }
    for (size_t i = 0; i < scan.n_errors; i++) {
        qf_log(QF_LOG_WARN, "%s: %s", scan.errors[i].path, scan.errors[i].error);
        ix->rep.named_errors += scan.errors[i].named;
        errs[i] = scan.errors[i].path;
    }
    qsort(errs, scan.n_errors, sizeof *errs, str_cmp);
    if ((s = qf_store_image_foreach(ix->st, -1, collect, &old))) goto done;
    if (old.n) qsort(old.rows, old.n, sizeof *old.rows, row_cmp);   /* rows is NULL when empty: UB for qsort */
    roots = qf_calloc((size_t)ix->o.n_roots + 1, sizeof *roots);
    if (!roots) { s = qf_errorf(QF_ERR_NOMEM, "out of memory"); goto done; }
    for (int i = 0; i < ix->o.n_roots; i++) {
        char *r = ix->o.roots[i][0] == '@' ? NULL : realpath(ix->o.roots[i], NULL);
        if (r) roots[n_roots++] = r;
    }
    if ((s = begin(ix))) goto done;
    /* merge two sorted lists: scan files and stored rows */
    size_t i = 0, j = 0;
    while (!s && (i < scan.n_files || j < old.n)) {
        int c = i == scan.n_files ? 1 : j == old.n ? -1 : strcmp(scan.files[i].path, old.rows[j].path);
        if (c < 0) {                        /* new file */
            int64_t id;
            s = qf_store_image_upsert(ix->st, scan.files[i].path, scan.files[i].size, scan.files[i].mtime_ns, NULL, &id);
            i++;
        } else if (c > 0) {                 /* stored, not seen: vanished? */
            const qf_store_image *r = &old.rows[j++];
            struct stat stt;
            int st_rc = stat(r->path, &stt), st_err = errno;
            int absent = st_rc != 0 && (st_err == ENOENT || st_err == ENOTDIR || st_err == ELOOP);
            /* A folder the scan could not read (permissions, I/O error)
             * hides its files: unless they are known to be gone they are
             * kept as they are, not dropped (they were: a passing EACCES or
             * EIO on a folder threw away the embeddings of all its files). */
            if (!absent && under_scan_error(r->path, errs, scan.n_errors)) {
                if (r->status == QF_IMAGE_OK) ix->rep.unchanged++;
            } else if (under_root(r->path, roots, n_roots) || st_rc != 0) {
                if (r->status == QF_IMAGE_OK) s = push_id(&ix->stale, &ix->n_stale, &ix->cap_stale, r->id);
                if (!s) s = qf_store_image_delete(ix->st, r->id);
                ix->rep.removed++;
            }
        } else {                            /* both: changed? */
            const qf_scan_file *f = &scan.files[i++];
            const qf_store_image *r = &old.rows[j++];
            int same = f->size == r->size && f->mtime_ns == r->mtime_ns;
            if (same && (r->status == QF_IMAGE_OK || (r->status == QF_IMAGE_ERROR && !ix->o.retry_failed))) {
                ix->rep.unchanged++;
            } else if (!same || r->status == QF_IMAGE_ERROR) {
                int64_t id;
                if (r->status == QF_IMAGE_OK) s = push_id(&ix->stale, &ix->n_stale, &ix->cap_stale, r->id);
                if (!s) s = qf_store_image_upsert(ix->st, f->path, f->size, f->mtime_ns, NULL, &id);
            }                               /* pending: stays queued */
        }
    }
    if (!s) s = commit(ix);
    if (s) { qf_store_rollback(ix->st); ix->in_txn = 0; }
done:
    for (int k = 0; k < n_roots; k++) free(roots[k]);
    qf_free(roots);
    qf_free(errs);
    image_list_free(&old);
    qf_scan_free(&scan);
    return s;
}

static qf_status enqueue(const qf_store_image *img, void *user) {
    qf_indexer *ix = user;
    qf_status s = reserve(&ix->queue, &ix->cap_queue, ix->n_queue, sizeof *ix->queue);
    if (s) return s;
    queued *q = &ix->queue[ix->n_queue];
    q->id = img->id;
    q->path = qf_strdup(img->path);
    if (!q->path) return qf_errorf(QF_ERR_NOMEM, "out of memory");
    ix->n_queue++;
    return QF_OK;
}

/* Removes the "<faiss_path>.tmp.<pid>" files qf_vindex_write leaves behind
 * when a run is killed while it writes the index (found by the SIGKILL
 * test: each such kill left one more file, as large as the index, beside
 * the database, forever). Called under the indexer lock, when no other
 * process can be writing one. */
static void remove_stale_temps(const char *faiss_path) {
    const char *slash = strrchr(faiss_path, '/');
    char dir[PATH_MAX], prefix[PATH_MAX];
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == faiss_path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - faiss_path), faiss_path);
    int plen = snprintf(prefix, sizeof prefix, "%s.tmp.", slash ? slash + 1 : faiss_path);
    DIR *d = opendir(dir);
    if (!d || plen <= 0 || (size_t)plen >= sizeof prefix) { if (d) closedir(d); return; }
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *rest = e->d_name + plen;
        if (strncmp(e->d_name, prefix, (size_t)plen) || !*rest) continue;
        while (isdigit((unsigned char)*rest)) rest++;
        if (*rest) continue;
        char path[PATH_MAX];
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path) continue;
        if (unlink(path) == 0) qf_log(QF_LOG_INFO, "removed %s, left by an interrupted run", path);
    }
    closedir(d);
}

/* ---- open / next / put ---------------------------------------------------- */

qf_status qf_indexer_recorded_model(const char *db_path, char **model_path) {
    *model_path = NULL;
    if (access(db_path, F_OK) != 0) return QF_OK;
    qf_store *st = NULL;
    qf_status s = qf_store_open(db_path, QF_STORE_READONLY, &st);
    if (s == QF_ERR_FORMAT && strstr(qf_last_error(), "empty")) return QF_OK;   /* no schema yet */
    if (!s) s = qf_store_meta_get(st, "model_path", model_path);
    qf_store_close(st);
    return s;
}

qf_status qf_indexer_open(const qf_index_opts *o, int ranks, qf_indexer **out) {
    *out = NULL;
    qf_indexer *ix = qf_calloc(1, sizeof *ix);
    if (!ix) return qf_errorf(QF_ERR_NOMEM, "out of memory");
    ix->o = *o;
    if (ix->o.checkpoint < 1) ix->o.checkpoint = 64;
    if (ix->o.batch < 1) ix->o.batch = 8;
    ix->ranks = ranks;
    ix->per_rank = qf_calloc((size_t)ranks, sizeof *ix->per_rank);
    ix->faiss_path = qf_store_index_path(o->db_path);
    qf_status s;
    if (!ix->per_rank || !ix->faiss_path) { s = qf_errorf(QF_ERR_NOMEM, "out of memory"); goto fail; }
    if ((s = qf_blip2_inspect(o->model_dir, &ix->cfg, ix->fingerprint))) goto fail;
    /* The checkpoint kind first: a captioning checkpoint (OPT / Flan-T5) has
     * no Q-Former text input nor ITC projections to index with. */
    if (!ix->cfg.qformer.use_qformer_text_input || strstr(ix->cfg.architecture, "ConditionalGeneration")) {
        s = qf_errorf(QF_ERR_ARG, "%s is a captioning checkpoint (%s); index needs a retrieval checkpoint such as "
                      "Salesforce/blip2-itm-vit-g", o->model_dir,
                      ix->cfg.architecture[0] ? ix->cfg.architecture : "no Q-Former text input");
        goto fail;
    }
    ix->Q = ix->cfg.num_query_tokens;
    ix->E = ix->cfg.image_text_hidden_size;
    int g = ix->cfg.vision.image_size / ix->cfg.vision.patch_size;
    ix->n_vis = 1 + g * g;
    ix->vis_dim = ix->cfg.vision.hidden_size;
    ix->created = access(o->db_path, F_OK) != 0;
    if ((s = qf_store_open(o->db_path, QF_STORE_LOCK, &ix->st))) goto fail;
    remove_stale_temps(ix->faiss_path);
    if ((s = check_settings(ix))) goto fail;
    int64_t fgen;
    if ((s = meta_int(ix->st, "generation", 0, &ix->generation)) ||
        (s = meta_int(ix->st, "faiss_generation", -1, &fgen)))
        goto fail;
    int64_t fbytes;
    if ((s = meta_int(ix->st, "faiss_bytes", -1, &fbytes))) goto fail;
    struct stat stt;
    ix->in_sync = fgen == ix->generation && stat(ix->faiss_path, &stt) == 0;
    /* A file that is not the one the last run wrote (truncated, overwritten)
     * is rebuilt from the stored features: a plain re-run repairs it. */
    if (ix->in_sync && fbytes >= 0 && (int64_t)stt.st_size != fbytes) {
        qf_log(QF_LOG_WARN, "%s: the vector index is damaged (%lld bytes, %lld were written); rebuilding it "
               "from the stored features", ix->faiss_path, (long long)stt.st_size, (long long)fbytes);
        ix->in_sync = 0;
    }
    if ((s = reconcile(ix))) goto fail;
    if ((s = qf_store_image_foreach(ix->st, QF_IMAGE_PENDING, enqueue, ix))) goto fail;
    ix->rep.queued = (long)ix->n_queue;
    ix->t0 = qf_now();
    *out = ix;
    return QF_OK;
fail:
    qf_indexer_close(ix);
    return s;
}

/* A database this run created and that holds nothing of worth (a mistyped
 * folder, a model that failed, before any result) goes with its files. */
static void remove_created(qf_indexer *ix) {
    static const char *const suffix[] = { "-wal", "-shm", ".faiss", ".lock", "" };
    for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
        char p[PATH_MAX];
        if (snprintf(p, sizeof p, "%s%s", ix->o.db_path, suffix[i]) < (int)sizeof p) unlink(p);
    }
}

void qf_indexer_close(qf_indexer *ix) {
    if (!ix) return;
    if (ix->in_txn) qf_store_rollback(ix->st);
    int discard = ix->st && ix->created && (ix->rep.discarded || (!ix->finished && ix->settings_pending));
    qf_store_close(ix->st);
    if (discard) remove_created(ix);
    for (size_t i = 0; i < ix->n_queue; i++) qf_free(ix->queue[i].path);
    qf_free(ix->queue); qf_free(ix->stale); qf_free(ix->fresh); qf_free(ix->per_rank);
    for (size_t i = 0; i < ix->n_held; i++) held_free(&ix->held[i]);   /* not committed: redone next run */
    qf_free(ix->held);
    qf_free(ix->faiss_path);
    qf_free(ix);
}

int qf_indexer_feat_floats(const qf_indexer *ix) { return ix->Q * ix->E; }
int qf_indexer_vis_values(const qf_indexer *ix) { return ix->n_vis * ix->vis_dim; }

int qf_indexer_next(qf_indexer *ix, int max, int64_t *ids, const char **paths) {
    int n = 0;
    while (n < max && ix->next < ix->n_queue) {
        ids[n] = ix->queue[ix->next].id;
        paths[n] = ix->queue[ix->next].path;
        n++;
        ix->next++;
    }
    return n;
}

void qf_indexer_rank_done(qf_indexer *ix, int rank, int n) {
    if (rank >= 0 && rank < ix->ranks) ix->per_rank[rank] += n;
}

/* Results are held in memory and written in one short transaction per
 * checkpoint, so the database's write lock is never held while the ranks
 * compute (a concurrent `search --caption` can cache its captions). */
#define HELD_MAX_BYTES ((size_t)64 << 20)

static qf_status write_one(qf_indexer *ix, const held_result *r) {
    qf_status s;
    if (r->ok) {
        if ((s = qf_store_feats_put(ix->st, r->id, ix->Q, ix->E, r->feats)) ||
            (s = qf_store_image_mark_ok(ix->st, r->id, r->width, r->height)))
            return s;
        if (r->vis && (s = qf_store_vision_put(ix->st, r->id, ix->n_vis, ix->vis_dim, r->vis))) return s;
        if ((s = push_id(&ix->fresh, &ix->n_fresh, &ix->cap_fresh, r->id))) return s;
    } else if ((s = qf_store_image_mark_error(ix->st, r->id, r->width, r->height, r->error))) {
        return s;
    }
    if (r->sha256[0] && (s = qf_store_image_set_hash(ix->st, r->id, r->sha256))) return s;
    return QF_OK;
}

/* Writes the held results in one transaction (bumping the generation). */
static qf_status flush_held(qf_indexer *ix) {
    if (!ix->n_held && !ix->settings_pending) return QF_OK;
    qf_status s = begin(ix);
    if (!s && ix->settings_pending) s = write_settings(ix);
    for (size_t i = 0; !s && i < ix->n_held; i++) s = write_one(ix, &ix->held[i]);
    if (!s) s = commit(ix);
    if (!s) ix->settings_pending = 0;
    if (s && ix->in_txn) { qf_store_rollback(ix->st); ix->in_txn = 0; }
    for (size_t i = 0; i < ix->n_held; i++) held_free(&ix->held[i]);
    ix->n_held = 0;
    ix->held_bytes = 0;
    return s;
}

qf_status qf_indexer_put(qf_indexer *ix, const qf_indexer_result *r) {
    qf_status s = reserve(&ix->held, &ix->cap_held, ix->n_held, sizeof *ix->held);
    if (s) return s;
    held_result *h = &ix->held[ix->n_held];
    memset(h, 0, sizeof *h);
    h->id = r->id;
    h->ok = r->ok;
    h->width = r->width;
    h->height = r->height;
    snprintf(h->sha256, sizeof h->sha256, "%s", r->sha256 ? r->sha256 : "");
    size_t nf = (size_t)ix->Q * ix->E, nv = (size_t)ix->n_vis * ix->vis_dim;
    if (r->ok) {
        h->feats = qf_malloc(nf * sizeof *h->feats);
        if (h->feats) memcpy(h->feats, r->feats, nf * sizeof *h->feats);
        if (r->vis && (h->vis = qf_malloc(nv * sizeof *h->vis))) memcpy(h->vis, r->vis, nv * sizeof *h->vis);
        if (!h->feats || (r->vis && !h->vis)) { held_free(h); return qf_errorf(QF_ERR_NOMEM, "out of memory holding results"); }
        ix->held_bytes += (nf + (r->vis ? nv : 0)) * sizeof(float);
        ix->rep.embedded++;
    } else {
        if (!(h->error = qf_strdup(r->error ? r->error : "unknown error")))
            return qf_errorf(QF_ERR_NOMEM, "out of memory holding results");
        qf_log(QF_LOG_WARN, "skipped: %s", r->error);
        ix->rep.failed++;
    }
    ix->n_held++;
    if (ix->ranks == 1) ix->per_rank[0]++;
    if ((ix->n_held >= (size_t)ix->o.checkpoint || ix->held_bytes >= HELD_MAX_BYTES) && (s = flush_held(ix))) return s;
    if (ix->o.on_progress) {
        qf_index_progress p = {
            .done = ix->rep.embedded + ix->rep.failed, .total = (long)ix->n_queue, .failed = ix->rep.failed,
            .elapsed = qf_now() - ix->t0, .ranks = ix->ranks, .per_rank = ix->per_rank,
        };
        p.rate = p.elapsed > 0 ? p.done / p.elapsed : 0;
        ix->o.on_progress(&p, ix->o.progress_user);
    }
    return QF_OK;
}

/* ---- FAISS ---------------------------------------------------------------- */

/* The vectors of one image as stored in FAISS: Q rows (exact) or their
 * normalised mean (pooled). */
static void image_vectors(const qf_indexer *ix, int64_t id, const float *feats, float *vec, int64_t *ids) {
    if (!ix->pooled) {
        memcpy(vec, feats, (size_t)ix->Q * ix->E * sizeof *vec);
        for (int q = 0; q < ix->Q; q++) ids[q] = id * ix->Q + q;
        return;
    }
    double ss = 0;
    for (int e = 0; e < ix->E; e++) {
        double acc = 0;
        for (int q = 0; q < ix->Q; q++) acc += feats[(size_t)q * ix->E + e];
        vec[e] = (float)(acc / ix->Q);
        ss += (double)vec[e] * vec[e];
    }
    float inv = (float)(1.0 / fmax(sqrt(ss), 1e-12));
    for (int e = 0; e < ix->E; e++) vec[e] *= inv;
    ids[0] = id;
}

typedef struct {
    qf_indexer *ix;
    qf_vindex  *vi;
    float      *vec;      /* batch buffer */
    int64_t    *ids;
    int64_t     n, cap;   /* vectors in the batch / capacity */
    int         train;    /* collecting the training sample */
    int64_t     added, total, next_log;   /* vectors added / to add; progress */
    double      t0;
} feeder;

static qf_status flush(feeder *f) {
    qf_status s = QF_OK;
    if (f->n && !f->train) {
        s = qf_vindex_add(f->vi, f->n, f->vec, f->ids);
        f->added += f->n;
        /* a million images take minutes here: say how far it got, every 10% */
        if (!s && f->total >= 1000000 && f->added >= f->next_log) {
            double dt = qf_now() - f->t0;
            qf_log(QF_LOG_INFO, "adding to %s: %lld of %lld vectors (%.0f%%, %.0f s, ~%.0f s left)",
                   f->ix->factory, (long long)f->added, (long long)f->total, 100.0 * f->added / f->total,
                   dt, dt * (double)(f->total - f->added) / (double)f->added);
            f->next_log = f->added + f->total / 10;
        }
    }
    if (!f->train) f->n = 0;
    return s;
}

static qf_status feed(int64_t id, const float *feats, void *user) {
    feeder *f = user;
    const qf_indexer *ix = f->ix;
    int per = ix->pooled ? 1 : ix->Q;
    if (f->n + per > f->cap) {
        if (f->train) return QF_OK;
        qf_status s = flush(f);
        if (s) return s;
    }
    image_vectors(ix, id, feats, f->vec + f->n * ix->E, f->ids + f->n);
    f->n += per;
    return QF_OK;
}

static qf_status train_sample(qf_indexer *ix, int64_t stride, feeder *f) {
    enum { BATCH = 64 };
    int64_t *all = NULL, n_all = 0, ids[BATCH];
    int found[BATCH];
    float *feats = qf_malloc((size_t)BATCH * ix->Q * ix->E * sizeof *feats);
    qf_status s = feats ? qf_store_image_ids(ix->st, QF_IMAGE_OK, &all, &n_all)
                        : qf_errorf(QF_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; !s && i < n_all; i += stride * BATCH) {
        int n = 0;
        for (int64_t j = i; j < n_all && n < BATCH; j += stride) ids[n++] = all[j];
        if ((s = qf_store_feats_get_many(ix->st, n, ids, ix->Q, ix->E, feats, found))) break;
        for (int j = 0; j < n && !s; j++)
            if (found[j]) s = feed(ids[j], feats + (size_t)j * ix->Q * ix->E, f);
    }
    qf_free(all);
    qf_free(feats);
    return s;
}

static qf_status rebuild(qf_indexer *ix, qf_vindex **out) {
    qf_vindex *vi = NULL;
    feeder f = { .ix = ix };
    int per = ix->pooled ? 1 : ix->Q;
    qf_status s = qf_vindex_create(ix->factory, ix->E, &vi);
    if (s) return s;
    int64_t counts[QF_IMAGE_STATUS_COUNT];
    if ((s = qf_store_image_counts(ix->st, counts))) goto fail;
    f.vi = vi;
    if (!qf_vindex_is_trained(vi)) {
        int64_t min_n = 0, good_n = 0, have = counts[QF_IMAGE_OK] * per;
        qf_vindex_train_size(vi, &min_n, &good_n);
        int64_t want = good_n > 0 && good_n < QF_ANN_TRAIN_MAX_VECTORS ? good_n : QF_ANN_TRAIN_MAX_VECTORS;
        int64_t stride = have > want ? (have + want - 1) / want : 1;
        f.cap = (have + stride - 1) / stride + per;
        f.train = 1;
        f.vec = qf_malloc((size_t)f.cap * ix->E * sizeof(float));
        f.ids = qf_malloc((size_t)f.cap * sizeof(int64_t));
        if (!f.vec || !f.ids) { s = qf_errorf(QF_ERR_NOMEM, "out of memory for %lld training vectors", (long long)f.cap); goto fail; }
        /* every stride-th image; only those features are read (a full pass
         * over a million images' features would read 31 GiB) */
        if ((s = train_sample(ix, stride, &f))) goto fail;
        qf_log(QF_LOG_INFO, "training %s on %lld vectors", ix->factory, (long long)f.n);
        if ((s = qf_vindex_train(vi, f.n, f.vec))) goto fail;
        if ((s = meta_set_int(ix->st, "trained_vectors", have))) goto fail;
        qf_free(f.vec); qf_free(f.ids);
        f.vec = NULL; f.ids = NULL;
    } else if ((s = meta_set_int(ix->st, "trained_vectors", 0))) {
        goto fail;
    }
    f.train = 0;
    f.n = 0;
    f.total = counts[QF_IMAGE_OK] * per;
    f.next_log = f.total / 10;
    f.t0 = qf_now();
    f.cap = (int64_t)per * 1024;
    f.vec = qf_malloc((size_t)f.cap * ix->E * sizeof(float));
    f.ids = qf_malloc((size_t)f.cap * sizeof(int64_t));
    if (!f.vec || !f.ids) { s = qf_errorf(QF_ERR_NOMEM, "out of memory"); goto fail; }
    if ((s = qf_store_feats_foreach(ix->st, feed, &f)) || (s = flush(&f))) goto fail;
    qf_free(f.vec); qf_free(f.ids);
    *out = vi;
    return QF_OK;
fail:
    qf_free(f.vec); qf_free(f.ids);
    qf_vindex_free(vi);
    return s;
}

static qf_status update(qf_indexer *ix, qf_vindex *vi) {
    int per = ix->pooled ? 1 : ix->Q;
    qf_status s = QF_OK;
    if (ix->n_stale) {
        int64_t *ids = qf_malloc(ix->n_stale * per * sizeof *ids);
        if (!ids) return qf_errorf(QF_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < ix->n_stale; i++)
            for (int q = 0; q < per; q++) ids[i * per + q] = ix->pooled ? ix->stale[i] : ix->stale[i] * per + q;
        s = qf_vindex_remove(vi, (int64_t)ix->n_stale * per, ids, NULL);
        qf_free(ids);
        if (s) return s;
    }
    float *feats = qf_malloc((size_t)ix->Q * ix->E * sizeof *feats);
    float *vec = qf_malloc((size_t)per * ix->E * sizeof *vec);
    int64_t *ids = qf_malloc((size_t)per * sizeof *ids);
    if (!feats || !vec || !ids) s = qf_errorf(QF_ERR_NOMEM, "out of memory");
    for (size_t i = 0; !s && i < ix->n_fresh; i++) {
        if ((s = qf_store_feats_get(ix->st, ix->fresh[i], ix->Q, ix->E, feats))) break;
        image_vectors(ix, ix->fresh[i], feats, vec, ids);
        s = qf_vindex_add(vi, per, vec, ids);
    }
    qf_free(feats); qf_free(vec); qf_free(ids);
    return s;
}

/* --factory auto: chooses the factory for the corpus at hand (qf_ann_choose),
 * keeping the current one while the corpus stays within 2x of the size it
 * was chosen for and it fits the budget (no rebuild back and forth at a
 * boundary); a new choice rebuilds the index. Any trained index is also
 * retrained once the corpus has grown 4x past the size it was trained at. */
static qf_status choose_factory(qf_indexer *ix, int64_t n_ok) {
    const int per = ix->pooled ? 1 : ix->Q;
    const int64_t n = n_ok * per;
    int64_t at, trained;
    qf_status s;
    if ((s = meta_int(ix->st, "factory_chosen_at", -1, &at)) || (s = meta_int(ix->st, "trained_vectors", 0, &trained)))
        return s;
    if (ix->auto_factory && n > 0) {
        char f[256], why[320];
        qf_ann_choose(n, ix->E, ix->budget, f, sizeof f, why, sizeof why);
        int keep = at > 0 && n <= 2 * at && 2 * n >= at &&
                   qf_ann_index_bytes(ix->factory, n, ix->E) <= ix->budget;
        if (at <= 0 || (strcmp(f, ix->factory) && !keep)) {
            if (strcmp(f, ix->factory)) {
                qf_log(QF_LOG_INFO, "factory auto: %s (was %s): %s", f, ix->factory, why);
                ix->in_sync = 0;           /* rebuilt below with the new factory */
            }
            snprintf(ix->factory, sizeof ix->factory, "%s", f);
            if ((s = qf_store_meta_set(ix->st, "factory", f)) || (s = qf_store_meta_set(ix->st, "factory_reason", why)) ||
                (s = meta_set_int(ix->st, "factory_chosen_at", n)))
                return s;
        }
    }
    if (ix->in_sync && trained > 0 && n > 4 * trained) {
        qf_log(QF_LOG_INFO, "%s was trained at %lld vectors, the corpus now has %lld: retraining it",
               ix->factory, (long long)trained, (long long)n);
        ix->in_sync = 0;
    }
    return QF_OK;
}

/* Tunes the search settings when the index was rebuilt or the recorded
 * tuning is stale (index/ann.h), and puts what is recorded in the report. */
static qf_status tune(qf_indexer *ix, qf_vindex *vi, int64_t n_ok) {
    qf_ann_layout lay = { .n_query = ix->Q, .dim = ix->E, .pooled = ix->pooled };
    snprintf(lay.factory, sizeof lay.factory, "%s", ix->factory);
    lay.exact = qf_ann_factory_is_exact(ix->factory, ix->pooled);
    int needed = 0;
    qf_status s = qf_ann_needs_tuning(ix->st, ix->factory, n_ok, &needed);
    if (s) return s;
    if ((needed || ix->rep.rebuilt) && n_ok > 0) {
        qf_vindex *own = NULL;
        if (!vi && !lay.exact && (s = qf_vindex_read(ix->faiss_path, &own))) return s;   /* exact: nothing to read */
        qf_ann_tuning t;
        s = qf_ann_tune(ix->st, vi ? vi : own, &lay, &t);
        qf_vindex_free(own);
        if (s || (s = qf_ann_tuning_save(ix->st, &lay, &t, n_ok))) return s;
        ix->rep.tuned = 1;
        if (!lay.exact)
            qf_log(t.reached ? QF_LOG_INFO : QF_LOG_WARN,
                   "search settings for %s: nprobe %d, %d candidates rescored exactly: recall@%d %.3f on %d "
                   "probe queries (target %.2f%s; %.1f s)", ix->factory, t.best.nprobe, t.best.candidates, t.k,
                   t.recall, t.n_probes, t.target, t.reached ? "" : ", NOT reached: use a finer index", t.seconds);
    }
    char *reason = NULL;
    int64_t np, nc, reached;
    char *rec = NULL;
    if ((s = meta_int(ix->st, "search_nprobe", 0, &np)) || (s = meta_int(ix->st, "search_candidates", 0, &nc)) ||
        (s = qf_store_meta_get(ix->st, "tune_recall", &rec)) || (s = qf_store_meta_get(ix->st, "factory_reason", &reason)))
        goto done;
    ix->rep.nprobe = (int)np;
    ix->rep.candidates = (int)nc;
    ix->rep.recall = rec ? atof(rec) : lay.exact ? 1.0 : -1.0;
    reached = ix->rep.recall >= QF_ANN_TUNE_TARGET - 1e-9;
    ix->rep.recall_reached = (int)reached;
    snprintf(ix->rep.factory, sizeof ix->rep.factory, "%s", ix->factory);
    snprintf(ix->rep.factory_reason, sizeof ix->rep.factory_reason, "%s", ix->auto_factory && reason ? reason : "");
done:
    qf_free(reason);
    qf_free(rec);
    return s;
}

qf_status qf_indexer_finish(qf_indexer *ix, qf_index_report *r) {
    qf_status s = flush_held(ix);
    if (s) return s;
    qf_vindex *vi = NULL;
    int64_t counts[QF_IMAGE_STATUS_COUNT];
    if ((s = qf_store_image_counts(ix->st, counts))) return s;
    if ((s = choose_factory(ix, counts[QF_IMAGE_OK]))) return s;
    int nothing_new = ix->in_sync && !ix->n_stale && !ix->n_fresh;
    ix->rep.interrupted = ix->next < ix->n_queue;
    if (!nothing_new) {
        if (ix->in_sync && !(s = qf_vindex_read(ix->faiss_path, &vi)) && !(s = update(ix, vi))) {
            /* incremental */
        } else {
            if (vi) { qf_vindex_free(vi); vi = NULL; }
            if (ix->in_sync) qf_log(QF_LOG_WARN, "%s: %s; rebuilding it from the stored features",
                                     ix->faiss_path, qf_last_error());
            if (counts[QF_IMAGE_OK] == 0 && !ix->n_stale) goto report;   /* nothing to index yet */
            if (ix->rep.interrupted) {      /* stopping: no training now, the re-run does it */
                qf_vindex *probe = NULL;
                if ((s = qf_vindex_create(ix->factory, ix->E, &probe))) return s;
                int trained = qf_vindex_is_trained(probe);
                qf_vindex_free(probe);
                if (!trained) { ix->rep.faiss_behind = 1; goto report; }
            }
            if ((s = rebuild(ix, &vi))) return s;
            ix->rep.rebuilt = 1;
        }
        if ((s = qf_vindex_write(vi, ix->faiss_path))) { qf_vindex_free(vi); return s; }
        /* the file now holds exactly the committed ok images; its size tells
         * the next run whether it is still that file */
        struct stat stt;
        int64_t fbytes = stat(ix->faiss_path, &stt) == 0 ? (int64_t)stt.st_size : -1;
        if ((s = qf_store_checkpoint(ix->st)) || (s = meta_set_int(ix->st, "faiss_bytes", fbytes)) ||
            (s = meta_set_int(ix->st, "faiss_generation", ix->generation))) {
            qf_vindex_free(vi);
            return s;
        }
    } else if ((s = meta_set_int(ix->st, "faiss_generation", ix->generation))) {
        return s;       /* the file was in step and nothing changed: it still is */
    }
    s = tune(ix, vi, counts[QF_IMAGE_OK]);
    qf_vindex_free(vi);
    if (s) return s;
report:
    ix->finished = 1;
    /* nothing found, and a named path missing: a mistyped PATH leaves no
     * empty database behind */
    if (ix->created && ix->rep.files == 0 && ix->rep.named_errors > 0) ix->rep.discarded = 1;
    ix->rep.total_ok = (long)counts[QF_IMAGE_OK];
    ix->rep.seconds = qf_now() - ix->t0;
    ix->rep.ranks = ix->ranks;
    *r = ix->rep;
    return QF_OK;
}
