/* common.h - status codes, error text, logging and the allocation seam shared
 * by every qformer module.
 *
 * Fallible functions return qf_status; the human-readable detail is written
 * where the failure happens into a thread-local buffer (qf_errorf) and read
 * once by the caller that reports it (qf_last_error). Library code never
 * prints to stdout and never exits. */
#ifndef QF_COMMON_H
#define QF_COMMON_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    QF_OK = 0,
    QF_ERR_IO,        /* file missing, unreadable, short read           */
    QF_ERR_FORMAT,    /* malformed file contents (header, JSON, image)  */
    QF_ERR_SHAPE,     /* tensor has the wrong shape or dtype            */
    QF_ERR_MISSING,   /* required tensor / config field absent          */
    QF_ERR_NOMEM,     /* allocation failed or arena exhausted           */
    QF_ERR_LIMIT,     /* input exceeds a safety limit (pixels, sizes)   */
    QF_ERR_ARG,       /* invalid argument from the caller               */
    QF_ERR_DB,        /* SQLite failure                                 */
    QF_ERR_INDEX,     /* FAISS failure                                  */
    QF_ERR_MPI,       /* MPI failure                                    */
    QF_ERR_UNSUPPORTED,
    QF_ERR_BUSY,      /* resource locked by another process             */
    QF_STATUS_COUNT
} qf_status;

const char *qf_status_str(qf_status s);

/* Formats the detail of the current failure into the thread-local buffer
 * and returns `s` so callers can write `return qf_errorf(QF_ERR_IO, ...)`. */
qf_status qf_errorf(qf_status s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Prefixes the current error text with "prefix: " (adds context while an
 * error travels up, e.g. the file name). Returns `s`. */
qf_status qf_error_prefix(qf_status s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Detail of the last failure on this thread; valid until the next qf_errorf. */
const char *qf_last_error(void);
void qf_error_clear(void);

/* Logging: the library never prints; it calls the sink set here (default:
 * stderr for WARN and ERROR only). */
typedef enum { QF_LOG_DEBUG, QF_LOG_INFO, QF_LOG_WARN, QF_LOG_ERROR } qf_log_level;
typedef void (*qf_log_fn)(qf_log_level level, const char *msg, void *user);
void qf_log_set(qf_log_fn fn, void *user);
void qf_log(qf_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Allocation seam: every heap allocation of the library goes through these
 * so tests can inject failures (qf_alloc_fail_after) and walk error paths.
 * qf_free(NULL) is a no-op. */
void *qf_malloc(size_t n);
void *qf_calloc(size_t count, size_t size);
void *qf_realloc(void *p, size_t n);
char *qf_strdup(const char *s);
void  qf_free(void *p);
/* After `n` more successful allocations, every allocation fails (n < 0:
 * never fail, the default). For tests only. */
void qf_alloc_fail_after(long n);

/* Reads a whole file into a NUL-terminated heap buffer (caller frees with
 * qf_free). Refuses files larger than max_bytes with QF_ERR_LIMIT. */
qf_status qf_read_file(const char *path, size_t max_bytes, char **out, size_t *out_len);

/* UTF-8 by Python's strict rules (no overlong forms, no surrogates, nothing
 * above U+10FFFF): the one decoder of the tokenizers, reports and export.
 * qf_utf8_next decodes the sequence at s[0..n): its length (1-4) and *cp
 * when valid; otherwise 0 and *bad = the maximal subpart (the bytes
 * Python's decoder turns into one U+FFFD), at least 1. qf_utf8_len is the
 * length of the valid sequence at NUL-terminated s (a NUL counts 1), 0 if
 * none starts there; it never reads past the NUL. */
size_t qf_utf8_next(const uint8_t *s, size_t n, int32_t *cp, size_t *bad);
size_t qf_utf8_len(const char *s);

/* Seconds on the monotonic clock (for durations only). */
double qf_now(void);

/* "1.50 GB", "12.3 MB", "4.1 kB", "17 B": a byte count in decimal units, as
 * download tools and `df -H` print them. Returns buf. */
const char *qf_format_bytes(double bytes, char *buf, size_t cap);

/* Always-on assertion for broken internal contracts (never for bad input). */
#define QF_ASSERT(x) do { if (!(x)) qf_assert_fail(#x, __FILE__, __LINE__); } while (0)
void qf_assert_fail(const char *expr, const char *file, int line) __attribute__((noreturn));

#endif
