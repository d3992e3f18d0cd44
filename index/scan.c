/* scan.c - corpus scanning (see scan.h). */
#include "index/scan.h"

#include "embed/image.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define LIST_MAX_BYTES ((size_t)1 << 30)

static const char *const image_exts[] = {
    ".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".gif", ".bmp", ".dib", ".webp", ".tif", ".tiff",
    ".heic", ".heif", ".hif", ".avif", NULL,
};

int qf_scan_has_image_ext(const char *name) {
    size_t n = strlen(name);
    for (int i = 0; image_exts[i]; i++) {
        size_t e = strlen(image_exts[i]);
        if (n > e && !strcasecmp(name + n - e, image_exts[i])) return 1;
    }
    return 0;
}

static qf_status add_error(qf_scan *s, const char *path, const char *fmt, const char *detail) {
    if (s->n_errors == s->cap_errors) {
        size_t cap = s->cap_errors ? 2 * s->cap_errors : 16;
        qf_scan_error *e = qf_realloc(s->errors, cap * sizeof *e);
        if (!e) return qf_errorf(QF_ERR_NOMEM, "out of memory while scanning");
        s->errors = e;
        s->cap_errors = cap;
    }
    char msg[1024];
    snprintf(msg, sizeof msg, fmt, detail);
    qf_scan_error *e = &s->errors[s->n_errors];
    e->path = qf_strdup(path);
    e->error = qf_strdup(msg);
    e->named = 0;
    if (!e->path || !e->error) {
        qf_free(e->path); qf_free(e->error);
        return qf_errorf(QF_ERR_NOMEM, "out of memory while scanning");
    }
    s->n_errors++;
    return QF_OK;
}

static qf_status add_file(qf_scan *s, const char *path, const struct stat *st) {
    if (s->n_files == s->cap_files) {
        size_t cap = s->cap_files ? 2 * s->cap_files : 256;
        qf_scan_file *f = qf_realloc(s->files, cap * sizeof *f);
        if (!f) return qf_errorf(QF_ERR_NOMEM, "out of memory while scanning");
        s->files = f;
        s->cap_files = cap;
    }
    qf_scan_file *f = &s->files[s->n_files];
    f->path = qf_strdup(path);
    if (!f->path) return qf_errorf(QF_ERR_NOMEM, "out of memory while scanning");
    f->size = st->st_size;
    f->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
    s->n_files++;
    return QF_OK;
}

/* A regular file is a candidate by extension or by magic bytes: 1 yes,
 * 0 no, -1 when its first bytes cannot be read (errno set). */
static int is_candidate(const char *path) {
    const char *base = strrchr(path, '/');
    if (qf_scan_has_image_ext(base ? base + 1 : path)) return 1;
    unsigned char head[16];
    /* O_NONBLOCK: a file swapped for a FIFO since the stat cannot hang the scan */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return -1;
    ssize_t n = read(fd, head, sizeof head);
    int err = errno;
    close(fd);
    if (n < 0) { errno = err; return -1; }
    return n > 0 && qf_img_sniff(head, (size_t)n) != QF_IMG_FMT_UNKNOWN;
}

static qf_status scan_path(qf_scan *s, const char *path, int explicit_arg, int depth);

static int name_cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static qf_status scan_dir(qf_scan *s, const char *path, int depth) {
    if (depth > 256) return add_error(s, path, "%s", "folders nested more than 256 deep");
    DIR *d = opendir(path);
    if (!d) return add_error(s, path, "cannot open folder: %s", strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    qf_status st = QF_OK;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **nn = qf_realloc(names, cap * sizeof *nn);
            if (!nn) { st = qf_errorf(QF_ERR_NOMEM, "out of memory while scanning"); break; }
            names = nn;
        }
        if (!(names[n] = qf_strdup(e->d_name))) { st = qf_errorf(QF_ERR_NOMEM, "out of memory"); break; }
        n++;
    }
    closedir(d);
    if (!st && n) qsort(names, n, sizeof *names, name_cmp);   /* names is NULL for an empty folder: UB for qsort */
    size_t plen = strlen(path);
    for (size_t i = 0; i < n && !st; i++) {
        size_t len = plen + 1 + strlen(names[i]) + 1;
        char *child = qf_malloc(len);
        if (!child) { st = qf_errorf(QF_ERR_NOMEM, "out of memory while scanning"); break; }
        snprintf(child, len, "%s%s%s", path, plen && path[plen - 1] == '/' ? "" : "/", names[i]);
        st = scan_path(s, child, 0, depth + 1);
        qf_free(child);
    }
    for (size_t i = 0; i < n; i++) qf_free(names[i]);
    qf_free(names);
    return st;
}

static qf_status scan_list(qf_scan *s, const char *list, int depth) {
    char *text = NULL;
    size_t len = 0;
    qf_status st = qf_read_file(list, LIST_MAX_BYTES, &text, &len);
    if (st) return st;
    char *line = text, *end = text + len;
    while (line < end && !st) {
        char *nl = memchr(line, '\n', (size_t)(end - line));
        if (!nl) nl = end;
        *nl = 0;
        size_t l = strlen(line);
        if (l && line[l - 1] == '\r') line[--l] = 0;
        if (l) st = scan_path(s, line, 1, depth + 1);
        line = nl + 1;
    }
    qf_free(text);
    return st;
}

static qf_status scan_path(qf_scan *s, const char *path, int explicit_arg, int depth) {
    if (explicit_arg == 1 && path[0] == '@') return scan_list(s, path + 1, depth);
    if (explicit_arg == 1) {
        /* roots are stored absolute, so re-runs from another folder match */
        size_t before = s->n_errors;
        char *abs = realpath(path, NULL);
        qf_status r = abs ? scan_path(s, abs, 2, depth) : add_error(s, path, "%s", strerror(errno));
        /* the first error is about the named path itself (missing, not a file
         * or folder, unreadable folder), not about something found inside */
        if (s->n_errors > before && (!abs || !strcmp(s->errors[before].path, abs)))
            s->errors[before].named = 1;
        free(abs);
        return r;
    }
    struct stat lst, st;
    if (lstat(path, &lst) != 0) return add_error(s, path, "%s", strerror(errno));
    if (S_ISLNK(lst.st_mode)) {
        if (stat(path, &st) != 0) return add_error(s, path, "broken symbolic link: %s", strerror(errno));
        if (S_ISDIR(st.st_mode) && !explicit_arg) return QF_OK;   /* no walking through links: no loops */
    } else {
        st = lst;
    }
    if (S_ISDIR(st.st_mode)) return scan_dir(s, path, depth);
    if (!S_ISREG(st.st_mode)) {
        if (explicit_arg) return add_error(s, path, "%s", "not a regular file or folder");
        return QF_OK;
    }
    if (explicit_arg) return add_file(s, path, &st);
    int c = is_candidate(path);
    /* An unreadable file without an image extension used to be skipped
     * silently; it may well be an image, so it is reported. */
    if (c < 0) return add_error(s, path, "cannot read it to tell whether it is an image: %s", strerror(errno));
    return c ? add_file(s, path, &st) : QF_OK;
}

static int file_cmp(const void *a, const void *b) {
    return strcmp(((const qf_scan_file *)a)->path, ((const qf_scan_file *)b)->path);
}

qf_status qf_scan_run(const char *const *roots, int n_roots, qf_scan *out) {
    memset(out, 0, sizeof *out);
    qf_status st = QF_OK;
    for (int i = 0; i < n_roots && !st; i++) st = scan_path(out, roots[i], 1, 0);
    if (st) { qf_scan_free(out); return st; }
    if (out->n_files) qsort(out->files, out->n_files, sizeof *out->files, file_cmp);   /* NULL when none */
    /* the same file named twice (two roots, list + folder): keep one */
    size_t w = 0;
    for (size_t r = 0; r < out->n_files; r++) {
        if (w && !strcmp(out->files[w - 1].path, out->files[r].path)) { qf_free(out->files[r].path); continue; }
        out->files[w++] = out->files[r];
    }
    out->n_files = w;
    return QF_OK;
}

void qf_scan_free(qf_scan *s) {
    if (!s) return;
    for (size_t i = 0; i < s->n_files; i++) qf_free(s->files[i].path);
    for (size_t i = 0; i < s->n_errors; i++) { qf_free(s->errors[i].path); qf_free(s->errors[i].error); }
    qf_free(s->files);
    qf_free(s->errors);
    memset(s, 0, sizeof *s);
}
