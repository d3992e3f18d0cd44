/* test_kernels_cpu.c - the run-time dispatched CPU kernels against plain
 * double-precision references: GELU (libmvec erff), the matrix-vector
 * products (float32 and BF16 weights), attention (masks, causal offsets,
 * head sizes that are and are not multiples of 16, more than 96 columns),
 * the same bits for 1 and 2 threads, and the OPT decoder with BF16 weights
 * against the F32 decoder on the tiny-blip2-opt fixture (tolerance test of
 * the BF16 path: logits within 2% of their range, same greedy captions). */
#include "embed/config.h"
#include "embed/kernels_cpu.h"
#include "embed/ops.h"
#include "embed/safetensors.h"
#include "embed/generate.h"
#include "embed/opt.h"
#include "tests/testutil.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned rng = 12345;
static float frand(void) {                     /* uniform in [-1, 1) */
    rng = rng * 1664525u + 1013904223u;
    return (float)(rng >> 8) / 8388608.0f - 1.0f;
}

static void test_gelu(void) {
    enum { N = 20011 };                         /* odd: exercises the tails */
    static float x[N], ref[N];
    for (int i = 0; i < N; i++) {
        x[i] = -12.0f + 24.0f * (float)i / N;
        ref[i] = (float)(0.5 * x[i] * (1.0 + erf(x[i] / sqrt(2.0))));
    }
    qf_gelu(x, N);
    QF_ASSERT_CLOSE(x, ref, N, 1e-6, 1e-6, "gelu");
}

static void naive_linear(double *y, const float *x, int R, int K, const float *W, const float *b, int N) {
    for (int r = 0; r < R; r++)
        for (int o = 0; o < N; o++) {
            double acc = b ? b[o] : 0;
            for (int k = 0; k < K; k++) acc += (double)W[(size_t)o * K + k] * x[(size_t)r * K + k];
            y[(size_t)r * N + o] = acc;
        }
}

static void check_matvec(int R, int K, int N, int bf16) {
    float *x = malloc(sizeof(float) * R * K), *W = malloc(sizeof(float) * N * K), *b = malloc(sizeof(float) * N);
    float *y = malloc(sizeof(float) * R * N), *yr = malloc(sizeof(float) * R * N);
    double *yd = malloc(sizeof(double) * R * N);
    uint16_t *Wh = malloc(sizeof(uint16_t) * N * K);
    for (int i = 0; i < R * K; i++) x[i] = frand();
    for (int i = 0; i < N * K; i++) W[i] = frand();
    for (int i = 0; i < N; i++) b[i] = frand();
    if (bf16) {
        qf_cpu_f32_to_bf16(Wh, W, (size_t)N * K);
        qf_cpu_bf16_to_f32(W, Wh, (size_t)N * K);          /* reference on the rounded weights */
        qf_cpu_matvec_bf16(y, x, R, K, Wh, b, N);
    } else {
        qf_cpu_matvec(y, x, R, K, W, b, N);
    }
    naive_linear(yd, x, R, K, W, b, N);
    for (int i = 0; i < R * N; i++) yr[i] = (float)yd[i];
    char what[64];
    snprintf(what, sizeof what, "matvec%s R=%d K=%d N=%d", bf16 ? "_bf16" : "", R, K, N);
    QF_ASSERT_CLOSE(y, yr, (size_t)R * N, 2e-5 * sqrt((double)K), 1e-5, what);
    free(x); free(W); free(b); free(y); free(yr); free(yd); free(Wh);
}

static void test_matvec(void) {
    static const int shapes[][3] = { { 1, 2560, 300 }, { 3, 37, 70 }, { 4, 100, 129 }, { 2, 16, 1 },
                                     { 1, 10240, 64 }, { 6, 48, 33 }, { 1, 33, 7 }, { 1, 70, 131 } };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int bf16 = 0; bf16 < 2; bf16++) check_matvec(shapes[i][0], shapes[i][1], shapes[i][2], bf16);
    /* qf_linear's few-row path agrees with sgemm */
    enum { K = 200, N = 90 };
    static float x[3 * K], W[N * K], b[N], y1[3 * N], y2[3 * N];
    for (int i = 0; i < 3 * K; i++) x[i] = frand();
    for (int i = 0; i < N * K; i++) W[i] = frand();
    for (int i = 0; i < N; i++) b[i] = frand();
    qf_linear(y1, x, 3, K, W, b, N);
    for (int r = 0; r < 3; r++) memcpy(y2 + r * N, b, sizeof b);
    qf_gemm(1, 3, N, K, x, K, W, K, 1.0f, y2, N);
    QF_ASSERT_CLOSE(y1, y2, 3 * N, 1e-4, 1e-5, "qf_linear few rows");
}

/* Int8: quantization invariants, VNNI and portable kernels bit-identical,
 * and the result within the rigorous quantization error bound of the
 * float product: |x.w - xq.wq| <= sum_k |x_k| sw/2 + (|w_k| + sw/2) sx/2. */
static void check_matvec_i8(int R, int K, int N) {
    float *x = malloc(sizeof(float) * R * K), *W = malloc(sizeof(float) * N * K), *b = malloc(sizeof(float) * N);
    float *y = malloc(sizeof(float) * R * N), *yc = malloc(sizeof(float) * R * N);
    double *yd = malloc(sizeof(double) * R * N);
    int8_t *q = malloc((size_t)N * K);
    float *scale = malloc(sizeof(float) * N);
    int32_t *sum = malloc(sizeof(int32_t) * N);
    uint8_t *scratch = malloc((size_t)QF_CPU_I8_ROWS * K);
    for (int i = 0; i < R * K; i++) x[i] = frand() * (i % 7 == 0 ? 8.0f : 1.0f);   /* some outliers */
    for (int i = 0; i < N * K; i++) W[i] = frand() * 0.1f;
    for (int i = 0; i < N; i++) b[i] = frand();
    if (N > 1) memset(W + K, 0, sizeof(float) * K);   /* an all-zero row: scale 0 */
    qf_cpu_quantize_i8(q, scale, sum, W, N, K);
    int ok_q = 1;
    for (int o = 0; o < N; o++) {
        int32_t s = 0;
        for (int k = 0; k < K; k++) {
            int v = q[(size_t)o * K + k];
            s += v;
            ok_q &= v >= -127 && v <= 127 && fabsf(v * scale[o] - W[(size_t)o * K + k]) <= 0.5001f * scale[o];
        }
        ok_q &= s == sum[o];
    }
    CU_ASSERT(ok_q);
    qf_cpu_matvec_i8(y, x, R, K, q, scale, sum, b, N, scratch);
    qf_cpu_set_portable(1);
    qf_cpu_matvec_i8(yc, x, R, K, q, scale, sum, b, N, scratch);
    qf_cpu_set_portable(0);
    char what[64];
    snprintf(what, sizeof what, "matvec_i8 R=%d K=%d N=%d", R, K, N);
    if (memcmp(y, yc, sizeof(float) * R * N)) CU_FAIL(what);       /* VNNI == portable, bit for bit */
    naive_linear(yd, x, R, K, W, b, N);
    int within = 1;
    for (int r = 0; r < R; r++) {
        double amax = 0;
        for (int k = 0; k < K; k++) amax = fmax(amax, fabs(x[(size_t)r * K + k]));
        double sx = amax / 127;
        for (int o = 0; o < N; o++) {
            double bound = 1e-5 * (1 + fabs(yd[(size_t)r * N + o]));
            for (int k = 0; k < K; k++)
                bound += fabs(x[(size_t)r * K + k]) * scale[o] / 2 + (fabs(W[(size_t)o * K + k]) + scale[o] / 2) * sx / 2;
            within &= fabs(y[(size_t)r * N + o] - yd[(size_t)r * N + o]) <= bound;
        }
    }
    if (!within) CU_FAIL(what);
    free(x); free(W); free(b); free(y); free(yc); free(yd); free(q); free(scale); free(sum); free(scratch);
}

static void test_matvec_i8(void) {
    static const int shapes[][3] = { { 1, 2560, 300 }, { 3, 37, 70 }, { 4, 100, 129 }, { 2, 64, 1 },
                                     { 1, 10240, 64 }, { 9, 48, 33 }, { 8, 130, 17 } };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        check_matvec_i8(shapes[i][0], shapes[i][1], shapes[i][2]);
}

static void test_bf16_round(void) {
    float in[5] = { 1.0f, 1.00390625f /* 1 + 2^-8: tie, even stays 1 */, 1.01171875f /* tie, odd -> up */,
                    -3.5f, 0.0f };
    uint16_t h[5];
    float out[5];
    qf_cpu_f32_to_bf16(h, in, 5);
    qf_cpu_bf16_to_f32(out, h, 5);
    CU_ASSERT_EQUAL(out[0], 1.0f);
    CU_ASSERT_EQUAL(out[1], 1.0f);
    CU_ASSERT_EQUAL(out[2], 1.015625f);
    CU_ASSERT_EQUAL(out[3], -3.5f);
    CU_ASSERT_EQUAL(out[4], 0.0f);
}

/* Reference attention in double, same argument conventions as qf_attention. */
static void naive_attention(float *out, int ldo, const float *Q, int ldq, const float *K, int ldk,
                            const float *V, int ldv, int Lq, int Lk, int H, int d, float scale,
                            const float *mask, int causal, int pos0) {
    double *p = malloc(sizeof(double) * Lk);
    for (int h = 0; h < H; h++)
        for (int i = 0; i < Lq; i++) {
            double mx = -INFINITY, sum = 0;
            int n = causal ? (pos0 + i + 1 < Lk ? pos0 + i + 1 : Lk) : Lk;
            for (int j = 0; j < n; j++) {
                double s = 0;
                for (int c = 0; c < d; c++) s += (double)Q[(size_t)i * ldq + h * d + c] * K[(size_t)j * ldk + h * d + c];
                p[j] = (double)(float)(s * scale) + (mask ? mask[j] : 0);
                if (p[j] > mx) mx = p[j];
            }
            for (int j = 0; j < n; j++) { p[j] = exp(p[j] - mx); sum += p[j]; }
            for (int c = 0; c < d; c++) {
                double acc = 0;
                for (int j = 0; j < n; j++) acc += p[j] / sum * V[(size_t)j * ldv + h * d + c];
                out[(size_t)i * ldo + h * d + c] = (float)acc;
            }
        }
    free(p);
}

static void check_attention(int Lq, int Lk, int H, int d, int use_mask, int causal, int pos0) {
    const int D = H * d, ld = 3 * D;            /* packed qkv rows as the ViT has them */
    openblas_set_num_threads(2);                /* scratch for the widest of the two runs */
    const size_t n_scratch = qf_attention_scratch(Lq, Lk, H, d);
    int L = Lq > Lk ? Lq : Lk;
    float *qkv = malloc(sizeof(float) * L * ld), *mask = malloc(sizeof(float) * Lk);
    float *o1 = calloc((size_t)Lq * D, sizeof(float)), *o2 = calloc((size_t)Lq * D, sizeof(float));
    float *ref = calloc((size_t)Lq * D, sizeof(float)), *scratch = malloc(sizeof(float) * n_scratch);
    for (int i = 0; i < L * ld; i++) qkv[i] = 2.0f * frand();
    for (int j = 0; j < Lk; j++) mask[j] = j % 5 == 3 ? -10000.0f : 0.0f;
    const float scale = 1.0f / sqrtf((float)d), *mk = use_mask ? mask : NULL;
    naive_attention(ref, D, qkv, ld, qkv + D, ld, qkv + 2 * D, ld, Lq, Lk, H, d, scale, mk, causal, pos0);
    openblas_set_num_threads(1);
    qf_attention(o1, D, qkv, ld, qkv + D, ld, qkv + 2 * D, ld, Lq, Lk, H, d, scale, mk, causal, pos0, scratch, n_scratch);
    openblas_set_num_threads(2);
    qf_attention(o2, D, qkv, ld, qkv + D, ld, qkv + 2 * D, ld, Lq, Lk, H, d, scale, mk, causal, pos0, scratch, n_scratch);
    openblas_set_num_threads(1);
    char what[96];
    snprintf(what, sizeof what, "attention Lq=%d Lk=%d H=%d d=%d mask=%d causal=%d pos0=%d",
             Lq, Lk, H, d, use_mask, causal, pos0);
    QF_ASSERT_CLOSE(o1, ref, (size_t)Lq * D, 2e-5, 1e-4, what);
    CU_ASSERT(memcmp(o1, o2, sizeof(float) * Lq * D) == 0);   /* same bits for 1 and 2 threads */
    free(qkv); free(mask); free(o1); free(o2); free(ref); free(scratch);
}

static void test_attention(void) {
    check_attention(257, 257, 4, 88, 0, 0, 0);  /* ViT-g head size, not a multiple of 16 */
    check_attention(32, 257, 3, 64, 0, 0, 0);   /* Q-Former cross-attention */
    check_attention(40, 40, 2, 64, 1, 0, 0);    /* text with a padding mask */
    check_attention(9, 20, 3, 80, 0, 1, 11);    /* OPT prefill after 11 cached positions */
    check_attention(1, 57, 4, 80, 0, 1, 56);    /* OPT decode step */
    check_attention(5, 7, 2, 130, 1, 0, 0);     /* more than 96 columns per head */
    check_attention(130, 70, 1, 24, 0, 1, 0);   /* one head: query rows split in blocks */
}

/* A BF16 / int8 decoder against the F32 decoder on the fixture checkpoint:
 * logits within tol of their range, and whether the greedy tokens agree. */
static int check_opt_weights(qf_opt_weights wt, double tol) {
    qf_blip2_config cfg;
    qf_st *w = NULL;
    qf_opt *m32 = NULL, *m16 = NULL;
    CU_ASSERT_FATAL(qf_config_load(qf_fixture("tiny-blip2-opt"), &cfg) == QF_OK);
    CU_ASSERT_FATAL(qf_st_open(qf_fixture("tiny-blip2-opt"), &w) == QF_OK);
    CU_ASSERT_FATAL(qf_opt_load(w, &cfg, QF_OPT_F32, &m32) == QF_OK);
    CU_ASSERT_FATAL(qf_opt_load(w, &cfg, wt, &m16) == QF_OK);
    const int D = qf_opt_dim(m32), V = qf_opt_vocab(m32), T = 12, n_new = 8;
    float *prefix = malloc(sizeof(float) * T * D), *l32 = malloc(sizeof(float) * T * V),
          *l16 = malloc(sizeof(float) * T * V);
    int32_t ids[T];
    for (int i = 0; i < T; i++) ids[i] = (int32_t)(2 + (i * 7919) % (V - 2));
    CU_ASSERT_FATAL(qf_opt_embed(m32, ids, T, prefix) == QF_OK);
    qf_opt_cache *c32 = NULL, *c16 = NULL;
    CU_ASSERT_FATAL(qf_opt_cache_init(m32, 1, T + n_new, &c32) == QF_OK);
    CU_ASSERT_FATAL(qf_opt_cache_init(m16, 1, T + n_new, &c16) == QF_OK);
    /* prefill (the BF16 model's GEMM path), all positions' logits */
    CU_ASSERT_FATAL(qf_opt_forward(m32, c32, 0, prefix, T, NULL, l32) == QF_OK);
    CU_ASSERT_FATAL(qf_opt_forward(m16, c16, 0, prefix, T, NULL, l16) == QF_OK);
    float lo = l32[0], hi = l32[0];
    for (int i = 0; i < T * V; i++) { lo = l32[i] < lo ? l32[i] : lo; hi = l32[i] > hi ? l32[i] : hi; }
    QF_ASSERT_CLOSE(l16, l32, (size_t)T * V, tol * (hi - lo), 0, qf_opt_weights_name(wt));
    /* greedy decode steps (the BF16 matrix-vector path), same tokens */
    float *last32 = l32 + (size_t)(T - 1) * V, *last16 = l16 + (size_t)(T - 1) * V;
    int same = 1;
    for (int s = 0; s < n_new; s++) {
        int32_t a = 0, b = 0;
        for (int v = 1; v < V; v++) { if (last32[v] > last32[a]) a = v; if (last16[v] > last16[b]) b = v; }
        same &= a == b;
        QF_ASSERT_CLOSE(last16, last32, (size_t)V, tol * (hi - lo), 0, qf_opt_weights_name(wt));
        CU_ASSERT_FATAL(qf_opt_decode(m32, c32, &a, 1, last32) == QF_OK);
        CU_ASSERT_FATAL(qf_opt_decode(m16, c16, &a, 1, last16) == QF_OK);
    }
    qf_opt_cache_free(c32); qf_opt_cache_free(c16);
    free(prefix); free(l32); free(l16);
    qf_opt_free(m32); qf_opt_free(m16);
    qf_st_close(w);
    return same;
}

static void test_opt_bf16(void) { CU_ASSERT(check_opt_weights(QF_OPT_BF16, 0.02)); }

/* int8 (W8A8): logits within 5% of their range on the fixture. */
static void test_opt_int8(void) { check_opt_weights(QF_OPT_INT8, 0.05); }

/* Greedy captions from the golden query outputs against the F32 decoder's
 * (expected.safetensors): how many of the fixture's images agree. */
static int opt_captions_agree(qf_opt_weights wt, int *n_total) {
    qf_blip2_config cfg;
    qf_st *w = NULL, *ex = NULL;
    qf_opt *m = NULL;
    CU_ASSERT_FATAL(qf_config_load(qf_fixture("tiny-blip2-opt"), &cfg) == QF_OK);
    CU_ASSERT_FATAL(qf_st_open(qf_fixture("tiny-blip2-opt"), &w) == QF_OK);
    CU_ASSERT_FATAL(qf_st_open(qf_fixture("tiny-blip2-opt/expected.safetensors"), &ex) == QF_OK);
    CU_ASSERT_FATAL(qf_opt_load(w, &cfg, wt, &m) == QF_OK);
    qf_gen_params p;
    CU_ASSERT_FATAL(qf_gen_params_load(qf_fixture("tiny-blip2-opt"), &cfg, &p) == QF_OK);
    p.max_new_tokens = 16;
    const int Q = cfg.num_query_tokens, D = qf_opt_dim(m), Dq = cfg.qformer.hidden_size;
    const qf_st_tensor *qo = qf_st_find(ex, "qformer_last_hidden_state");
    CU_ASSERT_FATAL(qo != NULL);
    int n_img = (int)qo->shape[0], agree = 0, total = 0;
    for (int i = 0; i < n_img; i++) {
        float *prefix = malloc(sizeof(float) * (Q + 1) * D);
        qf_opt_project(m, (const float *)qo->data + (size_t)i * Q * Dq, Q, prefix);
        int32_t bos = 2, out[16];
        CU_ASSERT_FATAL(qf_opt_embed(m, &bos, 1, prefix + (size_t)Q * D) == QF_OK);
        qf_opt_cache *c = NULL;
        CU_ASSERT_FATAL(qf_opt_cache_init(m, 1, Q + 1 + 16, &c) == QF_OK);
        int n_out = 0;
        CU_ASSERT_FATAL(qf_generate(m, c, prefix, Q + 1, &bos, 1, &p, out, &n_out, NULL) == QF_OK);
        char name[64];
        snprintf(name, sizeof name, "greedy.noprompt.%d", i);
        const qf_st_tensor *g = qf_st_find(ex, name);
        CU_ASSERT_FATAL(g != NULL);
        const int64_t *gold = g->data;
        int same = n_out == (int)g->n_elem;
        for (int k = 0; same && k < n_out; k++) same = out[k] == gold[k];
        agree += same;
        total++;
        qf_opt_cache_free(c);
        free(prefix);
    }
    fprintf(stderr, "\n%s greedy captions identical to the F32 goldens: %d of %d\n", qf_opt_weights_name(wt),
            agree, total);
    qf_opt_free(m);
    qf_st_close(w);
    qf_st_close(ex);
    *n_total = total;
    return agree;
}

static void test_opt_bf16_captions(void) {
    int n, agree = opt_captions_agree(QF_OPT_BF16, &n);
    CU_ASSERT_EQUAL(agree, n);
}

static void test_opt_int8_captions(void) {
    int n, agree = opt_captions_agree(QF_OPT_INT8, &n);
    CU_ASSERT(agree >= 3);           /* 3 of 6 measured: W8A8 on a hidden size of 32 */
}

static CU_TestInfo tests[] = {
    { "gelu", test_gelu },
    { "matvec", test_matvec },
    { "bf16_round", test_bf16_round },
    { "attention", test_attention },
    { "opt_bf16", test_opt_bf16 },
    { "opt_bf16_captions", test_opt_bf16_captions },
    { "matvec_i8", test_matvec_i8 },
    { "opt_int8", test_opt_int8 },
    { "opt_int8_captions", test_opt_int8_captions },
    CU_TEST_INFO_NULL,
};

int main(void) { return qf_test_main("kernels_cpu", tests); }
