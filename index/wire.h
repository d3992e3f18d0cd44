/* wire.h - the byte format of the messages between coordinator and workers
 * (also used in-process when running alone, so one code path produces the
 * stored results): a growable buffer with little helpers to append and read
 * fixed-size fields. Host byte order: ranks of one job share an ABI. */
#ifndef QF_WIRE_H
#define QF_WIRE_H

#include "embed/common.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    unsigned char *data;
    size_t         len, cap, pos;   /* pos: read cursor */
    int            failed;          /* an append ran out of memory or a read ran past the end */
} qf_wire;

void qf_wire_free(qf_wire *w);
void qf_wire_reset(qf_wire *w);
void qf_wire_put(qf_wire *w, const void *p, size_t n);
void qf_wire_put_i64(qf_wire *w, int64_t v);
void qf_wire_put_i32(qf_wire *w, int32_t v);
void qf_wire_put_str(qf_wire *w, const char *s);          /* u32 length + bytes */
int       qf_wire_get(qf_wire *w, void *p, size_t n);    /* 0 on underflow     */
int64_t   qf_wire_get_i64(qf_wire *w);
int32_t   qf_wire_get_i32(qf_wire *w);
/* Pointer into the buffer + length (not NUL-terminated); NULL on underflow. */
const char *qf_wire_get_str(qf_wire *w, uint32_t *len);
const void *qf_wire_get_span(qf_wire *w, size_t n);

#endif
