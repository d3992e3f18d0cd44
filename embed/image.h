/* image.h - image decoding (PNG via libpng, JPEG via libjpeg-turbo), PIL-exact
 * BICUBIC resizing and the Hugging Face BlipImageProcessor preprocessing.
 *
 * Decoded images are 8-bit RGB, HWC, with the pixels PIL's Image.open(...)
 * .convert("RGB") gives for the same file (alpha dropped, grey and palette
 * expanded, 16-bit samples reduced the way Pillow does: see image.c). The
 * format is found from the magic bytes, never from the file name. */
#ifndef QF_IMAGE_H
#define QF_IMAGE_H

#include "embed/common.h"

#include <stddef.h>
#include <stdint.h>

typedef enum {
    QF_IMG_FMT_UNKNOWN = 0,
    QF_IMG_FMT_PNG,
    QF_IMG_FMT_JPEG,
} qf_img_format;

/* PIL's Image.MAX_IMAGE_PIXELS (PIL itself only warns above it and refuses
 * above twice as many; qformer refuses above it). */
#define QF_IMG_DEFAULT_MAX_PIXELS     89478485ULL
#define QF_IMG_DEFAULT_MAX_FILE_BYTES ((size_t)256 << 20)

/* Safety limits, checked before anything large is allocated: the pixel
 * count comes from the image header, the byte count from the file size.
 * A field left 0 takes its default. */
typedef struct {
    uint64_t max_pixels;       /* width * height above this: QF_ERR_LIMIT   */
    size_t   max_file_bytes;   /* larger files: QF_ERR_LIMIT (qf_img_load)   */
} qf_img_limits;

qf_img_limits qf_img_limits_default(void);

/* An 8-bit RGB image, row-major HWC: pixel (x, y) channel c is
 * rgb[(y * w + x) * 3 + c]. `rgb` is owned by the qf_img (qf_img_free). */
typedef struct {
    int      w, h;
    uint8_t *rgb;
} qf_img;

void qf_img_free(qf_img *img);            /* frees rgb and zeroes *img; NULL ok */

/* Format of an encoded image from its first bytes (n may be short). */
qf_img_format qf_img_sniff(const void *buf, size_t n);
const char   *qf_img_format_name(qf_img_format f);     /* "PNG", "JPEG", "unknown" */

/* Reads and decodes the file at `path`. lim: NULL = defaults. On failure
 * *out is zeroed and the error text names the file and the problem:
 * QF_ERR_IO (unreadable), QF_ERR_FORMAT (empty, not an image, truncated,
 * corrupt), QF_ERR_UNSUPPORTED (another image format, e.g. GIF), QF_ERR_LIMIT
 * (pixel or file-size limit; "decompression bomb" with width x height). */
qf_status qf_img_load(const char *path, const qf_img_limits *lim, qf_img *out);

/* Same from memory; `buf` is borrowed for the call only; `name` is used in
 * error messages (may be NULL: "<memory>"). */
qf_status qf_img_decode_mem(const void *buf, size_t n, const char *name,
                            const qf_img_limits *lim, qf_img *out);

/* PIL Image.resize((out_w, out_h), Image.BICUBIC) on an RGB image: bicubic
 * a = -0.5 with the support widened by the scale factor when shrinking
 * (antialiasing), fixed-point coefficients, horizontal pass then vertical
 * pass through an 8-bit intermediate. Same size: a copy. *dst receives a
 * new image the caller frees with qf_img_free. */
qf_status qf_img_resize_bicubic(const qf_img *src, int out_w, int out_h, qf_img *dst);

/* BlipImageProcessor settings (preprocessor_config.json). */
typedef struct {
    int    do_resize;
    int    height, width;      /* size {"height","width"}; output is [3,height,width] */
    int    resample;           /* PIL filter id; only 3 (BICUBIC) is implemented      */
    int    do_rescale;
    double rescale_factor;     /* applied in double, then rounded to float32          */
    int    do_normalize;
    float  mean[3], std[3];    /* float32, as numpy casts them                         */
    int    do_convert_rgb;     /* decoding always yields RGB; kept for reference       */
} qf_img_preproc;

/* HF defaults: resize to 384x384 BICUBIC, rescale 1/255, OpenAI CLIP mean/std. */
void qf_img_preproc_default(qf_img_preproc *p);

/* Reads <model_dir>/preprocessor_config.json; absent fields take the HF
 * defaults. `size` may be {"height","width"}, a single int or [h, w];
 * {"shortest_edge"} (which BlipImageProcessor rejects too) and resample
 * filters other than BICUBIC give QF_ERR_UNSUPPORTED. */
qf_status qf_img_preproc_load(const char *model_dir, qf_img_preproc *out);
/* QF_ERR_FORMAT unless the preprocessor makes square images of the vision
 * model's `image_size`; `model_dir` (may be NULL) prefixes the message. */
qf_status qf_img_preproc_check(const qf_img_preproc *pp, int image_size, const char *model_dir);
/* Same from JSON text (`name` is used in error messages). */
qf_status qf_img_preproc_parse(const char *json, size_t n, const char *name,
                               qf_img_preproc *out);

/* rgb -> pixel_values as BlipImageProcessor computes them:
 *   resized  = PIL BICUBIC resize to (height, width)             (uint8)
 *   x        = float32(resized * rescale_factor)   (product in double)
 *   pixels   = (x - mean) / std                    (float32 arithmetic)
 * pixels: caller-owned [3, height, width] floats (CHW); resized: NULL or
 * caller-owned [height, width, 3] bytes. With do_resize off the image must
 * already be height x width (QF_ERR_SHAPE otherwise). */
qf_status qf_img_preprocess(const qf_img_preproc *p, const qf_img *rgb,
                            float *pixels, uint8_t *resized);

/* qf_img_load + qf_img_preprocess. w, h (may be NULL) receive the size of the
 * decoded image. Buffers as for qf_img_preprocess. */
qf_status qf_img_load_pixels(const char *path, const qf_img_preproc *p,
                             const qf_img_limits *lim, float *pixels, uint8_t *resized,
                             int *w, int *h);

#endif
