/* digest.c - see digest.h. A qf_digest is an OpenSSL EVP_MD_CTX. */
#include "embed/digest.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static EVP_MD_CTX *ctx(qf_digest *d) { return (EVP_MD_CTX *)d; }

qf_status qf_digest_reset(qf_digest *d, qf_digest_kind kind) {
    if (EVP_DigestInit_ex(ctx(d), kind == QF_DIGEST_SHA1 ? EVP_sha1() : EVP_sha256(), NULL) != 1)
        return qf_errorf(QF_ERR_UNSUPPORTED, "OpenSSL: %s unavailable", kind == QF_DIGEST_SHA1 ? "SHA-1" : "SHA-256");
    return QF_OK;
}

qf_status qf_digest_init(qf_digest_kind kind, qf_digest **out) {
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    *out = NULL;
    if (!c) return qf_errorf(QF_ERR_NOMEM, "OpenSSL: out of memory for a digest");
    qf_status s = qf_digest_reset((qf_digest *)c, kind);
    if (s) { EVP_MD_CTX_free(c); return s; }
    *out = (qf_digest *)c;
    return QF_OK;
}

void qf_digest_free(qf_digest *d) { EVP_MD_CTX_free(ctx(d)); }

qf_status qf_digest_update(qf_digest *d, const void *p, size_t n) {
    if (n && EVP_DigestUpdate(ctx(d), p, n) != 1) return qf_errorf(QF_ERR_UNSUPPORTED, "OpenSSL digest failed");
    return QF_OK;
}

qf_status qf_digest_update_fd(qf_digest *d, int fd, int64_t len, const char *path) {
    enum { CHUNK = 1 << 20 };
    unsigned char *buf = qf_malloc(CHUNK);
    if (!buf) return qf_errorf(QF_ERR_NOMEM, "%s: out of memory", path);
    qf_status s = QF_OK;
    for (int64_t off = 0; len < 0 || off < len;) {
        size_t want = len >= 0 && len - off < CHUNK ? (size_t)(len - off) : CHUNK;
        ssize_t r = pread(fd, buf, want, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 || (r == 0 && len >= 0)) {
            s = qf_errorf(QF_ERR_IO, "%s: read: %s", path, r < 0 ? strerror(errno) : "unexpected end of file");
            break;
        }
        if (r == 0) break;
        if ((s = qf_digest_update(d, buf, (size_t)r))) break;
        off += r;
    }
    qf_free(buf);
    return s;
}

qf_status qf_digest_hex(qf_digest *d, char *hex) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(ctx(d), md, &len) != 1) return qf_errorf(QF_ERR_UNSUPPORTED, "OpenSSL digest failed");
    for (unsigned i = 0; i < len; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
    hex[2 * len] = 0;
    return QF_OK;
}

qf_status qf_sha256_hex(const void *data, size_t n, char hex[65]) {
    qf_digest *d = NULL;
    qf_status s = qf_digest_init(QF_DIGEST_SHA256, &d);
    if (!s) s = qf_digest_update(d, data, n);
    if (!s) s = qf_digest_hex(d, hex);
    qf_digest_free(d);
    return s;
}

qf_status qf_sha256_file(const char *path, char hex[65]) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return qf_errorf(QF_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    qf_digest *d = NULL;
    qf_status s = qf_digest_init(QF_DIGEST_SHA256, &d);
    if (!s) s = qf_digest_update_fd(d, fd, -1, path);
    if (!s) s = qf_digest_hex(d, hex);
    qf_digest_free(d);
    close(fd);
    return s;
}
