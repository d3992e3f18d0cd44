/* test_blip2_bf16.c - tolerance test of the BF16 vision path
 * (QF_BLIP2_VISION_BF16) on the tiny-blip2-itm fixture: for the golden
 * pixel values of every fixture image, the ITC image features are within
 * 1e-2 of the F32 model's (and not identical to them: the BF16 path really
 * ran), and for every fixture text the images rank in the same order by
 * ITC score (the fixture has 6 images: the whole top-10). Both engines:
 * sgemm on widened BF16 values and oneDNN's BF16 matmul. */
#include "embed/blip2.h"
#include "embed/safetensors.h"
#include "tests/testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_IMG = 16 };

static void rank(const float *score, int n, int *order) {
    for (int i = 0; i < n; i++) order[i] = i;
    for (int i = 1; i < n; i++)                  /* insertion sort, descending, stable */
        for (int j = i; j > 0 && score[order[j]] > score[order[j - 1]]; j--) {
            int t = order[j]; order[j] = order[j - 1]; order[j - 1] = t;
        }
}

/* engine: "sgemm" (BF16 widened to float32 for sgemm) or "onednn" (oneDNN's
 * BF16 matmul: native on AVX512_BF16 / AMX CPUs, emulated elsewhere). */
static void check_vision_bf16(const char *engine) {
    const char *dir = qf_fixture("tiny-blip2-itm");
    setenv("QF_BF16_ENGINE", engine, 1);
    qf_blip2 *m32 = NULL, *m16 = NULL;
    qf_blip2_state *s32 = NULL, *s16 = NULL;
    qf_st *ex = NULL;
    CU_ASSERT_FATAL(qf_blip2_load(dir, QF_BLIP2_ALL, &m32) == QF_OK);
    CU_ASSERT_FATAL(qf_blip2_load(dir, QF_BLIP2_ALL | QF_BLIP2_VISION_BF16, &m16) == QF_OK);
    CU_ASSERT(!qf_blip2_vision_is_bf16(m32));
    CU_ASSERT_EQUAL(qf_blip2_vision_is_bf16(m16), strcmp(engine, "onednn") ? 1 : 2);
    CU_ASSERT_FATAL(qf_blip2_state_init(m32, &s32) == QF_OK);
    CU_ASSERT_FATAL(qf_blip2_state_init(m16, &s16) == QF_OK);
    char path[4096];
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    CU_ASSERT_FATAL(qf_st_open(path, &ex) == QF_OK);

    const qf_st_tensor *pv = qf_st_find(ex, "pixel_values");
    const qf_st_tensor *ids_t = qf_st_find(ex, "text_input_ids"), *mask_t = qf_st_find(ex, "text_attention_mask");
    CU_ASSERT_FATAL(pv && ids_t && mask_t);
    const float *pixels;
    const int64_t *ids, *mask;
    CU_ASSERT_FATAL(qf_st_get_f32(ex, "pixel_values", 4, pv->shape, &pixels) == QF_OK);
    CU_ASSERT_FATAL(qf_st_get_raw(ex, "text_input_ids", QF_DT_I64, 2, ids_t->shape, (const void **)&ids) == QF_OK);
    CU_ASSERT_FATAL(qf_st_get_raw(ex, "text_attention_mask", QF_DT_I64, 2, mask_t->shape, (const void **)&mask) == QF_OK);
    const int n_img = (int)pv->shape[0], n_txt = (int)ids_t->shape[0], L = (int)ids_t->shape[1];
    const int Q = qf_blip2_n_query(m32), E = qf_blip2_embed_dim(m32);
    const size_t px = (size_t)pv->shape[1] * pv->shape[2] * pv->shape[3];
    CU_ASSERT_FATAL(n_img <= MAX_IMG);

    float *f32 = malloc(sizeof(float) * n_img * Q * E), *f16 = malloc(sizeof(float) * n_img * Q * E);
    float *tf = malloc(sizeof(float) * E);
    for (int i = 0; i < n_img; i++) {
        CU_ASSERT_FATAL(qf_blip2_image_feats(m32, s32, pixels + i * px, f32 + (size_t)i * Q * E, NULL, NULL) == QF_OK);
        CU_ASSERT_FATAL(qf_blip2_image_feats(m16, s16, pixels + i * px, f16 + (size_t)i * Q * E, NULL, NULL) == QF_OK);
    }
    double max_diff = 0;
    for (size_t i = 0; i < (size_t)n_img * Q * E; i++) max_diff = fmax(max_diff, fabs(f16[i] - f32[i]));
    fprintf(stderr, "\nBF16 vision (%s): max |feature difference| %.2e over %d images\n", engine, max_diff, n_img);
    CU_ASSERT(max_diff <= 1e-2);
    CU_ASSERT(max_diff > 0);                     /* the BF16 arithmetic was used */

    int same_order = 0;
    for (int t = 0; t < n_txt; t++) {
        CU_ASSERT_FATAL(qf_blip2_text_feat(m32, s32, ids + (size_t)t * L, mask + (size_t)t * L, L, tf, NULL) == QF_OK);
        float sc32[MAX_IMG], sc16[MAX_IMG];
        int o32[MAX_IMG], o16[MAX_IMG];
        for (int i = 0; i < n_img; i++) {
            sc32[i] = qf_blip2_itc_score(f32 + (size_t)i * Q * E, Q, tf, E);
            sc16[i] = qf_blip2_itc_score(f16 + (size_t)i * Q * E, Q, tf, E);
        }
        rank(sc32, n_img, o32);
        rank(sc16, n_img, o16);
        same_order += !memcmp(o32, o16, sizeof(int) * n_img);
    }
    fprintf(stderr, "BF16 vision (%s): same image ranking for %d of %d texts\n", engine, same_order, n_txt);
    CU_ASSERT_EQUAL(same_order, n_txt);

    free(f32); free(f16); free(tf);
    qf_st_close(ex);
    qf_blip2_state_free(s32); qf_blip2_state_free(s16);
    qf_blip2_free(m32); qf_blip2_free(m16);
    unsetenv("QF_BF16_ENGINE");
}

static void test_vision_bf16_sgemm(void) { check_vision_bf16("sgemm"); }
static void test_vision_bf16_onednn(void) { check_vision_bf16("onednn"); }

static CU_TestInfo tests[] = {
    { "vision_bf16_sgemm", test_vision_bf16_sgemm },
    { "vision_bf16_onednn", test_vision_bf16_onednn },
    CU_TEST_INFO_NULL,
};

int main(void) { return qf_test_main("blip2_bf16", tests); }
