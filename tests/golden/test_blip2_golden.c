/* test_blip2_golden.c - the vision encoder, Q-Former, ITC and ITM heads
 * against the golden tensors of tests/fixtures/tiny-blip2-itm (F32, single
 * file) and the vision/Q-Former parts of tiny-blip2-opt and tiny-blip2-flan-t5
 * (F16, sharded).
 * Inputs are the golden pixel_values and token ids so the model is tested
 * independently of the image decoder and the tokenizer. */
#include "embed/blip2.h"
#include "embed/safetensors.h"
#include "tests/testutil.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define ATOL 1e-4
#define RTOL 1e-4

static const float *golden_f32(qf_st *st, const char *name, int nd, const int64_t *shape) {
    const float *p = NULL;
    qf_status s = qf_st_get_f32(st, name, nd, shape, &p);
    if (s) fprintf(stderr, "\n%s\n", qf_last_error());
    CU_ASSERT_FATAL(s == QF_OK);
    return p;
}

static void check_image_path(const char *fx, int parts, int check_feats) {
    qf_blip2 *m = NULL;
    qf_st *ex = NULL;
    qf_blip2_state *s = NULL;
    char dir[1024], path[1100];
    snprintf(dir, sizeof dir, "%s", qf_fixture(fx));
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    qf_status st = qf_blip2_load(dir, parts, &m);
    if (st) fprintf(stderr, "\n%s\n", qf_last_error());
    CU_ASSERT_FATAL(st == QF_OK);
    CU_ASSERT_FATAL(qf_st_open(path, &ex) == QF_OK);
    CU_ASSERT_FATAL(qf_blip2_state_init(m, &s) == QF_OK);

    const int S = qf_blip2_image_size(m), Nv = qf_blip2_n_vis(m), Dv = qf_blip2_vis_dim(m);
    const int Q = qf_blip2_n_query(m), Dq = qf_blip2_q_dim(m), E = qf_blip2_embed_dim(m);
    const qf_st_tensor *pv = qf_st_find(ex, "pixel_values");
    CU_ASSERT_FATAL(pv != NULL);
    const int n_img = (int)pv->shape[0];
    int64_t shp_pix[] = { n_img, 3, S, S }, shp_vis[] = { n_img, Nv, Dv }, shp_q[] = { n_img, Q, Dq };
    const float *pixels = golden_f32(ex, "pixel_values", 4, shp_pix);
    const float *g_vis = golden_f32(ex, "vision_last_hidden_state", 3, shp_vis);
    const float *g_q = golden_f32(ex, "qformer_last_hidden_state", 3, shp_q);

    float vis[Nv * Dv], q_out[Q * Dq], feats[Q * E];
    for (int i = 0; i < n_img; i++) {
        CU_ASSERT_FATAL(qf_blip2_vision(m, s, pixels + (size_t)i * 3 * S * S, vis) == QF_OK);
        QF_ASSERT_CLOSE(vis, g_vis + (size_t)i * Nv * Dv, (size_t)Nv * Dv, ATOL, RTOL, "vision_last_hidden_state");
        CU_ASSERT_FATAL(qf_blip2_qformer_image(m, s, vis, q_out) == QF_OK);
        QF_ASSERT_CLOSE(q_out, g_q + (size_t)i * Q * Dq, (size_t)Q * Dq, ATOL, RTOL, "qformer_last_hidden_state");
        if (check_feats) {
            int64_t shp_f[] = { n_img, Q, E };
            const float *g_f = golden_f32(ex, "image_feats", 3, shp_f);
            CU_ASSERT_FATAL(qf_blip2_image_feats(m, s, pixels + (size_t)i * 3 * S * S, feats, NULL, NULL) == QF_OK);
            QF_ASSERT_CLOSE(feats, g_f + (size_t)i * Q * E, (size_t)Q * E, ATOL, RTOL, "image_feats");
        }
    }
    qf_blip2_state_free(s);
    qf_st_close(ex);
    qf_blip2_free(m);
}

static void test_itm_fixture_image(void) { check_image_path("tiny-blip2-itm", QF_BLIP2_ALL, 1); }
static void test_opt_fixture_image(void) {
    check_image_path("tiny-blip2-opt", QF_BLIP2_VISION | QF_BLIP2_QFORMER, 0);
}

static void test_t5_fixture_image(void) {
    check_image_path("tiny-blip2-flan-t5", QF_BLIP2_VISION | QF_BLIP2_QFORMER, 0);
}

static void test_text_itc_itm(void) {
    qf_blip2 *m = NULL;
    qf_st *ex = NULL;
    qf_blip2_state *s = NULL;
    CU_ASSERT_FATAL(qf_blip2_load(qf_fixture("tiny-blip2-itm"), QF_BLIP2_ALL, &m) == QF_OK);
    CU_ASSERT_FATAL(qf_st_open(qf_fixture("tiny-blip2-itm/expected.safetensors"), &ex) == QF_OK);
    CU_ASSERT_FATAL(qf_blip2_state_init(m, &s) == QF_OK);
    const int S = qf_blip2_image_size(m), Nv = qf_blip2_n_vis(m), Dv = qf_blip2_vis_dim(m);
    const int Q = qf_blip2_n_query(m), Dq = qf_blip2_q_dim(m), E = qf_blip2_embed_dim(m);

    const qf_st_tensor *ids_t = qf_st_find(ex, "text_input_ids"), *mask_t = qf_st_find(ex, "text_attention_mask");
    CU_ASSERT_FATAL(ids_t && mask_t && ids_t->dtype == QF_DT_I64);
    const int n_txt = (int)ids_t->shape[0], L = (int)ids_t->shape[1];
    const int64_t *ids = NULL, *mask = NULL;   /* aligned views (the file's I64 spans need not be) */
    CU_ASSERT_FATAL(qf_st_get_raw(ex, "text_input_ids", QF_DT_I64, 2, ids_t->shape, (const void **)&ids) == QF_OK);
    CU_ASSERT_FATAL(qf_st_get_raw(ex, "text_attention_mask", QF_DT_I64, 2, mask_t->shape, (const void **)&mask) == QF_OK);
    const int n_img = (int)qf_st_find(ex, "pixel_values")->shape[0];
    int64_t shp_h[] = { n_txt, L, Dq }, shp_tf[] = { n_txt, E }, shp_if[] = { n_img, Q, E };
    int64_t shp_sc[] = { n_img, n_txt }, shp_itm[] = { n_img, n_txt, 2 }, shp_pix[] = { n_img, 3, S, S };
    const float *g_h = golden_f32(ex, "text_qformer_last_hidden_state", 3, shp_h);
    const float *g_tf = golden_f32(ex, "text_feats", 2, shp_tf);
    const float *g_if = golden_f32(ex, "image_feats", 3, shp_if);
    const float *g_itc = golden_f32(ex, "itc_scores", 2, shp_sc);
    const float *g_itm = golden_f32(ex, "itm_logits", 3, shp_itm);
    const float *g_itm_p = golden_f32(ex, "itm_scores", 2, shp_sc);
    const float *pixels = golden_f32(ex, "pixel_values", 4, shp_pix);

    float tf[n_txt][E], hidden[L * Dq];
    for (int t = 0; t < n_txt; t++) {
        CU_ASSERT_FATAL(qf_blip2_text_feat(m, s, ids + t * L, mask + t * L, L, tf[t], hidden) == QF_OK);
        QF_ASSERT_CLOSE(tf[t], g_tf + t * E, (size_t)E, ATOL, RTOL, "text_feats");
        /* hidden rows with mask 0 are don't-care */
        for (int r = 0; r < L; r++)
            if (mask[t * L + r])
                QF_ASSERT_CLOSE(hidden + r * Dq, g_h + ((size_t)t * L + r) * Dq, (size_t)Dq, ATOL, RTOL,
                                "text_qformer_last_hidden_state");
        /* unpadded input gives the same feature (padding keys get zero weight) */
        int n = 0;
        while (n < L && mask[t * L + n]) n++;
        float tf2[E];
        CU_ASSERT_FATAL(qf_blip2_text_feat(m, s, ids + t * L, mask + t * L, n, tf2, NULL) == QF_OK);
        QF_ASSERT_CLOSE(tf2, g_tf + t * E, (size_t)E, ATOL, RTOL, "text_feats unpadded");
    }
    float vis[Nv * Dv];
    for (int i = 0; i < n_img; i++) {
        CU_ASSERT_FATAL(qf_blip2_vision(m, s, pixels + (size_t)i * 3 * S * S, vis) == QF_OK);
        for (int t = 0; t < n_txt; t++) {
            float itc = qf_blip2_itc_score(g_if + (size_t)i * Q * E, Q, tf[t], E);
            QF_ASSERT_CLOSE(&itc, &g_itc[i * n_txt + t], 1, ATOL, RTOL, "itc_scores");
            float lg[2];
            CU_ASSERT_FATAL(qf_blip2_itm(m, s, vis, ids + t * L, mask + t * L, L, lg) == QF_OK);
            QF_ASSERT_CLOSE(lg, g_itm + ((size_t)i * n_txt + t) * 2, 2, ATOL, RTOL, "itm_logits");
            float p = 1.0f / (1.0f + expf(lg[0] - lg[1]));
            QF_ASSERT_CLOSE(&p, &g_itm_p[i * n_txt + t], 1, ATOL, RTOL, "itm_scores");
        }
    }
    qf_blip2_state_free(s);
    qf_st_close(ex);
    qf_blip2_free(m);
}

static CU_TestInfo tests[] = {
    { "itm_fixture_vision_qformer_feats", test_itm_fixture_image },
    { "opt_fixture_f16_sharded_vision_qformer", test_opt_fixture_image },
    { "t5_fixture_f16_sharded_vision_qformer", test_t5_fixture_image },
    { "text_feats_itc_itm", test_text_itc_itm },
    CU_TEST_INFO_NULL,
};

int main(void) { return qf_test_main("blip2_golden", tests); }
