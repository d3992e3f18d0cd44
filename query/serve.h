/* serve.h - `qformer serve`: an index and its models loaded once behind an
 * HTTP/1.1 JSON API and a search page (libmicrohttpd, a thread pool).
 *
 * Routes (the JSON is that of the CLI, byte for byte where the CLI has it):
 *   GET  /                     the search page (self-contained HTML, no CDN)
 *   GET  /api/search?q=TEXT&k=N&rerank=N&caption=N&prompt=S
 *                              what `qformer search --format json` prints
 *   POST /api/search?k=N       image-to-image search; the image is the body
 *                              (raw) or the first file of a multipart form
 *   GET  /api/image/ID[?thumb=1]  an indexed file (or a JPEG thumbnail); ids
 *                              of indexed images only, never paths
 *   GET  /api/caption/ID[?prompt=S]  a caption, cached as search --caption does
 *   GET  /api/info             `qformer info --db --format json` + "server"
 * Errors are JSON {"error": MESSAGE, "status": CODE}: 400 bad argument,
 * 404 unknown route or id, 405 method, 413 too large, 503 busy database.
 *
 * Threads: the model, tokenizer and captioner are loaded once; each of the
 * N pool threads has its own model state and SQLite connection. The FAISS
 * index is a reference-counted snapshot: a request keeps the one it started
 * with; a request that finds the database's FAISS generation (or the file)
 * changed loads the new index and swaps it in under a lock, so an `index`
 * run is picked up without a restart and no request sees a torn index.
 * Captioning (one OPT decoding state) runs one request at a time. */
#ifndef QF_SERVE_H
#define QF_SERVE_H

#include "embed/common.h"
#include "query/search.h"   /* qf_opt_weights */

typedef struct {
    const char    *db_path;
    const char    *model_dir;      /* NULL: the model the index was built with   */
    const char    *caption_model;  /* NULL: no captions                          */
    qf_opt_weights caption_dtype;  /* OPT weights for captions (F32: exact)      */
    const char    *host;           /* numeric IPv4/IPv6 address; NULL: 127.0.0.1 */
    int            port;           /* 0: any free port (qf_serve_port says)      */
    int            threads;        /* request threads; 0: the number of cores    */
} qf_serve_opts;

/* Request limits (also in the README). */
#define QF_SERVE_MAX_QUERY    2048              /* bytes of q                   */
#define QF_SERVE_MAX_UPLOAD   ((size_t)32 << 20) /* bytes of a POSTed image     */
#define QF_SERVE_MAX_HEADERS  ((size_t)64 << 10) /* request line + headers      */
#define QF_SERVE_TIMEOUT_S    30                /* idle connection              */
#define QF_SERVE_MAX_K        1000
#define QF_SERVE_MAX_RERANK   200
#define QF_SERVE_MAX_CAPTION  20

typedef struct qf_server qf_server;

/* Loads everything, binds, and starts answering on background threads.
 * Sets BLAS single-threaded for the process (requests run in parallel).
 * Errors: those of the loaders, QF_ERR_ARG (host not a numeric address,
 * model not the one of the index), QF_ERR_IO (cannot bind: the message
 * names host and port). *out: new server the caller stops (qf_serve_stop). */
qf_status qf_serve_start(const qf_serve_opts *o, qf_server **out);

/* The port bound (useful with port 0). */
int qf_serve_port(const qf_server *sv);

/* Stops accepting connections, lets the requests in flight finish (up to
 * `grace_s` seconds), closes the rest and frees everything. NULL ok. */
void qf_serve_stop(qf_server *sv, int grace_s);

#endif
