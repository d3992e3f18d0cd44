/* serve.c - see serve.h. libmicrohttpd runs the sockets on a pool of
 * threads (epoll or poll, its choice); a handler runs a whole request on the
 * pool thread that read it, with a worker (model state + SQLite connection)
 * taken from a pool of the same size, so a handler never waits for one.
 * Slow or hostile clients cost no thread: headers are bounded by MHD's
 * per-connection memory, idle connections time out, bodies are counted. */
#include "query/serve.h"

#include "index/ann.h"
#include "index/dbinfo.h"
#include "index/export.h"

#include <arpa/inet.h>
#include <cblas.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- the FAISS index as a reference-counted snapshot ---------------------- */

typedef struct {
    int64_t   faiss_gen;        /* meta faiss_generation when loaded       */
    dev_t     dev;              /* identity of the file read (0/0: absent) */
    ino_t     ino;
    int64_t   mtime_ns, size;
    char      factory[256];
    int       pooled;
} snap_key;

typedef struct {
    int        refs;            /* under qf_server.mu                      */
    snap_key   key;
    qf_vindex *vi;              /* NULL: no FAISS file yet                 */
} snapshot;

typedef struct {
    qf_store       *st;
    qf_blip2_state *bs;
    int             busy;
} worker;

struct qf_server {
    qf_serve_opts    o;
    char            *db_path, *model_dir, *caption_model;
    char            *faiss_path;      /* qf_store_index_path */
    qf_blip2        *m;
    qf_bert         *tok;
    qf_img_preproc   pp;
    qf_captioner    *cap;
    pthread_mutex_t  cap_mu;      /* one captioning at a time              */

    pthread_mutex_t  mu;          /* guards everything below               */
    pthread_cond_t   cv;          /* a worker freed / a request finished   */
    worker          *w;
    int              n_w;
    snapshot        *cur;
    int              reloading;
    int64_t          inflight, requests, reloads;
    int              stopping;    /* also read without the lock: atomics   */

    struct MHD_Daemon *d;
    int              port;
    struct timespec  t0;
};

static void snap_unref(qf_server *sv, snapshot *sn) {
    if (!sn) return;
    pthread_mutex_lock(&sv->mu);
    int last = --sn->refs == 0;
    pthread_mutex_unlock(&sv->mu);
    if (last) { qf_vindex_free(sn->vi); qf_free(sn); }
}

/* What the index is now: the database's FAISS generation and settings (read
 * on the worker's connection) and the identity of the file. */
static qf_status read_key(qf_server *sv, qf_store *st, snap_key *k) {
    memset(k, 0, sizeof *k);
    char *g = NULL, *f = NULL, *p = NULL;
    qf_status s;
    if ((s = qf_store_meta_get(st, "faiss_generation", &g)) || (s = qf_store_meta_get(st, "factory", &f)) ||
        (s = qf_store_meta_get(st, "pooled", &p)))
        goto done;
    k->faiss_gen = g ? strtoll(g, NULL, 10) : -1;
    snprintf(k->factory, sizeof k->factory, "%s", f ? f : "Flat");
    k->pooled = p ? atoi(p) : 0;
    struct stat sb;
    if (stat(sv->faiss_path, &sb) == 0) {
        k->dev = sb.st_dev;
        k->ino = sb.st_ino;
        k->mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
        k->size = (int64_t)sb.st_size;
    }
done:
    qf_free(g); qf_free(f); qf_free(p);
    return s;
}

static int key_eq(const snap_key *a, const snap_key *b) {
    return a->faiss_gen == b->faiss_gen && a->dev == b->dev && a->ino == b->ino && a->mtime_ns == b->mtime_ns &&
           a->size == b->size && a->pooled == b->pooled && !strcmp(a->factory, b->factory);
}

static qf_status snap_load(qf_server *sv, qf_store *st, const snap_key *k, snapshot **out) {
    snapshot *sn = qf_calloc(1, sizeof *sn);
    if (!sn) return qf_errorf(QF_ERR_NOMEM, "out of memory");
    sn->refs = 1;
    sn->key = *k;
    qf_status s = QF_OK;
    /* The indexer renames a complete file into place, so what is read is
     * one whole index; a file that vanished since the stat is "no index". */
    if ((k->ino || k->dev) && (s = qf_vindex_read(sv->faiss_path, &sn->vi)) == QF_ERR_IO) {
        s = QF_OK;
        sn->vi = NULL;
    }
    if (!s && sn->vi) {                /* the nprobe tuned at index time, once */
        qf_ann_layout lay;
        qf_ann_params ap;
        if (!(s = qf_ann_layout_load(st, sv->db_path, &lay, &ap))) s = qf_ann_apply(sn->vi, &ap);
    }
    if (s) { qf_vindex_free(sn->vi); qf_free(sn); return s; }
    *out = sn;
    return QF_OK;
}

/* The snapshot a request uses (a reference the caller drops with
 * snap_unref). When the index changed, one request loads the new one and
 * swaps it in; requests meanwhile keep the current one. */
static qf_status snap_get(qf_server *sv, worker *w, snapshot **out) {
    snap_key k;
    qf_status s = read_key(sv, w->st, &k);
    if (s) return s;
    pthread_mutex_lock(&sv->mu);
    int reload = !key_eq(&k, &sv->cur->key) && !sv->reloading;
    if (reload) sv->reloading = 1;
    else { sv->cur->refs++; *out = sv->cur; }
    pthread_mutex_unlock(&sv->mu);
    if (!reload) return QF_OK;

    snapshot *sn = NULL;
    s = snap_load(sv, w->st, &k, &sn);
    pthread_mutex_lock(&sv->mu);
    sv->reloading = 0;
    snapshot *old = NULL;
    if (!s) {
        old = sv->cur;
        sv->cur = sn;
        sv->reloads++;
    }
    sv->cur->refs++;
    *out = sv->cur;
    pthread_mutex_unlock(&sv->mu);
    if (s) {
        /* keep serving the index we have; the next request tries again */
        qf_log(QF_LOG_WARN, "serve: could not load the new index (%s); still serving the previous one", qf_last_error());
        return QF_OK;
    }
    qf_log(QF_LOG_INFO, "serve: loaded %s (FAISS generation %lld, %lld vectors)", sv->faiss_path,
           (long long)k.faiss_gen, (long long)(sn->vi ? qf_vindex_ntotal(sn->vi) : 0));
    snap_unref(sv, old);
    return QF_OK;
}

static worker *worker_take(qf_server *sv) {
    pthread_mutex_lock(&sv->mu);
    worker *w = NULL;
    for (;;) {
        for (int i = 0; i < sv->n_w && !w; i++)
            if (!sv->w[i].busy) w = &sv->w[i];
        if (w) break;
        pthread_cond_wait(&sv->cv, &sv->mu);
    }
    w->busy = 1;
    pthread_mutex_unlock(&sv->mu);
    return w;
}

static void worker_give(qf_server *sv, worker *w) {
    pthread_mutex_lock(&sv->mu);
    w->busy = 0;
    pthread_cond_broadcast(&sv->cv);
    pthread_mutex_unlock(&sv->mu);
}

/* ---- responses ------------------------------------------------------------- */

typedef struct {                 /* one request, across handler calls */
    int      counted;
    int      answered;           /* a response was queued early (413/400) */
    int      bad_form;
    size_t   seen;               /* body bytes received                 */
    char    *body;               /* raw body or the form's file          */
    size_t   len, cap;
    char    *filename;
    int      file_field;         /* a file part was seen                */
    struct MHD_PostProcessor *pp;
} request;

static void free_cb(void *p) { qf_free(p); }

/* Queues buf (qf_malloc'd; the response frees it). allow: the Allow
 * header of a 405, else NULL. */
static enum MHD_Result send_buf_allow(qf_server *sv, struct MHD_Connection *c, unsigned code, const char *type,
                                      char *buf, size_t len, const char *allow) {
    struct MHD_Response *r = MHD_create_response_from_buffer_with_free_callback(len, buf, free_cb);
    if (!r) { qf_free(buf); return MHD_NO; }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (__atomic_load_n(&sv->stopping, __ATOMIC_RELAXED)) MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    if (allow) MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    enum MHD_Result ret = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_buf(qf_server *sv, struct MHD_Connection *c, unsigned code, const char *type,
                                char *buf, size_t len) {
    return send_buf_allow(sv, c, code, type, buf, len, NULL);
}

/* A memory stream whose buffer is handed to qf_malloc'd storage. */
typedef struct { char *buf; size_t len; FILE *f; } membuf;

static int mb_open(membuf *mb) { mb->buf = NULL; mb->len = 0; mb->f = open_memstream(&mb->buf, &mb->len); return mb->f != NULL; }

/* Closes the stream; *out is a qf_malloc copy (NULL on failure). */
static char *mb_close(membuf *mb, size_t *len) {
    char *out = NULL;
    if (mb->f && fclose(mb->f) == 0 && mb->buf && (out = qf_malloc(mb->len + 1))) {
        memcpy(out, mb->buf, mb->len + 1);
        *len = mb->len;
    }
    free(mb->buf);
    mb->f = NULL;
    return out;
}

/* {"error": msg, "status": code} */
static enum MHD_Result send_json_error(qf_server *sv, struct MHD_Connection *c, unsigned code, const char *allow,
                                       const char *msg) {
    membuf mb;
    if (!mb_open(&mb)) return MHD_NO;
    fputs("{\"error\": ", mb.f);
    qf_export_json_string(mb.f, msg);
    fprintf(mb.f, ", \"status\": %u}\n", code);
    size_t len = 0;
    char *buf = mb_close(&mb, &len);
    if (!buf) return MHD_NO;
    return send_buf_allow(sv, c, code, "application/json", buf, len, allow);
}

static enum MHD_Result send_error(qf_server *sv, struct MHD_Connection *c, unsigned code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static enum MHD_Result send_error(qf_server *sv, struct MHD_Connection *c, unsigned code, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return send_json_error(sv, c, code, NULL, msg);
}

static enum MHD_Result not_allowed(qf_server *sv, struct MHD_Connection *c, const char *method, const char *allow) {
    char msg[160];
    snprintf(msg, sizeof msg, "%.40s is not allowed here (allowed: %s)", method, allow);
    return send_json_error(sv, c, MHD_HTTP_METHOD_NOT_ALLOWED, allow, msg);
}

/* A failed library call: the status picks the HTTP code. */
static enum MHD_Result send_status(qf_server *sv, struct MHD_Connection *c, qf_status s) {
    unsigned code = MHD_HTTP_INTERNAL_SERVER_ERROR;
    switch (s) {
    case QF_ERR_ARG: case QF_ERR_FORMAT: case QF_ERR_UNSUPPORTED: case QF_ERR_SHAPE: code = MHD_HTTP_BAD_REQUEST; break;
    case QF_ERR_LIMIT: code = MHD_HTTP_CONTENT_TOO_LARGE; break;
    case QF_ERR_MISSING: code = MHD_HTTP_NOT_FOUND; break;
    case QF_ERR_BUSY: code = MHD_HTTP_SERVICE_UNAVAILABLE; break;     /* SQLite busy: retry */
    default: break;
    }
    const char *msg = qf_last_error();
    return send_error(sv, c, code, "%s", msg[0] ? msg : qf_status_str(s));
}

/* ---- arguments ---------------------------------------------------------------- */

/* The integer argument `name` (absent: def) within [lo, hi]; -1 and a 400
 * queued when it is not one. */
static int int_arg(qf_server *sv, struct MHD_Connection *c, const char *name, int def, int lo, int hi,
                   enum MHD_Result *ret) {
    const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
    if (!v || !v[0]) return def;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (*end || errno || x < lo || x > hi) {
        *ret = send_error(sv, c, MHD_HTTP_BAD_REQUEST, "%s: '%.40s' is not an integer from %d to %d", name, v, lo, hi);
        return -1;
    }
    return (int)x;
}

/* An id from the path ("/api/image/" + digits); -1 when it is not one. */
static int64_t path_id(const char *rest) {
    if (!rest[0] || strlen(rest) > 18) return -1;
    for (const char *p = rest; *p; p++)
        if (*p < '0' || *p > '9') return -1;
    return strtoll(rest, NULL, 10);
}

/* ---- routes ------------------------------------------------------------------- */

/* query/serve_page.html, compiled in by query/embed_page.cmake */
extern const char qf_serve_page_html[];

static enum MHD_Result api_search(qf_server *sv, struct MHD_Connection *c, request *rq, int by_image) {
    enum MHD_Result ret = MHD_NO;
    qf_search_opts o = { .caption_dtype = sv->o.caption_dtype };
    if ((o.k = int_arg(sv, c, "k", 10, 1, QF_SERVE_MAX_K, &ret)) < 0 ||
        (o.rerank = int_arg(sv, c, "rerank", 0, 0, QF_SERVE_MAX_RERANK, &ret)) < 0 ||
        (o.caption = int_arg(sv, c, "caption", 0, 0, QF_SERVE_MAX_CAPTION, &ret)) < 0)
        return ret;
    o.prompt = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "prompt");
    if (o.prompt && strlen(o.prompt) > QF_SERVE_MAX_QUERY)
        return send_error(sv, c, MHD_HTTP_BAD_REQUEST, "prompt: longer than %d bytes", QF_SERVE_MAX_QUERY);
    if (o.caption > 0 && !sv->cap)
        return send_error(sv, c, MHD_HTTP_BAD_REQUEST, "caption: this server has no captioning model (qformer serve --caption-model DIR)");
    char qbuf[600];
    if (by_image) {
        if (rq->bad_form) return send_error(sv, c, MHD_HTTP_BAD_REQUEST, "malformed or truncated multipart form");
        if (!rq->len) return send_error(sv, c, MHD_HTTP_BAD_REQUEST, "POST /api/search: send an image as the body or as a multipart file");
        snprintf(qbuf, sizeof qbuf, "image:%s", rq->filename && rq->filename[0] ? rq->filename : "upload");
        o.image_data = rq->body;
        o.image_len = rq->len;
        o.image_path = qbuf + 6;
        if (o.rerank > 0) return send_error(sv, c, MHD_HTTP_BAD_REQUEST, "rerank: needs a text query (ITM scores image-text pairs)");
    } else {
        o.text = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "q");
        if (!o.text || !o.text[0]) return send_error(sv, c, MHD_HTTP_BAD_REQUEST, "q: give the text to search for (/api/search?q=TEXT)");
        if (strlen(o.text) > QF_SERVE_MAX_QUERY)
            return send_error(sv, c, MHD_HTTP_BAD_REQUEST, "q: longer than %d bytes", QF_SERVE_MAX_QUERY);
    }

    worker *w = worker_take(sv);
    snapshot *sn = NULL;
    qf_search_result res = { 0 };
    qf_status s = snap_get(sv, w, &sn);
    if (!s) {
        qf_search_env env = { .st = w->st, .m = sv->m, .bs = w->bs, .tok = sv->tok, .pp = &sv->pp, .vi = sn->vi,
                              .factory = sn->key.factory, .pooled = sn->key.pooled, .cap = sv->cap };
        if (o.caption > 0) pthread_mutex_lock(&sv->cap_mu);
        s = qf_search_env_run(&env, &o, &res);
        if (o.caption > 0) pthread_mutex_unlock(&sv->cap_mu);
    }
    snap_unref(sv, sn);
    worker_give(sv, w);
    if (s) return send_status(sv, c, s);

    /* exactly what cmd_search prints for --format json */
    qf_report_info info = { .query = o.text ? o.text : qbuf, .mode = res.mode,
                            .rerank_src = res.rerank_src[0] ? res.rerank_src : NULL, .thumb_px = 320 };
    membuf mb;
    if (!mb_open(&mb)) { qf_search_result_free(&res); return MHD_NO; }
    s = qf_report_json(mb.f, &info, res.hits, res.n);
    qf_search_result_free(&res);
    size_t len = 0;
    char *buf = mb_close(&mb, &len);
    if (s || !buf) { qf_free(buf); return send_error(sv, c, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot write the JSON report"); }
    return send_buf(sv, c, MHD_HTTP_OK, "application/json", buf, len);
}

/* The path of an indexed image (qf_malloc'd), or NULL with a 404 queued. */
static char *indexed_path(qf_server *sv, struct MHD_Connection *c, int64_t id, enum MHD_Result *ret) {
    worker *w = worker_take(sv);
    qf_store_image *img = NULL;
    qf_status s = id >= 0 ? qf_store_image_get(w->st, id, &img) : QF_OK;
    worker_give(sv, w);
    char *path = NULL;
    if (s) *ret = send_status(sv, c, s);
    else if (!img || img->status != QF_IMAGE_OK) *ret = send_error(sv, c, MHD_HTTP_NOT_FOUND, "no indexed image has this id");
    else if (!(path = qf_strdup(img->path))) *ret = MHD_NO;
    qf_free(img);
    return path;
}

static enum MHD_Result api_image(qf_server *sv, struct MHD_Connection *c, const char *rest) {
    enum MHD_Result ret = MHD_NO;
    int thumb = int_arg(sv, c, "thumb", 0, 0, 1, &ret);
    if (thumb < 0) return ret;
    char *path = indexed_path(sv, c, path_id(rest), &ret);
    if (!path) return ret;
    if (thumb) {
        unsigned char *jpg = NULL;
        size_t len = 0;
        qf_status s = qf_report_thumb_jpeg(path, 256, &jpg, &len);
        qf_free(path);
        if (s) return send_error(sv, c, MHD_HTTP_NOT_FOUND, "%s", qf_last_error());
        return send_buf(sv, c, MHD_HTTP_OK, "image/jpeg", (char *)jpg, len);
    }
    /* the file as it is now, streamed from its descriptor */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    unsigned char head[16] = { 0 };
    if (fd < 0 || fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || pread(fd, head, sizeof head, 0) < 0) {
        if (fd >= 0) close(fd);
        ret = send_error(sv, c, MHD_HTTP_NOT_FOUND, "%s: cannot read the indexed file", path);
        qf_free(path);
        return ret;
    }
    qf_free(path);
    qf_img_format f = qf_img_sniff(head, sizeof head);
    const char *type = f == QF_IMG_FMT_PNG ? "image/png" : f == QF_IMG_FMT_JPEG ? "image/jpeg" : "application/octet-stream";
    struct MHD_Response *r = MHD_create_response_from_fd((uint64_t)sb.st_size, fd);   /* closes fd */
    if (!r) { close(fd); return MHD_NO; }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    if (__atomic_load_n(&sv->stopping, __ATOMIC_RELAXED)) MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    ret = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result api_caption(qf_server *sv, struct MHD_Connection *c, const char *rest) {
    if (!sv->cap) return send_error(sv, c, MHD_HTTP_NOT_FOUND, "this server has no captioning model (qformer serve --caption-model DIR)");
    int64_t id = path_id(rest);
    if (id < 0) return send_error(sv, c, MHD_HTTP_NOT_FOUND, "no indexed image has this id");
    qf_search_opts o = { .caption_dtype = sv->o.caption_dtype };
    o.prompt = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "prompt");
    if (o.prompt && strlen(o.prompt) > QF_SERVE_MAX_QUERY)
        return send_error(sv, c, MHD_HTTP_BAD_REQUEST, "prompt: longer than %d bytes", QF_SERVE_MAX_QUERY);
    worker *w = worker_take(sv);
    qf_search_env env = { .st = w->st, .m = sv->m, .bs = w->bs, .tok = sv->tok, .pp = &sv->pp, .cap = sv->cap };
    qf_search_result res = { 0 };
    pthread_mutex_lock(&sv->cap_mu);
    qf_status s = qf_search_caption_ids(&env, &o, &id, 1, &res);
    pthread_mutex_unlock(&sv->cap_mu);
    worker_give(sv, w);
    if (s) return send_status(sv, c, s);
    membuf mb;
    if (!mb_open(&mb)) { qf_search_result_free(&res); return MHD_NO; }
    fprintf(mb.f, "{\n  \"id\": %lld,\n  \"path\": ", (long long)res.hits[0].id);
    qf_export_json_string(mb.f, res.hits[0].path);
    fputs(",\n  \"prompt\": ", mb.f);
    qf_export_json_string(mb.f, o.prompt ? o.prompt : "");
    fputs(",\n  \"caption\": ", mb.f);
    if (res.hits[0].caption) qf_export_json_string(mb.f, res.hits[0].caption);
    else fputs("null", mb.f);
    fprintf(mb.f, ",\n  \"cached\": %s\n}\n", res.captions_cached ? "true" : "false");
    qf_search_result_free(&res);
    size_t len = 0;
    char *buf = mb_close(&mb, &len);
    return buf ? send_buf(sv, c, MHD_HTTP_OK, "application/json", buf, len) : MHD_NO;
}

static enum MHD_Result api_info(qf_server *sv, struct MHD_Connection *c) {
    qf_dbinfo d;
    qf_status s = qf_dbinfo_get(sv->db_path, &d);
    if (s) return send_status(sv, c, s);
    json_t *o = qf_dbinfo_json(sv->db_path, &d);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double up = (double)(now.tv_sec - sv->t0.tv_sec) + 1e-9 * (double)(now.tv_nsec - sv->t0.tv_nsec);
    pthread_mutex_lock(&sv->mu);
    json_int_t req = sv->requests, rel = sv->reloads, gen = sv->cur->key.faiss_gen;
    json_int_t nvec = sv->cur->vi ? qf_vindex_ntotal(sv->cur->vi) : 0;
    pthread_mutex_unlock(&sv->mu);
    json_t *srv = json_pack("{s:s, s:s, s:s?, s:s, s:i, s:f, s:I, s:I, s:I, s:I}", "model", sv->model_dir,
                            "model_fingerprint", qf_blip2_fingerprint(sv->m), "caption_model", sv->caption_model,
                            "caption_dtype", qf_opt_weights_name(sv->o.caption_dtype), "threads", sv->n_w,
                            "uptime_s", up, "requests", req, "index_reloads", rel, "index_generation", gen,
                            "index_vectors", nvec);
    char *txt = NULL;
    if (o && srv && json_object_set_new(o, "server", srv) == 0) {
        srv = NULL;
        txt = json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
    }
    json_decref(srv);
    json_decref(o);
    if (!txt) return send_error(sv, c, MHD_HTTP_INTERNAL_SERVER_ERROR, "%s: cannot encode as JSON", sv->db_path);
    size_t len = strlen(txt);
    char *buf = qf_malloc(len + 2);
    if (buf) { memcpy(buf, txt, len); buf[len++] = '\n'; buf[len] = 0; }
    free(txt);
    return buf ? send_buf(sv, c, MHD_HTTP_OK, "application/json", buf, len) : MHD_NO;
}

static enum MHD_Result route(qf_server *sv, struct MHD_Connection *c, const char *url, const char *method,
                             request *rq) {
    int get = !strcmp(method, "GET") || !strcmp(method, "HEAD"), post = !strcmp(method, "POST");
    if (!strcmp(url, "/") || !strcmp(url, "/index.html")) {
        if (!get) return not_allowed(sv, c, method, "GET, HEAD");
        char *buf = qf_strdup(qf_serve_page_html);
        return buf ? send_buf(sv, c, MHD_HTTP_OK, "text/html; charset=utf-8", buf, strlen(buf)) : MHD_NO;
    }
    if (!strcmp(url, "/api/search")) {
        if (get) return api_search(sv, c, rq, 0);
        if (post) return api_search(sv, c, rq, 1);
        return not_allowed(sv, c, method, "GET, HEAD, POST");
    }
    static const char img[] = "/api/image/", cap[] = "/api/caption/";
    int is_img = !strncmp(url, img, sizeof img - 1), is_cap = !strncmp(url, cap, sizeof cap - 1);
    if (is_img || is_cap || !strcmp(url, "/api/info")) {
        if (!get) return not_allowed(sv, c, method, "GET, HEAD");
        if (is_img) return api_image(sv, c, url + sizeof img - 1);
        if (is_cap) return api_caption(sv, c, url + sizeof cap - 1);
        return api_info(sv, c);
    }
    return send_error(sv, c, MHD_HTTP_NOT_FOUND, "no such route (see / and /api/info)");
}

/* ---- request bodies -------------------------------------------------------------- */

static int append(request *rq, const char *data, size_t n) {
    if (rq->len + n > QF_SERVE_MAX_UPLOAD) return 0;
    if (rq->len + n + 1 > rq->cap) {
        size_t cap = rq->cap ? rq->cap : 65536;
        while (cap < rq->len + n + 1) cap *= 2;
        char *b = qf_realloc(rq->body, cap);
        if (!b) return 0;
        rq->body = b;
        rq->cap = cap;
    }
    memcpy(rq->body + rq->len, data, n);
    rq->len += n;
    return 1;
}

/* The first file part of a multipart form is the image. */
static enum MHD_Result form_part(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
                                 const char *type, const char *enc, const char *data, uint64_t off, size_t size) {
    request *rq = cls;
    if (!filename) return MHD_YES;                      /* a plain field: ignored */
    if (!rq->file_field) {
        rq->file_field = 1;
        size_t n = strnlen(filename, 512);
        if ((rq->filename = qf_malloc(n + 1))) { memcpy(rq->filename, filename, n); rq->filename[n] = 0; }
    } else if (off == 0) {
        return MHD_YES;                                 /* a second file: ignored */
    }
    if (size && !append(rq, data, size)) return MHD_NO;
    return MHD_YES;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                               const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    qf_server *sv = cls;
    request *rq = *con_cls;
    if (!rq) {
        if (!(rq = qf_calloc(1, sizeof *rq))) return MHD_NO;
        *con_cls = rq;
        pthread_mutex_lock(&sv->mu);
        sv->inflight++;
        sv->requests++;
        rq->counted = 1;
        pthread_mutex_unlock(&sv->mu);
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > QF_SERVE_MAX_UPLOAD) {
            rq->answered = 1;
            return send_error(sv, c, MHD_HTTP_CONTENT_TOO_LARGE, "the body is larger than %zu bytes", QF_SERVE_MAX_UPLOAD);
        }
        const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
        if (!strcmp(method, "POST") && ct && !strncasecmp(ct, "multipart/form-data", 19)) {
            rq->pp = MHD_create_post_processor(c, 65536, form_part, rq);
            if (!rq->pp) {
                rq->answered = 1;
                return send_error(sv, c, MHD_HTTP_BAD_REQUEST, "malformed multipart form (Content-Type: %.200s)", ct);
            }
        }
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (rq->answered) return MHD_YES;                 /* discarding after an early answer */
        rq->seen += n;
        if (rq->seen > QF_SERVE_MAX_UPLOAD) {
            rq->answered = 1;
            return send_error(sv, c, MHD_HTTP_CONTENT_TOO_LARGE, "the body is larger than %zu bytes", QF_SERVE_MAX_UPLOAD);
        }
        if (strcmp(method, "POST")) return MHD_YES;      /* bodies of other methods are ignored */
        if (rq->pp) {
            if (!rq->bad_form && MHD_post_process(rq->pp, upload, n) != MHD_YES) rq->bad_form = 1;
        } else if (!append(rq, upload, n)) {
            rq->answered = 1;
            return send_error(sv, c, MHD_HTTP_CONTENT_TOO_LARGE, "the body is larger than %zu bytes", QF_SERVE_MAX_UPLOAD);
        }
        return MHD_YES;
    }
    if (rq->answered) return MHD_YES;
    if (rq->pp) {
        /* a form cut short (no closing boundary) is malformed */
        if (MHD_destroy_post_processor(rq->pp) != MHD_YES) rq->bad_form = 1;
        rq->pp = NULL;
        if (!rq->file_field) rq->bad_form = 1;
    }
    rq->answered = 1;
    return route(sv, c, url, method, rq);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    qf_server *sv = cls;
    request *rq = *con_cls;
    if (!rq) return;
    *con_cls = NULL;
    if (rq->pp) MHD_destroy_post_processor(rq->pp);
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
        qf_log(QF_LOG_DEBUG, "serve: a request ended early (%d)", (int)toe);
    qf_free(rq->body);
    qf_free(rq->filename);
    if (rq->counted) {
        pthread_mutex_lock(&sv->mu);
        sv->inflight--;
        pthread_cond_broadcast(&sv->cv);
        pthread_mutex_unlock(&sv->mu);
    }
    qf_free(rq);
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = 0;
    qf_log(QF_LOG_DEBUG, "serve: libmicrohttpd: %s", msg);
}

/* ---- start / stop ------------------------------------------------------------------ */

static void server_free(qf_server *sv) {
    for (int i = 0; sv->w && i < sv->n_w; i++) {
        qf_blip2_state_free(sv->w[i].bs);
        qf_store_close(sv->w[i].st);
    }
    qf_free(sv->w);
    if (sv->cur) { qf_vindex_free(sv->cur->vi); qf_free(sv->cur); }
    qf_captioner_free(sv->cap);
    qf_bert_free(sv->tok);
    qf_blip2_free(sv->m);
    qf_free(sv->db_path); qf_free(sv->model_dir); qf_free(sv->caption_model); qf_free(sv->faiss_path);
    pthread_mutex_destroy(&sv->cap_mu);
    pthread_mutex_destroy(&sv->mu);
    pthread_cond_destroy(&sv->cv);
    qf_free(sv);
}

qf_status qf_serve_start(const qf_serve_opts *o, qf_server **out) {
    *out = NULL;
    qf_server *sv = qf_calloc(1, sizeof *sv);
    if (!sv) return qf_errorf(QF_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&sv->mu, NULL);
    pthread_mutex_init(&sv->cap_mu, NULL);
    pthread_cond_init(&sv->cv, NULL);
    sv->o = *o;
    qf_status s = QF_OK;
    char *model_path = NULL, *fp = NULL;
    qf_store *st0 = NULL;
    const char *host = o->host ? o->host : "127.0.0.1";

    struct sockaddr_storage addr;
    memset(&addr, 0, sizeof addr);
    struct sockaddr_in *a4 = (struct sockaddr_in *)&addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&addr;
    int v6 = 0;
    if (o->port < 0 || o->port > 65535) { s = qf_errorf(QF_ERR_ARG, "port %d is not from 0 to 65535", o->port); goto fail; }
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)o->port);
    } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)o->port);
        v6 = 1;
    } else {
        s = qf_errorf(QF_ERR_ARG, "host '%s' is not a numeric IPv4 or IPv6 address (e.g. 127.0.0.1, ::1, 0.0.0.0)", host);
        goto fail;
    }

    struct stat sb;
    if (stat(o->db_path, &sb) != 0) { s = qf_errorf(QF_ERR_IO, "%s: no such index database", o->db_path); goto fail; }
    if (!(sv->db_path = qf_strdup(o->db_path)) || (o->caption_model && !(sv->caption_model = qf_strdup(o->caption_model)))) {
        s = qf_errorf(QF_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (!(sv->faiss_path = qf_store_index_path(o->db_path))) { s = qf_errorf(QF_ERR_NOMEM, "out of memory"); goto fail; }
    unsigned flags = o->caption_model ? 0 : QF_STORE_READONLY;   /* captions are cached in the store */
    if ((s = qf_store_open(o->db_path, flags, &st0))) goto fail;
    if ((s = qf_store_meta_get(st0, "model_path", &model_path)) || (s = qf_store_meta_get(st0, "model_fingerprint", &fp)))
        goto fail;
    if (!model_path || !fp) {
        s = qf_errorf(QF_ERR_FORMAT, "%s: not a qformer index (no model recorded); run `qformer index` first", o->db_path);
        goto fail;
    }
    if (!(sv->model_dir = qf_strdup(o->model_dir ? o->model_dir : model_path))) { s = qf_errorf(QF_ERR_NOMEM, "out of memory"); goto fail; }
    if ((s = qf_blip2_load(sv->model_dir, QF_BLIP2_ALL, &sv->m))) goto fail;
    if (strcmp(qf_blip2_fingerprint(sv->m), fp)) {
        s = qf_errorf(QF_ERR_ARG, "%s: the index was built with another model (fingerprint %.16s, %s), not %s",
                      o->db_path, fp, model_path, sv->model_dir);
        goto fail;
    }
    if ((s = qf_img_preproc_load(sv->model_dir, &sv->pp)) ||
        (s = qf_img_preproc_check(&sv->pp, qf_blip2_image_size(sv->m), sv->model_dir)) ||
        (s = qf_bert_load(sv->model_dir, &sv->tok)))
        goto fail;
    if (o->caption_model && (s = qf_captioner_load(o->caption_model, o->caption_dtype, &sv->cap))) goto fail;

    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    sv->n_w = o->threads > 0 ? o->threads : cores > 0 ? (int)cores : 1;
    if (sv->n_w > 256) sv->n_w = 256;
    if (!(sv->w = qf_calloc((size_t)sv->n_w, sizeof *sv->w))) { s = qf_errorf(QF_ERR_NOMEM, "out of memory"); goto fail; }
    for (int i = 0; i < sv->n_w; i++) {
        if (i == 0) { sv->w[0].st = st0; st0 = NULL; }
        else if ((s = qf_store_open(o->db_path, flags, &sv->w[i].st))) goto fail;
        if ((s = qf_blip2_state_init(sv->m, &sv->w[i].bs))) goto fail;
    }
    snap_key k;
    if ((s = read_key(sv, sv->w[0].st, &k)) || (s = snap_load(sv, sv->w[0].st, &k, &sv->cur))) goto fail;

    /* requests run in parallel, one per thread: BLAS single-threaded */
    openblas_set_num_threads(1);
    clock_gettime(CLOCK_MONOTONIC, &sv->t0);
    unsigned mflags = MHD_USE_AUTO | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG |
                      (v6 ? MHD_USE_IPv6 : 0);
    /* the logger first, so that MHD's own option warnings reach it too; no
     * thread pool for one thread (MHD refuses a size of 1) */
    struct MHD_OptionItem mo[] = {
        { MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)mhd_log, sv },
        { MHD_OPTION_SOCK_ADDR, 0, &addr },
        { MHD_OPTION_CONNECTION_TIMEOUT, QF_SERVE_TIMEOUT_S, NULL },
        { MHD_OPTION_CONNECTION_LIMIT, 1024, NULL },
        { MHD_OPTION_CONNECTION_MEMORY_LIMIT, (intptr_t)QF_SERVE_MAX_HEADERS, NULL },
        { MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)completed, sv },
        { sv->n_w > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END, sv->n_w, NULL },
        { MHD_OPTION_END, 0, NULL },
    };
    sv->d = MHD_start_daemon(mflags, (uint16_t)o->port, NULL, NULL, handler, sv, MHD_OPTION_ARRAY, mo, MHD_OPTION_END);
    if (!sv->d) {
        s = qf_errorf(QF_ERR_IO, "cannot listen on %s port %d (in use, or not an address of this machine)", host, o->port);
        goto fail;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(sv->d, MHD_DAEMON_INFO_BIND_PORT);
    sv->port = di ? di->port : o->port;
    qf_free(model_path);
    qf_free(fp);
    *out = sv;
    return QF_OK;
fail:
    qf_free(model_path);
    qf_free(fp);
    qf_store_close(st0);
    server_free(sv);
    return s;
}

int qf_serve_port(const qf_server *sv) { return sv->port; }

void qf_serve_stop(qf_server *sv, int grace_s) {
    if (!sv) return;
    /* no new connections; responses from now on close theirs */
    MHD_socket ls = MHD_quiesce_daemon(sv->d);
    if (ls != MHD_INVALID_SOCKET) close(ls);
    pthread_mutex_lock(&sv->mu);
    __atomic_store_n(&sv->stopping, 1, __ATOMIC_RELAXED);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += grace_s;
    while (sv->inflight > 0)
        if (pthread_cond_timedwait(&sv->cv, &sv->mu, &until) == ETIMEDOUT) break;
    int64_t left = sv->inflight;
    pthread_mutex_unlock(&sv->mu);
    if (left) qf_log(QF_LOG_WARN, "serve: %lld requests still running after %d s; closing them", (long long)left, grace_s);
    MHD_stop_daemon(sv->d);
    server_free(sv);
}
