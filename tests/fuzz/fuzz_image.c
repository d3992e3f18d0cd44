/* fuzz_image.c - libFuzzer harness: the input is an encoded image (PNG or
 * JPEG, sniffed by magic) decoded by qf_img_decode_mem under a small pixel
 * limit (FUZZ_MAX_PIXELS), then preprocessed to 32 x 32 as
 * BlipImageProcessor would, and resized with qf_img_resize_bicubic to a size
 * derived from the input hash (1..96 on each side: both shrinking and
 * enlarging). Every decoded pixel is read (ASan checks the buffer is w*h*3).
 * A second pass injects an allocation failure into decode + preprocess. */
#include "embed/image.h"
#include "tests/fuzz/fuzz_util.h"

#define FUZZ_MAX_PIXELS (1u << 16)
#define OUT 32

static volatile unsigned sink;

static void run(const uint8_t *data, size_t size, uint64_t h, int faulting) {
    qf_img_limits lim = { FUZZ_MAX_PIXELS, 0 };
    qf_img img;
    memset(&img, 0x77, sizeof img);
    qf_status s = qf_img_decode_mem(data, size, "fuzz", &lim, &img);
    if (s != QF_OK) {
        fuzz_check_error(s);
        FUZZ_CHECK(s != QF_ERR_NOMEM || faulting);
        FUZZ_CHECK(img.rgb == NULL && img.w == 0 && img.h == 0);
        return;
    }
    FUZZ_CHECK(qf_img_sniff(data, size) != QF_IMG_FMT_UNKNOWN);
    FUZZ_CHECK(img.rgb && img.w > 0 && img.h > 0);
    FUZZ_CHECK((uint64_t)img.w * (uint64_t)img.h <= FUZZ_MAX_PIXELS);
    unsigned acc = 0;
    for (size_t i = 0; i < (size_t)img.w * img.h * 3; i++) acc += img.rgb[i];
    sink = acc;

    qf_img_preproc p;
    qf_img_preproc_default(&p);
    p.height = p.width = OUT;
    static float pixels[3 * OUT * OUT];
    static uint8_t resized[OUT * OUT * 3];
    s = qf_img_preprocess(&p, &img, pixels, resized);
    if (s != QF_OK) {
        fuzz_check_error(s);
        FUZZ_CHECK(faulting && s == QF_ERR_NOMEM);
    } else {
        for (size_t i = 0; i < 3 * OUT * OUT; i++) FUZZ_CHECK(pixels[i] > -3.0f && pixels[i] < 3.0f);
    }

    int ow = 1 + (int)(h % 96), oh = 1 + (int)((h >> 8) % 96);
    qf_img out;
    s = qf_img_resize_bicubic(&img, ow, oh, &out);
    if (s == QF_OK) {
        FUZZ_CHECK(out.w == ow && out.h == oh && out.rgb);
        acc = 0;
        for (size_t i = 0; i < (size_t)ow * oh * 3; i++) acc += out.rgb[i];
        sink = acc;
        /* same size: an exact copy */
        qf_img same;
        if (qf_img_resize_bicubic(&img, img.w, img.h, &same) == QF_OK) {
            FUZZ_CHECK(memcmp(same.rgb, img.rgb, (size_t)img.w * img.h * 3) == 0);
            qf_img_free(&same);
        } else {
            FUZZ_CHECK(faulting);
        }
        qf_img_free(&out);
    } else {
        fuzz_check_error(s);
        FUZZ_CHECK(faulting && s == QF_ERR_NOMEM && out.rgb == NULL);
    }
    qf_img_free(&img);
    FUZZ_CHECK(img.rgb == NULL);
    qf_img_free(NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_reset();
    uint64_t h = fuzz_hash(data, size);
    run(data, size, h, 0);
    qf_alloc_fail_after((long)((h >> 16) % 10));
    run(data, size, h, 1);
    fuzz_reset();
    return 0;
}
