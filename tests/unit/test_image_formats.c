/* test_image_formats.c - the WebP, GIF, TIFF, BMP and HEIF/AVIF decoders and
 * qf_img_orient, on files written here with the formats' own encoders
 * (libwebp, giflib, libtiff, libheif; BMP by hand): lossless round trips
 * (incl. tiled and planar TIFF, which Pillow cannot write for the e2e
 * test), the pixel limit checked from the header for each format (and
 * header-only bombs), truncated files at many cuts (an error naming the
 * format, never a crash), allocation failures on every path, and HEIC/AVIF
 * equal to libheif's own RGB with the irot/imir transforms applied. Pixel
 * equality with Pillow is tests/e2e/image_formats.sh. */
#include "embed/image.h"
#include "tests/heifenc.h"
#include "tests/testutil.h"

#include <gif_lib.h>
#include <libheif/heif.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tiffio.h>
#include <webp/encode.h>

enum { W = 40, H = 26 };

static uint8_t *picture(int w, int h) {
    uint8_t *p = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *q = p + ((size_t)y * w + x) * 3;
            q[0] = (uint8_t)(x * 6 + y);
            q[1] = (uint8_t)(y * 9);
            q[2] = (uint8_t)((x * y) ^ 0x5a);
        }
    return p;
}

static uint8_t *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)len);
    CU_ASSERT_EQUAL_FATAL(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

/* ---- encoders ---------------------------------------------------------- */

static uint8_t *enc_webp(const uint8_t *rgb, size_t *n) {
    uint8_t *out = NULL;
    *n = WebPEncodeLosslessRGB(rgb, W, H, W * 3, &out);
    CU_ASSERT_FATAL(*n > 0);
    uint8_t *b = malloc(*n);
    memcpy(b, out, *n);
    WebPFree(out);
    return b;
}

typedef struct { uint8_t *buf; size_t n; } membuf;

static int gif_write(GifFileType *g, const GifByteType *d, int len) {
    membuf *m = g->UserData;
    m->buf = realloc(m->buf, m->n + (size_t)len);
    memcpy(m->buf + m->n, d, (size_t)len);
    m->n += (size_t)len;
    return len;
}

/* 16-colour GIF: index (x + 2y) % 16, palette entry i = (16i, 255 - 16i, 7i). */
static uint8_t *enc_gif(size_t *n, int interlace, uint8_t *expect) {
    membuf m = { NULL, 0 };
    int err = 0;
    GifFileType *g = EGifOpen(&m, gif_write, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    ColorMapObject *cm = GifMakeMapObject(16, NULL);
    for (int i = 0; i < 16; i++) {
        cm->Colors[i].Red = (GifByteType)(16 * i);
        cm->Colors[i].Green = (GifByteType)(255 - 16 * i);
        cm->Colors[i].Blue = (GifByteType)(7 * i);
    }
    CU_ASSERT_EQUAL(EGifPutScreenDesc(g, W, H, 4, 0, cm), GIF_OK);
    CU_ASSERT_EQUAL(EGifPutImageDesc(g, 0, 0, W, H, interlace, NULL), GIF_OK);
    GifPixelType line[W];
    static const int start[4] = { 0, 4, 2, 1 }, step[4] = { 8, 8, 4, 2 };
    for (int p = 0; p < (interlace ? 4 : 1); p++)
        for (int y = interlace ? start[p] : 0; y < H; y += interlace ? step[p] : 1) {
            for (int x = 0; x < W; x++) line[x] = (GifPixelType)((x + 2 * y) % 16);
            CU_ASSERT_EQUAL(EGifPutLine(g, line, W), GIF_OK);
        }
    EGifCloseFile(g, &err);
    GifFreeMapObject(cm);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            int i = (x + 2 * y) % 16;
            uint8_t *e = expect + ((size_t)y * W + x) * 3;
            e[0] = (uint8_t)(16 * i); e[1] = (uint8_t)(255 - 16 * i); e[2] = (uint8_t)(7 * i);
        }
    *n = m.n;
    return m.buf;
}

typedef enum { T_STRIPS, T_TILED, T_PLANAR } tiff_kind;

static uint8_t *enc_tiff(const uint8_t *rgb, uint16_t comp, tiff_kind kind, size_t *n) {
    char path[512];
    snprintf(path, sizeof path, "%s/t_%u_%d.tif", qf_test_tmpdir(), comp, (int)kind);
    TIFF *t = TIFFOpen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    TIFFSetField(t, TIFFTAG_IMAGEWIDTH, W);
    TIFFSetField(t, TIFFTAG_IMAGELENGTH, H);
    TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, 8);
    TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, 3);
    TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_RGB);
    TIFFSetField(t, TIFFTAG_COMPRESSION, comp);
    TIFFSetField(t, TIFFTAG_PLANARCONFIG, kind == T_PLANAR ? PLANARCONFIG_SEPARATE : PLANARCONFIG_CONTIG);
    if (kind == T_TILED) {
        TIFFSetField(t, TIFFTAG_TILEWIDTH, 16);
        TIFFSetField(t, TIFFTAG_TILELENGTH, 16);
        uint8_t tile[16 * 16 * 3];
        for (int y0 = 0; y0 < H; y0 += 16)
            for (int x0 = 0; x0 < W; x0 += 16) {
                memset(tile, 0, sizeof tile);
                for (int y = 0; y < 16 && y0 + y < H; y++)
                    for (int x = 0; x < 16 && x0 + x < W; x++)
                        memcpy(tile + (y * 16 + x) * 3, rgb + ((size_t)(y0 + y) * W + x0 + x) * 3, 3);
                CU_ASSERT(TIFFWriteTile(t, tile, (uint32_t)x0, (uint32_t)y0, 0, 0) > 0);
            }
    } else {
        TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, 4);
        uint8_t row[W * 3];
        for (int s = 0; s < (kind == T_PLANAR ? 3 : 1); s++)
            for (int y = 0; y < H; y++) {
                if (kind == T_PLANAR)
                    for (int x = 0; x < W; x++) row[x] = rgb[((size_t)y * W + x) * 3 + s];
                else
                    memcpy(row, rgb + (size_t)y * W * 3, W * 3);
                CU_ASSERT(TIFFWriteScanline(t, row, (uint32_t)y, (uint16_t)s) == 1);
            }
    }
    TIFFClose(t);
    return read_all(path, n);
}

static void put16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { put16(p, v); put16(p + 2, v >> 16); }

/* 24-bit bottom-up BMP with a 40-byte header. */
static uint8_t *enc_bmp(const uint8_t *rgb, size_t *n) {
    const size_t stride = ((size_t)W * 3 + 3) & ~(size_t)3;
    *n = 54 + stride * H;
    uint8_t *b = calloc(1, *n);
    b[0] = 'B'; b[1] = 'M';
    put32(b + 2, (uint32_t)*n);
    put32(b + 10, 54);
    put32(b + 14, 40);
    put32(b + 18, W);
    put32(b + 22, H);
    put16(b + 26, 1);
    put16(b + 28, 24);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            const uint8_t *s = rgb + ((size_t)y * W + x) * 3;
            uint8_t *d = b + 54 + (size_t)(H - 1 - y) * stride + (size_t)x * 3;
            d[0] = s[2]; d[1] = s[1]; d[2] = s[0];
        }
    return b;
}

/* ---- tests --------------------------------------------------------------- */

static void expect_pixels(const uint8_t *b, size_t n, const uint8_t *want, int w, int h, const char *what) {
    qf_img img;
    qf_status st = qf_img_decode_mem(b, n, what, NULL, &img);
    if (st) fprintf(stderr, "\n%s: %s\n", what, qf_last_error());
    CU_ASSERT_EQUAL_FATAL(st, QF_OK);
    CU_ASSERT(img.w == w && img.h == h);
    int same = img.w == w && img.h == h && !memcmp(img.rgb, want, (size_t)w * h * 3);
    if (!same) fprintf(stderr, "\n%s: pixels differ\n", what);
    CU_ASSERT(same);
    qf_img_free(&img);
}

static void test_lossless_round_trips(void) {
    uint8_t *pic = picture(W, H), gif_want[W * H * 3];
    size_t n;
    uint8_t *b = enc_webp(pic, &n);
    CU_ASSERT_EQUAL(qf_img_sniff(b, n), QF_IMG_FMT_WEBP);
    expect_pixels(b, n, pic, W, H, "lossless.webp");
    free(b);
    for (int il = 0; il < 2; il++) {
        b = enc_gif(&n, il, gif_want);
        expect_pixels(b, n, gif_want, W, H, il ? "interlaced.gif" : "plain.gif");
        free(b);
    }
    const uint16_t comps[] = { COMPRESSION_NONE, COMPRESSION_LZW, COMPRESSION_ADOBE_DEFLATE,
                               COMPRESSION_PACKBITS };
    for (size_t c = 0; c < sizeof comps / sizeof *comps; c++)
        for (int k = T_STRIPS; k <= T_PLANAR; k++) {
            b = enc_tiff(pic, comps[c], (tiff_kind)k, &n);
            char what[64];
            snprintf(what, sizeof what, "compression %u kind %d.tif", comps[c], k);
            expect_pixels(b, n, pic, W, H, what);
            free(b);
        }
    b = enc_bmp(pic, &n);
    expect_pixels(b, n, pic, W, H, "24bit.bmp");
    free(b);
    free(pic);
}

typedef struct {
    const char *fmt;
    uint8_t    *b;
    size_t      n;
} sample;

static int samples(sample *s) {
    uint8_t *pic = picture(W, H), gif_want[W * H * 3];
    int k = 0;
    s[k].fmt = "WebP"; s[k].b = enc_webp(pic, &s[k].n); k++;
    s[k].fmt = "GIF";  s[k].b = enc_gif(&s[k].n, 1, gif_want); k++;
    s[k].fmt = "TIFF"; s[k].b = enc_tiff(pic, COMPRESSION_LZW, T_TILED, &s[k].n); k++;
    s[k].fmt = "TIFF"; s[k].b = enc_tiff(pic, COMPRESSION_ADOBE_DEFLATE, T_PLANAR, &s[k].n); k++;
    s[k].fmt = "BMP";  s[k].b = enc_bmp(pic, &s[k].n); k++;
    free(pic);
    pic = qf_test_heif_picture(W, H);
    CU_ASSERT_FATAL(qf_test_heif_encode(pic, W, H, 0, 6, &s[k].b, &s[k].n) == 0);
    s[k++].fmt = "HEIF";
    CU_ASSERT_FATAL(qf_test_heif_encode(pic, W, H, 1, 3, &s[k].b, &s[k].n) == 0);
    s[k++].fmt = "AVIF";
    free(pic);
    return k;
}

static void test_pixel_limit(void) {
    sample s[8];
    int ns = samples(s);
    for (int i = 0; i < ns; i++) {
        qf_img img;
        qf_img_limits lim = { W * H - 1, 0 };
        qf_status st = qf_img_decode_mem(s[i].b, s[i].n, s[i].fmt, &lim, &img);
        CU_ASSERT_EQUAL(st, QF_ERR_LIMIT);
        CU_ASSERT_PTR_NOT_NULL(strstr(qf_last_error(), "decompression bomb"));
        CU_ASSERT(img.rgb == NULL && img.w == 0);
        lim.max_pixels = W * H;
        CU_ASSERT_EQUAL(qf_img_decode_mem(s[i].b, s[i].n, s[i].fmt, &lim, &img), QF_OK);
        qf_img_free(&img);
        free(s[i].b);
    }
}

/* Header-only files claiming huge images: QF_ERR_LIMIT from the header. */
static void test_header_bombs(void) {
    qf_img img;
    uint8_t gif[32] = "GIF89a";
    put16(gif + 6, 60000); put16(gif + 8, 60000);
    gif[13] = ',';
    put16(gif + 18, 60000); put16(gif + 20, 60000);
    gif[23] = 8;
    CU_ASSERT_EQUAL(qf_img_decode_mem(gif, 25, "bomb.gif", NULL, &img), QF_ERR_LIMIT);

    uint8_t bmp[64] = { 'B', 'M' };
    put32(bmp + 10, 54); put32(bmp + 14, 40); put32(bmp + 18, 50000); put32(bmp + 22, 50000);
    put16(bmp + 26, 1); put16(bmp + 28, 24);
    CU_ASSERT_EQUAL(qf_img_decode_mem(bmp, 64, "bomb.bmp", NULL, &img), QF_ERR_LIMIT);
    CU_ASSERT_PTR_NOT_NULL(strstr(qf_last_error(), "50000 x 50000"));

    /* TIFF: width, length 100000, 8-bit grey, one strip of 1 byte */
    uint8_t tif[128] = "II*\0";
    put32(tif + 4, 8);
    put16(tif + 8, 6);
    const uint16_t tags[6][2] = { { 256, 4 }, { 257, 4 }, { 258, 3 }, { 262, 3 }, { 273, 4 }, { 279, 4 } };
    const uint32_t vals[6] = { 100000, 100000, 8, 1, 100, 1 };
    for (int i = 0; i < 6; i++) {
        uint8_t *e = tif + 10 + 12 * i;
        put16(e, tags[i][0]); put16(e + 2, tags[i][1]); put32(e + 4, 1); put32(e + 8, vals[i]);
    }
    CU_ASSERT_EQUAL(qf_img_decode_mem(tif, 110, "bomb.tif", NULL, &img), QF_ERR_LIMIT);

    /* WebP lossless (VP8L) header claiming 16384 x 16384 */
    uint8_t webp[36] = "RIFF\0\0\0\0WEBPVP8L";
    put32(webp + 4, 28);
    put32(webp + 16, 16);
    webp[20] = 0x2f;
    put32(webp + 21, 0x3fffu | 0x3fffu << 14);
    qf_status st = qf_img_decode_mem(webp, 36, "bomb.webp", NULL, &img);
    CU_ASSERT_EQUAL(st, QF_ERR_LIMIT);
    if (st != QF_ERR_LIMIT) fprintf(stderr, "\nbomb.webp: %s\n", qf_last_error());
}

static void test_truncated(void) {
    sample s[8];
    int ns = samples(s);
    for (int i = 0; i < ns; i++) {
        for (int tenth = 1; tenth < 10; tenth++) {
            size_t k = s[i].n * (size_t)tenth / 10;
            uint8_t *c = malloc(k);
            memcpy(c, s[i].b, k);
            qf_img img;
            qf_status st = qf_img_decode_mem(c, k, "cut", NULL, &img);
            CU_ASSERT(st == QF_ERR_FORMAT || st == QF_ERR_UNSUPPORTED);
            if (st == QF_OK) {
                fprintf(stderr, "\n%s cut to %zu of %zu bytes decoded\n", s[i].fmt, k, s[i].n);
                qf_img_free(&img);
            } else if (!strstr(qf_last_error(), s[i].fmt) && k >= 16) {
                fprintf(stderr, "\n%s cut: error does not name the format: %s\n", s[i].fmt, qf_last_error());
                CU_FAIL("format not named");
            }
            free(c);
        }
        free(s[i].b);
    }
}

static void test_alloc_failures(void) {
    sample s[8];
    int ns = samples(s);
    for (int i = 0; i < ns; i++) {
        int ok = 0;
        for (long k = 0; k < 64 && !ok; k++) {
            qf_img img;
            qf_alloc_fail_after(k);
            qf_status st = qf_img_decode_mem(s[i].b, s[i].n, s[i].fmt, NULL, &img);
            qf_alloc_fail_after(-1);
            if (st == QF_OK) {
                ok = 1;
                qf_img_free(&img);
            } else {
                CU_ASSERT_EQUAL(st, QF_ERR_NOMEM);
                CU_ASSERT(img.rgb == NULL && img.w == 0 && img.h == 0);
            }
        }
        CU_ASSERT(ok);
        free(s[i].b);
    }
}

static void test_orient(void) {
    /* 3 x 2 image, pixel value = 10 * y + x in every channel:
     *   0  1  2
     *  10 11 12                                                           */
    static const uint8_t want[9][6] = {
        { 0 },
        { 0, 1, 2, 10, 11, 12 },          /* 1 */
        { 2, 1, 0, 12, 11, 10 },          /* 2 FLIP_LEFT_RIGHT */
        { 12, 11, 10, 2, 1, 0 },          /* 3 ROTATE_180 */
        { 10, 11, 12, 0, 1, 2 },          /* 4 FLIP_TOP_BOTTOM */
        { 0, 10, 1, 11, 2, 12 },          /* 5 TRANSPOSE (2 x 3) */
        { 10, 0, 11, 1, 12, 2 },          /* 6 ROTATE_270: 90 clockwise */
        { 12, 2, 11, 1, 10, 0 },          /* 7 TRANSVERSE */
        { 2, 12, 1, 11, 0, 10 },          /* 8 ROTATE_90: 90 counter-clockwise */
    };
    for (int o = 1; o <= 8; o++) {
        qf_img img = { 3, 2, qf_malloc(18) };
        for (int i = 0; i < 6; i++) memset(img.rgb + 3 * i, (i / 3) * 10 + i % 3, 3);
        CU_ASSERT_EQUAL(qf_img_orient(&img, o), QF_OK);
        CU_ASSERT(o >= 5 ? (img.w == 2 && img.h == 3) : (img.w == 3 && img.h == 2));
        for (int i = 0; i < 6; i++) CU_ASSERT_EQUAL(img.rgb[3 * i + 1], want[o][i]);
        qf_img_free(&img);
    }
    qf_img img = { 3, 2, qf_malloc(18) };
    memset(img.rgb, 7, 18);
    qf_alloc_fail_after(0);
    CU_ASSERT_EQUAL(qf_img_orient(&img, 6), QF_ERR_NOMEM);
    qf_alloc_fail_after(-1);
    CU_ASSERT(img.w == 3 && img.h == 2 && img.rgb[17] == 7);
    CU_ASSERT_EQUAL(qf_img_orient(&img, 0), QF_OK);
    CU_ASSERT_EQUAL(qf_img_orient(&img, 9), QF_OK);
    CU_ASSERT(img.w == 3 && img.h == 2);
    qf_img_free(&img);
}

/* HEIC / AVIF: qformer's pixels are libheif's own RGB with the transforms. */
static void test_heif_equals_libheif(void) {
    uint8_t *pic = qf_test_heif_picture(W, H);      /* smooth: lossy coding stays close */
    for (int avif = 0; avif < 2; avif++)
        for (int o = 1; o <= 8; o += 5) {
            uint8_t *b;
            size_t n;
            CU_ASSERT_FATAL(qf_test_heif_encode(pic, W, H, avif, o, &b, &n) == 0);
            CU_ASSERT_EQUAL(qf_img_sniff(b, n), avif ? QF_IMG_FMT_AVIF : QF_IMG_FMT_HEIF);
            struct heif_context *ctx = heif_context_alloc();
            struct heif_image_handle *hd = NULL;
            struct heif_image *ref = NULL;
            CU_ASSERT_FATAL(heif_context_read_from_memory_without_copy(ctx, b, n, NULL).code == 0);
            CU_ASSERT_FATAL(heif_context_get_primary_image_handle(ctx, &hd).code == 0);
            CU_ASSERT_FATAL(heif_decode_image(hd, &ref, heif_colorspace_RGB, heif_chroma_interleaved_RGB,
                                              NULL).code == 0);
            int stride, rw = heif_image_get_width(ref, heif_channel_interleaved);
            int rh = heif_image_get_height(ref, heif_channel_interleaved);
            const uint8_t *rp = heif_image_get_plane_readonly(ref, heif_channel_interleaved, &stride);
            CU_ASSERT(o >= 5 ? (rw == H && rh == W) : (rw == W && rh == H));
            qf_img img;
            CU_ASSERT_EQUAL_FATAL(qf_img_decode_mem(b, n, "x", NULL, &img), QF_OK);
            CU_ASSERT(img.w == rw && img.h == rh);
            int same = 1;
            for (int y = 0; y < rh && same; y++)
                same = !memcmp(img.rgb + (size_t)y * rw * 3, rp + (size_t)y * stride, (size_t)rw * 3);
            CU_ASSERT(same);
            /* and close to the picture oriented by qf_img_orient (lossy coding) */
            qf_img up = { W, H, qf_malloc(W * H * 3) };
            memcpy(up.rgb, pic, W * H * 3);
            CU_ASSERT_EQUAL(qf_img_orient(&up, o), QF_OK);
            double err = 0;
            for (size_t i = 0; i < (size_t)W * H * 3; i++) err += abs((int)up.rgb[i] - img.rgb[i]);
            err /= W * H * 3;
            if (err >= 8) fprintf(stderr, "\n%s o%d: mean error %.2f\n", avif ? "AVIF" : "HEIC", o, err);
            CU_ASSERT(err < 8);
            qf_img_free(&up);
            qf_img_free(&img);
            heif_image_release(ref);
            heif_image_handle_release(hd);
            heif_context_free(ctx);
            free(b);
        }
    free(pic);
}

static CU_TestInfo tests[] = {
    { "lossless round trips: WebP, GIF, TIFF strips/tiles/planar, BMP", test_lossless_round_trips },
    { "pixel limit from the header, every format", test_pixel_limit },
    { "header-only bombs: GIF, BMP, TIFF, WebP", test_header_bombs },
    { "truncated files: errors naming the format", test_truncated },
    { "allocation failures on every path", test_alloc_failures },
    { "qf_img_orient = Pillow's transpose methods", test_orient },
    { "HEIC/AVIF = libheif's RGB with transforms", test_heif_equals_libheif },
    CU_TEST_INFO_NULL,
};

int main(void) { return qf_test_main("image_formats", tests); }
