/* kernels_cpu.c - run-time dispatched CPU kernels (see kernels_cpu.h).
 * The AVX-512 / AVX2 bodies use intrinsics under __attribute__((target))
 * and glibc's libmvec vector erff (linked through libm's AS_NEEDED group);
 * the choice is made once per call from __builtin_cpu_supports. */
#include "embed/kernels_cpu.h"

#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ---- OpenBLAS core fix-up --------------------------------------------------- */

/* OpenBLAS exports these; weak so that a BLAS without them (or a static
 * non-DYNAMIC_ARCH build) links and simply gets no fix-up. */
extern char *openblas_get_corename(void) __attribute__((weak));
extern void gotoblas_dynamic_init(void) __attribute__((weak));
extern void gotoblas_dynamic_quit(void) __attribute__((weak));

static char initial_core[32] = "?";

const char *qf_cpu_blas_core(void) { return openblas_get_corename ? openblas_get_corename() : "?"; }
const char *qf_cpu_blas_core_initial(void) { return initial_core; }

/* Cores of OpenBLAS's table that use neither AVX2 nor AVX-512. */
static int generic_core(const char *name) {
    static const char *const old[] = { "Prescott", "Core2", "Penryn", "Dunnington", "Nehalem",
                                       "Atom", "Katmai", "Coppermine", "Northwood", "Banias",
                                       "Sandybridge", "Barcelona", "Bulldozer", "Unknown" };
    for (size_t i = 0; i < sizeof old / sizeof old[0]; i++)
        if (!strcmp(name, old[i])) return 1;
    return 0;
}

/* Runs after libopenblas's own constructor (dependencies are initialised
 * first) and before main: no BLAS call has been made and no thread of ours
 * exists, so the kernel table can be swapped. */
__attribute__((constructor)) static void blas_fixup(void) {
    if (!openblas_get_corename || !gotoblas_dynamic_init || !gotoblas_dynamic_quit) return;
    const char *core = openblas_get_corename();
    if (!core) return;
    strncpy(initial_core, core, sizeof initial_core - 1);
    if (getenv("OPENBLAS_CORETYPE") || !generic_core(core)) return;
    __builtin_cpu_init();
    const char *want = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                       __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") ? "SkylakeX"
                     : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? "Haswell" : NULL;
    if (!want) return;
    setenv("OPENBLAS_CORETYPE", want, 1);         /* read by gotoblas_dynamic_init only */
    gotoblas_dynamic_quit();
    gotoblas_dynamic_init();
    unsetenv("OPENBLAS_CORETYPE");
}

/* ---- GELU ------------------------------------------------------------------- */

/* libmvec (glibc >= 2.35) vector variants of erff, x86_64 vector ABI names. */
__attribute__((target("avx512f"))) extern __m512 _ZGVeN16v_erff(__m512);
__attribute__((target("avx2"))) extern __m256 _ZGVdN8v_erff(__m256);

__attribute__((target("avx512f")))
static void gelu_avx512(float *x, size_t n) {
    const __m512 c = _mm512_set1_ps((float)M_SQRT1_2), half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        __m512 e = _ZGVeN16v_erff(_mm512_mul_ps(v, c));
        _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_mul_ps(half, v), _mm512_add_ps(one, e)));
    }
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_maskz_loadu_ps(k, x + i);
        __m512 e = _ZGVeN16v_erff(_mm512_mul_ps(v, c));
        _mm512_mask_storeu_ps(x + i, k, _mm512_mul_ps(_mm512_mul_ps(half, v), _mm512_add_ps(one, e)));
    }
}

__attribute__((target("avx2")))
static void gelu_avx2(float *x, size_t n) {
    const __m256 c = _mm256_set1_ps((float)M_SQRT1_2), half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 e = _ZGVdN8v_erff(_mm256_mul_ps(v, c));
        _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_mul_ps(half, v), _mm256_add_ps(one, e)));
    }
    for (; i < n; i++) x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * (float)M_SQRT1_2));
}

void qf_cpu_gelu(float *x, size_t n) {
    if (__builtin_cpu_supports("avx512f")) { gelu_avx512(x, n); return; }
    if (__builtin_cpu_supports("avx2")) { gelu_avx2(x, n); return; }
    for (size_t i = 0; i < n; i++) x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * (float)M_SQRT1_2));
}

/* ---- matrix-vector ------------------------------------------------------------ */

/* Rows o0..o1 of y[r, o] = x[r] . W[o] for R <= 4 rows. Two accumulators per
 * input row keep two FMA chains in flight per weight load. */
__attribute__((target("avx512f")))
static void matvec_avx512(float *y, const float *x, int R, int K, const float *W, const float *b,
                          int N, int o0, int o1) {
    const int K32 = K & ~31, K16 = K & ~15;
    const __mmask16 tail = (__mmask16)((1u << (K - K16)) - 1);
    for (int o = o0; o < o1; o++) {
        const float *w = W + (size_t)o * K;
        __m512 a0[4], a1[4];
        for (int r = 0; r < 4; r++) { a0[r] = _mm512_setzero_ps(); a1[r] = _mm512_setzero_ps(); }
        int k = 0;
        for (; k < K32; k += 32) {
            __m512 w0 = _mm512_loadu_ps(w + k), w1 = _mm512_loadu_ps(w + k + 16);
            for (int r = 0; r < R; r++) {
                a0[r] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + (size_t)r * K + k), a0[r]);
                a1[r] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + (size_t)r * K + k + 16), a1[r]);
            }
        }
        for (; k < K16; k += 16) {
            __m512 w0 = _mm512_loadu_ps(w + k);
            for (int r = 0; r < R; r++)
                a0[r] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + (size_t)r * K + k), a0[r]);
        }
        if (tail) {
            __m512 w0 = _mm512_maskz_loadu_ps(tail, w + k);
            for (int r = 0; r < R; r++)
                a0[r] = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(tail, x + (size_t)r * K + k), a0[r]);
        }
        for (int r = 0; r < R; r++)
            y[(size_t)r * N + o] = _mm512_reduce_add_ps(_mm512_add_ps(a0[r], a1[r])) + (b ? b[o] : 0.0f);
    }
}

__attribute__((target("avx2,fma")))
static void matvec_avx2(float *y, const float *x, int R, int K, const float *W, const float *b,
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

static void matvec_c(float *y, const float *x, int R, int K, const float *W, const float *b,
                     int N, int o0, int o1) {
    for (int o = o0; o < o1; o++)
        for (int r = 0; r < R; r++) {
            const float *w = W + (size_t)o * K, *xr = x + (size_t)r * K;
            float acc = 0;
            for (int k = 0; k < K; k++) acc += w[k] * xr[k];
            y[(size_t)r * N + o] = acc + (b ? b[o] : 0.0f);
        }
}

typedef struct {
    float *y; const float *x, *W, *b;
    int R, K, N, kind, chunk;
} matvec_job;

static void matvec_task(void *ctx, int c) {
    const matvec_job *j = ctx;
    int o0 = c * j->chunk, o1 = o0 + j->chunk < j->N ? o0 + j->chunk : j->N;
    if (j->kind == 2) matvec_avx512(j->y, j->x, j->R, j->K, j->W, j->b, j->N, o0, o1);
    else if (j->kind == 1) matvec_avx2(j->y, j->x, j->R, j->K, j->W, j->b, j->N, o0, o1);
    else matvec_c(j->y, j->x, j->R, j->K, j->W, j->b, j->N, o0, o1);
}

void qf_cpu_matvec(float *y, const float *x, int R, int K, const float *W, const float *b, int N) {
    if (R <= 0 || N <= 0) return;
    if (R > 4) {                                 /* not this kernel's job: split */
        for (int r0 = 0; r0 < R; r0 += 4)
            qf_cpu_matvec(y + (size_t)r0 * N, x + (size_t)r0 * K, R - r0 < 4 ? R - r0 : 4, K, W, b, N);
        return;
    }
    matvec_job j = { y, x, W, b, R, K, N, 0, 64 };   /* 64 output rows x K floats of W per task */
    j.kind = __builtin_cpu_supports("avx512f") ? 2 : __builtin_cpu_supports("avx2") &&
             __builtin_cpu_supports("fma") ? 1 : 0;
    int n_chunk = (N + j.chunk - 1) / j.chunk;
    qf_cpu_parallel((size_t)N * K >= ((size_t)1 << 18) ? qf_cpu_threads() : 1, matvec_task, &j, n_chunk);
}

/* ---- BF16 weights --------------------------------------------------------------- */

void qf_cpu_f32_to_bf16(uint16_t *restrict dst, const float *restrict src, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t b;
        memcpy(&b, &src[i], 4);
        if ((b & 0x7f800000u) == 0x7f800000u && (b & 0x7fffffu)) dst[i] = (uint16_t)((b >> 16) | 0x40u); /* NaN stays NaN */
        else dst[i] = (uint16_t)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);   /* round to nearest even */
    }
}

void qf_cpu_bf16_to_f32(float *restrict dst, const uint16_t *restrict src, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t b = (uint32_t)src[i] << 16;
        memcpy(&dst[i], &b, 4);
    }
}

/* 16 bf16 values -> 16 floats (exact: bf16 is the top half of a float). */
__attribute__((target("avx512f")))
static inline __m512 bf16x16(const uint16_t *p) {
    __m256i h = _mm256_loadu_si256((const __m256i *)p);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

static inline float bf16_1(uint16_t v) {
    uint32_t b = (uint32_t)v << 16;
    float f;
    memcpy(&f, &b, 4);
    return f;
}

__attribute__((target("avx512f")))
static void matvec_bf16_avx512(float *y, const float *x, int R, int K, const uint16_t *W, const float *b,
                               int N, int o0, int o1) {
    const int K32 = K & ~31, K16 = K & ~15;
    for (int o = o0; o < o1; o++) {
        const uint16_t *w = W + (size_t)o * K;
        __m512 a0[4], a1[4];
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) { a0[r] = _mm512_setzero_ps(); a1[r] = _mm512_setzero_ps(); }
        int k = 0;
        for (; k < K32; k += 32) {
            __m512 w0 = bf16x16(w + k), w1 = bf16x16(w + k + 16);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                a0[r] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + (size_t)r * K + k), a0[r]);
                a1[r] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + (size_t)r * K + k + 16), a1[r]);
            }
        }
        for (; k < K16; k += 16) {
            __m512 w0 = bf16x16(w + k);
            for (int r = 0; r < R; r++)
                a0[r] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + (size_t)r * K + k), a0[r]);
        }
        for (int r = 0; r < R; r++) {
            float acc = _mm512_reduce_add_ps(_mm512_add_ps(a0[r], a1[r]));
            for (int kk = K16; kk < K; kk++) acc += bf16_1(w[kk]) * x[(size_t)r * K + kk];
            y[(size_t)r * N + o] = acc + (b ? b[o] : 0.0f);
        }
    }
}

static void matvec_bf16_c(float *y, const float *x, int R, int K, const uint16_t *W, const float *b,
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

typedef struct {
    float *y; const float *x; const uint16_t *W; const float *b;
    int R, K, N, avx512, chunk;
} matvec_bf16_job;

static void matvec_bf16_task(void *ctx, int c) {
    const matvec_bf16_job *j = ctx;
    int o0 = c * j->chunk, o1 = o0 + j->chunk < j->N ? o0 + j->chunk : j->N;
    if (j->avx512) matvec_bf16_avx512(j->y, j->x, j->R, j->K, j->W, j->b, j->N, o0, o1);
    else matvec_bf16_c(j->y, j->x, j->R, j->K, j->W, j->b, j->N, o0, o1);
}

void qf_cpu_matvec_bf16(float *y, const float *x, int R, int K, const uint16_t *W, const float *b, int N) {
    if (R <= 0 || N <= 0) return;
    if (R > 4) {
        for (int r0 = 0; r0 < R; r0 += 4)
            qf_cpu_matvec_bf16(y + (size_t)r0 * N, x + (size_t)r0 * K, R - r0 < 4 ? R - r0 : 4, K, W, b, N);
        return;
    }
    matvec_bf16_job j = { y, x, W, b, R, K, N, __builtin_cpu_supports("avx512f"), 64 };
    int n_chunk = (N + j.chunk - 1) / j.chunk;
    qf_cpu_parallel((size_t)N * K >= ((size_t)1 << 18) ? qf_cpu_threads() : 1, matvec_bf16_task, &j, n_chunk);
}

/* ---- threads -------------------------------------------------------------------- */

extern int openblas_get_num_threads(void) __attribute__((weak));

int qf_cpu_threads(void) {
    int n = openblas_get_num_threads ? openblas_get_num_threads() : 1;
    return n < 1 ? 1 : n;
}

typedef struct {
    void (*fn)(void *, int);
    void *ctx;
    int   n, next;                              /* next: claimed with an atomic add */
} par_job;

static void *par_worker(void *p) {
    par_job *j = p;
    int t;
    while ((t = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED)) < j->n) j->fn(j->ctx, t);
    return NULL;
}

void qf_cpu_parallel(int n_threads, void (*fn)(void *ctx, int task), void *ctx, int n_tasks) {
    if (n_threads > n_tasks) n_threads = n_tasks;
    if (n_threads > 64) n_threads = 64;
    par_job j = { fn, ctx, n_tasks, 0 };
    pthread_t th[64];
    int started = 0;
    for (int i = 1; i < n_threads; i++) {
        if (pthread_create(&th[started], NULL, par_worker, &j) != 0) break;   /* the caller does the rest */
        started++;
    }
    par_worker(&j);
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
}

/* ---- attention ---------------------------------------------------------------- */

/* libmvec vector expf. */
__attribute__((target("avx512f"))) extern __m512 _ZGVeN16v_expf(__m512);

typedef struct {
    float *out; const float *Q, *K, *V, *mask;
    int ldo, ldq, ldk, ldv, Lq, Lk, d, causal, pos0, row_blk, n_rblk;
    float scale;
    float **scratch;                            /* [n_threads]: (d + 4) * Lkp floats each */
    int Lkp;
} attn_job;

#define RB 4                                     /* query rows per register block */

/* In place over s[0..n): s = softmax(s * scale + mask), n >= 1; mask [n] or NULL. */
__attribute__((target("avx512f")))
static void softmax_row_avx512(float *s, int n, float scale, const float *mask) {
    __m512 mx = _mm512_set1_ps(-INFINITY), sc = _mm512_set1_ps(scale);
    int j = 0;
    for (; j + 16 <= n; j += 16) {
        __m512 v = _mm512_mul_ps(_mm512_loadu_ps(s + j), sc);
        if (mask) v = _mm512_add_ps(v, _mm512_loadu_ps(mask + j));
        _mm512_storeu_ps(s + j, v);
        mx = _mm512_max_ps(mx, v);
    }
    __mmask16 t = (__mmask16)((1u << (n - j)) - 1);
    if (t) {
        __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(t, s + j), sc);
        if (mask) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(t, mask + j));
        _mm512_mask_storeu_ps(s + j, t, v);
        mx = _mm512_mask_max_ps(mx, t, mx, v);
    }
    __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(mx)), sum = _mm512_setzero_ps();
    for (j = 0; j + 16 <= n; j += 16) {
        __m512 e = _ZGVeN16v_expf(_mm512_sub_ps(_mm512_loadu_ps(s + j), m));
        _mm512_storeu_ps(s + j, e);
        sum = _mm512_add_ps(sum, e);
    }
    if (t) {
        __m512 e = _ZGVeN16v_expf(_mm512_sub_ps(_mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), t, s + j), m));
        e = _mm512_maskz_mov_ps(t, e);
        _mm512_mask_storeu_ps(s + j, t, e);
        sum = _mm512_add_ps(sum, e);
    }
    __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
    for (j = 0; j + 16 <= n; j += 16) _mm512_storeu_ps(s + j, _mm512_mul_ps(_mm512_loadu_ps(s + j), inv));
    if (t) _mm512_mask_storeu_ps(s + j, t, _mm512_mul_ps(_mm512_maskz_loadu_ps(t, s + j), inv));
}

/* One task: head h, query rows [i0, i1). kt: [d][Lkp] transposed keys; sc: [RB][Lkp]. */
__attribute__((target("avx512f")))
static void attn_task_avx512(const attn_job *a, int h, int i0, int i1, float *kt, float *sc) {
    const int d = a->d, Lk = a->Lk, Lkp = a->Lkp;
    const float *Kh = a->K + (size_t)h * d, *Vh = a->V + (size_t)h * d;
    /* kt[c][j] = K[j, h*d + c]; padding columns zero */
    for (int j = 0; j < Lk; j++) {                /* rows of K read contiguously */
        const float *kr = Kh + (size_t)j * a->ldk;
        for (int c = 0; c < d; c++) kt[(size_t)c * Lkp + j] = kr[c];
    }
    for (int c = 0; c < d; c++)
        for (int j = Lk; j < Lkp; j++) kt[(size_t)c * Lkp + j] = 0.0f;
    for (int r0 = i0; r0 < i1; r0 += RB) {
        const int R = i1 - r0 < RB ? i1 - r0 : RB;
        const float *q[RB];
        #pragma GCC unroll 8
        for (int r = 0; r < RB; r++) q[r] = a->Q + (size_t)(r0 + (r < R ? r : 0)) * a->ldq + (size_t)h * d;
        /* sc[r][j] = q_r . k_j, two 16-key vectors at a time */
        int j = 0;
        for (; j + 32 <= Lkp; j += 32) {
            __m512 acc[RB][2];
            #pragma GCC unroll 8
            for (int r = 0; r < RB; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
            for (int c = 0; c < d; c++) {
                __m512 k0 = _mm512_load_ps(kt + (size_t)c * Lkp + j), k1 = _mm512_load_ps(kt + (size_t)c * Lkp + j + 16);
                #pragma GCC unroll 8
                for (int r = 0; r < RB; r++) {
                    __m512 qv = _mm512_set1_ps(q[r][c]);
                    acc[r][0] = _mm512_fmadd_ps(qv, k0, acc[r][0]);
                    acc[r][1] = _mm512_fmadd_ps(qv, k1, acc[r][1]);
                }
            }
            #pragma GCC unroll 8
            for (int r = 0; r < RB; r++) {
                _mm512_store_ps(sc + (size_t)r * Lkp + j, acc[r][0]);
                _mm512_store_ps(sc + (size_t)r * Lkp + j + 16, acc[r][1]);
            }
        }
        for (; j < Lkp; j += 16) {
            __m512 acc[RB];
            #pragma GCC unroll 8
            for (int r = 0; r < RB; r++) acc[r] = _mm512_setzero_ps();
            for (int c = 0; c < d; c++) {
                __m512 k0 = _mm512_load_ps(kt + (size_t)c * Lkp + j);
                #pragma GCC unroll 8
                for (int r = 0; r < RB; r++) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(q[r][c]), k0, acc[r]);
            }
            #pragma GCC unroll 8
            for (int r = 0; r < RB; r++) _mm512_store_ps(sc + (size_t)r * Lkp + j, acc[r]);
        }
        /* scale, mask, causal limit, softmax */
        #pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            float *s = sc + (size_t)r * Lkp;
            int n = a->causal ? a->pos0 + r0 + r + 1 : Lk;
            if (n > Lk) n = Lk;
            softmax_row_avx512(s, n, a->scale, a->mask);
            for (int jj = n; jj < Lkp; jj++) s[jj] = 0.0f;
        }
        for (int r = R; r < RB; r++) memset(sc + (size_t)r * Lkp, 0, (size_t)Lkp * sizeof *sc);
        /* out[r, h*d ..] = sum_j p[r][j] v_j, six 16-wide column vectors at a time */
        for (int c0 = 0; c0 < d; c0 += 96) {
            __mmask16 mk[6];
            #pragma GCC unroll 8
            for (int v = 0; v < 6; v++) {
                int lo = c0 + 16 * v, left = d - lo;
                mk[v] = left >= 16 ? (__mmask16)0xffff : left > 0 ? (__mmask16)((1u << left) - 1) : 0;
            }
            __m512 acc[RB][6];
            #pragma GCC unroll 8
            for (int r = 0; r < RB; r++)
                #pragma GCC unroll 8
                for (int v = 0; v < 6; v++) acc[r][v] = _mm512_setzero_ps();
            for (int jj = 0; jj < Lk; jj++) {
                const float *vr = Vh + (size_t)jj * a->ldv + c0;
                __m512 vv[6];
                #pragma GCC unroll 8
                for (int v = 0; v < 6; v++) vv[v] = _mm512_maskz_loadu_ps(mk[v], vr + 16 * v);
                #pragma GCC unroll 8
                for (int r = 0; r < RB; r++) {
                    __m512 p = _mm512_set1_ps(sc[(size_t)r * Lkp + jj]);
                    #pragma GCC unroll 8
                    for (int v = 0; v < 6; v++) acc[r][v] = _mm512_fmadd_ps(p, vv[v], acc[r][v]);
                }
            }
            #pragma GCC unroll 8
            for (int r = 0; r < R; r++) {
                float *o = a->out + (size_t)(r0 + r) * a->ldo + (size_t)h * d + c0;
                #pragma GCC unroll 8
                for (int v = 0; v < 6; v++)
                    if (mk[v]) _mm512_mask_storeu_ps(o + 16 * v, mk[v], acc[r][v]);
            }
        }
    }
}

static __thread int attn_slot = -1;             /* scratch slot of this thread in the running job */

typedef struct { attn_job *a; int n_slot, next_slot; } attn_ctx;

static void attn_run(void *ctx, int t) {
    attn_ctx *c = ctx;
    attn_job *a = c->a;
    if (attn_slot < 0 || attn_slot >= c->n_slot) attn_slot = __atomic_fetch_add(&c->next_slot, 1, __ATOMIC_RELAXED);
    float *kt = a->scratch[attn_slot], *sc = kt + (size_t)a->d * a->Lkp;
    int h = t / a->n_rblk, b = t % a->n_rblk;
    int i0 = b * a->row_blk, i1 = i0 + a->row_blk < a->Lq ? i0 + a->row_blk : a->Lq;
    attn_task_avx512(a, h, i0, i1, kt, sc);
}

int qf_cpu_attention(float *out, int ldo, const float *Q, int ldq, const float *K, int ldk,
                     const float *V, int ldv, int Lq, int Lk, int n_head, int d_head,
                     float scale, const float *mask, int causal, int pos0) {
    if (!__builtin_cpu_supports("avx512f") || Lq <= 0 || Lk <= 0) return 0;
    attn_job a = { out, Q, K, V, mask, ldo, ldq, ldk, ldv, Lq, Lk, d_head, causal, pos0, 0, 0, scale,
                   NULL, (Lk + 15) & ~15 };
    int T = 4.0 * Lq * Lk * d_head * n_head >= 4e6 ? qf_cpu_threads() : 1;
    /* split query rows only when there are too few heads to share out */
    a.row_blk = n_head >= 2 * T || Lq <= 64 ? Lq : 64;
    a.n_rblk = (Lq + a.row_blk - 1) / a.row_blk;
    int n_task = n_head * a.n_rblk;
    if (T > n_task) T = n_task;
    if (T > 64) T = 64;
    float *slots[64];
    size_t floats = (size_t)(d_head + RB) * a.Lkp;
    for (int i = 0; i < T; i++) {
        void *p = NULL;
        if (posix_memalign(&p, 64, floats * sizeof(float)) != 0) {
            for (int k = 0; k < i; k++) free(slots[k]);
            return 0;                               /* caller takes the BLAS path */
        }
        slots[i] = p;
    }
    a.scratch = slots;
    attn_ctx c = { &a, T, 0 };
    int saved = attn_slot;
    attn_slot = -1;
    qf_cpu_parallel(T, attn_run, &c, n_task);
    attn_slot = saved;
    for (int i = 0; i < T; i++) free(slots[i]);
    return 1;
}
