/* safetensors.h - read-only access to Hugging Face safetensors checkpoints
 * (single file or sharded through model.safetensors.index.json), and a
 * writer for the small files `qformer embed` produces.
 *
 * Files are mmapped read-only (MAP_PRIVATE): F32 tensors are used in place;
 * F16/BF16 tensors are upcast to float32 once, on first request, into
 * buffers owned by the qf_st. Every header is validated when opened: size
 * limits, JSON well-formed, known dtype, shape product × dtype size equals
 * the byte span, spans inside the file and not overlapping. Opening reads
 * the headers only (O(header)), never the payload. Little-endian hosts only. */
#ifndef QF_SAFETENSORS_H
#define QF_SAFETENSORS_H

#include "embed/common.h"

#include <stddef.h>
#include <stdint.h>

typedef enum {
    QF_DT_F32, QF_DT_F16, QF_DT_BF16, QF_DT_F64,
    QF_DT_I64, QF_DT_I32, QF_DT_I16, QF_DT_I8, QF_DT_U8, QF_DT_BOOL,
    QF_DT_COUNT
} qf_dtype;

#define QF_ST_MAX_DIMS 8

const char *qf_dtype_name(qf_dtype dt);   /* "F32", "F16", ...; "?" if out of range */
size_t      qf_dtype_size(qf_dtype dt);   /* bytes per element; 0 if out of range  */

typedef struct {
    const char *name;                     /* borrowed, valid until qf_st_close */
    const char *file;                     /* path of the file holding it; borrowed,
                                             valid until qf_st_close            */
    qf_dtype    dtype;
    int         n_dim;
    int64_t     shape[QF_ST_MAX_DIMS];
    int64_t     n_elem;
    const void *data;                     /* raw little-endian bytes in the read-only
                                             mapping; may be unaligned for its dtype
                                             (use qf_st_get_f32 / qf_st_get_raw)  */
    size_t      n_bytes;
} qf_st_tensor;

typedef struct qf_st qf_st;

/* Opens `path`: a .safetensors file, a *.json shard index, or a directory
 * (model.safetensors.index.json preferred, else model.safetensors, else its
 * only *.safetensors file). Shard names in an index are plain file names in
 * the index's directory ('/' and ".." refused); every tensor the index
 * lists must be in the shard it names. All tensors of all shards form one
 * set sorted by name. Errors: QF_ERR_IO (missing / unreadable file),
 * QF_ERR_FORMAT (malformed header or index), QF_ERR_LIMIT (header over
 * 100 MB, more than QF_ST_MAX_DIMS dims), QF_ERR_MISSING (tensor absent
 * from the shard the index names), QF_ERR_NOMEM. *out receives a new
 * qf_st the caller owns (qf_st_close), NULL on failure. */
qf_status qf_st_open(const char *path, qf_st **out);
void      qf_st_close(qf_st *st);         /* NULL ok */

/* The path given to qf_st_open; borrowed, valid until qf_st_close. */
const char *qf_st_path(const qf_st *st);
/* Value of `key` in the "__metadata__" of the file (first shard holding it
 * when sharded); NULL if absent. Borrowed, valid until qf_st_close. */
const char *qf_st_metadata(const qf_st *st, const char *key);

size_t              qf_st_count(const qf_st *st);
const qf_st_tensor *qf_st_at(const qf_st *st, size_t i);   /* sorted by name */
const qf_st_tensor *qf_st_find(const qf_st *st, const char *name); /* NULL if absent */
/* Total bytes of tensor data over all files. */
uint64_t            qf_st_total_bytes(const qf_st *st);

/* Float32 view of tensor `name`, checked against the expected shape
 * (n_dim dims; a -1 entry accepts any size there). QF_ERR_MISSING if
 * absent, QF_ERR_SHAPE if its dtype is not F32/F16/BF16 or its shape
 * differs; errors name the tensor, the file, and expected vs found shape/
 * dtype. F32 is returned in place (copied once only if the file stores it
 * unaligned), F16/BF16 exactly upcast once. The pointer is borrowed,
 * valid until qf_st_close. Not thread-safe on first call for a given F16/
 * BF16 tensor (load weights before starting threads). */
qf_status qf_st_get_f32(qf_st *st, const char *name, int n_dim, const int64_t *shape,
                        const float **out);

/* Elements [first, first + count) of tensor `name` (checked as for
 * qf_st_get_f32) converted to float32 into dst, with nothing kept: for
 * callers that convert a tensor piecewise into another format. */
qf_status qf_st_read_f32(const qf_st *st, const char *name, int n_dim, const int64_t *shape,
                         int64_t first, int64_t count, float *dst);

/* Drops the resident pages of tensor `name` from this process (madvise
 * MADV_DONTNEED on the pages wholly inside it) when it lives in an mmapped
 * file: for callers that converted it into another format and no longer
 * read it. A later read faults the same bytes back in from the file. No-op
 * for tensors held in memory (qf_st_from_memory) or absent. */
void qf_st_release(const qf_st *st, const char *name);

/* Typed raw view of tensor `name`, whose dtype must be exactly `dtype`
 * (QF_ERR_SHAPE otherwise) and shape as for qf_st_get_f32 (QF_ERR_MISSING
 * if absent). The data is aligned for its dtype (copied once if the file
 * stores it unaligned), little-endian. Borrowed, valid until qf_st_close;
 * same thread-safety note as qf_st_get_f32. */
qf_status qf_st_get_raw(const qf_st *st, const char *name, qf_dtype dtype, int n_dim,
                        const int64_t *shape, const void **out);

/* Writer: tensors are written in the order given, with an optional
 * __metadata__ (NULL-terminated key/value pairs, may be NULL). */
typedef struct {
    const char    *name;
    qf_dtype       dtype;
    int            n_dim;
    const int64_t *shape;
    const void    *data;                  /* n_elem * dtype size bytes, little-endian */
} qf_st_item;

/* The header lists the tensors in the order given (compact JSON,
 * "__metadata__" first, space-padded so the payload starts 8-byte aligned);
 * the payload stores them by decreasing dtype size, so every tensor is
 * aligned for its dtype and the spans are contiguous as the reference
 * implementation requires. Written to "<path>.tmp", fsynced, renamed over
 * `path`. Items and metadata are borrowed. QF_ERR_ARG for unsupported input
 * (NULL or empty or duplicate names, "__metadata__" as a name, bad dtype,
 * n_dim outside 0..QF_ST_MAX_DIMS, negative dims, NULL data for a non-empty
 * tensor, invalid UTF-8, a metadata key without value), QF_ERR_IO. */
qf_status qf_st_write(const char *path, const qf_st_item *items, size_t n_items,
                      const char *const *metadata_kv);

/* An in-memory tensor set with the same lookups and checks as a file
 * (benchmarks, tests): the items are validated as qf_st_write validates
 * them, names are copied, duplicate names refused (QF_ERR_FORMAT). The
 * data is borrowed, not copied: it must stay valid and unchanged until
 * qf_st_close. `label` (may be NULL) stands for the path in messages and
 * qf_st_path. No metadata. *out receives a new qf_st the caller owns. */
qf_status qf_st_from_memory(const char *label, const qf_st_item *items, size_t n_items, qf_st **out);

#endif
