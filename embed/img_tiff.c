/* img_tiff.c - the first page of a TIFF through libtiff, unpacked the way
 * Pillow 9.4 (TiffImagePlugin OPEN_INFO rawmodes + convert("RGB")) does:
 *   MinIsBlack 1/2/4/8 bit   "1", "L;2", "L;4", "L": v * 255 / (2^d - 1)
 *   MinIsWhite 1/2/4/8 bit   the same, inverted (255 - v)
 *   MinIsBlack 16 bit        "I;16": convert("RGB") clips, v > 255 -> 255
 *   grey + alpha 8 bit       "LA": grey, alpha dropped
 *   RGB 8/16 bit             16-bit samples: the high byte
 *   RGB + extra 8 bit        unassociated "RGBA" and unspecified "RGBX":
 *                            alpha dropped; associated "RGBa": Pillow
 *                            un-premultiplies, v * 255 / a (0 when a = 0)
 *   RGBA 16 bit (unassoc.)   high bytes, alpha dropped
 *   palette 1/2/4/8 bit      ColorMap entries >> 8; indices past 2^bits
 *                            cannot occur
 *   CMYK 8 bit               Pillow's cmyk2rgb
 *   YCbCr + JPEG             libtiff's JPEGCOLORMODE_RGB (Pillow does the same)
 * in strips or tiles, chunky or planar (8/16-bit planar), any compression
 * libtiff decodes (none, LZW, Deflate, JPEG, PackBits, ...). Anything else
 * (floating point, 12-bit, YCbCr without JPEG, LAB, ...) is
 * QF_ERR_UNSUPPORTED naming the variant. libtiff's messages go to the error
 * text (errors) or nowhere (warnings) through per-handle handlers; its
 * largest single allocation is capped in proportion to the pixel limit.
 * Orientation: the Orientation tag of IFD0 with Pillow's EXIF rules
 * (qf_exif_orientation on the file itself); applied once -- Pillow 9.4
 * applies a TIFF's orientation twice (in load_end and again in
 * exif_transpose), a Pillow bug qformer does not reproduce. */
#include "embed/exif.h"
#include "embed/img_codec.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <tiffio.h>

typedef struct {
    const uint8_t *buf;
    toff_t         n, pos;
    const char    *name;
    char           msg[256];
} tiff_src;

static tmsize_t t_read(thandle_t h, void *dst, tmsize_t len) {
    tiff_src *s = h;
    if (len < 0 || s->pos >= s->n) return 0;
    toff_t k = (toff_t)len;
    if (k > s->n - s->pos) k = s->n - s->pos;
    memcpy(dst, s->buf + s->pos, (size_t)k);
    s->pos += k;
    return (tmsize_t)k;
}
static tmsize_t t_write(thandle_t h, void *src, tmsize_t len) { (void)h; (void)src; (void)len; return -1; }
static toff_t t_seek(thandle_t h, toff_t off, int whence) {
    tiff_src *s = h;
    toff_t base = whence == SEEK_CUR ? s->pos : whence == SEEK_END ? s->n : 0;
    if (off > UINT64_MAX - base) return (toff_t)-1;
    s->pos = base + off;
    return s->pos;
}
static int t_close(thandle_t h) { (void)h; return 0; }
static toff_t t_size(thandle_t h) { return ((tiff_src *)h)->n; }
static int t_map(thandle_t h, void **base, toff_t *size) { (void)h; (void)base; (void)size; return 0; }
static void t_unmap(thandle_t h, void *base, toff_t size) { (void)h; (void)base; (void)size; }

static int t_on_error(TIFF *tif, void *user, const char *module, const char *fmt, va_list ap) {
    (void)tif; (void)module;
    tiff_src *s = user;
    if (s->msg[0]) return 1;                          /* the first error says most */
    vsnprintf(s->msg, sizeof s->msg, fmt, ap);
    /* libtiff often starts with the file name, which the qf error already has */
    size_t k = strlen(s->name);
    if (!strncmp(s->msg, s->name, k) && !strncmp(s->msg + k, ": ", 2))
        memmove(s->msg, s->msg + k + 2, strlen(s->msg + k + 2) + 1);
    return 1;
}
static int t_on_warning(TIFF *tif, void *user, const char *module, const char *fmt, va_list ap) {
    (void)tif; (void)user; (void)module; (void)fmt; (void)ap;
    return 1;
}

/* A strip or tile that does not decode: "truncated" when its bytes run past
 * the end of the file, else libtiff's message. */
static qf_status chunk_fail(TIFF *tif, const tiff_src *s, const char *name, uint32_t k, const char *what) {
    int err = 0;
    uint64_t off = TIFFGetStrileOffsetWithErr(tif, k, &err);
    uint64_t cnt = err ? 0 : TIFFGetStrileByteCountWithErr(tif, k, &err);
    if (!err && (off > s->n || cnt > s->n - off))
        return qf_errorf(QF_ERR_FORMAT, "%s: truncated TIFF (%s %u ends at byte %llu, the file "
                         "has %llu)", name, what, k, (unsigned long long)(off + cnt),
                         (unsigned long long)s->n);
    return qf_errorf(QF_ERR_FORMAT, "%s: corrupt TIFF: %s %u does not decode%s%s", name, what, k,
                     s->msg[0] ? ": " : "", s->msg);
}

static qf_status t_fail(const tiff_src *s, const char *name, const char *what) {
    return qf_errorf(QF_ERR_FORMAT, "%s: corrupt TIFF: %s%s%s", name, what, s->msg[0] ? ": " : "",
                     s->msg);
}

static inline uint8_t muldiv255(int a, int b) {
    int t = a * b + 128;
    return (uint8_t)(((t >> 8) + t) >> 8);
}

enum { K_GREY, K_GREY_INV, K_GREY16, K_GREYA, K_RGB, K_RGBX, K_RGBa, K_PAL, K_CMYK };

typedef struct {
    uint32_t w, h;
    uint16_t bps, spp, kind;
    uint8_t  pal[256][3];
} layout;

static void row_to_rgb(const layout *L, const uint8_t *in, uint8_t *out) {
    const uint32_t w = L->w;
    const int d = L->bps, spp = L->spp;
    for (uint32_t x = 0; x < w; x++, out += 3) {
        switch (L->kind) {
        case K_GREY: case K_GREY_INV: case K_PAL: {
            unsigned v;
            if (d < 8) {
                size_t bit = (size_t)x * d;
                v = (in[bit >> 3] >> (8 - d - (bit & 7))) & ((1u << d) - 1);
            } else {
                v = in[x];
            }
            if (L->kind == K_PAL) { memcpy(out, L->pal[v], 3); break; }
            if (d < 8) v = v * (255u / ((1u << d) - 1));
            if (L->kind == K_GREY_INV) v = 255 - v;
            out[0] = out[1] = out[2] = (uint8_t)v;
            break;
        }
        case K_GREY16: {
            uint16_t v;
            memcpy(&v, in + 2 * (size_t)x, 2);             /* libtiff: native order */
            out[0] = out[1] = out[2] = (uint8_t)(v > 255 ? 255 : v);
            break;
        }
        case K_GREYA: case K_RGB: case K_RGBX: case K_RGBa: {
            const int nc = L->kind == K_GREYA ? 1 : 3;
            for (int c = 0; c < 3; c++) {
                const int ci = c < nc ? c : 0;
                if (d == 16) {
                    uint16_t v;
                    memcpy(&v, in + 2 * ((size_t)x * spp + ci), 2);
                    out[c] = (uint8_t)(v >> 8);
                } else {
                    out[c] = in[(size_t)x * spp + ci];
                }
            }
            if (L->kind == K_RGBa) {
                unsigned a = in[(size_t)x * spp + 3];
                for (int c = 0; c < 3; c++) {
                    unsigned v = a == 0 ? 0 : out[c] * 255u / a;
                    out[c] = (uint8_t)(v > 255 ? 255 : v);
                }
            }
            break;
        }
        case K_CMYK: {
            const uint8_t *p = in + (size_t)x * spp;
            int nk = 255 - p[3];
            for (int c = 0; c < 3; c++) {
                int v = nk - muldiv255(p[c], nk);
                out[c] = (uint8_t)(v < 0 ? 0 : v);
            }
            break;
        }
        }
    }
}

/* Picks the unpacking for the tags, or QF_ERR_UNSUPPORTED naming them. */
static qf_status pick_layout(TIFF *tif, const char *name, layout *L, uint16_t photo) {
    uint16_t sf = 1, n_extra = 0, *extra = NULL;
    TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLEFORMAT, &sf);
    TIFFGetFieldDefaulted(tif, TIFFTAG_EXTRASAMPLES, &n_extra, &extra);
    const int bps = L->bps, spp = L->spp, ex = n_extra ? extra[0] : 0;
    if (sf != SAMPLEFORMAT_UINT)
        return qf_errorf(QF_ERR_UNSUPPORTED, "%s: TIFF with %s samples is not supported", name,
                         sf == SAMPLEFORMAT_IEEEFP ? "floating-point" : "signed or complex");
    int ok = 0;
    switch (photo) {
    case PHOTOMETRIC_MINISBLACK:
    case PHOTOMETRIC_MINISWHITE:
        if (spp == 1 && (bps == 1 || bps == 2 || bps == 4 || bps == 8)) {
            L->kind = photo == PHOTOMETRIC_MINISWHITE ? K_GREY_INV : K_GREY;
            ok = 1;
        } else if (spp == 1 && bps == 16 && photo == PHOTOMETRIC_MINISBLACK) {
            L->kind = K_GREY16;
            ok = 1;
        } else if (spp == 2 && bps == 8 && photo == PHOTOMETRIC_MINISBLACK) {
            L->kind = K_GREYA;
            ok = 1;
        }
        break;
    case PHOTOMETRIC_RGB:
    case PHOTOMETRIC_YCBCR:                 /* JPEG-compressed, read as RGB (see caller) */
        if (spp == 3 && (bps == 8 || bps == 16)) { L->kind = K_RGB; ok = 1; }
        else if (spp == 4 && bps == 8) {
            L->kind = ex == EXTRASAMPLE_ASSOCALPHA ? K_RGBa : K_RGBX;
            ok = 1;
        } else if (spp == 4 && bps == 16 && ex == EXTRASAMPLE_UNASSALPHA) { L->kind = K_RGBX; ok = 1; }
        break;
    case PHOTOMETRIC_PALETTE:
        if (spp == 1 && (bps == 1 || bps == 2 || bps == 4 || bps == 8)) {
            uint16_t *r, *g, *b;
            if (!TIFFGetField(tif, TIFFTAG_COLORMAP, &r, &g, &b))
                return qf_errorf(QF_ERR_FORMAT, "%s: corrupt TIFF: palette image without a ColorMap", name);
            for (int i = 0; i < 256; i++) L->pal[i][0] = L->pal[i][1] = L->pal[i][2] = (uint8_t)i;
            for (int i = 0; i < (1 << bps); i++) {
                L->pal[i][0] = (uint8_t)(r[i] >> 8);
                L->pal[i][1] = (uint8_t)(g[i] >> 8);
                L->pal[i][2] = (uint8_t)(b[i] >> 8);
            }
            L->kind = K_PAL;
            ok = 1;
        }
        break;
    case PHOTOMETRIC_SEPARATED:
        if (spp == 4 && bps == 8) { L->kind = K_CMYK; ok = 1; }
        break;
    default:
        break;
    }
    if (!ok)
        return qf_errorf(QF_ERR_UNSUPPORTED, "%s: TIFF with photometric %u, %d samples of %d bits "
                         "is not supported", name, photo, spp, bps);
    return QF_OK;
}

/* Reads the whole first page as chunky rows of `rowbytes` into raw. */
static qf_status read_raw(TIFF *tif, const tiff_src *s, const char *name, const layout *L,
                          int planar, uint8_t *raw, size_t rowbytes) {
    const uint32_t w = L->w, h = L->h;
    const int spp = L->spp, bps = L->bps;
    const int planes = planar == PLANARCONFIG_SEPARATE ? spp : 1;
    const int spp_in = planes > 1 ? 1 : spp;        /* samples per pixel in one chunk */
    const size_t bytes_ps = (size_t)bps / 8;        /* planar: bps is 8 or 16 */
    uint8_t *chunk = NULL;
    qf_status st = QF_OK;
    if (TIFFIsTiled(tif)) {
        uint32_t tw = 0, th = 0;
        TIFFGetField(tif, TIFFTAG_TILEWIDTH, &tw);
        TIFFGetField(tif, TIFFTAG_TILELENGTH, &th);
        tmsize_t ts = TIFFTileSize(tif);
        if (!tw || !th || ts <= 0) return t_fail(s, name, "bad tile size");
        const size_t trow = ((size_t)tw * spp_in * bps + 7) / 8;
        if ((uint64_t)trow * th > (uint64_t)ts) return t_fail(s, name, "tile size below its rows");
        if (!(chunk = qf_malloc((size_t)ts)))
            return qf_errorf(QF_ERR_NOMEM, "%s: cannot allocate a %lld-byte TIFF tile", name, (long long)ts);
        for (int p = 0; p < planes && !st; p++)
            for (uint32_t y0 = 0; y0 < h && !st; y0 += th)
                for (uint32_t x0 = 0; x0 < w; x0 += tw) {
                    uint32_t t = TIFFComputeTile(tif, x0, y0, 0, (uint16_t)p);
                    if (TIFFReadEncodedTile(tif, t, chunk, ts) < 0) {
                        st = chunk_fail(tif, s, name, t, "tile");
                        break;
                    }
                    uint32_t rows = h - y0 < th ? h - y0 : th, cols = w - x0 < tw ? w - x0 : tw;
                    for (uint32_t y = 0; y < rows; y++) {
                        const uint8_t *src = chunk + (size_t)y * trow;
                        uint8_t *dst = raw + (size_t)(y0 + y) * rowbytes;
                        if (planes == 1) {
                            size_t off = (size_t)x0 * spp * bps / 8;
                            memcpy(dst + off, src, ((size_t)cols * spp * bps + 7) / 8);
                        } else {
                            for (uint32_t x = 0; x < cols; x++)
                                memcpy(dst + ((size_t)(x0 + x) * spp + p) * bytes_ps, src + x * bytes_ps, bytes_ps);
                        }
                    }
                }
    } else {
        uint32_t rps = h;
        TIFFGetFieldDefaulted(tif, TIFFTAG_ROWSPERSTRIP, &rps);
        if (rps == 0 || rps > h) rps = h;
        tmsize_t ss = TIFFStripSize(tif);
        const size_t srow = ((size_t)w * spp_in * bps + 7) / 8;
        if (ss <= 0) return t_fail(s, name, "bad strip size");
        if (!(chunk = qf_malloc((size_t)ss)))
            return qf_errorf(QF_ERR_NOMEM, "%s: cannot allocate a %lld-byte TIFF strip", name, (long long)ss);
        const uint32_t per_plane = (h + rps - 1) / rps;
        for (int p = 0; p < planes && !st; p++)
            for (uint32_t k = 0; k < per_plane; k++) {
                uint32_t y0 = k * rps, rows = h - y0 < rps ? h - y0 : rps;
                uint32_t strip = (uint32_t)p * per_plane + k;
                tmsize_t got = TIFFReadEncodedStrip(tif, strip, chunk, ss);
                if (got < 0) {
                    st = chunk_fail(tif, s, name, strip, "strip");
                    break;
                }
                if ((uint64_t)got < (uint64_t)rows * srow) {
                    st = qf_errorf(QF_ERR_FORMAT, "%s: corrupt TIFF: strip %u holds %lld bytes, "
                                   "its %u rows need %llu", name, strip, (long long)got, rows,
                                   (unsigned long long)rows * srow);
                    break;
                }
                for (uint32_t y = 0; y < rows; y++) {
                    const uint8_t *src = chunk + (size_t)y * srow;
                    uint8_t *dst = raw + (size_t)(y0 + y) * rowbytes;
                    if (planes == 1) memcpy(dst, src, srow);
                    else
                        for (uint32_t x = 0; x < w; x++)
                            memcpy(dst + ((size_t)x * spp + p) * bytes_ps, src + x * bytes_ps, bytes_ps);
                }
            }
    }
    qf_free(chunk);
    return st;
}

qf_status qf_img_decode_tiff(const uint8_t *buf, size_t n, const char *name,
                             const qf_img_limits *lim, qf_img *out, int *orientation) {
    tiff_src s = { buf, n, 0, name, "" };
    uint8_t *raw = NULL;
    qf_status st = QF_OK;
    TIFFOpenOptions *opts = TIFFOpenOptionsAlloc();
    if (!opts) return qf_errorf(QF_ERR_NOMEM, "%s: cannot create a TIFF decoder", name);
    TIFFOpenOptionsSetErrorHandlerExtR(opts, t_on_error, &s);
    TIFFOpenOptionsSetWarningHandlerExtR(opts, t_on_warning, &s);
    uint64_t cap = lim->max_pixels * 8;
    if (cap < ((uint64_t)16 << 20)) cap = (uint64_t)16 << 20;
    TIFFOpenOptionsSetMaxSingleMemAlloc(opts, cap > (uint64_t)INT64_MAX ? INT64_MAX : (tmsize_t)cap);
    TIFF *tif = TIFFClientOpenExt(name, "rm", &s, t_read, t_write, t_seek, t_close, t_size,
                                  t_map, t_unmap, opts);
    TIFFOpenOptionsFree(opts);
    if (!tif) {
        if (n < 16) return qf_errorf(QF_ERR_FORMAT, "%s: truncated TIFF (%zu bytes)", name, n);
        return t_fail(&s, name, "cannot read its first directory");
    }
    layout L;
    memset(&L, 0, sizeof L);
    uint16_t photo = 0xffff, planar = PLANARCONFIG_CONTIG, comp = COMPRESSION_NONE;
    if (!TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &L.w) || !TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &L.h)) {
        st = t_fail(&s, name, "no image size");
        goto done;
    }
    if ((st = qf_img_check_size(name, L.w, L.h, lim))) goto done;
    TIFFGetFieldDefaulted(tif, TIFFTAG_BITSPERSAMPLE, &L.bps);
    TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLESPERPIXEL, &L.spp);
    TIFFGetFieldDefaulted(tif, TIFFTAG_PLANARCONFIG, &planar);
    TIFFGetFieldDefaulted(tif, TIFFTAG_COMPRESSION, &comp);
    if (!TIFFGetField(tif, TIFFTAG_PHOTOMETRIC, &photo)) {
        st = t_fail(&s, name, "no PhotometricInterpretation tag");
        goto done;
    }
    if (photo == PHOTOMETRIC_YCBCR) {
        if (comp != COMPRESSION_JPEG || planar != PLANARCONFIG_CONTIG) {
            st = qf_errorf(QF_ERR_UNSUPPORTED, "%s: YCbCr TIFF without JPEG compression is not supported", name);
            goto done;
        }
        TIFFSetField(tif, TIFFTAG_JPEGCOLORMODE, JPEGCOLORMODE_RGB);
    }
    if ((st = pick_layout(tif, name, &L, photo))) goto done;
    if (planar == PLANARCONFIG_SEPARATE && L.spp > 1 && L.bps % 8) {
        st = qf_errorf(QF_ERR_UNSUPPORTED, "%s: planar TIFF with %u-bit samples is not supported", name, L.bps);
        goto done;
    }
    const size_t rowbytes = ((size_t)L.w * L.spp * L.bps + 7) / 8;
    if (!(raw = qf_malloc(rowbytes * L.h))) {
        st = qf_errorf(QF_ERR_NOMEM, "%s: cannot allocate %zu bytes of TIFF samples", name, rowbytes * L.h);
        goto done;
    }
    if ((st = read_raw(tif, &s, name, &L, planar, raw, rowbytes))) goto done;
    if ((st = qf_img_alloc(out, (int)L.w, (int)L.h, name, "TIFF"))) goto done;
    for (uint32_t y = 0; y < L.h; y++)
        row_to_rgb(&L, raw + (size_t)y * rowbytes, out->rgb + (size_t)y * L.w * 3);
    *orientation = qf_exif_orientation(buf, n);
done:
    qf_free(raw);
    TIFFClose(tif);
    if (st) qf_img_free(out);
    return st;
}
