/* heifenc.c - see heifenc.h. */
#include "tests/heifenc.h"

#include <libheif/heif.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint8_t *qf_test_heif_picture(int w, int h) {
    uint8_t *p = malloc((size_t)w * h * 3);
    if (!p) return NULL;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *q = p + ((size_t)y * w + x) * 3;
            int block = y < h / 4 && x < w / 3;       /* a red block top-left */
            q[0] = block ? 240 : (uint8_t)(255 * x / (w - 1));
            q[1] = block ? 20 : (uint8_t)(255 * y / (h - 1));
            q[2] = block ? 30 : 128;
        }
    return p;
}

typedef struct {
    uint8_t *buf;
    size_t   n;
} sink;

static struct heif_error write_cb(struct heif_context *ctx, const void *data, size_t size, void *user) {
    (void)ctx;
    sink *s = user;
    struct heif_error ok = { heif_error_Ok, heif_suberror_Unspecified, "" };
    uint8_t *b = realloc(s->buf, s->n + size);
    if (!b) {
        struct heif_error e = { heif_error_Memory_allocation_error, heif_suberror_Unspecified, "oom" };
        return e;
    }
    memcpy(b + s->n, data, size);
    s->buf = b;
    s->n += size;
    return ok;
}

int qf_test_heif_encode(const uint8_t *rgb, int w, int h, int avif, int orientation,
                        uint8_t **out, size_t *n) {
    struct heif_context *ctx = heif_context_alloc();
    struct heif_encoder *enc = NULL;
    struct heif_image *img = NULL;
    struct heif_encoding_options *opt = heif_encoding_options_alloc();
    sink s = { NULL, 0 };
    int rc = -1;
    struct heif_error e = heif_context_get_encoder_for_format(
        ctx, avif ? heif_compression_AV1 : heif_compression_HEVC, &enc);
    if (e.code) goto done;
    heif_encoder_set_lossy_quality(enc, 90);
    if (avif) heif_encoder_set_parameter_integer(enc, "speed", 9);
    e = heif_image_create(w, h, heif_colorspace_RGB, heif_chroma_interleaved_RGB, &img);
    if (e.code) goto done;
    e = heif_image_add_plane(img, heif_channel_interleaved, w, h, 8);
    if (e.code) goto done;
    int stride = 0;
    uint8_t *p = heif_image_get_plane(img, heif_channel_interleaved, &stride);
    for (int y = 0; y < h; y++) memcpy(p + (size_t)y * stride, rgb + (size_t)y * w * 3, (size_t)w * 3);
    opt->image_orientation = (enum heif_orientation)orientation;
    e = heif_context_encode_image(ctx, img, enc, opt, NULL);
    if (e.code) goto done;
    struct heif_writer wr = { 1, write_cb };
    e = heif_context_write(ctx, &wr, &s);
    if (e.code) goto done;
    *out = s.buf;
    *n = s.n;
    s.buf = NULL;
    rc = 0;
done:
    if (rc) fprintf(stderr, "heifenc: %s encoding failed: %s\n", avif ? "AVIF" : "HEIC", e.message);
    free(s.buf);
    heif_image_release(img);
    heif_encoding_options_free(opt);
    if (enc) heif_encoder_release(enc);
    heif_context_free(ctx);
    return rc;
}
