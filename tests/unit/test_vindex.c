/* test_vindex.c - the FAISS vector index: exact Flat search and the exact
 * multi-vector image search against brute force (ties included), add and
 * remove, atomic write/read, IVF-PQ recall against Flat, and the errors a
 * user sees for bad factories and too-small training sets. */
#include "index/vindex.h"
#include "embed/ops.h"
#include "tests/testutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------------ */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng_next(void) {                   /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

static float rng_uniform(void) { return (float)((rng_next() >> 40) * (1.0 / 16777216.0)); }

static float rng_gauss(void) {
    float u = rng_uniform() + 1e-7f, v = rng_uniform();
    return sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * v);
}

static float *rand_gauss(int64_t n, int d) {
    float *x = malloc((size_t)n * d * sizeof *x);
    for (int64_t i = 0; i < n * d; i++) x[i] = rng_gauss();
    return x;
}

/* Small integers: every dot product is exact in float whatever the
 * summation order, so ties are real ties and results must match exactly. */
static float *rand_small_int(int64_t n, int d) {
    float *x = malloc((size_t)n * d * sizeof *x);
    for (int64_t i = 0; i < n * d; i++) x[i] = (float)((int)(rng_next() % 5) - 2);
    return x;
}

static double dot(const float *a, const float *b, int d) {
    double s = 0;
    for (int i = 0; i < d; i++) s += (double)a[i] * b[i];
    return s;
}

typedef struct { int64_t id; double score; } ref_hit;

static int cmp_ref(const void *a, const void *b) {  /* score desc, id asc */
    const ref_hit *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* Brute-force image ranking: image i (id img_ids[i]) has vectors
 * x[(i * n_query + q) * d]; score = max over query vectors and q. */
static ref_hit *brute_images(const float *x, const int64_t *img_ids, const int *alive, int n_img,
                             int n_query, const float *qv, int n_q, int d, int *n_out) {
    ref_hit *r = malloc((size_t)n_img * sizeof *r);
    int n_vec = n_img * n_query, m = 0;
    float *all = malloc((size_t)n_q * n_vec * sizeof *all);      /* [n_q, n_vec] = qv @ x^T */
    qf_gemm(1, n_q, n_vec, d, qv, d, x, d, 0.0f, all, n_vec);
    for (int i = 0; i < n_img; i++) {
        if (alive && !alive[i]) continue;
        double best = -INFINITY;
        for (int j = 0; j < n_q; j++)
            for (int q = 0; q < n_query; q++) {
                double s = all[(size_t)j * n_vec + (size_t)i * n_query + q];
                if (s > best) best = s;
            }
        r[m++] = (ref_hit){ img_ids[i], best };
    }
    free(all);
    qsort(r, (size_t)m, sizeof *r, cmp_ref);
    *n_out = m;
    return r;
}

static qf_vindex *make_index(const char *factory, int d) {
    qf_vindex *vi = NULL;
    qf_status s = qf_vindex_create(factory, d, &vi);
    if (s != QF_OK) fprintf(stderr, "\ncreate '%s': %s\n", factory ? factory : "(default)", qf_last_error());
    CU_ASSERT_EQUAL_FATAL(s, QF_OK);
    return vi;
}

/* Adds n_img images of n_query vectors each, image i with id img_ids[i]. */
static void add_images(qf_vindex *vi, const float *x, const int64_t *img_ids, int n_img, int n_query) {
    int64_t n = (int64_t)n_img * n_query;
    int64_t *ids = malloc((size_t)n * sizeof *ids);
    for (int i = 0; i < n_img; i++)
        for (int q = 0; q < n_query; q++) ids[(int64_t)i * n_query + q] = img_ids[i] * n_query + q;
    CU_ASSERT_EQUAL(qf_vindex_add(vi, n, x, ids), QF_OK);
    free(ids);
}

/* Checks search_images against brute force: same ids in the same order,
 * scores within tol (0: exactly equal). */
static void check_images(const qf_vindex *vi, const float *x, const int64_t *img_ids, const int *alive,
                         int n_img, int n_query, const float *qv, int n_q, int d, int64_t k,
                         double tol) {
    int n_ref = 0;
    ref_hit *ref = brute_images(x, img_ids, alive, n_img, n_query, qv, n_q, d, &n_ref);
    qf_vindex_hit *hits = malloc((size_t)k * sizeof *hits);
    int64_t n_hits = -1;
    CU_ASSERT_EQUAL_FATAL(qf_vindex_search_images(vi, n_q, qv, n_query, k, hits, &n_hits), QF_OK);
    int64_t want = k < n_ref ? k : n_ref;
    CU_ASSERT_EQUAL(n_hits, want);
    int bad = 0;
    for (int64_t r = 0; r < n_hits && r < want; r++) {
        int same_id = hits[r].image_id == ref[r].id;
        int same_score = fabs(hits[r].score - ref[r].score) <= tol;
        /* with a tolerance, two images within it may swap places */
        if (!same_id && tol > 0 && r + 1 < want && fabs(ref[r].score - ref[r + 1].score) <= 2 * tol)
            same_id = 1;
        if ((!same_id || !same_score) && bad++ < 3)
            fprintf(stderr, "\nk=%lld rank %lld: got image %lld score %.7g, expected %lld score %.7g\n",
                    (long long)k, (long long)r, (long long)hits[r].image_id, hits[r].score,
                    (long long)ref[r].id, ref[r].score);
    }
    CU_ASSERT_EQUAL(bad, 0);
    free(hits);
    free(ref);
}

/* ---- tests ------------------------------------------------------------------------ */

static void test_flat_exact(void) {
    const int d = 32, n = 2000, nq = 20, k = 10;
    float *x = rand_gauss(n, d), *q = rand_gauss(nq, d);
    int64_t *ids = malloc(n * sizeof *ids);
    for (int i = 0; i < n; i++) ids[i] = 7 + 3 * (int64_t)i;
    qf_vindex *vi = make_index(NULL, d);
    CU_ASSERT_EQUAL(qf_vindex_dim(vi), d);
    CU_ASSERT(qf_vindex_is_trained(vi));
    CU_ASSERT_EQUAL(qf_vindex_add(vi, n, x, ids), QF_OK);
    CU_ASSERT_EQUAL(qf_vindex_ntotal(vi), n);

    float scores[20 * 10];
    int64_t got[20 * 10];
    CU_ASSERT_EQUAL_FATAL(qf_vindex_search(vi, nq, q, k, scores, got), QF_OK);
    ref_hit *ref = malloc(n * sizeof *ref);
    float *all = malloc((size_t)nq * n * sizeof *all);
    qf_gemm(1, nq, n, d, q, d, x, d, 0.0f, all, n);              /* [nq, n] = q @ x^T */
    int bad = 0;
    for (int j = 0; j < nq; j++) {
        for (int i = 0; i < n; i++) ref[i] = (ref_hit){ ids[i], all[(size_t)j * n + i] };
        qsort(ref, n, sizeof *ref, cmp_ref);
        for (int r = 0; r < k; r++) {
            if (fabs(scores[j * k + r] - ref[r].score) > 1e-4) bad++;
            if (got[j * k + r] != ref[r].id && fabs(ref[r].score - ref[r + 1].score) > 1e-4) bad++;
        }
    }
    CU_ASSERT_EQUAL(bad, 0);

    /* more results asked than vectors stored: the tail is marked missing */
    qf_vindex *small = make_index("Flat", d);
    CU_ASSERT_EQUAL(qf_vindex_add(small, 3, x, ids), QF_OK);
    float s5[5];
    int64_t i5[5];
    CU_ASSERT_EQUAL(qf_vindex_search(small, 1, q, 5, s5, i5), QF_OK);
    CU_ASSERT(i5[2] >= 0 && i5[3] == -1 && i5[4] == -1);
    CU_ASSERT(isinf(s5[3]) && s5[3] < 0);
    qf_vindex_free(small);
    free(all); free(ref); free(ids); free(x); free(q);
    qf_vindex_free(vi);
}

static void test_images_exact_ties(void) {
    const int d = 8, n_img = 300, n_query = 4;
    float *x = rand_small_int((int64_t)n_img * n_query, d);
    int64_t *img_ids = malloc(n_img * sizeof *img_ids);
    for (int i = 0; i < n_img; i++) img_ids[i] = 5 + 3 * (int64_t)i;   /* not contiguous */
    qf_vindex *vi = make_index("Flat", d);
    add_images(vi, x, img_ids, n_img, n_query);
    CU_ASSERT_EQUAL(qf_vindex_ntotal(vi), (int64_t)n_img * n_query);
    const int64_t ks[] = { 1, 2, 5, 10, 37, 299, 300, 500 };
    for (int t = 0; t < 12; t++) {
        float *qv = rand_small_int(1, d);
        for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++)
            check_images(vi, x, img_ids, NULL, n_img, n_query, qv, 1, d, ks[i], 0);
        free(qv);
    }
    /* all vectors identical: every image ties, order is by image id */
    float *same = calloc((size_t)n_img * n_query * d, sizeof *same);
    for (int i = 0; i < n_img * n_query * d; i++) same[i] = 1;
    qf_vindex *flat = make_index("Flat", d);
    add_images(flat, same, img_ids, n_img, n_query);
    float qv[8] = { 1, 0, 0, 0, 0, 0, 0, 0 };
    check_images(flat, same, img_ids, NULL, n_img, n_query, qv, 1, d, 10, 0);
    qf_vindex_free(flat);
    free(same); free(img_ids); free(x);
    qf_vindex_free(vi);
}

static void test_images_float_32q(void) {
    /* the BLIP-2 layout: 32 query vectors per image, normalised features */
    const int d = 32, n_img = 200, n_query = 32;
    float *x = rand_gauss((int64_t)n_img * n_query, d);
    for (int i = 0; i < n_img * n_query; i++) {
        double nrm = sqrt(dot(x + (size_t)i * d, x + (size_t)i * d, d));
        for (int c = 0; c < d; c++) x[(size_t)i * d + c] /= (float)nrm;
    }
    int64_t *img_ids = malloc(n_img * sizeof *img_ids);
    for (int i = 0; i < n_img; i++) img_ids[i] = i;
    qf_vindex *vi = make_index("Flat", d);
    add_images(vi, x, img_ids, n_img, n_query);
    for (int t = 0; t < 5; t++) {
        float *qv = rand_gauss(1, d);
        check_images(vi, x, img_ids, NULL, n_img, n_query, qv, 1, d, 10, 1e-5);
        check_images(vi, x, img_ids, NULL, n_img, n_query, qv, 1, d, 1, 1e-5);
        free(qv);
    }
    free(img_ids); free(x);
    qf_vindex_free(vi);
}

static void test_images_image_query(void) {
    const int d = 8, n_img = 150, n_query = 4, n_q = 4;
    float *x = rand_small_int((int64_t)n_img * n_query, d);
    int64_t *img_ids = malloc(n_img * sizeof *img_ids);
    for (int i = 0; i < n_img; i++) img_ids[i] = 1000 + (int64_t)i;
    qf_vindex *vi = make_index("Flat", d);
    add_images(vi, x, img_ids, n_img, n_query);
    for (int t = 0; t < 10; t++) {
        float *qv = rand_small_int(n_q, d);
        check_images(vi, x, img_ids, NULL, n_img, n_query, qv, n_q, d, 1, 0);
        check_images(vi, x, img_ids, NULL, n_img, n_query, qv, n_q, d, 10, 0);
        check_images(vi, x, img_ids, NULL, n_img, n_query, qv, n_q, d, 200, 0);
        free(qv);
    }
    /* the image itself as query: it comes first with its own best self-match */
    qf_vindex_hit h[3];
    int64_t nh = 0;
    float *self = x + (size_t)17 * n_query * d;
    CU_ASSERT_EQUAL(qf_vindex_search_images(vi, n_q, self, n_query, 3, h, &nh), QF_OK);
    CU_ASSERT_EQUAL(nh, 3);
    int n_ref = 0;
    ref_hit *ref = brute_images(x, img_ids, NULL, n_img, n_query, self, n_q, d, &n_ref);
    CU_ASSERT_EQUAL(h[0].image_id, ref[0].id);
    free(ref); free(img_ids); free(x);
    qf_vindex_free(vi);
}

static void test_add_remove(void) {
    const int d = 8, n_img = 100, n_query = 2;
    float *x = rand_small_int((int64_t)n_img * n_query, d);
    int64_t *img_ids = malloc(n_img * sizeof *img_ids);
    int *alive = malloc(n_img * sizeof *alive);
    for (int i = 0; i < n_img; i++) { img_ids[i] = i; alive[i] = 1; }
    const char *factories[] = { "Flat", "IVF4,Flat", "IDMap,IVF4,Flat" };
    for (size_t f = 0; f < 3; f++) {
        qf_vindex *vi = make_index(factories[f], d);
        CU_ASSERT_EQUAL(qf_vindex_train(vi, (int64_t)n_img * n_query, x), QF_OK);
        CU_ASSERT_EQUAL(qf_vindex_set_param(vi, "nprobe", 4) == QF_OK, f > 0);
        add_images(vi, x, img_ids, n_img, n_query);
        /* remove images 10..19 (both vectors) and an id never added */
        int64_t rm[21];
        for (int i = 0; i < 10; i++) {
            rm[2 * i] = (10 + i) * 2;
            rm[2 * i + 1] = (10 + i) * 2 + 1;
            alive[10 + i] = 0;
        }
        rm[20] = 999999;
        int64_t removed = -1;
        CU_ASSERT_EQUAL(qf_vindex_remove(vi, 21, rm, &removed), QF_OK);
        CU_ASSERT_EQUAL(removed, 20);
        CU_ASSERT_EQUAL(qf_vindex_ntotal(vi), (int64_t)(n_img - 10) * n_query);
        /* ids must still map to the right vectors after the removal */
        for (int t = 0; t < 5; t++) {
            float *qv = rand_small_int(1, d);
            check_images(vi, x, img_ids, alive, n_img, n_query, qv, 1, d, 10, 0);
            free(qv);
        }
        /* put them back: same results as before the removal */
        add_images(vi, x + (size_t)10 * n_query * d, img_ids + 10, 10, n_query);
        for (int i = 10; i < 20; i++) alive[i] = 1;
        float *qv = rand_small_int(1, d);
        check_images(vi, x, img_ids, NULL, n_img, n_query, qv, 1, d, 15, 0);
        free(qv);
        qf_vindex_free(vi);
    }
    /* negative ids are refused */
    qf_vindex *vi = make_index("Flat", d);
    int64_t neg = -5;
    CU_ASSERT_EQUAL(qf_vindex_add(vi, 1, x, &neg), QF_ERR_ARG);
    /* reconstruct gives back the stored vectors (Flat: exactly) */
    add_images(vi, x, img_ids, n_img, n_query);
    int64_t want[3] = { 7, 0, 199 };
    float back[3 * 8];
    CU_ASSERT_EQUAL(qf_vindex_reconstruct(vi, 3, want, back), QF_OK);
    for (int i = 0; i < 3; i++) CU_ASSERT_EQUAL(memcmp(back + i * d, x + want[i] * d, d * sizeof(float)), 0);
    int64_t absent = 12345;
    CU_ASSERT_EQUAL(qf_vindex_reconstruct(vi, 1, &absent, back), QF_ERR_ARG);
    qf_vindex_free(vi);
    free(alive); free(img_ids); free(x);
}

static int count_tmp_files(const char *dir) {
    int n = 0;
    DIR *dp = opendir(dir);
    struct dirent *e;
    while (dp && (e = readdir(dp)))
        if (strstr(e->d_name, ".tmp.")) n++;
    if (dp) closedir(dp);
    return n;
}

static void test_write_read(void) {
    const int d = 16, n = 500;
    float *x = rand_gauss(n, d), *q = rand_gauss(4, d);
    int64_t *ids = malloc(n * sizeof *ids);
    for (int i = 0; i < n; i++) ids[i] = 100 + 2 * (int64_t)i;
    char path[600], dir[512];
    snprintf(dir, sizeof dir, "%s/vindex_rw", qf_test_tmpdir());
    char cmd[600];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir);
    CU_ASSERT_EQUAL_FATAL(system(cmd), 0);
    snprintf(path, sizeof path, "%s/index.faiss", dir);

    const char *factories[] = { "Flat", "IVF8,Flat" };
    for (int f = 0; f < 2; f++) {
        qf_vindex *vi = make_index(factories[f], d);
        CU_ASSERT_EQUAL(qf_vindex_train(vi, n, x), QF_OK);
        CU_ASSERT_EQUAL(qf_vindex_add(vi, n / 2, x, ids), QF_OK);
        CU_ASSERT_EQUAL(qf_vindex_write(vi, path), QF_OK);          /* first write */
        CU_ASSERT_EQUAL(qf_vindex_add(vi, n - n / 2, x + (size_t)(n / 2) * d, ids + n / 2), QF_OK);
        CU_ASSERT_EQUAL(qf_vindex_write(vi, path), QF_OK);          /* replaces it */
        CU_ASSERT_EQUAL(count_tmp_files(dir), 0);

        qf_vindex *back = NULL;
        CU_ASSERT_EQUAL_FATAL(qf_vindex_read(path, &back), QF_OK);
        CU_ASSERT_EQUAL(qf_vindex_ntotal(back), n);
        CU_ASSERT_EQUAL(qf_vindex_dim(back), d);
        if (f == 1) CU_ASSERT_EQUAL(qf_vindex_set_param(back, "nprobe", 8), QF_OK);
        if (f == 1) CU_ASSERT_EQUAL(qf_vindex_set_param(vi, "nprobe", 8), QF_OK);
        float s1[4 * 7], s2[4 * 7];
        int64_t i1[4 * 7], i2[4 * 7];
        CU_ASSERT_EQUAL(qf_vindex_search(vi, 4, q, 7, s1, i1), QF_OK);
        CU_ASSERT_EQUAL(qf_vindex_search(back, 4, q, 7, s2, i2), QF_OK);
        CU_ASSERT_EQUAL(memcmp(i1, i2, sizeof i1), 0);
        CU_ASSERT_EQUAL(memcmp(s1, s2, sizeof s1), 0);
        /* a read index keeps working: remove and add */
        int64_t removed = 0;
        CU_ASSERT_EQUAL(qf_vindex_remove(back, 1, &ids[3], &removed), QF_OK);
        CU_ASSERT_EQUAL(removed, 1);
        qf_vindex_free(back);
        qf_vindex_free(vi);
    }

    /* failures: missing file, not an index, unwritable destination */
    qf_vindex *vi = NULL;
    char missing[600];
    snprintf(missing, sizeof missing, "%s/nope.faiss", dir);
    CU_ASSERT_EQUAL(qf_vindex_read(missing, &vi), QF_ERR_IO);
    CU_ASSERT_PTR_NULL(vi);
    CU_ASSERT(strstr(qf_last_error(), "nope.faiss") != NULL);
    char junk[600];
    snprintf(junk, sizeof junk, "%s/junk.faiss", dir);
    FILE *f = fopen(junk, "wb");
    fputs("this is not a FAISS index at all", f);
    fclose(f);
    CU_ASSERT_EQUAL(qf_vindex_read(junk, &vi), QF_ERR_INDEX);
    CU_ASSERT(strstr(qf_last_error(), "junk.faiss") != NULL);
    vi = make_index("Flat", d);
    char bad[600];
    snprintf(bad, sizeof bad, "%s/no/such/dir/index.faiss", dir);
    CU_ASSERT_EQUAL(qf_vindex_write(vi, bad), QF_ERR_IO);
    CU_ASSERT_EQUAL(count_tmp_files(dir), 0);
    qf_vindex_free(vi);
    free(ids); free(x); free(q);
}

/* Embedding-like synthetic corpus: 8 latent dimensions mapped to d by a
 * fixed random matrix, plus a little isotropic noise. */
static float *low_rank(int n, int d) {
    static float a[64 * 8];
    static int have_a;
    if (!have_a) {
        for (int i = 0; i < 64 * 8; i++) a[i] = rng_gauss();
        have_a = 1;
    }
    float *x = malloc((size_t)n * d * sizeof *x);
    for (int i = 0; i < n; i++) {
        float z[8];
        for (int r = 0; r < 8; r++) z[r] = rng_gauss();
        for (int j = 0; j < d; j++) {
            float acc = 0;
            for (int r = 0; r < 8; r++) acc += a[j * 8 + r] * z[r];
            x[(size_t)i * d + j] = acc + 0.1f * rng_gauss();
        }
    }
    return x;
}

/* Fraction of the exact top-k (ref) found in the approximate top-k (got). */
static double recall_at(const int64_t *ref, const int64_t *got, int nq, int k) {
    int hit = 0;
    for (int j = 0; j < nq; j++)
        for (int a = 0; a < k; a++)
            for (int b = 0; b < k; b++)
                if (ref[j * k + a] == got[j * k + b]) hit++;
    return (double)hit / (nq * k);
}

static void test_ivfpq_recall(void) {
    const int d = 32, n = 4000, nq = 50, k = 10;
    float *x = low_rank(n, d), *q = low_rank(nq, d);
    int64_t *ids = malloc(n * sizeof *ids);
    for (int i = 0; i < n; i++) ids[i] = 3 * (int64_t)i + 1;

    qf_vindex *flat = make_index("Flat", d), *pq = make_index("IVF16,PQ8", d);
    CU_ASSERT(!qf_vindex_is_trained(pq));
    int64_t min_n = 0, good_n = 0;
    qf_vindex_train_size(pq, &min_n, &good_n);
    CU_ASSERT_EQUAL(min_n, 256);                       /* PQ8: 2^8 centroids per sub-quantizer */
    CU_ASSERT(good_n >= min_n);
    qf_vindex_train_size(flat, &min_n, &good_n);
    CU_ASSERT_EQUAL(min_n, 0);
    CU_ASSERT_EQUAL(qf_vindex_add(pq, n, x, ids), QF_ERR_ARG);   /* not trained yet */
    CU_ASSERT_EQUAL_FATAL(qf_vindex_train(pq, n, x), QF_OK);
    CU_ASSERT(qf_vindex_is_trained(pq));
    CU_ASSERT_EQUAL(qf_vindex_add(flat, n, x, ids), QF_OK);
    CU_ASSERT_EQUAL(qf_vindex_add(pq, n, x, ids), QF_OK);
    CU_ASSERT_EQUAL(qf_vindex_set_param(pq, "nprobe", 8), QF_OK);

    float *s1 = malloc(nq * k * sizeof *s1), *s2 = malloc(nq * k * sizeof *s2);
    int64_t *i1 = malloc(nq * k * sizeof *i1), *i2 = malloc(nq * k * sizeof *i2);
    CU_ASSERT_EQUAL(qf_vindex_search(flat, nq, q, k, s1, i1), QF_OK);
    CU_ASSERT_EQUAL(qf_vindex_search(pq, nq, q, k, s2, i2), QF_OK);
    double recall = recall_at(i1, i2, nq, k);
    fprintf(stderr, "\n  IVF16,PQ8 recall@10 vs Flat: %.3f\n", recall);
    CU_ASSERT(recall > 0.5);

    /* the image search works on it too (pooled: n_query = 1) */
    qf_vindex_hit h[10];
    int64_t nh = 0;
    CU_ASSERT_EQUAL(qf_vindex_search_images(pq, 1, q, 1, 10, h, &nh), QF_OK);
    CU_ASSERT_EQUAL(nh, 10);
    for (int i = 1; i < nh; i++) CU_ASSERT(h[i - 1].score >= h[i].score);
    /* removal keeps ids right */
    int64_t removed = 0, gone = i2[0];
    CU_ASSERT_EQUAL(qf_vindex_remove(pq, 1, &gone, &removed), QF_OK);
    CU_ASSERT_EQUAL(removed, 1);
    CU_ASSERT_EQUAL(qf_vindex_search(pq, 1, q, k, s2, i2), QF_OK);
    for (int b = 0; b < k; b++) CU_ASSERT(i2[b] != gone);
    CU_ASSERT_EQUAL(qf_vindex_reconstruct(pq, 1, &ids[0], s2), QF_ERR_UNSUPPORTED);

    /* OPQ in front of IVF-PQ trains (on a sample) and takes ids as well */
    qf_vindex *opq = make_index("OPQ8,IVF16,PQ8", d);
    /* FAISS warns on stderr for every k-means with < 39 points per
     * centroid; OPQ runs hundreds of them on this small sample */
    fflush(stderr);
    int saved = dup(2), devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 2);
    qf_status st_opq = qf_vindex_train(opq, 512, x);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(devnull);
    CU_ASSERT_EQUAL(st_opq, QF_OK);
    CU_ASSERT_EQUAL(qf_vindex_add(opq, n, x, ids), QF_OK);
    CU_ASSERT_EQUAL(qf_vindex_set_param(opq, "nprobe", 16), QF_OK);
    CU_ASSERT_EQUAL(qf_vindex_search(opq, nq, q, k, s2, i2), QF_OK);
    double recall_opq = recall_at(i1, i2, nq, k);
    fprintf(stderr, "  OPQ8,IVF16,PQ8 recall@10 vs Flat: %.3f\n", recall_opq);
    CU_ASSERT(recall_opq > 0.5);
    qf_vindex_free(opq);

    free(s1); free(s2); free(i1); free(i2); free(ids); free(x); free(q);
    qf_vindex_free(flat);
    qf_vindex_free(pq);
}

static void test_train_too_small(void) {
    const int d = 16;
    float *x = rand_gauss(300, d);
    qf_vindex *vi = make_index("IVF64,Flat", d);
    CU_ASSERT_EQUAL(qf_vindex_train(vi, 30, x), QF_ERR_ARG);
    const char *m = qf_last_error();
    CU_ASSERT(strstr(m, "IVF64") && strstr(m, "at least 64") && strstr(m, "has 30"));
    CU_ASSERT(strstr(m, "--factory Flat") && strstr(m, "nlist"));
    CU_ASSERT(!qf_vindex_is_trained(vi));
    qf_vindex_free(vi);

    vi = make_index("IVF4,PQ4", d);                 /* PQ needs 256, IVF only 4 */
    CU_ASSERT_EQUAL(qf_vindex_train(vi, 100, x), QF_ERR_ARG);
    m = qf_last_error();
    CU_ASSERT(strstr(m, "PQ4") && strstr(m, "at least 256") && strstr(m, "has 100"));
    CU_ASSERT_EQUAL(qf_vindex_train(vi, 300, x), QF_OK);
    qf_vindex_free(vi);

    vi = make_index("IVF8,PQ4x4", d);               /* 4-bit PQ: 16 centroids */
    int64_t min_n = 0;
    qf_vindex_train_size(vi, &min_n, NULL);
    CU_ASSERT_EQUAL(min_n, 16);
    qf_vindex_free(vi);
    free(x);
}

static void test_bad_factory(void) {
    qf_vindex *vi = NULL;
    CU_ASSERT_EQUAL(qf_vindex_create("Bogus42", 16, &vi), QF_ERR_ARG);
    CU_ASSERT_PTR_NULL(vi);
    CU_ASSERT(strstr(qf_last_error(), "'Bogus42'") != NULL);
    CU_ASSERT_EQUAL(qf_vindex_create("IVF16,PQ7", 16, &vi), QF_ERR_ARG);   /* 16 % 7 != 0 */
    CU_ASSERT(strstr(qf_last_error(), "IVF16,PQ7") && strstr(qf_last_error(), "multiple of 7"));
    CU_ASSERT_EQUAL(qf_vindex_create("OPQ6_24,IVF4,PQ6", 16, &vi), QF_OK);    /* 24 % 6 == 0 */
    qf_vindex_free(vi);
    CU_ASSERT_EQUAL(qf_vindex_create("PCA12,IVF4,PQ8", 16, &vi), QF_ERR_ARG);  /* 12 % 8 != 0 */
    CU_ASSERT(strstr(qf_last_error(), "(12)") != NULL);
    CU_ASSERT_EQUAL(qf_vindex_create("IVF16,PQ8x4fs", 16, &vi), QF_ERR_ARG);
    CU_ASSERT(strstr(qf_last_error(), "fast-scan") != NULL);
    CU_ASSERT_EQUAL(qf_vindex_create("Flat", 0, &vi), QF_ERR_ARG);
    CU_ASSERT_PTR_NULL(vi);

    /* parameters that do not apply, and an index that cannot remove */
    vi = make_index("Flat", 16);
    CU_ASSERT_EQUAL(qf_vindex_set_param(vi, "nprobe", 8), QF_ERR_ARG);
    CU_ASSERT(strstr(qf_last_error(), "nprobe") != NULL);
    qf_vindex_free(vi);
    vi = make_index("HNSW8", 16);
    float *x = rand_gauss(50, 16);
    int64_t ids[50];
    for (int i = 0; i < 50; i++) ids[i] = 1000 + i;
    CU_ASSERT_EQUAL(qf_vindex_add(vi, 50, x, ids), QF_OK);
    CU_ASSERT_EQUAL(qf_vindex_set_param(vi, "efSearch", 64), QF_OK);
    float s[1];
    int64_t got[1];
    CU_ASSERT_EQUAL(qf_vindex_search(vi, 1, x + 7 * 16, 1, s, got), QF_OK);
    CU_ASSERT_EQUAL(got[0], 1007);
    CU_ASSERT_EQUAL(qf_vindex_remove(vi, 1, ids, NULL), QF_ERR_UNSUPPORTED);
    CU_ASSERT(strstr(qf_last_error(), "cannot remove") != NULL);
    CU_ASSERT_EQUAL(qf_vindex_ntotal(vi), 50);
    qf_vindex_free(vi);
    free(x);
    qf_vindex_free(NULL);
}

static void test_alloc_failures(void) {
    /* every allocation failure of search_images is reported, never a crash */
    const int d = 8, n_img = 50, n_query = 4;
    float *x = rand_small_int((int64_t)n_img * n_query, d), *qv = rand_small_int(1, d);
    int64_t *img_ids = malloc(n_img * sizeof *img_ids);
    for (int i = 0; i < n_img; i++) img_ids[i] = i;
    qf_vindex *vi = make_index("Flat", d);
    add_images(vi, x, img_ids, n_img, n_query);
    qf_vindex_hit h[5];
    int n_ok = 0, n_nomem = 0;
    for (long fail = 0; fail < 12; fail++) {
        int64_t nh = 0;
        qf_alloc_fail_after(fail);
        qf_status s = qf_vindex_search_images(vi, 1, qv, n_query, 5, h, &nh);
        qf_alloc_fail_after(-1);
        if (s == QF_OK) n_ok++;
        else if (s == QF_ERR_NOMEM) n_nomem++;
    }
    CU_ASSERT(n_nomem >= 3);
    CU_ASSERT_EQUAL(n_ok + n_nomem, 12);
    qf_vindex *other = NULL;
    qf_alloc_fail_after(0);
    CU_ASSERT_EQUAL(qf_vindex_create("Flat", d, &other), QF_ERR_NOMEM);
    qf_alloc_fail_after(-1);
    CU_ASSERT_PTR_NULL(other);
    qf_vindex_free(vi);
    free(img_ids); free(x); free(qv);
}

static CU_TestInfo tests[] = {
    { "flat_exact", test_flat_exact },
    { "images_exact_ties", test_images_exact_ties },
    { "images_float_32q", test_images_float_32q },
    { "images_image_query", test_images_image_query },
    { "add_remove", test_add_remove },
    { "write_read", test_write_read },
    { "ivfpq_recall", test_ivfpq_recall },
    { "train_too_small", test_train_too_small },
    { "bad_factory", test_bad_factory },
    { "alloc_failures", test_alloc_failures },
    CU_TEST_INFO_NULL,
};

int main(void) { return qf_test_main("vindex", tests); }
