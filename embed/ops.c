/* ops.c - tensor kernels (see ops.h). GEMMs go to OpenBLAS; the element-wise
 * kernels are plain loops over `restrict` pointers that the compiler
 * vectorises. Reductions (layer norm, softmax) accumulate in float in the
 * same order PyTorch's CPU kernels use closely enough for 1e-5 agreement. */
#include "embed/ops.h"

#include "embed/kernels_cpu.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void qf_gemm(int trans_b, int M, int N, int K,
             const float *A, int lda, const float *B, int ldb,
             float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) C[(size_t)i * ldc + j] *= beta;
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
}

void qf_linear(float *y, const float *x, int n, int in, const float *W, const float *b, int out) {
    /* A few rows (decoding): stream W once at memory bandwidth instead of sgemm's packing */
    if (n <= 4) { qf_cpu_matvec(y, x, n, in, W, b, out); return; }
    if (b) {
        for (int i = 0; i < n; i++) memcpy(y + (size_t)i * out, b, (size_t)out * sizeof *y);
        qf_gemm(1, n, out, in, x, in, W, in, 1.0f, y, out);
    } else {
        qf_gemm(1, n, out, in, x, in, W, in, 0.0f, y, out);
    }
}

void qf_layernorm(float *y, const float *x, int rows, int dim,
                  const float *w, const float *b, float eps) {
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * dim;
        float *yr = y + (size_t)r * dim;
        double sum = 0;
        for (int i = 0; i < dim; i++) sum += xr[i];
        float mean = (float)(sum / dim);
        double var = 0;
        for (int i = 0; i < dim; i++) { double d = xr[i] - mean; var += d * d; }
        float rstd = (float)(1.0 / sqrt(var / dim + eps));
        for (int i = 0; i < dim; i++) yr[i] = (xr[i] - mean) * rstd * w[i] + b[i];
    }
}

void qf_gelu(float *x, size_t n) { qf_cpu_gelu(x, n); }   /* vectorised erff (libmvec) */

void qf_relu(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = x[i] > 0 ? x[i] : 0;
}

void qf_add(float *restrict y, const float *restrict x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

void qf_softmax_rows(float *x, int rows, int cols) {
    for (int r = 0; r < rows; r++) {
        float *xr = x + (size_t)r * cols;
        float mx = -INFINITY;
        for (int i = 0; i < cols; i++) mx = xr[i] > mx ? xr[i] : mx;
        float sum = 0;
        for (int i = 0; i < cols; i++) { xr[i] = expf(xr[i] - mx); sum += xr[i]; }
        float inv = 1.0f / sum;
        for (int i = 0; i < cols; i++) xr[i] *= inv;
    }
}

void qf_l2_normalize(float *x, int rows, int dim) {
    for (int r = 0; r < rows; r++) {
        float *xr = x + (size_t)r * dim;
        double ss = 0;
        for (int i = 0; i < dim; i++) ss += (double)xr[i] * xr[i];
        double nrm = sqrt(ss);
        float inv = (float)(1.0 / (nrm > 1e-12 ? nrm : 1e-12));
        for (int i = 0; i < dim; i++) xr[i] *= inv;
    }
}

size_t qf_attention_scratch(int Lq, int Lk, int n_head, int d_head) {
    size_t blas = (size_t)Lq * Lk, cpu = qf_cpu_attention_scratch(Lq, Lk, n_head, d_head);
    return blas > cpu ? blas : cpu;
}

void qf_attention(float *out, int ldo, const float *Q, int ldq, const float *K, int ldk,
                  const float *V, int ldv, int Lq, int Lk, int n_head, int d_head,
                  float scale, const float *mask, int causal, int pos0, float *scratch, size_t n_scratch) {
    /* AVX-512 kernel, heads in parallel (kernels_cpu.c); below, the portable path */
    if (qf_cpu_attention(out, ldo, Q, ldq, K, ldk, V, ldv, Lq, Lk, n_head, d_head, scale, mask, causal, pos0,
                         scratch, n_scratch))
        return;
    QF_ASSERT(n_scratch >= (size_t)Lq * Lk);
    for (int h = 0; h < n_head; h++) {
        const float *q = Q + h * d_head, *k = K + h * d_head, *v = V + h * d_head;
        /* scores = q @ k^T   [Lq, Lk] */
        qf_gemm(1, Lq, Lk, d_head, q, ldq, k, ldk, 0.0f, scratch, Lk);
        for (int i = 0; i < Lq; i++) {
            float *s = scratch + (size_t)i * Lk;
            for (int j = 0; j < Lk; j++) s[j] *= scale;
            if (mask)
                for (int j = 0; j < Lk; j++) s[j] += mask[j];
            if (causal)
                for (int j = pos0 + i + 1; j < Lk; j++) s[j] = -INFINITY;
        }
        qf_softmax_rows(scratch, Lq, Lk);
        /* out_h = probs @ v   [Lq, d] */
        qf_gemm(0, Lq, d_head, Lk, scratch, Lk, v, ldv, 0.0f, out + h * d_head, ldo);
    }
}

qf_status qf_arena_init(qf_arena *a, size_t bytes) {
    memset(a, 0, sizeof *a);
    bytes = (bytes + 63) & ~(size_t)63;
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0 || !p)
        return qf_errorf(QF_ERR_NOMEM, "cannot allocate an activation arena of %zu bytes", bytes);
    a->base = p;
    a->size = bytes;
    return QF_OK;
}

void qf_arena_free(qf_arena *a) {
    if (!a) return;
    free(a->base);
    memset(a, 0, sizeof *a);
}

void qf_arena_reset(qf_arena *a) { a->used = 0; }

qf_status qf_arena_floats(qf_arena *a, size_t n, float **out) {
    size_t bytes = (n * sizeof(float) + 63) & ~(size_t)63;
    if (bytes > a->size - a->used) {
        *out = NULL;
        return qf_errorf(QF_ERR_NOMEM, "activation arena exhausted: needed %zu bytes, available %zu",
                         bytes, a->size - a->used);
    }
    *out = (float *)(a->base + a->used);
    a->used += bytes;
    if (a->used > a->high) a->high = a->used;
    return QF_OK;
}
