/* gemm_dnnl.c - see gemm_dnnl.h. oneDNN 2.x C API. */
#include "embed/gemm_dnnl.h"

#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct qf_dnnl_mat {
    int               M, N, K;
    dnnl_primitive_t  mm;          /* matmul: src [M, K] bf16 x weights [K, N] -> dst [M, N] f32 */
    dnnl_memory_t     w;           /* reordered weights */
    dnnl_memory_desc_t src_md, dst_md;
    dnnl_memory_desc_t scratch_md; /* user scratchpad: one per call, so calls may run concurrently */
    size_t             scratch_bytes;
};

static dnnl_engine_t engine;
static dnnl_status_t engine_status = dnnl_runtime_error;
static pthread_once_t engine_once = PTHREAD_ONCE_INIT;

static void engine_init(void) { engine_status = dnnl_engine_create(&engine, dnnl_cpu, 0); }

int qf_dnnl_bf16_native(void) {
    return __builtin_cpu_supports("avx512bf16") || __builtin_cpu_supports("amx-bf16");
}

int qf_dnnl_bf16_preferred(void) {
    const char *e = getenv("QF_BF16_ENGINE");
    if (e && !strcmp(e, "onednn")) return 1;
    if (e && !strcmp(e, "sgemm")) return 0;
    return qf_dnnl_bf16_native();
}

static qf_status fail(dnnl_status_t st, const char *what) {
    return qf_errorf(st == dnnl_out_of_memory ? QF_ERR_NOMEM : QF_ERR_UNSUPPORTED,
                     "oneDNN: %s failed (status %d)", what, (int)st);
}

qf_status qf_dnnl_mat_create(const uint16_t *W, int N, int K, int M, qf_dnnl_mat **out) {
    *out = NULL;
    pthread_once(&engine_once, engine_init);
    if (engine_status != dnnl_success) return fail(engine_status, "creating the CPU engine");
    qf_dnnl_mat *m = qf_calloc(1, sizeof *m);
    if (!m) return qf_errorf(QF_ERR_NOMEM, "out of memory");
    m->M = M; m->N = N; m->K = K;
    dnnl_dims_t ds = { M, K }, dw = { K, N }, dd = { M, N };
    dnnl_memory_desc_t w_any, w_user;
    dnnl_matmul_desc_t desc;
    dnnl_primitive_desc_t pd = NULL, rpd = NULL;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_t reorder = NULL;
    dnnl_memory_t w_src = NULL;
    dnnl_stream_t stream = NULL;
    dnnl_status_t st;
    const char *what = "describing the matmul";
    if ((st = dnnl_memory_desc_init_by_tag(&m->src_md, 2, ds, dnnl_bf16, dnnl_ab)) ||
        (st = dnnl_memory_desc_init_by_tag(&w_any, 2, dw, dnnl_bf16, dnnl_format_tag_any)) ||
        (st = dnnl_memory_desc_init_by_tag(&w_user, 2, dw, dnnl_bf16, dnnl_ba)) ||   /* [N, K] row-major */
        (st = dnnl_memory_desc_init_by_tag(&m->dst_md, 2, dd, dnnl_f32, dnnl_ab)) ||
        (st = dnnl_matmul_desc_init(&desc, &m->src_md, &w_any, NULL, &m->dst_md)))
        goto done;
    /* The library-managed scratchpad of a Debian (non-concurrent) oneDNN build
     * is shared by every execution of a primitive: two threads embedding two
     * images with the same model then overwrite each other's partial sums
     * (index --dtype bf16 gave run-to-run differences of 0.2). A user
     * scratchpad, supplied per call, makes concurrent executions safe. */
    what = "creating the matmul";
    if ((st = dnnl_primitive_attr_create(&attr)) ||
        (st = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user)) ||
        (st = dnnl_primitive_desc_create(&pd, &desc, attr, engine, NULL)) ||
        (st = dnnl_primitive_create(&m->mm, pd)))
        goto done;
    m->scratch_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    m->scratch_bytes = dnnl_memory_desc_get_size(&m->scratch_md);
    what = "reordering the weights";
    const dnnl_memory_desc_t *w_md = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    if ((st = dnnl_memory_create(&m->w, w_md, engine, DNNL_MEMORY_ALLOCATE)) ||
        (st = dnnl_memory_create(&w_src, &w_user, engine, (void *)W)) ||
        (st = dnnl_reorder_primitive_desc_create(&rpd, &w_user, engine, w_md, engine, NULL)) ||
        (st = dnnl_primitive_create(&reorder, rpd)) ||
        (st = dnnl_stream_create(&stream, engine, dnnl_stream_default_flags)))
        goto done;
    dnnl_exec_arg_t args[2] = { { DNNL_ARG_FROM, w_src }, { DNNL_ARG_TO, m->w } };
    if ((st = dnnl_primitive_execute(reorder, stream, 2, args)) || (st = dnnl_stream_wait(stream))) goto done;
done:
    if (stream) dnnl_stream_destroy(stream);
    if (reorder) dnnl_primitive_destroy(reorder);
    if (rpd) dnnl_primitive_desc_destroy(rpd);
    if (w_src) dnnl_memory_destroy(w_src);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success) {
        qf_dnnl_mat_free(m);
        return fail(st, what);
    }
    *out = m;
    return QF_OK;
}

void qf_dnnl_mat_free(qf_dnnl_mat *m) {
    if (!m) return;
    if (m->mm) dnnl_primitive_destroy(m->mm);
    if (m->w) dnnl_memory_destroy(m->w);
    qf_free(m);
}

qf_status qf_dnnl_matmul(const qf_dnnl_mat *m, const uint16_t *x, float *y) {
    dnnl_memory_t src = NULL, dst = NULL, scratch = NULL;
    dnnl_stream_t stream = NULL;
    dnnl_status_t st;
    /* the scratchpad, 64-byte aligned, through the allocation seam */
    char *raw = NULL, *sp = NULL;
    if (m->scratch_bytes) {
        if (!(raw = qf_malloc(m->scratch_bytes + 64)))
            return qf_errorf(QF_ERR_NOMEM, "oneDNN: out of memory for a %zu-byte matmul scratchpad", m->scratch_bytes);
        sp = raw + (64 - (uintptr_t)raw % 64) % 64;
    }
    if (!(st = dnnl_memory_create(&src, &m->src_md, engine, (void *)x)) &&
        !(st = dnnl_memory_create(&dst, &m->dst_md, engine, y)) &&
        !(st = dnnl_memory_create(&scratch, &m->scratch_md, engine, sp)) &&
        !(st = dnnl_stream_create(&stream, engine, dnnl_stream_default_flags))) {
        dnnl_exec_arg_t args[4] = { { DNNL_ARG_SRC, src }, { DNNL_ARG_WEIGHTS, m->w }, { DNNL_ARG_DST, dst },
                                    { DNNL_ARG_SCRATCHPAD, scratch } };
        if (!(st = dnnl_primitive_execute(m->mm, stream, 4, args))) st = dnnl_stream_wait(stream);
    }
    if (stream) dnnl_stream_destroy(stream);
    if (scratch) dnnl_memory_destroy(scratch);
    if (src) dnnl_memory_destroy(src);
    if (dst) dnnl_memory_destroy(dst);
    qf_free(raw);
    return st == dnnl_success ? QF_OK : fail(st, "matmul");
}
