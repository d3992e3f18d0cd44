/* kernels_cpu.h - CPU-specific kernels and tuning chosen at run time:
 * the OpenBLAS core fix-up, vectorised GELU / softmax exponentials, and the
 * matrix-vector product of the decoder (few rows, weights streamed once).
 *
 * Every kernel has a portable C fallback; the AVX-512 / AVX2 bodies are
 * compiled with __attribute__((target)) and picked by CPUID, so the build
 * needs no -march flag. Results match the scalar path to float rounding
 * (libmvec erff/expf are within 4 ulp), not bit for bit. */
#ifndef QF_KERNELS_CPU_H
#define QF_KERNELS_CPU_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* OpenBLAS 0.3.21 built with DYNAMIC_ARCH does not know recent Intel models
 * (e.g. family 6 model 207) and falls back to its SSE3 "Prescott" kernels,
 * 5x slower than its AVX-512 ones. At program start (a constructor, before
 * main and before any thread) the core is switched to SkylakeX (AVX-512F)
 * or Haswell (AVX2+FMA) when OpenBLAS chose a pre-AVX2 core on a CPU that
 * has them, unless OPENBLAS_CORETYPE is set (the user's choice is kept).
 * Returns OpenBLAS's core name now ("?" when the library has no name). */
const char *qf_cpu_blas_core(void);
/* Name of the core OpenBLAS chose on its own before the fix-up ("?" if unknown). */
const char *qf_cpu_blas_core_initial(void);

/* x = 0.5 x (1 + erf(x / sqrt 2)), in place, n floats. */
void qf_cpu_gelu(float *x, size_t n);

/* y[r, o] = x[r, :] . W[o, :] + b[o] for r < R, o < N (b may be NULL):
 * the nn.Linear product for a few rows (R <= 4), parallel over output rows
 * (OpenMP), each weight row read once for all R rows. W is [N, K] row-major
 * float32; y is [R, N], x is [R, K]. */
void qf_cpu_matvec(float *y, const float *x, int R, int K, const float *W, const float *b, int N);

/* ---- 16-bit float formats: the one home of these conversions (weights,
 * the store's F16 vision cache, the bench checkpoints). Inline: they sit in
 * the loops that upcast tensors. */

/* float32 -> BF16 bits, round to nearest even; NaN stays (quiet) NaN. */
static inline uint16_t qf_cpu_bf16_of(float f) {
    uint32_t b;
    memcpy(&b, &f, 4);
    if ((b & 0x7f800000u) == 0x7f800000u && (b & 0x7fffffu)) return (uint16_t)((b >> 16) | 0x40u);
    return (uint16_t)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}

/* float32 -> IEEE binary16 bits, round to nearest even (subnormals
 * included); beyond the range -> inf, NaN stays (quiet) NaN. */
static inline uint16_t qf_cpu_half_of(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return sign | 0x7e00;                 /* NaN               */
    if (ax >= 0x47800000u) return sign | 0x7c00;                /* >= 65536 or inf   */
    if (ax < 0x38800000u) {                                     /* below 2^-14: subnormal */
        float a;
        memcpy(&a, &ax, 4);
        return sign | (uint16_t)nearbyintf(a * 16777216.0f);    /* units of 2^-24, RNE */
    }
    uint32_t h = ((ax >> 23) - 112) << 10 | ((ax >> 13) & 0x3ff);  /* 112 = 127 - 15 */
    uint32_t rem = ax & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;        /* may carry into inf: right */
    return sign | (uint16_t)h;
}

/* IEEE binary16 bits -> float32, exact for every input: normals rebias the
 * exponent, subnormals are m * 2^-24 (exact in float), inf/NaN keep their
 * payload. */
static inline float qf_cpu_float_of_half(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
    float f;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else if (exp == 0) {
        f = (float)man * 0x1p-24f;
        memcpy(&bits, &f, 4);
        bits |= sign;
    } else {
        bits = sign | ((exp + (127 - 15)) << 23) | (man << 13);
    }
    memcpy(&f, &bits, 4);
    return f;
}

/* BF16 (the upper 16 bits of a float32) arrays: conversion with round to
 * nearest even (NaN kept), and back (exact). */
void qf_cpu_f32_to_bf16(uint16_t *dst, const float *src, size_t n);
void qf_cpu_bf16_to_f32(float *dst, const uint16_t *src, size_t n);
/* dst = src rounded to BF16 and back (the float32 value of its BF16). */
void qf_cpu_round_bf16(float *dst, const float *src, size_t n);
/* qf_cpu_matvec with BF16 weights W [N, K] (half the bytes to stream);
 * x, b, y and the accumulation stay float32. */
void qf_cpu_matvec_bf16(float *y, const float *x, int R, int K, const uint16_t *W, const float *b, int N);

/* Int8 weights: W [N, K] quantized per output row, symmetric:
 * scale[o] = max_k |W[o, k]| / 127, q[o, k] = round(W[o, k] / scale[o]) in
 * [-127, 127], sum[o] = sum_k q[o, k]. K <= 65536 (int32 dot products). */
void qf_cpu_quantize_i8(int8_t *q, float *scale, int32_t *sum, const float *W, int N, int K);
/* dst [n_rows, K] = q * scale[row]: the weights the int8 rows stand for. */
void qf_cpu_i8_to_f32(float *dst, const int8_t *q, const float *scale, int n_rows, int K);
/* y[r, o] = x[r] . W[o] + b[o] with int8 weights (qf_cpu_quantize_i8) and
 * the activations quantized per row the same way on each call (W8A8):
 * exact int32 dot products (AVX-512 VNNI where present), then
 * y = dot * scale_x[r] * scale[o] + b[o]. Any R; scratch holds
 * min(R, QF_CPU_I8_ROWS) * K bytes. */
enum { QF_CPU_I8_ROWS = 8 };
void qf_cpu_matvec_i8(float *y, const float *x, int R, int K, const int8_t *W, const float *w_scale,
                      const int32_t *w_sum, const float *b, int N, uint8_t *scratch);

/* Tests: 1 makes the matrix-vector products use their portable C bodies. */
void qf_cpu_set_portable(int on);

/* Threads the kernels use: OpenBLAS's thread count (openblas_get_num_threads),
 * so that a caller that set BLAS single-threaded (the indexer: one image per
 * thread) gets single-threaded kernels too. 1 without OpenBLAS. */
int qf_cpu_threads(void);

/* Runs fn(ctx, t) for t in [0, n_tasks) on up to n_threads threads: the
 * caller and workers of a process-wide pool, started on first use and
 * blocked on a condition variable between jobs (no spinning against
 * OpenBLAS's threads). Tasks are claimed in order by an atomic counter; fn
 * must not depend on which thread runs it. While one caller's job runs,
 * another caller starts (and joins) threads of its own; if no thread can
 * be started the caller does all the work. */
void qf_cpu_parallel(int n_threads, void (*fn)(void *ctx, int task), void *ctx, int n_tasks);

/* qf_attention (ops.h) with AVX-512: per head, keys transposed once, scores
 * in 4-row register blocks, softmax with vector expf, probabilities times V;
 * heads (and 64-row blocks of queries) in parallel on qf_cpu_threads()
 * threads when the work is large enough. Every output element is computed
 * by one thread in a fixed order: results do not depend on the thread count.
 * Scratch comes from the caller (an arena): one block per thread, so a
 * smaller `scratch` [n_scratch floats] means fewer threads. Returns 0
 * without touching `out` when the CPU lacks AVX-512F or scratch holds no
 * block (the caller then uses its BLAS path). */
int qf_cpu_attention(float *out, int ldo, const float *Q, int ldq, const float *K, int ldk,
                     const float *V, int ldv, int Lq, int Lk, int n_head, int d_head,
                     float scale, const float *mask, int causal, int pos0, float *scratch, size_t n_scratch);
/* Floats of scratch qf_cpu_attention uses at qf_cpu_threads() threads (0
 * without AVX-512F). */
size_t qf_cpu_attention_scratch(int Lq, int Lk, int n_head, int d_head);

#endif
