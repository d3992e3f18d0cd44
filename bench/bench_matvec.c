/* bench_matvec.c - the decoder's weight streaming against the memory
 * bandwidth of this machine.
 *
 * Builds L OPT-2.7B decoder layers of random weights (q, k, v, out: 2560 x
 * 2560; fc1 10240 x 2560; fc2 2560 x 10240) in float32, BF16 and int8, runs
 * the six products of every layer for R activation rows (one decode step of
 * R sequences) and prints, per weight type: milliseconds per pass, the
 * weight bytes streamed per second, and that as a fraction of the read
 * bandwidth measured first by a plain AVX-512 sum over a 1 GiB buffer on
 * the same threads. The weights of L layers (L = 8: 2.5 GB in float32)
 * exceed every cache, as the real model's do.
 *
 * usage: bench_matvec [LAYERS=8] [R=1] [REPEAT=5] [THREADS=all cores] */
#include "embed/common.h"
#include "embed/kernels_cpu.h"

#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { D = 2560, F = 10240 };

extern void openblas_set_num_threads(int);

typedef struct { const uint8_t *p; size_t n; int parts; uint64_t sink[64]; } read_job;

__attribute__((target("avx512f")))
static void read_task(void *ctx, int t) {
    read_job *j = ctx;
    size_t per = j->n / (size_t)j->parts, i0 = per * (size_t)t;
    __m512i a = _mm512_setzero_si512(), b = _mm512_setzero_si512();
    for (size_t i = i0; i + 128 <= i0 + per; i += 128) {
        a = _mm512_add_epi64(a, _mm512_loadu_si512(j->p + i));
        b = _mm512_add_epi64(b, _mm512_loadu_si512(j->p + i + 64));
    }
    j->sink[t] = (uint64_t)_mm512_reduce_add_epi64(_mm512_add_epi64(a, b));
}

static uint32_t rng = 12345;
static float frand(void) {
    rng = rng * 1664525u + 1013904223u;
    return (float)(rng >> 8) / (float)(1u << 24) * 0.1f - 0.05f;
}

typedef struct { int n, k; } shape;
static const shape shapes[6] = { { D, D }, { D, D }, { D, D }, { D, D }, { F, D }, { D, F } };

int main(int argc, char **argv) {
    int L = argc > 1 ? atoi(argv[1]) : 8, R = argc > 2 ? atoi(argv[2]) : 1, rep = argc > 3 ? atoi(argv[3]) : 5;
    if (L < 1 || R < 1 || R > 4 || rep < 1) {
        fprintf(stderr, "usage: bench_matvec [LAYERS>=1] [R=1..4] [REPEAT>=1]\n");
        return 2;
    }
    int th = argc > 4 ? atoi(argv[4]) : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (th < 1) th = 1;
    openblas_set_num_threads(th);             /* qf_cpu_threads() follows it */
    th = qf_cpu_threads();
    if (!__builtin_cpu_supports("avx512f")) { fprintf(stderr, "bench_matvec needs AVX-512F\n"); return 2; }

    /* read bandwidth */
    size_t nb = (size_t)1 << 30;
    uint8_t *buf = malloc(nb);
    if (!buf) { fprintf(stderr, "out of memory\n"); return 1; }
    memset(buf, 1, nb);
    read_job rj = { buf, nb, th, { 0 } };
    double best = 1e9;
    for (int i = 0; i < 3; i++) {
        double t0 = qf_now();
        qf_cpu_parallel(th, read_task, &rj, th);
        double dt = qf_now() - t0;
        if (dt < best) best = dt;
    }
    free(buf);
    double bw = (double)nb / best / 1e9;
    printf("threads %d, %d layers, R=%d: read bandwidth %.1f GB/s (AVX-512 sum, best of 3)\n", th, L, R, bw);

    size_t per_layer = 0;
    for (int s = 0; s < 6; s++) per_layer += (size_t)shapes[s].n * shapes[s].k;
    size_t total = per_layer * (size_t)L;
    float *wf = malloc(total * sizeof *wf);
    uint16_t *wh = malloc(total * sizeof *wh);
    int8_t *wq = malloc(total);
    float *scale = malloc((size_t)L * 6 * F * sizeof *scale);
    int32_t *sum = malloc((size_t)L * 6 * F * sizeof *sum);
    float *x = malloc((size_t)R * F * sizeof *x), *y = malloc((size_t)R * F * sizeof *y);
    uint8_t *scratch = malloc((size_t)QF_CPU_I8_ROWS * F);
    if (!wf || !wh || !wq || !scale || !sum || !x || !y || !scratch) { fprintf(stderr, "out of memory\n"); return 1; }
    for (size_t i = 0; i < total; i++) wf[i] = frand();
    for (int i = 0; i < R * F; i++) x[i] = frand() * 20;
    qf_cpu_f32_to_bf16(wh, wf, total);
    size_t off = 0;
    for (int l = 0; l < L; l++)
        for (int s = 0; s < 6; s++) {
            size_t m = (size_t)(l * 6 + s) * F;
            qf_cpu_quantize_i8(wq + off, scale + m, sum + m, wf + off, shapes[s].n, shapes[s].k);
            off += (size_t)shapes[s].n * shapes[s].k;
        }

    static const char *const names[3] = { "f32", "bf16", "int8" };
    static const int bytes[3] = { 4, 2, 1 };
    for (int t = 0; t < 3; t++) {
        double best_t = 1e9;
        for (int it = 0; it < rep + 1; it++) {
            double t0 = qf_now();
            size_t o = 0;
            for (int l = 0; l < L; l++)
                for (int s = 0; s < 6; s++) {
                    int n = shapes[s].n, k = shapes[s].k;
                    size_t m = (size_t)(l * 6 + s) * F;
                    if (t == 0) qf_cpu_matvec(y, x, R, k, wf + o, NULL, n);
                    else if (t == 1) qf_cpu_matvec_bf16(y, x, R, k, wh + o, NULL, n);
                    else qf_cpu_matvec_i8(y, x, R, k, wq + o, scale + m, sum + m, NULL, n, scratch);
                    o += (size_t)n * k;
                }
            double dt = qf_now() - t0;
            if (it > 0 && dt < best_t) best_t = dt;
        }
        double gbs = (double)total * bytes[t] / best_t / 1e9;
        printf("%-5s %8.1f ms per pass (%.2f GB of weights)  %5.1f GB/s  %3.0f%% of read bandwidth  "
               "(OPT-2.7B: %.2f tok/s from the 32 layers)\n",
               names[t], best_t * 1e3, (double)total * bytes[t] / 1e9, gbs, 100 * gbs / bw,
               1.0 / (best_t / L * 32));
    }
    free(wf); free(wh); free(wq); free(scale); free(sum); free(x); free(y); free(scratch);
    return 0;
}
