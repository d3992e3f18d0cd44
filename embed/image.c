/* image.c - PNG/JPEG decoding to RGB with Pillow's convert("RGB") semantics,
 * Pillow's BICUBIC resampling and BlipImageProcessor preprocessing.
 *
 * libpng and libjpeg report errors through longjmp: every value changed after
 * the setjmp lives in a job struct owned by the caller of the function that
 * calls setjmp, so nothing is indeterminate when the jump lands. Neither
 * library prints: their messages become the qf error text (warnings go to the
 * debug log). */
#include "embed/image.h"

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include <jpeglib.h>  /* after stdio.h: it uses FILE and size_t */

/* ------------------------------------------------------------------------ */
/* common                                                                   */
/* ------------------------------------------------------------------------ */

qf_img_limits qf_img_limits_default(void) {
    qf_img_limits l = { QF_IMG_DEFAULT_MAX_PIXELS, QF_IMG_DEFAULT_MAX_FILE_BYTES };
    return l;
}

static qf_img_limits limits_or_default(const qf_img_limits *lim) {
    qf_img_limits l = qf_img_limits_default();
    if (lim && lim->max_pixels) l.max_pixels = lim->max_pixels;
    if (lim && lim->max_file_bytes) l.max_file_bytes = lim->max_file_bytes;
    return l;
}

void qf_img_free(qf_img *img) {
    if (!img) return;
    qf_free(img->rgb);
    img->rgb = NULL;
    img->w = img->h = 0;
}

static const uint8_t png_magic[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };

qf_img_format qf_img_sniff(const void *buf, size_t n) {
    const uint8_t *b = buf;
    if (n >= 8 && memcmp(b, png_magic, 8) == 0) return QF_IMG_FMT_PNG;
    if (n >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff) return QF_IMG_FMT_JPEG;
    return QF_IMG_FMT_UNKNOWN;
}

const char *qf_img_format_name(qf_img_format f) {
    switch (f) {
    case QF_IMG_FMT_PNG:  return "PNG";
    case QF_IMG_FMT_JPEG: return "JPEG";
    default:              return "unknown";
    }
}

/* Image formats PIL would open but qformer does not decode (for messages). */
static const char *other_format(const uint8_t *b, size_t n) {
    if (n >= 6 && (memcmp(b, "GIF87a", 6) == 0 || memcmp(b, "GIF89a", 6) == 0)) return "GIF";
    if (n >= 12 && memcmp(b, "RIFF", 4) == 0 && memcmp(b + 8, "WEBP", 4) == 0) return "WebP";
    if (n >= 4 && (memcmp(b, "II*\0", 4) == 0 || memcmp(b, "MM\0*", 4) == 0)) return "TIFF";
    if (n >= 12 && memcmp(b + 4, "ftyp", 4) == 0) {
        static const char brands[][5] = { "heic", "heix", "heim", "heis", "mif1", "msf1",
                                          "avif", "avis" };
        for (size_t i = 0; i < sizeof brands / sizeof *brands; i++)
            if (memcmp(b + 8, brands[i], 4) == 0) return "HEIF/AVIF";
    }
    if (n >= 18 && b[0] == 'B' && b[1] == 'M') {     /* + a known DIB header size */
        unsigned dib = b[14] | b[15] << 8 | (unsigned)b[16] << 16 | (unsigned)b[17] << 24;
        if (dib == 12 || dib == 40 || dib == 52 || dib == 56 || dib == 64 || dib == 108 ||
            dib == 124)
            return "BMP";
    }
    return NULL;
}

/* Refuses images above the pixel limit from header values, before any
 * pixel buffer exists. */
static qf_status check_size(const char *name, uint64_t w, uint64_t h, const qf_img_limits *lim) {
    if (w == 0 || h == 0)
        return qf_errorf(QF_ERR_FORMAT, "%s: image has zero size (%llu x %llu)", name,
                         (unsigned long long)w, (unsigned long long)h);
    uint64_t px = w * h;
    if (w > INT_MAX || h > INT_MAX || px > lim->max_pixels || px > SIZE_MAX / 8)
        return qf_errorf(QF_ERR_LIMIT,
                         "%s: decompression bomb: %llu x %llu = %llu pixels, more than the "
                         "limit of %llu", name, (unsigned long long)w, (unsigned long long)h,
                         (unsigned long long)px, (unsigned long long)lim->max_pixels);
    return QF_OK;
}

/* ------------------------------------------------------------------------ */
/* PNG                                                                      */
/* ------------------------------------------------------------------------ */

/* Rows are read raw (no libpng transforms except de-interlacing) and turned
 * into RGB here, following Pillow's PNG modes and convert("RGB"):
 *   grey 1/2/4 bit   "1", "L;2", "L;4": v * 255 / (2^d - 1)
 *   grey 8 bit       "L"
 *   grey 16 bit      "I;16": convert("RGB") clips, v > 255 -> 255 (not v >> 8)
 *   grey+alpha 8/16  "LA" / "LA;16B": grey (high byte when 16-bit), alpha dropped
 *   RGB(A) 16 bit    "RGB;16B" / "RGBA;16B": high byte of each sample
 *   palette 1..8     through PLTE; entries past the PLTE length are black
 *   tRNS, gAMA, iCCP, sBIT are ignored, as PIL's convert("RGB") ignores them. */

typedef struct {
    const char    *name;
    const uint8_t *buf;
    size_t         n, pos;
    qf_img_limits  lim;
    png_structp    png;
    png_infop      info;
    int            truncated;          /* the reader ran out of bytes        */
    char           msg[256];           /* libpng's error text                */
    uint8_t        pal[256][3];
    uint8_t       *raw;                /* one raw row, or all rows (Adam7)   */
    png_bytep     *rows;
    qf_img         img;
} png_job;

static void png_on_error(png_structp png, png_const_charp msg) {
    png_job *j = png_get_error_ptr(png);
    snprintf(j->msg, sizeof j->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg) {
    png_job *j = png_get_error_ptr(png);
    qf_log(QF_LOG_DEBUG, "%s: libpng: %s", j->name, msg);
}

static void png_read_mem(png_structp png, png_bytep out, size_t len) {
    png_job *j = png_get_io_ptr(png);
    if (len > j->n - j->pos) {
        j->truncated = 1;
        png_error(png, "unexpected end of data");
    }
    memcpy(out, j->buf + j->pos, len);
    j->pos += len;
}

static inline unsigned sample_lowbit(const uint8_t *row, int x, int depth) {
    int bit = x * depth;
    return (row[bit >> 3] >> (8 - depth - (bit & 7))) & ((1u << depth) - 1);
}

static void png_row_to_rgb(const png_job *j, const uint8_t *in, uint8_t *out, int w,
                           int ctype, int depth) {
    switch (ctype) {
    case PNG_COLOR_TYPE_GRAY:
        for (int x = 0; x < w; x++) {
            uint8_t v;
            if (depth < 8) v = (uint8_t)(sample_lowbit(in, x, depth) * (255u / ((1u << depth) - 1)));
            else if (depth == 8) v = in[x];
            else v = in[2 * x] ? 255 : in[2 * x + 1];
            out[3 * x] = out[3 * x + 1] = out[3 * x + 2] = v;
        }
        break;
    case PNG_COLOR_TYPE_PALETTE:
        for (int x = 0; x < w; x++) {
            unsigned i = depth < 8 ? sample_lowbit(in, x, depth) : in[x];
            memcpy(out + 3 * x, j->pal[i], 3);
        }
        break;
    case PNG_COLOR_TYPE_GRAY_ALPHA: {
        int step = depth == 16 ? 4 : 2;
        for (int x = 0; x < w; x++) out[3 * x] = out[3 * x + 1] = out[3 * x + 2] = in[step * x];
        break;
    }
    case PNG_COLOR_TYPE_RGB:
    case PNG_COLOR_TYPE_RGB_ALPHA: {
        int ch = ctype == PNG_COLOR_TYPE_RGB ? 3 : 4, bps = depth / 8;
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) out[3 * x + c] = in[(ch * x + c) * bps];
        break;
    }
    }
}

static qf_status png_run(png_job *j) {
    if (setjmp(png_jmpbuf(j->png))) {
        if (j->truncated)
            return qf_errorf(QF_ERR_FORMAT, "%s: truncated PNG (the file ends early)", j->name);
        return qf_errorf(QF_ERR_FORMAT, "%s: corrupt PNG: %s", j->name, j->msg);
    }
    png_set_read_fn(j->png, j, png_read_mem);
    /* A bad CRC is an error in ancillary chunks too (PIL rejects them; libpng
     * would drop them silently). The pixel limit is ours (check_size), not
     * libpng's default 1e6 x 1e6 cap on each side. */
    png_set_crc_action(j->png, PNG_CRC_DEFAULT, PNG_CRC_ERROR_QUIT);
    png_set_user_limits(j->png, 0x7fffffff, 0x7fffffff);
    /* Ancillary chunks other than tRNS are ignored anyway (see above): skip
     * them unparsed. libpng only warns that a chunk is over its 8 MB limit
     * and then allocates its declared length (up to 2 GB) for text or iCCP
     * chunks, before finding the data missing; skipped chunks are read
     * through a small buffer, CRC still checked (fuzz:
     * tests/fuzz/regress/image/png_huge_itxt_length). */
    png_set_keep_unknown_chunks(j->png, PNG_HANDLE_CHUNK_NEVER, NULL, -1);
    png_read_info(j->png, j->info);

    png_uint_32 w, h;
    int depth, ctype, interlace;
    png_get_IHDR(j->png, j->info, &w, &h, &depth, &ctype, &interlace, NULL, NULL);
    qf_status st = check_size(j->name, w, h, &j->lim);
    if (st) return st;

    if (ctype == PNG_COLOR_TYPE_PALETTE) {
        png_colorp pal = NULL;
        int n_pal = 0;
        png_get_PLTE(j->png, j->info, &pal, &n_pal);
        for (int i = 0; i < n_pal && i < 256; i++) {
            j->pal[i][0] = pal[i].red;
            j->pal[i][1] = pal[i].green;
            j->pal[i][2] = pal[i].blue;
        }
    }
    int passes = png_set_interlace_handling(j->png);
    png_read_update_info(j->png, j->info);
    size_t rowbytes = png_get_rowbytes(j->png, j->info);

    j->img.w = (int)w;
    j->img.h = (int)h;
    j->img.rgb = qf_malloc((size_t)w * h * 3);
    if (!j->img.rgb)
        return qf_errorf(QF_ERR_NOMEM, "%s: cannot allocate %u x %u RGB pixels", j->name, w, h);
    if (passes > 1) {
        if (rowbytes > SIZE_MAX / h)
            return qf_errorf(QF_ERR_LIMIT, "%s: interlaced PNG too large", j->name);
        j->raw = qf_malloc(rowbytes * h);
        j->rows = qf_malloc(h * sizeof *j->rows);
        if (!j->raw || !j->rows)
            return qf_errorf(QF_ERR_NOMEM, "%s: cannot allocate %zu bytes to de-interlace",
                             j->name, rowbytes * h);
        for (png_uint_32 y = 0; y < h; y++) j->rows[y] = j->raw + y * rowbytes;
        png_read_image(j->png, j->rows);
        for (png_uint_32 y = 0; y < h; y++)
            png_row_to_rgb(j, j->rows[y], j->img.rgb + (size_t)y * w * 3, (int)w, ctype, depth);
    } else {
        j->raw = qf_malloc(rowbytes);
        if (!j->raw) return qf_errorf(QF_ERR_NOMEM, "%s: cannot allocate a PNG row", j->name);
        for (png_uint_32 y = 0; y < h; y++) {
            png_read_row(j->png, j->raw, NULL);
            png_row_to_rgb(j, j->raw, j->img.rgb + (size_t)y * w * 3, (int)w, ctype, depth);
        }
    }
    /* Like PIL, nothing after the image data (IEND, trailing chunks) is read. */
    return QF_OK;
}

static qf_status decode_png(const uint8_t *buf, size_t n, const char *name,
                            const qf_img_limits *lim, qf_img *out) {
    png_job j;
    memset(&j, 0, sizeof j);
    j.name = name;
    j.buf = buf;
    j.n = n;
    j.lim = *lim;
    j.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &j, png_on_error, png_on_warning);
    if (j.png) j.info = png_create_info_struct(j.png);
    qf_status st;
    if (!j.png || !j.info)
        st = qf_errorf(QF_ERR_NOMEM, "%s: cannot create a PNG decoder", name);
    else
        st = png_run(&j);
    png_destroy_read_struct(&j.png, &j.info, NULL);
    qf_free(j.rows);
    qf_free(j.raw);
    if (st) {
        qf_img_free(&j.img);
        return st;
    }
    *out = j.img;
    return QF_OK;
}

/* ------------------------------------------------------------------------ */
/* JPEG                                                                     */
/* ------------------------------------------------------------------------ */

/* Decoded with libjpeg's defaults, as Pillow does (JDCT_ISLOW, fancy
 * upsampling): 1 component -> grey (L), 3 -> RGB (libjpeg picks YCbCr or RGB
 * from the markers), 4 -> CMYK (libjpeg converts YCCK). Pillow reads every
 * 4-component JPEG as Adobe-inverted CMYK ("CMYK;I") and its cmyk2rgb gives
 *   C = 255 - c, K = 255 - k,  R = (255 - K) - MULDIV255(C, 255 - K)
 * for the samples c, k libjpeg returns. libjpeg only warns when the data
 * ends early (and pads with grey); here that is an error, as it is for PIL
 * without LOAD_TRUNCATED_IMAGES, whenever the data runs out before the last
 * scanline is out (the entropy decoder reads ahead, so a file cut just
 * before EOI is truncated too, as in PIL); bytes after EOI are ignored.
 * Other libjpeg warnings (corrupt entropy data) are ignored, as in PIL. */

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf               jb;
    char                  msg[JMSG_LENGTH_MAX];
    const char           *name;
} jpeg_err;

typedef struct {
    struct jpeg_source_mgr pub;
    const uint8_t         *buf;
    size_t                 n;
    int                    eof;       /* a fake EOI was supplied: data ended */
} jpeg_src;

typedef struct {
    const char                   *name;
    qf_img_limits                 lim;
    struct jpeg_decompress_struct cinfo;
    jpeg_err                      err;
    jpeg_src                      src;
    int                           created;
    uint8_t                      *row;
    qf_img                        img;
} jpeg_job;

static void jpeg_on_error(j_common_ptr cinfo) {
    jpeg_err *e = (jpeg_err *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, e->msg);
    longjmp(e->jb, 1);
}

static void jpeg_on_message(j_common_ptr cinfo, int level) {
    jpeg_err *e = (jpeg_err *)cinfo->err;
    if (level > 0) return;                    /* trace messages */
    if (level < 0 && e->pub.num_warnings++ > 0) return;   /* first warning only */
    char msg[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, msg);
    qf_log(QF_LOG_DEBUG, "%s: libjpeg: %s", e->name, msg);
}

static void src_init(j_decompress_ptr cinfo) { (void)cinfo; }
static void src_term(j_decompress_ptr cinfo) { (void)cinfo; }

static boolean src_fill(j_decompress_ptr cinfo) {
    static const JOCTET eoi[2] = { 0xff, JPEG_EOI };
    jpeg_src *s = (jpeg_src *)cinfo->src;
    s->eof = 1;
    s->pub.next_input_byte = eoi;
    s->pub.bytes_in_buffer = 2;
    return TRUE;
}

static void src_skip(j_decompress_ptr cinfo, long num_bytes) {
    jpeg_src *s = (jpeg_src *)cinfo->src;
    if (num_bytes <= 0) return;
    if ((size_t)num_bytes > s->pub.bytes_in_buffer) {
        src_fill(cinfo);
        return;
    }
    s->pub.next_input_byte += num_bytes;
    s->pub.bytes_in_buffer -= (size_t)num_bytes;
}

static inline uint8_t muldiv255(int a, int b) {
    int t = a * b + 128;
    return (uint8_t)(((t >> 8) + t) >> 8);
}

static void cmyk_row_to_rgb(const uint8_t *in, uint8_t *out, int w) {
    for (int x = 0; x < w; x++, in += 4, out += 3) {
        int nk = in[3];                      /* 255 - K with K = 255 - k */
        for (int c = 0; c < 3; c++) {
            int v = nk - muldiv255(255 - in[c], nk);
            out[c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
}

static qf_status jpeg_run(jpeg_job *j) {
    struct jpeg_decompress_struct *ci = &j->cinfo;
    if (setjmp(j->err.jb)) {
        if (j->src.eof)
            return qf_errorf(QF_ERR_FORMAT, "%s: truncated JPEG (the file ends early: %s)",
                             j->name, j->err.msg);
        return qf_errorf(QF_ERR_FORMAT, "%s: corrupt JPEG: %s", j->name, j->err.msg);
    }
    ci->err = jpeg_std_error(&j->err.pub);
    j->err.pub.error_exit = jpeg_on_error;
    j->err.pub.emit_message = jpeg_on_message;
    jpeg_create_decompress(ci);
    j->created = 1;
    j->src.pub.init_source = src_init;
    j->src.pub.fill_input_buffer = src_fill;
    j->src.pub.skip_input_data = src_skip;
    j->src.pub.resync_to_restart = jpeg_resync_to_restart;
    j->src.pub.term_source = src_term;
    j->src.pub.next_input_byte = j->src.buf;
    j->src.pub.bytes_in_buffer = j->src.n;
    ci->src = &j->src.pub;

    jpeg_read_header(ci, TRUE);
    qf_status st = check_size(j->name, ci->image_width, ci->image_height, &j->lim);
    if (st) return st;
    switch (ci->num_components) {
    case 1: ci->out_color_space = JCS_GRAYSCALE; break;
    case 3: ci->out_color_space = JCS_RGB; break;
    case 4: ci->out_color_space = JCS_CMYK; break;
    default:
        return qf_errorf(QF_ERR_UNSUPPORTED, "%s: JPEG with %d components is not supported",
                         j->name, ci->num_components);
    }
    ci->dct_method = JDCT_ISLOW;
    ci->do_fancy_upsampling = TRUE;
    jpeg_start_decompress(ci);

    int w = (int)ci->output_width, h = (int)ci->output_height, nc = ci->output_components;
    j->img.w = w;
    j->img.h = h;
    j->img.rgb = qf_malloc((size_t)w * h * 3);
    j->row = nc == 3 ? NULL : qf_malloc((size_t)w * nc);
    if (!j->img.rgb || (nc != 3 && !j->row))
        return qf_errorf(QF_ERR_NOMEM, "%s: cannot allocate %d x %d RGB pixels", j->name, w, h);
    while (ci->output_scanline < ci->output_height) {
        int y = (int)ci->output_scanline;
        uint8_t *dst = j->img.rgb + (size_t)y * w * 3;
        JSAMPROW row = nc == 3 ? dst : j->row;
        if (jpeg_read_scanlines(ci, &row, 1) != 1)
            return qf_errorf(QF_ERR_FORMAT, "%s: JPEG decoder stalled at line %d", j->name, y);
        if (nc == 1) {
            for (int x = 0; x < w; x++) dst[3 * x] = dst[3 * x + 1] = dst[3 * x + 2] = row[x];
        } else if (nc == 4) {
            cmyk_row_to_rgb(row, dst, w);
        }
    }
    if (j->src.eof)
        return qf_errorf(QF_ERR_FORMAT, "%s: truncated JPEG (the file ends inside the image data)",
                         j->name);
    jpeg_finish_decompress(ci);
    return QF_OK;
}

static qf_status decode_jpeg(const uint8_t *buf, size_t n, const char *name,
                             const qf_img_limits *lim, qf_img *out) {
    jpeg_job job, *j = &job;
    memset(j, 0, sizeof *j);
    j->name = j->err.name = name;
    j->lim = *lim;
    j->src.buf = buf;
    j->src.n = n;
    qf_status st = jpeg_run(j);
    if (j->created) jpeg_destroy_decompress(&j->cinfo);
    qf_free(j->row);
    if (st) qf_img_free(&j->img);
    else *out = j->img;
    return st;
}

/* ------------------------------------------------------------------------ */
/* entry points                                                             */
/* ------------------------------------------------------------------------ */

qf_status qf_img_decode_mem(const void *buf, size_t n, const char *name,
                            const qf_img_limits *lim, qf_img *out) {
    memset(out, 0, sizeof *out);
    if (!name) name = "<memory>";
    qf_img_limits l = limits_or_default(lim);
    const uint8_t *b = buf;
    if (n == 0) return qf_errorf(QF_ERR_FORMAT, "%s: empty file (0 bytes)", name);
    switch (qf_img_sniff(b, n)) {
    case QF_IMG_FMT_PNG:  return decode_png(b, n, name, &l, out);
    case QF_IMG_FMT_JPEG: return decode_jpeg(b, n, name, &l, out);
    default: break;
    }
    if (n < 8 && memcmp(b, png_magic, n) == 0)
        return qf_errorf(QF_ERR_FORMAT, "%s: truncated PNG (%zu bytes)", name, n);
    if (n < 3 && b[0] == 0xff && (n == 1 || b[1] == 0xd8))
        return qf_errorf(QF_ERR_FORMAT, "%s: truncated JPEG (%zu bytes)", name, n);
    const char *other = other_format(b, n);
    if (other)
        return qf_errorf(QF_ERR_UNSUPPORTED, "%s: %s images are not supported (PNG and JPEG only)",
                         name, other);
    /* show the first bytes that exist (a 1-byte file shows one byte) */
    char hex[16] = "";
    size_t len = 0;
    for (size_t i = 0; i < n && i < 4; i++)
        len += (size_t)snprintf(hex + len, sizeof hex - len, "%s%02x", i ? " " : "", b[i]);
    return qf_errorf(QF_ERR_FORMAT, "%s: not a PNG or JPEG image (starts with bytes %s)", name, hex);
}

qf_status qf_img_load(const char *path, const qf_img_limits *lim, qf_img *out) {
    memset(out, 0, sizeof *out);
    qf_img_limits l = limits_or_default(lim);
    char *buf = NULL;
    size_t n = 0;
    qf_status st = qf_read_file(path, l.max_file_bytes, &buf, &n);
    if (st) return st;
    st = qf_img_decode_mem(buf, n, path, &l, out);
    qf_free(buf);
    return st;
}

/* ------------------------------------------------------------------------ */
/* PIL BICUBIC resampling (Pillow src/libImaging/Resample.c semantics)      */
/* ------------------------------------------------------------------------ */

/* Coefficients are computed in double exactly as Pillow does (same
 * expressions, same order), then rounded half away from zero to fixed point
 * with PRECISION_BITS fractional bits. Each pass accumulates
 * 2^(PRECISION_BITS-1) + sum(pixel * coeff) and clips (acc >> PRECISION_BITS)
 * to 0..255. */
#define PRECISION_BITS (32 - 8 - 2)

static double bicubic(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

typedef struct {
    int      ksize;    /* coefficients per output sample               */
    int     *bounds;   /* [out][2]: first input index, count           */
    int32_t *k;        /* [out][ksize] fixed-point coefficients        */
} coeffs;

static void coeffs_free(coeffs *c) {
    qf_free(c->bounds);
    qf_free(c->k);
    memset(c, 0, sizeof *c);
}

static qf_status coeffs_init(coeffs *c, int in_size, int out_size) {
    memset(c, 0, sizeof *c);
    /* Pillow's box is (0, 0, w, h) as floats: scale = (in1 - in0) / out. */
    double scale = (double)((float)in_size - 0.0f) / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 2.0 * filterscale;        /* BICUBIC support is 2 */
    int ksize = (int)ceil(support) * 2 + 1;
    double *kk = qf_malloc((size_t)out_size * ksize * sizeof *kk);
    c->bounds = qf_malloc((size_t)out_size * 2 * sizeof *c->bounds);
    c->k = qf_malloc((size_t)out_size * ksize * sizeof *c->k);
    if (!kk || !c->bounds || !c->k) {
        qf_free(kk);
        coeffs_free(c);
        return qf_errorf(QF_ERR_NOMEM, "resize: cannot allocate %d x %d coefficients",
                         out_size, ksize);
    }
    c->ksize = ksize;
    for (int xx = 0; xx < out_size; xx++) {
        double center = 0.0 + (xx + 0.5) * scale;
        double ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        double *k = kk + (size_t)xx * ksize;
        int x;
        for (x = 0; x < xmax; x++) {
            double w = bicubic((x + xmin - center + 0.5) * ss);
            k[x] = w;
            ww += w;
        }
        for (x = 0; x < xmax; x++)
            if (ww != 0.0) k[x] /= ww;
        for (; x < ksize; x++) k[x] = 0;
        c->bounds[xx * 2 + 0] = xmin;
        c->bounds[xx * 2 + 1] = xmax;
    }
    for (size_t i = 0; i < (size_t)out_size * ksize; i++)
        c->k[i] = kk[i] < 0 ? (int32_t)(-0.5 + kk[i] * (1 << PRECISION_BITS))
                            : (int32_t)(0.5 + kk[i] * (1 << PRECISION_BITS));
    qf_free(kk);
    return QF_OK;
}

static inline uint8_t clip8(int64_t acc) {
    if (acc < 0) return 0;
    acc >>= PRECISION_BITS;
    return (uint8_t)(acc > 255 ? 255 : acc);
}

/* out[y][xx] = sum_x k[xx][x] * in[y0 + y][xmin + x], for out_h rows. */
static void resample_h(uint8_t *out, int out_w, int out_h, const uint8_t *in, int in_w,
                       int y0, const coeffs *c) {
    for (int y = 0; y < out_h; y++) {
        const uint8_t *src = in + (size_t)(y0 + y) * in_w * 3;
        uint8_t *dst = out + (size_t)y * out_w * 3;
        for (int xx = 0; xx < out_w; xx++) {
            int xmin = c->bounds[2 * xx], n = c->bounds[2 * xx + 1];
            const int32_t *k = c->k + (size_t)xx * c->ksize;
            const uint8_t *p = src + (size_t)xmin * 3;
            int64_t s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
            for (int x = 0; x < n; x++) {
                s0 += p[3 * x + 0] * (int64_t)k[x];
                s1 += p[3 * x + 1] * (int64_t)k[x];
                s2 += p[3 * x + 2] * (int64_t)k[x];
            }
            dst[3 * xx + 0] = clip8(s0);
            dst[3 * xx + 1] = clip8(s1);
            dst[3 * xx + 2] = clip8(s2);
        }
    }
}

/* out[yy][x] = sum_y k[yy][y] * in[ymin + y][x]; bounds relative to `in`. */
static void resample_v(uint8_t *out, int w, int out_h, const uint8_t *in, const coeffs *c) {
    size_t stride = (size_t)w * 3;
    for (int yy = 0; yy < out_h; yy++) {
        int ymin = c->bounds[2 * yy], n = c->bounds[2 * yy + 1];
        const int32_t *k = c->k + (size_t)yy * c->ksize;
        uint8_t *dst = out + (size_t)yy * stride;
        for (size_t i = 0; i < stride; i++) {
            int64_t s = 1 << (PRECISION_BITS - 1);
            const uint8_t *p = in + (size_t)ymin * stride + i;
            for (int y = 0; y < n; y++) s += p[(size_t)y * stride] * (int64_t)k[y];
            dst[i] = clip8(s);
        }
    }
}

qf_status qf_img_resize_bicubic(const qf_img *src, int out_w, int out_h, qf_img *dst) {
    memset(dst, 0, sizeof *dst);
    if (!src || !src->rgb || src->w <= 0 || src->h <= 0)
        return qf_errorf(QF_ERR_ARG, "resize: empty source image");
    if (out_w <= 0 || out_h <= 0)
        return qf_errorf(QF_ERR_ARG, "resize: invalid output size %d x %d", out_w, out_h);

    const size_t out_bytes = (size_t)out_w * out_h * 3;
    const int need_h = out_w != src->w, need_v = out_h != src->h;
    uint8_t *out = NULL, *tmp = NULL;
    const uint8_t *cur = src->rgb;
    coeffs cv = { 0 }, ch = { 0 };
    qf_status st = QF_OK;

    /* Vertical coefficients first: they tell which source rows the
     * horizontal pass has to produce (all of them when out_h == h). */
    if ((st = coeffs_init(&cv, src->h, out_h))) goto fail;
    const int ybox_first = cv.bounds[0];
    const int ybox_last = cv.bounds[2 * out_h - 2] + cv.bounds[2 * out_h - 1];

    if (need_h) {
        const int rows = ybox_last - ybox_first;
        if ((st = coeffs_init(&ch, src->w, out_w))) goto fail;
        tmp = qf_malloc((size_t)out_w * rows * 3);
        if (!tmp) {
            st = qf_errorf(QF_ERR_NOMEM, "resize: cannot allocate %d x %d pixels", out_w, rows);
            goto fail;
        }
        resample_h(tmp, out_w, rows, src->rgb, src->w, ybox_first, &ch);
        for (int i = 0; i < out_h; i++) cv.bounds[2 * i] -= ybox_first;
        cur = tmp;
    }
    if (need_v || !need_h) {
        out = qf_malloc(out_bytes);
        if (!out) {
            st = qf_errorf(QF_ERR_NOMEM, "resize: cannot allocate %zu bytes", out_bytes);
            goto fail;
        }
        if (need_v) resample_v(out, out_w, out_h, cur, &cv);
        else memcpy(out, src->rgb, out_bytes);    /* same size: a copy */
        qf_free(tmp);
    } else {
        out = tmp;                                /* horizontal pass only */
    }
    tmp = NULL;
    dst->w = out_w;
    dst->h = out_h;
    dst->rgb = out;
fail:
    qf_free(tmp);
    coeffs_free(&cv);
    coeffs_free(&ch);
    return st;
}

/* ------------------------------------------------------------------------ */
/* BlipImageProcessor                                                       */
/* ------------------------------------------------------------------------ */

void qf_img_preproc_default(qf_img_preproc *p) {
    static const float clip_mean[3] = { 0.48145466f, 0.4578275f, 0.40821073f };
    static const float clip_std[3] = { 0.26862954f, 0.26130258f, 0.27577711f };
    memset(p, 0, sizeof *p);
    p->do_resize = 1;
    p->height = p->width = 384;
    p->resample = 3;
    p->do_rescale = 1;
    p->rescale_factor = 1.0 / 255.0;
    p->do_normalize = 1;
    memcpy(p->mean, clip_mean, sizeof clip_mean);
    memcpy(p->std, clip_std, sizeof clip_std);
    p->do_convert_rgb = 1;
}

static const char *resample_name(int r) {
    static const char *names[] = { "NEAREST", "LANCZOS", "BILINEAR", "BICUBIC", "BOX", "HAMMING" };
    return r >= 0 && r < 6 ? names[r] : "unknown";
}

/* Absent or null: keep the default. */
static qf_status get_bool(json_t *root, const char *key, const char *name, int *dst) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) return QF_OK;
    if (json_is_boolean(v)) *dst = json_is_true(v);
    else if (json_is_integer(v)) *dst = json_integer_value(v) != 0;
    else return qf_errorf(QF_ERR_FORMAT, "%s: \"%s\" must be true or false", name, key);
    return QF_OK;
}

static qf_status get_size(json_t *v, const char *key, const char *name, int *dst) {
    if (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > 65536)
        return qf_errorf(QF_ERR_FORMAT, "%s: \"%s\" must be a positive integer", name, key);
    *dst = (int)json_integer_value(v);
    return QF_OK;
}

static qf_status get_triple(json_t *root, const char *key, const char *name, float out[3]) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) return QF_OK;
    if (json_is_number(v)) {                 /* a scalar applies to every channel */
        out[0] = out[1] = out[2] = (float)json_number_value(v);
        return QF_OK;
    }
    if (!json_is_array(v) || json_array_size(v) != 3)
        return qf_errorf(QF_ERR_FORMAT, "%s: \"%s\" must be a list of 3 numbers", name, key);
    for (int c = 0; c < 3; c++) {
        json_t *e = json_array_get(v, c);
        if (!json_is_number(e))
            return qf_errorf(QF_ERR_FORMAT, "%s: \"%s\"[%d] is not a number", name, key, c);
        out[c] = (float)json_number_value(e);
    }
    return QF_OK;
}

static qf_status parse_preproc(json_t *root, const char *name, qf_img_preproc *p) {
    qf_status st;
    if (!json_is_object(root))
        return qf_errorf(QF_ERR_FORMAT, "%s: expected a JSON object", name);
    if ((st = get_bool(root, "do_resize", name, &p->do_resize)) ||
        (st = get_bool(root, "do_rescale", name, &p->do_rescale)) ||
        (st = get_bool(root, "do_normalize", name, &p->do_normalize)) ||
        (st = get_bool(root, "do_convert_rgb", name, &p->do_convert_rgb)) ||
        (st = get_triple(root, "image_mean", name, p->mean)) ||
        (st = get_triple(root, "image_std", name, p->std)))
        return st;

    json_t *size = json_object_get(root, "size");
    if (size && !json_is_null(size)) {
        if (json_is_integer(size)) {         /* legacy: one int = square */
            if ((st = get_size(size, "size", name, &p->height))) return st;
            p->width = p->height;
        } else if (json_is_array(size) && json_array_size(size) == 2) {
            if ((st = get_size(json_array_get(size, 0), "size[0]", name, &p->height)) ||
                (st = get_size(json_array_get(size, 1), "size[1]", name, &p->width)))
                return st;
        } else if (json_is_object(size)) {
            json_t *hv = json_object_get(size, "height"), *wv = json_object_get(size, "width");
            if (!hv || !wv)
                return qf_errorf(QF_ERR_UNSUPPORTED,
                                 "%s: \"size\" must give \"height\" and \"width\" "
                                 "(BlipImageProcessor does not resize by shortest_edge)", name);
            if ((st = get_size(hv, "size.height", name, &p->height)) ||
                (st = get_size(wv, "size.width", name, &p->width)))
                return st;
        } else {
            return qf_errorf(QF_ERR_FORMAT, "%s: \"size\" has an unexpected form", name);
        }
    }

    json_t *rs = json_object_get(root, "resample");
    if (rs && !json_is_null(rs)) {
        if (!json_is_integer(rs))
            return qf_errorf(QF_ERR_FORMAT, "%s: \"resample\" must be an integer", name);
        p->resample = (int)json_integer_value(rs);
    }
    if (p->do_resize && p->resample != 3)
        return qf_errorf(QF_ERR_UNSUPPORTED,
                         "%s: resample=%d (%s) is not supported, only 3 (BICUBIC)",
                         name, p->resample, resample_name(p->resample));

    json_t *rf = json_object_get(root, "rescale_factor");
    if (rf && !json_is_null(rf)) {
        if (!json_is_number(rf))
            return qf_errorf(QF_ERR_FORMAT, "%s: \"rescale_factor\" must be a number", name);
        p->rescale_factor = json_number_value(rf);
    }
    for (int c = 0; c < 3; c++)
        if (p->do_normalize && p->std[c] == 0.0f)
            return qf_errorf(QF_ERR_FORMAT, "%s: image_std[%d] is zero", name, c);
    return QF_OK;
}

qf_status qf_img_preproc_parse(const char *json, size_t n, const char *name,
                               qf_img_preproc *out) {
    qf_img_preproc_default(out);
    if (!name) name = "<preprocessor config>";
    json_error_t err;
    json_t *root = json_loadb(json, n, 0, &err);
    if (!root)
        return qf_errorf(QF_ERR_FORMAT, "%s: invalid JSON at line %d: %s", name, err.line,
                         err.text);
    qf_status st = parse_preproc(root, name, out);
    json_decref(root);
    if (st) qf_img_preproc_default(out);
    return st;
}

qf_status qf_img_preproc_check(const qf_img_preproc *pp, int image_size, const char *model_dir) {
    if (pp->height == image_size && pp->width == image_size) return QF_OK;
    return qf_errorf(QF_ERR_FORMAT, "%s%spreprocessor size %dx%d differs from vision_config.image_size %d",
                     model_dir ? model_dir : "", model_dir ? ": " : "", pp->width, pp->height, image_size);
}

qf_status qf_img_preproc_load(const char *model_dir, qf_img_preproc *out) {
    qf_img_preproc_default(out);
    char path[4096];
    int len = snprintf(path, sizeof path, "%s/preprocessor_config.json", model_dir);
    if (len < 0 || (size_t)len >= sizeof path)
        return qf_errorf(QF_ERR_ARG, "%s: path too long", model_dir);
    char *text = NULL;
    size_t n = 0;
    qf_status st = qf_read_file(path, (size_t)1 << 20, &text, &n);
    if (st) return st;
    st = qf_img_preproc_parse(text, n, path, out);
    qf_free(text);
    return st;
}

qf_status qf_img_preprocess(const qf_img_preproc *p, const qf_img *rgb,
                            float *pixels, uint8_t *resized) {
    const int H = p->height, W = p->width;
    qf_img scaled = { 0 };
    const qf_img *src = rgb;
    if (p->do_resize && p->resample != 3)
        return qf_errorf(QF_ERR_UNSUPPORTED, "preprocess: resample=%d (%s) is not supported",
                         p->resample, resample_name(p->resample));
    if (p->do_resize && (rgb->w != W || rgb->h != H)) {
        qf_status st = qf_img_resize_bicubic(rgb, W, H, &scaled);
        if (st) return st;
        src = &scaled;
    } else if (rgb->w != W || rgb->h != H) {
        return qf_errorf(QF_ERR_SHAPE, "preprocess: image is %d x %d, the model takes %d x %d "
                         "and do_resize is off", rgb->w, rgb->h, W, H);
    }
    const size_t S = (size_t)H * W;
    for (size_t i = 0; i < S; i++) {
        for (int c = 0; c < 3; c++) {
            uint8_t u = src->rgb[3 * i + c];
            /* numpy: float32(uint8 * python float) -- the product is float64 */
            float x = p->do_rescale ? (float)(u * p->rescale_factor) : (float)u;
            if (p->do_normalize) x = (x - p->mean[c]) / p->std[c];
            pixels[(size_t)c * S + i] = x;
        }
    }
    if (resized) memcpy(resized, src->rgb, S * 3);
    qf_img_free(&scaled);
    return QF_OK;
}

qf_status qf_img_load_pixels(const char *path, const qf_img_preproc *p,
                             const qf_img_limits *lim, float *pixels, uint8_t *resized,
                             int *w, int *h) {
    qf_img img;
    qf_status st = qf_img_load(path, lim, &img);
    if (st) return st;
    if (w) *w = img.w;
    if (h) *h = img.h;
    st = qf_img_preprocess(p, &img, pixels, resized);
    if (st) qf_error_prefix(st, "%s", path);
    qf_img_free(&img);
    return st;
}
