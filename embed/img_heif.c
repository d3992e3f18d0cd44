/* img_heif.c - HEIF/HEIC and AVIF through libheif (Debian's 1.15, with the
 * libde265 and dav1d/aom decoders built in): the primary image, decoded to
 * 8-bit interleaved RGB with the file's transforms (irot rotation, imir
 * mirror, clap crop) applied, HDR reduced to 8 bits by libheif, alpha
 * dropped. Pillow cannot open these without a plugin, so the reference is
 * libheif's own RGB output. The EXIF orientation of a HEIF is not applied:
 * the format's transforms carry the orientation (and phones write both,
 * agreeing), as libheif and pillow-heif do. The size (after transforms) is
 * checked against the pixel limit before anything is decoded, and libheif's
 * own per-side limit is set (see below). */
#include "embed/img_codec.h"

#include <libheif/heif.h>
#include <math.h>
#include <string.h>

qf_status qf_img_decode_heif(const uint8_t *buf, size_t n, const char *name,
                             const qf_img_limits *lim, qf_img *out, int *orientation) {
    (void)orientation;
    const char *fmt = qf_img_sniff(buf, n) == QF_IMG_FMT_AVIF ? "AVIF" : "HEIF";
    struct heif_image_handle *hd = NULL;
    struct heif_image *img = NULL;
    struct heif_decoding_options *opt = NULL;
    qf_status st = QF_OK;
    struct heif_context *ctx = heif_context_alloc();
    if (!ctx) return qf_errorf(QF_ERR_NOMEM, "%s: cannot create a %s decoder", name, fmt);
    /* libheif 1.15 checks its limit per side (a width or height above it is
     * refused), and for a grid image it allocates and decodes the whole grid
     * its descriptor declares, however small the image's ispe size (fuzz:
     * tests/fuzz/regress/heif/grid_35103x6528_ispe_8x12, 709 bytes, 9 s and
     * 700 MB before this cap). So each side is capped at twice the side of a
     * square at the pixel limit, and at most 16384: panoramas up to 16384
     * pixels wide still decode, a grid costs at most 16384^2 pixels. */
    double side = 2.0 * ceil(sqrt((double)lim->max_pixels));
    heif_context_set_maximum_image_size_limit(ctx, side > 16384.0 ? 16384 : (int)side);
    struct heif_error e = heif_context_read_from_memory_without_copy(ctx, buf, n, NULL);
    if (e.code != heif_error_Ok) {
        st = qf_errorf(e.subcode == heif_suberror_Security_limit_exceeded ? QF_ERR_LIMIT :
                       e.code == heif_error_Memory_allocation_error ? QF_ERR_NOMEM :
                       e.code == heif_error_Unsupported_feature || e.code == heif_error_Unsupported_filetype
                           ? QF_ERR_UNSUPPORTED : QF_ERR_FORMAT,
                       "%s: corrupt or unsupported %s: %s", name, fmt, e.message);
        goto done;
    }
    e = heif_context_get_primary_image_handle(ctx, &hd);
    if (e.code != heif_error_Ok) {
        st = qf_errorf(QF_ERR_FORMAT, "%s: corrupt %s: no primary image: %s", name, fmt, e.message);
        goto done;
    }
    int w = heif_image_handle_get_width(hd), h = heif_image_handle_get_height(hd);
    if ((st = qf_img_check_size(name, w < 0 ? 0 : (uint64_t)w, h < 0 ? 0 : (uint64_t)h, lim))) goto done;
    if (!(opt = heif_decoding_options_alloc())) {
        st = qf_errorf(QF_ERR_NOMEM, "%s: cannot allocate %s decoding options", name, fmt);
        goto done;
    }
    opt->convert_hdr_to_8bit = 1;
    e = heif_decode_image(hd, &img, heif_colorspace_RGB, heif_chroma_interleaved_RGB, opt);
    if (e.code != heif_error_Ok) {
        st = qf_errorf(e.subcode == heif_suberror_Security_limit_exceeded ? QF_ERR_LIMIT :
                       e.code == heif_error_Unsupported_feature ? QF_ERR_UNSUPPORTED :
                       e.code == heif_error_Memory_allocation_error ? QF_ERR_NOMEM : QF_ERR_FORMAT,
                       "%s: %s image does not decode: %s", name, fmt, e.message);
        goto done;
    }
    int stride = 0;
    const uint8_t *px = heif_image_get_plane_readonly(img, heif_channel_interleaved, &stride);
    int iw = heif_image_get_width(img, heif_channel_interleaved);
    int ih = heif_image_get_height(img, heif_channel_interleaved);
    if (!px || iw <= 0 || ih <= 0 || stride < iw * 3) {
        st = qf_errorf(QF_ERR_FORMAT, "%s: %s decoder returned no RGB plane", name, fmt);
        goto done;
    }
    if ((st = qf_img_check_size(name, (uint64_t)iw, (uint64_t)ih, lim))) goto done;
    if ((st = qf_img_alloc(out, iw, ih, name, fmt))) goto done;
    for (int y = 0; y < ih; y++)
        memcpy(out->rgb + (size_t)y * iw * 3, px + (size_t)y * stride, (size_t)iw * 3);
done:
    heif_image_release(img);
    heif_decoding_options_free(opt);
    heif_image_handle_release(hd);
    heif_context_free(ctx);
    return st;
}
