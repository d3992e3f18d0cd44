/* bench_vindex.c - vector index at corpus scale, synthetic features:
 * N images x 32 unit vectors of 256 dims (3.2M vectors for 100k images),
 * clustered like real ITC features (images around topics, query vectors
 * around their image). For each factory: build time (train + add), memory
 * (RSS growth and file size), search latency per query (exact multi-vector
 * image search, k = 10) and recall@10 of images against Flat; then the same
 * for --pooled (one mean vector per image) against exact Flat.
 *
 * usage: bench_vindex [N_IMAGES=100000] [FACTORY...]   (default: Flat IVF1024,PQ32 OPQ32,IVF1024,PQ32;
 *        HNSW32 works too but takes hours to build 3.2M vectors on 2 cores)
 * Prints one line per configuration. */
#include "index/vindex.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define Q 32
#define D 256
#define N_QUERIES 200
#define K 10

static long rss_mb(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, rss = 0;
    if (f) { if (fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0; fclose(f); }
    return rss * sysconf(_SC_PAGESIZE) / (1 << 20);
}

static uint64_t rng = 88172645463325252ull;
static float gauss(void) {
    /* xorshift + Box-Muller */
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    double u1 = ((rng >> 11) + 1.0) / 9007199254740993.0;
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    double u2 = (rng >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2 * log(u1)) * cos(2 * M_PI * u2));
}

static void normalize(float *x, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)x[i] * x[i];
    float inv = (float)(1 / sqrt(s));
    for (int i = 0; i < n; i++) x[i] *= inv;
}

static void make_vec(float *out, const float *center, float noise) {
    for (int d = 0; d < D; d++) out[d] = center[d] + noise * gauss();
    normalize(out, D);
}

static int overlap(const qf_vindex_hit *a, int na, const qf_vindex_hit *b, int nb) {
    int n = 0;
    for (int i = 0; i < na; i++)
        for (int j = 0; j < nb; j++) if (a[i].image_id == b[j].image_id) { n++; break; }
    return n;
}

static int run(const char *factory, int pooled, int64_t n_img, const float *vecs, const float *queries,
               qf_vindex_hit (*truth)[K], int fill_truth) {
    int per = pooled ? 1 : Q;
    int64_t nv = n_img * per;
    float *x = (float *)vecs;
    float *pool = NULL;
    if (pooled) {
        pool = malloc((size_t)n_img * D * sizeof *pool);
        for (int64_t i = 0; i < n_img; i++) {
            for (int d = 0; d < D; d++) {
                double acc = 0;
                for (int q = 0; q < Q; q++) acc += vecs[((size_t)i * Q + q) * D + d];
                pool[i * D + d] = (float)(acc / Q);
            }
            normalize(pool + i * D, D);
        }
        x = pool;
    }
    int64_t *ids = malloc((size_t)nv * sizeof *ids);
    for (int64_t i = 0; i < nv; i++) ids[i] = i;
    long rss0 = rss_mb();
    double t0 = qf_now();
    qf_vindex *vi = NULL;
    if (qf_vindex_create(factory, D, &vi)) { fprintf(stderr, "%s: %s\n", factory, qf_last_error()); return 1; }
    double t_train = 0;
    if (!qf_vindex_is_trained(vi)) {
        int64_t min_n, good_n;
        qf_vindex_train_size(vi, &min_n, &good_n);
        int64_t nt = good_n > 0 && good_n < nv ? good_n : nv;
        if (nt > 262144) nt = 262144;
        /* a strided sample of the corpus */
        float *sample = malloc((size_t)nt * D * sizeof *sample);
        for (int64_t i = 0; i < nt; i++) memcpy(sample + i * D, x + (nv / nt * i) * D, D * sizeof(float));
        double ts = qf_now();
        if (qf_vindex_train(vi, nt, sample)) { fprintf(stderr, "%s: %s\n", factory, qf_last_error()); return 1; }
        t_train = qf_now() - ts;
        free(sample);
    }
    for (int64_t i = 0; i < nv; i += 65536) {
        int64_t n = nv - i < 65536 ? nv - i : 65536;
        if (qf_vindex_add(vi, n, x + i * D, ids + i)) { fprintf(stderr, "%s: %s\n", factory, qf_last_error()); return 1; }
    }
    double t_build = qf_now() - t0;
    long rss = rss_mb() - rss0;
    char path[] = "/tmp/bench_vindex.XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    qf_vindex_write(vi, path);
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    long file_mb = ftell(f) >> 20;
    fclose(f);
    unlink(path);
    if (strstr(factory, "IVF")) qf_vindex_set_param(vi, "nprobe", 32);
    if (strstr(factory, "HNSW")) qf_vindex_set_param(vi, "efSearch", 128);
    double lat = 0, recall = 0;
    for (int qi = 0; qi < N_QUERIES; qi++) {
        qf_vindex_hit hits[K];
        int64_t n_hits = 0;
        double ts = qf_now();
        if (qf_vindex_search_images(vi, 1, queries + (size_t)qi * D, per, K, hits, &n_hits)) {
            fprintf(stderr, "%s: %s\n", factory, qf_last_error());
            return 1;
        }
        lat += qf_now() - ts;
        if (fill_truth) memcpy(truth[qi], hits, sizeof hits);
        recall += overlap(hits, (int)n_hits, truth[qi], K) / (double)K;
    }
    printf("%-22s %-7s images %7lld vectors %8lld  build %7.1f s (train %6.1f s)  rss +%6ld MB  file %6ld MB  "
           "search %8.2f ms/query  recall@10 %.3f\n",
           factory, pooled ? "pooled" : "exact", (long long)n_img, (long long)nv, t_build, t_train, rss, file_mb,
           1000 * lat / N_QUERIES, recall / N_QUERIES);
    fflush(stdout);
    qf_vindex_free(vi);
    free(ids);
    free(pool);
    return 0;
}

int main(int argc, char **argv) {
    int64_t n_img = argc > 1 ? atoll(argv[1]) : 100000;
    const char *defaults[] = { "Flat", "IVF1024,PQ32", "OPQ32,IVF1024,PQ32" };
    const char **factories = argc > 2 ? (const char **)argv + 2 : defaults;
    int n_fact = argc > 2 ? argc - 2 : 3;
    int n_topics = 1000;
    float *topics = malloc((size_t)n_topics * D * sizeof *topics);
    for (int t = 0; t < n_topics; t++) { for (int d = 0; d < D; d++) topics[t * D + d] = gauss(); normalize(topics + t * D, D); }
    float *vecs = malloc((size_t)n_img * Q * D * sizeof *vecs), center[D];
    if (!vecs) { fprintf(stderr, "out of memory for %lld images\n", (long long)n_img); return 1; }
    for (int64_t i = 0; i < n_img; i++) {
        make_vec(center, topics + (rng % n_topics) * D, 0.08f);
        for (int q = 0; q < Q; q++) make_vec(vecs + ((size_t)i * Q + q) * D, center, 0.06f);
    }
    float *queries = malloc((size_t)N_QUERIES * D * sizeof *queries);
    for (int qi = 0; qi < N_QUERIES; qi++) {
        /* a text query: near one image's vectors */
        int64_t img = (int64_t)(rng % (uint64_t)n_img);
        make_vec(queries + (size_t)qi * D, vecs + (size_t)img * Q * D, 0.05f);
    }
    qf_vindex_hit (*truth)[K] = calloc(N_QUERIES, sizeof *truth);
    printf("synthetic corpus: %lld images x %d vectors x %d dims (%.1f GB float32), %d queries, k=%d\n",
           (long long)n_img, Q, D, n_img * Q * D * 4.0 / 1e9, N_QUERIES, K);
    /* exact Flat first: the ground truth for everything else */
    if (run("Flat", 0, n_img, vecs, queries, truth, 1)) return 1;
    for (int f = 0; f < n_fact; f++) {
        if (!strcmp(factories[f], "Flat")) continue;
        if (run(factories[f], 0, n_img, vecs, queries, truth, 0)) return 1;
    }
    if (run("Flat", 1, n_img, vecs, queries, truth, 0)) return 1;
    if (run("IVF1024,PQ32", 1, n_img, vecs, queries, truth, 0)) return 1;
    free(vecs); free(queries); free(topics); free(truth);
    return 0;
}
