/* cmd_bench.c - `qformer bench`: speed of the full-size models on random
 * weights built in memory (no checkpoint on disk): BLIP-2 retrieval with
 * EVA ViT-g/14 at 224 + BERT-base Q-Former (~1.17 B parameters, 4.7 GB in
 * F32), OPT-2.7B (10.6 GB in F32) and the Flan-T5-XL language model of
 * blip2-flan-t5-xl (2.85 B parameters, 11.4 GB in F32). Weights go through
 * the same loader checks as a checkpoint (qf_st_from_memory + qf_blip2_init /
 * qf_opt_load / qf_t5_load).
 * Each figure is the median of --repeat timed runs after one warm-up. */
#include "cli.h"

#include "embed/blip2.h"
#include "embed/gemm_dnnl.h"
#include "embed/kernels_cpu.h"
#include "embed/ops.h"
#include "embed/safetensors.h"
#include "embed/t5.h"
#include "embed/opt.h"

#include <cblas.h>
#include <getopt.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static const char usage_text[] =
    "usage: qformer bench [--threads N] [--dtype auto|f32|bf16|int8] [--only embed|text|itm|opt|t5]\n"
    "                     [--repeat R] [--decode-tokens N] [--format text|json]\n"
    "\n"
    "Times the full-size BLIP-2 models on random weights built in memory:\n"
    "  image_s        seconds per image embedding (ViT-g/14 + Q-Former + projection)\n"
    "  text_ms        milliseconds per text embedding (32 tokens)\n"
    "  itm_pair_ms    milliseconds per ITM pair (32 tokens) given cached vision features\n"
    "  prefill_tok_s  OPT-2.7B prefill, tokens/s (32 query embeddings + 8 prompt tokens)\n"
    "  decode_tok_s   OPT-2.7B greedy decode, tokens/s (one sequence)\n"
    "  t5_encode_tok_s  Flan-T5-XL encoder, tokens/s (32 query embeddings + 8 prompt tokens)\n"
    "  t5_decode_tok_s  Flan-T5-XL greedy decode, tokens/s (one sequence, cross-attention\n"
    "                 to the 40 encoded rows); only with --only t5\n"
    "  image_cpu_s    CPU seconds (all threads) per image: steadier than image_s on a shared machine\n"
    "  peak_rss_mb    peak resident memory of the process\n"
    "  gflops         achieved GFLOP/s of the image embedding\n"
    "--dtype bf16 holds the ViT's and OPT's matrices in BF16 (GEMM inputs rounded to\n"
    "BF16, float32 accumulation); int8 holds OPT's in int8 (W8A8, per-row scales; the\n"
    "ViT stays f32). auto (default): bf16 on CPUs with AVX512_BF16 or AMX (the ViT's\n"
    "products then run in oneDNN), else f32.\n"
    "int8 is built from BF16 weights, so its peak_rss_mb includes those ~5.4 GB.\n"
    "Parts not run are null. Each figure is the median of R timed runs (default 3)\n"
    "after one warm-up. --threads sets the BLAS and OpenMP threads (default: all cores).\n"
    "Memory: ~5 GB for embed/text/itm, ~11 GB more for opt in f32 (~5.5 GB in bf16);\n"
    "the BLIP-2 weights are freed before OPT's are built. --only t5: ~11.4 GB in f32,\n"
    "~5.9 GB in bf16 (not part of the default run).\n"
    "\n"
    "examples:\n"
    "  qformer bench --threads 2 --only embed\n"
    "  qformer bench --threads 2 --format json\n";

/* ---- sizes of the real checkpoints ----------------------------------------- */

#include "bench/fullsize.h"   /* the full-size shapes: qf_blip2_fullsize */

enum {
    DT = 2048, KT = 64, HT = 32, FT = 5120, LT = 24, VT = 32128, BT = 32, MT = 128,   /* Flan-T5-XL */
    TEXT_LEN = 32, PROMPT_LEN = 8,
};

/* The Salesforce/blip2-flan-t5-xl text_config (exact GELU, gated, untied)
 * over the full-size ViT and Q-Former. */
static void fill_config_t5(qf_blip2_config *c) {
    *c = qf_blip2_fullsize;
    c->text.present = 0;
    strcpy(c->text_model_type, "t5");
    c->t5 = (qf_t5_config){ .present = 1, .vocab_size = VT, .d_model = DT, .d_kv = KT, .d_ff = FT,
                            .num_layers = LT, .num_decoder_layers = LT, .num_heads = HT,
                            .relative_attention_num_buckets = BT, .relative_attention_max_distance = MT,
                            .layer_norm_epsilon = 1e-6f, .act = QF_T5_ACT_GELU, .is_gated_act = 1,
                            .tie_word_embeddings = 0, .scale_decoder_outputs = 0, .bos_token_id = 1, .eos_token_id = 1,
                            .pad_token_id = 0, .decoder_start_token_id = 0 };
}

/* ---- random tensors in memory ------------------------------------------------ */

typedef enum { INIT_NORMAL, INIT_ONE, INIT_ZERO } init_kind;

typedef struct {
    qf_st_item *items;
    int64_t    *shapes;             /* [cap][4]                   */
    char      **names;
    void      **data;
    size_t      n, cap;
    uint64_t    seed, bytes;
    qf_dtype    dtype;              /* of the matrices (F32/BF16) */
} tensor_set;

static uint64_t splitmix(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* Uniform in [-0.0346, 0.0346]: standard deviation 0.02 like the HF init,
 * no denormals, cheap enough for 3.8 G values. */
static void fill(void *dst, qf_dtype dt, size_t n, init_kind k, uint64_t seed) {
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float v = k == INIT_ONE ? 1.0f : 0.0f;
        if (k == INIT_NORMAL) {
            uint64_t r = splitmix(seed ^ (i * 0xD1B54A32D192ED03ull));
            v = ((float)(r >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f) * 0.034641f;
        }
        if (dt == QF_DT_F32) {
            ((float *)dst)[i] = v;
        } else {
            ((uint16_t *)dst)[i] = qf_cpu_bf16_of(v);
        }
    }
}

static qf_status add(tensor_set *ts, init_kind k, int n_dim, const int64_t *shape, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static qf_status add(tensor_set *ts, init_kind k, int n_dim, const int64_t *shape, const char *fmt, ...) {
    if (ts->n == ts->cap) {
        size_t cap = ts->cap ? 2 * ts->cap : 256;
        qf_st_item *it = qf_realloc(ts->items, cap * sizeof *it);
        if (it) ts->items = it;
        int64_t *sh = qf_realloc(ts->shapes, cap * 4 * sizeof *sh);
        if (sh) ts->shapes = sh;
        char **nm = qf_realloc(ts->names, cap * sizeof *nm);
        if (nm) ts->names = nm;
        void **d = qf_realloc(ts->data, cap * sizeof *d);
        if (d) ts->data = d;
        if (!it || !sh || !nm || !d) return qf_errorf(QF_ERR_NOMEM, "bench: out of memory for the tensor table");
        ts->cap = cap;
    }
    char name[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    size_t n = 1;
    for (int d = 0; d < n_dim; d++) { ts->shapes[ts->n * 4 + d] = shape[d]; n *= (size_t)shape[d]; }
    /* matrices in the requested dtype, vectors (biases, norms) in F32 */
    qf_dtype dt = n_dim >= 2 && ts->dtype == QF_DT_BF16 ? QF_DT_BF16 : QF_DT_F32;
    size_t bytes = n * qf_dtype_size(dt);
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0 || !p)
        return qf_errorf(QF_ERR_NOMEM, "bench: cannot allocate %zu MB for '%s' (total so far %llu MB)",
                         bytes >> 20, name, (unsigned long long)(ts->bytes >> 20));
    ts->names[ts->n] = qf_strdup(name);
    if (!ts->names[ts->n]) { free(p); return qf_errorf(QF_ERR_NOMEM, "bench: out of memory"); }
    fill(p, dt, n, k, splitmix(ts->seed + ts->n));
    ts->data[ts->n] = p;
    ts->items[ts->n] = (qf_st_item){ .name = ts->names[ts->n], .dtype = dt, .n_dim = n_dim,
                                     .shape = NULL, .data = p };
    ts->bytes += bytes;
    ts->n++;
    return QF_OK;
}

static void tensor_set_free(tensor_set *ts) {
    for (size_t i = 0; i < ts->n; i++) { free(ts->data[i]); qf_free(ts->names[i]); }
    qf_free(ts->items); qf_free(ts->shapes); qf_free(ts->names); qf_free(ts->data);
    memset(ts, 0, sizeof *ts);
}

static qf_status tensor_set_open(tensor_set *ts, const char *label, qf_st **out) {
    for (size_t i = 0; i < ts->n; i++) ts->items[i].shape = &ts->shapes[i * 4];
    return qf_st_from_memory(label, ts->items, ts->n, out);
}

#define S1(a)          (const int64_t[]){ a }
#define S2(a, b)       (const int64_t[]){ a, b }
#define TRY(x)         do { if ((s = (x))) return s; } while (0)

static qf_status build_blip2(tensor_set *ts) {
    qf_status s;
    const char *v = "vision_model.";
    TRY(add(ts, INIT_NORMAL, 4, (const int64_t[]){ DV, 3, PATCH, PATCH }, "%sembeddings.patch_embedding.weight", v));
    TRY(add(ts, INIT_ZERO, 1, S1(DV), "%sembeddings.patch_embedding.bias", v));
    TRY(add(ts, INIT_NORMAL, 3, (const int64_t[]){ 1, 1, DV }, "%sembeddings.class_embedding", v));
    TRY(add(ts, INIT_NORMAL, 3, (const int64_t[]){ 1, NV, DV }, "%sembeddings.position_embedding", v));
    TRY(add(ts, INIT_ONE, 1, S1(DV), "%spost_layernorm.weight", v));
    TRY(add(ts, INIT_ZERO, 1, S1(DV), "%spost_layernorm.bias", v));
    for (int l = 0; l < LV; l++) {
        const char *p = "vision_model.encoder.layers";
        TRY(add(ts, INIT_ONE, 1, S1(DV), "%s.%d.layer_norm1.weight", p, l));
        TRY(add(ts, INIT_ZERO, 1, S1(DV), "%s.%d.layer_norm1.bias", p, l));
        TRY(add(ts, INIT_NORMAL, 2, S2(3 * DV, DV), "%s.%d.self_attn.qkv.weight", p, l));
        TRY(add(ts, INIT_NORMAL, 1, S1(3 * DV), "%s.%d.self_attn.qkv.bias", p, l));
        TRY(add(ts, INIT_NORMAL, 2, S2(DV, DV), "%s.%d.self_attn.projection.weight", p, l));
        TRY(add(ts, INIT_ZERO, 1, S1(DV), "%s.%d.self_attn.projection.bias", p, l));
        TRY(add(ts, INIT_ONE, 1, S1(DV), "%s.%d.layer_norm2.weight", p, l));
        TRY(add(ts, INIT_ZERO, 1, S1(DV), "%s.%d.layer_norm2.bias", p, l));
        TRY(add(ts, INIT_NORMAL, 2, S2(IV, DV), "%s.%d.mlp.fc1.weight", p, l));
        TRY(add(ts, INIT_NORMAL, 1, S1(IV), "%s.%d.mlp.fc1.bias", p, l));
        TRY(add(ts, INIT_NORMAL, 2, S2(DV, IV), "%s.%d.mlp.fc2.weight", p, l));
        TRY(add(ts, INIT_ZERO, 1, S1(DV), "%s.%d.mlp.fc2.bias", p, l));
    }
    TRY(add(ts, INIT_NORMAL, 3, (const int64_t[]){ 1, NQUERY, DQ }, "query_tokens"));
    TRY(add(ts, INIT_ONE, 1, S1(DQ), "qformer.layernorm.weight"));
    TRY(add(ts, INIT_ZERO, 1, S1(DQ), "qformer.layernorm.bias"));
    for (int l = 0; l < LQ; l++) {
        const char *p = "qformer.encoder.layer";
        for (int x = 0; x < (l % XFREQ == 0 ? 2 : 1); x++) {
            const char *a = x ? "crossattention" : "attention";
            int64_t din = x ? DV : DQ;
            TRY(add(ts, INIT_NORMAL, 2, S2(DQ, DQ), "%s.%d.%s.attention.query.weight", p, l, a));
            TRY(add(ts, INIT_ZERO, 1, S1(DQ), "%s.%d.%s.attention.query.bias", p, l, a));
            TRY(add(ts, INIT_NORMAL, 2, S2(DQ, din), "%s.%d.%s.attention.key.weight", p, l, a));
            TRY(add(ts, INIT_ZERO, 1, S1(DQ), "%s.%d.%s.attention.key.bias", p, l, a));
            TRY(add(ts, INIT_NORMAL, 2, S2(DQ, din), "%s.%d.%s.attention.value.weight", p, l, a));
            TRY(add(ts, INIT_ZERO, 1, S1(DQ), "%s.%d.%s.attention.value.bias", p, l, a));
            TRY(add(ts, INIT_NORMAL, 2, S2(DQ, DQ), "%s.%d.%s.output.dense.weight", p, l, a));
            TRY(add(ts, INIT_ZERO, 1, S1(DQ), "%s.%d.%s.output.dense.bias", p, l, a));
            TRY(add(ts, INIT_ONE, 1, S1(DQ), "%s.%d.%s.output.LayerNorm.weight", p, l, a));
            TRY(add(ts, INIT_ZERO, 1, S1(DQ), "%s.%d.%s.output.LayerNorm.bias", p, l, a));
        }
        for (int q = 0; q < 2; q++) {
            const char *sfx = q ? "_query" : "";
            TRY(add(ts, INIT_NORMAL, 2, S2(IQ, DQ), "%s.%d.intermediate%s.dense.weight", p, l, sfx));
            TRY(add(ts, INIT_ZERO, 1, S1(IQ), "%s.%d.intermediate%s.dense.bias", p, l, sfx));
            TRY(add(ts, INIT_NORMAL, 2, S2(DQ, IQ), "%s.%d.output%s.dense.weight", p, l, sfx));
            TRY(add(ts, INIT_ZERO, 1, S1(DQ), "%s.%d.output%s.dense.bias", p, l, sfx));
            TRY(add(ts, INIT_ONE, 1, S1(DQ), "%s.%d.output%s.LayerNorm.weight", p, l, sfx));
            TRY(add(ts, INIT_ZERO, 1, S1(DQ), "%s.%d.output%s.LayerNorm.bias", p, l, sfx));
        }
    }
    TRY(add(ts, INIT_NORMAL, 2, S2(VQ, DQ), "embeddings.word_embeddings.weight"));
    TRY(add(ts, INIT_NORMAL, 2, S2(PMAX, DQ), "embeddings.position_embeddings.weight"));
    TRY(add(ts, INIT_NORMAL, 2, S2(EMB, DQ), "vision_projection.weight"));
    TRY(add(ts, INIT_ZERO, 1, S1(EMB), "vision_projection.bias"));
    TRY(add(ts, INIT_NORMAL, 2, S2(EMB, DQ), "text_projection.weight"));
    TRY(add(ts, INIT_ZERO, 1, S1(EMB), "text_projection.bias"));
    TRY(add(ts, INIT_NORMAL, 2, S2(2, DQ), "itm_head.weight"));
    TRY(add(ts, INIT_ZERO, 1, S1(2), "itm_head.bias"));
    return QF_OK;
}

static qf_status build_opt(tensor_set *ts) {
    qf_status s;
    const char *d = "language_model.model.decoder";
    TRY(add(ts, INIT_NORMAL, 2, S2(DO, DQ), "language_projection.weight"));
    TRY(add(ts, INIT_ZERO, 1, S1(DO), "language_projection.bias"));
    TRY(add(ts, INIT_NORMAL, 2, S2(VO, DO), "%s.embed_tokens.weight", d));
    TRY(add(ts, INIT_NORMAL, 2, S2(PO + 2, DO), "%s.embed_positions.weight", d));
    TRY(add(ts, INIT_ONE, 1, S1(DO), "%s.final_layer_norm.weight", d));
    TRY(add(ts, INIT_ZERO, 1, S1(DO), "%s.final_layer_norm.bias", d));
    for (int l = 0; l < LO; l++) {
        TRY(add(ts, INIT_ONE, 1, S1(DO), "%s.layers.%d.self_attn_layer_norm.weight", d, l));
        TRY(add(ts, INIT_ZERO, 1, S1(DO), "%s.layers.%d.self_attn_layer_norm.bias", d, l));
        static const char *proj[] = { "q_proj", "k_proj", "v_proj", "out_proj" };
        for (int i = 0; i < 4; i++) {
            TRY(add(ts, INIT_NORMAL, 2, S2(DO, DO), "%s.layers.%d.self_attn.%s.weight", d, l, proj[i]));
            TRY(add(ts, INIT_ZERO, 1, S1(DO), "%s.layers.%d.self_attn.%s.bias", d, l, proj[i]));
        }
        TRY(add(ts, INIT_ONE, 1, S1(DO), "%s.layers.%d.final_layer_norm.weight", d, l));
        TRY(add(ts, INIT_ZERO, 1, S1(DO), "%s.layers.%d.final_layer_norm.bias", d, l));
        TRY(add(ts, INIT_NORMAL, 2, S2(FO, DO), "%s.layers.%d.fc1.weight", d, l));
        TRY(add(ts, INIT_ZERO, 1, S1(FO), "%s.layers.%d.fc1.bias", d, l));
        TRY(add(ts, INIT_NORMAL, 2, S2(DO, FO), "%s.layers.%d.fc2.weight", d, l));
        TRY(add(ts, INIT_ZERO, 1, S1(DO), "%s.layers.%d.fc2.bias", d, l));
    }
    return QF_OK;
}

static qf_status build_t5(tensor_set *ts) {
    qf_status s;
    const int64_t inner = (int64_t)HT * KT;
    TRY(add(ts, INIT_NORMAL, 2, S2(DT, DQ), "language_projection.weight"));
    TRY(add(ts, INIT_ZERO, 1, S1(DT), "language_projection.bias"));
    TRY(add(ts, INIT_NORMAL, 2, S2(VT, DT), "language_model.shared.weight"));
    TRY(add(ts, INIT_NORMAL, 2, S2(VT, DT), "language_model.lm_head.weight"));
    static const char *const stack[2] = { "encoder", "decoder" };
    for (int k = 0; k < 2; k++) {
        const char *p = stack[k];
        TRY(add(ts, INIT_ONE, 1, S1(DT), "language_model.%s.final_layer_norm.weight", p));
        TRY(add(ts, INIT_NORMAL, 2, S2(BT, HT),
                "language_model.%s.block.0.layer.0.SelfAttention.relative_attention_bias.weight", p));
        for (int l = 0; l < LT; l++) {
            int ff = k ? 2 : 1;
            static const char *const att[2] = { "SelfAttention", "EncDecAttention" };
            for (int a = 0; a <= k; a++) {
                TRY(add(ts, INIT_ONE, 1, S1(DT), "language_model.%s.block.%d.layer.%d.layer_norm.weight", p, l, a));
                static const char *const qkv[3] = { "q", "k", "v" };
                for (int i = 0; i < 3; i++)
                    TRY(add(ts, INIT_NORMAL, 2, S2(inner, DT), "language_model.%s.block.%d.layer.%d.%s.%s.weight",
                            p, l, a, att[a], qkv[i]));
                TRY(add(ts, INIT_NORMAL, 2, S2(DT, inner), "language_model.%s.block.%d.layer.%d.%s.o.weight",
                        p, l, a, att[a]));
            }
            TRY(add(ts, INIT_ONE, 1, S1(DT), "language_model.%s.block.%d.layer.%d.layer_norm.weight", p, l, ff));
            TRY(add(ts, INIT_NORMAL, 2, S2(FT, DT), "language_model.%s.block.%d.layer.%d.DenseReluDense.wi_0.weight",
                    p, l, ff));
            TRY(add(ts, INIT_NORMAL, 2, S2(FT, DT), "language_model.%s.block.%d.layer.%d.DenseReluDense.wi_1.weight",
                    p, l, ff));
            TRY(add(ts, INIT_NORMAL, 2, S2(DT, FT), "language_model.%s.block.%d.layer.%d.DenseReluDense.wo.weight",
                    p, l, ff));
        }
    }
    return QF_OK;
}

/* ---- timing ------------------------------------------------------------------ */

static double cpu_now(void) {              /* user + system seconds of the process */
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + 1e-6 * (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static int dbl_cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, dbl_cmp);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* FLOPs of one image embedding (multiply-add = 2), from the real shapes. */
static double image_flops(void) {
    double N = NV, D = DV, Iv = IV, Q = NQUERY, d = DQ;
    double vit = 2.0 * (NV - 1) * 3 * PATCH * PATCH * D
               + LV * (2 * N * D * 3 * D + 4 * N * N * D + 2 * N * D * D + 4 * N * D * Iv);
    double self = 8 * Q * d * d + 4 * Q * Q * d, ffn = 4 * Q * d * IQ;
    double cross = 4 * Q * d * d + 4 * N * D * d + 4 * Q * N * d;
    double qf = LQ * (self + ffn) + (LQ + XFREQ - 1) / XFREQ * cross;
    return vit + qf + 2 * Q * d * EMB;
}

typedef struct {
    double image_s, image_cpu_s, text_ms, itm_ms, prefill, decode, t5_encode, t5_decode;
    int    have_image, have_text, have_itm, have_opt, have_t5;
} results;

static void progress(int json, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void progress(int json, const char *fmt, ...) {
    (void)json;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fflush(stderr);
}

static qf_status bench_blip2(const char *only, int repeat, int json, int vision_bf16, results *r) {
    qf_status s = QF_OK;
    tensor_set ts = { .seed = 1, .dtype = QF_DT_F32 };
    qf_st *st = NULL;
    qf_blip2 *m = NULL;
    qf_blip2_state *state = NULL;
    float *pixels = NULL, *feats = NULL, *vis = NULL, *q_out = NULL, *tfeat = NULL;
    double *t = calloc((size_t)repeat, sizeof *t), *tc = calloc((size_t)repeat, sizeof *tc);
    qf_blip2_config cfg;
    cfg = qf_blip2_fullsize;
    double t0 = qf_now();
    if (!t || !tc) { s = qf_errorf(QF_ERR_NOMEM, "bench: out of memory"); goto done; }
    if ((s = build_blip2(&ts)) || (s = tensor_set_open(&ts, "<bench blip2>", &st))) goto done;
    s = qf_blip2_init(&cfg, st, QF_BLIP2_ALL | (vision_bf16 ? QF_BLIP2_VISION_BF16 : 0), &m);
    st = NULL;                                       /* owned by m (or closed) */
    if (s || (s = qf_blip2_state_init(m, &state))) goto done;
    progress(json, "bench: BLIP-2 weights %.0f MB built in %.1f s\n", (double)ts.bytes / 1e6, qf_now() - t0);

    pixels = malloc((size_t)3 * IMG * IMG * sizeof *pixels);
    feats = malloc((size_t)NQUERY * EMB * sizeof *feats);
    vis = malloc((size_t)NV * DV * sizeof *vis);
    q_out = malloc((size_t)NQUERY * DQ * sizeof *q_out);
    tfeat = malloc((size_t)EMB * sizeof *tfeat);
    if (!pixels || !feats || !vis || !q_out || !tfeat) { s = qf_errorf(QF_ERR_NOMEM, "bench: out of memory"); goto done; }
    fill(pixels, QF_DT_F32, (size_t)3 * IMG * IMG, INIT_NORMAL, 7);
    for (size_t i = 0; i < (size_t)3 * IMG * IMG; i++) pixels[i] *= 50.0f;   /* ~ N(0, 1) */
    int64_t ids[TEXT_LEN], mask[TEXT_LEN];
    for (int i = 0; i < TEXT_LEN; i++) {
        ids[i] = i == 0 ? 101 : i == TEXT_LEN - 1 ? 102 : 1000 + (int64_t)(splitmix((uint64_t)i) % 28000);
        mask[i] = 1;
    }
    int all = !only;
    if (all || !strcmp(only, "embed") || !strcmp(only, "itm")) {
        for (int i = -1; i < repeat; i++) {
            double a = qf_now(), ac = cpu_now();
            if ((s = qf_blip2_image_feats(m, state, pixels, feats, vis, q_out))) goto done;
            double w = qf_now() - a, cw = cpu_now() - ac;
            if (i >= 0) { t[i] = w; tc[i] = cw; }
            progress(json, "bench: image %s %.3f s (CPU %.3f s)\n", i < 0 ? "warm-up" : "", w, cw);
        }
        if (all || !strcmp(only, "embed")) {
            r->image_s = median(t, repeat);
            r->image_cpu_s = median(tc, repeat);
            r->have_image = 1;
        }
    }
    if (all || !strcmp(only, "text")) {
        int n = 10;
        for (int i = -1; i < repeat; i++) {
            double a = qf_now();
            for (int k = 0; k < n; k++)
                if ((s = qf_blip2_text_feat(m, state, ids, mask, TEXT_LEN, tfeat, NULL))) goto done;
            if (i >= 0) t[i] = (qf_now() - a) / n;
        }
        r->text_ms = 1e3 * median(t, repeat); r->have_text = 1;
        progress(json, "bench: text %.2f ms\n", r->text_ms);
    }
    if (all || !strcmp(only, "itm")) {
        int n = 5;
        float logits[2];
        for (int i = -1; i < repeat; i++) {
            double a = qf_now();
            for (int k = 0; k < n; k++)
                if ((s = qf_blip2_itm(m, state, vis, ids, mask, TEXT_LEN, logits))) goto done;
            if (i >= 0) t[i] = (qf_now() - a) / n;
        }
        r->itm_ms = 1e3 * median(t, repeat); r->have_itm = 1;
        progress(json, "bench: itm %.2f ms\n", r->itm_ms);
    }
done:
    free(pixels); free(feats); free(vis); free(q_out); free(tfeat); free(t); free(tc);
    qf_blip2_state_free(state);
    qf_blip2_free(m);
    qf_st_close(st);
    tensor_set_free(&ts);
    return s;
}

static qf_status bench_opt(int repeat, int n_decode, int json, qf_opt_weights wt, results *r) {
    qf_status s = QF_OK;
    tensor_set ts = { .seed = 2, .dtype = wt == QF_OPT_F32 ? QF_DT_F32 : QF_DT_BF16 };
    qf_st *st = NULL;
    qf_opt *m = NULL;
    qf_opt_cache *c = NULL;
    float *prefix = NULL, *logits = NULL;
    double *tp = calloc((size_t)repeat, sizeof *tp), *td = calloc((size_t)repeat, sizeof *td);
    const int T = NQUERY + PROMPT_LEN;
    qf_blip2_config cfg;
    cfg = qf_blip2_fullsize;
    double t0 = qf_now();
    if (!tp || !td) { s = qf_errorf(QF_ERR_NOMEM, "bench: out of memory"); goto done; }
    if ((s = build_opt(&ts)) || (s = tensor_set_open(&ts, "<bench opt>", &st))) goto done;
    if ((s = qf_opt_load(st, &cfg, wt, &m))) goto done;
    if ((s = qf_opt_cache_init(m, 1, T + n_decode, &c))) goto done;
    progress(json, "bench: OPT weights %.0f MB built in %.1f s\n", (double)ts.bytes / 1e6, qf_now() - t0);
    prefix = malloc((size_t)T * DO * sizeof *prefix);
    logits = malloc((size_t)VO * sizeof *logits);
    if (!prefix || !logits) { s = qf_errorf(QF_ERR_NOMEM, "bench: out of memory"); goto done; }
    fill(prefix, QF_DT_F32, (size_t)T * DO, INIT_NORMAL, 9);
    for (int i = -1; i < repeat; i++) {
        qf_opt_cache_clear(c);
        double a = qf_now();
        if ((s = qf_opt_forward(m, c, 0, prefix, T, logits, NULL))) goto done;
        double b = qf_now();
        for (int k = 0; k < n_decode; k++) {
            int32_t best = 0;                        /* greedy: argmax of the last logits */
            for (int v = 1; v < VO; v++) if (logits[v] > logits[best]) best = v;
            if ((s = qf_opt_decode(m, c, &best, 1, logits))) goto done;
        }
        double e = qf_now();
        if (i >= 0) { tp[i] = b - a; td[i] = e - b; }
        progress(json, "bench: opt %s prefill %.3f s, %d decode steps %.3f s\n", i < 0 ? "warm-up" : "",
                 b - a, n_decode, e - b);
    }
    r->prefill = T / median(tp, repeat);
    r->decode = n_decode / median(td, repeat);
    r->have_opt = 1;
done:
    free(prefix); free(logits); free(tp); free(td);
    qf_opt_cache_free(c);
    qf_opt_free(m);
    qf_st_close(st);
    tensor_set_free(&ts);
    return s;
}

/* Flan-T5-XL: the encoder over 32 query embeddings + 8 prompt tokens, then
 * greedy decode steps from the decoder start. */
static qf_status bench_t5(int repeat, int n_decode, int json, qf_opt_weights wt, results *r) {
    qf_status s = QF_OK;
    tensor_set ts = { .seed = 3, .dtype = wt == QF_OPT_F32 ? QF_DT_F32 : QF_DT_BF16 };
    qf_st *st = NULL;
    qf_t5 *m = NULL;
    qf_t5_cache *c = NULL;
    float *x = NULL, *logits = NULL;
    double *te = calloc((size_t)repeat, sizeof *te), *td = calloc((size_t)repeat, sizeof *td);
    const int S = NQUERY + PROMPT_LEN;
    qf_blip2_config cfg;
    fill_config_t5(&cfg);
    double t0 = qf_now();
    if (!te || !td) { s = qf_errorf(QF_ERR_NOMEM, "bench: out of memory"); goto done; }
    if ((s = build_t5(&ts)) || (s = tensor_set_open(&ts, "<bench t5>", &st))) goto done;
    if ((s = qf_t5_load(st, &cfg, wt, &m))) goto done;
    if ((s = qf_t5_cache_init(m, 1, S, 1 + n_decode, &c))) goto done;
    progress(json, "bench: Flan-T5-XL weights %.0f MB built in %.1f s\n", (double)ts.bytes / 1e6, qf_now() - t0);
    x = malloc((size_t)S * DT * sizeof *x);
    logits = malloc((size_t)VT * sizeof *logits);
    if (!x || !logits) { s = qf_errorf(QF_ERR_NOMEM, "bench: out of memory"); goto done; }
    fill(x, QF_DT_F32, (size_t)S * DT, INIT_NORMAL, 11);
    for (int i = -1; i < repeat; i++) {
        double a = qf_now();
        if ((s = qf_t5_encode(m, c, x, S, NULL))) goto done;
        double b = qf_now();
        int32_t tok = 0;
        for (int k = 0; k < n_decode; k++) {
            if ((s = k ? qf_t5_decode(m, c, &tok, 1, logits) : qf_t5_forward(m, c, 0, &tok, 1, logits, NULL))) goto done;
            tok = 0;                                 /* greedy: argmax of the logits */
            for (int v = 1; v < VT; v++) if (logits[v] > logits[tok]) tok = v;
        }
        double e = qf_now();
        if (i >= 0) { te[i] = b - a; td[i] = e - b; }
        progress(json, "bench: t5 %s encoder %.3f s, %d decode steps %.3f s\n", i < 0 ? "warm-up" : "",
                 b - a, n_decode, e - b);
    }
    r->t5_encode = S / median(te, repeat);
    r->t5_decode = n_decode / median(td, repeat);
    r->have_t5 = 1;
done:
    free(x); free(logits); free(te); free(td);
    qf_t5_cache_free(c);
    qf_t5_free(m);
    qf_st_close(st);
    tensor_set_free(&ts);
    return s;
}

static void print_num(const char *key, int have, double v, const char *fmtv, int last) {
    printf("\"%s\": ", key);
    if (have) printf(fmtv, v); else printf("null");
    printf("%s", last ? "" : ", ");
}

int qf_cmd_bench(int argc, char **argv) {
    static const struct option opts[] = {
        { "threads", required_argument, 0, 't' }, { "dtype", required_argument, 0, 'd' },
        { "only", required_argument, 0, 'o' }, { "format", required_argument, 0, 'f' },
        { "repeat", required_argument, 0, 'r' }, { "decode-tokens", required_argument, 0, 'n' },
        { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 },
    };
    const char *only = NULL, *format = "text", *dtype = "auto";
    int threads = (int)sysconf(_SC_NPROCESSORS_ONLN), repeat = 3, n_decode = 16, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 't': if (!qf_cli_int(optarg, 1, 1024, &threads)) return qf_cli_usage("bench", "--threads: '%s' is not an integer in 1..1024", optarg); break;
        case 'r': if (!qf_cli_int(optarg, 1, 1000, &repeat)) return qf_cli_usage("bench", "--repeat: '%s' is not an integer in 1..1000", optarg); break;
        case 'n': if (!qf_cli_int(optarg, 1, 1000, &n_decode)) return qf_cli_usage("bench", "--decode-tokens: '%s' is not an integer in 1..1000", optarg); break;
        case 'd': dtype = optarg; break;
        case 'o': only = optarg; break;
        case 'f': format = optarg; break;
        case 'h': fputs(usage_text, stdout); return 0;
        default: return 2;
        }
    }
    if (optind < argc) return qf_cli_usage("bench", "unexpected argument '%s'", argv[optind]);
    if (strcmp(format, "text") && strcmp(format, "json"))
        return qf_cli_usage("bench", "--format must be text or json, not '%s'", format);
    if (only && strcmp(only, "embed") && strcmp(only, "text") && strcmp(only, "itm") && strcmp(only, "opt") &&
        strcmp(only, "t5"))
        return qf_cli_usage("bench", "--only must be embed, text, itm, opt or t5, not '%s'", only);
    qf_opt_weights wt = QF_OPT_F32;
    if (!strcmp(dtype, "auto")) dtype = qf_dnnl_bf16_native() ? "bf16" : "f32";
    if (qf_opt_weights_parse(dtype, &wt))
        return qf_cli_usage("bench", "--dtype must be auto, f32, bf16 or int8, not '%s'", dtype);
    const char *dtype_vision = wt == QF_OPT_BF16 ? "bf16" : "f32";
    int json = !strcmp(format, "json");
    openblas_set_num_threads(threads);
    omp_set_num_threads(threads);

    if (!json)
        printf("OpenBLAS core %s (chosen by OpenBLAS: %s)\n", qf_cpu_blas_core(), qf_cpu_blas_core_initial());
    results r = { 0 };
    qf_status s = QF_OK;
    /* BF16 is the OPT decoder's weight format; the vision side has no BF16 path yet */
    int t5 = only && !strcmp(only, "t5");
    if (!t5 && (!only || strcmp(only, "opt"))) s = bench_blip2(only, repeat, json, wt == QF_OPT_BF16, &r);
    if (!s && (!only || !strcmp(only, "opt"))) s = bench_opt(repeat, n_decode, json, wt, &r);
    if (!s && t5) s = bench_t5(repeat, n_decode, json, wt, &r);
    if (s) return qf_cli_fail("bench", s);

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double rss = (double)ru.ru_maxrss / 1024.0, gflops = r.have_image ? image_flops() / r.image_s / 1e9 : 0;
    double la[3] = { 0 };
    if (getloadavg(la, 3) < 0) la[0] = la[1] = la[2] = -1;
    if (json) {
        printf("{");
        print_num("image_s", r.have_image, r.image_s, "%.4f", 0);
        print_num("text_ms", r.have_text, r.text_ms, "%.3f", 0);
        print_num("itm_pair_ms", r.have_itm, r.itm_ms, "%.3f", 0);
        print_num("prefill_tok_s", r.have_opt, r.prefill, "%.3f", 0);
        print_num("decode_tok_s", r.have_opt, r.decode, "%.3f", 0);
        print_num("t5_encode_tok_s", r.have_t5, r.t5_encode, "%.3f", 0);
        print_num("t5_decode_tok_s", r.have_t5, r.t5_decode, "%.3f", 0);
        print_num("peak_rss_mb", 1, rss, "%.0f", 0);
        print_num("gflops", r.have_image, gflops, "%.1f", 0);
        print_num("image_cpu_s", r.have_image, r.image_cpu_s, "%.4f", 0);
        printf("\"threads\": %d, \"dtype\": \"%s\", \"dtype_vision\": \"%s\", \"repeat\": %d, \"load_avg\": %.2f, \"blas_core\": \"%s\"}\n",
               threads, dtype, dtype_vision, repeat, la[0], qf_cpu_blas_core());
    } else {
        printf("threads %d, dtype %s (OPT/T5), %s (ViT; Q-Former f32), median of %d runs, load average %.2f %.2f %.2f\n",
               threads, dtype, dtype_vision, repeat, la[0], la[1], la[2]);
        if (r.have_image) printf("image_s        %.3f   (%.1f GFLOP/s, %.1f GFLOP per image; CPU %.3f s)\n",
                                 r.image_s, gflops, image_flops() / 1e9, r.image_cpu_s);
        if (r.have_text) printf("text_ms        %.2f\n", r.text_ms);
        if (r.have_itm) printf("itm_pair_ms    %.2f\n", r.itm_ms);
        if (r.have_opt) printf("prefill_tok_s  %.2f\ndecode_tok_s   %.3f\n", r.prefill, r.decode);
        if (r.have_t5) printf("t5_encode_tok_s  %.2f\nt5_decode_tok_s  %.3f\n", r.t5_encode, r.t5_decode);
        printf("peak_rss_mb    %.0f\n", rss);
    }
    return 0;
}
