/* hub.c - Hugging Face hub downloads over libcurl (see hub.h).
 *
 * Invariants: a file under its final name is complete and verified (it is
 * renamed from {file}.incomplete only after the digest matched); libcurl and
 * OpenSSL errors are translated here only; progress goes to the caller's
 * callback, nothing is printed. The .incomplete part is flock()ed while a
 * transfer writes it, so two pulls of one repo cannot interleave bytes. */
#include "hub.h"

#include "embed/digest.h"

#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_ENDPOINT "https://huggingface.co"
#define API_MAX_BYTES    (64u << 20)   /* a repo listing is a few KB; refuse absurd ones */
#define ERRBODY_MAX      1024

/* ---- small helpers ------------------------------------------------------ */

static const char *env(const char *name) {
    const char *v = getenv(name);
    return v && v[0] ? v : NULL;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

static int is_hex(const char *s, size_t len) {
    if (strlen(s) != len) return 0;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

static int is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* snprintf that reports truncation as an error naming what was built. */
static qf_status fmt_path(char *out, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static qf_status fmt_path(char *out, size_t n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(out, n, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= n) return qf_errorf(QF_ERR_LIMIT, "path too long: %.200s...", out);
    return QF_OK;
}

/* mkdir -p */
static qf_status make_dirs(const char *path) {
    char tmp[QF_HUB_PATH_MAX];
    qf_status s = fmt_path(tmp, sizeof tmp, "%s", path);
    if (s) return s;
    for (char *p = tmp + 1; ; p++) {
        if (*p == '/' || *p == 0) {
            char c = *p;
            *p = 0;
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
                return qf_errorf(QF_ERR_IO, "%s: cannot create folder: %s", tmp, strerror(errno));
            if (!is_dir(tmp)) return qf_errorf(QF_ERR_IO, "%s: exists and is not a folder", tmp);
            *p = c;
            if (!c) break;
        }
    }
    return QF_OK;
}

/* Percent-encodes everything but unreserved characters (and '/' if keep_slash). */
static qf_status url_quote(const char *s, int keep_slash, char *out, size_t n) {
    static const char hex[] = "0123456789ABCDEF";
    size_t k = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        int plain = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
                    *p == '-' || *p == '_' || *p == '.' || *p == '~' || (keep_slash && *p == '/');
        if (k + 4 > n) return qf_errorf(QF_ERR_LIMIT, "name too long to quote: %.100s", s);
        if (plain) out[k++] = (char)*p;
        else { out[k++] = '%'; out[k++] = hex[*p >> 4]; out[k++] = hex[*p & 15]; }
    }
    out[k] = 0;
    return QF_OK;
}

/* ---- public predicates ---------------------------------------------------- */

static int valid_part(const char *s, size_t len) {
    if (len == 0 || len > 96) return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '-' || c == '_' || c == '.';
        if (!ok) return 0;
        if (i + 1 < len && ((c == '-' && s[i + 1] == '-') || (c == '.' && s[i + 1] == '.'))) return 0;
    }
    return !(s[0] == '-' || s[0] == '.' || s[len - 1] == '-' || s[len - 1] == '.');
}

int qf_hub_valid_repo_id(const char *id) {
    if (!id) return 0;
    const char *slash = strchr(id, '/');
    if (!slash) return valid_part(id, strlen(id));
    if (strchr(slash + 1, '/')) return 0;
    return valid_part(id, (size_t)(slash - id)) && valid_part(slash + 1, strlen(slash + 1));
}

int qf_hub_wanted_file(const char *name) {
    static const char *const exact[] = {
        "config.json", "generation_config.json", "preprocessor_config.json",
        "vocab.txt", "vocab.json", "merges.txt", "tokenizer_config.json",
        "special_tokens_map.json", "added_tokens.json", "tokenizer.json", "spiece.model",
        "model.safetensors.index.json",
    };
    if (!name || !name[0] || name[0] == '.' || strchr(name, '/') || strchr(name, '\\')) return 0;
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
        if (!strcmp(name, exact[i])) return 1;
    return ends_with(name, ".safetensors") && strlen(name) > strlen(".safetensors");
}

/* Revisions become URL parts and ref file names: branch/tag characters only. */
static int valid_revision(const char *r) {
    if (!r[0] || r[0] == '/' || strstr(r, "..") || strlen(r) > 255 || ends_with(r, "/")) return 0;
    for (const char *p = r; *p; p++) {
        char c = *p;
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.' || c == '/'))
            return 0;
    }
    return 1;
}

/* ---- cache layout ----------------------------------------------------------- */

qf_status qf_hub_cache_dir(char *out, size_t n) {
    const char *v;
    if ((v = env("QF_CACHE")))       return fmt_path(out, n, "%s", v);
    if ((v = env("HF_HUB_CACHE")))   return fmt_path(out, n, "%s", v);
    if ((v = env("HF_HOME")))        return fmt_path(out, n, "%s/hub", v);
    if ((v = env("XDG_CACHE_HOME"))) return fmt_path(out, n, "%s/huggingface/hub", v);
    if ((v = env("HOME")))           return fmt_path(out, n, "%s/.cache/huggingface/hub", v);
    return qf_errorf(QF_ERR_ARG, "no cache folder: set QF_CACHE (or HF_HOME, or HOME)");
}

/* CACHE/models--ORG--NAME */
static qf_status repo_cache_dir(const char *repo_id, char *out, size_t n) {
    char cache[QF_HUB_PATH_MAX];
    qf_status s = qf_hub_cache_dir(cache, sizeof cache);
    if (s) return s;
    if ((s = fmt_path(out, n, "%s/models--", cache))) return s;
    size_t k = strlen(out);
    for (const char *p = repo_id; *p; p++) {
        if (k + 3 >= n) return qf_errorf(QF_ERR_LIMIT, "path too long for repo %s", repo_id);
        if (*p == '/') { out[k++] = '-'; out[k++] = '-'; }
        else out[k++] = *p;
    }
    out[k] = 0;
    return QF_OK;
}

/* Reads the first line of a small file into out (trimmed); 0 if unreadable. */
static int read_line(const char *path, char *out, size_t n) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int ok = fgets(out, (int)n, f) != NULL;
    fclose(f);
    if (!ok) return 0;
    size_t k = strlen(out);
    while (k && (out[k - 1] == '\n' || out[k - 1] == '\r' || out[k - 1] == ' ')) out[--k] = 0;
    return k > 0;
}

qf_status qf_hub_resolve_model(const char *arg, char *dir, size_t n) {
    char repo_dir[QF_HUB_PATH_MAX], snaps[QF_HUB_PATH_MAX], ref[256], cache[QF_HUB_PATH_MAX];
    qf_status s;
    QF_ASSERT(arg && dir && n > 0);
    if (is_dir(arg) || !qf_hub_valid_repo_id(arg)) return fmt_path(dir, n, "%s", arg);
    if ((s = qf_hub_cache_dir(cache, sizeof cache))) return s;
    if ((s = repo_cache_dir(arg, repo_dir, sizeof repo_dir))) return s;
    if ((s = fmt_path(snaps, sizeof snaps, "%s/snapshots", repo_dir))) return s;

    /* refs/main names the snapshot; without it, the only snapshot there is. */
    char ref_path[QF_HUB_PATH_MAX];
    if ((s = fmt_path(ref_path, sizeof ref_path, "%s/refs/main", repo_dir))) return s;
    if (read_line(ref_path, ref, sizeof ref) && !strchr(ref, '/') && strcmp(ref, "..") &&
        (s = fmt_path(dir, n, "%s/%s", snaps, ref)) == QF_OK && is_dir(dir))
        goto found;
    if (s) return s;

    DIR *d = opendir(snaps);
    int count = 0;
    char only[256] = "", names[512] = "";
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            if (++count == 1) snprintf(only, sizeof only, "%s", e->d_name);
            size_t k = strlen(names);
            snprintf(names + k, sizeof names - k, "%s%s", k ? ", " : "", e->d_name);
        }
        closedir(d);
    }
    if (count == 1) {
        if ((s = fmt_path(dir, n, "%s/%s", snaps, only))) return s;
        goto found;
    }
    if (count > 1)
        return qf_errorf(QF_ERR_MISSING,
                         "model '%s': %d revisions are cached in %s (%s) and none is \"main\": "
                         "pass one of those folders to --model, or run `qformer pull %s`",
                         arg, count, snaps, names, arg);
    if (!strchr(arg, '/')) return fmt_path(dir, n, "%s", arg);   /* a plain missing folder name */
    return qf_errorf(QF_ERR_MISSING,
                     "model '%s' is not a folder and not in the cache (%s): "
                     "run `qformer pull %s` first (or set QF_CACHE to the cache that holds it)",
                     arg, cache, arg);
found:;
    char cfg[QF_HUB_PATH_MAX];
    struct stat sb;
    if (fmt_path(cfg, sizeof cfg, "%s/config.json", dir) || stat(cfg, &sb) != 0)
        return qf_errorf(QF_ERR_MISSING,
                         "model '%s': the cached snapshot %s has no config.json (an interrupted pull?): "
                         "run `qformer pull %s` again", arg, dir, arg);
    return QF_OK;
}

/* ---- options ------------------------------------------------------------------ */

void qf_hub_options_init(qf_hub_options *opt) {
    memset(opt, 0, sizeof *opt);
    opt->retries = 3;
}

/* HF_TOKEN, then the `huggingface-cli login` token file. out[0] == 0: none. */
static qf_status find_token(const qf_hub_options *opt, char *out, size_t n) {
    const char *t = opt->token ? opt->token : env("HF_TOKEN");
    if (!t) t = env("HUGGING_FACE_HUB_TOKEN");
    out[0] = 0;
    if (t) {
        if (fmt_path(out, n, "%s", t)) return qf_errorf(QF_ERR_ARG, "HF_TOKEN is too long");
    } else {
        char path[QF_HUB_PATH_MAX] = "";
        const char *v;
        if ((v = env("HF_TOKEN_PATH")))       snprintf(path, sizeof path, "%s", v);
        else if ((v = env("HF_HOME")))        snprintf(path, sizeof path, "%s/token", v);
        else if ((v = env("XDG_CACHE_HOME"))) snprintf(path, sizeof path, "%s/huggingface/token", v);
        else if ((v = env("HOME")))           snprintf(path, sizeof path, "%s/.cache/huggingface/token", v);
        if (path[0] && !read_line(path, out, n)) out[0] = 0;
    }
    for (const char *p = out; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return qf_errorf(QF_ERR_ARG, "HF_TOKEN contains control characters");
    return QF_OK;
}

/* ---- HTTP ----------------------------------------------------------------------- */

typedef struct {
    char    *name;        /* repo file name                           */
    int64_t  size;        /* -1 unknown                                */
    char     sha256[65];  /* LFS content digest, "" if not an LFS file */
    char     blob_id[41]; /* git blob id (non-LFS), "" if unknown      */
} remote_file;

/* One HTTP transfer: the body goes to `fd` (download) or `mem` (API). */
typedef struct {
    int       fd;               /* -1: collect into mem                  */
    char     *mem;
    size_t    mem_len, mem_cap;
    long      code;             /* status of the response being received */
    char      err_code[64];     /* X-Error-Code of that response          */
    char      err_msg[256];     /* X-Error-Message                        */
    char      err_body[ERRBODY_MAX + 1];
    size_t    err_len;
    int       io_errno;         /* write failed with this errno           */
    int       range_bad;        /* a 206 started somewhere else than asked */
    /* download state */
    int64_t   have;             /* bytes in the file                      */
    int64_t   start_have;       /* bytes in the file when the transfer began */
    int       body_started;     /* first body byte of this response seen  */
    int64_t   range_start;      /* Content-Range start of a 206, else -1  */
    qf_digest *md;              /* digest over the whole file, or NULL    */
    const remote_file *rf;
    /* progress */
    double    t0, last_report;
    qf_hub_progress *prog;
    const qf_hub_options *opt;
} xfer;

static qf_status digest_reset(xfer *x) {
    if (!x->md) return QF_OK;
    if (x->rf->sha256[0]) return qf_digest_reset(x->md, QF_DIGEST_SHA256);
    /* git blob id = SHA-1("blob <size>\0" + content) */
    char hdr[48];
    int k = snprintf(hdr, sizeof hdr, "blob %lld", (long long)x->rf->size);
    qf_status s = qf_digest_reset(x->md, QF_DIGEST_SHA1);
    return s ? s : qf_digest_update(x->md, hdr, (size_t)k + 1);
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *user) {
    xfer *x = user;
    size_t len = size * nitems;
    char line[512];
    size_t k = len < sizeof line - 1 ? len : sizeof line - 1;
    memcpy(line, buf, k);
    line[k] = 0;
    while (k && (line[k - 1] == '\n' || line[k - 1] == '\r')) line[--k] = 0;
    if (!strncmp(line, "HTTP/", 5)) {            /* a new response (after a redirect) */
        const char *sp = strchr(line, ' ');
        x->code = sp ? strtol(sp + 1, NULL, 10) : 0;
        x->err_code[0] = x->err_msg[0] = 0;
        x->err_len = 0;
        x->body_started = 0;
        x->range_start = -1;
        return len;
    }
    const char *colon = strchr(line, ':');
    if (!colon) return len;
    const char *v = colon + 1;
    while (*v == ' ' || *v == '\t') v++;
    size_t nlen = (size_t)(colon - line);
    if (nlen == 12 && !strncasecmp(line, "x-error-code", 12))
        snprintf(x->err_code, sizeof x->err_code, "%s", v);
    else if (nlen == 15 && !strncasecmp(line, "x-error-message", 15))
        snprintf(x->err_msg, sizeof x->err_msg, "%s", v);
    else if (nlen == 13 && !strncasecmp(line, "content-range", 13) && !strncmp(v, "bytes ", 6))
        x->range_start = strtoll(v + 6, NULL, 10);
    return len;
}

static size_t on_body(char *buf, size_t size, size_t nmemb, void *user) {
    xfer *x = user;
    size_t len = size * nmemb;
    if (x->code < 200 || x->code >= 300) {       /* error or redirect body: keep a little */
        size_t k = ERRBODY_MAX - x->err_len < len ? ERRBODY_MAX - x->err_len : len;
        memcpy(x->err_body + x->err_len, buf, k);
        x->err_len += k;
        x->err_body[x->err_len] = 0;
        return len;
    }
    if (x->fd < 0) {
        if (x->mem_len + len > API_MAX_BYTES) return 0;
        if (x->mem_len + len + 1 > x->mem_cap) {
            size_t cap = x->mem_cap ? x->mem_cap : 16384;
            while (cap < x->mem_len + len + 1) cap *= 2;
            char *p = qf_realloc(x->mem, cap);
            if (!p) { x->io_errno = ENOMEM; return 0; }
            x->mem = p;
            x->mem_cap = cap;
        }
        memcpy(x->mem + x->mem_len, buf, len);
        x->mem_len += len;
        x->mem[x->mem_len] = 0;
        return len;
    }
    if (!x->body_started) {
        x->body_started = 1;
        /* A server that ignores Range answers 200 with the whole file: start over. */
        if (x->code == 200 && x->have > 0) {
            if (ftruncate(x->fd, 0) != 0 || lseek(x->fd, 0, SEEK_SET) != 0) { x->io_errno = errno; return 0; }
            x->have = x->start_have = 0;
            if (digest_reset(x)) { x->io_errno = EIO; return 0; }
        }
        /* A 206 must continue exactly where the file ends. */
        if (x->code == 206 && x->range_start != x->have) { x->range_bad = 1; return 0; }
    }
    for (size_t off = 0; off < len;) {
        ssize_t w = write(x->fd, buf + off, len - off);
        if (w < 0) {
            if (errno == EINTR) continue;
            x->io_errno = errno;
            return 0;
        }
        off += (size_t)w;
    }
    if (x->md && qf_digest_update(x->md, buf, len)) { x->io_errno = EIO; return 0; }
    x->have += (int64_t)len;
    return len;
}

/* Mean speed of this transfer; while it runs, only once there is enough to measure. */
static void fill_speed(xfer *x, double t, int final) {
    qf_hub_progress *p = x->prog;
    double dt = t - x->t0;
    int64_t got = x->have - x->start_have;
    p->done = x->have;
    p->bytes_per_s = (dt > 0.2 || (final && dt > 0)) && got > 0 ? (double)got / dt : 0;
    p->eta_s = p->bytes_per_s > 0 && p->total >= 0 ? (double)(p->total - p->done) / p->bytes_per_s : -1;
}

static int on_progress(void *user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow) {
    xfer *x = user;
    (void)dltotal; (void)dlnow; (void)ultotal; (void)ulnow;
    if (!x->prog || !x->opt->progress) return 0;
    double t = qf_now();
    if (t - x->last_report < 0.1) return 0;
    x->last_report = t;
    int64_t before = x->prog->all_done - x->prog->done;   /* other files' bytes */
    fill_speed(x, t, 0);
    x->prog->all_done = before + x->prog->done;
    x->prog->event = QF_HUB_EV_PROGRESS;
    x->opt->progress(x->prog, x->opt->user);
    return 0;
}

typedef struct {
    CURL              *curl;
    struct curl_slist *headers;
    const char        *endpoint;
    const char        *repo;
    const char        *rev;        /* as the user gave it (messages, refs)        */
    const char        *file_rev;   /* the listed commit when known, so a branch
                                      moving mid-pull cannot mix two commits   */
    int                have_token;
} hub;

/* Runs one GET with x as the sink; returns the curl code, x->code holds the status. */
static CURLcode do_get(hub *h, const char *url, xfer *x, int64_t resume_from, char *errbuf) {
    CURL *c = h->curl;
    curl_easy_reset(c);
    errbuf[0] = 0;
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h->headers);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);     /* stalled for a minute: give up */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 256L * 1024);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, x);
    /* CURLOPT_RANGE, not RESUME_FROM: a server that ignores it answers 200 with
     * the whole file, which on_body turns into a restart instead of an error. */
    char range[32];
    snprintf(range, sizeof range, "%lld-", (long long)resume_from);
    if (resume_from > 0) curl_easy_setopt(c, CURLOPT_RANGE, range);
    x->code = 0;
    x->err_code[0] = x->err_msg[0] = 0;
    x->err_len = 0;
    x->body_started = 0;
    x->range_start = -1;
    x->range_bad = 0;
    return curl_easy_perform(c);
}

/* The server's own words for an error response, for the end of a message. */
static const char *server_says(const xfer *x, char *buf, size_t n) {
    buf[0] = 0;
    if (x->err_msg[0]) {
        snprintf(buf, n, " (server: %s)", x->err_msg);
    } else if (x->err_len) {
        json_t *j = json_loadb(x->err_body, x->err_len, 0, NULL);
        const char *e = j ? json_string_value(json_object_get(j, "error")) : NULL;
        if (e) snprintf(buf, n, " (server: %.200s)", e);
        json_decref(j);
    }
    return buf;
}

static qf_status net_error(const char *url, CURLcode rc, const char *curl_msg) {
    return qf_errorf(QF_ERR_IO, "cannot download %s: %s: check the network, or set HF_ENDPOINT "
                     "(or --endpoint) to a reachable hub mirror",
                     url, curl_msg[0] ? curl_msg : curl_easy_strerror(rc));
}

/* Translates an HTTP error status on the repo listing or on a file. */
static qf_status http_error(const hub *h, const xfer *x, const char *url, const char *file) {
    char says[320];
    server_says(x, says, sizeof says);
    const char *tok_note = h->have_token ? " (the token sent was refused or has no access to it)" : "";
    int gated = !strcmp(x->err_code, "GatedRepo");
    if ((x->code == 401 || x->code == 403) && gated)
        return qf_errorf(QF_ERR_MISSING,
                         "repository %s is gated: accept its terms at %s/%s, then set HF_TOKEN to a token "
                         "with read access%s (HTTP %ld from %s)%s",
                         h->repo, h->endpoint, h->repo, tok_note, x->code, url, says);
    if (x->code == 401 || (x->code == 404 && !file && strcmp(x->err_code, "RevisionNotFound")))
        return qf_errorf(QF_ERR_MISSING,
                         "repository %s not found or gated: check the name, or set HF_TOKEN for gated "
                         "repos%s (HTTP %ld from %s)%s",
                         h->repo, tok_note, x->code, url, says);
    if (x->code == 403)
        return qf_errorf(QF_ERR_MISSING,
                         "access to %s refused: it is gated or private; request access at %s/%s, then set "
                         "HF_TOKEN to a token with read access%s (HTTP 403 from %s)%s",
                         h->repo, h->endpoint, h->repo, tok_note, url, says);
    if (x->code == 404 && !file)
        return qf_errorf(QF_ERR_MISSING, "revision '%s' not found in %s: check --revision (HTTP 404)%s",
                         h->rev, h->repo, says);
    if (x->code == 404)
        return qf_errorf(QF_ERR_MISSING, "%s: not found in %s at revision %s (HTTP 404 from %s)%s",
                         file, h->repo, h->rev, url, says);
    if (x->code == 416)
        return qf_errorf(QF_ERR_IO, "%s: the server refused to resume (HTTP 416)%s", file ? file : url, says);
    return qf_errorf(QF_ERR_IO, "%s: HTTP %ld from %s%s", file ? file : h->repo, x->code, url, says);
}

static int retryable_http(long code) { return code == 408 || code == 429 || code >= 500; }

static int retryable_curl(CURLcode rc) {
    switch (rc) {
    case CURLE_PARTIAL_FILE: case CURLE_RECV_ERROR: case CURLE_SEND_ERROR:
    case CURLE_OPERATION_TIMEDOUT: case CURLE_GOT_NOTHING: case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR: case CURLE_HTTP2: case CURLE_HTTP2_STREAM:
        return 1;
    default:
        return 0;
    }
}

/* ---- listing ------------------------------------------------------------------- */

static void files_free(remote_file *f, int n) {
    if (!f) return;
    for (int i = 0; i < n; i++) qf_free(f[i].name);
    qf_free(f);
}

/* GET /api/models/REPO/revision/REV?blobs=true → the wanted files + commit sha. */
static qf_status list_repo(hub *h, char *sha, size_t sha_n, remote_file **out, int *n_out) {
    char rev_q[1024], url[QF_HUB_PATH_MAX], errbuf[CURL_ERROR_SIZE] = "";
    xfer x = { .fd = -1 };
    json_t *root = NULL;
    remote_file *files = NULL;
    int n = 0, has_config = 0, has_weights = 0, has_bin = 0;
    qf_status s;
    *out = NULL;
    *n_out = 0;
    sha[0] = 0;
    if ((s = url_quote(h->rev, 0, rev_q, sizeof rev_q)) ||
        (s = fmt_path(url, sizeof url, "%s/api/models/%s/revision/%s?blobs=true", h->endpoint, h->repo, rev_q)))
        return s;
    CURLcode rc = do_get(h, url, &x, 0, errbuf);
    if (rc == CURLE_OK && x.code != 200) { s = http_error(h, &x, url, NULL); goto fail; }
    if (rc != CURLE_OK) {
        s = x.io_errno == ENOMEM ? qf_errorf(QF_ERR_NOMEM, "%s: out of memory", url)
                                 : net_error(url, rc, errbuf);
        goto fail;
    }
    json_error_t je;
    root = json_loadb(x.mem ? x.mem : "", x.mem_len, 0, &je);
    json_t *sib = root ? json_object_get(root, "siblings") : NULL;
    if (!json_is_array(sib)) {
        s = qf_errorf(QF_ERR_FORMAT, "%s: not a hub repo listing (%s)", url,
                      root ? "no \"siblings\" array" : je.text);
        goto fail;
    }
    const char *commit = json_string_value(json_object_get(root, "sha"));
    if (commit && is_hex(commit, 40)) snprintf(sha, sha_n, "%s", commit);

    files = qf_calloc(json_array_size(sib) + 1, sizeof *files);
    if (!files) { s = qf_errorf(QF_ERR_NOMEM, "%s: out of memory", url); goto fail; }
    size_t i;
    json_t *e;
    json_array_foreach(sib, i, e) {
        const char *name = json_string_value(json_object_get(e, "rfilename"));
        if (!name) continue;
        if (ends_with(name, ".bin") || ends_with(name, ".pth")) has_bin = 1;
        if (!qf_hub_wanted_file(name)) continue;
        remote_file *f = &files[n];
        if (!(f->name = qf_strdup(name))) { s = qf_errorf(QF_ERR_NOMEM, "out of memory"); goto fail; }
        n++;
        json_t *sz = json_object_get(e, "size"), *lfs = json_object_get(e, "lfs");
        f->size = json_is_integer(sz) ? (int64_t)json_integer_value(sz) : -1;
        if (json_is_object(lfs)) {
            const char *d = json_string_value(json_object_get(lfs, "sha256"));
            json_t *ls = json_object_get(lfs, "size");
            if (d && is_hex(d, 64)) snprintf(f->sha256, sizeof f->sha256, "%s", d);
            if (json_is_integer(ls)) f->size = (int64_t)json_integer_value(ls);
        } else {
            const char *b = json_string_value(json_object_get(e, "blobId"));
            if (b && is_hex(b, 40) && f->size >= 0) snprintf(f->blob_id, sizeof f->blob_id, "%s", b);
        }
        if (!strcmp(name, "config.json")) has_config = 1;
        if (ends_with(name, ".safetensors")) has_weights = 1;
    }
    if (!has_config) {
        s = qf_errorf(QF_ERR_MISSING, "%s at revision %s has no config.json: not a transformers checkpoint",
                      h->repo, h->rev);
        goto fail;
    }
    if (!has_weights) {
        s = qf_errorf(QF_ERR_UNSUPPORTED, "%s at revision %s has no .safetensors weights%s: qformer reads "
                      "safetensors only (convert the checkpoint with transformers' save_pretrained("
                      "safe_serialization=True), or pick a revision that has them)",
                      h->repo, h->rev, has_bin ? " (only PyTorch .bin files)" : "");
        goto fail;
    }
    json_decref(root);
    qf_free(x.mem);
    *out = files;
    *n_out = n;
    return QF_OK;
fail:
    json_decref(root);
    qf_free(x.mem);
    files_free(files, n);
    return s;
}

/* ---- one file ------------------------------------------------------------------ */

static void sleep_s(double s) {
    struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

static void emit(const qf_hub_options *opt, qf_hub_progress *p, qf_hub_event ev) {
    p->event = ev;
    if (opt->progress) opt->progress(p, opt->user);
    p->message = NULL;
}

static qf_status fetch_file(hub *h, const qf_hub_options *opt, const remote_file *f, const char *dir,
                            qf_hub_progress *p) {
    char path[QF_HUB_PATH_MAX], part[QF_HUB_PATH_MAX], name_q[1024], url[QF_HUB_PATH_MAX];
    char rev_q[1024], errbuf[CURL_ERROR_SIZE];
    xfer x = { .fd = -1, .rf = f, .prog = p, .opt = opt };
    qf_status s;
    struct stat sb;
    int64_t files_before = p->all_done;

    if ((s = fmt_path(path, sizeof path, "%s/%s", dir, f->name)) ||
        (s = fmt_path(part, sizeof part, "%s.incomplete", path)) ||
        (s = url_quote(f->name, 1, name_q, sizeof name_q)) ||
        (s = url_quote(h->file_rev, 0, rev_q, sizeof rev_q)) ||
        (s = fmt_path(url, sizeof url, "%s/%s/resolve/%s/%s", h->endpoint, h->repo, rev_q, name_q)))
        return s;
    p->file = f->name;
    p->total = f->size;
    p->resumed_from = 0;
    p->bytes_per_s = 0;
    p->eta_s = -1;

    if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode) && (f->size < 0 || sb.st_size == f->size)) {
        p->done = sb.st_size;
        p->all_done = files_before + sb.st_size;
        emit(opt, p, QF_HUB_EV_SKIP);
        return QF_OK;
    }

    x.fd = open(part, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (x.fd < 0) return qf_errorf(QF_ERR_IO, "%s: cannot create: %s", part, strerror(errno));
    if (flock(x.fd, LOCK_EX | LOCK_NB) != 0) {
        s = errno == EWOULDBLOCK
            ? qf_errorf(QF_ERR_BUSY, "%s: another qformer pull is downloading this file; wait for it", part)
            : qf_errorf(QF_ERR_IO, "%s: cannot lock: %s", part, strerror(errno));
        close(x.fd);
        return s;
    }
    if (f->sha256[0] || f->blob_id[0]) {
        if ((s = qf_digest_init(QF_DIGEST_SHA256, &x.md)) || (s = digest_reset(&x))) goto fail;
    }
    if (fstat(x.fd, &sb) != 0) { s = qf_errorf(QF_ERR_IO, "%s: %s", part, strerror(errno)); goto fail; }
    x.have = sb.st_size;
    if (f->size >= 0 && x.have > f->size) {          /* longer than the file: useless */
        if (ftruncate(x.fd, 0) != 0) { s = qf_errorf(QF_ERR_IO, "%s: %s", part, strerror(errno)); goto fail; }
        x.have = 0;
    }
    if (x.have > 0 && x.md && (s = qf_digest_update_fd(x.md, x.fd, x.have, part))) goto fail;
    if (lseek(x.fd, (off_t)x.have, SEEK_SET) < 0) { s = qf_errorf(QF_ERR_IO, "%s: %s", part, strerror(errno)); goto fail; }

    int restarted = 0;
    for (int attempt = 0;; attempt++) {
        if (f->size >= 0 && x.have == f->size) break;   /* complete on disk already */
        x.start_have = x.have;
        p->resumed_from = x.have;
        p->done = x.have;
        p->all_done = files_before + x.have;
        p->bytes_per_s = 0;
        p->eta_s = -1;
        emit(opt, p, QF_HUB_EV_START);
        x.t0 = x.last_report = qf_now();
        x.io_errno = 0;
        CURLcode rc = do_get(h, url, &x, x.have, errbuf);
        if (x.io_errno) {
            s = qf_errorf(QF_ERR_IO, "%s: cannot write: %s", part, strerror(x.io_errno));
            goto fail;
        }
        if (x.range_bad) {
            s = qf_errorf(QF_ERR_FORMAT, "%s: asked the server to resume at byte %lld, it answered with "
                          "another range (%lld): delete %s and run again", f->name, (long long)x.have,
                          (long long)x.range_start, part);
            goto fail;
        }
        if (rc == CURLE_OK && (x.code == 200 || x.code == 206)) {
            if (f->size < 0 || x.have == f->size) break;
            if (x.have < f->size) rc = CURLE_PARTIAL_FILE;   /* a short body without a length */
            else {
                s = qf_errorf(QF_ERR_FORMAT, "%s: the server sent %lld bytes, the listing says %lld",
                              f->name, (long long)x.have, (long long)f->size);
                goto corrupt;
            }
        }
        char why[512];
        if (((rc == CURLE_OK && x.code == 416) || rc == CURLE_RANGE_ERROR) && x.have > 0 && !restarted) {
            /* The server cannot resume from here: start the file over (once). */
            restarted = 1;
            if (ftruncate(x.fd, 0) != 0 || lseek(x.fd, 0, SEEK_SET) != 0) {
                s = qf_errorf(QF_ERR_IO, "%s: %s", part, strerror(errno));
                goto fail;
            }
            x.have = 0;
            if ((s = digest_reset(&x))) goto fail;
            attempt--;
            continue;
        }
        if (rc == CURLE_OK && !retryable_http(x.code)) { s = http_error(h, &x, url, f->name); goto fail; }
        if (rc != CURLE_OK && !retryable_curl(rc)) { s = net_error(url, rc, errbuf); goto fail; }
        if (rc == CURLE_OK) snprintf(why, sizeof why, "HTTP %ld", x.code);
        else snprintf(why, sizeof why, "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
        if (attempt >= opt->retries) {
            char a[32], b[32];
            s = qf_errorf(QF_ERR_IO, "%s: download interrupted at %s of %s (%s); the part is kept in %s: "
                          "run the same command again to resume", f->name, qf_format_bytes((double)x.have, a, sizeof a),
                          f->size >= 0 ? qf_format_bytes((double)f->size, b, sizeof b) : "?", why, part);
            goto fail;
        }
        p->done = x.have;
        p->message = why;
        emit(opt, p, QF_HUB_EV_RETRY);
        sleep_s(attempt + 1.0 < 10 ? attempt + 1.0 : 10);
    }

    /* verify */
    if (x.md) {
        char got[65];
        if ((s = qf_digest_hex(x.md, got))) goto fail;
        const char *want = f->sha256[0] ? f->sha256 : f->blob_id;
        if (strcmp(got, want)) {
            s = qf_errorf(QF_ERR_FORMAT, "%s: %s mismatch: expected %s, got %s; the corrupted download "
                          "was deleted: run the same command again", f->name,
                          f->sha256[0] ? "SHA-256" : "git blob SHA-1", want, got);
            goto corrupt;
        }
    }
    if (fdatasync(x.fd) != 0) { s = qf_errorf(QF_ERR_IO, "%s: %s", part, strerror(errno)); goto fail; }
    if (rename(part, path) != 0) {
        s = qf_errorf(QF_ERR_IO, "%s: cannot rename to %s: %s", part, path, strerror(errno));
        goto fail;
    }
    close(x.fd);
    qf_digest_free(x.md);
    fill_speed(&x, qf_now(), 1);
    p->all_done = files_before + x.have;
    emit(opt, p, QF_HUB_EV_DONE);
    return QF_OK;
corrupt:
    unlink(part);
    goto out;
fail:
    /* An empty part (refused before any byte came) is not worth keeping. */
    if (x.fd >= 0 && fstat(x.fd, &sb) == 0 && sb.st_size == 0) unlink(part);
out:
    if (x.fd >= 0) close(x.fd);
    qf_digest_free(x.md);
    qf_free(x.mem);
    return s;
}

/* ---- pull ------------------------------------------------------------------------ */

static qf_status write_ref(const char *repo_dir, const char *rev, const char *sha) {
    char path[QF_HUB_PATH_MAX], tmp[QF_HUB_PATH_MAX];
    qf_status s;
    if ((s = fmt_path(path, sizeof path, "%s/refs/%s", repo_dir, rev)) ||
        (s = fmt_path(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid())))
        return s;
    char parent[QF_HUB_PATH_MAX];
    snprintf(parent, sizeof parent, "%s", path);
    *strrchr(parent, '/') = 0;
    if ((s = make_dirs(parent))) return s;
    FILE *f = fopen(tmp, "w");
    if (!f) return qf_errorf(QF_ERR_IO, "%s: %s", tmp, strerror(errno));
    int bad = fputs(sha, f) < 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        unlink(tmp);
        return qf_errorf(QF_ERR_IO, "%s: cannot write the ref", path);
    }
    return QF_OK;
}

qf_status qf_hub_pull(const char *repo_id, const qf_hub_options *opt_in, char *out_dir, size_t n) {
    qf_hub_options opt;
    hub h = { 0 };
    remote_file *files = NULL;
    int n_files = 0;
    char endpoint[1024], token[1024], auth[1100], ua[128], sha[65], repo_dir[QF_HUB_PATH_MAX];
    char dir[QF_HUB_PATH_MAX];
    qf_status s;
    int curl_inited = 0;

    if (opt_in) opt = *opt_in;
    else qf_hub_options_init(&opt);
    if (opt.retries < 0) opt.retries = 0;
    if (!qf_hub_valid_repo_id(repo_id))
        return qf_errorf(QF_ERR_ARG, "'%s' is not a hub repo id (expected ORG/NAME, e.g. Salesforce/blip2-itm-vit-g)",
                         repo_id ? repo_id : "(null)");
    const char *rev = opt.revision ? opt.revision : "main";
    if (!valid_revision(rev)) return qf_errorf(QF_ERR_ARG, "'%s' is not a valid revision", rev);
    const char *ep = opt.endpoint ? opt.endpoint : env("HF_ENDPOINT");
    if ((s = fmt_path(endpoint, sizeof endpoint, "%s", ep ? ep : DEFAULT_ENDPOINT))) return s;
    for (size_t k = strlen(endpoint); k > 0 && endpoint[k - 1] == '/'; k--) endpoint[k - 1] = 0;
    if (strncmp(endpoint, "http://", 7) && strncmp(endpoint, "https://", 8))
        return qf_errorf(QF_ERR_ARG, "endpoint '%s' is not an http:// or https:// URL", endpoint);
    if ((s = find_token(&opt, token, sizeof token))) return s;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return qf_errorf(QF_ERR_UNSUPPORTED, "libcurl failed to initialise");
    curl_inited = 1;
    h.endpoint = endpoint;
    h.repo = repo_id;
    h.rev = rev;
    h.have_token = token[0] != 0;
    if (!(h.curl = curl_easy_init())) { s = qf_errorf(QF_ERR_NOMEM, "libcurl: cannot create a handle"); goto fail; }
    snprintf(ua, sizeof ua, "User-Agent: qformer/0.1; %s", curl_version());
    struct curl_slist *hl = curl_slist_append(NULL, ua);
    if (hl) h.headers = hl;
    if (hl && token[0]) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        hl = curl_slist_append(h.headers, auth);
        if (hl) h.headers = hl;
    }
    if (!hl) { s = qf_errorf(QF_ERR_NOMEM, "libcurl: out of memory"); goto fail; }

    if ((s = list_repo(&h, sha, sizeof sha, &files, &n_files))) goto fail;
    h.file_rev = sha[0] ? sha : rev;

    /* Destination: --dir, or CACHE/models--ORG--NAME/snapshots/COMMIT. */
    if ((s = repo_cache_dir(repo_id, repo_dir, sizeof repo_dir))) goto fail;
    if (opt.dir) s = fmt_path(dir, sizeof dir, "%s", opt.dir);
    else s = fmt_path(dir, sizeof dir, "%s/snapshots/%s", repo_dir, sha[0] ? sha : rev);
    if (s || (s = make_dirs(dir))) goto fail;

    /* Sizes, and room for what is still missing. */
    qf_hub_progress p = { .count = n_files, .total = -1, .eta_s = -1 };
    int64_t need = 0;
    for (int i = 0; i < n_files; i++) {
        char path[QF_HUB_PATH_MAX];
        struct stat sb;
        if (files[i].size < 0) continue;
        p.all_total += files[i].size;
        if ((s = fmt_path(path, sizeof path, "%s/%s", dir, files[i].name))) goto fail;
        if (stat(path, &sb) == 0 && sb.st_size == files[i].size) continue;
        int64_t partial = 0;
        if (strlen(path) + 12 < sizeof path) {
            strcat(path, ".incomplete");
            if (stat(path, &sb) == 0 && sb.st_size <= files[i].size) partial = sb.st_size;
        }
        need += files[i].size - partial;
    }
    struct statvfs vfs;
    if (statvfs(dir, &vfs) == 0) {
        double avail = (double)vfs.f_bavail * (double)vfs.f_frsize;
        if ((double)need > avail) {
            char a[32], b[32];
            s = qf_errorf(QF_ERR_IO, "not enough disk space in %s: %s to download, %s free "
                          "(set QF_CACHE or use --dir to put the model elsewhere)",
                          dir, qf_format_bytes((double)need, a, sizeof a), qf_format_bytes(avail, b, sizeof b));
            goto fail;
        }
    }
    emit(&opt, &p, QF_HUB_EV_LISTED);

    for (int i = 0; i < n_files; i++) {
        p.index = i;
        if ((s = fetch_file(&h, &opt, &files[i], dir, &p))) goto fail;
        p.all_done = 0;                       /* recount: files done so far */
        for (int j = 0; j <= i; j++) p.all_done += files[j].size > 0 ? files[j].size : 0;
    }
    if (!opt.dir && sha[0] && strcmp(sha, rev) && (s = write_ref(repo_dir, rev, sha))) goto fail;
    if (out_dir && (s = fmt_path(out_dir, n, "%s", dir))) goto fail;
    s = QF_OK;
fail:
    files_free(files, n_files);
    curl_slist_free_all(h.headers);
    if (h.curl) curl_easy_cleanup(h.curl);
    if (curl_inited) curl_global_cleanup();
    return s;
}
