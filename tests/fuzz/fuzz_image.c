/* fuzz_image.c - libFuzzer harness: the input is an encoded image of any
 * format (sniffed by magic) run through fuzz_img.h (decode under a small
 * pixel limit, preprocess, resize, allocation failure). */
#include "tests/fuzz/fuzz_img.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_img_one(data, size, QF_IMG_FMT_UNKNOWN);
    return 0;
}
