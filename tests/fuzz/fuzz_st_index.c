/* fuzz_st_index.c - libFuzzer harness: the input is a sharded-checkpoint
 * index (model.safetensors.index.json) written into a scratch directory that
 * also holds two small valid shards, written once at start-up:
 *   model-00001-of-00002.safetensors: a F32 [2,3], b F16 [4], e F32 [0]
 *   model-00002-of-00002.safetensors: c BF16 [2,2], d I64 [2], __metadata__
 * The directory is opened with qf_st_open (which prefers the index), or the
 * index file itself for half of the inputs; opened sets are checked as in
 * fuzz_st.h, and every tensor must come from one of the two shards. A second
 * pass injects an allocation failure. */
#include "tests/fuzz/fuzz_st.h"

#define SHARD1 "model-00001-of-00002.safetensors"
#define SHARD2 "model-00002-of-00002.safetensors"
#define INDEX  "model.safetensors.index.json"

static const char *dir;
static char index_path[4200], shard1[4200], shard2[4200];

static void write_shards(void) {
    static const float a[6] = { 1, 2, 3, 4, 5, 6 };
    static const uint16_t b[4] = { 0x3c00, 0xc000, 0x7c00, 0x0001 };   /* 1, -2, inf, subnormal */
    static const uint16_t c[4] = { 0x3f80, 0xbf80, 0x7fc0, 0x0000 };   /* 1, -1, nan, 0 */
    static const int64_t d[2] = { 7, -7 };
    static const int64_t sa[2] = { 2, 3 }, sb[1] = { 4 }, sc[2] = { 2, 2 }, sd[1] = { 2 }, se[1] = { 0 };
    const qf_st_item s1[] = {
        { "a", QF_DT_F32, 2, sa, a }, { "b", QF_DT_F16, 1, sb, b }, { "e", QF_DT_F32, 1, se, NULL },
    };
    const qf_st_item s2[] = { { "c", QF_DT_BF16, 2, sc, c }, { "d", QF_DT_I64, 1, sd, d } };
    const char *meta[] = { "format", "pt", NULL };
    if (qf_st_write(shard1, s1, 3, NULL) != QF_OK) fuzz_die("qf_st_write shard 1");
    if (qf_st_write(shard2, s2, 2, meta) != QF_OK) fuzz_die("qf_st_write shard 2");
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    dir = fuzz_tmpdir();
    snprintf(index_path, sizeof index_path, "%s/%s", dir, INDEX);
    snprintf(shard1, sizeof shard1, "%s/%s", dir, SHARD1);
    snprintf(shard2, sizeof shard2, "%s/%s", dir, SHARD2);
    write_shards();
    return 0;
}

static void run(const char *path, int faulting) {
    qf_st *st = (qf_st *)1;
    qf_status s = qf_st_open(path, &st);
    if (s != QF_OK) {
        fuzz_check_error(s);
        FUZZ_CHECK(st == NULL);
        FUZZ_CHECK(s != QF_ERR_NOMEM || faulting);
        return;
    }
    FUZZ_CHECK(st != NULL);
    for (size_t i = 0; i < qf_st_count(st); i++) {
        const char *f = qf_st_at(st, i)->file;
        FUZZ_CHECK(strcmp(f, shard1) == 0 || strcmp(f, shard2) == 0);
    }
    fuzz_check_st(st, faulting);
    qf_st_close(st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_reset();
    fuzz_put_file(dir, INDEX, data, size);
    uint64_t h = fuzz_hash(data, size);
    const char *path = h & 1 ? index_path : dir;
    run(path, 0);
    qf_alloc_fail_after((long)(h >> 1) % 24);
    run(path, 1);
    fuzz_reset();
    return 0;
}
