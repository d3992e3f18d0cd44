/* wmat.c - weight matrices in three types (see wmat.h), shared by the OPT
 * and T5 language models. Conversions go through a float32 buffer of at most
 * 16 MB (no whole-matrix float32 copy is kept) and release the mapped pages
 * afterwards. */
#include "embed/wmat.h"

#include "embed/kernels_cpu.h"
#include "embed/ops.h"

#include <string.h>

enum { WCHUNK = 256 };            /* BF16: weight rows widened per sgemm in a prefill   */
/* BF16: up to this many rows stream the BF16 weights (8 rows per pass,
 * faster than widening them for sgemm at these sizes: bench prefill of 40
 * rows 9.1 -> 12-14 tokens/s, README); longer prefills widen WCHUNK rows. */
enum { BF16_MATVEC_ROWS = 64 };

void qf_wmat_store_free(qf_wmat_store *o) {
    if (!o) return;
    for (int i = 0; i < o->n_owned; i++) qf_free(o->owned[i]);
    qf_free(o->owned);
    o->owned = NULL;
    o->n_owned = 0;
}

static qf_status own(qf_wmat_store *o, void *p, const char *name) {
    void **ow = p ? qf_realloc(o->owned, (size_t)(o->n_owned + 1) * sizeof *ow) : NULL;
    if (!ow) {
        qf_free(p);
        return qf_errorf(QF_ERR_NOMEM, "out of memory converting '%s'", name);
    }
    o->owned = ow;
    o->owned[o->n_owned++] = p;
    return QF_OK;
}

qf_status qf_wmat_get(qf_wmat_store *o, qf_st *st, qf_opt_weights wtype, const char *name,
                      int64_t r, int64_t c, qf_wmat *w) {
    int64_t shape[2] = { r, c };
    memset(w, 0, sizeof *w);
    if (wtype == QF_OPT_F32) return qf_st_get_f32(st, name, 2, shape, &w->f);
    const qf_st_tensor *t = qf_st_find(st, name);
    if (wtype == QF_OPT_BF16 && t && t->dtype == QF_DT_BF16)
        return qf_st_get_raw(st, name, QF_DT_BF16, 2, shape, (const void **)&w->h);
    if (!t) return qf_st_get_f32(st, name, 2, shape, &w->f);   /* the loader's "missing" error */
    if (wtype == QF_OPT_INT8 && c > 65536)
        return qf_errorf(QF_ERR_UNSUPPORTED, "'%s': int8 weights need rows of at most 65536", name);
    size_t n = (size_t)r * (size_t)c;
    size_t qbytes = (n + 63) & ~(size_t)63;     /* int8: q [r, c], scale [r], sum [r] */
    void *dst = wtype == QF_OPT_BF16 ? qf_malloc(n * sizeof(uint16_t))
                                     : qf_malloc(qbytes + (size_t)r * (sizeof(float) + sizeof(int32_t)));
    qf_status s = own(o, dst, name);
    if (s) return s;
    /* blocks of rows through a float32 buffer of <= 16 MB */
    int64_t blk = ((int64_t)1 << 22) / c;
    if (blk < 1) blk = 1;
    if (blk > r) blk = r;
    float *buf = qf_malloc((size_t)blk * (size_t)c * sizeof *buf);
    if (!buf) return qf_errorf(QF_ERR_NOMEM, "out of memory converting '%s'", name);
    int8_t *q = dst;
    float *scale = (float *)((char *)dst + qbytes);
    int32_t *sum = (int32_t *)(scale + r);
    for (int64_t r0 = 0; r0 < r && !s; r0 += blk) {
        int64_t nr = r - r0 < blk ? r - r0 : blk;
        if ((s = qf_st_read_f32(st, name, 2, shape, r0 * c, nr * c, buf))) break;
        if (wtype == QF_OPT_BF16) qf_cpu_f32_to_bf16((uint16_t *)dst + r0 * c, buf, (size_t)(nr * c));
        else qf_cpu_quantize_i8(q + r0 * c, scale + r0, sum + r0, buf, (int)nr, (int)c);
    }
    qf_free(buf);
    if (s) return s;
    qf_st_release(st, name);
    if (wtype == QF_OPT_BF16) w->h = dst;
    else { w->q = q; w->scale = scale; w->sum = sum; }
    return QF_OK;
}

qf_status qf_wmat_scratch_init(qf_wmat_scratch *s, qf_opt_weights wtype, int max_k) {
    memset(s, 0, sizeof *s);
    if (wtype == QF_OPT_BF16) s->wbuf = qf_malloc((size_t)WCHUNK * (size_t)max_k * sizeof(float));
    if (wtype == QF_OPT_INT8) s->xbuf = qf_malloc((size_t)QF_CPU_I8_ROWS * (size_t)max_k);
    if ((wtype == QF_OPT_BF16 && !s->wbuf) || (wtype == QF_OPT_INT8 && !s->xbuf))
        return qf_errorf(QF_ERR_NOMEM, "out of memory for weight scratch");
    return QF_OK;
}

void qf_wmat_scratch_free(qf_wmat_scratch *s) {
    if (!s) return;
    qf_free(s->wbuf);
    qf_free(s->xbuf);
    memset(s, 0, sizeof *s);
}

void qf_wmat_linear(qf_wmat_scratch *s, float *y, const float *x, int R, int K, const qf_wmat *w,
                    const float *b, int N) {
    if (w->f) { qf_linear(y, x, R, K, w->f, b, N); return; }
    if (w->q) { qf_cpu_matvec_i8(y, x, R, K, w->q, w->scale, w->sum, b, N, s->xbuf); return; }
    if (R <= BF16_MATVEC_ROWS) { qf_cpu_matvec_bf16(y, x, R, K, w->h, b, N); return; }
    for (int o0 = 0; o0 < N; o0 += WCHUNK) {
        int n = N - o0 < WCHUNK ? N - o0 : WCHUNK;
        qf_cpu_bf16_to_f32(s->wbuf, w->h + (size_t)o0 * K, (size_t)n * K);
        for (int r = 0; r < R; r++) {
            if (b) memcpy(y + (size_t)r * N + o0, b + o0, (size_t)n * sizeof *y);
            else memset(y + (size_t)r * N + o0, 0, (size_t)n * sizeof *y);
        }
        qf_gemm(1, R, n, K, x, K, s->wbuf, K, 1.0f, y + o0, N);
    }
}
