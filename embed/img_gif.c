/* img_gif.c - the first frame of a GIF through giflib, with the pixels
 * Pillow 9.4's GifImagePlugin gives for frame 0 followed by convert("RGB"):
 *   - the canvas is the logical screen, grown to hold the frame when the
 *     frame's rectangle reaches past it;
 *   - the canvas starts as the frame's transparent index when its Graphic
 *     Control Extension has one (the last GCE before the frame counts),
 *     else as index 0;
 *   - the frame's indices are written as they are (transparent ones too:
 *     convert("RGB") ignores transparency) through the local colour table,
 *     else the global one;
 *   - palette lookups follow Pillow's palette image: entries the table does
 *     not define are the grey ramp (i, i, i), as is a missing table (mode L).
 * Only the records up to the first image are read (DGifSlurp would read
 * every frame: a damaged later frame must not reject the file Pillow opens). */
#include "embed/img_codec.h"

#include <gif_lib.h>
#include <string.h>

typedef struct {
    const uint8_t *buf;
    size_t         n, pos;
} gif_src;

static int gif_read(GifFileType *g, GifByteType *dst, int len) {
    gif_src *s = g->UserData;
    size_t k = len < 0 ? 0 : (size_t)len;
    if (k > s->n - s->pos) k = s->n - s->pos;
    memcpy(dst, s->buf + s->pos, k);
    s->pos += k;
    return (int)k;
}

static qf_status gif_error(const char *name, int code, const char *what) {
    const char *msg = GifErrorString(code);
    if (code == D_GIF_ERR_READ_FAILED)
        return qf_errorf(QF_ERR_FORMAT, "%s: truncated GIF (the file ends %s)", name, what);
    return qf_errorf(QF_ERR_FORMAT, "%s: corrupt GIF %s: %s", name, what, msg ? msg : "giflib error");
}

qf_status qf_img_decode_gif(const uint8_t *buf, size_t n, const char *name,
                            const qf_img_limits *lim, qf_img *out, int *orientation) {
    gif_src src = { buf, n, 0 };
    int err = 0, trans = -1;
    qf_status st = QF_OK;
    uint8_t *canvas = NULL, *line = NULL;
    (void)orientation;                       /* GIF has no EXIF orientation */
    GifFileType *g = DGifOpen(&src, gif_read, &err);
    if (!g) {
        size_t need = 13 + (n >= 13 && (buf[10] & 0x80) ? (size_t)3 << ((buf[10] & 7) + 1) : 0);
        if (n < need)
            return qf_errorf(QF_ERR_FORMAT, "%s: truncated GIF (%zu bytes; its header and global "
                             "colour table take %zu)", name, n, need);
        return gif_error(name, err, "in its header");
    }

    for (;;) {
        GifRecordType type;
        if (DGifGetRecordType(g, &type) == GIF_ERROR) {
            st = gif_error(name, g->Error, "before its first image");
            goto done;
        }
        if (type == IMAGE_DESC_RECORD_TYPE) break;
        if (type == TERMINATE_RECORD_TYPE) {
            st = qf_errorf(QF_ERR_FORMAT, "%s: corrupt GIF: no image in the file", name);
            goto done;
        }
        if (type == EXTENSION_RECORD_TYPE) {
            int code;
            GifByteType *ext = NULL;
            if (DGifGetExtension(g, &code, &ext) == GIF_ERROR) {
                st = gif_error(name, g->Error, "in an extension block");
                goto done;
            }
            if (code == GRAPHICS_EXT_FUNC_CODE && ext && ext[0] >= 4)
                trans = (ext[1] & 1) ? ext[4] : -1;
            while (ext) {
                if (DGifGetExtensionNext(g, &ext) == GIF_ERROR) {
                    st = gif_error(name, g->Error, "in an extension block");
                    goto done;
                }
            }
        }
    }
    if (DGifGetImageDesc(g) == GIF_ERROR) {
        st = gif_error(name, g->Error, "in the first image's descriptor");
        goto done;
    }
    const GifImageDesc *d = &g->Image;
    uint64_t fx0 = (uint64_t)d->Left, fy0 = (uint64_t)d->Top;
    uint64_t fw = (uint64_t)d->Width, fh = (uint64_t)d->Height;
    uint64_t cw = (uint64_t)g->SWidth, ch = (uint64_t)g->SHeight;
    if (fx0 + fw > cw) cw = fx0 + fw;
    if (fy0 + fh > ch) ch = fy0 + fh;
    if ((st = qf_img_check_size(name, cw, ch, lim))) goto done;
    if (fw == 0 || fh == 0) {
        st = qf_errorf(QF_ERR_FORMAT, "%s: corrupt GIF: the first image is %llu x %llu pixels",
                       name, (unsigned long long)fw, (unsigned long long)fh);
        goto done;
    }
    canvas = qf_malloc((size_t)cw * ch);
    line = qf_malloc((size_t)fw);
    if (!canvas || !line) {
        st = qf_errorf(QF_ERR_NOMEM, "%s: cannot allocate %llu x %llu GIF pixels", name,
                       (unsigned long long)cw, (unsigned long long)ch);
        goto done;
    }
    memset(canvas, trans >= 0 ? trans : 0, (size_t)cw * ch);
    static const int start[4] = { 0, 4, 2, 1 }, step[4] = { 8, 8, 4, 2 };
    int passes = d->Interlace ? 4 : 1;
    for (int p = 0; p < passes; p++) {
        int y0 = d->Interlace ? start[p] : 0, dy = d->Interlace ? step[p] : 1;
        for (uint64_t y = (uint64_t)y0; y < fh; y += (uint64_t)dy) {
            if (DGifGetLine(g, line, (int)fw) == GIF_ERROR) {
                st = gif_error(name, g->Error, "inside the image data");
                goto done;
            }
            memcpy(canvas + (fy0 + y) * cw + fx0, line, (size_t)fw);
        }
    }
    /* Palette: Pillow's grey ramp, overwritten by the table's entries. */
    uint8_t pal[256][3];
    for (int i = 0; i < 256; i++) pal[i][0] = pal[i][1] = pal[i][2] = (uint8_t)i;
    const ColorMapObject *cm = d->ColorMap ? d->ColorMap : g->SColorMap;
    if (cm && cm->Colors)
        for (int i = 0; i < cm->ColorCount && i < 256; i++) {
            pal[i][0] = cm->Colors[i].Red;
            pal[i][1] = cm->Colors[i].Green;
            pal[i][2] = cm->Colors[i].Blue;
        }
    if ((st = qf_img_alloc(out, (int)cw, (int)ch, name, "GIF"))) goto done;
    for (size_t i = 0; i < (size_t)cw * ch; i++) memcpy(out->rgb + 3 * i, pal[canvas[i]], 3);
done:
    qf_free(line);
    qf_free(canvas);
    DGifCloseFile(g, &err);
    return st;
}
