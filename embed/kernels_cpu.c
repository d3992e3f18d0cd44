/* kernels_cpu.c - run-time dispatched CPU kernels (see kernels_cpu.h).
 * The AVX-512 / AVX2 bodies use intrinsics under __attribute__((target))
 * and glibc's libmvec vector erff (linked through libm's AS_NEEDED group);
 * the choice is made once per call from __builtin_cpu_supports. */
#include "embed/kernels_cpu.h"

#include "embed/common.h"

#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
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

/* Threads started once and kept blocked on a condition variable between
 * jobs (never spinning, so they cost nothing while OpenBLAS runs). One job
 * at a time: a caller that finds the pool busy (another thread's job)
 * starts its own threads for the call instead. */
enum { POOL_MAX = 63 };

static struct {
    pthread_mutex_t busy;                       /* held by the caller whose job runs */
    pthread_mutex_t m;
    pthread_cond_t  work, done;
    unsigned        gen;                        /* bumped for every job */
    par_job        *job;
    int             want, active, n_workers;
    unsigned        born[POOL_MAX];             /* gen when worker i was started */
} pool = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
           PTHREAD_COND_INITIALIZER, 0, NULL, 0, 0, 0, { 0 } };

static void *pool_worker(void *arg) {
    int me = (int)(intptr_t)arg;
    pthread_mutex_lock(&pool.m);
    unsigned seen = pool.born[me];              /* the job it was started for is still to come */
    for (;;) {
        while (pool.gen == seen) pthread_cond_wait(&pool.work, &pool.m);
        seen = pool.gen;
        if (me >= pool.want) continue;
        par_job *j = pool.job;
        pthread_mutex_unlock(&pool.m);
        par_worker(j);
        pthread_mutex_lock(&pool.m);
        if (--pool.active == 0) pthread_cond_signal(&pool.done);
    }
    return NULL;
}

static void parallel_spawn(int n_threads, par_job *j) {
    pthread_t th[POOL_MAX];
    int started = 0;
    for (int i = 1; i < n_threads; i++) {
        if (pthread_create(&th[started], NULL, par_worker, j) != 0) break;   /* the caller does the rest */
        started++;
    }
    par_worker(j);
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
}

void qf_cpu_parallel(int n_threads, void (*fn)(void *ctx, int task), void *ctx, int n_tasks) {
    if (n_threads > n_tasks) n_threads = n_tasks;
    if (n_threads > POOL_MAX + 1) n_threads = POOL_MAX + 1;
    par_job j = { fn, ctx, n_tasks, 0 };
    if (n_threads <= 1) { par_worker(&j); return; }
    if (pthread_mutex_trylock(&pool.busy)) { parallel_spawn(n_threads, &j); return; }
    pthread_mutex_lock(&pool.m);
    while (pool.n_workers < n_threads - 1) {    /* grown on demand, kept for the process */
        pthread_t t;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        pool.born[pool.n_workers] = pool.gen;
        int rc = pthread_create(&t, &at, pool_worker, (void *)(intptr_t)pool.n_workers);
        pthread_attr_destroy(&at);
        if (rc) break;
        pool.n_workers++;
    }
    pool.want = n_threads - 1 < pool.n_workers ? n_threads - 1 : pool.n_workers;
    pool.active = pool.want;
    pool.job = &j;
    pool.gen++;
    pthread_cond_broadcast(&pool.work);
    pthread_mutex_unlock(&pool.m);
    par_worker(&j);
    pthread_mutex_lock(&pool.m);
    while (pool.active > 0) pthread_cond_wait(&pool.done, &pool.m);
    pthread_mutex_unlock(&pool.m);
    pthread_mutex_unlock(&pool.busy);
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

/* Scratch slot of this thread in job number attn_job_seen. A slot is taken
 * once per job: pool threads outlive jobs, and a slot number kept from an
 * earlier job could be the one the counter hands another thread now. */
static __thread int attn_slot = -1;
static __thread unsigned long attn_job_seen;
static unsigned long attn_jobs;                 /* job numbers, atomically */

typedef struct { attn_job *a; int n_slot, next_slot; unsigned long job; } attn_ctx;

static void attn_run(void *ctx, int t) {
    attn_ctx *c = ctx;
    attn_job *a = c->a;
    if (attn_job_seen != c->job) {
        attn_slot = __atomic_fetch_add(&c->next_slot, 1, __ATOMIC_RELAXED);
        attn_job_seen = c->job;
    }
    QF_ASSERT(attn_slot >= 0 && attn_slot < c->n_slot);
    float *kt = a->scratch[attn_slot], *sc = kt + (size_t)a->d * a->Lkp;
    int h = t / a->n_rblk, b = t % a->n_rblk;
    int i0 = b * a->row_blk, i1 = i0 + a->row_blk < a->Lq ? i0 + a->row_blk : a->Lq;
    attn_task_avx512(a, h, i0, i1, kt, sc);
}

/* Threads the kernel would use for this work (before the scratch limit). */
static int attn_threads(int Lq, int Lk, int n_head, int d_head, int *row_blk) {
    int T = 4.0 * Lq * Lk * d_head * n_head >= 2e5 ? qf_cpu_threads() : 1;   /* ~50 us of work */
    /* split query rows only when there are too few heads to share out */
    int rb = n_head >= 2 * T || Lq <= 64 ? Lq : 64;
    int n_task = n_head * ((Lq + rb - 1) / rb);
    if (T > n_task) T = n_task;
    if (T > 64) T = 64;
    if (row_blk) *row_blk = rb;
    return T;
}

size_t qf_cpu_attention_scratch(int Lq, int Lk, int n_head, int d_head) {
    if (!__builtin_cpu_supports("avx512f") || Lq <= 0 || Lk <= 0) return 0;
    size_t slot = (size_t)(d_head + RB) * (size_t)((Lk + 15) & ~15);
    return (size_t)attn_threads(Lq, Lk, n_head, d_head, NULL) * slot + 16;   /* + 16: 64-byte alignment */
}

int qf_cpu_attention(float *out, int ldo, const float *Q, int ldq, const float *K, int ldk,
                     const float *V, int ldv, int Lq, int Lk, int n_head, int d_head,
                     float scale, const float *mask, int causal, int pos0, float *scratch, size_t n_scratch) {
    if (!__builtin_cpu_supports("avx512f") || Lq <= 0 || Lk <= 0 || !scratch) return 0;
    attn_job a = { out, Q, K, V, mask, ldo, ldq, ldk, ldv, Lq, Lk, d_head, causal, pos0, 0, 0, scale,
                   NULL, (Lk + 15) & ~15 };
    int T = attn_threads(Lq, Lk, n_head, d_head, &a.row_blk);
    a.n_rblk = (Lq + a.row_blk - 1) / a.row_blk;
    int n_task = n_head * a.n_rblk;
    /* one (d + RB) x Lkp block per thread, from the caller's scratch (64-byte
     * aligned: the kernel uses aligned loads); fewer threads when it holds
     * fewer blocks, none: the caller takes the BLAS path */
    size_t floats = (size_t)(d_head + RB) * a.Lkp, skip = (size_t)((-(uintptr_t)scratch / sizeof(float)) & 15);
    if (((uintptr_t)scratch & 3) || n_scratch < skip + floats) return 0;
    if ((size_t)T > (n_scratch - skip) / floats) T = (int)((n_scratch - skip) / floats);
    float *slots[64];
    for (int i = 0; i < T; i++) slots[i] = scratch + skip + (size_t)i * floats;
    a.scratch = slots;
    attn_ctx c = { &a, T, 0, __atomic_add_fetch(&attn_jobs, 1, __ATOMIC_RELAXED) };
    int saved = attn_slot;
    unsigned long saved_job = attn_job_seen;
    qf_cpu_parallel(T, attn_run, &c, n_task);
    attn_slot = saved;
    attn_job_seen = saved_job;
    return 1;
}
