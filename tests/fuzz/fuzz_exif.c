/* fuzz_exif.c - libFuzzer harness for the EXIF Orientation parser
 * (embed/exif.c): the input is a TIFF structure (as in a JPEG APP1 after
 * "Exif\0\0", a PNG eXIf or WebP EXIF chunk); it is parsed from an exact-size
 * heap copy (ASan sees any read past the end) with and without the
 * "Exif\0\0" prefix, which must give the same answer, always 0..8. */
#include "embed/exif.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_reset();
    uint8_t *b = malloc(size ? size : 1), *p = malloc(size + 6);
    if (!b || !p) fuzz_die("out of memory");
    if (size) memcpy(b, data, size);
    int o = qf_exif_orientation(b, size);
    FUZZ_CHECK(o >= 0 && o <= 8);
    memcpy(p, "Exif\0\0", 6);
    if (size) memcpy(p + 6, data, size);
    int op = qf_exif_orientation(p, size + 6);
    /* the prefix is skipped once: the same answer unless the input itself
     * starts with another "Exif\0\0" */
    FUZZ_CHECK(op == o || (size >= 6 && !memcmp(data, "Exif\0\0", 6)));
    const char *name = qf_exif_orientation_name(o);
    FUZZ_CHECK(name && name[0]);
    free(p);
    free(b);
    return 0;
}
