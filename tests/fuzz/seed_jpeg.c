/* seed_jpeg.c - writes small JPEG seeds for the fuzz_image corpus with
 * libjpeg (run by make_seeds.py, not part of any build): grey, RGB 4:4:4,
 * YCbCr 4:2:0 progressive, CMYK (Adobe marker), restart intervals,
 * arithmetic coding when the library has it. Usage: seed_jpeg OUT_DIR */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>

static void write_jpeg(const char *dir, const char *name, int w, int h, J_COLOR_SPACE cs, int nc,
                       int progressive, int h_samp, int restart, int arith, int quality) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) { perror(path); exit(1); }
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr err;
    c.err = jpeg_std_error(&err);
    jpeg_create_compress(&c);
    jpeg_stdio_dest(&c, f);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = nc;
    c.in_color_space = cs;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, quality, TRUE);
    if (nc == 3) {
        c.comp_info[0].h_samp_factor = h_samp;
        c.comp_info[0].v_samp_factor = h_samp;
    }
    if (progressive) jpeg_simple_progression(&c);
    c.restart_interval = (unsigned)restart;
#ifdef C_ARITH_CODING_SUPPORTED
    c.arith_code = arith ? TRUE : FALSE;
#else
    (void)arith;
#endif
    jpeg_start_compress(&c, TRUE);
    JSAMPLE *row = malloc((size_t)w * nc);
    while (c.next_scanline < c.image_height) {
        int y = (int)c.next_scanline;
        for (int x = 0; x < w; x++)
            for (int k = 0; k < nc; k++) row[x * nc + k] = (JSAMPLE)((x * 17 + y * 29 + k * 71) & 0xff);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    free(row);
    fclose(f);
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: seed_jpeg OUT_DIR\n"); return 2; }
    const char *d = argv[1];
    write_jpeg(d, "grey_9x7.jpg", 9, 7, JCS_GRAYSCALE, 1, 0, 1, 0, 0, 75);
    write_jpeg(d, "rgb444_12x10.jpg", 12, 10, JCS_RGB, 3, 0, 1, 0, 0, 90);
    write_jpeg(d, "prog420_17x13.jpg", 17, 13, JCS_RGB, 3, 1, 2, 0, 0, 60);
    write_jpeg(d, "cmyk_8x8.jpg", 8, 8, JCS_CMYK, 4, 0, 1, 0, 0, 80);
    write_jpeg(d, "restart_20x6.jpg", 20, 6, JCS_RGB, 3, 0, 2, 1, 0, 50);
    write_jpeg(d, "arith_10x10.jpg", 10, 10, JCS_RGB, 3, 0, 2, 0, 1, 70);
    return 0;
}
