/* fuzz_heif.c - libFuzzer harness for the HEIF/HEIC/AVIF (libheif) decoder: the
 * input gets the format's signature written over its first bytes
 * (fuzz_img_force), then runs through fuzz_img.h (decode under a small
 * pixel limit, preprocess, resize, allocation failure). */
#include "tests/fuzz/fuzz_img.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t n;
    uint8_t *b = fuzz_img_force(data, size, QF_IMG_FMT_HEIF, &n);
    fuzz_img_one(b, n, QF_IMG_FMT_UNKNOWN);
    free(b);
    return 0;
}
