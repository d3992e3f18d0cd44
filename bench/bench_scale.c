/* bench_scale.c - a qformer index of N synthetic images, built and searched
 * through the same code as `qformer index` and `qformer search` (the
 * indexer, the store, the vector index, the tuning and index/ann's
 * candidate + exact-rescoring search), with the ViT replaced by synthetic
 * features. Driven by bench/scale.sh, which prepares the model folder (the
 * tiny fixture's config with 32 query tokens x 256 dims: only the shapes
 * and the fingerprint are read) and the N image files (empty: only their
 * names are read).
 *
 * Features are clustered and embedding-like: an image belongs to one of
 * N/100 topics; its base vector is topic + 0.8 noise, each of its 32
 * query vectors base + 0.6 noise, L2-normalised. Text-like queries are
 * topic + 1.2 noise (half) or one image's base + 1.0 noise (half): their
 * cosine to the images of their topic is ~0.45, as BLIP-2's text-image ITC
 * scores are. Everything is deterministic in --seed.
 *
 * Prints one JSON object: build seconds, peak RSS, database and index
 * sizes, the factory and search settings, search latency p50/p95 (the
 * candidate search + exact rescoring a `qformer search` runs after it has
 * the text feature) and recall@10 against an exact scan. */
#include "embed/common.h"
#include "embed/ops.h"
#include "index/ann.h"
#include "index/indexer.h"
#include "index/store.h"
#include "index/vindex.h"

#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define Q 32
#define E 256

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t mix(uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* n values ~ N(0, sigma^2 / n) from the stream `key` (norm ~ sigma). */
static void gauss(uint64_t key, float sigma, float *out, int n) {
    uint64_t st = mix(key);
    float sd = sigma / sqrtf((float)n);
    for (int i = 0; i < n; i += 2) {
        st = mix(st);
        double u1 = ((st >> 11) + 1.0) / 9007199254740993.0;
        st = mix(st);
        double u2 = (st >> 11) / 9007199254740992.0;
        double r = sqrt(-2 * log(u1));
        out[i] = (float)(r * cos(2 * M_PI * u2)) * sd;
        if (i + 1 < n) out[i + 1] = (float)(r * sin(2 * M_PI * u2)) * sd;
    }
}

typedef struct { uint64_t seed; int64_t topics; } gen;

static void topic_vec(const gen *g, int64_t t, float *v) { gauss(g->seed ^ (0x70000000ull + (uint64_t)t), 1.0f, v, E); }

static void image_base(const gen *g, int64_t i, float *v) {
    float tmp[E];
    topic_vec(g, (int64_t)(mix(g->seed ^ (uint64_t)i) % (uint64_t)g->topics), v);
    gauss(g->seed ^ (0x100000000ull + (uint64_t)i), 0.8f, tmp, E);
    for (int e = 0; e < E; e++) v[e] += tmp[e];
}

static void image_feats(const gen *g, int64_t i, float *f) {
    float base[E];
    image_base(g, i, base);
    for (int q = 0; q < Q; q++) {
        gauss(g->seed ^ (0x200000000ull + (uint64_t)i * Q + (uint64_t)q), 0.6f, f + q * E, E);
        for (int e = 0; e < E; e++) f[q * E + e] += base[e];
    }
    qf_l2_normalize(f, Q, E);
}

static void text_query(const gen *g, int64_t n_images, int j, float *v) {
    float tmp[E];
    uint64_t r = mix(g->seed ^ (0x300000000ull + (uint64_t)j));
    if (j % 2 == 0) {
        topic_vec(g, (int64_t)(r % (uint64_t)g->topics), v);
        gauss(r, 1.2f, tmp, E);
    } else {
        image_base(g, (int64_t)(r % (uint64_t)n_images), v);
        gauss(r, 1.0f, tmp, E);
    }
    for (int e = 0; e < E; e++) v[e] += tmp[e];
    qf_l2_normalize(v, 1, E);
}

static int64_t file_size(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 ? (int64_t)sb.st_size : 0;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void evict(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return;
    fdatasync(fd);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* One timed pass of qf_ann_search over the queries, as `qformer search`
 * runs it after the text encoder: ms[n_q] sorted latencies, *recall the
 * share of the exact top 10 (truth[n_q * 10]) returned. */
static qf_status timed_pass(qf_store *st, const qf_vindex *vi, const qf_ann_layout *lay, const qf_ann_params *p,
                            int n_q, const float *qv, const int64_t *truth, double *ms, double *recall) {
    int hit = 0, total = 0;
    for (int j = 0; j < n_q; j++) {
        qf_ann_hit h[10];
        int nh = 0;
        double t0 = now();
        qf_status s = qf_ann_search(st, vi, lay, p, 1, qv + (size_t)j * E, 10, h, &nh);
        if (s) return s;
        ms[j] = (now() - t0) * 1e3;
        for (int t = 0; t < 10; t++) {
            int64_t id = truth[(size_t)j * 10 + t];
            if (id < 0) continue;
            total++;
            for (int i = 0; i < nh; i++)
                if (h[i].image_id == id) { hit++; break; }
        }
    }
    qsort(ms, (size_t)n_q, sizeof *ms, cmp_d);
    *recall = total ? (double)hit / total : 1.0;
    return QF_OK;
}

static void log_line(qf_log_level level, const char *msg, void *user) {
    (void)user;
    static double t0;
    if (!t0) t0 = now();
    if (level >= QF_LOG_INFO) fprintf(stderr, "bench_scale: [%.1f s] %s\n", now() - t0, msg);
}

static int die(const char *what) {
    fprintf(stderr, "bench_scale: %s: %s\n", what, qf_last_error());
    return 1;
}

int main(int argc, char **argv) {
    static const struct option opts[] = {
        { "model", required_argument, 0, 'm' }, { "db", required_argument, 0, 'd' },
        { "images", required_argument, 0, 'i' }, { "factory", required_argument, 0, 'f' },
        { "queries", required_argument, 0, 'q' }, { "seed", required_argument, 0, 's' },
        { "nprobe", required_argument, 0, 'n' }, { "candidates", required_argument, 0, 'c' },
        { "max-index-memory", required_argument, 0, 'M' }, { "search-only", no_argument, 0, 'S' },
        { "store-dtype", required_argument, 0, 'D' }, { "sweep", required_argument, 0, 'W' },
        { "cold", no_argument, 0, 'C' },
        { 0, 0, 0, 0 },
    };
    const char *model = NULL, *db = NULL, *dir = NULL, *factory = NULL, *store_dtype = NULL, *sweep = NULL;
    int n_q = 200, nprobe = 0, cand = 0, search_only = 0, cold = 0, c;
    uint64_t seed = 1;
    int64_t budget = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'd': db = optarg; break;
        case 'i': dir = optarg; break;
        case 'f': factory = optarg; break;
        case 'q': n_q = atoi(optarg); break;
        case 's': seed = strtoull(optarg, NULL, 10); break;
        case 'n': nprobe = atoi(optarg); break;
        case 'c': cand = atoi(optarg); break;
        case 'M': if (qf_ann_parse_bytes(optarg, &budget)) return die("--max-index-memory"); break;
        case 'S': search_only = 1; break;
        case 'D': store_dtype = optarg; break;
        case 'W': sweep = optarg; break;
        case 'C': cold = 1; break;
        default: return 2;
        }
    }
    if (!model || !db || !dir || n_q <= 0) {
        fprintf(stderr, "usage: bench_scale --model DIR --db FILE --images DIR [--factory F] [--queries N] "
                        "[--seed S] [--nprobe N] [--candidates N] [--max-index-memory SIZE] [--store-dtype f32|f16] [--search-only] [--sweep NP:C,...] [--cold]\n");
        return 2;
    }
    qf_log_set(log_line, NULL);
    float *f = qf_malloc((size_t)Q * E * sizeof *f);
    gen g = { seed, 8 };
    /* image files are named <index>.jpg: the index picks the features */
    double t_build = 0;
    qf_index_report rep = { 0 };
    int64_t n_images = 0;
    /* the number of files decides the topics; count them once */
    {
        char cmd[4200];
        snprintf(cmd, sizeof cmd, "%s/count", dir);
        FILE *cf = fopen(cmd, "r");
        if (!cf || fscanf(cf, "%lld", (long long *)&n_images) != 1) {
            fprintf(stderr, "bench_scale: %s/count: missing (bench/scale.sh writes it)\n", dir);
            return 1;
        }
        fclose(cf);
        g.topics = n_images / 100 > 8 ? n_images / 100 : 8;
    }
    if (!search_only) {
        const char *roots[1] = { dir };
        qf_index_opts o = { .model_dir = model, .db_path = db, .factory = factory, .roots = roots, .n_roots = 1,
                            .batch = 64, .pooled = -1, .checkpoint = 512, .max_index_memory = budget,
                            .store_dtype = store_dtype };
        double t0 = now();
        qf_log(QF_LOG_INFO, "indexing");
        qf_indexer *ix = NULL;
        if (qf_indexer_open(&o, 1, &ix)) return die("open");
        int64_t ids[64];
        const char *paths[64];
        int n;
        while ((n = qf_indexer_next(ix, 64, ids, paths)) > 0) {
            for (int i = 0; i < n; i++) {
                const char *base = strrchr(paths[i], '/');
                image_feats(&g, atoll(base ? base + 1 : paths[i]), f);
                qf_indexer_result r = { .id = ids[i], .ok = 1, .width = 224, .height = 224, .sha256 = "",
                                        .feats = f };
                if (qf_indexer_put(ix, &r)) return die("put");
            }
            qf_indexer_rank_done(ix, 0, n);
        }
        qf_log(QF_LOG_INFO, "features stored");
        if (qf_indexer_finish(ix, &rep)) return die("finish");
        qf_indexer_close(ix);
        t_build = now() - t0;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double rss_build = ru.ru_maxrss / 1024.0;
    double cpu_build = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;

    /* search: the code path of `qformer search` after the text encoder */
    qf_store *st = NULL;
    qf_vindex *vi = NULL;
    qf_ann_layout lay;
    qf_ann_params p;
    char fpath[4200];
    snprintf(fpath, sizeof fpath, "%s.faiss", db);
    if (qf_store_open(db, QF_STORE_READONLY, &st)) return die("store");
    if (qf_ann_layout_load(st, db, &lay, &p)) return die("layout");
    if (nprobe > 0) p.nprobe = nprobe;
    if (cand > 0) p.candidates = cand;
    double t_load0 = now();
    if (qf_vindex_read(fpath, &vi)) return die("read index");
    double t_load = now() - t_load0;
    if (qf_ann_apply(vi, &p)) return die("nprobe");
    float *qv = qf_malloc((size_t)n_q * E * sizeof *qv);
    int64_t *truth = qf_malloc((size_t)n_q * 10 * sizeof *truth);
    float *tsc = qf_malloc((size_t)n_q * 10 * sizeof *tsc);
    double *lat = qf_malloc((size_t)n_q * sizeof *lat);
    for (int j = 0; j < n_q; j++) text_query(&g, n_images, j, qv + (size_t)j * E);
    double t_exact0 = now();
    if (qf_ann_exact(st, Q, E, n_q, qv, 10, truth, tsc)) return die("exact");
    double t_exact = now() - t_exact0;
    /* --cold: the database's pages leave the OS page cache before each
     * timed pass (as after a reboot): every candidate read goes to disk */
    if (cold) evict(db);
    double recall;
    if (timed_pass(st, vi, &lay, &p, n_q, qv, truth, lat, &recall)) return die("search");
    double mean_top1 = 0;
    for (int j = 0; j < n_q; j++) mean_top1 += tsc[(size_t)j * 10];
    /* --sweep NPROBE:CANDIDATES,...: the same queries at other settings, one
     * exact scan for all (stderr, one JSON line each) */
    for (const char *sw = sweep; sw && *sw;) {
        qf_ann_params sp = p;
        char *end;
        sp.nprobe = (int)strtol(sw, &end, 10);
        if (*end != ':') { fprintf(stderr, "bench_scale: --sweep wants NPROBE:CANDIDATES,...\n"); return 2; }
        sp.candidates = (int)strtol(end + 1, &end, 10);
        sw = *end == ',' ? end + 1 : end;
        if (qf_ann_apply(vi, &sp)) return die("nprobe");
        if (cold) evict(db);
        double *sl = qf_malloc((size_t)n_q * sizeof *sl), sr;
        if (timed_pass(st, vi, &lay, &sp, n_q, qv, truth, sl, &sr)) return die("search");
        fprintf(stderr, "{\"nprobe\": %d, \"candidates\": %d, \"search_ms_p50\": %.2f, \"search_ms_p95\": %.2f, "
                        "\"recall_at_10\": %.4f}\n", sp.nprobe, sp.candidates, sl[n_q / 2], sl[(int)(n_q * 0.95)], sr);
        qf_free(sl);
    }
    if (sweep && qf_ann_apply(vi, &p)) return die("nprobe");
    /* exact rescoring's input: SQLite blob reads of random images, 64 per
     * statement batch as qf_ann_search does */
    double blob_us = 0, blob_sorted_us = 0;
    {
        enum { NB = 2048 };
        int64_t *rid = qf_malloc(NB * sizeof *rid);
        int *found = qf_malloc(64 * sizeof *found);
        float *fb = qf_malloc((size_t)64 * Q * E * sizeof *fb);
        uint64_t r = seed ^ 0xb10b;
        for (int i = 0; i < NB; i++) rid[i] = 1 + (int64_t)(mix(r + (uint64_t)i) % (uint64_t)n_images);
        double t0 = now();
        for (int i = 0; i < NB; i += 64)
            if (qf_store_feats_get_many(st, 64, rid + i, Q, E, fb, found)) return die("blob reads");
        blob_us = (now() - t0) * 1e6 / NB;
        /* other random images, each batch of 64 read in id order as
         * qf_ann_search does */
        for (int i = 0; i < NB; i++) rid[i] = 1 + (int64_t)(mix(r + NB + (uint64_t)i) % (uint64_t)n_images);
        for (int i = 0; i < NB; i += 64) qsort(rid + i, 64, sizeof *rid, cmp_i64);
        t0 = now();
        for (int i = 0; i < NB; i += 64)
            if (qf_store_feats_get_many(st, 64, rid + i, Q, E, fb, found)) return die("blob reads");
        blob_sorted_us = (now() - t0) * 1e6 / NB;
        qf_free(rid); qf_free(found); qf_free(fb);
    }
    getrusage(RUSAGE_SELF, &ru);
    char wal[4300];
    snprintf(wal, sizeof wal, "%s-wal", db);
    char *reason = NULL, *trec = NULL;
    qf_store_meta_get(st, "factory_reason", &reason);
    qf_store_meta_get(st, "tune_recall", &trec);
    printf("{\"images\": %lld, \"vectors\": %lld, \"factory\": \"%s\", \"factory_reason\": \"%s\", "
           "\"store_dtype\": \"%s\", \"build_s\": %.1f, \"build_cpu_s\": %.1f, \"peak_rss_build_mb\": %.0f, \"peak_rss_mb\": %.0f, "
           "\"db_bytes\": %lld, \"index_bytes\": %lld, \"index_load_s\": %.2f, "
           "\"nprobe\": %d, \"candidates\": %d, \"tuned_recall_probes\": %.4f, "
           "\"cold\": %s, \"queries\": %d, \"search_ms_p50\": %.2f, \"search_ms_p95\": %.2f, \"recall_at_10\": %.4f, "
           "\"mean_top1_itc\": %.3f, \"exact_scan_s\": %.1f, \"blob_read_us_per_image\": %.1f, \"blob_read_sorted_us_per_image\": %.1f}\n",
           (long long)n_images, (long long)qf_vindex_ntotal(vi), lay.factory, reason ? reason : "",
           qf_store_feats_f16(st) ? "f16" : "f32", t_build, cpu_build, rss_build, ru.ru_maxrss / 1024.0, (long long)(file_size(db) + file_size(wal)),
           (long long)file_size(fpath), t_load, p.nprobe, p.candidates, trec ? atof(trec) : 1.0,
           cold ? "true" : "false", n_q, lat[n_q / 2], lat[(int)(n_q * 0.95)], recall,
           mean_top1 / n_q, t_exact, blob_us, blob_sorted_us);
    qf_free(reason);
    qf_free(trec);
    (void)rep;
    qf_free(qv); qf_free(truth); qf_free(tsc); qf_free(lat); qf_free(f);
    qf_vindex_free(vi);
    qf_store_close(st);
    return 0;
}
