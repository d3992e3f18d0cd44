/* img_bmp.c - BMP decoding of its own, with Pillow 9.4's BmpImagePlugin
 * semantics. No well-kept Debian library fits: gdk-pixbuf and ImageMagick
 * are whole imaging stacks (GLib, many loaders) for a format that is a
 * header plus raw rows, and their palette/bitfield handling is not Pillow's;
 * stb_image is a vendored single header, not a maintained Debian library.
 *
 * What is read (everything else is QF_ERR_UNSUPPORTED, naming the variant):
 *   headers: OS/2 1.x (12 bytes: 16-bit sizes, 3-byte palette entries) and
 *            Windows 40/52/56/64/108/124 (signed height: negative = top-down);
 *   1, 4, 8 bits per pixel through the palette that follows the header (and
 *            the masks of a 40-byte BITFIELDS header); its length is the
 *            header's colour count or 2^bits; indices past it read Pillow's
 *            grey ramp (i, i, i), as for GIF;
 *   24 bits: BGR; 32 bits: BGRX, or BITFIELDS with the byte-aligned mask
 *            layouts Pillow accepts (alpha dropped);
 *   rows: 4-byte aligned, starting at the file header's pixel-data offset.
 * 16-bit and RLE-compressed files are refused: Pillow reads some of them,
 * qformer does not yet. */
#include "embed/img_codec.h"

#include <string.h>

static uint32_t le16(const uint8_t *p) { return (uint32_t)(p[0] | p[1] << 8); }
static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

qf_status qf_img_decode_bmp(const uint8_t *b, size_t n, const char *name,
                            const qf_img_limits *lim, qf_img *out, int *orientation) {
    (void)orientation;                        /* BMP has no EXIF orientation */
    if (n < 18) return qf_errorf(QF_ERR_FORMAT, "%s: truncated BMP (%zu bytes)", name, n);
    uint32_t data_off = le32(b + 10), hsize = le32(b + 14);
    if (n < 14 + (size_t)hsize)
        return qf_errorf(QF_ERR_FORMAT, "%s: truncated BMP (the file ends inside its %u-byte header)",
                         name, hsize);
    const uint8_t *h = b + 14;
    int64_t w, ht;
    uint32_t bits, comp = 0, colors = 0;
    int pal_entry = 4, top_down = 0;
    if (hsize == 12) {
        w = le16(h + 4);
        ht = le16(h + 6);
        bits = le16(h + 10);
        pal_entry = 3;
    } else {
        w = (int32_t)le32(h + 4);
        ht = (int32_t)le32(h + 8);
        bits = le16(h + 14);
        comp = le32(h + 16);
        colors = le32(h + 32);
        if (ht < 0) { top_down = 1; ht = -ht; }
        if (w < 0)
            return qf_errorf(QF_ERR_FORMAT, "%s: corrupt BMP: negative width %lld", name, (long long)w);
    }
    size_t pos = 14 + hsize;                  /* palette / masks follow the header */
    qf_status st = qf_img_check_size(name, (uint64_t)w, (uint64_t)ht, lim);
    if (st) return st;
    if (comp == 1 || comp == 2)
        return qf_errorf(QF_ERR_UNSUPPORTED, "%s: RLE%d-compressed BMP is not supported", name,
                         comp == 1 ? 8 : 4);
    if (comp != 0 && comp != 3)
        return qf_errorf(QF_ERR_UNSUPPORTED, "%s: BMP compression %u is not supported "
                         "(JPEG/PNG in BMP, ALPHABITFIELDS or unknown)", name, comp);
    int bpos[3] = { 2, 1, 0 };                /* byte of R, G, B in a pixel (BGR...) */
    if (bits == 32 || bits == 24) {
        if (comp == 3) {
            /* Pillow: four masks from a header of 56 bytes or more, else
             * three read after the header (alpha mask 0) -- also for the
             * 52-byte header, whose own masks Pillow does not use (fuzz:
             * tests/fuzz/regress/bmp/v2_header_masks_past_end read them
             * past the end of the buffer). Only Pillow's layouts. */
            uint32_t m[4] = { 0, 0, 0, 0 };
            if (hsize >= 56) {
                for (int k = 0; k < 4; k++) m[k] = le32(h + 40 + 4 * k);
            } else {
                if (n - pos < 12)
                    return qf_errorf(QF_ERR_FORMAT, "%s: truncated BMP (the file ends inside its "
                                     "colour masks)", name);
                for (int k = 0; k < 3; k++) m[k] = le32(b + pos + 4 * k);
            }
            static const struct { uint32_t bits, m[4]; int pos[3]; } layouts[] = {
                { 32, { 0xFF0000, 0xFF00, 0xFF, 0 },                 { 2, 1, 0 } },   /* BGRX */
                { 32, { 0xFF000000, 0xFF0000, 0xFF00, 0 },           { 3, 2, 1 } },   /* XBGR */
                { 32, { 0xFF000000, 0xFF0000, 0xFF00, 0xFF },        { 3, 2, 1 } },   /* ABGR */
                { 32, { 0xFF, 0xFF00, 0xFF0000, 0xFF000000 },        { 0, 1, 2 } },   /* RGBA */
                { 32, { 0xFF0000, 0xFF00, 0xFF, 0xFF000000 },        { 2, 1, 0 } },   /* BGRA */
                { 32, { 0, 0, 0, 0 },                                { 2, 1, 0 } },   /* BGRA */
                { 24, { 0xFF0000, 0xFF00, 0xFF, 0 },                 { 2, 1, 0 } },   /* BGR  */
            };
            int ok = 0;
            for (size_t i = 0; i < sizeof layouts / sizeof *layouts && !ok; i++)
                if (layouts[i].bits == bits && layouts[i].m[0] == m[0] && layouts[i].m[1] == m[1] &&
                    layouts[i].m[2] == m[2] && (bits == 24 || layouts[i].m[3] == m[3])) {
                    memcpy(bpos, layouts[i].pos, sizeof bpos);
                    ok = 1;
                }
            if (!ok)
                return qf_errorf(QF_ERR_UNSUPPORTED, "%s: %u-bit BMP with colour masks "
                                 "%08x %08x %08x %08x is not supported", name, bits, m[0], m[1],
                                 m[2], m[3]);
        }
    } else if (bits == 1 || bits == 4 || bits == 8) {
        if (comp != 0)
            return qf_errorf(QF_ERR_FORMAT, "%s: corrupt BMP: %u-bit palette image with colour "
                             "masks", name, bits);
    } else {
        return qf_errorf(QF_ERR_UNSUPPORTED, "%s: %u-bit BMP is not supported (1, 4, 8, 24 and "
                         "32 bits are)", name, bits);
    }

    uint8_t pal[256][3];
    for (int i = 0; i < 256; i++) pal[i][0] = pal[i][1] = pal[i][2] = (uint8_t)i;
    if (bits <= 8) {
        uint32_t nc = colors ? colors : 1u << bits;
        if (nc > 65536)
            return qf_errorf(QF_ERR_FORMAT, "%s: corrupt BMP: %u palette colours", name, nc);
        if ((uint64_t)nc * pal_entry > n - pos)
            return qf_errorf(QF_ERR_FORMAT, "%s: truncated BMP (the file ends inside its "
                             "%u-colour palette)", name, nc);
        for (uint32_t i = 0; i < nc && i < 256; i++) {
            const uint8_t *e = b + pos + (size_t)i * pal_entry;
            pal[i][0] = e[2]; pal[i][1] = e[1]; pal[i][2] = e[0];
        }
    }
    const size_t stride = (((size_t)w * bits + 31) >> 3) & ~(size_t)3;
    const size_t H = (size_t)ht, W = (size_t)w;
    if (data_off == 0) data_off = (uint32_t)pos;
    if (data_off > n || stride * H > n - data_off)
        return qf_errorf(QF_ERR_FORMAT, "%s: truncated BMP (%zu bytes of pixel data needed at "
                         "offset %u, %zu there)", name, stride * H, data_off,
                         data_off > n ? (size_t)0 : n - data_off);
    if ((st = qf_img_alloc(out, (int)w, (int)ht, name, "BMP"))) return st;
    const int Bpp = (int)bits / 8;
    for (size_t y = 0; y < H; y++) {
        const uint8_t *row = b + data_off + (top_down ? y : H - 1 - y) * stride;
        uint8_t *d = out->rgb + y * W * 3;
        for (size_t x = 0; x < W; x++, d += 3) {
            if (bits <= 8) {
                size_t bit = x * bits;
                unsigned i = (row[bit >> 3] >> (8 - bits - (bit & 7))) & ((1u << bits) - 1);
                memcpy(d, pal[i], 3);
            } else {
                const uint8_t *p = row + x * Bpp;
                d[0] = p[bpos[0]]; d[1] = p[bpos[1]]; d[2] = p[bpos[2]];
            }
        }
    }
    return QF_OK;
}
