/* make_heif.c - writes the HEIC / AVIF files of tests/e2e/image_formats.sh
 * (Pillow cannot write them): make_heif OUT_DIR W H. For each orientation
 * o in 1..8: OUT_DIR/heic_o<o>.heic and OUT_DIR/avif_o<o>.avif holding the
 * test picture tagged with o, and OUT_DIR/picture.rgb, the raw w x h RGB
 * picture (what the e2e test orients and compares with, within lossy
 * tolerance). Exit 1 on any failure. */
#include "tests/heifenc.h"

#include <stdio.h>
#include <stdlib.h>

static int write_file(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "make_heif: cannot write %s\n", path);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: make_heif OUT_DIR W H\n");
        return 2;
    }
    int w = atoi(argv[2]), h = atoi(argv[3]);
    uint8_t *pic = qf_test_heif_picture(w, h);
    char path[4096];
    snprintf(path, sizeof path, "%s/picture.rgb", argv[1]);
    if (!pic || write_file(path, pic, (size_t)w * h * 3)) return 1;
    for (int avif = 0; avif < 2; avif++)
        for (int o = 1; o <= 8; o++) {
            uint8_t *b = NULL;
            size_t n = 0;
            if (qf_test_heif_encode(pic, w, h, avif, o, &b, &n)) return 1;
            snprintf(path, sizeof path, "%s/%s_o%d.%s", argv[1], avif ? "avif" : "heic", o,
                     avif ? "avif" : "heic");
            int rc = write_file(path, b, n);
            free(b);
            if (rc) return 1;
        }
    free(pic);
    return 0;
}
