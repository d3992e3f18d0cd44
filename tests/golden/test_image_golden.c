/* test_image_golden.c - decoding, PIL BICUBIC resize and BlipImageProcessor
 * output against the fixtures' goldens (computed with PIL + numpy):
 * image.{i}.rgb_u8 and resized_u8 must match exactly, pixel_values to 1e-6,
 * for every input image of both fixtures. */
#include "embed/image.h"
#include "embed/safetensors.h"
#include "tests/testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    const char *fx;              /* fixture directory name          */
    qf_st      *st;              /* expected.safetensors            */
    json_t     *json;            /* expected.json                   */
    size_t      n_img;
} golden;

static int golden_open(golden *g, const char *fx) {
    memset(g, 0, sizeof *g);
    g->fx = fx;
    char rel[256];
    snprintf(rel, sizeof rel, "%s/expected.safetensors", fx);
    if (qf_st_open(qf_fixture(rel), &g->st) != QF_OK) {
        fprintf(stderr, "\n%s\n", qf_last_error());
        return 0;
    }
    snprintf(rel, sizeof rel, "%s/expected.json", fx);
    json_error_t err;
    g->json = json_load_file(qf_fixture(rel), 0, &err);
    if (!g->json) {
        fprintf(stderr, "\n%s: %s\n", rel, err.text);
        return 0;
    }
    g->n_img = json_array_size(json_object_get(g->json, "images"));
    return g->n_img > 0;
}

static void golden_close(golden *g) {
    qf_st_close(g->st);
    json_decref(g->json);
}

/* Input file of image i, relative to the fixture dir ("inputs/x.png"). */
static const char *image_path(const golden *g, size_t i) {
    json_t *img = json_array_get(json_object_get(g->json, "images"), i);
    CU_ASSERT_EQUAL_FATAL(json_integer_value(json_object_get(img, "index")), (json_int_t)i);
    static char rel[512];
    snprintf(rel, sizeof rel, "%s/%s", g->fx, json_string_value(json_object_get(img, "file")));
    return qf_fixture(rel);
}

static const qf_st_tensor *tensor(const golden *g, const char *name, qf_dtype dt) {
    const qf_st_tensor *t = qf_st_find(g->st, name);
    if (!t) fprintf(stderr, "\n%s: tensor %s missing\n", g->fx, name);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    CU_ASSERT_EQUAL_FATAL(t->dtype, dt);
    return t;
}

/* Golden decoded image i as a qf_img view (borrowed data). */
static qf_img golden_rgb(const golden *g, size_t i) {
    char name[64];
    snprintf(name, sizeof name, "image.%zu.rgb_u8", i);
    const qf_st_tensor *t = tensor(g, name, QF_DT_U8);
    CU_ASSERT_EQUAL_FATAL(t->n_dim, 3);
    CU_ASSERT_EQUAL_FATAL(t->shape[2], 3);
    qf_img img = { (int)t->shape[1], (int)t->shape[0], (uint8_t *)t->data };
    return img;
}

static size_t count_diff(const uint8_t *a, const uint8_t *b, size_t n, int *max_diff) {
    size_t bad = 0;
    *max_diff = 0;
    for (size_t k = 0; k < n; k++) {
        int d = abs((int)a[k] - (int)b[k]);
        if (d) bad++;
        if (d > *max_diff) *max_diff = d;
    }
    return bad;
}

static void check_decode(const char *fx) {
    golden g;
    CU_ASSERT_FATAL(golden_open(&g, fx));
    for (size_t i = 0; i < g.n_img; i++) {
        const char *path = image_path(&g, i);
        qf_img want = golden_rgb(&g, i), got;
        qf_status st = qf_img_load(path, NULL, &got);
        if (st) fprintf(stderr, "\n%s\n", qf_last_error());
        CU_ASSERT_EQUAL(st, QF_OK);
        if (st) continue;
        CU_ASSERT_EQUAL(got.w, want.w);
        CU_ASSERT_EQUAL(got.h, want.h);
        if (got.w == want.w && got.h == want.h) {
            int maxd;
            size_t bad = count_diff(got.rgb, want.rgb, (size_t)want.w * want.h * 3, &maxd);
            if (bad) fprintf(stderr, "\n%s: %zu samples differ (max %d)\n", path, bad, maxd);
            CU_ASSERT_EQUAL(bad, 0);
        }
        qf_img_free(&got);
    }
    golden_close(&g);
}

static void check_resize(const char *fx) {
    golden g;
    CU_ASSERT_FATAL(golden_open(&g, fx));
    const qf_st_tensor *rz = tensor(&g, "resized_u8", QF_DT_U8);
    CU_ASSERT_EQUAL_FATAL(rz->n_dim, 4);
    CU_ASSERT_EQUAL_FATAL(rz->shape[0], (int64_t)g.n_img);
    const int S_h = (int)rz->shape[1], S_w = (int)rz->shape[2];
    const size_t per = (size_t)S_h * S_w * 3;
    for (size_t i = 0; i < g.n_img; i++) {
        qf_img src = golden_rgb(&g, i), out;
        CU_ASSERT_EQUAL_FATAL(qf_img_resize_bicubic(&src, S_w, S_h, &out), QF_OK);
        int maxd;
        size_t bad = count_diff(out.rgb, (const uint8_t *)rz->data + i * per, per, &maxd);
        if (bad)
            fprintf(stderr, "\n%s image %zu (%dx%d -> %dx%d): %zu samples differ (max %d)\n",
                    fx, i, src.w, src.h, S_w, S_h, bad, maxd);
        CU_ASSERT_EQUAL(bad, 0);
        qf_img_free(&out);
    }
    golden_close(&g);
}

static void check_pixels(const char *fx) {
    golden g;
    CU_ASSERT_FATAL(golden_open(&g, fx));
    qf_img_preproc p;
    char rel[256];
    snprintf(rel, sizeof rel, "%s", fx);
    CU_ASSERT_EQUAL_FATAL(qf_img_preproc_load(qf_fixture(rel), &p), QF_OK);
    const qf_st_tensor *pv = tensor(&g, "pixel_values", QF_DT_F32);
    const qf_st_tensor *rz = tensor(&g, "resized_u8", QF_DT_U8);
    CU_ASSERT_EQUAL_FATAL(pv->n_dim, 4);
    CU_ASSERT_EQUAL_FATAL(pv->shape[1], 3);
    CU_ASSERT_EQUAL_FATAL(pv->shape[2], p.height);
    CU_ASSERT_EQUAL_FATAL(pv->shape[3], p.width);
    const size_t n = (size_t)3 * p.height * p.width;
    float *pix = malloc(n * sizeof *pix);
    uint8_t *res = malloc(n);
    for (size_t i = 0; i < g.n_img; i++) {
        const float *want = (const float *)pv->data + i * n;
        const uint8_t *want_rz = (const uint8_t *)rz->data + i * n;
        /* from the golden RGB: isolates resize + rescale + normalize */
        qf_img src = golden_rgb(&g, i);
        CU_ASSERT_EQUAL_FATAL(qf_img_preprocess(&p, &src, pix, res), QF_OK);
        QF_ASSERT_CLOSE(pix, want, n, 1e-6, 0, "pixel_values (from golden rgb)");
        CU_ASSERT(memcmp(res, want_rz, n) == 0);
        size_t exact = 0;
        for (size_t k = 0; k < n; k++) exact += pix[k] == want[k];
        if (exact != n) fprintf(stderr, "\n%s image %zu: %zu of %zu values not bit-exact\n",
                                fx, i, n - exact, n);
        /* end to end from the file */
        int w = 0, h = 0;
        memset(pix, 0, n * sizeof *pix);
        qf_status st = qf_img_load_pixels(image_path(&g, i), &p, NULL, pix, NULL, &w, &h);
        if (st) fprintf(stderr, "\n%s\n", qf_last_error());
        CU_ASSERT_EQUAL(st, QF_OK);
        CU_ASSERT_EQUAL(w, src.w);
        CU_ASSERT_EQUAL(h, src.h);
        QF_ASSERT_CLOSE(pix, want, n, 1e-6, 0, "pixel_values (from file)");
    }
    free(pix);
    free(res);
    golden_close(&g);
}

static void test_preproc_config(void) {
    const char *fxs[] = { "tiny-blip2-itm", "tiny-blip2-opt", "tiny-blip2-flan-t5" };
    for (int f = 0; f < 3; f++) {
        qf_img_preproc p;
        CU_ASSERT_EQUAL_FATAL(qf_img_preproc_load(qf_fixture(fxs[f]), &p), QF_OK);
        CU_ASSERT(p.do_resize && p.do_rescale && p.do_normalize && p.do_convert_rgb);
        CU_ASSERT_EQUAL(p.height, 56);
        CU_ASSERT_EQUAL(p.width, 56);
        CU_ASSERT_EQUAL(p.resample, 3);
        CU_ASSERT_EQUAL(p.rescale_factor, 1.0 / 255.0);
        CU_ASSERT_EQUAL(p.mean[0], 0.48145466f);
        CU_ASSERT_EQUAL(p.std[2], 0.27577711f);
    }
}

static void test_decode_itm(void) { check_decode("tiny-blip2-itm"); }
static void test_decode_opt(void) { check_decode("tiny-blip2-opt"); }
static void test_resize_itm(void) { check_resize("tiny-blip2-itm"); }
static void test_resize_opt(void) { check_resize("tiny-blip2-opt"); }
static void test_pixels_itm(void) { check_pixels("tiny-blip2-itm"); }
static void test_pixels_opt(void) { check_pixels("tiny-blip2-opt"); }
static void test_decode_t5(void) { check_decode("tiny-blip2-flan-t5"); }
static void test_resize_t5(void) { check_resize("tiny-blip2-flan-t5"); }
static void test_pixels_t5(void) { check_pixels("tiny-blip2-flan-t5"); }

static CU_TestInfo tests[] = {
    { "preproc_config", test_preproc_config },
    { "decode_itm", test_decode_itm },
    { "decode_opt", test_decode_opt },
    { "resize_itm", test_resize_itm },
    { "resize_opt", test_resize_opt },
    { "pixels_itm", test_pixels_itm },
    { "pixels_opt", test_pixels_opt },
    { "decode_t5", test_decode_t5 },
    { "resize_t5", test_resize_t5 },
    { "pixels_t5", test_pixels_t5 },
    CU_TEST_INFO_NULL,
};

int main(void) { return qf_test_main("image_golden", tests); }
