/* gen_checkpoint.c - writes a full-size random BLIP-2 retrieval checkpoint
 * (Salesforce/blip2-itm-vit-g shapes: EVA ViT-g/14 at 224, 12-layer Q-Former)
 * in the Hugging Face layout, for benchmarks and full-size checks.
 *
 * Tensors are streamed: each file's header is computed first (offsets from
 * the shapes), then every tensor is generated in chunks and written, so
 * memory stays a few MiB for a 2-5 GB checkpoint. The float32 values drawn
 * depend only on --seed and the tensor's place in the name order, not on
 * --shards, so sharded and single-file outputs hold the same weights. */
#include "embed/common.h"
#include "embed/config.h"
#include "embed/kernels_cpu.h"
#include "embed/safetensors.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

static const char usage_text[] =
    "usage: gen_checkpoint --out DIR [--dtype f32|f16|bf16] [--shards N] [--seed S]\n"
    "                      [--tokenizer-from DIR]\n"
    "\n"
    "Writes a random checkpoint with the real Salesforce/blip2-itm-vit-g shapes\n"
    "(Blip2ForImageTextRetrieval, ~1.17 B parameters) into DIR (created; must be\n"
    "empty): config.json, preprocessor_config.json, the BERT tokenizer files\n"
    "(copied from --tokenizer-from, default $QF_FIXTURES/tiny-blip2-itm or the\n"
    "source tree's tests/fixtures/tiny-blip2-itm), and model.safetensors, or with\n"
    "--shards N > 1 model-0000k-of-0000N.safetensors + model.safetensors.index.json.\n"
    "Weights ~ N(0, 0.02^2), LayerNorm weights 1, biases 0. Default dtype f16\n"
    "(~2.3 GB on disk; f32 ~4.7 GB).\n"
    "\n"
    "example:\n"
    "  gen_checkpoint --out /tmp/blip2-itm-fullsize --dtype f16 --shards 2\n";

/* ---- the real model's dimensions ----------------------------------------- */

#include "bench/fullsize.h"   /* the full-size shapes: qf_blip2_fullsize */

/* ---- tensor list ----------------------------------------------------------- */

typedef enum { INIT_NORMAL, INIT_ONE, INIT_ZERO } init_kind;

typedef struct {
    char      name[112];
    int       n_dim;
    int64_t   shape[4];
    int64_t   n_elem;
    init_kind init;
    int       shard;                 /* 0-based file index            */
    uint64_t  begin;                 /* data_offsets within its file  */
} spec;

typedef struct {
    spec  *v;
    size_t n, cap;
} spec_list;

static int ends(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* Appends a tensor; the name is a printf format. Biases are zero, the
 * weights of every LayerNorm one, everything else normal * 0.02. */
static void add(spec_list *L, int n_dim, const int64_t *shape, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void add(spec_list *L, int n_dim, const int64_t *shape, const char *fmt, ...) {
    if (L->n == L->cap) {
        L->cap = L->cap ? 2 * L->cap : 256;
        L->v = qf_realloc(L->v, L->cap * sizeof *L->v);
        if (!L->v) { fprintf(stderr, "gen_checkpoint: out of memory\n"); exit(1); }
    }
    spec *t = &L->v[L->n++];
    memset(t, 0, sizeof *t);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    t->n_dim = n_dim;
    t->n_elem = 1;
    for (int i = 0; i < n_dim; i++) { t->shape[i] = shape[i]; t->n_elem *= shape[i]; }
    if (ends(t->name, ".bias")) t->init = INIT_ZERO;
    else if (ends(t->name, ".weight") && strcasestr(t->name, "norm")) t->init = INIT_ONE;
    else t->init = INIT_NORMAL;
}

#define S1(a)          (const int64_t[]){ a }
#define S2(a, b)       (const int64_t[]){ a, b }
#define S3(a, b, c)    (const int64_t[]){ a, b, c }
#define S4(a, b, c, d) (const int64_t[]){ a, b, c, d }

/* The tensors of Blip2ForImageTextRetrieval, named as in the HF files
 * (same set as tests/fixtures/tiny-blip2-itm/model.safetensors). */
static void build_specs(spec_list *L) {
    const char *ve = "vision_model.embeddings", *vl = "vision_model.encoder.layers";
    add(L, 3, S3(1, 1, DV), "%s.class_embedding", ve);
    add(L, 4, S4(DV, 3, PATCH, PATCH), "%s.patch_embedding.weight", ve);
    add(L, 1, S1(DV), "%s.patch_embedding.bias", ve);
    add(L, 3, S3(1, NV, DV), "%s.position_embedding", ve);
    for (int l = 0; l < LV; l++) {
        add(L, 1, S1(DV), "%s.%d.layer_norm1.weight", vl, l);
        add(L, 1, S1(DV), "%s.%d.layer_norm1.bias", vl, l);
        add(L, 2, S2(3 * DV, DV), "%s.%d.self_attn.qkv.weight", vl, l);
        add(L, 1, S1(3 * DV), "%s.%d.self_attn.qkv.bias", vl, l);
        add(L, 2, S2(DV, DV), "%s.%d.self_attn.projection.weight", vl, l);
        add(L, 1, S1(DV), "%s.%d.self_attn.projection.bias", vl, l);
        add(L, 1, S1(DV), "%s.%d.layer_norm2.weight", vl, l);
        add(L, 1, S1(DV), "%s.%d.layer_norm2.bias", vl, l);
        add(L, 2, S2(IV, DV), "%s.%d.mlp.fc1.weight", vl, l);
        add(L, 1, S1(IV), "%s.%d.mlp.fc1.bias", vl, l);
        add(L, 2, S2(DV, IV), "%s.%d.mlp.fc2.weight", vl, l);
        add(L, 1, S1(DV), "%s.%d.mlp.fc2.bias", vl, l);
    }
    add(L, 1, S1(DV), "vision_model.post_layernorm.weight");
    add(L, 1, S1(DV), "vision_model.post_layernorm.bias");

    add(L, 3, S3(1, NQUERY, DQ), "query_tokens");
    add(L, 1, S1(DQ), "qformer.layernorm.weight");
    add(L, 1, S1(DQ), "qformer.layernorm.bias");
    const char *ql = "qformer.encoder.layer";
    for (int l = 0; l < LQ; l++) {
        for (int cross = 0; cross < 2; cross++) {
            if (cross && l % XFREQ) continue;
            const char *a = cross ? "crossattention" : "attention";
            int64_t kv = cross ? DENC : DQ;
            add(L, 2, S2(DQ, DQ), "%s.%d.%s.attention.query.weight", ql, l, a);
            add(L, 1, S1(DQ), "%s.%d.%s.attention.query.bias", ql, l, a);
            add(L, 2, S2(DQ, kv), "%s.%d.%s.attention.key.weight", ql, l, a);
            add(L, 1, S1(DQ), "%s.%d.%s.attention.key.bias", ql, l, a);
            add(L, 2, S2(DQ, kv), "%s.%d.%s.attention.value.weight", ql, l, a);
            add(L, 1, S1(DQ), "%s.%d.%s.attention.value.bias", ql, l, a);
            add(L, 2, S2(DQ, DQ), "%s.%d.%s.output.dense.weight", ql, l, a);
            add(L, 1, S1(DQ), "%s.%d.%s.output.dense.bias", ql, l, a);
            add(L, 1, S1(DQ), "%s.%d.%s.output.LayerNorm.weight", ql, l, a);
            add(L, 1, S1(DQ), "%s.%d.%s.output.LayerNorm.bias", ql, l, a);
        }
        for (int text = 0; text < 2; text++) {   /* query FFN, then text FFN */
            const char *sfx = text ? "" : "_query";
            add(L, 2, S2(IQ, DQ), "%s.%d.intermediate%s.dense.weight", ql, l, sfx);
            add(L, 1, S1(IQ), "%s.%d.intermediate%s.dense.bias", ql, l, sfx);
            add(L, 2, S2(DQ, IQ), "%s.%d.output%s.dense.weight", ql, l, sfx);
            add(L, 1, S1(DQ), "%s.%d.output%s.dense.bias", ql, l, sfx);
            add(L, 1, S1(DQ), "%s.%d.output%s.LayerNorm.weight", ql, l, sfx);
            add(L, 1, S1(DQ), "%s.%d.output%s.LayerNorm.bias", ql, l, sfx);
        }
    }
    add(L, 2, S2(VQ, DQ), "embeddings.word_embeddings.weight");
    add(L, 2, S2(PMAX, DQ), "embeddings.position_embeddings.weight");
    add(L, 2, S2(EMB, DQ), "vision_projection.weight");
    add(L, 1, S1(EMB), "vision_projection.bias");
    add(L, 2, S2(EMB, DQ), "text_projection.weight");
    add(L, 1, S1(EMB), "text_projection.bias");
    add(L, 2, S2(2, DQ), "itm_head.weight");
    add(L, 1, S1(2), "itm_head.bias");
}

static int cmp_spec_name(const void *a, const void *b) {
    return strcmp(((const spec *)a)->name, ((const spec *)b)->name);
}

/* ---- values -------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in (0, 1]: never 0, so log() in Box-Muller is finite. */
static double unit(uint64_t *x) { return ((splitmix64(x) >> 11) + 1) * (1.0 / 9007199254740992.0); }

#define CHUNK (1 << 20)

/* Generates tensor `idx` of the list and writes it to `fp` in `dt`. */
static int write_tensor(FILE *fp, const spec *t, size_t idx, uint64_t seed, qf_dtype dt,
                        float *buf, void *out) {
    uint64_t rng = seed ^ ((uint64_t)(idx + 1) * 0xD1B54A32D192ED03ull);
    splitmix64(&rng);
    size_t es = qf_dtype_size(dt);
    for (int64_t done = 0; done < t->n_elem; ) {
        size_t n = (size_t)(t->n_elem - done < CHUNK ? t->n_elem - done : CHUNK);
        if (t->init == INIT_NORMAL) {
            for (size_t i = 0; i < n; i += 2) {      /* Box-Muller, two values per draw */
                double r = sqrt(-2.0 * log(unit(&rng))), a = 6.283185307179586 * unit(&rng);
                buf[i] = (float)(0.02 * r * cos(a));
                if (i + 1 < n) buf[i + 1] = (float)(0.02 * r * sin(a));
            }
        } else {
            float v = t->init == INIT_ONE ? 1.0f : 0.0f;
            for (size_t i = 0; i < n; i++) buf[i] = v;
        }
        const void *src = buf;
        if (dt == QF_DT_F16 || dt == QF_DT_BF16) {
            uint16_t *o = out;
            for (size_t i = 0; i < n; i++) o[i] = dt == QF_DT_F16 ? qf_cpu_half_of(buf[i]) : qf_cpu_bf16_of(buf[i]);
            src = out;
        }
        if (fwrite(src, es, n, fp) != n) return -1;
        done += (int64_t)n;
    }
    return 0;
}

/* ---- files ------------------------------------------------------------------ */

typedef struct { char *s; size_t n, cap; } sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) { fprintf(stderr, "gen_checkpoint: formatting failed\n"); exit(1); }
        if (b->s && b->n + (size_t)k < b->cap) { b->n += (size_t)k; return; }
        b->cap = (b->cap + (size_t)k + 1) * 2;
        b->s = qf_realloc(b->s, b->cap);
        if (!b->s) { fprintf(stderr, "gen_checkpoint: out of memory\n"); exit(1); }
    }
}

/* Writes one safetensors file holding the specs of shard `k` (in list order). */
static int write_shard(const char *path, spec *v, size_t n, int k, qf_dtype dt, uint64_t seed) {
    size_t es = qf_dtype_size(dt);
    sbuf h = { 0 };
    uint64_t off = 0;
    sb_printf(&h, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (size_t i = 0; i < n; i++) {
        if (v[i].shard != k) continue;
        v[i].begin = off;
        uint64_t end = off + (uint64_t)v[i].n_elem * es;
        sb_printf(&h, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", v[i].name, qf_dtype_name(dt));
        for (int d = 0; d < v[i].n_dim; d++) sb_printf(&h, "%s%" PRId64, d ? "," : "", v[i].shape[d]);
        sb_printf(&h, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", off, end);
        off = end;
    }
    sb_printf(&h, "}");
    while ((8 + h.n) % 8) sb_printf(&h, " ");       /* payload starts 8-byte aligned */

    char tmp[4400];
    snprintf(tmp, sizeof tmp, "%.4200s.tmp", path);
    FILE *fp = fopen(tmp, "wb");
    float *buf = qf_malloc(CHUNK * sizeof *buf);
    void *out = qf_malloc(CHUNK * sizeof(uint16_t));
    int rc = -1;
    if (!fp || !buf || !out) {
        fprintf(stderr, "gen_checkpoint: %s: %s\n", tmp, fp ? "out of memory" : strerror(errno));
        goto done;
    }
    setvbuf(fp, NULL, _IOFBF, 4 << 20);
    uint8_t len[8];
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)((uint64_t)h.n >> (8 * i));
    if (fwrite(len, 1, 8, fp) != 8 || fwrite(h.s, 1, h.n, fp) != h.n) goto io_fail;
    for (size_t i = 0; i < n; i++)
        if (v[i].shard == k && write_tensor(fp, &v[i], i, seed, dt, buf, out)) goto io_fail;
    if (fflush(fp) || fsync(fileno(fp))) goto io_fail;
    if (fclose(fp)) { fp = NULL; goto io_fail; }
    fp = NULL;
    if (rename(tmp, path)) goto io_fail;
    rc = 0;
    goto done;
io_fail:
    fprintf(stderr, "gen_checkpoint: writing %s: %s\n", tmp, strerror(errno));
    unlink(tmp);
done:
    if (fp) fclose(fp);
    qf_free(buf);
    qf_free(out);
    qf_free(h.s);
    return rc;
}

static int write_json(const char *path, json_t *root, int precision) {
    if (!root) { fprintf(stderr, "gen_checkpoint: cannot build %s\n", path); return -1; }
    int rc = json_dump_file(root, path, JSON_INDENT(2) | JSON_REAL_PRECISION(precision));
    if (rc) fprintf(stderr, "gen_checkpoint: cannot write %s\n", path);
    json_decref(root);
    return rc ? -1 : 0;
}

static json_t *config_json(const char *torch_dtype) {
    return json_pack(
        "{s:[s], s:s, s:i, s:i, s:f, s:f, s:b, s:b, s:s,"
        " s:{s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:s, s:f, s:f, s:f, s:b},"
        " s:{s:s, s:i, s:i, s:i, s:i, s:i, s:s, s:f, s:f, s:i, s:f, s:f, s:i, s:s, s:i, s:i, s:b},"
        " s:{s:s}}",
        "architectures", "Blip2ForImageTextRetrieval",
        "model_type", "blip-2",
        "num_query_tokens", NQUERY,
        "image_text_hidden_size", EMB,
        "initializer_factor", 1.0,
        "initializer_range", 0.02,
        "tie_word_embeddings", 1,
        "use_decoder_only_language_model", 1,
        "torch_dtype", torch_dtype,
        "vision_config",
            "model_type", "blip_2_vision_model",
            "hidden_size", DV, "intermediate_size", IV, "num_hidden_layers", LV,
            "num_attention_heads", HV, "image_size", IMG, "patch_size", PATCH,
            "hidden_act", "gelu", "layer_norm_eps", 1e-6, "attention_dropout", 0.0,
            "initializer_range", 1e-10, "qkv_bias", 1,
        "qformer_config",
            "model_type", "blip_2_qformer",
            "vocab_size", VQ, "hidden_size", DQ, "num_hidden_layers", LQ,
            "num_attention_heads", HQ, "intermediate_size", IQ, "hidden_act", "gelu",
            "hidden_dropout_prob", 0.1, "attention_probs_dropout_prob", 0.1,
            "max_position_embeddings", PMAX, "initializer_range", 0.02, "layer_norm_eps", 1e-12,
            "pad_token_id", 0, "position_embedding_type", "absolute",
            "cross_attention_frequency", XFREQ, "encoder_hidden_size", DENC,
            "use_qformer_text_input", 1,
        "text_config", "model_type", "opt");
}

static json_t *preprocessor_json(void) {
    return json_pack(
        "{s:b, s:b, s:b, s:b, s:[f,f,f], s:s, s:[f,f,f], s:s, s:i, s:f, s:{s:i, s:i}}",
        "do_convert_rgb", 1, "do_normalize", 1, "do_rescale", 1, "do_resize", 1,
        "image_mean", 0.48145466, 0.4578275, 0.40821073,
        "image_processor_type", "BlipImageProcessor",
        "image_std", 0.26862954, 0.26130258, 0.27577711,
        "processor_class", "Blip2Processor",
        "resample", 3,
        "rescale_factor", 1.0 / 255.0,
        "size", "height", IMG, "width", IMG);
}

static int copy_file(const char *src, const char *dst) {
    char *data = NULL;
    size_t n = 0;
    if (qf_read_file(src, 64u << 20, &data, &n)) {
        fprintf(stderr, "gen_checkpoint: %s\n", qf_last_error());
        return -1;
    }
    FILE *fp = fopen(dst, "wb");
    int ok = fp && fwrite(data, 1, n, fp) == n;
    if (fp && fclose(fp)) ok = 0;
    if (!ok) fprintf(stderr, "gen_checkpoint: cannot write %s: %s\n", dst, strerror(errno));
    qf_free(data);
    return ok ? 0 : -1;
}

/* Where the tokenizer files come from when --tokenizer-from is not given. */
static void default_tokenizer_dir(char *dst, size_t cap) {
    const char *fx = getenv("QF_FIXTURES");
    if (fx && fx[0]) { snprintf(dst, cap, "%s/tiny-blip2-itm", fx); return; }
    /* __FILE__ is this source's path as the build gave it: <root>/bench/gen_checkpoint.c */
    const char *me = __FILE__, *cut = strstr(me, "bench/gen_checkpoint.c");
    int root = cut ? (int)(cut - me) : 0;
    snprintf(dst, cap, "%.*stests/fixtures/tiny-blip2-itm", root, me);
}

static int dir_is_empty(const char *path) {
    DIR *d = opendir(path);
    if (!d) return 0;
    struct dirent *e;
    int empty = 1;
    while (empty && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) empty = 0;
    closedir(d);
    return empty;
}

int main(int argc, char **argv) {
    static const struct option opts[] = {
        { "out", required_argument, 0, 'o' }, { "dtype", required_argument, 0, 'd' },
        { "shards", required_argument, 0, 's' }, { "seed", required_argument, 0, 'S' },
        { "tokenizer-from", required_argument, 0, 't' }, { "help", no_argument, 0, 'h' },
        { 0, 0, 0, 0 },
    };
    const char *out_dir = NULL, *dtype_arg = "f16";
    char tok_dir[4096] = "";
    long shards = 1;
    uint64_t seed = 1234;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        char *end = NULL;
        switch (c) {
        case 'o': out_dir = optarg; break;
        case 'd': dtype_arg = optarg; break;
        case 's':
            shards = strtol(optarg, &end, 10);
            if (*end || shards < 1 || shards > 99999) {
                fprintf(stderr, "gen_checkpoint: --shards wants an integer in 1..99999, not '%s'\n", optarg);
                return 2;
            }
            break;
        case 'S': seed = strtoull(optarg, &end, 0);
            if (*end) { fprintf(stderr, "gen_checkpoint: bad --seed '%s'\n", optarg); return 2; }
            break;
        case 't': snprintf(tok_dir, sizeof tok_dir, "%s", optarg); break;
        case 'h': fputs(usage_text, stdout); return 0;
        default: fputs(usage_text, stderr); return 2;
        }
    }
    if (optind < argc || !out_dir) {
        fprintf(stderr, "gen_checkpoint: %s\n\n%s", out_dir ? "unexpected argument" : "--out is required",
                usage_text);
        return 2;
    }
    qf_dtype dt;
    const char *torch_dtype;
    if (!strcasecmp(dtype_arg, "f32"))       { dt = QF_DT_F32;  torch_dtype = "float32"; }
    else if (!strcasecmp(dtype_arg, "f16"))  { dt = QF_DT_F16;  torch_dtype = "float16"; }
    else if (!strcasecmp(dtype_arg, "bf16")) { dt = QF_DT_BF16; torch_dtype = "bfloat16"; }
    else { fprintf(stderr, "gen_checkpoint: --dtype must be f32, f16 or bf16, not '%s'\n", dtype_arg); return 2; }
    if (!tok_dir[0]) default_tokenizer_dir(tok_dir, sizeof tok_dir);

    spec_list L = { 0 };
    build_specs(&L);
    qsort(L.v, L.n, sizeof *L.v, cmp_spec_name);      /* HF writes the tensors by name */
    if ((size_t)shards > L.n) {
        fprintf(stderr, "gen_checkpoint: --shards %ld exceeds the %zu tensors\n", shards, L.n);
        return 2;
    }
    size_t es = qf_dtype_size(dt);
    uint64_t total_bytes = 0, total_params = 0;
    for (size_t i = 0; i < L.n; i++) total_params += (uint64_t)L.v[i].n_elem;
    total_bytes = total_params * es;

    /* Shards: contiguous runs by name, cut when a shard reaches its share of
     * the bytes, leaving at least one tensor for each remaining shard. */
    uint64_t share = (total_bytes + (uint64_t)shards - 1) / (uint64_t)shards, acc = 0;
    int k = 0;
    for (size_t i = 0; i < L.n; i++) {
        uint64_t b = (uint64_t)L.v[i].n_elem * es;
        if (acc > 0 && k + 1 < shards && (acc + b > share || L.n - i <= (size_t)(shards - 1 - k))) {
            k++;
            acc = 0;
        }
        L.v[i].shard = k;
        acc += b;
    }
    if (k + 1 != shards) {
        fprintf(stderr, "gen_checkpoint: could not split %zu tensors into %ld shards\n", L.n, shards);
        return 2;
    }

    char path[4200], src[4200];
    static const char *const tok_files[] = {
        "vocab.txt", "added_tokens.json", "tokenizer_config.json", "special_tokens_map.json",
    };
    for (size_t i = 0; i < sizeof tok_files / sizeof tok_files[0]; i++) {   /* before writing anything */
        snprintf(src, sizeof src, "%s/%s", tok_dir, tok_files[i]);
        if (access(src, R_OK)) {
            fprintf(stderr, "gen_checkpoint: %s: %s (see --tokenizer-from)\n", src, strerror(errno));
            return 1;
        }
    }
    if (mkdir(out_dir, 0777) && errno != EEXIST) {
        fprintf(stderr, "gen_checkpoint: cannot create %s: %s\n", out_dir, strerror(errno));
        return 1;
    }
    if (!dir_is_empty(out_dir)) {
        fprintf(stderr, "gen_checkpoint: %s is not an empty directory\n", out_dir);
        return 1;
    }
    struct statvfs vfs;
    if (statvfs(out_dir, &vfs) == 0) {
        uint64_t avail = (uint64_t)vfs.f_bavail * vfs.f_frsize, need = total_bytes + (64u << 20);
        if (avail < need) {
            fprintf(stderr, "gen_checkpoint: %s: %.2f GB free, %.2f GB needed\n", out_dir,
                    avail / 1e9, need / 1e9);
            return 1;
        }
    }

    snprintf(path, sizeof path, "%s/config.json", out_dir);
    if (write_json(path, config_json(torch_dtype), 10)) return 1;
    snprintf(path, sizeof path, "%s/preprocessor_config.json", out_dir);
    if (write_json(path, preprocessor_json(), 17)) return 1;
    for (size_t i = 0; i < sizeof tok_files / sizeof tok_files[0]; i++) {
        snprintf(src, sizeof src, "%s/%s", tok_dir, tok_files[i]);
        snprintf(path, sizeof path, "%s/%s", out_dir, tok_files[i]);
        if (copy_file(src, path)) return 1;
    }

    fprintf(stderr, "gen_checkpoint: %zu tensors, %" PRIu64 " parameters, %s, %.2f GB in %ld file(s) -> %s\n",
            L.n, total_params, qf_dtype_name(dt), total_bytes / 1e9, shards, out_dir);
    double t0 = qf_now();
    json_t *weight_map = json_object();
    for (k = 0; k < shards; k++) {
        char file[64];
        if (shards == 1) snprintf(file, sizeof file, "model.safetensors");
        else snprintf(file, sizeof file, "model-%05d-of-%05ld.safetensors", k + 1, shards);
        snprintf(path, sizeof path, "%s/%s", out_dir, file);
        if (write_shard(path, L.v, L.n, k, dt, seed)) return 1;
        for (size_t i = 0; i < L.n; i++)
            if (L.v[i].shard == k) json_object_set_new(weight_map, L.v[i].name, json_string(file));
        fprintf(stderr, "gen_checkpoint: wrote %s (%.1f s)\n", path, qf_now() - t0);
    }
    if (shards > 1) {
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", out_dir);
        if (write_json(path, json_pack("{s:{s:I}, s:o}", "metadata", "total_size", (json_int_t)total_bytes,
                                       "weight_map", weight_map), 10))
            return 1;
    } else {
        json_decref(weight_map);
    }
    qf_free(L.v);
    return 0;
}
