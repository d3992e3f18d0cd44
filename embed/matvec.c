/* matvec.c - the decoder's matrix-vector products (see kernels_cpu.h):
 * float32, BF16 and int8 weights, a few activation rows at a time.
 *
 * These products read every weight once per call and do 1-8 multiply-adds
 * per weight loaded: they are bound by memory bandwidth, not arithmetic.
 * The kernels therefore keep all accumulators in registers (the row count R
 * is a compile-time constant in each specialisation), walk two output rows
 * at a time so that two independent chains hide the FMA / VNNI latency,
 * and split output rows over threads in 64-row tasks.
 *
 * Int8: weights are quantized per output row (symmetric, scale = max|w|/127)
 * once at load; activations per input row on every call. The dot products
 * are exact int32 sums (VNNI vpdpbusd on u8 x s8: the activations are
 * shifted by +128 and the shift removed with the row sums of the weights),
 * so the AVX-512 VNNI kernel and the portable C one give identical results. */
#include "embed/kernels_cpu.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

enum { TASK_ROWS = 64 };                    /* output rows per task */
enum { PF_AHEAD = 1024 };                   /* BF16: bytes of a weight row prefetched ahead */

static int portable;                        /* qf_cpu_set_portable */

void qf_cpu_set_portable(int on) { portable = on; }

static int n_threads_for(size_t weight_bytes) {
    return weight_bytes >= ((size_t)1 << 20) ? qf_cpu_threads() : 1;
}

/* ---- float32 ------------------------------------------------------------------ */

__attribute__((target("avx2,fma")))
static void mv_f32_avx2(float *y, const float *x, int R, int K, const float *W, const float *b,
                        int N, int o0, int o1) {
    const int K8 = K & ~7;
    for (int o = o0; o < o1; o++) {
        const float *w = W + (size_t)o * K;
        __m256 a[4];
        for (int r = 0; r < 4; r++) a[r] = _mm256_setzero_ps();
        for (int k = 0; k < K8; k += 8) {
            __m256 w0 = _mm256_loadu_ps(w + k);
            for (int r = 0; r < R; r++)
                a[r] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + (size_t)r * K + k), a[r]);
        }
        for (int r = 0; r < R; r++) {
            __m128 s = _mm_add_ps(_mm256_castps256_ps128(a[r]), _mm256_extractf128_ps(a[r], 1));
            s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            s = _mm_add_ss(s, _mm_movehdup_ps(s));
            float acc = _mm_cvtss_f32(s);
            for (int k = K8; k < K; k++) acc += w[k] * x[(size_t)r * K + k];
            y[(size_t)r * N + o] = acc + (b ? b[o] : 0.0f);
        }
    }
}

static void mv_f32_c(float *y, const float *x, int R, int K, const float *W, const float *b,
                     int N, int o0, int o1) {
    for (int o = o0; o < o1; o++)
        for (int r = 0; r < R; r++) {
            const float *w = W + (size_t)o * K, *xr = x + (size_t)r * K;
            float acc = 0;
            for (int k = 0; k < K; k++) acc += w[k] * xr[k];
            y[(size_t)r * N + o] = acc + (b ? b[o] : 0.0f);
        }
}

/* ---- BF16 ---------------------------------------------------------------------- */

void qf_cpu_f32_to_bf16(uint16_t *restrict dst, const float *restrict src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = qf_cpu_bf16_of(src[i]);
}

void qf_cpu_bf16_to_f32(float *restrict dst, const uint16_t *restrict src, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t b = (uint32_t)src[i] << 16;
        memcpy(&dst[i], &b, 4);
    }
}

void qf_cpu_round_bf16(float *restrict dst, const float *restrict src, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t b = (uint32_t)qf_cpu_bf16_of(src[i]) << 16;
        memcpy(&dst[i], &b, 4);
    }
}

static inline float bf16_1(uint16_t v) {
    uint32_t b = (uint32_t)v << 16;
    float f;
    memcpy(&f, &b, 4);
    return f;
}

/* 16 bf16 values -> 16 floats (exact: bf16 is the top half of a float). */
__attribute__((target("avx512f"), always_inline))
static inline __m512 bf16x16(__m256i h) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* 16 weights from row w at k as floats: float32 (bf16 = 0) or BF16 (1);
 * masked loads for a tail. bf16 is a constant after inlining. */
__attribute__((target("avx512f,avx512bw,avx512vl"), always_inline))
static inline __m512 load_w16(const void *w, int k, const int bf16, __mmask16 m) {
    if (m == 0xffff)                                /* a constant for the full chunks */
        return bf16 ? bf16x16(_mm256_loadu_si256((const __m256i *)((const uint16_t *)w + k)))
                    : _mm512_loadu_ps((const float *)w + k);
    if (bf16) return bf16x16(_mm256_maskz_loadu_epi16(m, (const uint16_t *)w + k));
    return _mm512_maskz_loadu_ps(m, (const float *)w + k);
}

/* Rows o0..o1 of y[r, o] = x[r] . W[o] (+ b[o]) with float32 or BF16 weights;
 * R and bf16 are constants after inlining. */
__attribute__((target("avx512f,avx512bw,avx512vl"), always_inline))
static inline void mv_avx512_body(float *y, const float *x, const int R, int K, const void *W, const int bf16,
                                  const float *b, int N, int o0, int o1) {
    const int K16 = K & ~15, esz = bf16 ? 2 : 4;
    const __mmask16 all = 0xffff, tail = (__mmask16)((1u << (K - K16)) - 1);
    for (int o = o0; o < o1; o += 2) {
        const int two = o + 1 < o1;
        const char *w0 = (const char *)W + (size_t)o * K * esz, *w1 = two ? w0 + (size_t)K * esz : w0;
        __m512 a0[8], a1[8];
        for (int r = 0; r < R; r++) { a0[r] = _mm512_setzero_ps(); a1[r] = _mm512_setzero_ps(); }
        int k = 0;
        for (; k < K16; k += 16) {
            if (bf16 && R <= 2) {               /* bandwidth-bound: run ahead (not when compute-bound) */
                _mm_prefetch(w0 + (size_t)k * 2 + PF_AHEAD, _MM_HINT_T0);
                _mm_prefetch(w1 + (size_t)k * 2 + PF_AHEAD, _MM_HINT_T0);
            }
            __m512 v0 = load_w16(w0, k, bf16, all), v1 = load_w16(w1, k, bf16, all);
            for (int r = 0; r < R; r++) {
                __m512 xv = _mm512_loadu_ps(x + (size_t)r * K + k);
                a0[r] = _mm512_fmadd_ps(v0, xv, a0[r]);
                a1[r] = _mm512_fmadd_ps(v1, xv, a1[r]);
            }
        }
        if (tail) {
            __m512 v0 = load_w16(w0, k, bf16, tail), v1 = load_w16(w1, k, bf16, tail);
            for (int r = 0; r < R; r++) {
                __m512 xv = _mm512_maskz_loadu_ps(tail, x + (size_t)r * K + k);
                a0[r] = _mm512_fmadd_ps(v0, xv, a0[r]);
                a1[r] = _mm512_fmadd_ps(v1, xv, a1[r]);
            }
        }
        for (int r = 0; r < R; r++) {
            y[(size_t)r * N + o] = _mm512_reduce_add_ps(a0[r]) + (b ? b[o] : 0.0f);
            if (two) y[(size_t)r * N + o + 1] = _mm512_reduce_add_ps(a1[r]) + (b ? b[o + 1] : 0.0f);
        }
    }
}

/* One activation row (a decode step): four weight rows per step, four
 * streams in flight per thread. o1 - o0 must be a multiple of 4. */
__attribute__((target("avx512f,avx512bw,avx512vl")))
static void mv_bf16_avx512_r1x4(float *y, const float *x, int K, const uint16_t *W, const float *b, int o0, int o1) {
    const int K16 = K & ~15;
    const __mmask16 tail = (__mmask16)((1u << (K - K16)) - 1);
    for (int o = o0; o < o1; o += 4) {
        const uint16_t *w[4] = { W + (size_t)o * K, W + (size_t)(o + 1) * K, W + (size_t)(o + 2) * K,
                                 W + (size_t)(o + 3) * K };
        __m512 a[4] = { _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps() };
        int k = 0;
        for (; k < K16; k += 16) {
            __m512 xv = _mm512_loadu_ps(x + k);
            for (int i = 0; i < 4; i++) {
                _mm_prefetch((const char *)(w[i] + k) + PF_AHEAD, _MM_HINT_T0);
                a[i] = _mm512_fmadd_ps(bf16x16(_mm256_loadu_si256((const __m256i *)(w[i] + k))), xv, a[i]);
            }
        }
        if (tail) {
            __m512 xv = _mm512_maskz_loadu_ps(tail, x + k);
            for (int i = 0; i < 4; i++)
                a[i] = _mm512_fmadd_ps(bf16x16(_mm256_maskz_loadu_epi16(tail, w[i] + k)), xv, a[i]);
        }
        for (int i = 0; i < 4; i++) y[o + i] = _mm512_reduce_add_ps(a[i]) + (b ? b[o + i] : 0.0f);
    }
}

__attribute__((target("avx512f,avx512bw,avx512vl")))
static void mv_f32_avx512(float *y, const float *x, int R, int K, const float *W, const float *b,
                          int N, int o0, int o1) {
    switch (R) {                                    /* qf_cpu_matvec passes at most 4 rows */
    case 1: mv_avx512_body(y, x, 1, K, W, 0, b, N, o0, o1); break;
    case 2: mv_avx512_body(y, x, 2, K, W, 0, b, N, o0, o1); break;
    case 3: mv_avx512_body(y, x, 3, K, W, 0, b, N, o0, o1); break;
    default: mv_avx512_body(y, x, 4, K, W, 0, b, N, o0, o1); break;
    }
}

__attribute__((target("avx512f,avx512bw,avx512vl")))
static void mv_bf16_avx512(float *y, const float *x, int R, int K, const uint16_t *W, const float *b,
                           int N, int o0, int o1) {
    switch (R) {
    case 1: {                                       /* decode: four weight rows per step */
        int o4 = o0 + ((o1 - o0) & ~3);
        mv_bf16_avx512_r1x4(y, x, K, W, b, o0, o4);
        if (o4 < o1) mv_avx512_body(y, x, 1, K, W, 1, b, N, o4, o1);
        break;
    }
    case 2: mv_avx512_body(y, x, 2, K, W, 1, b, N, o0, o1); break;
    case 3: mv_avx512_body(y, x, 3, K, W, 1, b, N, o0, o1); break;
    case 4: mv_avx512_body(y, x, 4, K, W, 1, b, N, o0, o1); break;
    case 5: mv_avx512_body(y, x, 5, K, W, 1, b, N, o0, o1); break;
    case 6: mv_avx512_body(y, x, 6, K, W, 1, b, N, o0, o1); break;
    case 7: mv_avx512_body(y, x, 7, K, W, 1, b, N, o0, o1); break;
    default: mv_avx512_body(y, x, 8, K, W, 1, b, N, o0, o1); break;
    }
}

static void mv_bf16_c(float *y, const float *x, int R, int K, const uint16_t *W, const float *b,
                      int N, int o0, int o1) {
    for (int o = o0; o < o1; o++)
        for (int r = 0; r < R; r++) {
            const uint16_t *w = W + (size_t)o * K;
            const float *xr = x + (size_t)r * K;
            float acc = 0;
            for (int k = 0; k < K; k++) acc += bf16_1(w[k]) * xr[k];
            y[(size_t)r * N + o] = acc + (b ? b[o] : 0.0f);
        }
}

/* ---- int8 ---------------------------------------------------------------------- */

/* max |v[k]| (NaN ignored). */
static inline float absmax(const float *v, int K) {
    float a = 0;
    for (int k = 0; k < K; k++) {
        float f = fabsf(v[k]);
        a = f > a ? f : a;
    }
    return a;
}

/* round(v * inv) clamped to [-127, 127], ties to even (NaN -> -127). The
 * magic constant 1.5 * 2^23 rounds in the FPU's default mode without a
 * libm call, so the loops vectorise. */
static inline int quant1(float v, float inv) {
    v *= inv;
    v = v > 127.0f ? 127.0f : v;
    v = v >= -127.0f ? v : -127.0f;
    return (int)((v + 12582912.0f) - 12582912.0f);
}

/* One row: scale = max|w| / 127, q = round(w / scale), sum = sum of q. */
static void quant_row(int8_t *q, float *scale, int32_t *sum, const float *w, int K) {
    float amax = absmax(w, K);
    float inv = amax > 0 && isfinite(amax) ? 127.0f / amax : 0.0f;
    int32_t s = 0;
    for (int k = 0; k < K; k++) {
        q[k] = (int8_t)quant1(w[k], inv);
        s += q[k];
    }
    *scale = inv > 0 ? amax / 127.0f : 0.0f;
    *sum = s;
}

typedef struct { int8_t *q; float *scale; int32_t *sum; const float *W; int N, K; } quantize_job;

static void quantize_task(void *ctx, int t) {
    const quantize_job *j = ctx;
    int o1 = (t + 1) * TASK_ROWS < j->N ? (t + 1) * TASK_ROWS : j->N;
    for (int o = t * TASK_ROWS; o < o1; o++)
        quant_row(j->q + (size_t)o * j->K, &j->scale[o], &j->sum[o], j->W + (size_t)o * j->K, j->K);
}

void qf_cpu_quantize_i8(int8_t *q, float *scale, int32_t *sum, const float *W, int N, int K) {
    quantize_job j = { q, scale, sum, W, N, K };
    qf_cpu_parallel(n_threads_for((size_t)N * K), quantize_task, &j, (N + TASK_ROWS - 1) / TASK_ROWS);
}

void qf_cpu_i8_to_f32(float *dst, const int8_t *q, const float *scale, int n_rows, int K) {
    for (int o = 0; o < n_rows; o++)
        for (int k = 0; k < K; k++) dst[(size_t)o * K + k] = (float)q[(size_t)o * K + k] * scale[o];
}

/* Activation rows -> u8 (q + 128) with one scale per row. */
static void quant_act(uint8_t *xu, float *sx, const float *x, int R, int K) {
    for (int r = 0; r < R; r++) {
        const float *xr = x + (size_t)r * K;
        uint8_t *u = xu + (size_t)r * K;
        float amax = absmax(xr, K);
        float inv = amax > 0 && isfinite(amax) ? 127.0f / amax : 0.0f;
        for (int k = 0; k < K; k++) u[k] = (uint8_t)(quant1(xr[k], inv) + 128);
        sx[r] = inv > 0 ? amax / 127.0f : 0.0f;
    }
}

/* y = (sum_k xq wq) * sx * sw + b, where sum_k xu wq = sum_k xq wq + 128 wsum. */
static inline float i8_finish(int32_t acc, int32_t wsum, float sx, float sw, float b) {
    return fmaf((float)(acc - 128 * wsum), sx * sw, b);
}

__attribute__((target("avx512f,avx512bw,avx512vnni"), always_inline))
static inline void mv_i8_vnni_body(float *y, const uint8_t *xu, const float *sx, const int R, int K,
                                   const int8_t *W, const float *ws, const int32_t *wsum,
                                   const float *b, int N, int o0, int o1) {
    const int K64 = K & ~63;
    const __mmask64 tail = K > K64 ? ~0ull >> (64 - (K - K64)) : 0;
    for (int o = o0; o < o1; o += 2) {
        const int two = o + 1 < o1;
        const int8_t *w0 = W + (size_t)o * K, *w1 = two ? w0 + K : w0;
        __m512i a0[8], a1[8];
        for (int r = 0; r < R; r++) { a0[r] = _mm512_setzero_si512(); a1[r] = _mm512_setzero_si512(); }
        int k = 0;
        for (; k < K64; k += 64) {
            __m512i v0 = _mm512_loadu_si512(w0 + k), v1 = _mm512_loadu_si512(w1 + k);
            for (int r = 0; r < R; r++) {
                __m512i xv = _mm512_loadu_si512(xu + (size_t)r * K + k);
                a0[r] = _mm512_dpbusd_epi32(a0[r], xv, v0);
                a1[r] = _mm512_dpbusd_epi32(a1[r], xv, v1);
            }
        }
        if (tail) {
            __m512i v0 = _mm512_maskz_loadu_epi8(tail, w0 + k), v1 = _mm512_maskz_loadu_epi8(tail, w1 + k);
            for (int r = 0; r < R; r++) {
                __m512i xv = _mm512_maskz_loadu_epi8(tail, xu + (size_t)r * K + k);
                a0[r] = _mm512_dpbusd_epi32(a0[r], xv, v0);
                a1[r] = _mm512_dpbusd_epi32(a1[r], xv, v1);
            }
        }
        for (int r = 0; r < R; r++) {
            y[(size_t)r * N + o] = i8_finish(_mm512_reduce_add_epi32(a0[r]), wsum[o], sx[r], ws[o], b ? b[o] : 0.0f);
            if (two)
                y[(size_t)r * N + o + 1] = i8_finish(_mm512_reduce_add_epi32(a1[r]), wsum[o + 1], sx[r], ws[o + 1],
                                                     b ? b[o + 1] : 0.0f);
        }
    }
}

__attribute__((target("avx512f,avx512bw,avx512vnni")))
static void mv_i8_vnni(float *y, const uint8_t *xu, const float *sx, int R, int K, const int8_t *W,
                       const float *ws, const int32_t *wsum, const float *b, int N, int o0, int o1) {
    switch (R) {
    case 1: mv_i8_vnni_body(y, xu, sx, 1, K, W, ws, wsum, b, N, o0, o1); break;
    case 2: mv_i8_vnni_body(y, xu, sx, 2, K, W, ws, wsum, b, N, o0, o1); break;
    case 3: mv_i8_vnni_body(y, xu, sx, 3, K, W, ws, wsum, b, N, o0, o1); break;
    case 4: mv_i8_vnni_body(y, xu, sx, 4, K, W, ws, wsum, b, N, o0, o1); break;
    case 5: mv_i8_vnni_body(y, xu, sx, 5, K, W, ws, wsum, b, N, o0, o1); break;
    case 6: mv_i8_vnni_body(y, xu, sx, 6, K, W, ws, wsum, b, N, o0, o1); break;
    case 7: mv_i8_vnni_body(y, xu, sx, 7, K, W, ws, wsum, b, N, o0, o1); break;
    default: mv_i8_vnni_body(y, xu, sx, 8, K, W, ws, wsum, b, N, o0, o1); break;
    }
}

static void mv_i8_c(float *y, const uint8_t *xu, const float *sx, int R, int K, const int8_t *W,
                    const float *ws, const int32_t *wsum, const float *b, int N, int o0, int o1) {
    for (int o = o0; o < o1; o++)
        for (int r = 0; r < R; r++) {
            const int8_t *w = W + (size_t)o * K;
            const uint8_t *xr = xu + (size_t)r * K;
            int32_t acc = 0;
            for (int k = 0; k < K; k++) acc += (int32_t)xr[k] * w[k];
            y[(size_t)r * N + o] = i8_finish(acc, wsum[o], sx[r], ws[o], b ? b[o] : 0.0f);
        }
}

/* ---- dispatch ------------------------------------------------------------------- */

typedef enum { MV_F32, MV_BF16, MV_I8 } mv_type;

typedef struct {
    mv_type type;
    int kind;                                 /* 2 AVX-512 (+VNNI for int8), 1 AVX2, 0 C */
    float *y; const float *x; const void *W; const float *b;
    const uint8_t *xu; const float *sx, *ws; const int32_t *wsum;
    int R, K, N;
} mv_job;

static void mv_task(void *ctx, int t) {
    const mv_job *j = ctx;
    int o0 = t * TASK_ROWS, o1 = o0 + TASK_ROWS < j->N ? o0 + TASK_ROWS : j->N;
    switch (j->type) {
    case MV_F32:
        if (j->kind == 2) mv_f32_avx512(j->y, j->x, j->R, j->K, j->W, j->b, j->N, o0, o1);
        else if (j->kind == 1) mv_f32_avx2(j->y, j->x, j->R, j->K, j->W, j->b, j->N, o0, o1);
        else mv_f32_c(j->y, j->x, j->R, j->K, j->W, j->b, j->N, o0, o1);
        break;
    case MV_BF16:
        if (j->kind == 2) mv_bf16_avx512(j->y, j->x, j->R, j->K, j->W, j->b, j->N, o0, o1);
        else mv_bf16_c(j->y, j->x, j->R, j->K, j->W, j->b, j->N, o0, o1);
        break;
    case MV_I8:
        if (j->kind == 2) mv_i8_vnni(j->y, j->xu, j->sx, j->R, j->K, j->W, j->ws, j->wsum, j->b, j->N, o0, o1);
        else mv_i8_c(j->y, j->xu, j->sx, j->R, j->K, j->W, j->ws, j->wsum, j->b, j->N, o0, o1);
        break;
    }
}

static int cpu_kind(mv_type t) {
    int avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512vl");
    switch (t) {
    case MV_F32: return avx512 ? 2 : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 1 : 0;
    case MV_BF16: return avx512 ? 2 : 0;
    case MV_I8: return avx512 && __builtin_cpu_supports("avx512vnni") ? 2 : 0;
    }
    return 0;
}

static void mv_run(mv_job *j, size_t weight_bytes) {
    if (j->R <= 0 || j->N <= 0) return;
    if (!j->kind) j->kind = cpu_kind(j->type);
    if (portable) j->kind = 0;
    qf_cpu_parallel(n_threads_for(weight_bytes), mv_task, j, (j->N + TASK_ROWS - 1) / TASK_ROWS);
}

void qf_cpu_matvec(float *y, const float *x, int R, int K, const float *W, const float *b, int N) {
    for (int r0 = 0; r0 < R; r0 += 4) {
        mv_job j = { .type = MV_F32, .y = y + (size_t)r0 * N, .x = x + (size_t)r0 * K, .W = W, .b = b,
                     .R = R - r0 < 4 ? R - r0 : 4, .K = K, .N = N };
        mv_run(&j, (size_t)N * K * 4);
    }
}

void qf_cpu_matvec_bf16(float *y, const float *x, int R, int K, const uint16_t *W, const float *b, int N) {
    for (int r0 = 0; r0 < R; r0 += 8) {                /* 8 rows per pass over the weights */
        mv_job j = { .type = MV_BF16, .y = y + (size_t)r0 * N, .x = x + (size_t)r0 * K, .W = W, .b = b,
                     .R = R - r0 < 8 ? R - r0 : 8, .K = K, .N = N };
        mv_run(&j, (size_t)N * K * 2);
    }
}

void qf_cpu_matvec_i8(float *y, const float *x, int R, int K, const int8_t *W, const float *w_scale,
                      const int32_t *w_sum, const float *b, int N, uint8_t *scratch) {
    float sx[QF_CPU_I8_ROWS];
    for (int r0 = 0; r0 < R; r0 += QF_CPU_I8_ROWS) {
        int n = R - r0 < QF_CPU_I8_ROWS ? R - r0 : QF_CPU_I8_ROWS;
        quant_act(scratch, sx, x + (size_t)r0 * K, n, K);
        mv_job j = { .type = MV_I8, .y = y + (size_t)r0 * N, .W = W, .b = b, .xu = scratch, .sx = sx,
                     .ws = w_scale, .wsum = w_sum, .R = n, .K = K, .N = N };
        mv_run(&j, (size_t)N * K);
    }
}
