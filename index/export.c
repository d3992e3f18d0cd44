/* export.c - see export.h. The .npy header is NPY format 1.0: magic,
 * version, little-endian u16 header length, a Python dict literal padded
 * with spaces and a newline so the data starts 64-byte aligned. */
#include "index/export.h"

#include "index/store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int npy_header(FILE *f, const char *descr, const int64_t *shape, int nd) {
    char dict[256], sh[128] = "";
    size_t p = 0;
    for (int i = 0; i < nd; i++)
        p += (size_t)snprintf(sh + p, sizeof sh - p, "%lld%s", (long long)shape[i], nd == 1 ? "," : i + 1 < nd ? ", " : "");
    int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", descr, sh);
    int total = 10 + n + 1, pad = (64 - total % 64) % 64;
    uint16_t hl = (uint16_t)(n + pad + 1);
    unsigned char pre[10] = { 0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hl & 0xff), (unsigned char)(hl >> 8) };
    if (fwrite(pre, 1, 10, f) != 10 || fwrite(dict, 1, (size_t)n, f) != (size_t)n) return 0;
    for (int i = 0; i < pad; i++) fputc(' ', f);
    return fputc('\n', f) != EOF;
}

typedef struct {
    FILE   *feats, *ids;
    int64_t n;
    int     Q, E;
} npy_writer;

static qf_status write_row(int64_t id, const float *feats, void *user) {
    npy_writer *w = user;
    size_t n = (size_t)w->Q * w->E;
    if (fwrite(feats, sizeof *feats, n, w->feats) != n || fwrite(&id, sizeof id, 1, w->ids) != 1)
        return qf_errorf(QF_ERR_IO, "write failed: %s", strerror(errno));
    w->n++;
    return QF_OK;
}

typedef struct {
    FILE   *f;
    int64_t row;
} jsonl_writer;

int qf_export_json_string(FILE *f, const char *str) {
    const unsigned char *s = (const unsigned char *)str;
    if (fputc('"', f) == EOF) return 0;
    while (*s) {
        size_t n = qf_utf8_len((const char *)s);   /* never reads past the NUL */
        if (n == 0) {
            fprintf(f, "\\udc%02x", *s++);
        } else if (*s == '"' || *s == '\\') {
            fputc('\\', f);
            fputc(*s++, f);
        } else if (*s < 0x20) {
            const char *e = *s == '\n' ? "\\n" : *s == '\t' ? "\\t" : *s == '\r' ? "\\r" :
                            *s == '\b' ? "\\b" : *s == '\f' ? "\\f" : NULL;
            if (e) fputs(e, f);
            else fprintf(f, "\\u%04x", *s);
            s++;
        } else {
            fwrite(s, 1, n, f);
            s += n;
        }
    }
    return fputc('"', f) != EOF && !ferror(f);
}

/* One line of images.jsonl. Written by hand rather than with jansson,
 * which refuses strings that are not UTF-8: a single file name such as
 * b"caf\xe9.png" (Latin-1 from an old camera or archive) made the whole
 * export fail. Paths and errors now go through qf_export_json_string. */
static qf_status write_image(const qf_store_image *img, void *user) {
    jsonl_writer *w = user;
    FILE *f = w->f;
    fprintf(f, "{\"id\":%lld,\"path\":", (long long)img->id);
    qf_export_json_string(f, img->path);
    fprintf(f, ",\"width\":%d,\"height\":%d,\"status\":\"%s\",\"error\":", img->width, img->height,
            qf_image_status_str(img->status));
    if (img->error) qf_export_json_string(f, img->error);
    else fputs("null", f);
    if (img->status == QF_IMAGE_OK) fprintf(f, ",\"row\":%lld}\n", (long long)w->row++);
    else fputs(",\"row\":null}\n", f);
    return ferror(f) ? qf_errorf(QF_ERR_IO, "write failed: %s", strerror(errno)) : QF_OK;
}

static qf_status meta_int(qf_store *st, const char *key, int *out, const char *db) {
    char *v = NULL;
    qf_status s = qf_store_meta_get(st, key, &v);
    if (!s && !v) s = qf_errorf(QF_ERR_FORMAT, "%s: not a qformer index (no '%s')", db, key);
    if (!s) *out = atoi(v);
    qf_free(v);
    return s;
}

static qf_status finish(FILE *f, const char *tmp, const char *final) {
    int bad = fflush(f) != 0 || fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, final) != 0) {
        unlink(tmp);
        return qf_errorf(QF_ERR_IO, "%s: %s", final, strerror(errno));
    }
    return QF_OK;
}

qf_status qf_export_run(const char *db_path, const char *out_dir, qf_export_report *r) {
    memset(r, 0, sizeof *r);
    struct stat sb;
    if (stat(db_path, &sb) != 0) return qf_errorf(QF_ERR_IO, "%s: no such index database", db_path);
    if (mkdir(out_dir, 0777) != 0 && errno != EEXIST) return qf_errorf(QF_ERR_IO, "%s: %s", out_dir, strerror(errno));
    qf_store *st = NULL;
    qf_status s = qf_store_open(db_path, QF_STORE_READONLY, &st);
    if (s) return s;
    int Q = 0, E = 0;
    int64_t counts[QF_IMAGE_STATUS_COUNT];
    char p_feats[4096], p_ids[4096], p_jsonl[4096], t_feats[4200], t_ids[4200], t_jsonl[4200];
    FILE *ff = NULL, *fi = NULL, *fj = NULL;
    if ((s = meta_int(st, "n_query", &Q, db_path)) || (s = meta_int(st, "dim", &E, db_path)) ||
        (s = qf_store_image_counts(st, counts)))
        goto done;
    snprintf(p_feats, sizeof p_feats, "%s/image_feats.npy", out_dir);
    snprintf(p_ids, sizeof p_ids, "%s/image_ids.npy", out_dir);
    snprintf(p_jsonl, sizeof p_jsonl, "%s/images.jsonl", out_dir);
    snprintf(t_feats, sizeof t_feats, "%s.tmp", p_feats);
    snprintf(t_ids, sizeof t_ids, "%s.tmp", p_ids);
    snprintf(t_jsonl, sizeof t_jsonl, "%s.tmp", p_jsonl);
    ff = fopen(t_feats, "wb"); fi = fopen(t_ids, "wb"); fj = fopen(t_jsonl, "w");
    if (!ff || !fi || !fj) { s = qf_errorf(QF_ERR_IO, "%s: cannot write: %s", out_dir, strerror(errno)); goto done; }
    /* one read transaction: the counts, features and rows agree even while an index run writes */
    if ((s = qf_store_begin(st))) goto done;
    if ((s = qf_store_image_counts(st, counts))) goto done;
    int64_t n_ok = counts[QF_IMAGE_OK], sh3[3] = { n_ok, Q, E }, sh1[1] = { n_ok };
    if (!npy_header(ff, "<f4", sh3, 3) || !npy_header(fi, "<i8", sh1, 1)) {
        s = qf_errorf(QF_ERR_IO, "%s: write failed", out_dir);
        goto done;
    }
    npy_writer nw = { ff, fi, 0, Q, E };
    jsonl_writer jw = { fj, 0 };
    if ((s = qf_store_feats_foreach(st, write_row, &nw)) || (s = qf_store_image_foreach(st, -1, write_image, &jw)))
        goto done;
    qf_store_rollback(st);
    if (nw.n != n_ok) { s = qf_errorf(QF_ERR_DB, "%s: %lld ok images but %lld feature rows", db_path, (long long)n_ok, (long long)nw.n); goto done; }
    s = finish(ff, t_feats, p_feats); ff = NULL;
    if (!s) { s = finish(fi, t_ids, p_ids); fi = NULL; }
    if (!s) { s = finish(fj, t_jsonl, p_jsonl); fj = NULL; }
    r->n_ok = n_ok;
    r->n_images = counts[QF_IMAGE_OK] + counts[QF_IMAGE_ERROR] + counts[QF_IMAGE_PENDING];
done:
    if (ff) { fclose(ff); unlink(t_feats); }
    if (fi) { fclose(fi); unlink(t_ids); }
    if (fj) { fclose(fj); unlink(t_jsonl); }
    qf_store_close(st);
    return s;
}
