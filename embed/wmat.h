/* wmat.h - a language model's weight matrix held as float32, BF16 or int8
 * (the qf_opt_weights modes, see opt.h), loaded from safetensors and
 * multiplied by activation rows; the matrices of both language models (opt.c,
 * t5.c). float32 and BF16 stay in the mapped file when it stores them so,
 * other conversions are made once at load into blocks the qf_wmat_store
 * owns. */
#ifndef QF_WMAT_H
#define QF_WMAT_H

#include "embed/common.h"
#include "embed/safetensors.h"
#include "embed/opt.h"

#include <stdint.h>

/* [N, K] row-major; exactly one of f, h, q is set. int8: q per output row
 * (qf_cpu_quantize_i8) with scale [N] and sum [N]. */
typedef struct {
    const float    *f;
    const uint16_t *h;
    const int8_t   *q;
    const float    *scale;
    const int32_t  *sum;
} qf_wmat;

/* The converted copies a model owns. Zero-initialise; qf_wmat_store_free. */
typedef struct {
    void **owned;
    int    n_owned;
} qf_wmat_store;

void qf_wmat_store_free(qf_wmat_store *o);

/* The [r, c] matrix `name` of `st` (borrowed, must outlive the matrix) as
 * `wtype`; copies go to `o`. Errors name the tensor (missing, shape). */
qf_status qf_wmat_get(qf_wmat_store *o, qf_st *st, qf_opt_weights wtype, const char *name,
                      int64_t r, int64_t c, qf_wmat *w);

/* Per-thread scratch of the products: BF16 rows widened for sgemm, int8
 * quantized activation rows. max_k: the longest row of any matrix. */
typedef struct {
    float   *wbuf;
    uint8_t *xbuf;
} qf_wmat_scratch;

qf_status qf_wmat_scratch_init(qf_wmat_scratch *s, qf_opt_weights wtype, int max_k);
void      qf_wmat_scratch_free(qf_wmat_scratch *s);

/* y[R, N] = x[R, K] @ W^T (+ b, may be NULL): sgemm / matvec for float32,
 * the W8A8 kernel for int8, BF16 rows streamed for few rows and widened in
 * blocks for sgemm for many. */
void qf_wmat_linear(qf_wmat_scratch *s, float *y, const float *x, int R, int K, const qf_wmat *w,
                    const float *b, int N);

#endif
