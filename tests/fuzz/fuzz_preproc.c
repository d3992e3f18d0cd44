/* fuzz_preproc.c - libFuzzer harness: the input is a preprocessor_config.json
 * given to qf_img_preproc_parse. Accepted settings must be usable: a size in
 * 1..65536 on each side, BICUBIC when resizing, no zero std when normalising;
 * when the output is small (<= 64 x 64) they are applied with
 * qf_img_preprocess to a fixed 7 x 5 image (or one of the configured size
 * when do_resize is off, after checking the size mismatch is refused). A
 * failed parse must leave the HF defaults in *out. */
#include "embed/image.h"
#include "tests/fuzz/fuzz_util.h"

static qf_img make_img(int w, int h) {
    qf_img img = { w, h, malloc((size_t)w * h * 3) };
    if (!img.rgb) fuzz_die("malloc");
    for (size_t i = 0; i < (size_t)w * h * 3; i++) img.rgb[i] = (uint8_t)(i * 37 + 11);
    return img;
}

static void run(const uint8_t *data, size_t size, int faulting) {
    qf_img_preproc p, def;
    qf_img_preproc_default(&def);
    memset(&p, 0x5a, sizeof p);
    qf_status s = qf_img_preproc_parse((const char *)data, size, "fuzz.json", &p);
    if (s != QF_OK) {
        fuzz_check_error(s);
        FUZZ_CHECK(s != QF_ERR_NOMEM || faulting);
        FUZZ_CHECK(memcmp(&p, &def, sizeof p) == 0);
        return;
    }
    FUZZ_CHECK(p.height >= 1 && p.height <= 65536 && p.width >= 1 && p.width <= 65536);
    if (p.do_resize) FUZZ_CHECK(p.resample == 3);
    if (p.do_normalize)
        for (int c = 0; c < 3; c++) FUZZ_CHECK(p.std[c] != 0.0f);
    if ((long)p.height * p.width > 64 * 64) return;

    size_t S = (size_t)p.height * p.width;
    float *pixels = malloc(3 * S * sizeof *pixels);
    uint8_t *resized = malloc(3 * S);
    if (!pixels || !resized) fuzz_die("malloc");
    qf_img small = make_img(7, 5);
    s = qf_img_preprocess(&p, &small, pixels, resized);
    if (!p.do_resize && (p.width != 7 || p.height != 5)) {
        FUZZ_CHECK(s == QF_ERR_SHAPE);
    } else if (s != QF_OK) {
        fuzz_check_error(s);
        FUZZ_CHECK(faulting && s == QF_ERR_NOMEM);
    }
    if (!p.do_resize) {
        qf_img exact = make_img(p.width, p.height);
        s = qf_img_preprocess(&p, &exact, pixels, NULL);
        FUZZ_CHECK(s == QF_OK);
        free(exact.rgb);
    }
    free(small.rgb);
    free(resized);
    free(pixels);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_reset();
    run(data, size, 0);
    qf_alloc_fail_after((long)(fuzz_hash(data, size) % 8));
    run(data, size, 1);
    fuzz_reset();
    return 0;
}
