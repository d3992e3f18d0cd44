/* opt.c - OPT decoder with KV cache (see opt.h).
 *
 * Cache layout: for layer l and sequence s, keys at k[l][s][pos][D] (and v
 * alike), max_len positions per sequence. Decode steps of several sequences
 * share their GEMMs (one row per sequence); attention runs per sequence over
 * its own cache. Queries are scaled by head_dim^-0.5 before q k^T, as
 * OPTAttention does. */
#include "embed/opt.h"

#include "embed/ops.h"
#include "embed/wmat.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* A weight matrix [N, K] in the model's weight type (embed/wmat.h). */
typedef qf_wmat wmat;

typedef struct {
    const float *ln1_w, *ln1_b;   /* self_attn_layer_norm [D]      */
    wmat         q, k, v, o;      /* self_attn.{q,k,v,out}_proj [D, D] */
    const float *q_b, *k_b, *v_b, *o_b;
    const float *ln2_w, *ln2_b;   /* final_layer_norm     [D]      */
    wmat         fc1, fc2;        /* fc1 [F, D], fc2 [D, F]        */
    const float *fc1_b, *fc2_b;
} opt_layer;

struct qf_opt {
    qf_opt_config cfg;
    qf_opt_weights wtype;
    int           d_q;            /* Q-Former hidden (projection input) */
    const float  *proj_w, *proj_b;/* language_projection [D, Dq]        */
    const float  *embed;          /* decoder.embed_tokens.weight [V, D] */
    const float  *pos;            /* decoder.embed_positions.weight [P+2, D] */
    const float  *fln_w, *fln_b;  /* decoder.final_layer_norm [D] (NULL if removed) */
    wmat          lm_head;        /* lm_head.weight [V, D], or embed_tokens when tied */
    opt_layer    *layers;
    qf_wmat_store store;          /* BF16 / int8 copies made at load    */
};

struct qf_opt_cache {
    int       n_seq, max_len, n_layer, D;
    int      *len;                /* [n_seq]                       */
    float    *k, *v;              /* [n_layer][n_seq][max_len][D]  */
    float    *tmp_k, *tmp_v;      /* reorder scratch, same size    */
    qf_wmat_scratch ws;           /* BF16 / int8 product scratch   */
    qf_arena  arena;              /* activations                   */
};

/* The [r, c] matrix `name` in the model's weight type: float32 and BF16 in
 * place when the file stores them so, else converted once into a copy
 * owned by m (int8: quantized per row). */
static qf_status get_mat(qf_opt *m, qf_st *st, const char *name, int64_t r, int64_t c, wmat *w) {
    return qf_wmat_get(&m->store, st, m->wtype, name, r, c, w);
}

const char *qf_opt_weights_name(qf_opt_weights w) {
    return w == QF_OPT_BF16 ? "bf16" : w == QF_OPT_INT8 ? "int8" : "f32";
}

qf_status qf_opt_weights_parse(const char *s, qf_opt_weights *out) {
    for (int w = QF_OPT_F32; w <= QF_OPT_INT8; w++)
        if (s && !strcmp(s, qf_opt_weights_name((qf_opt_weights)w))) { *out = (qf_opt_weights)w; return QF_OK; }
    return qf_errorf(QF_ERR_ARG, "unknown weight type '%s' (f32, bf16 or int8)", s ? s : "");
}

/* Symbolic dimensions of the tensor table, resolved from the config (as
 * blip2.c's table). */
enum { D_NONE, D_D, D_F, D_V, D_DQ, D_P2, D_COUNT };

/* Flags of a table entry: MAT, the field is a wmat held in the model's
 * weight type (else a `const float *` in float32); BIAS, a linear layer's
 * bias, absent when the config says enable_bias = false; FINAL_LN, absent
 * when the config removes the final layer norm. */
enum { MAT = 1, BIAS = 2, FINAL_LN = 4 };

typedef struct {
    size_t      off;                /* offset of the field                   */
    const char *fmt;                /* HF tensor name; %d = layer index      */
    int         dims[2];            /* symbolic shape, D_NONE-terminated     */
    int         flags;
} tensor_spec;

#define M(f) offsetof(struct qf_opt, f)
static const tensor_spec model_specs[] = {
    { M(proj_w), "language_projection.weight",                             { D_D, D_DQ }, 0 },
    { M(proj_b), "language_projection.bias",                               { D_D },       0 },
    { M(embed),  "language_model.model.decoder.embed_tokens.weight",       { D_V, D_D },  0 },
    { M(pos),    "language_model.model.decoder.embed_positions.weight",    { D_P2, D_D }, 0 },
    { M(fln_w),  "language_model.model.decoder.final_layer_norm.weight",   { D_D },       FINAL_LN },
    { M(fln_b),  "language_model.model.decoder.final_layer_norm.bias",     { D_D },       FINAL_LN },
};

#define OL(f) offsetof(opt_layer, f)
static const tensor_spec layer_specs[] = {
    { OL(ln1_w), "language_model.model.decoder.layers.%d.self_attn_layer_norm.weight", { D_D },      0 },
    { OL(ln1_b), "language_model.model.decoder.layers.%d.self_attn_layer_norm.bias",   { D_D },      0 },
    { OL(q),     "language_model.model.decoder.layers.%d.self_attn.q_proj.weight",     { D_D, D_D }, MAT },
    { OL(q_b),   "language_model.model.decoder.layers.%d.self_attn.q_proj.bias",       { D_D },      BIAS },
    { OL(k),     "language_model.model.decoder.layers.%d.self_attn.k_proj.weight",     { D_D, D_D }, MAT },
    { OL(k_b),   "language_model.model.decoder.layers.%d.self_attn.k_proj.bias",       { D_D },      BIAS },
    { OL(v),     "language_model.model.decoder.layers.%d.self_attn.v_proj.weight",     { D_D, D_D }, MAT },
    { OL(v_b),   "language_model.model.decoder.layers.%d.self_attn.v_proj.bias",       { D_D },      BIAS },
    { OL(o),     "language_model.model.decoder.layers.%d.self_attn.out_proj.weight",   { D_D, D_D }, MAT },
    { OL(o_b),   "language_model.model.decoder.layers.%d.self_attn.out_proj.bias",     { D_D },      BIAS },
    { OL(ln2_w), "language_model.model.decoder.layers.%d.final_layer_norm.weight",     { D_D },      0 },
    { OL(ln2_b), "language_model.model.decoder.layers.%d.final_layer_norm.bias",       { D_D },      0 },
    { OL(fc1),   "language_model.model.decoder.layers.%d.fc1.weight",                  { D_F, D_D }, MAT },
    { OL(fc1_b), "language_model.model.decoder.layers.%d.fc1.bias",                    { D_F },      BIAS },
    { OL(fc2),   "language_model.model.decoder.layers.%d.fc2.weight",                  { D_D, D_F }, MAT },
    { OL(fc2_b), "language_model.model.decoder.layers.%d.fc2.bias",                    { D_D },      BIAS },
};

/* Loads every entry of `specs` that the config has into the struct at
 * `base` (name formatted with `layer`): one path, so every tensor gets the
 * same presence, dtype and shape checks and messages. */
static qf_status load_specs(qf_opt *m, qf_st *st, const int64_t *dim, void *base, const tensor_spec *specs,
                            size_t n, int layer) {
    for (size_t i = 0; i < n; i++) {
        const tensor_spec *sp = &specs[i];
        if ((sp->flags & BIAS && !m->cfg.enable_bias) || (sp->flags & FINAL_LN && m->cfg.remove_final_layer_norm))
            continue;
        char name[256];
        snprintf(name, sizeof name, sp->fmt, layer);
        int64_t shape[2];
        int nd = 0;
        for (; nd < 2 && sp->dims[nd] != D_NONE; nd++) shape[nd] = dim[sp->dims[nd]];
        char *field = (char *)base + sp->off;
        qf_status s = sp->flags & MAT ? get_mat(m, st, name, shape[0], shape[1], (wmat *)field)
                                      : qf_st_get_f32(st, name, nd, shape, (const float **)field);
        if (s) return s;
    }
    return QF_OK;
}
#define LOAD(m, st, dim, base, specs, layer) \
    load_specs((m), (st), (dim), (base), (specs), sizeof(specs) / sizeof((specs)[0]), (layer))

qf_status qf_opt_load(qf_st *st, const qf_blip2_config *cfg, qf_opt_weights wtype, qf_opt **out) {
    *out = NULL;
    if (!cfg->text.present)
        return qf_errorf(QF_ERR_MISSING, "config.json has no OPT text_config: not a captioning checkpoint");
    const qf_opt_config *c = &cfg->text;
    if (c->word_embed_proj_dim != c->hidden_size || !c->do_layer_norm_before)
        return qf_errorf(QF_ERR_UNSUPPORTED, "OPT variants with word_embed_proj_dim != hidden_size or "
                         "post-LN blocks (opt-350m) are not supported");
    if (!c->relu)
        return qf_errorf(QF_ERR_UNSUPPORTED, "OPT activation other than relu is not supported");
    qf_opt *m = qf_calloc(1, sizeof *m);
    if (!m) return qf_errorf(QF_ERR_NOMEM, "out of memory loading OPT");
    m->cfg = *c;
    m->wtype = wtype;
    m->d_q = cfg->qformer.hidden_size;
    int64_t dim[D_COUNT] = { 0 };
    dim[D_D] = c->hidden_size;
    dim[D_F] = c->ffn_dim;
    dim[D_V] = c->vocab_size;
    dim[D_DQ] = m->d_q;
    dim[D_P2] = c->max_position_embeddings + 2;  /* OPT's learned positions start at offset 2 */
    qf_status s;
    m->layers = qf_calloc((size_t)c->num_hidden_layers, sizeof *m->layers);
    if (!m->layers) { s = qf_errorf(QF_ERR_NOMEM, "out of memory loading OPT"); goto fail; }
    if ((s = LOAD(m, st, dim, m, model_specs, 0))) goto fail;
    /* save_pretrained drops lm_head when it is tied to embed_tokens */
    if ((s = get_mat(m, st, qf_st_find(st, "language_model.lm_head.weight") ? "language_model.lm_head.weight"
                     : "language_model.model.decoder.embed_tokens.weight", dim[D_V], dim[D_D], &m->lm_head)))
        goto fail;
    for (int l = 0; l < c->num_hidden_layers; l++)
        if ((s = LOAD(m, st, dim, &m->layers[l], layer_specs, l))) goto fail;
    *out = m;
    return QF_OK;
fail:
    qf_opt_free(m);
    return s;
}

void qf_opt_free(qf_opt *m) {
    if (!m) return;
    qf_wmat_store_free(&m->store);
    qf_free(m->layers);
    qf_free(m);
}

qf_opt_weights qf_opt_weight_type(const qf_opt *m) { return m->wtype; }

int qf_opt_dim(const qf_opt *m) { return m->cfg.hidden_size; }
int qf_opt_vocab(const qf_opt *m) { return m->cfg.vocab_size; }
int qf_opt_max_positions(const qf_opt *m) { return m->cfg.max_position_embeddings; }

void qf_opt_project(const qf_opt *m, const float *q_out, int n, float *out) {
    qf_linear(out, q_out, n, m->d_q, m->proj_w, m->proj_b, m->cfg.hidden_size);
}

qf_status qf_opt_embed(const qf_opt *m, const int32_t *ids, int n, float *out) {
    const int D = m->cfg.hidden_size;
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= m->cfg.vocab_size)
            return qf_errorf(QF_ERR_ARG, "token id %d is outside the OPT vocabulary (%d)", ids[i], m->cfg.vocab_size);
        memcpy(out + (size_t)i * D, m->embed + (size_t)ids[i] * D, (size_t)D * sizeof *out);
    }
    return QF_OK;
}

qf_status qf_opt_cache_init(const qf_opt *m, int n_seq, int max_len, qf_opt_cache **out) {
    *out = NULL;
    if (n_seq < 1 || max_len < 1 || max_len > m->cfg.max_position_embeddings)
        return qf_errorf(QF_ERR_ARG, "OPT cache of %d sequences x %d positions: the model has %d positions",
                         n_seq, max_len, m->cfg.max_position_embeddings);
    qf_opt_cache *c = qf_calloc(1, sizeof *c);
    if (!c) return qf_errorf(QF_ERR_NOMEM, "out of memory for the KV cache");
    c->n_seq = n_seq; c->max_len = max_len; c->n_layer = m->cfg.num_hidden_layers; c->D = m->cfg.hidden_size;
    size_t n = (size_t)c->n_layer * n_seq * max_len * c->D;
    c->len = qf_calloc((size_t)n_seq, sizeof *c->len);
    c->k = qf_malloc(n * sizeof(float));
    c->v = qf_malloc(n * sizeof(float));
    c->tmp_k = n_seq > 1 ? qf_malloc(n * sizeof(float)) : NULL;
    c->tmp_v = n_seq > 1 ? qf_malloc(n * sizeof(float)) : NULL;
    qf_status s = QF_OK;
    if (!c->len || !c->k || !c->v || (n_seq > 1 && (!c->tmp_k || !c->tmp_v)))
        s = qf_errorf(QF_ERR_NOMEM, "out of memory for a KV cache of %zu MB", 4 * n * sizeof(float) >> 20);
    if (!s) s = qf_wmat_scratch_init(&c->ws, m->wtype, m->cfg.ffn_dim > c->D ? m->cfg.ffn_dim : c->D);
    /* activations: rows = max(max_len, n_seq) */
    size_t rows = (size_t)(max_len > n_seq ? max_len : n_seq), D = c->D, F = m->cfg.ffn_dim;
    int H = m->cfg.num_attention_heads;
    size_t floats = rows * (6 * D + F) + qf_attention_scratch((int)rows, max_len, H, (int)D / H) + 4096;
    if (!s) s = qf_arena_init(&c->arena, floats * sizeof(float));
    if (s) { qf_opt_cache_free(c); return s; }
    *out = c;
    return QF_OK;
}

void qf_opt_cache_free(qf_opt_cache *c) {
    if (!c) return;
    qf_free(c->len); qf_free(c->k); qf_free(c->v); qf_free(c->tmp_k); qf_free(c->tmp_v);
    qf_wmat_scratch_free(&c->ws);
    qf_arena_free(&c->arena);
    qf_free(c);
}

int qf_opt_cache_len(const qf_opt_cache *c, int seq) { return c->len[seq]; }
void qf_opt_cache_clear(qf_opt_cache *c) { memset(c->len, 0, (size_t)c->n_seq * sizeof *c->len); }

static float *kv_at(const qf_opt_cache *c, float *base, int l, int s, int pos) {
    return base + (((size_t)l * c->n_seq + s) * c->max_len + pos) * c->D;
}

qf_status qf_opt_cache_reorder(qf_opt_cache *c, const int *src, int n) {
    if (n > c->n_seq) return qf_errorf(QF_ERR_ARG, "cache reorder of %d sequences, cache has %d", n, c->n_seq);
    int old_len[c->n_seq];
    memcpy(old_len, c->len, sizeof old_len);
    if (c->n_seq == 1) return QF_OK;
    for (int l = 0; l < c->n_layer; l++)
        for (int i = 0; i < n; i++) {
            size_t bytes = (size_t)old_len[src[i]] * c->D * sizeof(float);
            memcpy(kv_at(c, c->tmp_k, l, i, 0), kv_at(c, c->k, l, src[i], 0), bytes);
            memcpy(kv_at(c, c->tmp_v, l, i, 0), kv_at(c, c->v, l, src[i], 0), bytes);
        }
    float *t = c->k; c->k = c->tmp_k; c->tmp_k = t;
    t = c->v; c->v = c->tmp_v; c->tmp_v = t;
    for (int i = 0; i < n; i++) c->len[i] = old_len[src[i]];
    return QF_OK;
}

/* y[R, N] = x[R, K] @ W^T + b in the weights' type (qf_wmat_linear: sgemm /
 * matvec for float32, the W8A8 kernel for int8, BF16 streamed for up to 64
 * rows and widened for sgemm beyond). */
static void lin(qf_opt_cache *c, float *y, const float *x, int R, int K, const wmat *w, const float *b, int N) {
    qf_wmat_linear(&c->ws, y, x, R, K, w, b, N);
}

/* Core: R rows; row r belongs to sequence seq_of[r] at position pos_of[r].
 * Rows of one sequence are consecutive with increasing positions. x [R, D]
 * holds the input embeddings (positions are added here) and is overwritten. */
static qf_status decoder_rows(const qf_opt *m, qf_opt_cache *c, float *x, int R,
                              const int *seq_of, const int *pos_of) {
    const int D = c->D, F = m->cfg.ffn_dim, H = m->cfg.num_attention_heads, dh = D / H;
    const float scale = 1.0f / sqrtf((float)dh);
    qf_status st;
    float *t, *q, *ctx, *ffn, *scores;
    const size_t n_scores = qf_attention_scratch(R, c->max_len, H, dh);
    if ((st = qf_arena_floats(&c->arena, (size_t)R * D, &t)) ||
        (st = qf_arena_floats(&c->arena, (size_t)R * D, &q)) ||
        (st = qf_arena_floats(&c->arena, (size_t)R * D, &ctx)) ||
        (st = qf_arena_floats(&c->arena, (size_t)R * F, &ffn)) ||
        (st = qf_arena_floats(&c->arena, n_scores, &scores)))
        return st;
    /* x = inputs_embeds + embed_positions(position + 2) */
    for (int r = 0; r < R; r++) qf_add(x + (size_t)r * D, m->pos + (size_t)(pos_of[r] + 2) * D, (size_t)D);

    for (int l = 0; l < c->n_layer; l++) {
        const opt_layer *L = &m->layers[l];
        /* x = x + out_proj(attn(q_proj(ln(x)) * scale, k_proj(ln(x)), v_proj(ln(x)))) */
        qf_layernorm(t, x, R, D, L->ln1_w, L->ln1_b, 1e-5f);
        lin(c, q, t, R, D, &L->q, L->q_b, D);
        for (size_t i = 0; i < (size_t)R * D; i++) q[i] *= scale;
        /* keys/values go straight into the cache rows */
        for (int r0 = 0; r0 < R;) {
            int r1 = r0;
            while (r1 < R && seq_of[r1] == seq_of[r0]) r1++;
            int s = seq_of[r0];
            lin(c, kv_at(c, c->k, l, s, pos_of[r0]), t + (size_t)r0 * D, r1 - r0, D, &L->k, L->k_b, D);
            lin(c, kv_at(c, c->v, l, s, pos_of[r0]), t + (size_t)r0 * D, r1 - r0, D, &L->v, L->v_b, D);
            int Lk = pos_of[r1 - 1] + 1;
            qf_attention(ctx + (size_t)r0 * D, D, q + (size_t)r0 * D, D, kv_at(c, c->k, l, s, 0), D,
                         kv_at(c, c->v, l, s, 0), D, r1 - r0, Lk, H, dh, 1.0f, NULL, 1, pos_of[r0], scores, n_scores);
            r0 = r1;
        }
        lin(c, t, ctx, R, D, &L->o, L->o_b, D);
        qf_add(x, t, (size_t)R * D);
        /* x = x + fc2(relu(fc1(final_layer_norm(x)))) */
        qf_layernorm(t, x, R, D, L->ln2_w, L->ln2_b, 1e-5f);
        lin(c, ffn, t, R, D, &L->fc1, L->fc1_b, F);
        qf_relu(ffn, (size_t)R * F);
        lin(c, t, ffn, R, F, &L->fc2, L->fc2_b, D);
        qf_add(x, t, (size_t)R * D);
    }
    if (m->fln_w) qf_layernorm(x, x, R, D, m->fln_w, m->fln_b, 1e-5f);
    return QF_OK;
}

static void lm_head(const qf_opt *m, qf_opt_cache *c, const float *h, int n, float *logits) {
    /* logits[n, V] = h[n, D] @ lm_head[V, D]^T */
    lin(c, logits, h, n, m->cfg.hidden_size, &m->lm_head, NULL, m->cfg.vocab_size);
}

/* Resets the arena and takes a pass's row buffers: x [R, D] and, per row,
 * its sequence and position (ints, in float-sized arena slots). */
static qf_status rows_alloc(qf_opt_cache *c, int R, float **x, int **seq_of, int **pos_of) {
    _Static_assert(sizeof(int) == sizeof(float), "int rows share the float arena");
    qf_arena_reset(&c->arena);
    qf_status st;
    if ((st = qf_arena_floats(&c->arena, (size_t)R * c->D, x)) ||
        (st = qf_arena_floats(&c->arena, (size_t)R, (float **)seq_of)) ||
        (st = qf_arena_floats(&c->arena, (size_t)R, (float **)pos_of)))
        return st;
    return QF_OK;
}

qf_status qf_opt_forward(const qf_opt *m, qf_opt_cache *c, int seq, const float *embeds, int T,
                         float *logits, float *all_logits) {
    if (seq < 0 || seq >= c->n_seq) return qf_errorf(QF_ERR_ARG, "sequence %d outside the cache", seq);
    if (c->len[seq] + T > c->max_len)
        return qf_errorf(QF_ERR_LIMIT, "sequence of %d positions exceeds the cache's %d", c->len[seq] + T, c->max_len);
    float *x;
    int *seq_of, *pos_of;
    qf_status st = rows_alloc(c, T, &x, &seq_of, &pos_of);
    if (st) return st;
    memcpy(x, embeds, (size_t)T * c->D * sizeof *x);
    for (int i = 0; i < T; i++) { seq_of[i] = seq; pos_of[i] = c->len[seq] + i; }
    if ((st = decoder_rows(m, c, x, T, seq_of, pos_of))) return st;
    c->len[seq] += T;
    if (all_logits) lm_head(m, c, x, T, all_logits);
    if (logits) lm_head(m, c, x + (size_t)(T - 1) * c->D, 1, logits);
    return QF_OK;
}

qf_status qf_opt_decode(const qf_opt *m, qf_opt_cache *c, const int32_t *ids, int n, float *logits) {
    if (n > c->n_seq) return qf_errorf(QF_ERR_ARG, "%d sequences, the cache has %d", n, c->n_seq);
    for (int i = 0; i < n; i++)
        if (c->len[i] + 1 > c->max_len)
            return qf_errorf(QF_ERR_LIMIT, "sequence %d is full (%d positions)", i, c->max_len);
    float *x;
    int *seq_of, *pos_of;
    qf_status st = rows_alloc(c, n, &x, &seq_of, &pos_of);
    if (st) return st;
    if ((st = qf_opt_embed(m, ids, n, x))) return st;
    for (int i = 0; i < n; i++) { seq_of[i] = i; pos_of[i] = c->len[i]; }
    if ((st = decoder_rows(m, c, x, n, seq_of, pos_of))) return st;
    for (int i = 0; i < n; i++) c->len[i]++;
    lm_head(m, c, x, n, logits);
    return QF_OK;
}
