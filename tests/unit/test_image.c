/* test_image.c - image module: PNG of every colour type / bit depth (written
 * here with libpng, incl. 16-bit, palette + tRNS, Adam7), grey / CMYK / YCCK /
 * progressive JPEGs written with libjpeg, bad input (empty, random, text,
 * truncated, bombs, corrupt), the limits, resize invariants, preprocessing
 * config parsing, and allocation failures on every path. */
#include "embed/image.h"
#include "tests/testutil.h"

#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jpeglib.h>

/* ------------------------------------------------------------------------ */
/* helpers                                                                  */
/* ------------------------------------------------------------------------ */

static uint32_t rng_state = 12345;
static unsigned rnd(void) {
    rng_state = rng_state * 1664525u + 1013904223u;
    return rng_state >> 8;
}

static const char *tmp_path(const char *name) {
    static char bufs[4][512];
    static int slot;
    char *b = bufs[slot++ & 3];
    snprintf(b, 512, "%s/%s", qf_test_tmpdir(), name);
    return b;
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(fwrite(data, 1, n, f), n);
    fclose(f);
}

static uint8_t *read_bytes(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*n ? *n : 1);
    CU_ASSERT_EQUAL(fread(b, 1, *n, f), *n);
    fclose(f);
    return b;
}

/* Asserts that loading `path` fails with `want` and a message naming the
 * file and containing `needle` (may be NULL). */
static void expect_load_error(const char *path, const qf_img_limits *lim, qf_status want,
                              const char *needle) {
    qf_img img = { 7, 7, (uint8_t *)1 };
    qf_status st = qf_img_load(path, lim, &img);
    if (st != want || !strstr(qf_last_error(), path) || (needle && !strstr(qf_last_error(), needle)))
        fprintf(stderr, "\n%s: got %s '%s', expected %s with '%s'\n", path, qf_status_str(st),
                qf_last_error(), qf_status_str(want), needle ? needle : "");
    CU_ASSERT_EQUAL(st, want);
    CU_ASSERT_PTR_NOT_NULL(strstr(qf_last_error(), path));
    if (needle) CU_ASSERT_PTR_NOT_NULL(strstr(qf_last_error(), needle));
    CU_ASSERT_PTR_NULL(img.rgb);
    CU_ASSERT_EQUAL(img.w, 0);
    CU_ASSERT_EQUAL(img.h, 0);
}

/* ------------------------------------------------------------------------ */
/* PNG writer (libpng, no transforms: rows are given in PNG layout)         */
/* ------------------------------------------------------------------------ */

typedef struct {
    int w, h, ctype, depth, interlace;
    const png_color *pal;
    int n_pal;
    const uint8_t *trns;      /* palette alpha, or NULL */
    int n_trns;
    int gamma;                /* write a gAMA chunk */
} png_spec;

static int channels_of(int ctype) {
    switch (ctype) {
    case PNG_COLOR_TYPE_GRAY: case PNG_COLOR_TYPE_PALETTE: return 1;
    case PNG_COLOR_TYPE_GRAY_ALPHA: return 2;
    case PNG_COLOR_TYPE_RGB: return 3;
    default: return 4;
    }
}

/* Packs samples (one unsigned per channel, row-major) into PNG rows. */
static uint8_t *pack_rows(const png_spec *s, const unsigned *samples, size_t *rowbytes) {
    int ch = channels_of(s->ctype);
    *rowbytes = ((size_t)s->w * ch * s->depth + 7) / 8;
    uint8_t *rows = calloc(s->h, *rowbytes);
    for (int y = 0; y < s->h; y++) {
        uint8_t *r = rows + y * *rowbytes;
        for (int i = 0; i < s->w * ch; i++) {
            unsigned v = samples[(size_t)y * s->w * ch + i];
            if (s->depth == 16) {
                r[2 * i] = (uint8_t)(v >> 8);
                r[2 * i + 1] = (uint8_t)v;
            } else if (s->depth == 8) {
                r[i] = (uint8_t)v;
            } else {
                int bit = i * s->depth;
                r[bit / 8] |= (uint8_t)(v << (8 - s->depth - bit % 8));
            }
        }
    }
    return rows;
}

static void write_png(const char *path, const png_spec *s, const unsigned *samples) {
    FILE *f = fopen(path, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    CU_ASSERT_FATAL(png && info);
    size_t rowbytes;
    uint8_t *rows = pack_rows(s, samples, &rowbytes);
    png_bytep *rp = malloc(s->h * sizeof *rp);
    for (int y = 0; y < s->h; y++) rp[y] = rows + y * rowbytes;
    if (setjmp(png_jmpbuf(png))) CU_FAIL_FATAL("libpng write failed");
    png_init_io(png, f);
    png_set_check_for_invalid_index(png, 0);     /* we write indices past PLTE on purpose */
    png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
    png_set_IHDR(png, info, s->w, s->h, s->depth, s->ctype,
                 s->interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (s->pal) png_set_PLTE(png, info, s->pal, s->n_pal);
    if (s->trns) png_set_tRNS(png, info, s->trns, s->n_trns, NULL);
    if (s->gamma) png_set_gAMA(png, info, 1.0 / 2.2);
    png_write_info(png, info);
    png_write_image(png, rp);
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    fclose(f);
    free(rp);
    free(rows);
}

static const png_color test_pal[5] = {
    { 255, 0, 0 }, { 0, 255, 0 }, { 0, 0, 255 }, { 10, 20, 30 }, { 200, 100, 50 },
};

/* Writes a PNG of random samples, decodes it, and compares with the RGB that
 * Pillow's mode + convert("RGB") give (computed from the samples here). */
static void png_case(int ctype, int depth, int interlace, int with_trns) {
    png_spec s = { 13, 7, ctype, depth, interlace, NULL, 0, NULL, 0, 1 };
    int ch = channels_of(ctype);
    unsigned max = (1u << depth) - 1;
    size_t n = (size_t)s.w * s.h * ch;
    unsigned *smp = malloc(n * sizeof *smp);
    static const uint8_t trns[3] = { 0, 128, 255 };
    if (ctype == PNG_COLOR_TYPE_PALETTE) {
        s.pal = test_pal;
        s.n_pal = depth == 1 ? 2 : depth == 2 ? 3 : 5;   /* fewer than 2^depth (but 1-bit) */
        if (with_trns) { s.trns = trns; s.n_trns = s.n_pal < 3 ? s.n_pal : 3; }
    }
    for (size_t i = 0; i < n; i++) {
        unsigned v = rnd() & max;
        if (depth == 16 && ctype == PNG_COLOR_TYPE_GRAY && (i & 1)) v &= 0xff;  /* both sides of 255 */
        smp[i] = v;
    }
    char name[96];
    snprintf(name, sizeof name, "png_c%d_d%d_i%d_t%d.png", ctype, depth, interlace, with_trns);
    const char *path = tmp_path(name);
    write_png(path, &s, smp);

    qf_img img;
    qf_status st = qf_img_load(path, NULL, &img);
    if (st) fprintf(stderr, "\n%s\n", qf_last_error());
    CU_ASSERT_EQUAL_FATAL(st, QF_OK);
    CU_ASSERT_EQUAL(img.w, s.w);
    CU_ASSERT_EQUAL(img.h, s.h);
    size_t bad = 0;
    for (int p = 0; p < s.w * s.h; p++) {
        const unsigned *v = smp + (size_t)p * ch;
        unsigned want[3];
        switch (ctype) {
        case PNG_COLOR_TYPE_GRAY: {
            unsigned g = depth < 8 ? v[0] * 255 / max : depth == 8 ? v[0] : (v[0] > 255 ? 255 : v[0]);
            want[0] = want[1] = want[2] = g;
            break;
        }
        case PNG_COLOR_TYPE_GRAY_ALPHA:
            want[0] = want[1] = want[2] = depth == 16 ? v[0] >> 8 : v[0];
            break;
        case PNG_COLOR_TYPE_PALETTE:
            if ((int)v[0] < s.n_pal) {
                want[0] = test_pal[v[0]].red;
                want[1] = test_pal[v[0]].green;
                want[2] = test_pal[v[0]].blue;
            } else {
                want[0] = want[1] = want[2] = 0;
            }
            break;
        default:
            for (int c = 0; c < 3; c++) want[c] = depth == 16 ? v[c] >> 8 : v[c];
        }
        for (int c = 0; c < 3; c++) bad += img.rgb[3 * p + c] != want[c];
    }
    if (bad) fprintf(stderr, "\n%s: %zu samples differ\n", name, bad);
    CU_ASSERT_EQUAL(bad, 0);
    qf_img_free(&img);
    free(smp);
}

static void test_png_grey(void) {
    for (int d = 1; d <= 16; d *= 2) png_case(PNG_COLOR_TYPE_GRAY, d, 0, 0);
}

static void test_png_grey_alpha(void) {
    png_case(PNG_COLOR_TYPE_GRAY_ALPHA, 8, 0, 0);
    png_case(PNG_COLOR_TYPE_GRAY_ALPHA, 16, 0, 0);
}

static void test_png_rgb_rgba(void) {
    png_case(PNG_COLOR_TYPE_RGB, 8, 0, 0);
    png_case(PNG_COLOR_TYPE_RGB, 16, 0, 0);
    png_case(PNG_COLOR_TYPE_RGB_ALPHA, 8, 0, 0);
    png_case(PNG_COLOR_TYPE_RGB_ALPHA, 16, 0, 0);
}

static void test_png_palette(void) {
    for (int d = 1; d <= 8; d *= 2) {
        png_case(PNG_COLOR_TYPE_PALETTE, d, 0, 0);
        png_case(PNG_COLOR_TYPE_PALETTE, d, 0, 1);
    }
}

static void test_png_interlaced(void) {
    png_case(PNG_COLOR_TYPE_GRAY, 2, 1, 0);
    png_case(PNG_COLOR_TYPE_GRAY, 16, 1, 0);
    png_case(PNG_COLOR_TYPE_PALETTE, 4, 1, 1);
    png_case(PNG_COLOR_TYPE_GRAY_ALPHA, 8, 1, 0);
    png_case(PNG_COLOR_TYPE_RGB, 16, 1, 0);
    png_case(PNG_COLOR_TYPE_RGB_ALPHA, 8, 1, 0);
}

/* Wider than libpng's default 1e6-per-side cap but under the pixel limit:
 * decoded, as PIL decodes it. */
static void test_png_wide(void) {
    png_spec s = { 1100000, 2, PNG_COLOR_TYPE_GRAY, 8, 0, NULL, 0, NULL, 0, 0 };
    unsigned *smp = malloc(sizeof(unsigned) * s.w * s.h);
    for (int i = 0; i < s.w * s.h; i++) smp[i] = (unsigned)(i % 251);
    const char *path = tmp_path("wide.png");
    write_png(path, &s, smp);
    qf_img img;
    qf_status st = qf_img_load(path, NULL, &img);
    if (st) fprintf(stderr, "\n%s\n", qf_last_error());
    CU_ASSERT_EQUAL_FATAL(st, QF_OK);
    CU_ASSERT(img.w == s.w && img.h == 2);
    CU_ASSERT_EQUAL(img.rgb[3 * (s.w + 1000) + 2], (s.w + 1000) % 251);
    qf_img_free(&img);
    free(smp);
}

/* ------------------------------------------------------------------------ */
/* JPEG writer / reference reader (libjpeg)                                 */
/* ------------------------------------------------------------------------ */

/* in_cs: JCS_GRAYSCALE / JCS_RGB / JCS_CMYK; file_cs: colour space stored
 * in the file (JCS_UNKNOWN = libjpeg's default for in_cs). */
static void write_jpeg(const char *path, int w, int h, J_COLOR_SPACE in_cs, J_COLOR_SPACE file_cs,
                       int quality, int progressive, const uint8_t *pix) {
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr jerr;
    FILE *f = fopen(path, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    c.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&c);
    jpeg_stdio_dest(&c, f);
    c.image_width = w;
    c.image_height = h;
    c.input_components = in_cs == JCS_GRAYSCALE ? 1 : in_cs == JCS_CMYK ? 4 : 3;
    c.in_color_space = in_cs;
    jpeg_set_defaults(&c);
    if (file_cs != JCS_UNKNOWN) jpeg_set_colorspace(&c, file_cs);
    jpeg_set_quality(&c, quality, TRUE);
    if (progressive) jpeg_simple_progression(&c);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(pix + (size_t)c.next_scanline * w * c.input_components);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    fclose(f);
}

/* Plain libjpeg decode to the file's natural output space (grey, RGB, CMYK). */
static uint8_t *read_jpeg_raw(const char *path, int *nc) {
    struct jpeg_decompress_struct d;
    struct jpeg_error_mgr jerr;
    FILE *f = fopen(path, "rb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    d.err = jpeg_std_error(&jerr);
    jpeg_create_decompress(&d);
    jpeg_stdio_src(&d, f);
    jpeg_read_header(&d, TRUE);
    jpeg_start_decompress(&d);
    *nc = d.output_components;
    uint8_t *out = malloc((size_t)d.output_width * d.output_height * *nc);
    while (d.output_scanline < d.output_height) {
        JSAMPROW row = out + (size_t)d.output_scanline * d.output_width * *nc;
        jpeg_read_scanlines(&d, &row, 1);
    }
    jpeg_finish_decompress(&d);
    jpeg_destroy_decompress(&d);
    fclose(f);
    return out;
}

static uint8_t *noise_image(int w, int h, int ch) {
    uint8_t *p = malloc((size_t)w * h * ch);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < ch; c++) {  /* smooth ramps + a little noise */
                int v = x * 2 + y + c * 20 + (int)(rnd() & 7);
                p[((size_t)y * w + x) * ch + c] = (uint8_t)(v > 255 ? 255 : v);
            }
    return p;
}

static int max_abs_diff(const uint8_t *a, const uint8_t *b, size_t n) {
    int m = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        if (d > m) m = d;
    }
    return m;
}

static void test_jpeg_grey(void) {
    const int w = 40, h = 24;
    uint8_t *src = noise_image(w, h, 1);
    const char *path = tmp_path("grey.jpg");
    write_jpeg(path, w, h, JCS_GRAYSCALE, JCS_UNKNOWN, 95, 0, src);
    int nc;
    uint8_t *ref = read_jpeg_raw(path, &nc);
    CU_ASSERT_EQUAL_FATAL(nc, 1);
    qf_img img;
    CU_ASSERT_EQUAL_FATAL(qf_img_load(path, NULL, &img), QF_OK);
    CU_ASSERT_EQUAL(img.w, w);
    CU_ASSERT_EQUAL(img.h, h);
    size_t bad = 0;
    for (int i = 0; i < w * h; i++)
        for (int c = 0; c < 3; c++) bad += img.rgb[3 * i + c] != ref[i];  /* L expanded */
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT(max_abs_diff(ref, src, (size_t)w * h) <= 12);  /* a JPEG of the source */
    qf_img_free(&img);
    free(ref);
    free(src);
}

/* Baseline and progressive files of the same source hold the same quantised
 * coefficients, so they decode to the same pixels. */
static void test_jpeg_progressive(void) {
    const int w = 45, h = 30;
    uint8_t *src = noise_image(w, h, 3);
    const char *pb = tmp_path("base.jpg"), *pp = tmp_path("prog.jpg");
    write_jpeg(pb, w, h, JCS_RGB, JCS_UNKNOWN, 90, 0, src);
    write_jpeg(pp, w, h, JCS_RGB, JCS_UNKNOWN, 90, 1, src);
    int nc;
    uint8_t *ref = read_jpeg_raw(pb, &nc);
    CU_ASSERT_EQUAL_FATAL(nc, 3);
    qf_img a, b;
    CU_ASSERT_EQUAL_FATAL(qf_img_load(pb, NULL, &a), QF_OK);
    CU_ASSERT_EQUAL_FATAL(qf_img_load(pp, NULL, &b), QF_OK);
    CU_ASSERT(a.w == w && a.h == h && b.w == w && b.h == h);
    size_t n = (size_t)w * h * 3;
    CU_ASSERT(memcmp(a.rgb, ref, n) == 0);
    CU_ASSERT(memcmp(a.rgb, b.rgb, n) == 0);
    CU_ASSERT(max_abs_diff(a.rgb, src, n) <= 40);
    qf_img_free(&a);
    qf_img_free(&b);
    free(ref);
    free(src);
}

/* Pillow: 4-component JPEGs are Adobe-inverted CMYK ("CMYK;I"), then
 * cmyk2rgb: R = (255 - K) - MULDIV255(C, 255 - K) with C = 255 - c. */
static void pil_cmyk_to_rgb(const uint8_t *in, uint8_t *out) {
    int nk = 255 - (255 - in[3]);
    for (int c = 0; c < 3; c++) {
        int t = (255 - in[c]) * nk + 128;
        out[c] = (uint8_t)(nk - (((t >> 8) + t) >> 8));
    }
}

static void cmyk_case(J_COLOR_SPACE file_cs, const char *name) {
    /* 4 constant 8x8 blocks (raw stored samples) + a noisy 16x16 block */
    static const uint8_t blocks[4][4] = {
        { 255, 255, 255, 255 },  /* no ink            -> white   */
        { 255, 0, 255, 255 },    /* full magenta      -> magenta */
        { 255, 255, 255, 0 },    /* full black        -> black   */
        { 255, 255, 255, 128 },  /* half black        -> grey    */
    };
    static const uint8_t want[4][3] = { { 255, 255, 255 }, { 255, 0, 255 }, { 0, 0, 0 }, { 128, 128, 128 } };
    const int w = 32, h = 16;
    uint8_t *src = noise_image(w, h, 4);
    for (int y = 0; y < 8; y++)
        for (int x = 0; x < 32; x++) memcpy(src + ((size_t)y * w + x) * 4, blocks[x / 8], 4);
    const char *path = tmp_path(name);
    write_jpeg(path, w, h, JCS_CMYK, file_cs, 100, 0, src);
    int nc;
    uint8_t *raw = read_jpeg_raw(path, &nc);
    CU_ASSERT_EQUAL_FATAL(nc, 4);
    qf_img img;
    qf_status st = qf_img_load(path, NULL, &img);
    if (st) fprintf(stderr, "\n%s\n", qf_last_error());
    CU_ASSERT_EQUAL_FATAL(st, QF_OK);
    CU_ASSERT(img.w == w && img.h == h);
    size_t bad = 0;
    for (int i = 0; i < w * h; i++) {
        uint8_t rgb[3];
        pil_cmyk_to_rgb(raw + 4 * i, rgb);
        bad += memcmp(rgb, img.rgb + 3 * i, 3) != 0;
    }
    CU_ASSERT_EQUAL(bad, 0);
    for (int b = 0; b < 4; b++) {          /* centre of each constant block */
        const uint8_t *p = img.rgb + ((size_t)4 * w + b * 8 + 4) * 3;
        for (int c = 0; c < 3; c++) {
            if (abs(p[c] - want[b][c]) > 2)
                fprintf(stderr, "\n%s block %d channel %d: %d, expected %d\n", name, b, c, p[c], want[b][c]);
            CU_ASSERT(abs(p[c] - want[b][c]) <= 2);
        }
    }
    qf_img_free(&img);
    free(raw);
    free(src);
}

static void test_jpeg_cmyk(void) { cmyk_case(JCS_CMYK, "cmyk.jpg"); }
static void test_jpeg_ycck(void) { cmyk_case(JCS_YCCK, "ycck.jpg"); }

/* ------------------------------------------------------------------------ */
/* bad input                                                                */
/* ------------------------------------------------------------------------ */

static uint32_t crc32_png(const uint8_t *p, size_t n, uint32_t crc) {
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1)));
    }
    return ~crc;
}

static size_t put_chunk(uint8_t *out, const char *type, const uint8_t *data, uint32_t len) {
    out[0] = (uint8_t)(len >> 24); out[1] = (uint8_t)(len >> 16);
    out[2] = (uint8_t)(len >> 8);  out[3] = (uint8_t)len;
    memcpy(out + 4, type, 4);
    if (len) memcpy(out + 8, data, len);
    uint32_t crc = crc32_png(out + 4, 4 + len, 0);
    out[8 + len] = (uint8_t)(crc >> 24); out[9 + len] = (uint8_t)(crc >> 16);
    out[10 + len] = (uint8_t)(crc >> 8); out[11 + len] = (uint8_t)crc;
    return 12 + len;
}

/* A PNG whose IHDR claims w x h RGB, followed by a small IDAT and IEND. */
static size_t bomb_png(uint8_t *out, uint32_t w, uint32_t h) {
    static const uint8_t sig[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };
    uint8_t ihdr[13] = { (uint8_t)(w >> 24), (uint8_t)(w >> 16), (uint8_t)(w >> 8), (uint8_t)w,
                         (uint8_t)(h >> 24), (uint8_t)(h >> 16), (uint8_t)(h >> 8), (uint8_t)h,
                         8, 2, 0, 0, 0 };
    static const uint8_t idat[11] = { 0x78, 0x9c, 0x63, 0, 0, 0, 1, 0, 1, 0, 0 };
    size_t n = 8;
    memcpy(out, sig, 8);
    n += put_chunk(out + n, "IHDR", ihdr, 13);
    n += put_chunk(out + n, "IDAT", idat, sizeof idat);
    n += put_chunk(out + n, "IEND", NULL, 0);
    return n;
}

static void test_bad_empty_random_text(void) {
    const char *empty = tmp_path("empty.jpg");
    write_bytes(empty, "", 0);
    expect_load_error(empty, NULL, QF_ERR_FORMAT, "empty");

    uint8_t junk[512];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (uint8_t)rnd();
    junk[0] = 0x12;                                    /* not a magic by chance */
    const char *random = tmp_path("random.png");
    write_bytes(random, junk, sizeof junk);
    expect_load_error(random, NULL, QF_ERR_FORMAT, "not a PNG or JPEG");

    const char *text = tmp_path("notes.png");
    const char *msg = "hello, this is a text file and not an image\n";
    write_bytes(text, msg, strlen(msg));
    expect_load_error(text, NULL, QF_ERR_FORMAT, "not a PNG or JPEG");

    const char *gif = tmp_path("anim.png");
    write_bytes(gif, "GIF89a\x01\0\x01\0\0\0\0;", 14);
    expect_load_error(gif, NULL, QF_ERR_UNSUPPORTED, "GIF");

    expect_load_error("/nonexistent/dir/x.png", NULL, QF_ERR_IO, NULL);

    const char *dir = qf_test_tmpdir();
    qf_img img;
    CU_ASSERT_EQUAL(qf_img_load(dir, NULL, &img), QF_ERR_IO);
    CU_ASSERT_PTR_NOT_NULL(strstr(qf_last_error(), dir));

    /* memory decode: name used in messages, NULL name tolerated */
    CU_ASSERT_EQUAL(qf_img_decode_mem(junk, sizeof junk, "blob-17", NULL, &img), QF_ERR_FORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(qf_last_error(), "blob-17"));
    CU_ASSERT_EQUAL(qf_img_decode_mem(junk, sizeof junk, NULL, NULL, &img), QF_ERR_FORMAT);
    CU_ASSERT_EQUAL(qf_img_decode_mem("\x89PN", 3, "short", NULL, &img), QF_ERR_FORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(qf_last_error(), "truncated PNG"));
}

static void test_sniff(void) {
    CU_ASSERT_EQUAL(qf_img_sniff("\x89PNG\r\n\x1a\n....", 12), QF_IMG_FMT_PNG);
    CU_ASSERT_EQUAL(qf_img_sniff("\x89PNG\r\n\x1a", 7), QF_IMG_FMT_UNKNOWN);
    CU_ASSERT_EQUAL(qf_img_sniff("\xff\xd8\xff\xe0", 4), QF_IMG_FMT_JPEG);
    CU_ASSERT_EQUAL(qf_img_sniff("\xff\xd8", 2), QF_IMG_FMT_UNKNOWN);
    CU_ASSERT_EQUAL(qf_img_sniff("GIF89a", 6), QF_IMG_FMT_UNKNOWN);
    CU_ASSERT_EQUAL(qf_img_sniff("", 0), QF_IMG_FMT_UNKNOWN);
    CU_ASSERT_STRING_EQUAL(qf_img_format_name(QF_IMG_FMT_PNG), "PNG");
    CU_ASSERT_STRING_EQUAL(qf_img_format_name(QF_IMG_FMT_JPEG), "JPEG");
    CU_ASSERT_STRING_EQUAL(qf_img_format_name(QF_IMG_FMT_UNKNOWN), "unknown");
    /* the fixtures' JPEG is found by content under any name */
    size_t n;
    uint8_t *b = read_bytes(qf_fixture("tiny-blip2-itm/inputs/photo_72x56.jpg"), &n);
    const char *renamed = tmp_path("photo.png");
    write_bytes(renamed, b, n);
    CU_ASSERT_EQUAL(qf_img_sniff(b, n), QF_IMG_FMT_JPEG);
    qf_img img;
    CU_ASSERT_EQUAL(qf_img_load(renamed, NULL, &img), QF_OK);
    CU_ASSERT(img.w == 72 && img.h == 56);
    qf_img_free(&img);
    free(b);
}

static void test_truncated_png(void) {
    size_t n;
    uint8_t *b = read_bytes(qf_fixture("tiny-blip2-itm/inputs/rgb_80x52.png"), &n);
    qf_img img;
    CU_ASSERT_EQUAL_FATAL(qf_img_decode_mem(b, n, "ok", NULL, &img), QF_OK);
    qf_img_free(&img);
    const size_t cuts[] = { n / 2, 40, 20, 9 };
    for (size_t k = 0; k < sizeof cuts / sizeof *cuts; k++) {
        char name[64];
        snprintf(name, sizeof name, "cut%zu.png", cuts[k]);
        const char *path = tmp_path(name);
        write_bytes(path, b, cuts[k]);
        expect_load_error(path, NULL, QF_ERR_FORMAT, "truncated");
    }
    /* corrupt: flipped bytes inside the image data -> CRC / zlib error */
    uint8_t *c = malloc(n);
    memcpy(c, b, n);
    for (size_t i = n / 2; i < n / 2 + 16; i++) c[i] ^= 0x5a;
    const char *corrupt = tmp_path("corrupt.png");
    write_bytes(corrupt, c, n);
    expect_load_error(corrupt, NULL, QF_ERR_FORMAT, "corrupt PNG");
    free(c);
    free(b);
}

static void test_truncated_jpeg(void) {
    const int w = 64, h = 64;
    uint8_t *src = noise_image(w, h, 3);
    char files[2][512];                     /* tmp_path's buffers rotate: copy */
    snprintf(files[0], sizeof files[0], "%s", tmp_path("full.jpg"));
    snprintf(files[1], sizeof files[1], "%s", tmp_path("fullp.jpg"));
    write_jpeg(files[0], w, h, JCS_RGB, JCS_UNKNOWN, 90, 0, src);
    write_jpeg(files[1], w, h, JCS_RGB, JCS_UNKNOWN, 90, 1, src);
    for (int f = 0; f < 2; f++) {
        size_t n;
        uint8_t *b = read_bytes(files[f], &n);
        qf_img img;
        qf_status st = qf_img_decode_mem(b, n, files[f], NULL, &img);
        if (st) fprintf(stderr, "\n%s\n", qf_last_error());
        CU_ASSERT_EQUAL(st, QF_OK);
        qf_img_free(&img);
        const size_t cuts[] = { n * 6 / 10, n - 40, 300, 100, 2 };
        for (size_t k = 0; k < sizeof cuts / sizeof *cuts; k++) {
            char name[64];
            snprintf(name, sizeof name, "cut%d_%zu.jpg", f, cuts[k]);
            const char *path = tmp_path(name);
            write_bytes(path, b, cuts[k]);
            expect_load_error(path, NULL, QF_ERR_FORMAT, "truncated");
        }
        free(b);
    }
    /* JPEG magic followed by garbage: a libjpeg error, caught */
    uint8_t junk[256] = { 0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10 };
    for (size_t i = 6; i < sizeof junk; i++) junk[i] = (uint8_t)rnd();
    const char *bad = tmp_path("garbage.jpg");
    write_bytes(bad, junk, sizeof junk);
    expect_load_error(bad, NULL, QF_ERR_FORMAT, "JPEG");
    free(src);
}

static void test_bomb_png(void) {
    uint8_t buf[128];
    size_t n = bomb_png(buf, 100000, 100000);
    const char *path = tmp_path("bomb.png");
    write_bytes(path, buf, n);
    /* Only the file buffer may be allocated through the seam: any pixel
     * allocation before the limit check would turn into QF_ERR_NOMEM. */
    double t0 = qf_now();
    qf_alloc_fail_after(1);
    expect_load_error(path, NULL, QF_ERR_LIMIT, "decompression bomb");
    qf_alloc_fail_after(-1);
    CU_ASSERT(qf_now() - t0 < 1.0);
    CU_ASSERT_PTR_NOT_NULL(strstr(qf_last_error(), "100000 x 100000"));

    /* the limit is configurable and checked against w*h */
    qf_img_limits lim = { 13 * 7 - 1, 0 };
    png_case(PNG_COLOR_TYPE_RGB, 8, 0, 0);           /* writes png_c2_d8_i0_t0.png, 13x7 */
    expect_load_error(tmp_path("png_c2_d8_i0_t0.png"), &lim, QF_ERR_LIMIT, "13 x 7");
    lim.max_pixels = 13 * 7;
    qf_img img;
    CU_ASSERT_EQUAL(qf_img_load(tmp_path("png_c2_d8_i0_t0.png"), &lim, &img), QF_OK);
    qf_img_free(&img);

    /* default limit = PIL's MAX_IMAGE_PIXELS */
    qf_img_limits d = qf_img_limits_default();
    CU_ASSERT_EQUAL(d.max_pixels, 89478485ULL);
    n = bomb_png(buf, 9459, 9460);                    /* 89482140 > 89478485 */
    write_bytes(path, buf, n);
    expect_load_error(path, NULL, QF_ERR_LIMIT, "9459 x 9460");
}

static void test_bomb_jpeg(void) {
    uint8_t *src = noise_image(16, 16, 3);
    const char *path = tmp_path("small.jpg");
    write_jpeg(path, 16, 16, JCS_RGB, JCS_UNKNOWN, 80, 0, src);
    size_t n;
    uint8_t *b = read_bytes(path, &n);
    size_t sof = 0;                                   /* patch SOF0 height/width */
    for (size_t i = 2; i + 9 < n; i++)
        if (b[i] == 0xff && b[i + 1] == 0xc0) { sof = i; break; }
    CU_ASSERT_FATAL(sof > 0);
    b[sof + 5] = 0xea; b[sof + 6] = 0x60;             /* height 60000 */
    b[sof + 7] = 0xea; b[sof + 8] = 0x60;             /* width 60000 */
    const char *bomb = tmp_path("bomb.jpg");
    write_bytes(bomb, b, n);
    qf_alloc_fail_after(1);
    expect_load_error(bomb, NULL, QF_ERR_LIMIT, "60000 x 60000");
    qf_alloc_fail_after(-1);
    free(b);
    free(src);
}

static void test_file_size_limit(void) {
    qf_img_limits lim = { 0, 100 };
    const char *p = qf_fixture("tiny-blip2-itm/inputs/rgb_80x52.png");
    expect_load_error(p, &lim, QF_ERR_LIMIT, NULL);
    lim.max_file_bytes = 1 << 20;
    qf_img img;
    CU_ASSERT_EQUAL(qf_img_load(p, &lim, &img), QF_OK);
    qf_img_free(&img);
    qf_img_free(&img);                                /* idempotent */
    qf_img_free(NULL);
}

/* ------------------------------------------------------------------------ */
/* resize                                                                   */
/* ------------------------------------------------------------------------ */

static qf_img make_img(int w, int h, int constant) {
    qf_img im = { w, h, malloc((size_t)w * h * 3) };
    for (size_t i = 0; i < (size_t)w * h * 3; i++)
        im.rgb[i] = constant >= 0 ? (uint8_t)constant : (uint8_t)rnd();
    return im;
}

static void test_resize_identity(void) {
    qf_img a = make_img(23, 17, -1), b;
    CU_ASSERT_EQUAL_FATAL(qf_img_resize_bicubic(&a, 23, 17, &b), QF_OK);
    CU_ASSERT(b.w == 23 && b.h == 17);
    CU_ASSERT(memcmp(a.rgb, b.rgb, (size_t)23 * 17 * 3) == 0);
    CU_ASSERT(a.rgb != b.rgb);
    qf_img_free(&b);
    free(a.rgb);
}

static void test_resize_constant(void) {
    const int sizes[][4] = { { 640, 480, 56, 56 }, { 1000, 3, 7, 2 }, { 3, 5, 56, 56 },
                             { 50, 70, 50, 21 }, { 50, 70, 13, 70 }, { 1, 1, 9, 4 } };
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        const int v = 37 + 40 * (int)k;
        qf_img a = make_img(sizes[k][0], sizes[k][1], v), b;
        CU_ASSERT_EQUAL_FATAL(qf_img_resize_bicubic(&a, sizes[k][2], sizes[k][3], &b), QF_OK);
        CU_ASSERT(b.w == sizes[k][2] && b.h == sizes[k][3]);
        size_t bad = 0;
        for (size_t i = 0; i < (size_t)b.w * b.h * 3; i++) bad += b.rgb[i] != v;
        if (bad) fprintf(stderr, "\nconstant %d: %dx%d -> %dx%d: %zu samples changed\n", v,
                         sizes[k][0], sizes[k][1], sizes[k][2], sizes[k][3], bad);
        CU_ASSERT_EQUAL(bad, 0);
        qf_img_free(&b);
        free(a.rgb);
    }
}

/* Only one pass runs when one dimension is unchanged; a vertical gradient
 * stays exactly a vertical gradient under a horizontal-only resize. */
static void test_resize_one_axis(void) {
    qf_img a = make_img(40, 30, 0), b;
    for (int y = 0; y < 30; y++)
        for (int x = 0; x < 40; x++)
            for (int c = 0; c < 3; c++) a.rgb[((size_t)y * 40 + x) * 3 + c] = (uint8_t)(y * 8 + c);
    CU_ASSERT_EQUAL_FATAL(qf_img_resize_bicubic(&a, 17, 30, &b), QF_OK);
    size_t bad = 0;
    for (int y = 0; y < 30; y++)
        for (int x = 0; x < 17; x++)
            for (int c = 0; c < 3; c++) bad += b.rgb[((size_t)y * 17 + x) * 3 + c] != y * 8 + c;
    CU_ASSERT_EQUAL(bad, 0);
    qf_img_free(&b);
    /* and a ramp shrunk along it stays monotonic */
    CU_ASSERT_EQUAL_FATAL(qf_img_resize_bicubic(&a, 40, 11, &b), QF_OK);
    for (int y = 1; y < 11; y++) CU_ASSERT(b.rgb[(size_t)y * 40 * 3] >= b.rgb[(size_t)(y - 1) * 40 * 3]);
    qf_img_free(&b);
    free(a.rgb);
}

static void test_resize_args(void) {
    qf_img a = make_img(4, 4, 1), b = { 1, 1, NULL };
    CU_ASSERT_EQUAL(qf_img_resize_bicubic(&a, 0, 4, &b), QF_ERR_ARG);
    CU_ASSERT_EQUAL(qf_img_resize_bicubic(&a, 4, -1, &b), QF_ERR_ARG);
    qf_img empty = { 0, 0, NULL };
    CU_ASSERT_EQUAL(qf_img_resize_bicubic(&empty, 4, 4, &b), QF_ERR_ARG);
    CU_ASSERT_PTR_NULL(b.rgb);
    free(a.rgb);
}

/* ------------------------------------------------------------------------ */
/* preprocessing                                                            */
/* ------------------------------------------------------------------------ */

static qf_status parse(const char *json, qf_img_preproc *p) {
    return qf_img_preproc_parse(json, strlen(json), "cfg.json", p);
}

static void test_preproc_parse(void) {
    qf_img_preproc p;
    CU_ASSERT_EQUAL(parse("{}", &p), QF_OK);        /* HF defaults */
    CU_ASSERT(p.do_resize && p.do_rescale && p.do_normalize && p.do_convert_rgb);
    CU_ASSERT(p.height == 384 && p.width == 384 && p.resample == 3);
    CU_ASSERT_EQUAL(p.rescale_factor, 1.0 / 255.0);
    CU_ASSERT_EQUAL(p.mean[1], 0.4578275f);
    CU_ASSERT_EQUAL(p.std[0], 0.26862954f);

    CU_ASSERT_EQUAL(parse("{\"size\": 224}", &p), QF_OK);
    CU_ASSERT(p.height == 224 && p.width == 224);
    CU_ASSERT_EQUAL(parse("{\"size\": [224, 300]}", &p), QF_OK);
    CU_ASSERT(p.height == 224 && p.width == 300);
    CU_ASSERT_EQUAL(parse("{\"size\": {\"height\": 32, \"width\": 48}, \"do_rescale\": false,"
                          " \"image_mean\": 0.5, \"image_std\": [1, 2, 4]}", &p), QF_OK);
    CU_ASSERT(p.height == 32 && p.width == 48 && !p.do_rescale);
    CU_ASSERT(p.mean[0] == 0.5f && p.mean[2] == 0.5f && p.std[2] == 4.0f);

    CU_ASSERT_EQUAL(parse("{\"size\": {\"shortest_edge\": 224}}", &p), QF_ERR_UNSUPPORTED);
    CU_ASSERT_PTR_NOT_NULL(strstr(qf_last_error(), "cfg.json"));
    CU_ASSERT_EQUAL(parse("{\"resample\": 2}", &p), QF_ERR_UNSUPPORTED);
    CU_ASSERT_PTR_NOT_NULL(strstr(qf_last_error(), "BILINEAR"));
    CU_ASSERT_EQUAL(parse("{\"resample\": 2, \"do_resize\": false}", &p), QF_OK);
    CU_ASSERT_EQUAL(parse("{\"image_mean\": [1, 2]}", &p), QF_ERR_FORMAT);
    CU_ASSERT_EQUAL(parse("{\"image_std\": [1, 0, 1]}", &p), QF_ERR_FORMAT);
    CU_ASSERT_EQUAL(parse("{\"size\": -3}", &p), QF_ERR_FORMAT);
    CU_ASSERT_EQUAL(parse("{\"do_resize\": \"yes\"}", &p), QF_ERR_FORMAT);
    CU_ASSERT_EQUAL(parse("{\"size\": ", &p), QF_ERR_FORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(qf_last_error(), "cfg.json"));
    CU_ASSERT_EQUAL(parse("[1, 2]", &p), QF_ERR_FORMAT);

    CU_ASSERT_EQUAL(qf_img_preproc_load("/nonexistent/model", &p), QF_ERR_IO);
    CU_ASSERT_PTR_NOT_NULL(strstr(qf_last_error(), "/nonexistent/model/preprocessor_config.json"));
}

static void test_preprocess_arith(void) {
    qf_img_preproc p;
    CU_ASSERT_EQUAL_FATAL(parse("{\"size\": {\"height\": 2, \"width\": 3}}", &p), QF_OK);
    qf_img im = make_img(3, 2, -1);
    float pix[18];
    uint8_t res[18];
    CU_ASSERT_EQUAL_FATAL(qf_img_preprocess(&p, &im, pix, res), QF_OK);  /* no resize needed */
    CU_ASSERT(memcmp(res, im.rgb, 18) == 0);
    for (int i = 0; i < 6; i++)
        for (int c = 0; c < 3; c++) {
            float x = (float)(im.rgb[3 * i + c] * (1.0 / 255.0));
            float want = (x - p.mean[c]) / p.std[c];
            CU_ASSERT_EQUAL(pix[c * 6 + i], want);                  /* CHW */
        }
    /* do_rescale off: normalise the raw values */
    p.do_rescale = 0;
    CU_ASSERT_EQUAL_FATAL(qf_img_preprocess(&p, &im, pix, NULL), QF_OK);
    CU_ASSERT_EQUAL(pix[7], ((float)im.rgb[4] - p.mean[1]) / p.std[1]);
    /* do_resize off with a mismatched size: refused */
    p.do_resize = 0;
    p.width = 4;
    CU_ASSERT_EQUAL(qf_img_preprocess(&p, &im, pix, NULL), QF_ERR_SHAPE);
    /* unsupported filter */
    p.do_resize = 1;
    p.resample = 0;
    CU_ASSERT_EQUAL(qf_img_preprocess(&p, &im, pix, NULL), QF_ERR_UNSUPPORTED);
    free(im.rgb);

    /* load_pixels reports the decode error with the path */
    qf_img_preproc_default(&p);
    float *big = malloc(sizeof(float) * 3 * 384 * 384);
    int w = -1, h = -1;
    CU_ASSERT_EQUAL(qf_img_load_pixels("/nonexistent/a.jpg", &p, NULL, big, NULL, &w, &h), QF_ERR_IO);
    CU_ASSERT_PTR_NOT_NULL(strstr(qf_last_error(), "/nonexistent/a.jpg"));
    CU_ASSERT_EQUAL(qf_img_load_pixels(qf_fixture("tiny-blip2-itm/inputs/tiny_3x5.png"), &p, NULL,
                                       big, NULL, &w, &h), QF_OK);
    CU_ASSERT(w == 3 && h == 5);
    free(big);
}

/* ------------------------------------------------------------------------ */
/* allocation failures                                                      */
/* ------------------------------------------------------------------------ */

/* Every allocation of each path fails in turn: the call must report
 * QF_ERR_NOMEM (or succeed once enough allocations are allowed), never crash
 * or leak (run under ASan in CI). */
static void test_alloc_failures(void) {
    png_case(PNG_COLOR_TYPE_PALETTE, 4, 1, 1);       /* interlaced: extra buffers */
    const char *files[] = {
        tmp_path("png_c3_d4_i1_t1.png"),
        qf_fixture("tiny-blip2-itm/inputs/rgb_80x52.png"),
        qf_fixture("tiny-blip2-itm/inputs/photo_72x56.jpg"),
        qf_fixture("tiny-blip2-itm/inputs/gray_64x48.png"),
        qf_fixture("tiny-blip2-itm"),
    };
    qf_img_preproc p;
    CU_ASSERT_EQUAL_FATAL(qf_img_preproc_load(files[4], &p), QF_OK);
    float *pix = malloc(sizeof(float) * 3 * p.height * p.width);
    for (int f = 0; f < 4; f++) {
        int ok = 0;
        for (long k = 0; k < 64 && !ok; k++) {
            qf_alloc_fail_after(k);
            qf_status st = qf_img_load_pixels(files[f], &p, NULL, pix, NULL, NULL, NULL);
            qf_alloc_fail_after(-1);
            if (st == QF_OK) ok = 1;
            else if (st != QF_ERR_NOMEM)
                fprintf(stderr, "\n%s after %ld allocations: %s\n", files[f], k, qf_last_error());
            CU_ASSERT(st == QF_OK || st == QF_ERR_NOMEM);
        }
        CU_ASSERT(ok);
    }
    for (long k = 0; k < 16; k++) {
        qf_alloc_fail_after(k);
        qf_img_preproc q;
        qf_status st = qf_img_preproc_load(files[4], &q);
        qf_alloc_fail_after(-1);
        CU_ASSERT(st == QF_OK || st == QF_ERR_NOMEM || st == QF_ERR_FORMAT);
    }
    free(pix);
}

static CU_TestInfo tests[] = {
    { "png_grey", test_png_grey },
    { "png_grey_alpha", test_png_grey_alpha },
    { "png_rgb_rgba", test_png_rgb_rgba },
    { "png_palette", test_png_palette },
    { "png_interlaced", test_png_interlaced },
    { "png_wide", test_png_wide },
    { "jpeg_grey", test_jpeg_grey },
    { "jpeg_progressive", test_jpeg_progressive },
    { "jpeg_cmyk", test_jpeg_cmyk },
    { "jpeg_ycck", test_jpeg_ycck },
    { "bad_empty_random_text", test_bad_empty_random_text },
    { "sniff", test_sniff },
    { "truncated_png", test_truncated_png },
    { "truncated_jpeg", test_truncated_jpeg },
    { "bomb_png", test_bomb_png },
    { "bomb_jpeg", test_bomb_jpeg },
    { "file_size_limit", test_file_size_limit },
    { "resize_identity", test_resize_identity },
    { "resize_constant", test_resize_constant },
    { "resize_one_axis", test_resize_one_axis },
    { "resize_args", test_resize_args },
    { "preproc_parse", test_preproc_parse },
    { "preprocess_arith", test_preprocess_arith },
    { "alloc_failures", test_alloc_failures },
    CU_TEST_INFO_NULL,
};

int main(void) { return qf_test_main("image", tests); }
