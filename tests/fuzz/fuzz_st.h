/* fuzz_st.h - the checks both safetensors harnesses run on an opened qf_st:
 * the documented table invariants (sorted unique names, shape product x dtype
 * size = byte span, find() agrees with at()), then every tensor is read
 * through the typed getters (qf_st_get_f32 for float dtypes, qf_st_get_raw
 * for the rest) and all its bytes / floats are touched, and a wrong expected
 * shape must be refused with QF_ERR_SHAPE. `faulting`: allocation failure
 * injection is on, so getters may fail with QF_ERR_NOMEM. */
#ifndef QF_FUZZ_ST_H
#define QF_FUZZ_ST_H

#include "embed/safetensors.h"
#include "tests/fuzz/fuzz_util.h"

static volatile float fuzz_st_sink_f;
static volatile uint8_t fuzz_st_sink_b;

static inline void fuzz_check_st(qf_st *st, int faulting) {
    size_t n = qf_st_count(st);
    uint64_t total = 0;
    FUZZ_CHECK(qf_st_path(st) != NULL);
    for (size_t i = 0; i < n; i++) {
        const qf_st_tensor *t = qf_st_at(st, i);
        FUZZ_CHECK(t && t->name && t->file);
        if (i) FUZZ_CHECK(strcmp(qf_st_at(st, i - 1)->name, t->name) < 0);
        FUZZ_CHECK(qf_st_find(st, t->name) == t);
        FUZZ_CHECK((unsigned)t->dtype < QF_DT_COUNT);
        FUZZ_CHECK(t->n_dim >= 0 && t->n_dim <= QF_ST_MAX_DIMS);
        int64_t ne = 1;
        for (int d = 0; d < t->n_dim; d++) {
            FUZZ_CHECK(t->shape[d] >= 0);
            ne *= t->shape[d];        /* cannot overflow: the reader checked the byte size */
        }
        FUZZ_CHECK(ne == t->n_elem);
        FUZZ_CHECK((uint64_t)t->n_bytes == (uint64_t)t->n_elem * qf_dtype_size(t->dtype));
        total += t->n_bytes;

        if (t->dtype == QF_DT_F32 || t->dtype == QF_DT_F16 || t->dtype == QF_DT_BF16) {
            const float *f = NULL;
            qf_status s = qf_st_get_f32(st, t->name, t->n_dim, t->shape, &f);
            if (s == QF_OK) {
                FUZZ_CHECK(f != NULL);
                float acc = 0;
                for (int64_t k = 0; k < t->n_elem; k++) acc += f[k];
                fuzz_st_sink_f = acc;
                /* the second call hands out the same buffer */
                const float *g = NULL;
                FUZZ_CHECK(qf_st_get_f32(st, t->name, t->n_dim, t->shape, &g) == QF_OK && g == f);
            } else {
                fuzz_check_error(s);
                FUZZ_CHECK(faulting && s == QF_ERR_NOMEM && f == NULL);
            }
        } else {
            const void *p = NULL;
            qf_status s = qf_st_get_raw(st, t->name, t->dtype, t->n_dim, t->shape, &p);
            if (s == QF_OK) {
                FUZZ_CHECK(p != NULL);
                FUZZ_CHECK((uintptr_t)p % qf_dtype_size(t->dtype) == 0);
                uint8_t acc = 0;
                for (size_t k = 0; k < t->n_bytes; k++) acc ^= ((const uint8_t *)p)[k];
                fuzz_st_sink_b = acc;
            } else {
                fuzz_check_error(s);
                FUZZ_CHECK(faulting && s == QF_ERR_NOMEM && p == NULL);
            }
            const float *f = (const float *)1;
            qf_status s2 = qf_st_get_f32(st, t->name, t->n_dim, t->shape, &f);
            FUZZ_CHECK(s2 == QF_ERR_SHAPE && f == NULL);
        }
        /* one more dimension than the tensor has: always a shape error */
        if (t->n_dim < QF_ST_MAX_DIMS) {
            int64_t want[QF_ST_MAX_DIMS];
            for (int d = 0; d < QF_ST_MAX_DIMS; d++) want[d] = -1;
            const void *p = (const void *)1;
            FUZZ_CHECK(qf_st_get_raw(st, t->name, t->dtype, t->n_dim + 1, want, &p) == QF_ERR_SHAPE);
            FUZZ_CHECK(p == NULL);
        }
    }
    FUZZ_CHECK(qf_st_total_bytes(st) == total);
    FUZZ_CHECK(qf_st_at(st, n) == NULL);
    (void)qf_st_find(st, "");
    (void)qf_st_metadata(st, "format");
    (void)qf_st_metadata(st, "total_size");
}

#endif
