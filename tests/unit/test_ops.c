/* test_ops.c - tensor kernels against naive reference loops, and the arena. */
#include "embed/ops.h"
#include "tests/testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static unsigned rng = 12345;
static float frand(void) {
    rng = rng * 1103515245u + 12345u;
    return ((rng >> 8) & 0xFFFF) / 32768.0f - 1.0f;
}
static void fill(float *x, size_t n) { for (size_t i = 0; i < n; i++) x[i] = frand(); }

static void test_gemm_vs_naive(void) {
    const int M = 7, N = 13, K = 19;
    float A[M * K], Bt[N * K], B[K * N], C1[M * N], C2[M * N], ref[M * N];
    fill(A, M * K); fill(Bt, N * K);
    for (int k = 0; k < K; k++) for (int n = 0; n < N; n++) B[k * N + n] = Bt[n * K + k];
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double acc = 0;
            for (int k = 0; k < K; k++) acc += (double)A[i * K + k] * Bt[j * K + k];
            ref[i * N + j] = (float)acc + 0.5f * 1.0f;
        }
    for (int i = 0; i < M * N; i++) C1[i] = C2[i] = 1.0f;
    qf_gemm(1, M, N, K, A, K, Bt, K, 0.5f, C1, N);
    qf_gemm(0, M, N, K, A, K, B, N, 0.5f, C2, N);
    QF_ASSERT_CLOSE(C1, ref, M * N, 1e-5, 1e-5, "gemm trans_b");
    QF_ASSERT_CLOSE(C2, ref, M * N, 1e-5, 1e-5, "gemm no trans");
}

static void test_linear(void) {
    const int n = 5, in = 11, out = 6;
    float x[n * in], W[out * in], b[out], y[n * out], ref[n * out];
    fill(x, n * in); fill(W, out * in); fill(b, out);
    for (int r = 0; r < n; r++)
        for (int o = 0; o < out; o++) {
            double acc = b[o];
            for (int i = 0; i < in; i++) acc += (double)x[r * in + i] * W[o * in + i];
            ref[r * out + o] = (float)acc;
        }
    qf_linear(y, x, n, in, W, b, out);
    QF_ASSERT_CLOSE(y, ref, n * out, 1e-5, 1e-5, "linear");
    for (int r = 0; r < n; r++) for (int o = 0; o < out; o++) ref[r * out + o] -= b[o];
    qf_linear(y, x, n, in, W, NULL, out);
    QF_ASSERT_CLOSE(y, ref, n * out, 1e-5, 1e-5, "linear no bias");
}

static void test_layernorm(void) {
    const int rows = 3, dim = 33;
    float x[rows * dim], w[dim], b[dim], y[rows * dim], ref[rows * dim];
    fill(x, rows * dim); fill(w, dim); fill(b, dim);
    for (int r = 0; r < rows; r++) {
        double mu = 0, var = 0;
        for (int i = 0; i < dim; i++) mu += x[r * dim + i];
        mu /= dim;
        for (int i = 0; i < dim; i++) var += (x[r * dim + i] - mu) * (x[r * dim + i] - mu);
        var /= dim;
        for (int i = 0; i < dim; i++)
            ref[r * dim + i] = (float)((x[r * dim + i] - mu) / sqrt(var + 1e-5) * w[i] + b[i]);
    }
    qf_layernorm(y, x, rows, dim, w, b, 1e-5f);
    QF_ASSERT_CLOSE(y, ref, rows * dim, 1e-5, 1e-5, "layernorm");
    qf_layernorm(x, x, rows, dim, w, b, 1e-5f);   /* in place */
    QF_ASSERT_CLOSE(x, ref, rows * dim, 1e-5, 1e-5, "layernorm in place");
}

static void test_activations(void) {
    float x[5] = { -3.0f, -0.5f, 0.0f, 0.5f, 3.0f }, g[5], r[5];
    memcpy(g, x, sizeof x); memcpy(r, x, sizeof x);
    qf_gelu(g, 5); qf_relu(r, 5);
    for (int i = 0; i < 5; i++) {
        double ref = 0.5 * x[i] * (1 + erf(x[i] / sqrt(2.0)));
        CU_ASSERT(fabs(g[i] - ref) < 1e-6);
        CU_ASSERT_EQUAL(r[i], x[i] > 0 ? x[i] : 0.0f);
    }
}

static void test_softmax_normalize(void) {
    float x[2 * 4] = { 1, 2, 3, 4, 1000, 1000, -1000, 0 };
    qf_softmax_rows(x, 2, 4);
    double e1 = exp(1) + exp(2) + exp(3) + exp(4);
    CU_ASSERT(fabs(x[3] - exp(4) / e1) < 1e-6);
    CU_ASSERT(fabs(x[4] - 0.5) < 1e-6 && x[6] == 0.0f);   /* no overflow */
    float v[2 * 3] = { 3, 4, 0, 0, 0, 0 };
    qf_l2_normalize(v, 2, 3);
    CU_ASSERT(fabs(v[0] - 0.6) < 1e-7 && fabs(v[1] - 0.8) < 1e-7);
    CU_ASSERT(v[3] == 0 && !isnan(v[4]));                  /* zero vector stays zero */
}

static void test_attention_vs_naive(void) {
    const int Lq = 4, Lk = 6, H = 2, d = 3, D = H * d;
    float Q[Lq * D], K[Lk * D], V[Lk * D], mask[Lk], out[Lq * D], ref[Lq * D];
    const size_t n_scratch = qf_attention_scratch(Lq, Lk, H, d);
    float *scratch = malloc(n_scratch * sizeof *scratch);
    CU_ASSERT_PTR_NOT_NULL_FATAL(scratch);
    fill(Q, Lq * D); fill(K, Lk * D); fill(V, Lk * D);
    for (int j = 0; j < Lk; j++) mask[j] = j == 4 ? -10000.0f : 0.0f;
    for (int causal = 0; causal < 2; causal++) {
        for (int h = 0; h < H; h++)
            for (int i = 0; i < Lq; i++) {
                double s[Lk], mx = -1e30, sum = 0;
                for (int j = 0; j < Lk; j++) {
                    double acc = 0;
                    for (int c = 0; c < d; c++) acc += Q[i * D + h * d + c] * K[j * D + h * d + c];
                    s[j] = acc * 0.5 + mask[j];
                    if (causal && j > 2 + i) s[j] = -1e30;
                    if (s[j] > mx) mx = s[j];
                }
                for (int j = 0; j < Lk; j++) { s[j] = exp(s[j] - mx); sum += s[j]; }
                for (int c = 0; c < d; c++) {
                    double acc = 0;
                    for (int j = 0; j < Lk; j++) acc += s[j] / sum * V[j * D + h * d + c];
                    ref[i * D + h * d + c] = (float)acc;
                }
            }
        qf_attention(out, D, Q, D, K, D, V, D, Lq, Lk, H, d, 0.5f, mask, causal, 2, scratch, n_scratch);
        QF_ASSERT_CLOSE(out, ref, Lq * D, 1e-5, 1e-5, causal ? "causal attention" : "attention");
    }
    free(scratch);
}

static void test_arena(void) {
    qf_arena a;
    CU_ASSERT_FATAL(qf_arena_init(&a, 1000) == QF_OK);
    float *p, *q;
    CU_ASSERT(qf_arena_floats(&a, 100, &p) == QF_OK);
    CU_ASSERT(((uintptr_t)p & 63) == 0);
    CU_ASSERT(qf_arena_floats(&a, 1000, &q) == QF_ERR_NOMEM);
    CU_ASSERT(strstr(qf_last_error(), "needed 4032 bytes") != NULL);
    qf_arena_reset(&a);
    CU_ASSERT(qf_arena_floats(&a, 200, &q) == QF_OK && q == p);
    qf_arena_free(&a);
    qf_arena_free(NULL);
}

static CU_TestInfo tests[] = {
    { "gemm_vs_naive", test_gemm_vs_naive },
    { "linear", test_linear },
    { "layernorm", test_layernorm },
    { "activations", test_activations },
    { "softmax_normalize", test_softmax_normalize },
    { "attention_vs_naive", test_attention_vs_naive },
    { "arena", test_arena },
    CU_TEST_INFO_NULL,
};

int main(void) { return qf_test_main("ops", tests); }
