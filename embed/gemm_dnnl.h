/* gemm_dnnl.h - BF16 matrix products through oneDNN (Debian's libdnnl), for
 * CPUs that multiply BF16 natively (AVX512_BF16 / AMX), where oneDNN's JIT
 * kernels use vdpbf16ps / tdpbf16ps. On other CPUs oneDNN emulates BF16
 * (about 55 GFLOP/s on an AVX-512 Xeon without it, 3.5x slower than sgemm),
 * so the BF16 ViT uses it only where qf_dnnl_bf16_native() is true, or when
 * QF_BF16_ENGINE=onednn forces it (tests check its numerics that way).
 *
 * A qf_dnnl_mat is one weight matrix W [N, K] in oneDNN's preferred blocked
 * layout with its matmul primitive for M input rows; immutable after
 * creation, usable from several threads at once. */
#ifndef QF_GEMM_DNNL_H
#define QF_GEMM_DNNL_H

#include "embed/common.h"

#include <stdint.h>

typedef struct qf_dnnl_mat qf_dnnl_mat;

/* 1 when the CPU has AVX512_BF16 or AMX-BF16. */
int qf_dnnl_bf16_native(void);
/* 1 when the BF16 ViT should use oneDNN here: native BF16, or
 * QF_BF16_ENGINE=onednn in the environment (0 with QF_BF16_ENGINE=sgemm). */
int qf_dnnl_bf16_preferred(void);

/* W: [N, K] BF16, row-major (the nn.Linear weight), copied and reordered. */
qf_status qf_dnnl_mat_create(const uint16_t *W, int N, int K, int M, qf_dnnl_mat **out);
void      qf_dnnl_mat_free(qf_dnnl_mat *m);   /* NULL ok */

/* y [M, N] float32 = x [M, K] BF16 @ W^T, float32 accumulation. */
qf_status qf_dnnl_matmul(const qf_dnnl_mat *m, const uint16_t *x, float *y);

#endif
