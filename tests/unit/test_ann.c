/* test_ann.c - approximate search with exact rescoring (index/ann.h) on a
 * real SQLite store and real FAISS indexes: the exact scan and the Flat
 * path against an independent brute force (ids and scores), tuning of an
 * IVF-PQ index reaching its recall target on the corpus and holding it on
 * other queries, the recorded settings, images deleted since the index was
 * written, and the `--factory auto` choice and size parsing. */
#include "index/ann.h"
#include "embed/ops.h"
#include "tests/testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NQ 8            /* query vectors per image */
#define D  32           /* dims */
#define N_IMG 800

static uint64_t rng = 0x243f6a8885a308d3ull;
static uint64_t rnext(void) {
    rng ^= rng >> 12; rng ^= rng << 25; rng ^= rng >> 27;
    return rng * 0x2545f4914f6cdd1dull;
}
static float gauss(void) {
    float u = (float)(((rnext() >> 40) + 1) * (1.0 / 16777217.0)), v = (float)((rnext() >> 40) * (1.0 / 16777216.0));
    return sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * v);
}

/* clustered features: 20 topics, image = topic + noise, vectors = image + noise */
static float *topics;
static void make_topics(void) {
    topics = malloc(20 * D * sizeof *topics);
    for (int i = 0; i < 20 * D; i++) topics[i] = gauss();
}
static void image_feats(float *f) {
    int t = (int)(rnext() % 20);
    float base[D];
    for (int e = 0; e < D; e++) base[e] = topics[t * D + e] + 0.8f * gauss();
    for (int q = 0; q < NQ; q++)
        for (int e = 0; e < D; e++) f[q * D + e] = base[e] + 0.6f * gauss();
    qf_l2_normalize(f, NQ, D);
}
static void text_query(float *v) {
    int t = (int)(rnext() % 20);
    for (int e = 0; e < D; e++) v[e] = topics[t * D + e] + 1.2f * gauss();
    qf_l2_normalize(v, 1, D);
}

static float *all_feats;     /* [N_IMG][NQ][D], image i has id i + 1 */

static qf_store *make_store(const char *name, const char *factory) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", qf_test_tmpdir(), name);
    qf_store *st = NULL;
    CU_ASSERT_EQUAL_FATAL(qf_store_open(path, 0, &st), QF_OK);
    CU_ASSERT_EQUAL(qf_store_begin(st), QF_OK);
    qf_store_meta_set(st, "factory", factory);
    qf_store_meta_set(st, "pooled", "0");
    qf_store_meta_set(st, "n_query", "8");
    qf_store_meta_set(st, "dim", "32");
    for (int i = 0; i < N_IMG; i++) {
        char p[64];
        int64_t id;
        snprintf(p, sizeof p, "/img/%04d.jpg", i);
        CU_ASSERT_EQUAL(qf_store_image_upsert(st, p, 1, 1, NULL, &id), QF_OK);
        CU_ASSERT_EQUAL(id, i + 1);
        CU_ASSERT_EQUAL(qf_store_feats_put(st, id, NQ, D, all_feats + (size_t)i * NQ * D), QF_OK);
        CU_ASSERT_EQUAL(qf_store_image_mark_ok(st, id, 1, 1), QF_OK);
    }
    CU_ASSERT_EQUAL(qf_store_commit(st), QF_OK);
    return st;
}

static qf_vindex *make_index(const char *factory) {
    qf_vindex *vi = NULL;
    CU_ASSERT_EQUAL_FATAL(qf_vindex_create(factory, D, &vi), QF_OK);
    int64_t *ids = malloc((size_t)N_IMG * NQ * sizeof *ids);
    for (int64_t i = 0; i < (int64_t)N_IMG * NQ; i++) ids[i] = (i / NQ + 1) * NQ + i % NQ;
    CU_ASSERT_EQUAL(qf_vindex_train(vi, (int64_t)N_IMG * NQ, all_feats), QF_OK);
    CU_ASSERT_EQUAL(qf_vindex_add(vi, (int64_t)N_IMG * NQ, all_feats, ids), QF_OK);
    free(ids);
    return vi;
}

/* independent brute force: best k image ids (1-based) for one query vector */
typedef struct { int64_t id; float s; } ref;
static int ref_cmp(const void *a, const void *b) {
    const ref *x = a, *y = b;
    if (x->s != y->s) return x->s > y->s ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}
static void brute(const float *q, int k, ref *out) {
    ref *all = malloc(N_IMG * sizeof *all);
    for (int i = 0; i < N_IMG; i++) {
        float best = -INFINITY;
        for (int a = 0; a < NQ; a++) {
            float s = 0;
            for (int e = 0; e < D; e++) s += all_feats[((size_t)i * NQ + a) * D + e] * q[e];
            if (s > best) best = s;
        }
        all[i] = (ref){ i + 1, best };
    }
    qsort(all, N_IMG, sizeof *all, ref_cmp);
    memcpy(out, all, (size_t)k * sizeof *out);
    free(all);
}

static void setup(void) {
    if (all_feats) return;
    make_topics();
    all_feats = malloc((size_t)N_IMG * NQ * D * sizeof *all_feats);
    for (int i = 0; i < N_IMG; i++) image_feats(all_feats + (size_t)i * NQ * D);
}

static void test_exact_scan_and_flat(void) {
    setup();
    qf_store *st = make_store("flat.db", "Flat");
    qf_vindex *vi = make_index("Flat");
    qf_ann_layout lay;
    qf_ann_params p;
    CU_ASSERT_EQUAL_FATAL(qf_ann_layout_load(st, "flat.db", &lay, &p), QF_OK);
    CU_ASSERT(lay.exact);
    CU_ASSERT_EQUAL(lay.n_query, NQ);
    float q[5 * D];
    for (int j = 0; j < 5; j++) text_query(q + j * D);
    int64_t ids[5 * 10];
    float sc[5 * 10];
    CU_ASSERT_EQUAL(qf_ann_exact(st, NQ, D, 5, q, 10, ids, sc), QF_OK);
    for (int j = 0; j < 5; j++) {
        ref want[10];
        qf_ann_hit got[10];
        int n = 0;
        brute(q + j * D, 10, want);
        CU_ASSERT_EQUAL(qf_ann_search(st, vi, &lay, &p, 1, q + j * D, 10, got, &n), QF_OK);
        CU_ASSERT_EQUAL(n, 10);
        for (int t = 0; t < 10; t++) {
            CU_ASSERT_EQUAL(ids[j * 10 + t], want[t].id);             /* exact scan */
            CU_ASSERT(fabsf(sc[j * 10 + t] - want[t].s) < 1e-5f);
            CU_ASSERT_EQUAL(got[t].image_id, want[t].id);            /* Flat search */
            CU_ASSERT(fabsf(got[t].itc - want[t].s) < 1e-5f);
        }
    }
    /* an exact index needs no tuning */
    qf_ann_tuning t;
    CU_ASSERT_EQUAL(qf_ann_tune(st, vi, &lay, &t), QF_OK);
    CU_ASSERT(t.reached && t.recall == 1.0 && t.best.candidates == 0);
    qf_vindex_free(vi);
    qf_store_close(st);
}

static void test_tune_ivfpq(void) {
    setup();
    const char *factory = "IVF16,PQ8x4";
    qf_store *st = make_store("ivf.db", factory);
    qf_vindex *vi = make_index(factory);
    qf_ann_layout lay;
    qf_ann_params p;
    CU_ASSERT_EQUAL_FATAL(qf_ann_layout_load(st, "ivf.db", &lay, &p), QF_OK);
    CU_ASSERT(!lay.exact);
    CU_ASSERT_EQUAL(p.candidates, 0);                  /* nothing recorded yet */

    /* untuned defaults (FAISS nprobe 1, 40 candidates) on text-like queries */
    enum { NT = 60 };
    float *q = malloc((size_t)NT * D * sizeof *q);
    for (int j = 0; j < NT; j++) text_query(q + j * D);
    ref (*want)[10] = malloc(NT * sizeof *want);
    for (int j = 0; j < NT; j++) brute(q + j * D, 10, want[j]);
    int hit_default = 0, hit_tuned = 0;
    for (int j = 0; j < NT; j++) {
        qf_ann_hit got[10];
        int n = 0;
        CU_ASSERT_EQUAL(qf_ann_search(st, vi, &lay, &p, 1, q + j * D, 10, got, &n), QF_OK);
        for (int t = 0; t < 10; t++)
            for (int i = 0; i < n; i++) hit_default += got[i].image_id == want[j][t].id;
    }

    qf_ann_tuning t;
    CU_ASSERT_EQUAL_FATAL(qf_ann_tune(st, vi, &lay, &t), QF_OK);
    CU_ASSERT(t.reached);
    CU_ASSERT(t.recall >= QF_ANN_TUNE_TARGET);
    CU_ASSERT(t.best.nprobe >= 1 && t.best.nprobe <= 16);
    CU_ASSERT(t.best.candidates >= 10 && t.best.candidates <= QF_ANN_MAX_CANDIDATES);
    CU_ASSERT_EQUAL(t.n_probes, QF_ANN_TUNE_PROBES);
    CU_ASSERT_EQUAL(qf_ann_tuning_save(st, &lay, &t, N_IMG), QF_OK);

    /* what search reads back, applied to a fresh handle */
    CU_ASSERT_EQUAL(qf_ann_layout_load(st, "ivf.db", &lay, &p), QF_OK);
    CU_ASSERT_EQUAL(p.nprobe, t.best.nprobe);
    CU_ASSERT_EQUAL(p.candidates, t.best.candidates);
    CU_ASSERT_EQUAL(qf_ann_apply(vi, &p), QF_OK);
    for (int j = 0; j < NT; j++) {
        qf_ann_hit got[10];
        int n = 0;
        CU_ASSERT_EQUAL(qf_ann_search(st, vi, &lay, &p, 1, q + j * D, 10, got, &n), QF_OK);
        CU_ASSERT_EQUAL(n, 10);
        for (int i = 1; i < n; i++) CU_ASSERT(got[i - 1].itc >= got[i].itc);
        for (int t2 = 0; t2 < 10; t2++)
            for (int i = 0; i < n; i++)
                if (got[i].image_id == want[j][t2].id) {   /* never mis-scored */
                    hit_tuned++;
                    CU_ASSERT(fabsf(got[i].itc - want[j][t2].s) < 1e-5f);
                }
    }
    double r_default = hit_default / (10.0 * NT), r_tuned = hit_tuned / (10.0 * NT);
    fprintf(stderr, "\n  IVF16,PQ8x4 over %d images: recall@10 untuned %.3f, tuned (nprobe %d, %d candidates) %.3f\n",
            N_IMG, r_default, t.best.nprobe, t.best.candidates, r_tuned);
    CU_ASSERT(r_tuned >= 0.95);
    CU_ASSERT(r_tuned > r_default);

    /* needs tuning again: other factory, or 10% more images */
    int needed = -1;
    CU_ASSERT_EQUAL(qf_ann_needs_tuning(st, factory, N_IMG, &needed), QF_OK);
    CU_ASSERT_EQUAL(needed, 0);
    CU_ASSERT_EQUAL(qf_ann_needs_tuning(st, factory, N_IMG * 12 / 10, &needed), QF_OK);
    CU_ASSERT_EQUAL(needed, 1);
    CU_ASSERT_EQUAL(qf_ann_needs_tuning(st, "IVF32,PQ8x4", N_IMG, &needed), QF_OK);
    CU_ASSERT_EQUAL(needed, 1);

    /* an image deleted since the index was written is skipped, k still returned */
    qf_ann_hit got[10];
    int n = 0;
    CU_ASSERT_EQUAL(qf_ann_search(st, vi, &lay, &p, 1, q, 10, got, &n), QF_OK);
    int64_t gone = got[0].image_id;
    CU_ASSERT_EQUAL(qf_store_image_delete(st, gone), QF_OK);
    CU_ASSERT_EQUAL(qf_ann_search(st, vi, &lay, &p, 1, q, 10, got, &n), QF_OK);
    CU_ASSERT_EQUAL(n, 10);
    for (int i = 0; i < n; i++) CU_ASSERT(got[i].image_id != gone);

    free(q); free(want);
    qf_vindex_free(vi);
    qf_store_close(st);
}

static void test_choose(void) {
    char f[256], why[320];
    const int64_t G = (int64_t)1 << 30;
    qf_ann_choose(6000 * 32, 256, QF_ANN_DEFAULT_BUDGET, f, sizeof f, why, sizeof why);
    CU_ASSERT_STRING_EQUAL(f, "Flat");
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "192000 vectors"));
    /* 1M images: IVF with PQ32 in 2 GiB, within budget */
    qf_ann_choose(32000000, 256, 2 * G, f, sizeof f, why, sizeof why);
    CU_ASSERT_STRING_EQUAL(f, "IVF4096,PQ32");     /* nlist capped by the sample */
    CU_ASSERT(qf_ann_index_bytes(f, 32000000, 256) <= 2 * G);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "over budget"));      /* Flat's 30 GiB is */
    /* more memory: a finer code */
    qf_ann_choose(32000000, 256, 12 * G, f, sizeof f, why, sizeof why);
    CU_ASSERT_STRING_EQUAL(f, "IVF4096,SQ8");
    /* 50k images, 2 GiB: the IVF holds the vectors themselves */
    qf_ann_choose(50000 * 32, 256, 2 * G, f, sizeof f, why, sizeof why);
    CU_ASSERT_STRING_EQUAL(f, "IVF4096,Flat");
    /* a Flat-sized corpus beyond the budget is not Flat */
    qf_ann_choose(100000, 256, 10 << 20, f, sizeof f, why, sizeof why);
    CU_ASSERT(strncmp(f, "IVF", 3) == 0);
    /* nlist keeps >= 39 training vectors per cell */
    qf_ann_choose(400000, 256, 2 * G, f, sizeof f, why, sizeof why);
    CU_ASSERT(atoll(f + 3) * 39 <= 400000);
    /* and in the training sample however large the corpus */
    qf_ann_choose(3200000000LL, 256, 1024 * G, f, sizeof f, why, sizeof why);
    CU_ASSERT(atoll(f + 3) * 39 <= QF_ANN_TRAIN_MAX_VECTORS);
    CU_ASSERT(atoll(f + 3) >= 4096);
}

static void test_parse_bytes(void) {
    int64_t v = 0;
    CU_ASSERT_EQUAL(qf_ann_parse_bytes("4G", &v), QF_OK);
    CU_ASSERT_EQUAL(v, (int64_t)4 << 30);
    CU_ASSERT_EQUAL(qf_ann_parse_bytes("512M", &v), QF_OK);
    CU_ASSERT_EQUAL(v, (int64_t)512 << 20);
    CU_ASSERT_EQUAL(qf_ann_parse_bytes("1.5GiB", &v), QF_OK);
    CU_ASSERT_EQUAL(v, (int64_t)3 << 29);
    CU_ASSERT_EQUAL(qf_ann_parse_bytes("100000", &v), QF_OK);
    CU_ASSERT_EQUAL(v, 100000);
    CU_ASSERT_EQUAL(qf_ann_parse_bytes("lots", &v), QF_ERR_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(qf_last_error(), "'lots'"));
    CU_ASSERT_EQUAL(qf_ann_parse_bytes("0", &v), QF_ERR_ARG);
    CU_ASSERT_EQUAL(qf_ann_parse_bytes("4X", &v), QF_ERR_ARG);
    CU_ASSERT_EQUAL(qf_ann_parse_bytes("", &v), QF_ERR_ARG);
}

/* Every allocation of a search, a tuning and an exact scan failing in turn
 * gives QF_ERR_NOMEM (or success once past the last one), never a crash or
 * a leak (the ASan build checks leaks). */
static void test_alloc_failures(void) {
    setup();
    qf_store *st = make_store("nomem.db", "IVF16,PQ8x4");
    qf_vindex *vi = make_index("IVF16,PQ8x4");
    qf_ann_layout lay;
    qf_ann_params p;
    CU_ASSERT_EQUAL_FATAL(qf_ann_layout_load(st, "nomem.db", &lay, &p), QF_OK);
    float q[D];
    text_query(q);
    int n_nomem = 0, ok_search = 0;
    for (int fail = 0; fail < 40; fail++) {
        qf_ann_hit h[10];
        int n = 0;
        qf_alloc_fail_after(fail);
        qf_status s = qf_ann_search(st, vi, &lay, &p, 1, q, 10, h, &n);
        qf_alloc_fail_after(-1);
        CU_ASSERT(s == QF_OK || s == QF_ERR_NOMEM);
        n_nomem += s == QF_ERR_NOMEM;
        ok_search += s == QF_OK;
        qf_ann_tuning t;
        qf_alloc_fail_after(fail);
        s = qf_ann_tune(st, vi, &lay, &t);
        qf_alloc_fail_after(-1);
        CU_ASSERT(s == QF_OK || s == QF_ERR_NOMEM || s == QF_ERR_DB);   /* SQLite may report its own OOM */
    }
    CU_ASSERT(n_nomem >= 3);
    CU_ASSERT(ok_search > 0);   /* a search needs fewer than 40 allocations; a tuning
                                 * thousands: only its failure paths are walked */
    qf_vindex_free(vi);
    qf_store_close(st);
}

static CU_TestInfo tests[] = {
    { "exact_scan_and_flat", test_exact_scan_and_flat },
    { "tune_ivfpq", test_tune_ivfpq },
    { "choose", test_choose },
    { "parse_bytes", test_parse_bytes },
    { "alloc_failures", test_alloc_failures },
    CU_TEST_INFO_NULL,
};

int main(void) { return qf_test_main("ann", tests); }
