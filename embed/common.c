/* common.c - error text, logging sink and allocation seam (see common.h).
 * Global mutable state here: the log sink and the fault-injection counter;
 * the error text is thread-local. Elsewhere, each behind its module: the
 * CPU thread pool and core detection (kernels_cpu.c), the portable-kernel
 * switch (matvec.c), the oneDNN engine (gemm_dnnl.c, created once) and the
 * MPI rank/size (mpi/driver.c). */
#include "common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *status_names[QF_STATUS_COUNT] = {
    [QF_OK]              = "ok",
    [QF_ERR_IO]          = "i/o error",
    [QF_ERR_FORMAT]      = "bad format",
    [QF_ERR_SHAPE]       = "wrong shape",
    [QF_ERR_MISSING]     = "missing",
    [QF_ERR_NOMEM]       = "out of memory",
    [QF_ERR_LIMIT]       = "limit exceeded",
    [QF_ERR_ARG]         = "invalid argument",
    [QF_ERR_DB]          = "database error",
    [QF_ERR_INDEX]       = "vector index error",
    [QF_ERR_MPI]         = "mpi error",
    [QF_ERR_UNSUPPORTED] = "unsupported",
    [QF_ERR_BUSY]        = "busy",
};

const char *qf_status_str(qf_status s) {
    if ((unsigned)s >= QF_STATUS_COUNT) return "unknown status";
    return status_names[s];
}

static _Thread_local char err_buf[2048];

qf_status qf_errorf(qf_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_buf, sizeof err_buf, fmt, ap);
    va_end(ap);
    return s;
}

qf_status qf_error_prefix(qf_status s, const char *fmt, ...) {
    char prefix[1024], old[sizeof err_buf];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err_buf, sizeof old);
    size_t n = strlen(prefix);
    if (n > sizeof err_buf - 3) n = sizeof err_buf - 3;
    memcpy(err_buf, prefix, n);
    memcpy(err_buf + n, ": ", 2);
    size_t rest = sizeof err_buf - n - 3;
    size_t m = strnlen(old, rest);
    memcpy(err_buf + n + 2, old, m);
    err_buf[n + 2 + m] = 0;
    return s;
}

const char *qf_last_error(void) { return err_buf; }
void qf_error_clear(void) { err_buf[0] = 0; }

static void default_log(qf_log_level level, const char *msg, void *user) {
    (void)user;
    if (level >= QF_LOG_WARN) fprintf(stderr, "qformer: %s\n", msg);
}

static qf_log_fn log_fn = default_log;
static void *log_user;

void qf_log_set(qf_log_fn fn, void *user) {
    log_fn = fn ? fn : default_log;
    log_user = user;
}

void qf_log(qf_log_level level, const char *fmt, ...) {
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log_fn(level, msg, log_user);
}

static long fail_after = -1;

static int alloc_allowed(void) {
    if (fail_after < 0) return 1;
    if (fail_after == 0) return 0;
    fail_after--;
    return 1;
}

void qf_alloc_fail_after(long n) { fail_after = n; }

void *qf_malloc(size_t n) { return alloc_allowed() ? malloc(n ? n : 1) : NULL; }
void *qf_calloc(size_t c, size_t s) { return alloc_allowed() ? calloc(c ? c : 1, s ? s : 1) : NULL; }
void *qf_realloc(void *p, size_t n) { return alloc_allowed() ? realloc(p, n ? n : 1) : NULL; }
void qf_free(void *p) { free(p); }

char *qf_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = qf_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

qf_status qf_read_file(const char *path, size_t max_bytes, char **out, size_t *out_len) {
    *out = NULL;
    if (out_len) *out_len = 0;
    /* O_NONBLOCK: a FIFO put where a file was must not hang the open; the
     * fstat below then refuses anything but a regular file */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return qf_errorf(QF_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return qf_errorf(QF_ERR_IO, "%s: not a regular file", path);
    }
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return qf_errorf(QF_ERR_IO, "%s: %s", path, strerror(errno));
    }
    if ((unsigned long long)st.st_size > max_bytes) {
        fclose(f);
        return qf_errorf(QF_ERR_LIMIT, "%s: %lld bytes, more than the %zu allowed",
                         path, (long long)st.st_size, max_bytes);
    }
    size_t n = (size_t)st.st_size;
    char *buf = qf_malloc(n + 1);
    if (!buf) {
        fclose(f);
        return qf_errorf(QF_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, n + 1);
    }
    size_t got = fread(buf, 1, n, f);
    fclose(f);
    if (got != n) {
        qf_free(buf);
        return qf_errorf(QF_ERR_IO, "%s: short read (%zu of %zu bytes)", path, got, n);
    }
    buf[n] = 0;
    *out = buf;
    if (out_len) *out_len = n;
    return QF_OK;
}

const char *qf_format_bytes(double v, char *buf, size_t cap) {
    if (v >= 1e9)      snprintf(buf, cap, "%.2f GB", v / 1e9);
    else if (v >= 1e6) snprintf(buf, cap, "%.1f MB", v / 1e6);
    else if (v >= 1e3) snprintf(buf, cap, "%.1f kB", v / 1e3);
    else               snprintf(buf, cap, "%.0f B", v);
    return buf;
}

void qf_assert_fail(const char *expr, const char *file, int line) {
    fprintf(stderr, "qformer: internal error: %s:%d: assertion '%s' failed\n", file, line, expr);
    abort();
}

double qf_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

size_t qf_utf8_next(const uint8_t *s, size_t n, int32_t *cp, size_t *bad) {
    uint8_t b = s[0];
    if (b < 0x80) { *cp = b; return 1; }
    int need;
    uint8_t lo = 0x80, hi = 0xBF;
    int32_t v;
    if (b >= 0xC2 && b <= 0xDF)      { need = 1; v = b & 0x1F; }
    else if (b == 0xE0)              { need = 2; v = b & 0x0F; lo = 0xA0; }
    else if (b >= 0xE1 && b <= 0xEC) { need = 2; v = b & 0x0F; }
    else if (b == 0xED)              { need = 2; v = b & 0x0F; hi = 0x9F; }
    else if (b >= 0xEE && b <= 0xEF) { need = 2; v = b & 0x0F; }
    else if (b == 0xF0)              { need = 3; v = b & 0x07; lo = 0x90; }
    else if (b >= 0xF1 && b <= 0xF3) { need = 3; v = b & 0x07; }
    else if (b == 0xF4)              { need = 3; v = b & 0x07; hi = 0x8F; }
    else { *bad = 1; return 0; }
    size_t j = 1;
    for (int k = 0; k < need; k++, j++) {
        if (j >= n || s[j] < lo || s[j] > hi) { *bad = j; return 0; }
        v = (v << 6) | (s[j] & 0x3F);
        lo = 0x80; hi = 0xBF;
    }
    *cp = v;
    return j;
}


size_t qf_utf8_len(const char *str) {
    const uint8_t *s = (const uint8_t *)str;
    if (!s[0]) return 1;
    size_t n = 1;
    while (n < 4 && s[n]) n++;
    int32_t cp;
    size_t bad;
    return qf_utf8_next(s, n, &cp, &bad);
}
