/* safetensors.c - safetensors reader (single file or sharded) and writer.
 * Invariants after qf_st_open: every file is mmapped whole (PROT_READ,
 * MAP_PRIVATE) and its header fully validated; the tensor table is sorted
 * by name with unique names; conv[i] is NULL until tensor i needs an
 * aligned or float32 copy, made once and owned here. Opening touches only
 * the headers, never the payload pages. */
#include "embed/safetensors.h"

#include "embed/kernels_cpu.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c reads little-endian payloads in place: little-endian hosts only"
#endif

#define HEADER_MAX     (100u * 1000u * 1000u)  /* same cap as the reference reader */
#define INDEX_MAX      (100u * 1000u * 1000u)
#define UPCAST_PAR_MIN ((int64_t)1 << 16)      /* elements: smaller tensors upcast on one thread */
#define INDEX_NAME     "model.safetensors.index.json"
#define SINGLE_NAME    "model.safetensors"
#define META_KEY       "__metadata__"

static const struct { const char *name; size_t size; } dtypes[QF_DT_COUNT] = {
    [QF_DT_F32]  = { "F32", 4 },  [QF_DT_F16] = { "F16", 2 }, [QF_DT_BF16] = { "BF16", 2 },
    [QF_DT_F64]  = { "F64", 8 },  [QF_DT_I64] = { "I64", 8 }, [QF_DT_I32]  = { "I32", 4 },
    [QF_DT_I16]  = { "I16", 2 },  [QF_DT_I8]  = { "I8", 1 },  [QF_DT_U8]   = { "U8", 1 },
    [QF_DT_BOOL] = { "BOOL", 1 },
};

const char *qf_dtype_name(qf_dtype dt) {
    return (unsigned)dt < QF_DT_COUNT ? dtypes[dt].name : "?";
}

size_t qf_dtype_size(qf_dtype dt) {
    return (unsigned)dt < QF_DT_COUNT ? dtypes[dt].size : 0;
}

static int dtype_from_name(const char *s, qf_dtype *out) {
    for (int i = 0; i < QF_DT_COUNT; i++)
        if (strcmp(s, dtypes[i].name) == 0) { *out = (qf_dtype)i; return 1; }
    return 0;
}

typedef struct {
    char          *path;       /* owned; what tensors' `file` points to      */
    const uint8_t *map;        /* whole file, read-only                      */
    size_t         map_len;
    char          *strings;    /* owned arena: tensor names, metadata        */
    const char   **meta;       /* owned: key, value pairs into `strings`     */
    size_t         n_meta;
} st_file;

struct qf_st {
    char         *path;        /* as given to qf_st_open                     */
    st_file      *files;
    size_t        n_files;
    qf_st_tensor *t;           /* sorted by name                             */
    size_t        n;
    void        **conv;        /* [n]: aligned / float32 copy or NULL        */
    uint64_t      total_bytes;
};

/* ---- small helpers --------------------------------------------------------- */

static void fmt_shape(char *buf, size_t cap, int n_dim, const int64_t *shape) {
    size_t k = 0;
    k += (size_t)snprintf(buf + k, cap - k, "[");
    for (int i = 0; i < n_dim && k < cap; i++) {
        if (shape[i] < 0) k += (size_t)snprintf(buf + k, cap - k, "%s*", i ? ", " : "");
        else k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    }
    if (k < cap) snprintf(buf + k, cap - k, "]");
}

static uint64_t le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static char *path_join(const char *dir, size_t dir_len, const char *name) {
    size_t nl = strlen(name);
    char *p = qf_malloc(dir_len + 1 + nl + 1);
    if (!p) return NULL;
    memcpy(p, dir, dir_len);
    p[dir_len] = '/';
    memcpy(p + dir_len + 1, name, nl + 1);
    return p;
}

static int is_regular(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* jansson reports a duplicate key with the byte position just past it and
 * names it only when short: recover the (still escaped) key text. */
static void dup_key(const char *text, size_t len, int pos, char *buf, size_t cap) {
    buf[0] = 0;
    if (pos <= 0 || (size_t)pos > len) return;
    size_t c = (size_t)pos;
    while (c > 0 && text[c - 1] != '"') c--;
    if (c < 2) return;
    size_t close = c - 1, o = close;
    while (o > 0 && !(text[o - 1] == '"' && (o < 2 || text[o - 2] != '\\'))) o--;
    if (o == 0) return;
    size_t n = close - o;
    if (n >= cap) n = cap - 1;
    memcpy(buf, text + o, n);
    buf[n] = 0;
}

/* ---- one file ---------------------------------------------------------------- */

static qf_status map_file(st_file *f) {
    int fd = open(f->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return qf_errorf(QF_ERR_IO, "%s: %s", f->path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return qf_errorf(QF_ERR_IO, "%s: %s", f->path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return qf_errorf(QF_ERR_IO, "%s: not a regular file", f->path);
    }
    if (sb.st_size < 8) {
        close(fd);
        return qf_errorf(QF_ERR_FORMAT, "%s: file is %lld bytes, too short for the 8-byte header length",
                         f->path, (long long)sb.st_size);
    }
    void *m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (m == MAP_FAILED) return qf_errorf(QF_ERR_IO, "%s: cannot mmap: %s", f->path, strerror(e));
    f->map = m;
    f->map_len = (size_t)sb.st_size;
    return QF_OK;
}

typedef struct { uint64_t begin, end; size_t idx; } span;

static int span_cmp(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* Validates one header entry `val` for tensor `name` and fills t (except
 * name/file/data) and its span relative to the payload. */
static qf_status parse_entry(const char *path, const char *name, json_t *val, uint64_t payload_len,
                             qf_st_tensor *t, span *sp) {
    if (!json_is_object(val))
        return qf_errorf(QF_ERR_FORMAT, "%s: tensor '%s': header entry is not a JSON object", path, name);
    json_t *jd = json_object_get(val, "dtype");
    json_t *js = json_object_get(val, "shape");
    json_t *jo = json_object_get(val, "data_offsets");
    if (!json_is_string(jd))
        return qf_errorf(QF_ERR_FORMAT, "%s: tensor '%s': \"dtype\" is %s", path, name,
                         jd ? "not a string" : "missing");
    if (!dtype_from_name(json_string_value(jd), &t->dtype))
        return qf_errorf(QF_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%s'", path, name,
                         json_string_value(jd));
    if (!json_is_array(js))
        return qf_errorf(QF_ERR_FORMAT, "%s: tensor '%s': \"shape\" is %s", path, name,
                         js ? "not an array" : "missing");
    if (json_array_size(js) > QF_ST_MAX_DIMS)
        return qf_errorf(QF_ERR_LIMIT, "%s: tensor '%s': %zu dimensions, at most %d supported", path,
                         name, json_array_size(js), QF_ST_MAX_DIMS);
    t->n_dim = (int)json_array_size(js);
    int has_zero = 0;
    for (int i = 0; i < t->n_dim; i++) {
        json_t *d = json_array_get(js, (size_t)i);
        if (!json_is_integer(d))
            return qf_errorf(QF_ERR_FORMAT, "%s: tensor '%s': shape entry %d is not an integer", path,
                             name, i);
        t->shape[i] = (int64_t)json_integer_value(d);
        if (t->shape[i] < 0)
            return qf_errorf(QF_ERR_FORMAT, "%s: tensor '%s': negative dimension %lld in shape", path,
                             name, (long long)t->shape[i]);
        if (t->shape[i] == 0) has_zero = 1;
    }
    char shp[256];
    fmt_shape(shp, sizeof shp, t->n_dim, t->shape);
    uint64_t dsize = dtypes[t->dtype].size, n = 1;
    if (has_zero) n = 0;
    for (int i = 0; i < t->n_dim && n; i++) {
        if ((uint64_t)t->shape[i] > (uint64_t)INT64_MAX / n)
            return qf_errorf(QF_ERR_FORMAT, "%s: tensor '%s': shape %s: element count overflows", path,
                             name, shp);
        n *= (uint64_t)t->shape[i];
    }
    if (n > (uint64_t)INT64_MAX / dsize)
        return qf_errorf(QF_ERR_FORMAT, "%s: tensor '%s': shape %s: byte size overflows", path, name, shp);
    t->n_elem = (int64_t)n;
    uint64_t bytes = n * dsize;

    if (!json_is_array(jo) || json_array_size(jo) != 2 || !json_is_integer(json_array_get(jo, 0)) ||
        !json_is_integer(json_array_get(jo, 1)))
        return qf_errorf(QF_ERR_FORMAT, "%s: tensor '%s': \"data_offsets\" is %s", path, name,
                         jo ? "not an array of 2 integers" : "missing");
    json_int_t b = json_integer_value(json_array_get(jo, 0));
    json_int_t e = json_integer_value(json_array_get(jo, 1));
    if (b < 0 || e < 0)
        return qf_errorf(QF_ERR_FORMAT, "%s: tensor '%s': negative data_offsets [%lld, %lld]", path, name,
                         (long long)b, (long long)e);
    if (e < b)
        return qf_errorf(QF_ERR_FORMAT, "%s: tensor '%s': data_offsets [%lld, %lld] end before begin",
                         path, name, (long long)b, (long long)e);
    if ((uint64_t)(e - b) != bytes)
        return qf_errorf(QF_ERR_FORMAT,
                         "%s: tensor '%s': data_offsets [%lld, %lld] hold %llu bytes, but %s %s needs %llu",
                         path, name, (long long)b, (long long)e, (unsigned long long)(e - b),
                         dtypes[t->dtype].name, shp, (unsigned long long)bytes);
    if ((uint64_t)e > payload_len)
        return qf_errorf(QF_ERR_FORMAT,
                         "%s: tensor '%s': data_offsets [%lld, %lld] outside the %llu-byte payload", path,
                         name, (long long)b, (long long)e, (unsigned long long)payload_len);
    t->n_bytes = (size_t)bytes;
    sp->begin = (uint64_t)b;
    sp->end = (uint64_t)e;
    return QF_OK;
}

/* Parses and validates the header of mapped file f; *out gets a new array
 * of *out_n tensors (names in f->strings). */
static qf_status parse_header(st_file *f, qf_st_tensor **out, size_t *out_n) {
    qf_status s = QF_OK;
    json_t *root = NULL;
    qf_st_tensor *t = NULL;
    span *sp = NULL;
    *out = NULL;
    *out_n = 0;

    uint64_t hlen = le64(f->map);
    if (hlen > HEADER_MAX)
        return qf_errorf(QF_ERR_LIMIT, "%s: header length %llu exceeds the %u-byte limit", f->path,
                         (unsigned long long)hlen, HEADER_MAX);
    if (hlen > f->map_len - 8)
        return qf_errorf(QF_ERR_FORMAT, "%s: header length %llu runs past the end of the %zu-byte file",
                         f->path, (unsigned long long)hlen, f->map_len);
    const char *text = (const char *)f->map + 8;
    const uint8_t *payload = f->map + 8 + hlen;
    uint64_t payload_len = f->map_len - 8 - hlen;

    json_error_t err;
    root = json_loadb(text, (size_t)hlen, JSON_REJECT_DUPLICATES, &err);
    if (!root) {
        if (json_error_code(&err) == json_error_duplicate_key) {
            char key[512];
            dup_key(text, (size_t)hlen, err.position, key, sizeof key);
            return qf_errorf(QF_ERR_FORMAT, "%s: tensor '%s' appears twice in the header", f->path, key);
        }
        return qf_errorf(QF_ERR_FORMAT, "%s: header is not valid JSON: %s (byte %d)", f->path, err.text,
                         err.position);
    }
    if (!json_is_object(root)) {
        s = qf_errorf(QF_ERR_FORMAT, "%s: header is not a JSON object", f->path);
        goto fail;
    }

    json_t *meta = json_object_get(root, META_KEY);
    size_t n_meta = 0, arena = 0;
    const char *key;
    json_t *val;
    if (meta) {
        if (!json_is_object(meta)) {
            s = qf_errorf(QF_ERR_FORMAT, "%s: \"%s\" is not a JSON object", f->path, META_KEY);
            goto fail;
        }
        json_object_foreach(meta, key, val) {
            if (!json_is_string(val)) {
                s = qf_errorf(QF_ERR_FORMAT, "%s: \"%s\" value for '%s' is not a string", f->path, META_KEY,
                              key);
                goto fail;
            }
            arena += strlen(key) + 1 + json_string_length(val) + 1;
            n_meta++;
        }
    }
    size_t n = json_object_size(root) - (meta ? 1 : 0);
    json_object_foreach(root, key, val) {
        if (val != meta) arena += strlen(key) + 1;
    }

    f->strings = qf_malloc(arena);
    f->meta = qf_calloc(2 * n_meta + 1, sizeof *f->meta);
    t = qf_calloc(n, sizeof *t);
    sp = qf_calloc(n, sizeof *sp);
    if (!f->strings || !f->meta || !t || !sp) {
        s = qf_errorf(QF_ERR_NOMEM, "%s: cannot allocate the table of %zu tensors", f->path, n);
        goto fail;
    }
    char *w = f->strings;
    if (meta) {
        json_object_foreach(meta, key, val) {
            size_t kl = strlen(key) + 1, vl = json_string_length(val);
            f->meta[2 * f->n_meta] = memcpy(w, key, kl);
            w += kl;
            memcpy(w, json_string_value(val), vl);
            w[vl] = 0;
            f->meta[2 * f->n_meta + 1] = w;
            w += vl + 1;
            f->n_meta++;
        }
    }
    size_t i = 0;
    json_object_foreach(root, key, val) {
        if (val == meta) continue;
        s = parse_entry(f->path, key, val, payload_len, &t[i], &sp[i]);
        if (s != QF_OK) goto fail;
        size_t kl = strlen(key) + 1;
        t[i].name = memcpy(w, key, kl);
        w += kl;
        t[i].file = f->path;
        t[i].data = payload + sp[i].begin;
        sp[i].idx = i;
        i++;
    }
    QF_ASSERT(i == n);

    /* Overlap: sort spans by begin and compare each non-empty span with the
     * furthest-reaching one before it. */
    qsort(sp, n, sizeof *sp, span_cmp);
    const span *reach = NULL;                 /* non-empty span ending furthest so far */
    for (size_t k = 0; k < n; k++) {
        if (sp[k].end == sp[k].begin) continue;
        if (reach && reach->end > sp[k].begin) {
            s = qf_errorf(QF_ERR_FORMAT,
                          "%s: tensors '%s' and '%s' overlap in the payload ([%llu, %llu] and [%llu, %llu])",
                          f->path, t[reach->idx].name, t[sp[k].idx].name,
                          (unsigned long long)reach->begin, (unsigned long long)reach->end,
                          (unsigned long long)sp[k].begin, (unsigned long long)sp[k].end);
            goto fail;
        }
        reach = &sp[k];
    }
    qf_free(sp);
    json_decref(root);
    *out = t;
    *out_n = n;
    return QF_OK;

fail:
    qf_free(sp);
    qf_free(t);
    json_decref(root);
    return s;
}

/* Maps `path` (taking ownership of it) into *f and parses its header,
 * appending its tensors to st->t. */
static qf_status add_file(qf_st *st, st_file *f, char *path) {
    f->path = path;
    qf_st_tensor *t = NULL;
    size_t n = 0;
    qf_status s = map_file(f);
    if (s != QF_OK) return s;
    s = parse_header(f, &t, &n);
    if (s != QF_OK) return s;
    if (n) {
        qf_st_tensor *all = qf_realloc(st->t, (st->n + n) * sizeof *all);
        if (!all) {
            qf_free(t);
            return qf_errorf(QF_ERR_NOMEM, "%s: cannot allocate the table of %zu tensors", f->path,
                             st->n + n);
        }
        memcpy(all + st->n, t, n * sizeof *t);
        st->t = all;
        st->n += n;
    }
    qf_free(t);
    return QF_OK;
}

static int tensor_cmp(const void *a, const void *b) {
    return strcmp(((const qf_st_tensor *)a)->name, ((const qf_st_tensor *)b)->name);
}

static int key_cmp(const void *key, const void *elem) {
    return strcmp((const char *)key, ((const qf_st_tensor *)elem)->name);
}

/* Sorts the table and refuses a name held by two files. */
static qf_status sort_tensors(qf_st *st) {
    if (st->n) qsort(st->t, st->n, sizeof *st->t, tensor_cmp);
    for (size_t i = 1; i < st->n; i++)
        if (strcmp(st->t[i - 1].name, st->t[i].name) == 0)
            return qf_errorf(QF_ERR_FORMAT, "%s: tensor '%s' is in both %s and %s", st->path,
                             st->t[i].name, st->t[i - 1].file, st->t[i].file);
    return QF_OK;
}

/* A shard name must be a plain file name in the index's directory. */
static int safe_shard_name(const char *s) {
    return s[0] && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

static qf_status open_index(qf_st *st, const char *index_path) {
    char *text = NULL;
    size_t len = 0;
    json_t *root = NULL, *shards = NULL;
    qf_status s = qf_read_file(index_path, INDEX_MAX, &text, &len);
    if (s != QF_OK) return s;
    json_error_t err;
    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    if (!root) {
        s = qf_errorf(QF_ERR_FORMAT, "%s: not valid JSON: %s (line %d, column %d)", index_path, err.text,
                      err.line, err.column);
        goto fail;
    }
    json_t *wm = json_is_object(root) ? json_object_get(root, "weight_map") : NULL;
    if (!json_is_object(wm) || json_object_size(wm) == 0) {
        s = qf_errorf(QF_ERR_FORMAT, "%s: no \"weight_map\" object listing the tensors", index_path);
        goto fail;
    }

    /* Distinct shards in order of first mention: name -> index. */
    shards = json_object();
    if (!shards) {
        s = qf_errorf(QF_ERR_NOMEM, "%s: out of memory", index_path);
        goto fail;
    }
    const char *name;
    json_t *val;
    json_object_foreach(wm, name, val) {
        if (!json_is_string(val)) {
            s = qf_errorf(QF_ERR_FORMAT, "%s: weight_map entry for tensor '%s' is not a string",
                          index_path, name);
            goto fail;
        }
        const char *shard = json_string_value(val);
        if (!safe_shard_name(shard)) {
            s = qf_errorf(QF_ERR_FORMAT,
                          "%s: shard '%s' of tensor '%s' is not a plain file name next to the index "
                          "('/' and '..' are refused)", index_path, shard, name);
            goto fail;
        }
        if (!json_object_get(shards, shard) &&
            json_object_set_new(shards, shard, json_integer((json_int_t)json_object_size(shards))) != 0) {
            s = qf_errorf(QF_ERR_NOMEM, "%s: out of memory", index_path);
            goto fail;
        }
    }

    const char *slash = strrchr(index_path, '/');
    st->n_files = json_object_size(shards);
    st->files = qf_calloc(st->n_files, sizeof *st->files);
    if (!st->files) {
        st->n_files = 0;
        s = qf_errorf(QF_ERR_NOMEM, "%s: out of memory", index_path);
        goto fail;
    }
    json_object_foreach(shards, name, val) {
        size_t k = (size_t)json_integer_value(val);
        char *p = slash ? path_join(index_path, (size_t)(slash - index_path), name) : qf_strdup(name);
        if (!p) {
            s = qf_errorf(QF_ERR_NOMEM, "%s: out of memory", index_path);
            goto fail;
        }
        s = add_file(st, &st->files[k], p);
        if (s == QF_ERR_IO) qf_error_prefix(s, "%s: shard listed in the index", index_path);
        if (s != QF_OK) goto fail;
    }
    s = sort_tensors(st);
    if (s != QF_OK) goto fail;

    json_object_foreach(wm, name, val) {
        const st_file *want = &st->files[json_integer_value(json_object_get(shards, json_string_value(val)))];
        const qf_st_tensor *t = qf_st_find(st, name);
        if (!t) {
            s = qf_errorf(QF_ERR_MISSING, "%s: tensor '%s' is listed for shard %s but is not in it",
                          index_path, name, want->path);
            goto fail;
        }
        if (t->file != want->path) {
            s = qf_errorf(QF_ERR_MISSING, "%s: tensor '%s' is listed for shard %s but is in %s instead",
                          index_path, name, want->path, t->file);
            goto fail;
        }
    }

fail:
    json_decref(shards);
    json_decref(root);
    qf_free(text);
    return s;
}

/* For a directory: the index, else model.safetensors, else the only
 * *.safetensors file. *out gets a new path. */
static qf_status resolve_dir(const char *dir, char **out) {
    size_t dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/') dl--;
    *out = NULL;
    const char *prefer[] = { INDEX_NAME, SINGLE_NAME };
    for (int i = 0; i < 2; i++) {
        char *p = path_join(dir, dl, prefer[i]);
        if (!p) return qf_errorf(QF_ERR_NOMEM, "%s: out of memory", dir);
        if (is_regular(p)) { *out = p; return QF_OK; }
        qf_free(p);
    }
    DIR *d = opendir(dir);
    if (!d) return qf_errorf(QF_ERR_IO, "%s: %s", dir, strerror(errno));
    char *found = NULL;
    int n_found = 0;
    qf_status s = QF_OK;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!ends_with(e->d_name, ".safetensors")) continue;
        char *p = path_join(dir, dl, e->d_name);
        if (!p) { s = qf_errorf(QF_ERR_NOMEM, "%s: out of memory", dir); break; }
        if (!is_regular(p)) { qf_free(p); continue; }
        if (++n_found == 1) { found = p; continue; }
        s = qf_errorf(QF_ERR_IO, "%s: several .safetensors files (%s, %s, ...) and no %s or %s: "
                      "name the file to open", dir, strrchr(found, '/') + 1, e->d_name, INDEX_NAME,
                      SINGLE_NAME);
        qf_free(p);
        break;
    }
    closedir(d);
    if (s == QF_OK && n_found == 0) s = qf_errorf(QF_ERR_IO, "no safetensors file in %s", dir);
    if (s != QF_OK) { qf_free(found); return s; }
    *out = found;
    return QF_OK;
}

/* ---- public reader ------------------------------------------------------------ */

qf_status qf_st_open(const char *path, qf_st **out) {
    if (!out) return qf_errorf(QF_ERR_ARG, "qf_st_open: NULL output pointer");
    *out = NULL;
    if (!path || !path[0]) return qf_errorf(QF_ERR_ARG, "qf_st_open: empty path");
    struct stat sb;
    if (stat(path, &sb) != 0) return qf_errorf(QF_ERR_IO, "%s: %s", path, strerror(errno));

    qf_status s = QF_OK;
    char *file = NULL;
    qf_st *st = qf_calloc(1, sizeof *st);
    if (!st || !(st->path = qf_strdup(path))) {
        s = qf_errorf(QF_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    if (S_ISDIR(sb.st_mode)) {
        s = resolve_dir(path, &file);
        if (s != QF_OK) goto fail;
    } else if (!(file = qf_strdup(path))) {
        s = qf_errorf(QF_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }

    if (ends_with(file, ".json")) {
        s = open_index(st, file);
        qf_free(file);
        file = NULL;
        if (s != QF_OK) goto fail;
    } else {
        st->files = qf_calloc(1, sizeof *st->files);
        if (!st->files) {
            s = qf_errorf(QF_ERR_NOMEM, "%s: out of memory", path);
            goto fail;
        }
        st->n_files = 1;
        s = add_file(st, &st->files[0], file);   /* takes ownership of file */
        file = NULL;
        if (s != QF_OK) goto fail;
        s = sort_tensors(st);
        QF_ASSERT(s == QF_OK);                   /* one file: jansson refused duplicates */
    }

    st->conv = qf_calloc(st->n, sizeof *st->conv);
    if (!st->conv) {
        s = qf_errorf(QF_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    for (size_t i = 0; i < st->n; i++) st->total_bytes += st->t[i].n_bytes;
    *out = st;
    return QF_OK;

fail:
    qf_free(file);
    qf_st_close(st);
    return s;
}

void qf_st_close(qf_st *st) {
    if (!st) return;
    if (st->conv)
        for (size_t i = 0; i < st->n; i++) qf_free(st->conv[i]);
    qf_free(st->conv);
    qf_free(st->t);
    for (size_t i = 0; i < st->n_files; i++) {
        st_file *f = &st->files[i];
        if (f->map) munmap((void *)f->map, f->map_len);
        qf_free(f->meta);
        qf_free(f->strings);
        qf_free(f->path);
    }
    qf_free(st->files);
    qf_free(st->path);
    qf_free(st);
}

const char *qf_st_path(const qf_st *st) { return st ? st->path : NULL; }

const char *qf_st_metadata(const qf_st *st, const char *key) {
    if (!st || !key) return NULL;
    for (size_t i = 0; i < st->n_files; i++)
        for (size_t k = 0; k < st->files[i].n_meta; k++)
            if (strcmp(st->files[i].meta[2 * k], key) == 0) return st->files[i].meta[2 * k + 1];
    return NULL;
}

size_t qf_st_count(const qf_st *st) { return st ? st->n : 0; }

const qf_st_tensor *qf_st_at(const qf_st *st, size_t i) {
    return st && i < st->n ? &st->t[i] : NULL;
}

const qf_st_tensor *qf_st_find(const qf_st *st, const char *name) {
    if (!st || !name || !st->n) return NULL;
    return bsearch(name, st->t, st->n, sizeof *st->t, key_cmp);
}

uint64_t qf_st_total_bytes(const qf_st *st) { return st ? st->total_bytes : 0; }

/* Presence and shape check shared by the typed getters. */
static qf_status lookup(const qf_st *st, const char *name, int n_dim, const int64_t *shape,
                        const qf_st_tensor **out) {
    *out = NULL;
    if (!st || !name) return qf_errorf(QF_ERR_ARG, "safetensors: NULL handle or tensor name");
    if (n_dim < 0 || n_dim > QF_ST_MAX_DIMS || (n_dim > 0 && !shape))
        return qf_errorf(QF_ERR_ARG, "%s: tensor '%s': invalid expected shape (n_dim %d)", st->path, name,
                         n_dim);
    const qf_st_tensor *t = qf_st_find(st, name);
    if (!t) return qf_errorf(QF_ERR_MISSING, "tensor '%s' not found in %s", name, st->path);
    *out = t;
    return QF_OK;
}

static qf_status check_shape(const qf_st_tensor *t, int n_dim, const int64_t *shape) {
    int ok = t->n_dim == n_dim;
    for (int i = 0; ok && i < n_dim; i++) ok = shape[i] < 0 || shape[i] == t->shape[i];
    if (ok) return QF_OK;
    char got[256], want[256];
    fmt_shape(got, sizeof got, t->n_dim, t->shape);
    fmt_shape(want, sizeof want, n_dim, shape);
    return qf_errorf(QF_ERR_SHAPE, "%s: tensor '%s' is %s, expected %s", t->file, t->name, got, want);
}

/* Elements [i0, i0 + n) of an F16/BF16 tensor as float32. */
static void upcast_range(const qf_st_tensor *t, int64_t i0, int64_t n, float *restrict dst) {
    const uint8_t *restrict src = (const uint8_t *)t->data + 2 * i0;
    if (t->dtype == QF_DT_F16) {
        #pragma omp parallel for schedule(static) if (n >= UPCAST_PAR_MIN)
        for (int64_t i = 0; i < n; i++)
            dst[i] = qf_cpu_float_of_half((uint16_t)(src[2 * i] | (src[2 * i + 1] << 8)));
    } else {
        #pragma omp parallel for schedule(static) if (n >= UPCAST_PAR_MIN)
        for (int64_t i = 0; i < n; i++) {
            uint32_t bits = ((uint32_t)src[2 * i] << 16) | ((uint32_t)src[2 * i + 1] << 24);
            memcpy(&dst[i], &bits, 4);
        }
    }
}

static void upcast(const qf_st_tensor *t, float *restrict dst) { upcast_range(t, 0, t->n_elem, dst); }

static const float empty_data[1];

qf_status qf_st_get_f32(qf_st *st, const char *name, int n_dim, const int64_t *shape,
                        const float **out) {
    if (!out) return qf_errorf(QF_ERR_ARG, "qf_st_get_f32: NULL output pointer");
    *out = NULL;
    const qf_st_tensor *t;
    qf_status s = lookup(st, name, n_dim, shape, &t);
    if (s != QF_OK) return s;
    if (t->dtype != QF_DT_F32 && t->dtype != QF_DT_F16 && t->dtype != QF_DT_BF16)
        return qf_errorf(QF_ERR_SHAPE, "%s: tensor '%s' is %s, expected a float tensor (F32, F16 or BF16)",
                         t->file, t->name, dtypes[t->dtype].name);
    s = check_shape(t, n_dim, shape);
    if (s != QF_OK) return s;

    size_t i = (size_t)(t - st->t);
    if (t->n_elem == 0) { *out = empty_data; return QF_OK; }
    if (t->dtype == QF_DT_F32 && (uintptr_t)t->data % sizeof(float) == 0) {
        *out = t->data;
        return QF_OK;
    }
    if (!st->conv[i]) {
        float *buf = qf_malloc((size_t)t->n_elem * sizeof *buf);
        if (!buf)
            return qf_errorf(QF_ERR_NOMEM, "%s: tensor '%s': cannot allocate %zu bytes for float32",
                             t->file, t->name, (size_t)t->n_elem * sizeof *buf);
        if (t->dtype == QF_DT_F32) memcpy(buf, t->data, t->n_bytes);   /* unaligned in the file */
        else upcast(t, buf);
        st->conv[i] = buf;
    }
    *out = st->conv[i];
    return QF_OK;
}

void qf_st_release(const qf_st *st, const char *name) {
    const qf_st_tensor *t = qf_st_find(st, name);
    if (!t || !t->n_bytes) return;
    const uint8_t *d = t->data;
    for (size_t i = 0; i < st->n_files; i++) {
        const st_file *f = &st->files[i];
        if (!f->map || d < f->map || d >= f->map + f->map_len) continue;   /* not mmapped here */
        uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
        uintptr_t a = ((uintptr_t)d + pg - 1) & ~(pg - 1), e = ((uintptr_t)d + t->n_bytes) & ~(pg - 1);
        if (e > a) (void)madvise((void *)a, e - a, MADV_DONTNEED);   /* advice: failure is harmless */
        return;
    }
}

qf_status qf_st_read_f32(const qf_st *st, const char *name, int n_dim, const int64_t *shape,
                         int64_t first, int64_t count, float *dst) {
    const qf_st_tensor *t;
    qf_status s = lookup(st, name, n_dim, shape, &t);
    if (s != QF_OK) return s;
    if (t->dtype != QF_DT_F32 && t->dtype != QF_DT_F16 && t->dtype != QF_DT_BF16)
        return qf_errorf(QF_ERR_SHAPE, "%s: tensor '%s' is %s, expected a float tensor (F32, F16 or BF16)",
                         t->file, t->name, dtypes[t->dtype].name);
    if ((s = check_shape(t, n_dim, shape)) != QF_OK) return s;
    if (first < 0 || count < 0 || first > t->n_elem || count > t->n_elem - first)
        return qf_errorf(QF_ERR_ARG, "%s: tensor '%s' has %lld elements, asked for [%lld, %lld)", t->file,
                         t->name, (long long)t->n_elem, (long long)first, (long long)(first + count));
    if (t->dtype == QF_DT_F32) memcpy(dst, (const uint8_t *)t->data + 4 * first, (size_t)count * 4);
    else upcast_range(t, first, count, dst);
    return QF_OK;
}

qf_status qf_st_get_raw(const qf_st *st, const char *name, qf_dtype dtype, int n_dim,
                        const int64_t *shape, const void **out) {
    if (!out) return qf_errorf(QF_ERR_ARG, "qf_st_get_raw: NULL output pointer");
    *out = NULL;
    if ((unsigned)dtype >= QF_DT_COUNT)
        return qf_errorf(QF_ERR_ARG, "qf_st_get_raw: invalid dtype %d", (int)dtype);
    const qf_st_tensor *t;
    qf_status s = lookup(st, name, n_dim, shape, &t);
    if (s != QF_OK) return s;
    if (t->dtype != dtype)
        return qf_errorf(QF_ERR_SHAPE, "%s: tensor '%s' is %s, expected %s", t->file, t->name,
                         dtypes[t->dtype].name, dtypes[dtype].name);
    s = check_shape(t, n_dim, shape);
    if (s != QF_OK) return s;

    size_t i = (size_t)(t - st->t);
    if (t->n_elem == 0) { *out = empty_data; return QF_OK; }
    if ((uintptr_t)t->data % dtypes[t->dtype].size == 0) { *out = t->data; return QF_OK; }
    if (!st->conv[i]) {                      /* conv is owned storage, not part of *st */
        void *buf = qf_malloc(t->n_bytes);
        if (!buf)
            return qf_errorf(QF_ERR_NOMEM, "%s: tensor '%s': cannot allocate %zu bytes", t->file, t->name,
                             t->n_bytes);
        memcpy(buf, t->data, t->n_bytes);
        st->conv[i] = buf;
    }
    *out = st->conv[i];
    return QF_OK;
}

/* ---- writer ------------------------------------------------------------------- */

static qf_status write_all(int fd, const void *buf, size_t n, const char *path) {
    const uint8_t *p = buf;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return qf_errorf(QF_ERR_IO, "%s: write failed: %s", path, strerror(w < 0 ? errno : EIO));
        p += w;
        n -= (size_t)w;
    }
    return QF_OK;
}

/* Checks one item, returning its byte size in *bytes. */
static qf_status check_item(const char *path, const qf_st_item *it, size_t k, uint64_t *bytes) {
    if (!it->name || !it->name[0])
        return qf_errorf(QF_ERR_ARG, "%s: item %zu has no name", path, k);
    if (strcmp(it->name, META_KEY) == 0)
        return qf_errorf(QF_ERR_ARG, "%s: '%s' is reserved, not a tensor name", path, META_KEY);
    if ((unsigned)it->dtype >= QF_DT_COUNT)
        return qf_errorf(QF_ERR_ARG, "%s: tensor '%s': invalid dtype %d", path, it->name, (int)it->dtype);
    if (it->n_dim < 0 || it->n_dim > QF_ST_MAX_DIMS || (it->n_dim > 0 && !it->shape))
        return qf_errorf(QF_ERR_ARG, "%s: tensor '%s': invalid n_dim %d", path, it->name, it->n_dim);
    uint64_t n = 1;
    int has_zero = 0;
    for (int d = 0; d < it->n_dim; d++) {
        if (it->shape[d] < 0)
            return qf_errorf(QF_ERR_ARG, "%s: tensor '%s': negative dimension %lld", path, it->name,
                             (long long)it->shape[d]);
        if (it->shape[d] == 0) has_zero = 1;
    }
    for (int d = 0; d < it->n_dim && !has_zero; d++) {
        if ((uint64_t)it->shape[d] > (uint64_t)INT64_MAX / 8 / n)
            return qf_errorf(QF_ERR_ARG, "%s: tensor '%s': shape too large", path, it->name);
        n *= (uint64_t)it->shape[d];
    }
    if (has_zero) n = 0;
    *bytes = n * dtypes[it->dtype].size;
    if (*bytes && !it->data)
        return qf_errorf(QF_ERR_ARG, "%s: tensor '%s': NULL data for %llu bytes", path, it->name,
                         (unsigned long long)*bytes);
    return QF_OK;
}

/* The JSON header of qf_st_write into `root`: "__metadata__" from the
 * key/value list, then one entry per item (dtype, shape, data_offsets). */
static qf_status header_json(json_t *root, const char *path, const qf_st_item *items, size_t n_items,
                             const char *const *metadata_kv, const uint64_t *bytes, const uint64_t *offs) {
    qf_status s = QF_OK;
    if (metadata_kv && metadata_kv[0]) {
        json_t *meta = json_object();
        if (!meta || json_object_set_new(root, META_KEY, meta) != 0) {
            s = qf_errorf(QF_ERR_NOMEM, "%s: out of memory", path);
            return s;
        }
        for (size_t k = 0; metadata_kv[k]; k += 2) {
            const char *key = metadata_kv[k], *v = metadata_kv[k + 1];
            if (!v) {
                s = qf_errorf(QF_ERR_ARG, "%s: metadata key '%s' has no value", path, key);
                return s;
            }
            json_t *jv = json_string(v);
            if (!jv) {
                s = qf_errorf(QF_ERR_ARG, "%s: metadata '%s' is not valid UTF-8", path, key);
                return s;
            }
            if (json_object_get(meta, key)) {
                json_decref(jv);
                s = qf_errorf(QF_ERR_ARG, "%s: metadata key '%s' given twice", path, key);
                return s;
            }
            if (json_object_set_new(meta, key, jv) != 0) {      /* steals jv even on failure */
                s = qf_errorf(QF_ERR_ARG, "%s: metadata key '%s' is not valid UTF-8", path, key);
                return s;
            }
        }
    }
    for (size_t k = 0; k < n_items; k++) {
        const qf_st_item *it = &items[k];
        if (json_object_get(root, it->name)) {
            s = qf_errorf(QF_ERR_ARG, "%s: tensor '%s' given twice", path, it->name);
            return s;
        }
        json_t *shape = json_array();
        json_t *e = json_pack("{s:s, s:o, s:[I, I]}", "dtype", dtypes[it->dtype].name, "shape", shape,
                              "data_offsets", (json_int_t)offs[k], (json_int_t)(offs[k] + bytes[k]));
        if (!e) {
            s = qf_errorf(QF_ERR_NOMEM, "%s: out of memory", path);
            return s;
        }
        for (int d = 0; d < it->n_dim; d++)
            if (json_array_append_new(shape, json_integer((json_int_t)it->shape[d])) != 0) {
                json_decref(e);
                s = qf_errorf(QF_ERR_NOMEM, "%s: out of memory", path);
                return s;
            }
        if (json_object_set_new(root, it->name, e) != 0) {     /* steals e even on failure */
            s = qf_errorf(QF_ERR_ARG, "%s: tensor name '%s' is not valid UTF-8", path, it->name);
            return s;
        }
    }
    return QF_OK;
}

qf_status qf_st_write(const char *path, const qf_st_item *items, size_t n_items,
                      const char *const *metadata_kv) {
    if (!path || !path[0]) return qf_errorf(QF_ERR_ARG, "qf_st_write: empty path");
    if (n_items && !items) return qf_errorf(QF_ERR_ARG, "%s: NULL item array", path);

    qf_status s = QF_OK;
    uint64_t *bytes = qf_calloc(n_items, sizeof *bytes);
    uint64_t *offs = qf_calloc(n_items, sizeof *offs);
    char *hdr = NULL, *tmp = NULL;
    json_t *root = json_object();
    int fd = -1, created = 0;
    if (!bytes || !offs || !root) {
        s = qf_errorf(QF_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    for (size_t k = 0; k < n_items; k++) {
        s = check_item(path, &items[k], k, &bytes[k]);
        if (s != QF_OK) goto fail;
    }

    /* Payload layout: widest dtypes first (stable), spans contiguous. */
    uint64_t off = 0;
    for (size_t width = 8; width >= 1; width /= 2)
        for (size_t k = 0; k < n_items; k++)
            if (dtypes[items[k].dtype].size == width) { offs[k] = off; off += bytes[k]; }

    if ((s = header_json(root, path, items, n_items, metadata_kv, bytes, offs))) goto fail;

    size_t flags = JSON_COMPACT | JSON_PRESERVE_ORDER;
    size_t jlen = json_dumpb(root, NULL, 0, flags);
    if (jlen == 0) {
        s = qf_errorf(QF_ERR_NOMEM, "%s: cannot serialise the header", path);
        goto fail;
    }
    size_t hlen = (8 + jlen + 7) / 8 * 8 - 8;       /* payload starts 8-byte aligned */
    if (hlen > HEADER_MAX) {
        s = qf_errorf(QF_ERR_LIMIT, "%s: header of %zu bytes exceeds the %u-byte limit", path, hlen,
                      HEADER_MAX);
        goto fail;
    }
    hdr = qf_malloc(8 + hlen);
    tmp = qf_malloc(strlen(path) + 5);
    if (!hdr || !tmp) {
        s = qf_errorf(QF_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    for (int b = 0; b < 8; b++) hdr[b] = (char)(((uint64_t)hlen >> (8 * b)) & 0xff);
    QF_ASSERT(json_dumpb(root, hdr + 8, jlen, flags) == jlen);
    memset(hdr + 8 + jlen, ' ', hlen - jlen);
    sprintf(tmp, "%s.tmp", path);

    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        s = qf_errorf(QF_ERR_IO, "%s: %s", tmp, strerror(errno));
        goto fail;
    }
    created = 1;
    s = write_all(fd, hdr, 8 + hlen, tmp);
    for (size_t width = 8; width >= 1 && s == QF_OK; width /= 2)
        for (size_t k = 0; k < n_items && s == QF_OK; k++)
            if (dtypes[items[k].dtype].size == width && bytes[k])
                s = write_all(fd, items[k].data, (size_t)bytes[k], tmp);
    if (s != QF_OK) goto fail;
    if (fsync(fd) != 0) {
        s = qf_errorf(QF_ERR_IO, "%s: fsync: %s", tmp, strerror(errno));
        goto fail;
    }
    int rc = close(fd);
    fd = -1;
    if (rc != 0) {
        s = qf_errorf(QF_ERR_IO, "%s: close: %s", tmp, strerror(errno));
        goto fail;
    }
    if (rename(tmp, path) != 0) {
        s = qf_errorf(QF_ERR_IO, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
        goto fail;
    }
    created = 0;
    /* Make the rename durable; a directory that cannot be opened is not an error. */
    const char *slash = strrchr(path, '/');
    if (slash) tmp[slash == path ? 1 : slash - path] = 0;
    else strcpy(tmp, ".");
    int dfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }

fail:
    if (fd >= 0) close(fd);
    if (created) unlink(tmp);
    qf_free(tmp);
    qf_free(hdr);
    json_decref(root);
    qf_free(offs);
    qf_free(bytes);
    return s;
}

/* ---- in-memory set ------------------------------------------------------------ */

qf_status qf_st_from_memory(const char *label, const qf_st_item *items, size_t n_items, qf_st **out) {
    if (!out) return qf_errorf(QF_ERR_ARG, "qf_st_from_memory: NULL output pointer");
    *out = NULL;
    if (!label || !label[0]) label = "<memory>";
    if (n_items && !items) return qf_errorf(QF_ERR_ARG, "%s: NULL item array", label);

    qf_status s = QF_OK;
    size_t names_len = 0;
    qf_st *st = qf_calloc(1, sizeof *st);
    if (!st || !(st->path = qf_strdup(label)) || !(st->files = qf_calloc(1, sizeof *st->files)) ||
        !(st->files[0].path = qf_strdup(label))) {
        s = qf_errorf(QF_ERR_NOMEM, "%s: out of memory", label);
        goto fail;
    }
    st->n_files = 1;
    st_file *f = &st->files[0];
    for (size_t k = 0; k < n_items; k++) {
        uint64_t bytes;
        if ((s = check_item(label, &items[k], k, &bytes))) goto fail;
        names_len += strlen(items[k].name) + 1;
    }
    st->t = qf_calloc(n_items ? n_items : 1, sizeof *st->t);
    f->strings = qf_malloc(names_len ? names_len : 1);
    st->conv = qf_calloc(n_items ? n_items : 1, sizeof *st->conv);
    if (!st->t || !f->strings || !st->conv) {
        s = qf_errorf(QF_ERR_NOMEM, "%s: out of memory for a table of %zu tensors", label, n_items);
        goto fail;
    }
    char *p = f->strings;
    for (size_t k = 0; k < n_items; k++) {
        const qf_st_item *it = &items[k];
        qf_st_tensor *t = &st->t[k];
        size_t nl = strlen(it->name) + 1;
        memcpy(p, it->name, nl);
        t->name = p;
        p += nl;
        t->file = f->path;
        t->dtype = it->dtype;
        t->n_dim = it->n_dim;
        t->n_elem = 1;
        for (int d = 0; d < it->n_dim; d++) {
            t->shape[d] = it->shape[d];
            t->n_elem *= it->shape[d];
        }
        t->n_bytes = (size_t)t->n_elem * dtypes[it->dtype].size;
        t->data = it->data;
        st->total_bytes += t->n_bytes;
    }
    st->n = n_items;
    if ((s = sort_tensors(st))) goto fail;
    *out = st;
    return QF_OK;

fail:
    qf_st_close(st);
    return s;
}
