/* heifenc.h - test helper: writes HEIC (x265) and AVIF (aom) files with
 * libheif's encoder, which Pillow cannot write. The picture is stored as
 * given and tagged with an orientation (libheif writes irot/imir boxes), so
 * a reader that applies the transforms shows qf_img_orient(picture, o). */
#ifndef QF_TEST_HEIFENC_H
#define QF_TEST_HEIFENC_H

#include <stddef.h>
#include <stdint.h>

/* The deterministic test picture: w x h RGB (caller frees with free). */
uint8_t *qf_test_heif_picture(int w, int h);

/* Encodes rgb (w x h) as AVIF (avif = 1) or HEIC, orientation 1..8, into a
 * malloc'd buffer (*out, *n). 0 on success, -1 with a message on stderr. */
int qf_test_heif_encode(const uint8_t *rgb, int w, int h, int avif, int orientation,
                        uint8_t **out, size_t *n);

#endif
