/* dbinfo.c - see dbinfo.h. */
#include "index/dbinfo.h"

#include "index/ann.h"
#include "index/vindex.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int64_t file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (int64_t)sb.st_size : -1;
}

static void meta_copy(qf_store *st, const char *key, char *dst, size_t n) {
    char *v = NULL;
    dst[0] = 0;
    if (!qf_store_meta_get(st, key, &v) && v) snprintf(dst, n, "%s", v);
    qf_free(v);
}

static int64_t meta_i64(qf_store *st, const char *key, int64_t def) {
    char buf[64];
    meta_copy(st, key, buf, sizeof buf);
    return buf[0] ? strtoll(buf, NULL, 10) : def;
}

static qf_status fill(qf_store *st, const char *db_path, qf_dbinfo *o) {
    memset(o, 0, sizeof *o);
    qf_status s = qf_store_image_counts(st, o->counts);
    if (s) return s;
    meta_copy(st, "model_path", o->model_path, sizeof o->model_path);
    meta_copy(st, "model_fingerprint", o->fingerprint, sizeof o->fingerprint);
    meta_copy(st, "factory", o->factory, sizeof o->factory);
    char *ip = qf_store_index_path(db_path);
    if (!ip) return qf_errorf(QF_ERR_NOMEM, "out of memory");
    snprintf(o->index_file, sizeof o->index_file, "%s", ip);
    qf_free(ip);
    o->dim = (int)meta_i64(st, "dim", 0);
    o->n_query = (int)meta_i64(st, "n_query", 0);
    o->pooled = (int)meta_i64(st, "pooled", 0);
    o->generation = meta_i64(st, "generation", 0);
    o->faiss_generation = meta_i64(st, "faiss_generation", -1);
    o->schema_version = qf_store_schema_version(st);
    snprintf(o->store_dtype, sizeof o->store_dtype, "%s", qf_store_feats_f16(st) ? "f16" : "f32");
    snprintf(o->vision_dtype, sizeof o->vision_dtype, "f32");
    meta_copy(st, "vision_dtype", o->vision_dtype, sizeof o->vision_dtype);
    meta_copy(st, "factory_request", o->factory_request, sizeof o->factory_request);
    meta_copy(st, "factory_reason", o->factory_reason, sizeof o->factory_reason);
    o->search_nprobe = (int)meta_i64(st, "search_nprobe", 0);
    o->search_candidates = (int)meta_i64(st, "search_candidates", 0);
    o->tune_k = (int)meta_i64(st, "tune_k", 10);
    o->tune_probes = (int)meta_i64(st, "tune_probes", 0);
    o->tune_images = meta_i64(st, "tune_images", -1);
    char buf[64] = "";
    meta_copy(st, "tune_recall", buf, sizeof buf);
    o->tune_recall = buf[0] ? atof(buf) : -1;
    buf[0] = 0;
    meta_copy(st, "tune_target", buf, sizeof buf);
    o->tune_target = buf[0] ? atof(buf) : 0;
    char p[4200];
    o->db_bytes = file_size(db_path);
    snprintf(p, sizeof p, "%s-wal", db_path);
    int64_t w = file_size(p);
    if (w > 0) o->db_bytes += w;
    o->faiss_bytes = o->index_file[0] ? file_size(o->index_file) : -1;
    o->faiss_ntotal = -1;
    qf_vindex *vi = NULL;
    if (o->faiss_bytes >= 0 && !qf_vindex_read(o->index_file, &vi)) o->faiss_ntotal = qf_vindex_ntotal(vi);
    qf_vindex_free(vi);
    return QF_OK;
}

qf_status qf_dbinfo_get(const char *db_path, qf_dbinfo *out) {
    if (file_size(db_path) < 0) return qf_errorf(QF_ERR_IO, "%s: no such index database", db_path);
    qf_store *st = NULL;
    qf_status s = qf_store_open(db_path, QF_STORE_READONLY, &st);
    if (!s) s = fill(st, db_path, out);
    qf_store_close(st);
    return s;
}

qf_status qf_dbinfo_failures(const char *db_path, qf_store_image_fn fn, void *user) {
    if (file_size(db_path) < 0) return qf_errorf(QF_ERR_IO, "%s: no such index database", db_path);
    qf_store *st = NULL;
    qf_status s = qf_store_open(db_path, QF_STORE_READONLY, &st);
    if (!s) s = qf_store_image_foreach(st, QF_IMAGE_ERROR, fn, user);
    qf_store_close(st);
    return s;
}

static void say(qf_dbinfo_log_fn log, void *user, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(qf_dbinfo_log_fn log, void *user, const char *fmt, ...) {
    if (!log) return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    log(line, user);
}

typedef struct { int64_t *ids; int64_t n, cap; } id_list;

static qf_status have_feats(int64_t id, const float *feats, void *user) {
    (void)feats;
    id_list *l = user;
    if (l->n == l->cap) {
        int64_t c = l->cap ? 2 * l->cap : 1024, *a = qf_realloc(l->ids, (size_t)c * sizeof *a);
        if (!a) return qf_errorf(QF_ERR_NOMEM, "out of memory");
        l->ids = a;
        l->cap = c;
    }
    l->ids[l->n++] = id;
    return QF_OK;
}

qf_status qf_dbinfo_check(const char *db_path, int repair, int64_t *problems, qf_dbinfo_log_fn log, void *user) {
    *problems = 0;
    if (file_size(db_path) < 0) return qf_errorf(QF_ERR_IO, "%s: no such index database", db_path);
    qf_store *st = NULL;
    id_list with = { 0 };
    int64_t *ok = NULL, n_ok = 0;
    qf_dbinfo info;
    /* repairing writes: take the indexer lock so no index run is interleaved */
    qf_status s = qf_store_open(db_path, repair ? QF_STORE_LOCK : QF_STORE_READONLY, &st);
    if (s) return s;
    if ((s = qf_store_integrity_check(st))) {
        say(log, user, "SQLite integrity check failed: %s", qf_last_error());
        (*problems)++;
        goto done;
    }
    say(log, user, "SQLite integrity check: ok");
    if ((s = fill(st, db_path, &info)) || (s = qf_store_feats_foreach(st, have_feats, &with)) ||
        (s = qf_store_image_ids(st, QF_IMAGE_OK, &ok, &n_ok)))
        goto done;
    /* ok images without features (both lists are ascending) */
    int64_t missing = 0, j = 0;
    for (int64_t i = 0; i < n_ok; i++) {
        while (j < with.n && with.ids[j] < ok[i]) j++;
        if (j < with.n && with.ids[j] == ok[i]) continue;
        missing++;
        if (repair) {
            qf_store_image *img = NULL;
            if ((s = qf_store_image_get(st, ok[i], &img))) goto done;
            int64_t id;
            if (img) s = qf_store_image_upsert(st, img->path, img->size, img->mtime_ns, img->content_hash, &id);
            qf_free(img);
            if (s) goto done;
        }
    }
    if (missing) {
        (*problems) += missing;
        say(log, user, "%lld indexed image%s without stored features%s", (long long)missing, missing == 1 ? "" : "s",
            repair ? ": re-queued for the next `qformer index` run" : " (run with --repair to re-queue them)");
    } else {
        say(log, user, "features: all %lld indexed images have them", (long long)n_ok);
    }
    int64_t per = info.pooled ? 1 : info.n_query, want = (n_ok - missing) * per;
    int stale = info.faiss_generation != info.generation || info.faiss_ntotal != want;
    if (info.faiss_ntotal < 0 && n_ok == 0) stale = 0;
    if (stale && info.counts[QF_IMAGE_PENDING] > 0 && !repair) {
        /* an unfinished run (interrupted, killed) is a state, not damage: the
         * next `qformer index` run embeds the rest and updates the file */
        say(log, user, "FAISS file %s: %lld vectors, behind the store by an unfinished index run (%lld images "
            "pending); the next `qformer index` run brings it up to date", info.index_file,
            (long long)(info.faiss_ntotal > 0 ? info.faiss_ntotal : 0), (long long)info.counts[QF_IMAGE_PENDING]);
    } else if (stale) {
        (*problems)++;
        say(log, user, "FAISS file %s: %lld vectors, expected %lld (generation %lld, store at %lld)%s",
            info.index_file, (long long)info.faiss_ntotal, (long long)want, (long long)info.faiss_generation,
            (long long)info.generation, repair ? ": marked for a rebuild by the next `qformer index` run" :
            " (run with --repair to rebuild it on the next index run)");
        if (repair && (s = qf_store_meta_set(st, "faiss_generation", "-1"))) goto done;
    } else {
        say(log, user, "FAISS file: %lld vectors, in step with the store", (long long)info.faiss_ntotal);
    }
done:
    qf_free(with.ids);
    qf_free(ok);
    qf_store_close(st);
    return s;
}

json_t *qf_dbinfo_json(const char *db_path, const qf_dbinfo *d) {
    int64_t total = d->counts[QF_IMAGE_OK] + d->counts[QF_IMAGE_ERROR] + d->counts[QF_IMAGE_PENDING];
    json_t *o = json_pack("{s:s, s:I, s:I, s:I, s:I, s:s, s:s, s:s, s:b, s:i, s:i, s:s, s:I, s:o, s:o, s:b, s:i}",
        "db", db_path, "images", (json_int_t)total, "ok", (json_int_t)d->counts[QF_IMAGE_OK],
        "failed", (json_int_t)d->counts[QF_IMAGE_ERROR], "pending", (json_int_t)d->counts[QF_IMAGE_PENDING],
        "model", d->model_path, "model_fingerprint", d->fingerprint, "factory", d->factory, "pooled", d->pooled,
        "dim", d->dim, "n_query", d->n_query, "index_file", d->index_file, "db_bytes", (json_int_t)d->db_bytes,
        /* never -1: a vector index not written yet or unreadable is null */
        "index_bytes", d->faiss_bytes >= 0 ? json_integer(d->faiss_bytes) : json_null(),
        "index_vectors", d->faiss_ntotal >= 0 ? json_integer(d->faiss_ntotal) : json_null(),
        "index_in_sync", d->faiss_generation == d->generation, "schema_version", d->schema_version);
    if (o) {   /* the factory choice and the tuned search settings (index/ann.h) */
        json_object_set_new(o, "vision_dtype", json_string(d->vision_dtype));
        json_object_set_new(o, "store_dtype", json_string(d->store_dtype));
        json_object_set_new(o, "factory_request", json_string(d->factory_request));
        json_object_set_new(o, "factory_reason", d->factory_reason[0] ? json_string(d->factory_reason) : json_null());
        json_object_set_new(o, "search", json_pack("{s:b, s:i, s:i, s:o, s:i, s:I, s:f}",
            "exact", qf_ann_factory_is_exact(d->factory, d->pooled), "nprobe", d->search_nprobe,
            "candidates", d->search_candidates,
            "tuned_recall", d->tune_recall >= 0 ? json_real(d->tune_recall) : json_null(),
            "tuned_probes", d->tune_probes, "tuned_images", (json_int_t)d->tune_images,
            "tune_target", d->tune_target));
    }
    return o;
}
