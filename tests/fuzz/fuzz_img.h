/* fuzz_img.h - the body shared by the image harnesses (fuzz_image and the
 * per-format fuzz_webp, fuzz_gif, fuzz_tiff, fuzz_bmp, fuzz_heif): decode
 * with qf_img_decode_mem under a small pixel limit (FUZZ_MAX_PIXELS), read
 * every decoded pixel (ASan checks the buffer is w*h*3), preprocess to 32 x
 * 32 as BlipImageProcessor would, resize with qf_img_resize_bicubic to a
 * size derived from the input hash, then run again with an allocation
 * failure injected. `fmt` (QF_IMG_FMT_UNKNOWN: any) is the format the input
 * must sniff as when it decodes. */
#ifndef QF_FUZZ_IMG_H
#define QF_FUZZ_IMG_H

#include "embed/image.h"
#include "tests/fuzz/fuzz_util.h"

#define FUZZ_MAX_PIXELS (1u << 16)
#define OUT 32

static volatile unsigned sink;

static void run(const uint8_t *data, size_t size, uint64_t h, int faulting, qf_img_format fmt) {
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
    FUZZ_CHECK(fmt == QF_IMG_FMT_UNKNOWN || qf_img_sniff(data, size) == fmt);
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

static void fuzz_img_one(const uint8_t *data, size_t size, qf_img_format fmt) {
    fuzz_reset();
    uint64_t h = fuzz_hash(data, size);
    run(data, size, h, 0, fmt);
    qf_alloc_fail_after((long)((h >> 16) % 10));
    run(data, size, h, 1, fmt);
    fuzz_reset();
}

/* A copy of the input with the format's signature written over its first
 * bytes (so the fuzzer spends its time inside that format's decoder);
 * inputs too short for the signature are used as they are. Caller frees. */
static inline uint8_t *fuzz_img_force(const uint8_t *d, size_t n, qf_img_format fmt, size_t *out_n) {
    uint8_t *b = malloc(n ? n : 1);
    if (!b) fuzz_die("out of memory");
    if (n) memcpy(b, d, n);
    *out_n = n;
    switch (fmt) {
    case QF_IMG_FMT_WEBP:
        if (n >= 12) { memcpy(b, "RIFF", 4); memcpy(b + 8, "WEBP", 4); }
        break;
    case QF_IMG_FMT_GIF:
        if (n >= 6) memcpy(b, (d[4] & 1) ? "GIF89a" : "GIF87a", 6);
        break;
    case QF_IMG_FMT_TIFF:
        if (n >= 4) memcpy(b, d[0] == 'M' ? "MM\0*" : "II*\0", 4);
        break;
    case QF_IMG_FMT_BMP:
        if (n >= 18) {
            static const uint8_t dib[7] = { 12, 40, 52, 56, 64, 108, 124 };
            b[0] = 'B'; b[1] = 'M';
            b[14] = dib[d[14] % 7]; b[15] = b[16] = b[17] = 0;
        }
        break;
    case QF_IMG_FMT_HEIF:
    case QF_IMG_FMT_AVIF:
        if (n >= 12) {
            static const char brands[4][5] = { "heic", "avif", "mif1", "heix" };
            memcpy(b + 4, "ftyp", 4);
            memcpy(b + 8, brands[d[8] & 3], 4);
        }
        break;
    default:
        break;
    }
    return b;
}

#endif
