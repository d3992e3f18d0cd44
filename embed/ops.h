/* ops.h - tensor kernels on OpenBLAS and a bump arena for activations.
 *
 * Row-major everywhere. The one GEMM convention of the project:
 *   qf_gemm: C[M,N] = A[M,K] @ op(B) + beta * C,
 *            op(B) = B^T when B is stored [N,K] (trans_b = 1, the layout of a
 *            PyTorch nn.Linear weight), B when stored [K,N] (trans_b = 0).
 * Matrix products of many rows go through qf_gemm (OpenBLAS). The
 * exceptions, each with its own kernel and the same row-major [N,K] weight
 * convention: decode steps of a few rows (qf_cpu_matvec*, kernels_cpu.h),
 * int8 weights (qf_cpu_*_i8), the ViT's BF16 oneDNN engine (gemm_dnnl.h)
 * and the AVX-512 attention kernel. */
#ifndef QF_OPS_H
#define QF_OPS_H

#include "embed/common.h"

#include <stddef.h>

void qf_gemm(int trans_b, int M, int N, int K,
             const float *A, int lda, const float *B, int ldb,
             float beta, float *C, int ldc);

/* y[n,out] = x[n,in] @ W[out,in]^T + b[out]   (nn.Linear; b may be NULL) */
void qf_linear(float *y, const float *x, int n, int in, const float *W, const float *b, int out);

/* y[r,:] = (x[r,:] - mean) / sqrt(var + eps) * w + b   (nn.LayerNorm; y may equal x) */
void qf_layernorm(float *y, const float *x, int rows, int dim,
                  const float *w, const float *b, float eps);

void qf_gelu(float *x, size_t n);        /* exact: 0.5 x (1 + erf(x / sqrt 2)) */
void qf_relu(float *x, size_t n);
void qf_add(float *y, const float *x, size_t n);          /* y += x */
void qf_softmax_rows(float *x, int rows, int cols);      /* in place, max-subtracted */
void qf_l2_normalize(float *x, int rows, int dim);       /* F.normalize(x, dim=-1, eps=1e-12) */

/* Multi-head scaled dot-product attention (no dropout):
 *   out[Lq, H*d] = softmax(Q K^T * scale + mask) V   per head h,
 * Q is [Lq, ldq] with head h at columns h*d..; K, V likewise [Lk, ld*].
 * mask: NULL, or additive [Lk] (same for every query row), or when
 * causal != 0 a causal mask with query i at absolute position pos0 + i.
 * scratch [n_scratch floats] is the caller's (an arena: nothing is
 * allocated here); qf_attention_scratch() floats let every path run at full
 * width, at least Lq*Lk are required. */
void qf_attention(float *out, int ldo, const float *Q, int ldq, const float *K, int ldk,
                  const float *V, int ldv, int Lq, int Lk, int n_head, int d_head,
                  float scale, const float *mask, int causal, int pos0, float *scratch, size_t n_scratch);
size_t qf_attention_scratch(int Lq, int Lk, int n_head, int d_head);

/* Activation arena: one block sized once, bump-allocated, reset every pass. */
typedef struct {
    char  *base;
    size_t size, used, high;              /* high: high-water mark */
} qf_arena;

qf_status qf_arena_init(qf_arena *a, size_t bytes);
void      qf_arena_free(qf_arena *a);
void      qf_arena_reset(qf_arena *a);
/* 64-byte aligned floats; QF_ERR_NOMEM naming needed vs available on overflow. */
qf_status qf_arena_floats(qf_arena *a, size_t n, float **out);

#endif
