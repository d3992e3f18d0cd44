/* digest.h - SHA-256 and SHA-1 (OpenSSL libcrypto) as lowercase hex: the
 * one place qformer hashes bytes (the store's content hashes of images, the
 * hub's checks of downloaded files against their LFS SHA-256 or git blob
 * id). A qf_digest is a running digest; errors are statuses with a message
 * (QF_ERR_NOMEM, QF_ERR_UNSUPPORTED when libcrypto refuses, QF_ERR_IO). */
#ifndef QF_DIGEST_H
#define QF_DIGEST_H

#include "embed/common.h"

#include <stddef.h>
#include <stdint.h>

typedef struct qf_digest qf_digest;
typedef enum { QF_DIGEST_SHA256, QF_DIGEST_SHA1 } qf_digest_kind;

/* A new running digest of `kind` (*out, qf_digest_free). */
qf_status qf_digest_init(qf_digest_kind kind, qf_digest **out);
void      qf_digest_free(qf_digest *d);                 /* NULL ok */
/* Starts over as `kind`. */
qf_status qf_digest_reset(qf_digest *d, qf_digest_kind kind);
qf_status qf_digest_update(qf_digest *d, const void *p, size_t n);
/* Adds the first `len` bytes of the open file `fd` (read with pread, the
 * file offset untouched; `len` < 0: up to its end). `path` names the file
 * in messages. */
qf_status qf_digest_update_fd(qf_digest *d, int fd, int64_t len, const char *path);
/* Finishes: hex[2 * digest bytes + 1] (65 for SHA-256, 41 for SHA-1). */
qf_status qf_digest_hex(qf_digest *d, char *hex);

/* SHA-256 of a buffer / of a file's contents, as 64 hex digits + NUL. */
qf_status qf_sha256_hex(const void *data, size_t n, char hex[65]);
qf_status qf_sha256_file(const char *path, char hex[65]);

#endif
