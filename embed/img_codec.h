/* img_codec.h - internal to the image module (embed/image.c and the
 * per-format decoders embed/img_*.c); callers use embed/image.h.
 *
 * Every decoder takes the whole encoded file from memory, checks the pixel
 * limit (qf_img_check_size) from header values before any pixel buffer is
 * allocated, returns 8-bit RGB with the pixels Pillow's Image.open(...)
 * .convert("RGB") gives, and reports the EXIF orientation it found (0 when
 * none; qf_img_decode_mem applies it). On failure *out is untouched or
 * freed and the error text names the file, the format and the problem. */
#ifndef QF_IMG_CODEC_H
#define QF_IMG_CODEC_H

#include "embed/image.h"

/* QF_ERR_FORMAT for a zero size, QF_ERR_LIMIT ("decompression bomb") above
 * lim->max_pixels. */
qf_status qf_img_check_size(const char *name, uint64_t w, uint64_t h, const qf_img_limits *lim);

/* Allocates out->rgb for w x h (QF_ERR_NOMEM naming the file otherwise). */
qf_status qf_img_alloc(qf_img *out, int w, int h, const char *name, const char *fmt);

typedef qf_status (*qf_img_decoder)(const uint8_t *buf, size_t n, const char *name,
                                    const qf_img_limits *lim, qf_img *out, int *orientation);

qf_status qf_img_decode_webp(const uint8_t *buf, size_t n, const char *name,
                             const qf_img_limits *lim, qf_img *out, int *orientation);
qf_status qf_img_decode_gif(const uint8_t *buf, size_t n, const char *name,
                            const qf_img_limits *lim, qf_img *out, int *orientation);
qf_status qf_img_decode_tiff(const uint8_t *buf, size_t n, const char *name,
                             const qf_img_limits *lim, qf_img *out, int *orientation);
qf_status qf_img_decode_bmp(const uint8_t *buf, size_t n, const char *name,
                            const qf_img_limits *lim, qf_img *out, int *orientation);
qf_status qf_img_decode_heif(const uint8_t *buf, size_t n, const char *name,
                             const qf_img_limits *lim, qf_img *out, int *orientation);

#endif
