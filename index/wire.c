/* wire.c - see wire.h. */
#include "index/wire.h"

#include <string.h>

void qf_wire_free(qf_wire *w) {
    if (!w) return;
    qf_free(w->data);
    memset(w, 0, sizeof *w);
}

void qf_wire_reset(qf_wire *w) { w->len = w->pos = 0; w->failed = 0; }

void qf_wire_put(qf_wire *w, const void *p, size_t n) {
    if (w->failed) return;
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap : 4096;
        while (cap < w->len + n) cap *= 2;
        unsigned char *d = qf_realloc(w->data, cap);
        if (!d) { w->failed = 1; return; }
        w->data = d;
        w->cap = cap;
    }
    if (n) memcpy(w->data + w->len, p, n);
    w->len += n;
}

void qf_wire_put_i64(qf_wire *w, int64_t v) { qf_wire_put(w, &v, sizeof v); }
void qf_wire_put_i32(qf_wire *w, int32_t v) { qf_wire_put(w, &v, sizeof v); }

void qf_wire_put_str(qf_wire *w, const char *s) {
    uint32_t n = s ? (uint32_t)strlen(s) : 0;
    qf_wire_put(w, &n, sizeof n);
    qf_wire_put(w, s, n);
}

const void *qf_wire_get_span(qf_wire *w, size_t n) {
    if (w->failed || n > w->len - w->pos) { w->failed = 1; return NULL; }
    const void *p = w->data + w->pos;
    w->pos += n;
    return p;
}

int qf_wire_get(qf_wire *w, void *p, size_t n) {
    const void *s = qf_wire_get_span(w, n);
    if (!s) { memset(p, 0, n); return 0; }
    memcpy(p, s, n);
    return 1;
}

int64_t qf_wire_get_i64(qf_wire *w) { int64_t v; qf_wire_get(w, &v, sizeof v); return v; }
int32_t qf_wire_get_i32(qf_wire *w) { int32_t v; qf_wire_get(w, &v, sizeof v); return v; }

const char *qf_wire_get_str(qf_wire *w, uint32_t *len) {
    uint32_t n = 0;
    if (!qf_wire_get(w, &n, sizeof n)) { *len = 0; return NULL; }
    *len = n;
    return qf_wire_get_span(w, n);
}
