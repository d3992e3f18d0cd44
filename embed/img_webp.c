/* img_webp.c - WebP through libwebp's animation decoder (libwebpdemux), as
 * Pillow 9.4 reads every WebP file (WebPImagePlugin with HAVE_WEBPANIM):
 * WebPAnimDecoderNew with the default options (MODE_RGBA, non-premultiplied)
 * and the first WebPAnimDecoderGetNext canvas, i.e. the first frame blended
 * onto a transparent black canvas; convert("RGB") drops alpha. Lossy,
 * lossless, alpha and animated files all take this path. The EXIF chunk
 * (WebPDemuxGetChunk "EXIF") gives the orientation. The canvas size comes
 * from the demuxer, which allocates no pixels, so the limit is checked
 * before the decoder allocates its canvas. */
#include "embed/exif.h"
#include "embed/img_codec.h"

#include <string.h>
#include <webp/decode.h>
#include <webp/demux.h>

qf_status qf_img_decode_webp(const uint8_t *buf, size_t n, const char *name,
                             const qf_img_limits *lim, qf_img *out, int *orientation) {
    WebPData data = { buf, n };
    WebPAnimDecoder *dec = NULL;
    qf_status st = QF_OK;
    WebPDemuxer *demux = WebPDemux(&data);
    if (!demux) {
        /* A partial parse tells a file that ends early from a broken one. */
        WebPDemuxState state = WEBP_DEMUX_PARSE_ERROR;
        WebPDemuxDelete(WebPDemuxPartial(&data, &state));
        if (state == WEBP_DEMUX_PARSING_HEADER || state == WEBP_DEMUX_PARSED_HEADER)
            return qf_errorf(QF_ERR_FORMAT, "%s: truncated WebP (%zu bytes; the file ends inside "
                             "its chunks)", name, n);
        return qf_errorf(QF_ERR_FORMAT, "%s: corrupt WebP: invalid RIFF/WebP container", name);
    }
    uint32_t w = WebPDemuxGetI(demux, WEBP_FF_CANVAS_WIDTH);
    uint32_t h = WebPDemuxGetI(demux, WEBP_FF_CANVAS_HEIGHT);
    if ((st = qf_img_check_size(name, w, h, lim))) goto done;
    WebPChunkIterator it;
    if (WebPDemuxGetChunk(demux, "EXIF", 1, &it)) {
        *orientation = qf_exif_orientation(it.chunk.bytes, it.chunk.size);
        WebPDemuxReleaseChunkIterator(&it);
    }
    dec = WebPAnimDecoderNew(&data, NULL);
    if (!dec) {
        st = qf_errorf(QF_ERR_FORMAT, "%s: corrupt WebP: libwebp cannot set up a decoder for it "
                       "(bad frame headers, or out of memory)", name);
        goto done;
    }
    uint8_t *rgba = NULL;
    int timestamp = 0;
    if (!WebPAnimDecoderGetNext(dec, &rgba, &timestamp) || !rgba) {
        st = qf_errorf(QF_ERR_FORMAT, "%s: corrupt WebP: the first frame does not decode "
                       "(truncated or damaged bitstream)", name);
        goto done;
    }
    if ((st = qf_img_alloc(out, (int)w, (int)h, name, "WebP"))) goto done;
    size_t px = (size_t)w * h;
    for (size_t i = 0; i < px; i++) {
        out->rgb[3 * i + 0] = rgba[4 * i + 0];
        out->rgb[3 * i + 1] = rgba[4 * i + 1];
        out->rgb[3 * i + 2] = rgba[4 * i + 2];
    }
done:
    WebPAnimDecoderDelete(dec);
    WebPDemuxDelete(demux);
    return st;
}
