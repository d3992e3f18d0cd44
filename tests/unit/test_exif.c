/* test_exif.c - the EXIF Orientation parser against the values Pillow 9.4's
 * Image.getexif().get(0x0112) gives for the same bytes (each case below was
 * checked with python3-pil 9.4; exif_transpose acts only on ints 2..8, so a
 * bytes or string value, or none, is 0 here), and malformed structures
 * (never read outside the buffer: the ASan build runs this too). */
#include "embed/exif.h"
#include "tests/testutil.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    uint16_t tag, type;
    uint32_t count;
    uint8_t  val[4];          /* inline value or offset, already in file order */
} entry;

/* TIFF header + IFD0 at offset 8 + next-IFD 0 + extra bytes; `declared`
 * overrides the entry count (<0: the real one). Returns the length. */
static size_t tiff(uint8_t *out, int le, const entry *e, int n, int declared,
                   const uint8_t *extra, size_t n_extra) {
    size_t k = 0;
    memcpy(out, le ? "II*\0" : "MM\0*", 4);
    k = 4;
    uint32_t off = 8;
    for (int i = 0; i < 4; i++) out[k++] = (uint8_t)(le ? off >> (8 * i) : off >> (24 - 8 * i));
    uint16_t cnt = (uint16_t)(declared < 0 ? n : declared);
    out[k++] = (uint8_t)(le ? cnt : cnt >> 8);
    out[k++] = (uint8_t)(le ? cnt >> 8 : cnt);
    for (int i = 0; i < n; i++) {
        uint16_t f[2] = { e[i].tag, e[i].type };
        for (int j = 0; j < 2; j++) {
            out[k++] = (uint8_t)(le ? f[j] : f[j] >> 8);
            out[k++] = (uint8_t)(le ? f[j] >> 8 : f[j]);
        }
        for (int j = 0; j < 4; j++)
            out[k++] = (uint8_t)(le ? e[i].count >> (8 * j) : e[i].count >> (24 - 8 * j));
        memcpy(out + k, e[i].val, 4);
        k += 4;
    }
    memset(out + k, 0, 4);
    k += 4;
    if (n_extra) memcpy(out + k, extra, n_extra);
    return k + n_extra;
}

#define LE16(v) { (uint8_t)(v), (uint8_t)((v) >> 8), 0, 0 }
#define LE32(v) { (uint8_t)(v), (uint8_t)((v) >> 8), (uint8_t)((v) >> 16), (uint8_t)((v) >> 24) }

static int one(const entry *e, int n) {
    uint8_t b[512];
    size_t len = tiff(b, 1, e, n, -1, NULL, 0);
    return qf_exif_orientation(b, len);
}

static void test_short_long_endianness(void) {
    for (int o = 1; o <= 8; o++) {
        entry e = { 0x112, 3, 1, LE16(o) };
        CU_ASSERT_EQUAL(one(&e, 1), o);
        /* big-endian: the value bytes in file order */
        entry be = { 0x112, 3, 1, { 0, (uint8_t)o, 0, 0 } };
        uint8_t b[64];
        size_t len = tiff(b, 0, &be, 1, -1, NULL, 0);
        CU_ASSERT_EQUAL(qf_exif_orientation(b, len), o);
        /* with the "Exif\0\0" prefix of JPEG APP1 */
        uint8_t p[70] = "Exif\0\0";
        memcpy(p + 6, b, len);
        CU_ASSERT_EQUAL(qf_exif_orientation(p, len + 6), o);
    }
    entry l = { 0x112, 4, 1, LE32(8) };
    CU_ASSERT_EQUAL(one(&l, 1), 8);                   /* LONG 8 -> 8 */
    entry s = { 0x112, 6, 1, { 6, 0, 0, 0 } };
    CU_ASSERT_EQUAL(one(&s, 1), 6);                   /* SBYTE -> (6,) -> 6 */
    entry f = { 0x112, 11, 1, { 0, 0, 0xc0, 0x40 } };
    CU_ASSERT_EQUAL(one(&f, 1), 6);                   /* FLOAT 6.0 == 6 */
    entry ss = { 0x112, 8, 1, { 0xff, 0xff, 0, 0 } };
    CU_ASSERT_EQUAL(one(&ss, 1), 0);                  /* SSHORT -1 */
}

static void test_not_acted_on(void) {
    entry byte = { 0x112, 1, 1, { 6, 0, 0, 0 } };     /* BYTE: b'\x06', not an int */
    CU_ASSERT_EQUAL(one(&byte, 1), 0);
    entry ascii = { 0x112, 2, 2, { '6', 0, 0, 0 } };  /* ASCII: "6" */
    CU_ASSERT_EQUAL(one(&ascii, 1), 0);
    entry nine = { 0x112, 3, 1, LE16(9) };
    CU_ASSERT_EQUAL(one(&nine, 1), 0);
    entry zero = { 0x112, 3, 1, LE16(0) };
    CU_ASSERT_EQUAL(one(&zero, 1), 0);
    entry count0 = { 0x112, 3, 0, LE16(6) };          /* no values: skipped */
    CU_ASSERT_EQUAL(one(&count0, 1), 0);
    entry other = { 0x100, 3, 1, LE16(6) };           /* ImageWidth, no Orientation */
    CU_ASSERT_EQUAL(one(&other, 1), 0);
}

static void test_out_of_line_values(void) {
    uint8_t b[128];
    /* RATIONAL 12/2 at offset 26 (8 + 2 + 12 + 4): 6.0 == 6 */
    uint8_t r[8] = { 12, 0, 0, 0, 2, 0, 0, 0 };
    entry e = { 0x112, 5, 1, LE32(26) };
    size_t len = tiff(b, 1, &e, 1, -1, r, 8);
    CU_ASSERT_EQUAL(qf_exif_orientation(b, len), 6);
    uint8_t r2[8] = { 7, 0, 0, 0, 2, 0, 0, 0 };       /* 3.5 */
    len = tiff(b, 1, &e, 1, -1, r2, 8);
    CU_ASSERT_EQUAL(qf_exif_orientation(b, len), 0);
    uint8_t r0[8] = { 6, 0, 0, 0, 0, 0, 0, 0 };       /* x/0: NaN */
    len = tiff(b, 1, &e, 1, -1, r0, 8);
    CU_ASSERT_EQUAL(qf_exif_orientation(b, len), 0);
    /* DOUBLE 3.0 */
    double d = 3.0;
    uint8_t db[8];
    memcpy(db, &d, 8);                                /* test host is little-endian */
    entry de = { 0x112, 12, 1, LE32(26) };
    len = tiff(b, 1, &de, 1, -1, db, 8);
    CU_ASSERT_EQUAL(qf_exif_orientation(b, len), 3);
    /* count 2: the first value counts (Orientation has length 1) */
    entry two = { 0x112, 3, 2, { 5, 0, 1, 0 } };
    CU_ASSERT_EQUAL(one(&two, 1), 5);
    /* offset past the end: truncated to the header */
    len = tiff(b, 1, &e, 1, -1, r, 8);
    CU_ASSERT_EQUAL(qf_exif_orientation(b, len - 1), 0);
}

static void test_ifd_walk_rules(void) {
    /* the last of two Orientation entries wins */
    entry dup[2] = { { 0x112, 3, 1, LE16(6) }, { 0x112, 3, 1, LE16(3) } };
    CU_ASSERT_EQUAL(one(dup, 2), 3);
    /* data of an earlier entry out of the buffer stops the IFD: no orientation */
    entry oob_before[2] = { { 0x10f, 2, 20, LE32(5000) }, { 0x112, 3, 1, LE16(6) } };
    CU_ASSERT_EQUAL(one(oob_before, 2), 0);
    entry oob_after[2] = { { 0x112, 3, 1, LE16(6) }, { 0x10f, 2, 20, LE32(5000) } };
    CU_ASSERT_EQUAL(one(oob_after, 2), 6);
    /* an unknown field type is skipped */
    entry unk[2] = { { 0x100, 99, 1, LE16(1) }, { 0x112, 3, 1, LE16(7) } };
    CU_ASSERT_EQUAL(one(unk, 2), 7);
    /* the table claims 5 entries, 2 are there: the ones read count */
    uint8_t b[128];
    entry tr[2] = { { 0x100, 3, 1, LE16(1) }, { 0x112, 3, 1, LE16(7) } };
    size_t len = tiff(b, 1, tr, 2, 5, NULL, 0);
    CU_ASSERT_EQUAL(qf_exif_orientation(b, len - 4), 7);
    /* every cut of a valid structure: no crash, 0 or the value */
    entry ok = { 0x112, 3, 1, LE16(8) };
    len = tiff(b, 1, &ok, 1, -1, NULL, 0);
    for (size_t k = 0; k < len; k++) {
        uint8_t *c = malloc(k ? k : 1);               /* exact size: ASan sees overreads */
        memcpy(c, b, k);
        int o = qf_exif_orientation(c, k);
        CU_ASSERT(o == 0 || (o == 8 && k >= 22));
        free(c);
    }
}

static void test_headers(void) {
    uint8_t b[64];
    entry e = { 0x112, 3, 1, LE16(6) };
    size_t len = tiff(b, 1, &e, 1, -1, NULL, 0);
    memcpy(b, "II\0*", 4);                            /* byte-swapped magic: accepted */
    CU_ASSERT_EQUAL(qf_exif_orientation(b, len), 6);
    memcpy(b, "XX*\0", 4);
    CU_ASSERT_EQUAL(qf_exif_orientation(b, len), 0);
    memcpy(b, "II*\0", 4);
    b[4] = 0xf0;                                      /* IFD offset past the end */
    CU_ASSERT_EQUAL(qf_exif_orientation(b, len), 0);
    CU_ASSERT_EQUAL(qf_exif_orientation(NULL, 10), 0);
    CU_ASSERT_EQUAL(qf_exif_orientation("Exif\0\0", 6), 0);
    CU_ASSERT_STRING_EQUAL(qf_exif_orientation_name(6), "6 (rotated 90 clockwise)");
    CU_ASSERT_STRING_EQUAL(qf_exif_orientation_name(42), "none");
}

static CU_TestInfo tests[] = {
    { "SHORT/LONG/SBYTE/FLOAT values, both byte orders, Exif prefix", test_short_long_endianness },
    { "values exif_transpose does not act on", test_not_acted_on },
    { "RATIONAL/DOUBLE/multi-value out-of-line data", test_out_of_line_values },
    { "IFD walk: duplicates, out-of-buffer data, unknown types, cuts", test_ifd_walk_rules },
    { "headers", test_headers },
    CU_TEST_INFO_NULL,
};

int main(void) { return qf_test_main("exif", tests); }
