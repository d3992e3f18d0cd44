/* test_safetensors.c - safetensors writer/reader round trip, exact F16/BF16
 * upcasts, every header corruption the reader must refuse (crafted files in
 * the test's temporary directory), sharded indexes, directory resolution,
 * writer argument checks, and allocation-failure injection. */
#include "embed/safetensors.h"
#include "tests/testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------------ */

/* "<tmpdir>/<rel>" in a rotating static buffer. */
static const char *tmp(const char *rel) {
    static char bufs[8][512];
    static int slot;
    char *b = bufs[slot++ & 7];
    snprintf(b, 512, "%s/%s", qf_test_tmpdir(), rel);
    return b;
}

static void put_bytes(const char *path, const void *buf, size_t n) {
    FILE *f = fopen(path, "wb");
    CU_ASSERT_FATAL(f != NULL);
    CU_ASSERT_FATAL(fwrite(buf, 1, n, f) == n);
    CU_ASSERT_FATAL(fclose(f) == 0);
}

static void put_text(const char *path, const char *text) { put_bytes(path, text, strlen(text)); }

static void mkdir_p(const char *path) {
    CU_ASSERT_FATAL(mkdir(path, 0755) == 0);
}

/* Writes a safetensors file: u64-LE length of `json`, json padded with
 * `pad` spaces, then `payload` bytes (0, 1, 2, ... mod 256). */
static const char *craft_pad(const char *name, const char *json, size_t pad, size_t payload) {
    const char *path = tmp(name);
    size_t jl = strlen(json), n = 8 + jl + pad + payload;
    unsigned char *buf = malloc(n);
    CU_ASSERT_FATAL(buf != NULL);
    uint64_t hl = jl + pad;
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(hl >> (8 * i));
    memcpy(buf + 8, json, jl);
    memset(buf + 8 + jl, ' ', pad);
    for (size_t i = 0; i < payload; i++) buf[8 + jl + pad + i] = (unsigned char)i;
    put_bytes(path, buf, n);
    free(buf);
    return path;
}

static const char *craft(const char *name, const char *json, size_t payload) {
    return craft_pad(name, json, 0, payload);
}

/* Copies tmp(rel) into buf (tmp's buffers rotate). */
#define TMPDIR_VAR(var, rel) char var[512]; snprintf(var, sizeof var, "%s", tmp(rel))

static int contains(const char *hay, const char *needle) { return needle == NULL || strstr(hay, needle) != NULL; }

/* Opens `path`, expecting status `want` and an error text that names
 * `n1` and `n2` (NULL: not checked) and the file. */
static void expect_open_(const char *path, qf_status want, const char *file, const char *n1,
                         const char *n2, int line) {
    qf_st *st = (qf_st *)&st;   /* must be reset to NULL on failure */
    qf_error_clear();
    qf_status s = qf_st_open(path, &st);
    const char *msg = qf_last_error();
    int ok = s == want && st == NULL && contains(msg, file) && contains(msg, n1) && contains(msg, n2);
    if (!ok)
        fprintf(stderr, "\nline %d: %s: got %s (want %s), message: %s\n", line, path, qf_status_str(s),
                qf_status_str(want), msg);
    CU_ASSERT_EQUAL(s, want);
    CU_ASSERT_PTR_NULL(st);
    CU_ASSERT(contains(msg, file));
    CU_ASSERT(contains(msg, n1));
    CU_ASSERT(contains(msg, n2));
    if (s == QF_OK) qf_st_close(st);
}
#define EXPECT_OPEN(path, want, file, n1, n2) expect_open_((path), (want), (file), (n1), (n2), __LINE__)
#define EXPECT_BAD(path, want, n1, n2) do { const char *p_ = (path); EXPECT_OPEN(p_, want, p_, n1, n2); } while (0)

/* Straightforward IEEE half -> double reference (no bit tricks). */
static double ref_half(uint16_t h) {
    int sgn = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v;
    if (e == 31) v = m ? NAN : INFINITY;
    else if (e == 0) v = ldexp(m, -24);
    else v = ldexp(1024 + m, e - 25);
    return sgn ? -v : v;
}

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* ---- round trip ------------------------------------------------------------------ */

static const float    rt_f32[6]  = { 1.5f, -2.0f, 3.25f, 0.0f, 1e-30f, 65504.0f };
static const uint8_t  rt_u8[5]   = { 1, 2, 3, 250, 255 };
static const uint16_t rt_f16[4]  = { 0x3c00, 0xc000, 0x7c00, 0x0001 };
static const uint16_t rt_bf16[4] = { 0x3f80, 0xbf80, 0x7f80, 0x0001 };
static const int64_t  rt_i64[3]  = { -1, 0, (int64_t)1 << 40 };
static const double   rt_f64[2]  = { 0.1, -1e300 };
static const int32_t  rt_i32[3]  = { -7, 0, 2147483647 };
static const uint8_t  rt_bool[2] = { 1, 0 };
static const float    rt_scalar  = 42.0f;

static const int64_t sh_23[] = { 2, 3 }, sh_5[] = { 5 }, sh_4[] = { 4 }, sh_22[] = { 2, 2 },
                     sh_3[] = { 3 }, sh_04[] = { 0, 4 }, sh_2[] = { 2 };

static const qf_st_item rt_items[] = {
    { "w.f32",  QF_DT_F32,  2, sh_23, rt_f32 },
    { "a.u8",   QF_DT_U8,   1, sh_5,  rt_u8 },
    { "h.f16",  QF_DT_F16,  1, sh_4,  rt_f16 },
    { "b.bf16", QF_DT_BF16, 2, sh_22, rt_bf16 },
    { "ids",    QF_DT_I64,  1, sh_3,  rt_i64 },
    { "empty",  QF_DT_F32,  2, sh_04, NULL },
    { "scalar", QF_DT_F32,  0, NULL,  &rt_scalar },
    { "d.f64",  QF_DT_F64,  1, sh_2,  rt_f64 },
    { "i32",    QF_DT_I32,  1, sh_3,  rt_i32 },
    { "mask",   QF_DT_BOOL, 1, sh_2,  rt_bool },
};
#define N_RT (sizeof rt_items / sizeof rt_items[0])

static void test_roundtrip(void) {
    const char *path = tmp("rt.safetensors");
    const char *meta[] = { "format", "pt", "note", "caf\xc3\xa9 \"quoted\"", NULL };
    CU_ASSERT_EQUAL_FATAL(qf_st_write(path, rt_items, N_RT, meta), QF_OK);
    char tmpname[600];
    snprintf(tmpname, sizeof tmpname, "%s.tmp", path);
    CU_ASSERT(access(tmpname, F_OK) != 0);

    /* Raw layout: 8-byte-aligned payload, space padding, keys in given order. */
    char *raw;
    size_t raw_len;
    CU_ASSERT_EQUAL_FATAL(qf_read_file(path, 1 << 20, &raw, &raw_len), QF_OK);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | (unsigned char)raw[i];
    CU_ASSERT((8 + hl) % 8 == 0);
    CU_ASSERT(raw[8] == '{');
    size_t close = 8 + hl;
    while (close > 8 && raw[close - 1] == ' ') close--;
    CU_ASSERT(raw[close - 1] == '}');
    CU_ASSERT(8 + hl - close < 8);
    char *hdr = malloc(hl + 1);
    memcpy(hdr, raw + 8, hl);
    hdr[hl] = 0;
    const char *prev = strstr(hdr, "\"__metadata__\"");
    CU_ASSERT_PTR_NOT_NULL(prev);
    CU_ASSERT(strchr(hdr, '\n') == NULL);       /* compact */
    for (size_t k = 0; k < N_RT; k++) {
        char q[64];
        snprintf(q, sizeof q, "\"%s\":", rt_items[k].name);
        const char *at = strstr(hdr, q);
        CU_ASSERT_PTR_NOT_NULL(at);
        CU_ASSERT(prev && at > prev);
        prev = at;
    }
    free(hdr);
    qf_free(raw);

    qf_st *st = NULL;
    CU_ASSERT_EQUAL_FATAL(qf_st_open(path, &st), QF_OK);
    CU_ASSERT_EQUAL(qf_st_count(st), N_RT);
    CU_ASSERT_STRING_EQUAL(qf_st_path(st), path);
    CU_ASSERT_STRING_EQUAL(qf_st_metadata(st, "format"), "pt");
    CU_ASSERT_STRING_EQUAL(qf_st_metadata(st, "note"), "caf\xc3\xa9 \"quoted\"");
    CU_ASSERT_PTR_NULL(qf_st_metadata(st, "absent"));
    for (size_t i = 1; i < qf_st_count(st); i++)
        CU_ASSERT(strcmp(qf_st_at(st, i - 1)->name, qf_st_at(st, i)->name) < 0);
    CU_ASSERT_PTR_NULL(qf_st_at(st, N_RT));
    uint64_t total = 0;
    for (size_t k = 0; k < N_RT; k++) {
        const qf_st_item *it = &rt_items[k];
        const qf_st_tensor *t = qf_st_find(st, it->name);
        CU_ASSERT_PTR_NOT_NULL_FATAL(t);
        CU_ASSERT_STRING_EQUAL(t->name, it->name);
        CU_ASSERT_STRING_EQUAL(t->file, path);
        CU_ASSERT_EQUAL(t->dtype, it->dtype);
        CU_ASSERT_EQUAL(t->n_dim, it->n_dim);
        int64_t n = 1;
        for (int d = 0; d < it->n_dim; d++) {
            CU_ASSERT_EQUAL(t->shape[d], it->shape[d]);
            n *= it->shape[d];
        }
        CU_ASSERT_EQUAL(t->n_elem, n);
        CU_ASSERT_EQUAL(t->n_bytes, (size_t)n * qf_dtype_size(it->dtype));
        if (n) CU_ASSERT(memcmp(t->data, it->data, t->n_bytes) == 0);
        CU_ASSERT((uintptr_t)t->data % qf_dtype_size(it->dtype) == 0);   /* writer aligns every tensor */
        total += t->n_bytes;
    }
    CU_ASSERT_EQUAL(qf_st_total_bytes(st), total);
    CU_ASSERT_PTR_NULL(qf_st_find(st, "nope"));
    CU_ASSERT_PTR_NULL(qf_st_find(st, ""));

    /* F32 in place, -1 wildcard, scalar, empty. */
    const float *f = NULL;
    CU_ASSERT_EQUAL(qf_st_get_f32(st, "w.f32", 2, sh_23, &f), QF_OK);
    CU_ASSERT_PTR_EQUAL(f, qf_st_find(st, "w.f32")->data);
    const int64_t any3[] = { -1, 3 };
    CU_ASSERT_EQUAL(qf_st_get_f32(st, "w.f32", 2, any3, &f), QF_OK);
    CU_ASSERT(f && f[2] == 3.25f && f[5] == 65504.0f);
    CU_ASSERT_EQUAL(qf_st_get_f32(st, "scalar", 0, NULL, &f), QF_OK);
    CU_ASSERT(f && *f == 42.0f);
    CU_ASSERT_EQUAL(qf_st_get_f32(st, "empty", 2, sh_04, &f), QF_OK);
    CU_ASSERT_PTR_NOT_NULL(f);

    /* F16 / BF16 upcast once. */
    const float *h = NULL, *h2 = NULL, *b = NULL;
    CU_ASSERT_EQUAL(qf_st_get_f32(st, "h.f16", 1, sh_4, &h), QF_OK);
    CU_ASSERT_FATAL(h != NULL);
    CU_ASSERT(h[0] == 1.0f && h[1] == -2.0f && isinf(h[2]) && h[2] > 0 && h[3] == ldexpf(1.0f, -24));
    CU_ASSERT_EQUAL(qf_st_get_f32(st, "h.f16", 1, sh_4, &h2), QF_OK);
    CU_ASSERT_PTR_EQUAL(h, h2);
    CU_ASSERT_EQUAL(qf_st_get_f32(st, "b.bf16", 2, sh_22, &b), QF_OK);
    CU_ASSERT_FATAL(b != NULL);
    CU_ASSERT(b[0] == 1.0f && b[1] == -1.0f && isinf(b[2]) && f32_bits(b[3]) == 0x00010000u);

    /* Raw typed access. */
    const void *r = NULL;
    CU_ASSERT_EQUAL(qf_st_get_raw(st, "ids", QF_DT_I64, 1, sh_3, &r), QF_OK);
    CU_ASSERT(r && ((const int64_t *)r)[2] == ((int64_t)1 << 40) && ((const int64_t *)r)[0] == -1);
    CU_ASSERT_EQUAL(qf_st_get_raw(st, "a.u8", QF_DT_U8, 1, sh_5, &r), QF_OK);
    CU_ASSERT(r && ((const uint8_t *)r)[4] == 255);
    CU_ASSERT_EQUAL(qf_st_get_raw(st, "d.f64", QF_DT_F64, 1, sh_2, &r), QF_OK);
    CU_ASSERT(r && ((const double *)r)[1] == -1e300);
    CU_ASSERT_EQUAL(qf_st_get_raw(st, "ids", QF_DT_I32, 1, sh_3, &r), QF_ERR_SHAPE);
    CU_ASSERT_PTR_NULL(r);
    CU_ASSERT(strstr(qf_last_error(), "'ids'") && strstr(qf_last_error(), "I64") &&
              strstr(qf_last_error(), "I32") && strstr(qf_last_error(), path));
    CU_ASSERT_EQUAL(qf_st_get_raw(st, "gone", QF_DT_I64, 1, sh_3, &r), QF_ERR_MISSING);

    /* Checked failures of get_f32. */
    CU_ASSERT_EQUAL(qf_st_get_f32(st, "ids", 1, sh_3, &f), QF_ERR_SHAPE);
    CU_ASSERT_PTR_NULL(f);
    CU_ASSERT(strstr(qf_last_error(), "'ids'") && strstr(qf_last_error(), "I64") &&
              strstr(qf_last_error(), path));
    const int64_t sh_32[] = { 3, 2 };
    CU_ASSERT_EQUAL(qf_st_get_f32(st, "w.f32", 2, sh_32, &f), QF_ERR_SHAPE);
    char want[700];
    snprintf(want, sizeof want, "%s: tensor 'w.f32' is [2, 3], expected [3, 2]", path);
    CU_ASSERT_STRING_EQUAL(qf_last_error(), want);
    const int64_t sh_6[] = { 6 };
    CU_ASSERT_EQUAL(qf_st_get_f32(st, "w.f32", 1, sh_6, &f), QF_ERR_SHAPE);
    snprintf(want, sizeof want, "%s: tensor 'w.f32' is [2, 3], expected [6]", path);
    CU_ASSERT_STRING_EQUAL(qf_last_error(), want);
    CU_ASSERT_EQUAL(qf_st_get_f32(st, "missing.weight", 2, sh_23, &f), QF_ERR_MISSING);
    snprintf(want, sizeof want, "tensor 'missing.weight' not found in %s", path);
    CU_ASSERT_STRING_EQUAL(qf_last_error(), want);
    CU_ASSERT_EQUAL(qf_st_get_f32(st, "w.f32", 2, NULL, &f), QF_ERR_ARG);
    CU_ASSERT_EQUAL(qf_st_get_f32(st, "w.f32", 9, sh_23, &f), QF_ERR_ARG);
    qf_st_close(st);

    /* Overwrite in place: the new content replaces the old atomically. */
    const qf_st_item one[] = { { "only", QF_DT_U8, 1, sh_5, rt_u8 } };
    CU_ASSERT_EQUAL_FATAL(qf_st_write(path, one, 1, NULL), QF_OK);
    CU_ASSERT(access(tmpname, F_OK) != 0);
    CU_ASSERT_EQUAL_FATAL(qf_st_open(path, &st), QF_OK);
    CU_ASSERT_EQUAL(qf_st_count(st), 1);
    CU_ASSERT_PTR_NULL(qf_st_metadata(st, "format"));
    qf_st_close(st);

    /* No tensors at all is a valid file. */
    CU_ASSERT_EQUAL_FATAL(qf_st_write(tmp("none.safetensors"), NULL, 0, NULL), QF_OK);
    CU_ASSERT_EQUAL_FATAL(qf_st_open(tmp("none.safetensors"), &st), QF_OK);
    CU_ASSERT_EQUAL(qf_st_count(st), 0);
    CU_ASSERT_PTR_NULL(qf_st_find(st, "x"));
    qf_st_close(st);
    qf_st_close(NULL);
}

/* A payload that starts at an odd offset: F32 and I64 come back aligned
 * copies, made once. */
static void test_unaligned(void) {
    const char *json = "{\"x\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]},"
                       "\"n\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[12,20]}}";
    size_t jl = strlen(json), pad = 0;
    while ((8 + jl + pad) % 8 != 1) pad++;
    const char *path = craft_pad("unaligned.safetensors", json, pad, 20);
    qf_st *st = NULL;
    CU_ASSERT_EQUAL_FATAL(qf_st_open(path, &st), QF_OK);
    const qf_st_tensor *t = qf_st_find(st, "x");
    CU_ASSERT_FATAL(t != NULL);
    CU_ASSERT((uintptr_t)t->data % 4 != 0);
    const float *f = NULL, *f2 = NULL;
    const int64_t sh[] = { 3 }, sh1[] = { 1 };
    CU_ASSERT_EQUAL(qf_st_get_f32(st, "x", 1, sh, &f), QF_OK);
    CU_ASSERT_FATAL(f != NULL);
    CU_ASSERT((uintptr_t)f % 4 == 0);
    CU_ASSERT_PTR_NOT_EQUAL(f, t->data);
    CU_ASSERT(memcmp(f, t->data, 12) == 0);
    uint32_t w0 = 0x03020100u;   /* payload bytes 0,1,2,3 little-endian */
    CU_ASSERT_EQUAL(f32_bits(f[0]), w0);
    CU_ASSERT_EQUAL(qf_st_get_f32(st, "x", 1, sh, &f2), QF_OK);
    CU_ASSERT_PTR_EQUAL(f, f2);
    const void *r = NULL;
    CU_ASSERT_EQUAL(qf_st_get_raw(st, "n", QF_DT_I64, 1, sh1, &r), QF_OK);
    CU_ASSERT_FATAL(r != NULL);
    CU_ASSERT((uintptr_t)r % 8 == 0);
    CU_ASSERT_EQUAL(*(const int64_t *)r, (int64_t)0x131211100f0e0d0cLL);
    qf_st_close(st);
}

/* ---- exact upcasts -------------------------------------------------------------- */

static void test_bf16_exact(void) {
    uint16_t *bits = malloc(65536 * sizeof *bits);
    CU_ASSERT_FATAL(bits != NULL);
    for (uint32_t i = 0; i < 65536; i++) bits[i] = (uint16_t)i;
    const int64_t sh[] = { 256, 256 };
    const qf_st_item it[] = { { "all", QF_DT_BF16, 2, sh, bits } };
    const char *path = tmp("bf16.safetensors");
    CU_ASSERT_EQUAL_FATAL(qf_st_write(path, it, 1, NULL), QF_OK);
    qf_st *st = NULL;
    CU_ASSERT_EQUAL_FATAL(qf_st_open(path, &st), QF_OK);
    const float *f = NULL;
    CU_ASSERT_EQUAL_FATAL(qf_st_get_f32(st, "all", 2, sh, &f), QF_OK);
    size_t bad = 0;
    for (uint32_t i = 0; i < 65536; i++)
        if (f32_bits(f[i]) != i << 16) bad++;
    CU_ASSERT_EQUAL(bad, 0);
    qf_st_close(st);
    free(bits);
}

static void test_f16_special(void) {
    uint16_t *bits = malloc(65536 * sizeof *bits);
    CU_ASSERT_FATAL(bits != NULL);
    for (uint32_t i = 0; i < 65536; i++) bits[i] = (uint16_t)i;
    const int64_t sh[] = { 65536 };
    const qf_st_item it[] = { { "all", QF_DT_F16, 1, sh, bits } };
    const char *path = tmp("f16.safetensors");
    CU_ASSERT_EQUAL_FATAL(qf_st_write(path, it, 1, NULL), QF_OK);
    qf_st *st = NULL;
    CU_ASSERT_EQUAL_FATAL(qf_st_open(path, &st), QF_OK);
    const float *f = NULL;
    CU_ASSERT_EQUAL_FATAL(qf_st_get_f32(st, "all", 1, sh, &f), QF_OK);
    size_t bad = 0;
    for (uint32_t i = 0; i < 65536; i++) {
        double want = ref_half((uint16_t)i);
        int ok = isnan(want) ? isnan(f[i]) && (f32_bits(f[i]) >> 13 & 0x3ff) == (i & 0x3ff)
                             : (double)f[i] == want;
        ok = ok && !signbit(f[i]) == !(i & 0x8000);
        if (!ok && bad++ < 5) fprintf(stderr, "\nf16 0x%04x -> %.9g (0x%08x), want %.9g\n", i, f[i], f32_bits(f[i]), want);
    }
    CU_ASSERT_EQUAL(bad, 0);
    /* Named special values. */
    CU_ASSERT(f[0x0000] == 0.0f && !signbit(f[0x0000]));
    CU_ASSERT(f[0x8000] == 0.0f && signbit(f[0x8000]));                 /* -0 */
    CU_ASSERT(f[0x0001] == 5.9604644775390625e-08f);                    /* smallest subnormal */
    CU_ASSERT(f[0x8001] == -5.9604644775390625e-08f);
    CU_ASSERT(f[0x03ff] == 6.0975551605224609375e-05f);                 /* largest subnormal */
    CU_ASSERT(f[0x0400] == 6.103515625e-05f);                           /* smallest normal */
    CU_ASSERT(f[0x3c00] == 1.0f && f[0xc000] == -2.0f && f[0x7bff] == 65504.0f);
    CU_ASSERT(isinf(f[0x7c00]) && f[0x7c00] > 0);
    CU_ASSERT(isinf(f[0xfc00]) && f[0xfc00] < 0);
    CU_ASSERT(isnan(f[0x7e00]) && isnan(f[0x7c01]) && isnan(f[0xfe00]));
    const float *again = NULL;
    CU_ASSERT_EQUAL(qf_st_get_f32(st, "all", 1, sh, &again), QF_OK);
    CU_ASSERT_PTR_EQUAL(again, f);                                      /* upcast once */
    qf_st_close(st);
    free(bits);
}

/* ---- corrupt headers -------------------------------------------------------------- */

#define ENTRY(dt, shape, offs) "{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":" offs "}"

static void test_corrupt_size(void) {
    /* Shorter than the 8-byte length. */
    const char *p = tmp("short.safetensors");
    put_bytes(p, "\x02\x00\x00\x00\x00", 5);
    EXPECT_BAD(p, QF_ERR_FORMAT, "too short", NULL);
    p = tmp("zero.safetensors");
    put_bytes(p, "", 0);
    EXPECT_BAD(p, QF_ERR_FORMAT, NULL, NULL);
    /* Header length above the 100 MB limit. */
    unsigned char big[16] = { 0x00, 0xc2, 0xeb, 0x0b, 0, 0, 0, 0, '{', '}' };   /* 200,000,000 */
    p = tmp("huge.safetensors");
    put_bytes(p, big, sizeof big);
    EXPECT_BAD(p, QF_ERR_LIMIT, "200000000", NULL);
    unsigned char all[8] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
    p = tmp("huge2.safetensors");
    put_bytes(p, all, sizeof all);
    EXPECT_BAD(p, QF_ERR_LIMIT, NULL, NULL);
    /* Header length beyond the end of the file. */
    unsigned char past[20] = { 100, 0, 0, 0, 0, 0, 0, 0, '{', '}' };
    p = tmp("past.safetensors");
    put_bytes(p, past, sizeof past);
    EXPECT_BAD(p, QF_ERR_FORMAT, "past the end", NULL);
    /* Missing file and a directory without safetensors. */
    EXPECT_BAD(tmp("does-not-exist.safetensors"), QF_ERR_IO, NULL, NULL);
}

static void test_corrupt_json(void) {
    EXPECT_BAD(craft("nojson.safetensors", "{\"a\": {\"dtype\": ", 0), QF_ERR_FORMAT, "JSON", NULL);
    EXPECT_BAD(craft("trailing.safetensors", "{} x", 0), QF_ERR_FORMAT, "JSON", NULL);
    EXPECT_BAD(craft("array.safetensors", "[1, 2]", 0), QF_ERR_FORMAT, "not a JSON object", NULL);
    EXPECT_BAD(craft("nul.safetensors", "{\"a\\u0000b\": 1}", 0), QF_ERR_FORMAT, NULL, NULL);
    EXPECT_BAD(craft("dup.safetensors",
                     "{\"w\":" ENTRY("F32", "[1]", "[0,4]") ",\"w\":" ENTRY("F32", "[1]", "[4,8]") "}", 8),
               QF_ERR_FORMAT, "'w'", "twice");
    EXPECT_BAD(craft("duplong.safetensors",
                     "{\"vision_model.encoder.layers.0.mlp.fc1.weight\":" ENTRY("F32", "[1]", "[0,4]")
                     ",\n \"vision_model.encoder.layers.0.mlp.fc1.weight\":" ENTRY("F32", "[1]", "[4,8]") "}", 8),
               QF_ERR_FORMAT, "'vision_model.encoder.layers.0.mlp.fc1.weight'", "twice");
    EXPECT_BAD(craft("meta1.safetensors", "{\"__metadata__\": [1]}", 0), QF_ERR_FORMAT, "__metadata__", NULL);
    EXPECT_BAD(craft("meta2.safetensors", "{\"__metadata__\": {\"format\": 1}}", 0), QF_ERR_FORMAT,
               "__metadata__", "'format'");
}

static void test_corrupt_entry(void) {
    EXPECT_BAD(craft("e1.safetensors", "{\"t1\": 3}", 0), QF_ERR_FORMAT, "'t1'", "not a JSON object");
    EXPECT_BAD(craft("e2.safetensors", "{\"t2\": {\"shape\":[1],\"data_offsets\":[0,4]}}", 4),
               QF_ERR_FORMAT, "'t2'", "dtype");
    EXPECT_BAD(craft("e3.safetensors", "{\"t3\": {\"dtype\":3,\"shape\":[1],\"data_offsets\":[0,4]}}", 4),
               QF_ERR_FORMAT, "'t3'", "dtype");
    EXPECT_BAD(craft("e4.safetensors", "{\"t4\": {\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4),
               QF_ERR_FORMAT, "'t4'", "shape");
    EXPECT_BAD(craft("e5.safetensors", "{\"t5\": " ENTRY("F32", "4", "[0,4]") "}", 4),
               QF_ERR_FORMAT, "'t5'", "shape");
    EXPECT_BAD(craft("e6.safetensors", "{\"t6\": " ENTRY("F32", "[1.5]", "[0,4]") "}", 4),
               QF_ERR_FORMAT, "'t6'", "shape");
    EXPECT_BAD(craft("e7.safetensors", "{\"t7\": " ENTRY("F32", "[\"1\"]", "[0,4]") "}", 4),
               QF_ERR_FORMAT, "'t7'", "shape");
    EXPECT_BAD(craft("e8.safetensors", "{\"t8\": {\"dtype\":\"F32\",\"shape\":[1]}}", 4),
               QF_ERR_FORMAT, "'t8'", "data_offsets");
    EXPECT_BAD(craft("e9.safetensors", "{\"t9\": " ENTRY("F32", "[1]", "[0]") "}", 4),
               QF_ERR_FORMAT, "'t9'", "data_offsets");
    EXPECT_BAD(craft("e10.safetensors", "{\"t10\": " ENTRY("F32", "[1]", "[0, 4.0]") "}", 4),
               QF_ERR_FORMAT, "'t10'", "data_offsets");
    EXPECT_BAD(craft("e11.safetensors", "{\"t11\": " ENTRY("F32", "[1]", "{}") "}", 4),
               QF_ERR_FORMAT, "'t11'", "data_offsets");
    EXPECT_BAD(craft("e12.safetensors", "{\"t12\": " ENTRY("F8_E4M3", "[4]", "[0,4]") "}", 4),
               QF_ERR_FORMAT, "'t12'", "'F8_E4M3'");
    EXPECT_BAD(craft("e13.safetensors", "{\"t13\": " ENTRY("f32", "[1]", "[0,4]") "}", 4),
               QF_ERR_FORMAT, "'t13'", "'f32'");
}

static void test_corrupt_shape(void) {
    EXPECT_BAD(craft("s1.safetensors", "{\"neg\": " ENTRY("F32", "[-1, 4]", "[0,16]") "}", 16),
               QF_ERR_FORMAT, "'neg'", "negative");
    EXPECT_BAD(craft("s2.safetensors", "{\"ovf\": " ENTRY("F32", "[4294967296, 4294967296, 4]", "[0,16]") "}", 16),
               QF_ERR_FORMAT, "'ovf'", "overflow");
    EXPECT_BAD(craft("s3.safetensors", "{\"ovf2\": " ENTRY("I64", "[4611686018427387904, 2]", "[0,16]") "}", 16),
               QF_ERR_FORMAT, "'ovf2'", "overflow");
    EXPECT_BAD(craft("s4.safetensors", "{\"deep\": " ENTRY("U8", "[1,1,1,1,1,1,1,1,1]", "[0,1]") "}", 1),
               QF_ERR_LIMIT, "'deep'", NULL);
    EXPECT_BAD(craft("s5.safetensors", "{\"bigint\": " ENTRY("U8", "[99999999999999999999]", "[0,1]") "}", 1),
               QF_ERR_FORMAT, NULL, NULL);
}

static void test_corrupt_offsets(void) {
    EXPECT_BAD(craft("o1.safetensors", "{\"rev\": " ENTRY("F32", "[1]", "[8,4]") "}", 8),
               QF_ERR_FORMAT, "'rev'", "end before begin");
    EXPECT_BAD(craft("o2.safetensors", "{\"size\": " ENTRY("F32", "[2]", "[0,4]") "}", 8),
               QF_ERR_FORMAT, "'size'", "needs 8");
    EXPECT_BAD(craft("o3.safetensors", "{\"size2\": " ENTRY("F16", "[3, 2]", "[0,24]") "}", 24),
               QF_ERR_FORMAT, "'size2'", "[3, 2]");
    EXPECT_BAD(craft("o4.safetensors", "{\"out\": " ENTRY("F32", "[2]", "[0,8]") "}", 4),
               QF_ERR_FORMAT, "'out'", "payload");
    EXPECT_BAD(craft("o5.safetensors", "{\"out2\": " ENTRY("U8", "[1]", "[100,101]") "}", 4),
               QF_ERR_FORMAT, "'out2'", "payload");
    EXPECT_BAD(craft("o6.safetensors", "{\"negoff\": " ENTRY("U8", "[1]", "[-1,0]") "}", 4),
               QF_ERR_FORMAT, "'negoff'", "negative");
    EXPECT_BAD(craft("o7.safetensors",
                     "{\"first\":" ENTRY("F32", "[2]", "[0,8]") ",\"second\":" ENTRY("F32", "[2]", "[4,12]") "}", 12),
               QF_ERR_FORMAT, "'first'", "'second'");
    /* A span nested inside another, listed first. */
    EXPECT_BAD(craft("o8.safetensors",
                     "{\"inner\":" ENTRY("U8", "[2]", "[4,6]") ",\"outer\":" ENTRY("U8", "[8]", "[2,10]")
                     ",\"tail\":" ENTRY("U8", "[2]", "[10,12]") "}", 12),
               QF_ERR_FORMAT, "'inner'", "'outer'");
    /* Same span twice. */
    EXPECT_BAD(craft("o9.safetensors",
                     "{\"p\":" ENTRY("F32", "[1]", "[0,4]") ",\"q\":" ENTRY("F32", "[1]", "[0,4]") "}", 4),
               QF_ERR_FORMAT, "overlap", NULL);

    /* Allowed: zero-element tensors (anywhere, even inside another span),
     * gaps, touching spans. */
    const char *ok = craft("ok.safetensors",
                           "{\"z\":" ENTRY("F32", "[0, 3]", "[4,4]") ",\"a\":" ENTRY("F32", "[1]", "[0,4]")
                           ",\"b\":" ENTRY("F32", "[1]", "[4,8]") ",\"c\":" ENTRY("U8", "[2]", "[10,12]")
                           ",\"e\":" ENTRY("BF16", "[0]", "[12,12]") "}", 12);
    qf_st *st = NULL;
    CU_ASSERT_EQUAL_FATAL(qf_st_open(ok, &st), QF_OK);
    CU_ASSERT_EQUAL(qf_st_count(st), 5);
    const qf_st_tensor *z = qf_st_find(st, "z");
    CU_ASSERT(z && z->n_elem == 0 && z->n_bytes == 0 && z->n_dim == 2 && z->shape[1] == 3);
    const float *f = NULL;
    const int64_t sh_z[] = { 0, 3 }, sh_0[] = { 0 };
    CU_ASSERT_EQUAL(qf_st_get_f32(st, "z", 2, sh_z, &f), QF_OK);
    CU_ASSERT_EQUAL(qf_st_get_f32(st, "e", 1, sh_0, &f), QF_OK);
    CU_ASSERT_EQUAL(qf_st_total_bytes(st), 10);
    qf_st_close(st);
}

/* ---- sharded checkpoints and directories ------------------------------------------- */

static const float sx[2] = { 1, 2 }, sy[3] = { 3, 4, 5 }, sz[1] = { 6 };
static const int64_t sh_sx[] = { 2 }, sh_sy[] = { 3 }, sh_sz[] = { 1 };

/* dir/a.safetensors = {x, y}, dir/b.safetensors = {z} (+ extra items in b). */
static void make_shards(const char *dir, const qf_st_item *extra_b, size_t n_extra) {
    char p[600];
    mkdir_p(dir);
    const qf_st_item a[] = { { "x", QF_DT_F32, 1, sh_sx, sx }, { "y", QF_DT_F32, 1, sh_sy, sy } };
    qf_st_item b[4] = { { "z", QF_DT_F32, 1, sh_sz, sz } };
    for (size_t i = 0; i < n_extra; i++) b[1 + i] = extra_b[i];
    const char *meta_a[] = { "format", "pt", NULL };
    snprintf(p, sizeof p, "%s/a.safetensors", dir);
    CU_ASSERT_EQUAL_FATAL(qf_st_write(p, a, 2, meta_a), QF_OK);
    snprintf(p, sizeof p, "%s/b.safetensors", dir);
    CU_ASSERT_EQUAL_FATAL(qf_st_write(p, b, 1 + n_extra, NULL), QF_OK);
}

static const char *write_index(const char *dir, const char *json) {
    static char p[600];
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    put_text(p, json);
    return p;
}

static void test_sharded(void) {
    TMPDIR_VAR(dir, "sh_ok");
    make_shards(dir, NULL, 0);
    const char *idx = write_index(dir, "{\"metadata\": {\"total_size\": 24}, \"weight_map\": "
                                       "{\"y\": \"a.safetensors\", \"z\": \"b.safetensors\", \"x\": \"a.safetensors\"}}");
    for (int via = 0; via < 2; via++) {
        qf_st *st = NULL;
        CU_ASSERT_EQUAL_FATAL(qf_st_open(via ? idx : dir, &st), QF_OK);
        CU_ASSERT_EQUAL(qf_st_count(st), 3);
        CU_ASSERT_STRING_EQUAL(qf_st_at(st, 0)->name, "x");
        CU_ASSERT_STRING_EQUAL(qf_st_at(st, 2)->name, "z");
        CU_ASSERT_EQUAL(qf_st_total_bytes(st), 24);
        const qf_st_tensor *z = qf_st_find(st, "z"), *x = qf_st_find(st, "x");
        CU_ASSERT_FATAL(z && x);
        CU_ASSERT_STRING_EQUAL(z->file, tmp("sh_ok/b.safetensors"));
        CU_ASSERT_STRING_EQUAL(x->file, tmp("sh_ok/a.safetensors"));
        CU_ASSERT_STRING_EQUAL(qf_st_metadata(st, "format"), "pt");
        const float *f = NULL;
        CU_ASSERT_EQUAL(qf_st_get_f32(st, "y", 1, sh_sy, &f), QF_OK);
        CU_ASSERT(f && f[2] == 5.0f);
        CU_ASSERT_EQUAL(qf_st_get_f32(st, "w", 1, sh_sy, &f), QF_ERR_MISSING);
        CU_ASSERT(strstr(qf_last_error(), via ? idx : dir) && strstr(qf_last_error(), "'w'"));
        const int64_t two[] = { 2 };
        CU_ASSERT_EQUAL(qf_st_get_f32(st, "z", 1, two, &f), QF_ERR_SHAPE);
        CU_ASSERT(strstr(qf_last_error(), "b.safetensors: tensor 'z' is [1], expected [2]") != NULL);
        qf_st_close(st);
    }
    /* A trailing slash on the directory is fine. */
    char slashed[600];
    snprintf(slashed, sizeof slashed, "%s/", dir);
    qf_st *st = NULL;
    CU_ASSERT_EQUAL(qf_st_open(slashed, &st), QF_OK);
    qf_st_close(st);
}

static void test_sharded_bad(void) {
    TMPDIR_VAR(dir, "sh_bad");
    make_shards(dir, NULL, 0);
    const char *idx;

    idx = write_index(dir, "{\"weight_map\": {\"x\": \"a.safetensors\", \"q\": \"c.safetensors\"}}");
    EXPECT_OPEN(idx, QF_ERR_IO, idx, "c.safetensors", NULL);
    EXPECT_OPEN(dir, QF_ERR_IO, "model.safetensors.index.json", "c.safetensors", NULL);

    idx = write_index(dir, "{\"weight_map\": {\"x\": \"a.safetensors\", \"z\": \"a.safetensors\", "
                           "\"y\": \"b.safetensors\"}}");
    EXPECT_OPEN(idx, QF_ERR_MISSING, idx, "'z'", "a.safetensors");

    idx = write_index(dir, "{\"weight_map\": {\"x\": \"a.safetensors\", \"ghost\": \"b.safetensors\"}}");
    EXPECT_OPEN(idx, QF_ERR_MISSING, idx, "'ghost'", "b.safetensors");

    idx = write_index(dir, "{\"weight_map\": {\"x\": \"../a.safetensors\"}}");
    EXPECT_OPEN(idx, QF_ERR_FORMAT, idx, "'../a.safetensors'", "'x'");
    idx = write_index(dir, "{\"weight_map\": {\"x\": \"sub/a.safetensors\"}}");
    EXPECT_OPEN(idx, QF_ERR_FORMAT, idx, "'sub/a.safetensors'", NULL);
    idx = write_index(dir, "{\"weight_map\": {\"x\": \"..\"}}");
    EXPECT_OPEN(idx, QF_ERR_FORMAT, idx, "'..'", NULL);
    idx = write_index(dir, "{\"weight_map\": {\"x\": \"/etc/passwd\"}}");
    EXPECT_OPEN(idx, QF_ERR_FORMAT, idx, "/etc/passwd", NULL);
    idx = write_index(dir, "{\"weight_map\": {\"x\": \"\"}}");
    EXPECT_OPEN(idx, QF_ERR_FORMAT, idx, "'x'", NULL);

    idx = write_index(dir, "{\"metadata\": {}}");
    EXPECT_OPEN(idx, QF_ERR_FORMAT, idx, "weight_map", NULL);
    idx = write_index(dir, "{\"weight_map\": {}}");
    EXPECT_OPEN(idx, QF_ERR_FORMAT, idx, "weight_map", NULL);
    idx = write_index(dir, "{\"weight_map\": {\"x\": 3}}");
    EXPECT_OPEN(idx, QF_ERR_FORMAT, idx, "'x'", NULL);
    idx = write_index(dir, "{\"weight_map\": {\"x\": \"a.safetensors\", \"x\": \"a.safetensors\"}}");
    EXPECT_OPEN(idx, QF_ERR_FORMAT, idx, NULL, NULL);
    idx = write_index(dir, "[\"weight_map\"]");
    EXPECT_OPEN(idx, QF_ERR_FORMAT, idx, NULL, NULL);
    idx = write_index(dir, "{\"weight_map\": {\"x\": \"a.safetensors\"");
    EXPECT_OPEN(idx, QF_ERR_FORMAT, idx, "JSON", NULL);

    /* A corrupt shard: its own message, naming the shard. */
    char corrupt[600];
    snprintf(corrupt, sizeof corrupt, "%s/b.safetensors", dir);
    put_bytes(corrupt, "abc", 3);
    idx = write_index(dir, "{\"weight_map\": {\"x\": \"a.safetensors\", \"z\": \"b.safetensors\"}}");
    EXPECT_OPEN(idx, QF_ERR_FORMAT, corrupt, NULL, NULL);

    /* The same tensor in two shards. */
    TMPDIR_VAR(dir2, "sh_dup");
    const float dup[2] = { 9, 9 };
    const qf_st_item extra[] = { { "x", QF_DT_F32, 1, sh_sx, dup } };
    make_shards(dir2, extra, 1);
    idx = write_index(dir2, "{\"weight_map\": {\"x\": \"a.safetensors\", \"z\": \"b.safetensors\"}}");
    EXPECT_OPEN(idx, QF_ERR_FORMAT, "'x'", "a.safetensors", "b.safetensors");
}

static void test_dir_resolution(void) {
    qf_st *st = NULL;
    TMPDIR_VAR(d0, "d_empty");
    mkdir_p(d0);
    put_text(tmp("d_empty/notes.txt"), "x");
    EXPECT_OPEN(d0, QF_ERR_IO, d0, "no safetensors file in", NULL);

    TMPDIR_VAR(d, "d_one");
    mkdir_p(d);
    const qf_st_item it[] = { { "z", QF_DT_F32, 1, sh_sz, sz } };
    CU_ASSERT_EQUAL_FATAL(qf_st_write(tmp("d_one/weights.safetensors"), it, 1, NULL), QF_OK);
    CU_ASSERT_EQUAL_FATAL(qf_st_open(d, &st), QF_OK);
    CU_ASSERT_STRING_EQUAL(qf_st_at(st, 0)->file, tmp("d_one/weights.safetensors"));
    qf_st_close(st);

    CU_ASSERT_EQUAL_FATAL(qf_st_write(tmp("d_one/other.safetensors"), it, 1, NULL), QF_OK);
    EXPECT_OPEN(d, QF_ERR_IO, d, "several", NULL);

    /* model.safetensors wins over other files, the index over model.safetensors. */
    const qf_st_item m[] = { { "m", QF_DT_F32, 1, sh_sz, sz } };
    CU_ASSERT_EQUAL_FATAL(qf_st_write(tmp("d_one/model.safetensors"), m, 1, NULL), QF_OK);
    CU_ASSERT_EQUAL_FATAL(qf_st_open(d, &st), QF_OK);
    CU_ASSERT_PTR_NOT_NULL(qf_st_find(st, "m"));
    qf_st_close(st);
    write_index(d, "{\"weight_map\": {\"z\": \"weights.safetensors\"}}");
    CU_ASSERT_EQUAL_FATAL(qf_st_open(d, &st), QF_OK);
    CU_ASSERT_EQUAL(qf_st_count(st), 1);
    CU_ASSERT_PTR_NOT_NULL(qf_st_find(st, "z"));
    qf_st_close(st);

    CU_ASSERT_EQUAL(qf_st_open(NULL, &st), QF_ERR_ARG);
    CU_ASSERT_EQUAL(qf_st_open(d, NULL), QF_ERR_ARG);
}

/* ---- writer argument checks ------------------------------------------------------------ */

static void expect_write_arg(const qf_st_item *items, size_t n, const char *const *meta, const char *needle) {
    const char *path = tmp("rejected.safetensors");
    qf_error_clear();
    qf_status s = qf_st_write(path, items, n, meta);
    CU_ASSERT_EQUAL(s, QF_ERR_ARG);
    CU_ASSERT(contains(qf_last_error(), needle));
    if (s != QF_ERR_ARG || !contains(qf_last_error(), needle))
        fprintf(stderr, "\nwrite: got %s: %s\n", qf_status_str(s), qf_last_error());
    CU_ASSERT(access(path, F_OK) != 0);
    CU_ASSERT(access(tmp("rejected.safetensors.tmp"), F_OK) != 0);
}

static void test_write_rejects(void) {
    const int64_t neg[] = { -1, 2 };
    const qf_st_item noname[]  = { { NULL, QF_DT_F32, 1, sh_sx, sx } };
    const qf_st_item empty[]   = { { "", QF_DT_F32, 1, sh_sx, sx } };
    const qf_st_item reserved[] = { { "__metadata__", QF_DT_F32, 1, sh_sx, sx } };
    const qf_st_item baddt[]   = { { "t", QF_DT_COUNT, 1, sh_sx, sx } };
    const qf_st_item deep[]    = { { "t", QF_DT_F32, QF_ST_MAX_DIMS + 1, sh_sx, sx } };
    const qf_st_item negdim[]  = { { "t", QF_DT_F32, 1, neg, sx } };
    const qf_st_item negdim2[] = { { "t", QF_DT_F32, 2, neg, sx } };
    const qf_st_item noshape[] = { { "t", QF_DT_F32, 1, NULL, sx } };
    const qf_st_item nodata[]  = { { "t", QF_DT_F32, 1, sh_sx, NULL } };
    const qf_st_item twice[]   = { { "t", QF_DT_F32, 1, sh_sx, sx }, { "t", QF_DT_F32, 1, sh_sx, sx } };
    const qf_st_item badutf[]  = { { "bad\xff", QF_DT_F32, 1, sh_sx, sx } };
    const qf_st_item fine[]    = { { "t", QF_DT_F32, 1, sh_sx, sx } };
    expect_write_arg(noname, 1, NULL, "no name");
    expect_write_arg(empty, 1, NULL, "no name");
    expect_write_arg(reserved, 1, NULL, "__metadata__");
    expect_write_arg(baddt, 1, NULL, "dtype");
    expect_write_arg(deep, 1, NULL, "n_dim");
    expect_write_arg(negdim, 1, NULL, "'t'");
    expect_write_arg(negdim2, 1, NULL, "negative");
    expect_write_arg(noshape, 1, NULL, "n_dim");
    expect_write_arg(nodata, 1, NULL, "NULL data");
    expect_write_arg(twice, 2, NULL, "twice");
    expect_write_arg(badutf, 1, NULL, "UTF-8");
    expect_write_arg(NULL, 2, NULL, NULL);
    const char *meta_noval[] = { "k", NULL, NULL };
    const char *meta_dup[] = { "k", "1", "k", "2", NULL };
    const char *meta_utf[] = { "k", "\xc3", NULL };
    expect_write_arg(fine, 1, meta_noval, "'k'");
    expect_write_arg(fine, 1, meta_dup, "'k'");
    expect_write_arg(fine, 1, meta_utf, "UTF-8");
    CU_ASSERT_EQUAL(qf_st_write(NULL, fine, 1, NULL), QF_ERR_ARG);
    CU_ASSERT_EQUAL(qf_st_write(tmp("no-such-dir/x.safetensors"), fine, 1, NULL), QF_ERR_IO);
    CU_ASSERT(strstr(qf_last_error(), "no-such-dir/x.safetensors.tmp") != NULL);
}

/* ---- allocation failure injection --------------------------------------------------------- */

static void alloc_walk_open(const char *path) {
    int n_nomem = 0, ok_at = -1;
    for (long k = 0; k < 1000 && ok_at < 0; k++) {
        qf_st *st = NULL;
        qf_alloc_fail_after(k);
        qf_status s = qf_st_open(path, &st);
        qf_alloc_fail_after(-1);
        if (s == QF_OK) {
            ok_at = (int)k;
            CU_ASSERT(qf_st_count(st) > 0);
            qf_st_close(st);
        } else {
            if (s != QF_ERR_NOMEM) fprintf(stderr, "\nk=%ld: %s: %s\n", k, qf_status_str(s), qf_last_error());
            CU_ASSERT_EQUAL(s, QF_ERR_NOMEM);
            CU_ASSERT_PTR_NULL(st);
            n_nomem++;
        }
    }
    CU_ASSERT(ok_at > 0);
    CU_ASSERT_EQUAL(n_nomem, ok_at);
}

static void test_alloc_fail(void) {
    alloc_walk_open(qf_fixture("tiny-blip2-itm/model.safetensors"));
    alloc_walk_open(qf_fixture("tiny-blip2-itm"));
    alloc_walk_open(qf_fixture("tiny-blip2-opt"));

    /* The upcast buffer. */
    qf_st *st = NULL;
    CU_ASSERT_EQUAL_FATAL(qf_st_open(qf_fixture("tiny-blip2-opt"), &st), QF_OK);
    const float *f = NULL;
    const int64_t sh[] = { 50272, 32 };
    qf_alloc_fail_after(0);
    qf_status s = qf_st_get_f32(st, "language_model.model.decoder.embed_tokens.weight", 2, sh, &f);
    qf_alloc_fail_after(-1);
    CU_ASSERT_EQUAL(s, QF_ERR_NOMEM);
    CU_ASSERT_PTR_NULL(f);
    CU_ASSERT(strstr(qf_last_error(), "embed_tokens") != NULL);
    CU_ASSERT_EQUAL(qf_st_get_f32(st, "language_model.model.decoder.embed_tokens.weight", 2, sh, &f), QF_OK);
    CU_ASSERT_PTR_NOT_NULL(f);
    qf_st_close(st);

    /* The writer. */
    const char *path = tmp("alloc.safetensors");
    int ok_at = -1;
    for (long k = 0; k < 100 && ok_at < 0; k++) {
        qf_alloc_fail_after(k);
        s = qf_st_write(path, rt_items, N_RT, NULL);
        qf_alloc_fail_after(-1);
        if (s == QF_OK) ok_at = (int)k;
        else {
            CU_ASSERT_EQUAL(s, QF_ERR_NOMEM);
            CU_ASSERT(access(path, F_OK) != 0);
        }
    }
    CU_ASSERT(ok_at > 0);
    CU_ASSERT_EQUAL_FATAL(qf_st_open(path, &st), QF_OK);
    CU_ASSERT_EQUAL(qf_st_count(st), N_RT);
    qf_st_close(st);
}

/* RssFile of this process in kB (-1 if unknown). */
static long rss_file_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "RssFile:", 8)) kb = strtol(line + 8, NULL, 10);
    if (f) fclose(f);
    return kb;
}

/* qf_st_release drops a mapped tensor's pages; reading it again gives the
 * same bytes (faulted back from the file), and tensors held in memory are
 * left alone. Also qf_st_read_f32 ranges against qf_st_get_f32. */
static void test_release_and_read(void) {
    qf_st *st = NULL;
    CU_ASSERT_EQUAL_FATAL(qf_st_open(qf_fixture("tiny-blip2-opt"), &st), QF_OK);
    const char *name = "language_model.model.decoder.embed_tokens.weight";   /* ~6 MB, F16 in the file */
    const qf_st_tensor *t = qf_st_find(st, name);
    CU_ASSERT_FATAL(t != NULL);
    size_t n = (size_t)t->n_elem;
    float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    const float *f;
    CU_ASSERT_EQUAL_FATAL(qf_st_get_f32(st, name, t->n_dim, t->shape, &f), QF_OK);
    CU_ASSERT_EQUAL(qf_st_read_f32(st, name, t->n_dim, t->shape, 0, (int64_t)n, a), QF_OK);
    CU_ASSERT(memcmp(a, f, n * sizeof *a) == 0);
    CU_ASSERT_EQUAL(qf_st_read_f32(st, name, t->n_dim, t->shape, 1000, 500, b), QF_OK);
    CU_ASSERT(memcmp(b, f + 1000, 500 * sizeof *b) == 0);
    CU_ASSERT_EQUAL(qf_st_read_f32(st, name, t->n_dim, t->shape, (int64_t)n - 10, 11, b), QF_ERR_ARG);
    const uint8_t *raw = t->data;
    uint8_t *copy = malloc(t->n_bytes);
    memcpy(copy, raw, t->n_bytes);                          /* every page resident */
    long before = rss_file_kb();
    qf_st_release(st, name);
    long after = rss_file_kb();
    fprintf(stderr, "\nqf_st_release: RssFile %ld -> %ld kB (tensor %zu kB)\n", before, after, t->n_bytes >> 10);
    if (before >= 0) CU_ASSERT(before - after >= (long)(t->n_bytes >> 10) / 2);
    CU_ASSERT(memcmp(copy, raw, t->n_bytes) == 0);          /* refaulted from the file */
    qf_st_release(st, "no.such.tensor");
    qf_st_close(st);

    float mem[4096];
    for (int i = 0; i < 4096; i++) mem[i] = (float)i;
    int64_t shape[1] = { 4096 };
    qf_st_item it = { "x", QF_DT_F32, 1, shape, mem };
    CU_ASSERT_EQUAL_FATAL(qf_st_from_memory("mem", &it, 1, &st), QF_OK);
    qf_st_release(st, "x");                                  /* not mapped: untouched */
    int same = 1;
    for (int i = 0; i < 4096; i++) same &= mem[i] == (float)i;
    CU_ASSERT(same);
    qf_st_close(st);
    free(a); free(b); free(copy);
}

static void test_dtype_names(void) {
    CU_ASSERT_STRING_EQUAL(qf_dtype_name(QF_DT_BF16), "BF16");
    CU_ASSERT_STRING_EQUAL(qf_dtype_name(QF_DT_COUNT), "?");
    CU_ASSERT_EQUAL(qf_dtype_size(QF_DT_I64), 8);
    CU_ASSERT_EQUAL(qf_dtype_size(QF_DT_F16), 2);
    CU_ASSERT_EQUAL(qf_dtype_size(QF_DT_COUNT), 0);
    CU_ASSERT_EQUAL(qf_st_count(NULL), 0);
    CU_ASSERT_PTR_NULL(qf_st_find(NULL, "x"));
    CU_ASSERT_PTR_NULL(qf_st_at(NULL, 0));
}

static CU_TestInfo tests[] = {
    { "release_and_read", test_release_and_read },
    { "dtype_names", test_dtype_names },
    { "roundtrip", test_roundtrip },
    { "unaligned", test_unaligned },
    { "bf16_exact", test_bf16_exact },
    { "f16_special", test_f16_special },
    { "corrupt_size", test_corrupt_size },
    { "corrupt_json", test_corrupt_json },
    { "corrupt_entry", test_corrupt_entry },
    { "corrupt_shape", test_corrupt_shape },
    { "corrupt_offsets", test_corrupt_offsets },
    { "sharded", test_sharded },
    { "sharded_bad", test_sharded_bad },
    { "dir_resolution", test_dir_resolution },
    { "write_rejects", test_write_rejects },
    { "alloc_fail", test_alloc_fail },
    CU_TEST_INFO_NULL,
};

int main(void) { return qf_test_main("safetensors", tests); }
