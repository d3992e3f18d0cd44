/* fuzz_util.h - helpers shared by the libFuzzer harnesses in tests/fuzz/
 * (each harness is one translation unit, so everything here is static):
 * per-input reset of the library's global state, fixture paths, an in-memory
 * file (memfd) that path-based parsers can open, a scratch directory removed
 * at exit, input splitting and invariant checks that abort (= a crash the
 * fuzzer records). Harness code may use plain malloc/free; only the library
 * allocates through qf_malloc, so fault injection hits library code only. */
#ifndef QF_FUZZ_UTIL_H
#define QF_FUZZ_UTIL_H

#include "embed/common.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef QF_FUZZ_FIXTURES
#define QF_FUZZ_FIXTURES "tests/fixtures"
#endif

/* An invariant the library promises was broken: abort so libFuzzer keeps the
 * input as a crash. */
#define FUZZ_CHECK(x) do {                                                         \
    if (!(x)) {                                                                    \
        fprintf(stderr, "fuzz: %s:%d: check '%s' failed (last qf error: %s)\n",   \
                __FILE__, __LINE__, #x, qf_last_error());                          \
        abort();                                                                   \
    }                                                                              \
} while (0)

/* Library state that must not leak from one input into the next. */
static inline void fuzz_reset(void) {
    qf_alloc_fail_after(-1);
    qf_error_clear();
}

/* FNV-1a of the input: derives deterministic per-input choices (fault
 * injection point, resize sizes) without changing the input format. */
static inline uint64_t fuzz_hash(const uint8_t *d, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ d[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

/* "<fixtures>/<rel>" in a static buffer (QF_FIXTURES in the environment
 * overrides the path compiled in). */
static inline const char *fuzz_fixture(const char *rel) {
    static char buf[4096];
    const char *base = getenv("QF_FIXTURES");
    if (!base || !base[0]) base = QF_FUZZ_FIXTURES;
    snprintf(buf, sizeof buf, "%s/%s", base, rel);
    return buf;
}

static inline void fuzz_die(const char *what) {
    fprintf(stderr, "fuzz: setup failed: %s: %s (%s)\n", what, strerror(errno), qf_last_error());
    abort();
}

static inline void fuzz_write_all(int fd, const void *d, size_t n) {
    const uint8_t *p = d;
    off_t off = 0;
    while (n) {
        ssize_t w = pwrite(fd, p, n, off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) fuzz_die("write");
        p += w;
        off += w;
        n -= (size_t)w;
    }
}

/* ---- scratch directory -------------------------------------------------- */

static char fuzz_tmp_root[4096];

static inline int fuzz_rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    return remove(path);
}

static inline void fuzz_tmp_cleanup(void) {
    if (fuzz_tmp_root[0]) nftw(fuzz_tmp_root, fuzz_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    fuzz_tmp_root[0] = 0;
}

/* A private directory (in /dev/shm when available: no disk I/O per input),
 * created once, removed at exit. */
static inline const char *fuzz_tmpdir(void) {
    if (fuzz_tmp_root[0]) return fuzz_tmp_root;
    const char *base = getenv("QF_FUZZ_TMP");
    struct stat sb;
    if (!base || !base[0]) base = stat("/dev/shm", &sb) == 0 && access("/dev/shm", W_OK) == 0
                                      ? "/dev/shm" : getenv("TMPDIR");
    if (!base || !base[0]) base = "/tmp";
    snprintf(fuzz_tmp_root, sizeof fuzz_tmp_root, "%s/qf-fuzz-XXXXXX", base);
    if (!mkdtemp(fuzz_tmp_root)) fuzz_die("mkdtemp");
    atexit(fuzz_tmp_cleanup);
    return fuzz_tmp_root;
}

/* Writes (d, n) as <dir>/<name>, replacing it; d == NULL removes the file. */
static inline void fuzz_put_file(const char *dir, const char *name, const void *d, size_t n) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (!d) {
        if (unlink(path) != 0 && errno != ENOENT) fuzz_die("unlink");
        return;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) fuzz_die("open");
    if (n) fuzz_write_all(fd, d, n);
    close(fd);
}

/* ---- in-memory file ------------------------------------------------------- */

/* A file whose bytes are replaced per input and that parsers open by path:
 * a memfd ("/proc/self/fd/N"), or a file in the scratch dir when memfd is
 * not available. */
typedef struct {
    int  fd;
    char path[4200];
} fuzz_file;

static inline void fuzz_file_init(fuzz_file *f, const char *name) {
    f->fd = memfd_create(name, MFD_CLOEXEC);
    if (f->fd >= 0) {
        snprintf(f->path, sizeof f->path, "/proc/self/fd/%d", f->fd);
        struct stat sb;
        if (stat(f->path, &sb) == 0 && S_ISREG(sb.st_mode)) return;
        close(f->fd);
    }
    snprintf(f->path, sizeof f->path, "%s/%s", fuzz_tmpdir(), name);
    f->fd = open(f->path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (f->fd < 0) fuzz_die("open");
}

static inline void fuzz_file_set(fuzz_file *f, const uint8_t *d, size_t n) {
    if (ftruncate(f->fd, 0) != 0) fuzz_die("ftruncate");
    if (n) fuzz_write_all(f->fd, d, n);
}

/* ---- input helpers ---------------------------------------------------------- */

/* Splits d[0..n) at each occurrence of `sep` into at most max parts; returns
 * the number of parts (>= 1). Parts point into d. */
static inline size_t fuzz_split(const uint8_t *d, size_t n, const char *sep, const uint8_t **part,
                         size_t *len, size_t max) {
    size_t sl = strlen(sep), k = 0, start = 0;
    while (k + 1 < max) {
        const uint8_t *hit = n - start >= sl ? memmem(d + start, n - start, sep, sl) : NULL;
        if (!hit) break;
        part[k] = d + start;
        len[k++] = (size_t)(hit - (d + start));
        start = (size_t)(hit - d) + sl;
    }
    part[k] = d + start;
    len[k++] = n - start;
    return k;
}

/* NUL-terminated heap copy of the input (caller frees with free). */
static inline char *fuzz_cstr(const uint8_t *d, size_t n) {
    char *s = malloc(n + 1);
    if (!s) fuzz_die("malloc");
    if (n) memcpy(s, d, n);
    s[n] = 0;
    return s;
}

/* Strict UTF-8 check (no overlongs, no surrogates, <= U+10FFFF); NUL allowed. */
static inline int fuzz_valid_utf8(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t b = s[i];
        if (b < 0x80) { i++; continue; }
        int need;
        uint8_t lo = 0x80, hi = 0xBF;
        if (b >= 0xC2 && b <= 0xDF) need = 1;
        else if (b == 0xE0) { need = 2; lo = 0xA0; }
        else if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) need = 2;
        else if (b == 0xED) { need = 2; hi = 0x9F; }
        else if (b == 0xF0) { need = 3; lo = 0x90; }
        else if (b >= 0xF1 && b <= 0xF3) need = 3;
        else if (b == 0xF4) { need = 3; hi = 0x8F; }
        else return 0;
        for (int k = 1; k <= need; k++) {
            if (i + (size_t)k >= n || s[i + k] < lo || s[i + k] > hi) return 0;
            lo = 0x80; hi = 0xBF;
        }
        i += (size_t)need + 1;
    }
    return 1;
}

/* A failed call must leave an error text behind (printed when
 * QF_FUZZ_VERBOSE is set: handy to see why a seed is refused). */
static inline void fuzz_check_error(qf_status s) {
    static int verbose = -1;
    if (verbose < 0) verbose = getenv("QF_FUZZ_VERBOSE") != NULL;
    if (verbose) fprintf(stderr, "fuzz: %s: %s\n", qf_status_str(s), qf_last_error());
    FUZZ_CHECK(s > QF_OK && s < QF_STATUS_COUNT);
    FUZZ_CHECK(qf_last_error()[0] != 0);
}

#endif
