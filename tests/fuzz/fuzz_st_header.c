/* fuzz_st_header.c - libFuzzer harness: the input is a whole .safetensors
 * file (u64 header length, JSON header, payload), opened from a memfd with
 * qf_st_open; every tensor is then read through the typed getters
 * (fuzz_st.h) and all tensor spans must lie inside the payload. A second
 * pass repeats the open with an allocation failure injected at a point
 * derived from the input, to walk the `goto fail` paths under LeakSanitizer. */
#include "tests/fuzz/fuzz_st.h"

static fuzz_file file;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    fuzz_file_init(&file, "fuzz.safetensors");
    return 0;
}

static void run(const uint8_t *data, size_t size, int faulting) {
    qf_st *st = (qf_st *)1;
    qf_status s = qf_st_open(file.path, &st);
    if (s != QF_OK) {
        fuzz_check_error(s);
        FUZZ_CHECK(st == NULL);
        FUZZ_CHECK(s != QF_ERR_NOMEM || faulting);
        return;
    }
    FUZZ_CHECK(st != NULL && size >= 8);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | data[i];
    FUZZ_CHECK(hlen <= size - 8);
    uint64_t payload_len = size - 8 - hlen;
    /* every span, empty ones included, lies in one payload-sized window */
    const uint8_t *lo = NULL, *hi = NULL;
    for (size_t i = 0; i < qf_st_count(st); i++) {
        const qf_st_tensor *t = qf_st_at(st, i);
        const uint8_t *b = t->data, *e = b + t->n_bytes;
        if (!lo || b < lo) lo = b;
        if (!hi || e > hi) hi = e;
    }
    if (lo) FUZZ_CHECK((uint64_t)(hi - lo) <= payload_len);
    fuzz_check_st(st, faulting);
    qf_st_close(st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_reset();
    fuzz_file_set(&file, data, size);
    run(data, size, 0);
    qf_alloc_fail_after((long)(fuzz_hash(data, size) % 12));
    run(data, size, 1);
    fuzz_reset();
    return 0;
}
