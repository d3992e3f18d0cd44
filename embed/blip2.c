/* blip2.c - BLIP-2 retrieval model: EVA ViT, Q-Former, ITC/ITM heads.
 *
 * Weights are float32 views into the mmapped safetensors (F16/BF16 upcast
 * once by the reader). Every tensor is looked up through one table (field
 * offset, HF name format, shape in symbolic dims) and checked for presence,
 * dtype and shape before any forward runs. Activations live in the state's
 * arena, reset at the start of every public forward call. */
#include "embed/blip2.h"

#include "embed/gemm_dnnl.h"
#include "embed/kernels_cpu.h"

#include "embed/ops.h"
#include "embed/safetensors.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* ---- weights ---------------------------------------------------------- */

typedef struct {
    const float *ln1_w, *ln1_b;     /* layer_norm1                  [Dv]      */
    const float *qkv_w;             /* self_attn.qkv.weight         [3Dv, Dv] */
    const float *qkv_b;             /* self_attn.qkv.bias           [3Dv]     */
    const float *proj_w, *proj_b;   /* self_attn.projection         [Dv, Dv]  */
    const float *ln2_w, *ln2_b;     /* layer_norm2                  [Dv]      */
    const float *fc1_w, *fc1_b;     /* mlp.fc1                      [Iv, Dv]  */
    const float *fc2_w, *fc2_b;     /* mlp.fc2                      [Dv, Iv]  */
    uint16_t    *qkv_h, *proj_h, *fc1_h, *fc2_h;   /* QF_BLIP2_VISION_BF16: BF16 copies ... */
    qf_dnnl_mat *qkv_d, *proj_d, *fc1_d, *fc2_d;   /* ... or oneDNN's (native BF16 CPUs)   */
} vit_layer;

typedef struct {
    const float *q_w, *q_b;         /* attention.query   [Dq, Dq] (cross: [Dq, Dq])  */
    const float *k_w, *k_b;         /* attention.key     [Dq, Dq] (cross: [Dq, Denc]) */
    const float *v_w, *v_b;         /* attention.value   [Dq, Dq] (cross: [Dq, Denc]) */
    const float *o_w, *o_b;         /* output.dense      [Dq, Dq]                     */
    const float *ln_w, *ln_b;       /* output.LayerNorm  [Dq]                         */
} bert_attn;

typedef struct {
    const float *in_w, *in_b;       /* intermediate(_query).dense [Iq, Dq] */
    const float *out_w, *out_b;     /* output(_query).dense       [Dq, Iq] */
    const float *ln_w, *ln_b;       /* output(_query).LayerNorm   [Dq]     */
} bert_ffn;

typedef struct {
    bert_attn self;                 /* qformer.encoder.layer.N.attention.*       */
    bert_attn cross;                /* qformer.encoder.layer.N.crossattention.*  */
    bert_ffn  ffn_query;            /* intermediate_query / output_query         */
    bert_ffn  ffn_text;             /* intermediate / output (retrieval only)    */
    int       has_cross;            /* N % cross_attention_frequency == 0        */
} qformer_layer;

struct qf_blip2 {
    qf_blip2_config cfg;
    qf_st          *st;
    int             parts;
    char            fingerprint[65];
    char            vision_fingerprint[65];

    /* vision_model.* */
    const float *patch_w;           /* embeddings.patch_embedding.weight [Dv, 3, P, P] */
    const float *patch_b;           /* embeddings.patch_embedding.bias   [Dv]          */
    const float *cls;               /* embeddings.class_embedding        [1, 1, Dv]    */
    const float *pos;               /* embeddings.position_embedding     [1, Nv, Dv]   */
    vit_layer   *vit;               /* encoder.layers.N                                */
    const float *post_ln_w, *post_ln_b; /* post_layernorm [Dv]                         */
    float      **owned_qkv_b;       /* per layer: qkv bias built from q_bias/v_bias    */

    /* Q-Former */
    const float   *query_tokens;    /* query_tokens              [1, Q, Dq]  */
    const float   *qf_ln_w, *qf_ln_b; /* qformer.layernorm       [Dq]        */
    qformer_layer *qfl;             /* qformer.encoder.layer.N               */

    /* retrieval heads */
    const float *word_emb;          /* embeddings.word_embeddings.weight     [V, Dq]     */
    const float *pos_emb;           /* embeddings.position_embeddings.weight [Pmax, Dq]  */
    const float *vproj_w, *vproj_b; /* vision_projection [E, Dq] */
    const float *tproj_w, *tproj_b; /* text_projection   [E, Dq] */
    const float *itm_w, *itm_b;     /* itm_head          [2, Dq] */

    size_t arena_bytes;
};

struct qf_blip2_state {
    qf_arena arena;
    float   *bf16_w;                /* BF16 vision: one matrix widened to float32 */
};

/* Symbolic dimensions of the tensor table, resolved from the config. */
enum { D_NONE, D_ONE, D_DV, D_3DV, D_IV, D_NV, D_DQ, D_IQ, D_ENC, D_Q, D_E, D_V, D_PMAX, D_TWO,
       D_3, D_P, D_COUNT };

typedef struct {
    size_t      off;                /* offset of the `const float *` field      */
    const char *fmt;                /* HF tensor name; %d = layer index         */
    int         dims[4];            /* symbolic shape, D_NONE-terminated        */
} tensor_spec;

#define VL(f) offsetof(vit_layer, f)
static const tensor_spec vit_layer_specs[] = {
    { VL(ln1_w),  "vision_model.encoder.layers.%d.layer_norm1.weight",       { D_DV } },
    { VL(ln1_b),  "vision_model.encoder.layers.%d.layer_norm1.bias",         { D_DV } },
    { VL(qkv_w),  "vision_model.encoder.layers.%d.self_attn.qkv.weight",     { D_3DV, D_DV } },
    { VL(proj_w), "vision_model.encoder.layers.%d.self_attn.projection.weight", { D_DV, D_DV } },
    { VL(proj_b), "vision_model.encoder.layers.%d.self_attn.projection.bias",   { D_DV } },
    { VL(ln2_w),  "vision_model.encoder.layers.%d.layer_norm2.weight",       { D_DV } },
    { VL(ln2_b),  "vision_model.encoder.layers.%d.layer_norm2.bias",         { D_DV } },
    { VL(fc1_w),  "vision_model.encoder.layers.%d.mlp.fc1.weight",           { D_IV, D_DV } },
    { VL(fc1_b),  "vision_model.encoder.layers.%d.mlp.fc1.bias",             { D_IV } },
    { VL(fc2_w),  "vision_model.encoder.layers.%d.mlp.fc2.weight",           { D_DV, D_IV } },
    { VL(fc2_b),  "vision_model.encoder.layers.%d.mlp.fc2.bias",             { D_DV } },
};

#define M(f) offsetof(struct qf_blip2, f)
static const tensor_spec vision_specs[] = {
    { M(patch_w),   "vision_model.embeddings.patch_embedding.weight", { D_DV, D_3, D_P, D_P } },
    { M(patch_b),   "vision_model.embeddings.patch_embedding.bias",   { D_DV } },
    { M(cls),       "vision_model.embeddings.class_embedding",        { D_ONE, D_ONE, D_DV } },
    { M(pos),       "vision_model.embeddings.position_embedding",     { D_ONE, D_NV, D_DV } },
    { M(post_ln_w), "vision_model.post_layernorm.weight",             { D_DV } },
    { M(post_ln_b), "vision_model.post_layernorm.bias",               { D_DV } },
};
static const tensor_spec qformer_specs[] = {
    { M(query_tokens), "query_tokens",              { D_ONE, D_Q, D_DQ } },
    { M(qf_ln_w),      "qformer.layernorm.weight",  { D_DQ } },
    { M(qf_ln_b),      "qformer.layernorm.bias",    { D_DQ } },
};
static const tensor_spec retrieval_specs[] = {
    { M(word_emb), "embeddings.word_embeddings.weight",     { D_V, D_DQ } },
    { M(pos_emb),  "embeddings.position_embeddings.weight", { D_PMAX, D_DQ } },
    { M(vproj_w),  "vision_projection.weight",              { D_E, D_DQ } },
    { M(vproj_b),  "vision_projection.bias",                { D_E } },
    { M(tproj_w),  "text_projection.weight",                { D_E, D_DQ } },
    { M(tproj_b),  "text_projection.bias",                  { D_E } },
    { M(itm_w),    "itm_head.weight",                       { D_TWO, D_DQ } },
    { M(itm_b),    "itm_head.bias",                         { D_TWO } },
};

#define BA(f) offsetof(bert_attn, f)
static const tensor_spec attn_specs[] = {   /* %s = "attention" | "crossattention" */
    { BA(q_w),  "qformer.encoder.layer.%d.%s.attention.query.weight", { D_DQ, D_DQ } },
    { BA(q_b),  "qformer.encoder.layer.%d.%s.attention.query.bias",   { D_DQ } },
    { BA(k_w),  "qformer.encoder.layer.%d.%s.attention.key.weight",   { D_DQ, D_ENC } },
    { BA(k_b),  "qformer.encoder.layer.%d.%s.attention.key.bias",     { D_DQ } },
    { BA(v_w),  "qformer.encoder.layer.%d.%s.attention.value.weight", { D_DQ, D_ENC } },
    { BA(v_b),  "qformer.encoder.layer.%d.%s.attention.value.bias",   { D_DQ } },
    { BA(o_w),  "qformer.encoder.layer.%d.%s.output.dense.weight",    { D_DQ, D_DQ } },
    { BA(o_b),  "qformer.encoder.layer.%d.%s.output.dense.bias",      { D_DQ } },
    { BA(ln_w), "qformer.encoder.layer.%d.%s.output.LayerNorm.weight", { D_DQ } },
    { BA(ln_b), "qformer.encoder.layer.%d.%s.output.LayerNorm.bias",   { D_DQ } },
};

#define BF(f) offsetof(bert_ffn, f)
static const tensor_spec ffn_specs[] = {    /* %s = "" | "_query" */
    { BF(in_w),  "qformer.encoder.layer.%d.intermediate%s.dense.weight", { D_IQ, D_DQ } },
    { BF(in_b),  "qformer.encoder.layer.%d.intermediate%s.dense.bias",   { D_IQ } },
    { BF(out_w), "qformer.encoder.layer.%d.output%s.dense.weight",       { D_DQ, D_IQ } },
    { BF(out_b), "qformer.encoder.layer.%d.output%s.dense.bias",         { D_DQ } },
    { BF(ln_w),  "qformer.encoder.layer.%d.output%s.LayerNorm.weight",   { D_DQ } },
    { BF(ln_b),  "qformer.encoder.layer.%d.output%s.LayerNorm.bias",     { D_DQ } },
};

typedef struct {
    qf_st  *st;
    int64_t dim[D_COUNT];
} loader;

/* Loads every spec into the struct at `base`; the name is formatted with
 * (layer, sub) when the format has conversions. `enc_override` replaces
 * D_ENC (self-attention keys are [Dq, Dq], cross-attention [Dq, Denc]). */
static qf_status load_specs(loader *ld, void *base, const tensor_spec *specs, size_t n,
                            int layer, const char *sub, int64_t enc_dim) {
    for (size_t i = 0; i < n; i++) {
        char name[256];
        if (sub) snprintf(name, sizeof name, specs[i].fmt, layer, sub);
        else     snprintf(name, sizeof name, specs[i].fmt, layer);
        int64_t shape[4];
        int nd = 0;
        for (; nd < 4 && specs[i].dims[nd] != D_NONE; nd++) {
            int d = specs[i].dims[nd];
            shape[nd] = d == D_ENC ? enc_dim : ld->dim[d];
        }
        const float **field = (const float **)((char *)base + specs[i].off);
        qf_status s = qf_st_get_f32(ld->st, name, nd, shape, field);
        if (s) return s;
    }
    return QF_OK;
}
#define LOAD(ld, base, specs, layer, sub, enc) \
    load_specs((ld), (base), (specs), sizeof(specs) / sizeof((specs)[0]), (layer), (sub), (enc))

static qf_status load_vit_qkv_bias(qf_blip2 *m, loader *ld, int l) {
    char name[256];
    int64_t three = 3 * ld->dim[D_DV], dv = ld->dim[D_DV];
    snprintf(name, sizeof name, "vision_model.encoder.layers.%d.self_attn.qkv.bias", l);
    if (qf_st_find(m->st, name) || !m->cfg.vision.qkv_bias)
        return m->cfg.vision.qkv_bias ? qf_st_get_f32(m->st, name, 1, &three, &m->vit[l].qkv_b) : QF_OK;
    /* older files: q_bias and v_bias stored apart; the key has no bias */
    const float *qb, *vb;
    qf_status s;
    snprintf(name, sizeof name, "vision_model.encoder.layers.%d.self_attn.q_bias", l);
    if (!qf_st_find(m->st, name))
        return qf_errorf(QF_ERR_MISSING, "tensor 'vision_model.encoder.layers.%d.self_attn.qkv.bias' "
                         "(or q_bias + v_bias) not found in the checkpoint", l);
    if ((s = qf_st_get_f32(m->st, name, 1, &dv, &qb))) return s;
    snprintf(name, sizeof name, "vision_model.encoder.layers.%d.self_attn.v_bias", l);
    if ((s = qf_st_get_f32(m->st, name, 1, &dv, &vb))) return s;
    float *b = qf_calloc((size_t)three, sizeof *b);
    if (!b) return qf_errorf(QF_ERR_NOMEM, "out of memory building the qkv bias of layer %d", l);
    memcpy(b, qb, (size_t)dv * sizeof *b);
    memcpy(b + 2 * dv, vb, (size_t)dv * sizeof *b);
    m->owned_qkv_b[l] = b;
    m->vit[l].qkv_b = b;
    return QF_OK;
}

/* BF16 copies of a ViT layer's matrices (rounded to nearest even); with
 * oneDNN (native BF16 CPUs) they go into its layout and the copies are freed. */
static qf_status vit_layer_bf16(vit_layer *L, const qf_blip2_config *c, int onednn) {
    int D = c->vision.hidden_size, I = c->vision.intermediate_size;
    int g = c->vision.image_size / c->vision.patch_size, M = 1 + g * g;
    struct { const float *f; uint16_t **h; qf_dnnl_mat **d; int n, k; } mats[4] = {
        { L->qkv_w, &L->qkv_h, &L->qkv_d, 3 * D, D }, { L->proj_w, &L->proj_h, &L->proj_d, D, D },
        { L->fc1_w, &L->fc1_h, &L->fc1_d, I, D }, { L->fc2_w, &L->fc2_h, &L->fc2_d, D, I },
    };
    for (int i = 0; i < 4; i++) {
        size_t n = (size_t)mats[i].n * (size_t)mats[i].k;
        if (!(*mats[i].h = qf_malloc(n * sizeof(uint16_t))))
            return qf_errorf(QF_ERR_NOMEM, "out of memory converting the ViT to BF16");
        qf_cpu_f32_to_bf16(*mats[i].h, mats[i].f, n);
        if (onednn) {
            qf_status s = qf_dnnl_mat_create(*mats[i].h, mats[i].n, mats[i].k, M, mats[i].d);
            qf_free(*mats[i].h);
            *mats[i].h = NULL;
            if (s) return s;
        }
    }
    return QF_OK;
}

/* FNV-1a 64 over every tensor's name, dtype, shape and sampled bytes of its
 * data (first/last 4 KiB and 16 strided 256-byte slices): identifies a
 * checkpoint without reading gigabytes. */
static void fingerprint(const qf_st *st, const char *prefix, char out[65]) {
    uint64_t h = 1469598103934665603ull;
    size_t plen = prefix ? strlen(prefix) : 0, n_used = 0;
#define MIX(p, n) do { const unsigned char *b_ = (const unsigned char *)(p); \
        for (size_t i_ = 0; i_ < (size_t)(n); i_++) { h ^= b_[i_]; h *= 1099511628211ull; } } while (0)
    for (size_t i = 0; i < qf_st_count(st); i++) {
        const qf_st_tensor *t = qf_st_at(st, i);
        if (prefix && strncmp(t->name, prefix, plen)) continue;
        n_used++;
        MIX(t->name, strlen(t->name) + 1);
        MIX(&t->dtype, sizeof t->dtype);
        MIX(t->shape, sizeof(int64_t) * (size_t)t->n_dim);
        const unsigned char *d = t->data;
        size_t n = t->n_bytes, head = n < 4096 ? n : 4096;
        MIX(d, head);
        if (n > 8192) {
            MIX(d + n - 4096, 4096);
            for (int k = 1; k <= 16; k++) MIX(d + (n - 256) / 17 * k, 256);
        }
    }
#undef MIX
    uint64_t h2 = h * 0x9E3779B97F4A7C15ull ^ (uint64_t)n_used;
    snprintf(out, 65, "%016llx%016llx",
             (unsigned long long)h, (unsigned long long)h2);
}

static size_t arena_floats(const qf_blip2_config *c) {
    size_t Dv = c->vision.hidden_size, Iv = c->vision.intermediate_size;
    size_t P = c->vision.patch_size, g = c->vision.image_size / P, Nv = 1 + g * g;
    size_t Dq = c->qformer.hidden_size, Iq = c->qformer.intermediate_size;
    size_t L = c->num_query_tokens + c->qformer.max_position_embeddings;
    int Hv = c->vision.num_attention_heads, Hq = c->qformer.num_attention_heads;
    size_t vision = g * g * 3 * P * P + Nv * (Dv * 6 + Iv) +
                    qf_attention_scratch((int)Nv, (int)Nv, Hv, (int)Dv / Hv) + 16;
    size_t Lk = L > Nv ? L : Nv;
    size_t qformer = L * (Dq * 8 + Iq) + 2 * Nv * Dq + qf_attention_scratch((int)L, (int)Lk, Hq, (int)Dq / Hq) +
                     16 + L * 4;
    size_t vis_out = Nv * Dv, heads = (size_t)c->num_query_tokens * (Dq + c->image_text_hidden_size);
    return vision + qformer + vis_out + heads + 64 * 32;
}

qf_status qf_blip2_load(const char *model_dir, int parts, qf_blip2 **out) {
    *out = NULL;
    qf_blip2_config cfg;
    qf_st *st = NULL;
    qf_status s = qf_config_load(model_dir, &cfg);
    if (!s) s = qf_st_open(model_dir, &st);
    if (!s) return qf_blip2_init(&cfg, st, parts, out);
    qf_error_prefix(s, "%s", model_dir);
    return s;
}

qf_status qf_blip2_init(const qf_blip2_config *cfg, struct qf_st *st, int parts, qf_blip2 **out) {
    *out = NULL;
    const char *model_dir = qf_st_path(st);
    qf_blip2 *m = qf_calloc(1, sizeof *m);
    if (!m) {
        qf_st_close(st);
        return qf_errorf(QF_ERR_NOMEM, "out of memory loading %s", model_dir);
    }
    qf_status s = QF_OK;
    m->cfg = *cfg;
    m->st = st;
    m->parts = parts;
    const qf_blip2_config *c = &m->cfg;

    loader ld = { .st = m->st };
    int P = c->vision.patch_size, g = c->vision.image_size / P;
    ld.dim[D_ONE] = 1;  ld.dim[D_TWO] = 2;  ld.dim[D_3] = 3;  ld.dim[D_P] = P;
    ld.dim[D_DV] = c->vision.hidden_size;   ld.dim[D_3DV] = 3 * c->vision.hidden_size;
    ld.dim[D_IV] = c->vision.intermediate_size;  ld.dim[D_NV] = 1 + g * g;
    ld.dim[D_DQ] = c->qformer.hidden_size;  ld.dim[D_IQ] = c->qformer.intermediate_size;
    ld.dim[D_ENC] = c->qformer.encoder_hidden_size;  ld.dim[D_Q] = c->num_query_tokens;
    ld.dim[D_E] = c->image_text_hidden_size;  ld.dim[D_V] = c->qformer.vocab_size;
    ld.dim[D_PMAX] = c->qformer.max_position_embeddings;

    if (parts & QF_BLIP2_QFORMER && c->qformer.encoder_hidden_size != c->vision.hidden_size) {
        s = qf_errorf(QF_ERR_FORMAT, "%s: qformer_config.encoder_hidden_size %d differs from "
                      "vision_config.hidden_size %d", model_dir, c->qformer.encoder_hidden_size,
                      c->vision.hidden_size);
        goto fail;
    }
    if (parts & QF_BLIP2_VISION) {
        int nl = c->vision.num_hidden_layers;
        m->vit = qf_calloc((size_t)nl, sizeof *m->vit);
        m->owned_qkv_b = qf_calloc((size_t)nl, sizeof *m->owned_qkv_b);
        if (!m->vit || !m->owned_qkv_b) { s = qf_errorf(QF_ERR_NOMEM, "out of memory"); goto fail; }
        if ((s = LOAD(&ld, m, vision_specs, 0, NULL, 0))) goto fail;
        for (int l = 0; l < nl; l++) {
            if ((s = LOAD(&ld, &m->vit[l], vit_layer_specs, l, NULL, 0))) goto fail;
            if ((s = load_vit_qkv_bias(m, &ld, l))) goto fail;
            if (parts & QF_BLIP2_VISION_BF16 && (s = vit_layer_bf16(&m->vit[l], c, qf_dnnl_bf16_preferred())))
                goto fail;
        }
    }
    if (parts & QF_BLIP2_QFORMER) {
        int nl = c->qformer.num_hidden_layers;
        m->qfl = qf_calloc((size_t)nl, sizeof *m->qfl);
        if (!m->qfl) { s = qf_errorf(QF_ERR_NOMEM, "out of memory"); goto fail; }
        if ((s = LOAD(&ld, m, qformer_specs, 0, NULL, 0))) goto fail;
        for (int l = 0; l < nl; l++) {
            qformer_layer *L = &m->qfl[l];
            L->has_cross = l % c->qformer.cross_attention_frequency == 0;
            if ((s = LOAD(&ld, &L->self, attn_specs, l, "attention", ld.dim[D_DQ]))) goto fail;
            if (L->has_cross && (s = LOAD(&ld, &L->cross, attn_specs, l, "crossattention", ld.dim[D_ENC])))
                goto fail;
            if ((s = LOAD(&ld, &L->ffn_query, ffn_specs, l, "_query", 0))) goto fail;
            if (parts & QF_BLIP2_RETRIEVAL && (s = LOAD(&ld, &L->ffn_text, ffn_specs, l, "", 0))) goto fail;
        }
    }
    if (parts & QF_BLIP2_RETRIEVAL && (s = LOAD(&ld, m, retrieval_specs, 0, NULL, 0))) goto fail;

    fingerprint(m->st, NULL, m->fingerprint);
    fingerprint(m->st, "vision_model.", m->vision_fingerprint);
    size_t gv = (size_t)(c->vision.image_size / c->vision.patch_size);
    size_t bf16_x = parts & QF_BLIP2_VISION_BF16 ? (1 + gv * gv) * (size_t)c->vision.intermediate_size : 0;
    m->arena_bytes = (arena_floats(c) + bf16_x) * sizeof(float) + (1u << 20);
    *out = m;
    return QF_OK;
fail:
    qf_error_prefix(s, "%s", model_dir);
    qf_blip2_free(m);
    return s;
}

qf_status qf_blip2_inspect(const char *model_dir, qf_blip2_config *cfg, char fingerprint_out[65]) {
    qf_st *st = NULL;
    qf_status s = qf_config_load(model_dir, cfg);
    if (!s) s = qf_st_open(model_dir, &st);
    if (!s) fingerprint(st, NULL, fingerprint_out);
    qf_st_close(st);
    return s;
}

void qf_blip2_free(qf_blip2 *m) {
    if (!m) return;
    if (m->owned_qkv_b)
        for (int l = 0; l < m->cfg.vision.num_hidden_layers; l++) qf_free(m->owned_qkv_b[l]);
    if (m->vit)
        for (int l = 0; l < m->cfg.vision.num_hidden_layers; l++) {
            qf_free(m->vit[l].qkv_h); qf_free(m->vit[l].proj_h);
            qf_free(m->vit[l].fc1_h); qf_free(m->vit[l].fc2_h);
            qf_dnnl_mat_free(m->vit[l].qkv_d); qf_dnnl_mat_free(m->vit[l].proj_d);
            qf_dnnl_mat_free(m->vit[l].fc1_d); qf_dnnl_mat_free(m->vit[l].fc2_d);
        }
    qf_free(m->owned_qkv_b);
    qf_free(m->vit);
    qf_free(m->qfl);
    qf_st_close(m->st);
    qf_free(m);
}

const qf_blip2_config *qf_blip2_get_config(const qf_blip2 *m) { return &m->cfg; }
int qf_blip2_vision_is_bf16(const qf_blip2 *m) {
    return m->vit && (m->vit[0].qkv_h || m->vit[0].qkv_d) ? (m->vit[0].qkv_d ? 2 : 1) : 0;
}
int qf_blip2_n_query(const qf_blip2 *m) { return m->cfg.num_query_tokens; }
int qf_blip2_embed_dim(const qf_blip2 *m) { return m->cfg.image_text_hidden_size; }
int qf_blip2_n_vis(const qf_blip2 *m) {
    int g = m->cfg.vision.image_size / m->cfg.vision.patch_size;
    return 1 + g * g;
}
int qf_blip2_vis_dim(const qf_blip2 *m) { return m->cfg.vision.hidden_size; }
int qf_blip2_q_dim(const qf_blip2 *m) { return m->cfg.qformer.hidden_size; }
int qf_blip2_image_size(const qf_blip2 *m) { return m->cfg.vision.image_size; }
const char *qf_blip2_fingerprint(const qf_blip2 *m) { return m->fingerprint; }
const char *qf_blip2_vision_fingerprint(const qf_blip2 *m) { return m->vision_fingerprint; }
struct qf_st *qf_blip2_weights(const qf_blip2 *m) { return m->st; }

qf_status qf_blip2_state_init(const qf_blip2 *m, qf_blip2_state **out) {
    *out = NULL;
    qf_blip2_state *s = qf_calloc(1, sizeof *s);
    if (!s) return qf_errorf(QF_ERR_NOMEM, "out of memory allocating a model state");
    qf_status st = qf_arena_init(&s->arena, m->arena_bytes);
    if (st) { qf_free(s); return st; }
    if (qf_blip2_vision_is_bf16(m) == 1) {      /* the sgemm engine widens weights here */
        size_t D = (size_t)m->cfg.vision.hidden_size, I = (size_t)m->cfg.vision.intermediate_size;
        s->bf16_w = qf_malloc((3 * D > I ? 3 * D : I) * D * sizeof(float));
        if (!s->bf16_w) {
            qf_blip2_state_free(s);
            return qf_errorf(QF_ERR_NOMEM, "out of memory allocating a model state");
        }
    }
    *out = s;
    return QF_OK;
}

void qf_blip2_state_free(qf_blip2_state *s) {
    if (!s) return;
    qf_arena_free(&s->arena);
    qf_free(s->bf16_w);
    qf_free(s);
}

#define ALLOC(ptr, n) do { if ((st = qf_arena_floats(&s->arena, (size_t)(n), &(ptr)))) return st; } while (0)

/* ---- vision ----------------------------------------------------------- */

/* y[n, out] = x[n, in] @ W^T + b with W float32 (wf) or BF16 (wh). BF16: the
 * activations are rounded to BF16 (xr, n * in floats of scratch) and W
 * widened to float32 (exact), so sgemm computes the BF16 products exactly
 * and accumulates in float32 - the arithmetic of a native BF16 dot-product
 * instruction, on CPUs without one. */
static qf_status vit_linear(qf_blip2_state *s, float *xr, float *y, const float *x, int n, int in,
                            const float *wf, const uint16_t *wh, const qf_dnnl_mat *wd, const float *b, int out) {
    if (wd) {                                       /* oneDNN: x as BF16 into xr's storage */
        uint16_t *xh = (uint16_t *)xr;
        qf_cpu_f32_to_bf16(xh, x, (size_t)n * in);
        qf_status st = qf_dnnl_matmul(wd, xh, y);
        if (st) return st;
        if (b) for (int r = 0; r < n; r++) qf_add(y + (size_t)r * out, b, (size_t)out);
        return QF_OK;
    }
    if (!wh) { qf_linear(y, x, n, in, wf, b, out); return QF_OK; }
    qf_cpu_round_bf16(xr, x, (size_t)n * in);
    qf_cpu_bf16_to_f32(s->bf16_w, wh, (size_t)out * in);
    qf_linear(y, xr, n, in, s->bf16_w, b, out);
    return QF_OK;
}

static qf_status vision_forward(const qf_blip2 *m, qf_blip2_state *s, const float *pixels, float *vis) {
    const qf_vision_config *c = &m->cfg.vision;
    const int D = c->hidden_size, I = c->intermediate_size, H = c->num_attention_heads, dh = D / H;
    const int P = c->patch_size, S = c->image_size, g = S / P, Np = g * g, N = 1 + Np, K = 3 * P * P;
    qf_status st;
    float *patches, *x, *t, *qkv, *ctx, *mlp, *scores;
    ALLOC(patches, (size_t)Np * K);
    ALLOC(x, (size_t)N * D);
    ALLOC(t, (size_t)N * D);
    ALLOC(qkv, (size_t)N * 3 * D);
    ALLOC(ctx, (size_t)N * D);
    ALLOC(mlp, (size_t)N * I);
    const size_t n_scores = qf_attention_scratch(N, N, H, dh);
    ALLOC(scores, n_scores);
    float *xr = NULL;                               /* BF16-rounded GEMM inputs */
    if (qf_blip2_vision_is_bf16(m)) ALLOC(xr, (size_t)N * I);

    /* patch_embedding = Conv2d(3, D, P, stride P): im2col then one GEMM.
     * patches[p, (ch, ky, kx)] with p = py * g + px, matching weight [D, 3, P, P]. */
    for (int py = 0; py < g; py++)
        for (int px = 0; px < g; px++) {
            float *row = patches + (size_t)(py * g + px) * K;
            for (int ch = 0; ch < 3; ch++)
                for (int ky = 0; ky < P; ky++)
                    memcpy(row + (ch * P + ky) * P,
                           pixels + ((size_t)ch * S + py * P + ky) * S + px * P, (size_t)P * sizeof(float));
        }
    /* x = cat(class_embedding, patch_embeds) + position_embedding */
    qf_linear(x + D, patches, Np, K, m->patch_w, m->patch_b, D);
    memcpy(x, m->cls, (size_t)D * sizeof *x);
    qf_add(x, m->pos, (size_t)N * D);

    const float scale = 1.0f / sqrtf((float)dh);
    for (int l = 0; l < c->num_hidden_layers; l++) {
        const vit_layer *L = &m->vit[l];
        /* x = x + projection(attn(qkv(layer_norm1(x)))) */
        qf_layernorm(t, x, N, D, L->ln1_w, L->ln1_b, c->layer_norm_eps);
        if ((st = vit_linear(s, xr, qkv, t, N, D, L->qkv_w, L->qkv_h, L->qkv_d, L->qkv_b, 3 * D))) return st;
        qf_attention(ctx, D, qkv, 3 * D, qkv + D, 3 * D, qkv + 2 * D, 3 * D, N, N, H, dh,
                     scale, NULL, 0, 0, scores, n_scores);
        if ((st = vit_linear(s, xr, t, ctx, N, D, L->proj_w, L->proj_h, L->proj_d, L->proj_b, D))) return st;
        qf_add(x, t, (size_t)N * D);
        /* x = x + fc2(gelu(fc1(layer_norm2(x)))) */
        qf_layernorm(t, x, N, D, L->ln2_w, L->ln2_b, c->layer_norm_eps);
        if ((st = vit_linear(s, xr, mlp, t, N, D, L->fc1_w, L->fc1_h, L->fc1_d, L->fc1_b, I))) return st;
        qf_gelu(mlp, (size_t)N * I);
        if ((st = vit_linear(s, xr, t, mlp, N, I, L->fc2_w, L->fc2_h, L->fc2_d, L->fc2_b, D))) return st;
        qf_add(x, t, (size_t)N * D);
    }
    /* last_hidden_state = post_layernorm(x) */
    qf_layernorm(vis, x, N, D, m->post_ln_w, m->post_ln_b, c->layer_norm_eps);
    return QF_OK;
}

/* ---- Q-Former ----------------------------------------------------------- */

/* One BERT attention block: x_out = LayerNorm(dense(attn(q(x), k(kv), v(kv))) + x).
 * x [Lq, Dq], kv [Lk, Dkv]; mask additive [Lk] or NULL; x_out may equal x. */
static qf_status bert_attention(const qf_blip2 *m, qf_blip2_state *s, const bert_attn *A,
                                float *x_out, const float *x, int Lq, const float *kv, int Lk, int Dkv,
                                const float *mask) {
    const int D = m->cfg.qformer.hidden_size, H = m->cfg.qformer.num_attention_heads, dh = D / H;
    qf_status st;
    float *q, *k, *v, *ctx, *scores;
    ALLOC(q, (size_t)Lq * D);
    ALLOC(k, (size_t)Lk * D);
    ALLOC(v, (size_t)Lk * D);
    ALLOC(ctx, (size_t)Lq * D);
    const size_t n_scores = qf_attention_scratch(Lq, Lk, H, dh);
    ALLOC(scores, n_scores);
    qf_linear(q, x, Lq, D, A->q_w, A->q_b, D);
    qf_linear(k, kv, Lk, Dkv, A->k_w, A->k_b, D);
    qf_linear(v, kv, Lk, Dkv, A->v_w, A->v_b, D);
    qf_attention(ctx, D, q, D, k, D, v, D, Lq, Lk, H, dh, 1.0f / sqrtf((float)dh), mask, 0, 0, scores, n_scores);
    qf_linear(q, ctx, Lq, D, A->o_w, A->o_b, D);
    qf_add(q, x, (size_t)Lq * D);
    qf_layernorm(x_out, q, Lq, D, A->ln_w, A->ln_b, m->cfg.qformer.layer_norm_eps);
    return QF_OK;
}

/* y = LayerNorm(out(gelu(in(x))) + x) over n rows. */
static qf_status bert_ffn_forward(const qf_blip2 *m, qf_blip2_state *s, const bert_ffn *F,
                                  float *y, const float *x, int n) {
    const int D = m->cfg.qformer.hidden_size, I = m->cfg.qformer.intermediate_size;
    qf_status st;
    float *h, *o;
    ALLOC(h, (size_t)n * I);
    ALLOC(o, (size_t)n * D);
    qf_linear(h, x, n, D, F->in_w, F->in_b, I);
    qf_gelu(h, (size_t)n * I);
    qf_linear(o, h, n, I, F->out_w, F->out_b, D);
    qf_add(o, x, (size_t)n * D);
    qf_layernorm(y, o, n, D, F->ln_w, F->ln_b, m->cfg.qformer.layer_norm_eps);
    return QF_OK;
}

/* Q-Former encoder over x [L, Dq] (embeddings after qformer.layernorm), in
 * place. The first n_query rows are queries: they cross-attend to enc
 * [Nv, Denc] in layers with cross-attention and use the *_query FFN; the
 * rest are text rows with the text FFN. mask: additive [L] or NULL. */
static qf_status qformer_forward(const qf_blip2 *m, qf_blip2_state *s, float *x, int L, int n_query,
                                 const float *mask, const float *enc, int n_enc) {
    const qf_qformer_config *c = &m->cfg.qformer;
    const int D = c->hidden_size;
    qf_status st;
    for (int l = 0; l < c->num_hidden_layers; l++) {
        const qformer_layer *Ly = &m->qfl[l];
        size_t mark = s->arena.used;
        /* x = LayerNorm(self_attn(x) + x) over all rows */
        if ((st = bert_attention(m, s, &Ly->self, x, x, L, x, L, D, mask))) return st;
        /* queries: x[:Q] = LayerNorm(cross_attn(x[:Q], enc) + x[:Q]) */
        if (n_query > 0 && Ly->has_cross && enc &&
            (st = bert_attention(m, s, &Ly->cross, x, x, n_query, enc, n_enc, c->encoder_hidden_size, NULL)))
            return st;
        if (n_query > 0 && (st = bert_ffn_forward(m, s, &Ly->ffn_query, x, x, n_query))) return st;
        if (L > n_query) {
            if (!Ly->ffn_text.in_w)
                return qf_errorf(QF_ERR_MISSING, "the checkpoint has no Q-Former text FFN "
                                 "(qformer.encoder.layer.%d.intermediate.dense.weight): not a retrieval model", l);
            if ((st = bert_ffn_forward(m, s, &Ly->ffn_text, x + (size_t)n_query * D,
                                       x + (size_t)n_query * D, L - n_query)))
                return st;
        }
        s->arena.used = mark;
    }
    return QF_OK;
}

/* x[n_query + i] = word_emb[ids[i]] + pos_emb[i], rows then layer-normed
 * together with the query rows already in x[0..n_query). */
static qf_status text_embed(const qf_blip2 *m, float *x, int n_query, const int64_t *ids, int L) {
    const qf_qformer_config *c = &m->cfg.qformer;
    const int D = c->hidden_size;
    if (!m->word_emb)
        return qf_errorf(QF_ERR_MISSING, "the checkpoint has no Q-Former text embeddings "
                         "(embeddings.word_embeddings.weight): not a retrieval model");
    if (L > c->max_position_embeddings)
        return qf_errorf(QF_ERR_LIMIT, "text of %d tokens exceeds the Q-Former's %d positions",
                         L, c->max_position_embeddings);
    for (int i = 0; i < L; i++) {
        if (ids[i] < 0 || ids[i] >= c->vocab_size)
            return qf_errorf(QF_ERR_ARG, "token id %lld at position %d is outside the vocabulary (%d)",
                             (long long)ids[i], i, c->vocab_size);
        float *row = x + (size_t)(n_query + i) * D;
        const float *w = m->word_emb + (size_t)ids[i] * D, *p = m->pos_emb + (size_t)i * D;
        for (int d = 0; d < D; d++) row[d] = w[d] + p[d];
    }
    return QF_OK;
}

static qf_status require(const qf_blip2 *m, int parts, const char *what) {
    if ((m->parts & parts) == parts) return QF_OK;
    return qf_errorf(QF_ERR_ARG, "%s needs model parts that were not loaded", what);
}

qf_status qf_blip2_vision(const qf_blip2 *m, qf_blip2_state *s, const float *pixels, float *vis) {
    qf_status st = require(m, QF_BLIP2_VISION, "the vision encoder");
    if (st) return st;
    qf_arena_reset(&s->arena);
    return vision_forward(m, s, pixels, vis);
}

static qf_status qformer_image(const qf_blip2 *m, qf_blip2_state *s, const float *vis, float *q_out) {
    const int Q = m->cfg.num_query_tokens, D = m->cfg.qformer.hidden_size;
    /* x = layernorm(query_tokens); x = qformer(x, encoder_hidden_states=vis) */
    qf_layernorm(q_out, m->query_tokens, Q, D, m->qf_ln_w, m->qf_ln_b, m->cfg.qformer.layer_norm_eps);
    return qformer_forward(m, s, q_out, Q, Q, NULL, vis, qf_blip2_n_vis(m));
}

qf_status qf_blip2_qformer_image(const qf_blip2 *m, qf_blip2_state *s, const float *vis, float *q_out) {
    qf_status st = require(m, QF_BLIP2_QFORMER, "the Q-Former");
    if (st) return st;
    qf_arena_reset(&s->arena);
    return qformer_image(m, s, vis, q_out);
}

qf_status qf_blip2_image_proj(const qf_blip2 *m, qf_blip2_state *s, const float *q_out, float *feats) {
    (void)s;
    qf_status st = require(m, QF_BLIP2_RETRIEVAL, "the ITC projection");
    if (st) return st;
    const int Q = m->cfg.num_query_tokens, D = m->cfg.qformer.hidden_size, E = m->cfg.image_text_hidden_size;
    /* feats = normalize(vision_projection(q_out), dim=-1) */
    qf_linear(feats, q_out, Q, D, m->vproj_w, m->vproj_b, E);
    qf_l2_normalize(feats, Q, E);
    return QF_OK;
}

qf_status qf_blip2_image_feats(const qf_blip2 *m, qf_blip2_state *s, const float *pixels,
                               float *feats, float *vis, float *q_out) {
    qf_status st = require(m, QF_BLIP2_ALL, "image features");
    if (st) return st;
    qf_arena_reset(&s->arena);
    const int Q = m->cfg.num_query_tokens, D = m->cfg.qformer.hidden_size;
    if (!vis) ALLOC(vis, (size_t)qf_blip2_n_vis(m) * qf_blip2_vis_dim(m));
    if (!q_out) ALLOC(q_out, (size_t)Q * D);
    if ((st = vision_forward(m, s, pixels, vis))) return st;
    if ((st = qformer_image(m, s, vis, q_out))) return st;
    return qf_blip2_image_proj(m, s, q_out, feats);
}

static qf_status additive_mask(qf_blip2_state *s, const int64_t *mask, int n_query, int L, float **out) {
    qf_status st;
    float *am;
    ALLOC(am, (size_t)(n_query + L));
    for (int i = 0; i < n_query; i++) am[i] = 0.0f;
    /* (1 - mask) * -10000 as in get_extended_attention_mask */
    for (int i = 0; i < L; i++) am[n_query + i] = mask ? (1.0f - (float)mask[i]) * -10000.0f : 0.0f;
    *out = am;
    return QF_OK;
}

qf_status qf_blip2_text_feat(const qf_blip2 *m, qf_blip2_state *s, const int64_t *ids,
                             const int64_t *mask, int L, float *feat, float *hidden) {
    qf_status st = require(m, QF_BLIP2_QFORMER | QF_BLIP2_RETRIEVAL, "text features");
    if (st) return st;
    if (L < 1) return qf_errorf(QF_ERR_ARG, "empty token sequence (expected at least [CLS])");
    qf_arena_reset(&s->arena);
    const int D = m->cfg.qformer.hidden_size, E = m->cfg.image_text_hidden_size;
    float *x, *am;
    if (hidden) x = hidden;
    else ALLOC(x, (size_t)L * D);
    if ((st = text_embed(m, x, 0, ids, L))) return st;
    /* x = layernorm(word + position); x = qformer(x, attention_mask) with no queries */
    qf_layernorm(x, x, L, D, m->qf_ln_w, m->qf_ln_b, m->cfg.qformer.layer_norm_eps);
    if ((st = additive_mask(s, mask, 0, L, &am))) return st;
    if ((st = qformer_forward(m, s, x, L, 0, am, NULL, 0))) return st;
    /* feat = normalize(text_projection(x[0])) */
    qf_linear(feat, x, 1, D, m->tproj_w, m->tproj_b, E);
    qf_l2_normalize(feat, 1, E);
    return QF_OK;
}

qf_status qf_blip2_itm(const qf_blip2 *m, qf_blip2_state *s, const float *vis,
                       const int64_t *ids, const int64_t *mask, int L, float logits[2]) {
    qf_status st = require(m, QF_BLIP2_QFORMER | QF_BLIP2_RETRIEVAL, "ITM");
    if (st) return st;
    if (L < 1) return qf_errorf(QF_ERR_ARG, "empty token sequence (expected at least [CLS])");
    qf_arena_reset(&s->arena);
    const int Q = m->cfg.num_query_tokens, D = m->cfg.qformer.hidden_size;
    float *x, *am, *lg;
    ALLOC(x, (size_t)(Q + L) * D);
    /* x = layernorm(cat(query_tokens, word + position)) */
    memcpy(x, m->query_tokens, (size_t)Q * D * sizeof *x);
    if ((st = text_embed(m, x, Q, ids, L))) return st;
    qf_layernorm(x, x, Q + L, D, m->qf_ln_w, m->qf_ln_b, m->cfg.qformer.layer_norm_eps);
    if ((st = additive_mask(s, mask, Q, L, &am))) return st;
    if ((st = qformer_forward(m, s, x, Q + L, Q, am, vis, qf_blip2_n_vis(m)))) return st;
    /* logits = itm_head(x[:Q]).mean(dim=queries) */
    ALLOC(lg, (size_t)Q * 2);
    qf_linear(lg, x, Q, D, m->itm_w, m->itm_b, 2);
    double a = 0, b = 0;
    for (int q = 0; q < Q; q++) { a += lg[2 * q]; b += lg[2 * q + 1]; }
    logits[0] = (float)(a / Q);
    logits[1] = (float)(b / Q);
    return QF_OK;
}

float qf_blip2_itc_score(const float *image_feats, int n_query, const float *text_feat, int dim) {
    float best = -INFINITY;
    for (int q = 0; q < n_query; q++) {
        float d = 0;
        for (int i = 0; i < dim; i++) d += image_feats[(size_t)q * dim + i] * text_feat[i];
        if (d > best) best = d;
    }
    return best;
}
