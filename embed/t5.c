/* t5.c - T5 v1.1 encoder-decoder with KV cache (see t5.h).
 *
 * Layouts: q/k/v rows are [I] = num_heads * d_kv with head h at columns
 * h*d_kv (I need not equal d_model). Self-attention cache: for decoder layer
 * l and sequence s, keys at k[l][s][pos][I] (v alike); cross-attention
 * keys/values of the one encoder output at ck[l][pos][I], shared by every
 * sequence (all beams caption the same image). Decode steps of several
 * sequences share their matrix products (one row per sequence); attention
 * runs per row over its own keys. Everything is float32 except the matrices
 * in BF16 / INT8 modes. */
#include "embed/t5.h"

#include "embed/ops.h"
#include "embed/wmat.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    const float *sa_ln;                 /* layer.0.layer_norm.weight [D]          */
    qf_wmat      sa_q, sa_k, sa_v;      /* layer.0.SelfAttention.{q,k,v} [I, D]   */
    qf_wmat      sa_o;                  /* layer.0.SelfAttention.o [D, I]         */
    const float *ca_ln;                 /* decoder: layer.1.layer_norm.weight [D] */
    qf_wmat      ca_q, ca_k, ca_v;      /* decoder: layer.1.EncDecAttention.* [I, D] */
    qf_wmat      ca_o;                  /* [D, I]                                  */
    const float *ff_ln;                 /* layer.{1,2}.layer_norm.weight [D]       */
    qf_wmat      wi0, wi1;              /* DenseReluDense.wi_0 / wi_1 [F, D] (wi when not gated) */
    qf_wmat      wo;                    /* DenseReluDense.wo [D, F]                */
} t5_block;

struct qf_t5 {
    qf_t5_config   cfg;
    qf_opt_weights wtype;
    int            d_q;                 /* Q-Former hidden (projection input)      */
    const float   *proj_w, *proj_b;     /* language_projection [D, Dq], [D]        */
    const float   *shared;              /* shared.weight [V, D]                    */
    const float   *enc_rel, *dec_rel;   /* block.0...relative_attention_bias [NB, H] */
    const float   *enc_fln, *dec_fln;   /* {encoder,decoder}.final_layer_norm [D]  */
    qf_wmat        lm_head;             /* lm_head.weight [V, D] (shared when tied) */
    t5_block      *enc, *dec;
    qf_wmat_store  store;               /* BF16 / int8 copies made at load         */
};

struct qf_t5_cache {
    int             n_seq, max_enc, max_dec, n_dec, I;
    int             enc_len;            /* rows of the encoded input (0: none)     */
    int            *len;                /* [n_seq]                                 */
    float          *k, *v;              /* [n_dec][n_seq][max_dec][I]              */
    float          *tmp_k, *tmp_v;      /* reorder scratch, same size              */
    float          *ck, *cv;            /* [n_dec][max_enc][I]                     */
    qf_wmat_scratch ws;
    qf_arena        arena;              /* activations                             */
};

typedef struct { size_t off; const char *fmt; int rows, cols; } spec;   /* cols 0: vector */
#define BL(f) offsetof(t5_block, f)
enum { S_D = -1, S_I = -2, S_F = -3 };

static qf_status get_vec(qf_st *st, const char *name, int64_t n, const float **out) {
    int64_t shape[1] = { n };
    return qf_st_get_f32(st, name, 1, shape, out);
}

static qf_status get_f32(qf_st *st, const char *name, int64_t r, int64_t c, const float **out) {
    int64_t shape[2] = { r, c };
    return qf_st_get_f32(st, name, 2, shape, out);
}

static int64_t dim_of(const qf_t5_config *c, int code) {
    return code == S_D ? c->d_model : code == S_I ? (int64_t)c->num_heads * c->d_kv : c->d_ff;
}

/* The blocks of one stack ("encoder" / "decoder") from a spec table. */
static qf_status load_stack(qf_t5 *m, qf_st *st, const char *stack, t5_block *blocks, int n,
                            const spec *specs, size_t n_specs) {
    for (int l = 0; l < n; l++)
        for (size_t i = 0; i < n_specs; i++) {
            const spec *sp = &specs[i];
            char name[256];
            snprintf(name, sizeof name, "language_model.%s.block.%d.%s", stack, l, sp->fmt);
            char *field = (char *)&blocks[l] + sp->off;
            int64_t r = dim_of(&m->cfg, sp->rows);
            qf_status s = sp->cols ? qf_wmat_get(&m->store, st, m->wtype, name, r, dim_of(&m->cfg, sp->cols),
                                                 (qf_wmat *)field)
                                   : get_vec(st, name, r, (const float **)field);
            if (s) return s;
        }
    return QF_OK;
}

qf_status qf_t5_load(qf_st *st, const qf_blip2_config *cfg, qf_opt_weights wtype, qf_t5 **out) {
    *out = NULL;
    if (!cfg->t5.present)
        return qf_errorf(QF_ERR_MISSING, "config.json has no T5 text_config (text_config.model_type is '%s')",
                         cfg->text_model_type);
    const qf_t5_config *c = &cfg->t5;
    qf_t5 *m = qf_calloc(1, sizeof *m);
    if (!m) return qf_errorf(QF_ERR_NOMEM, "out of memory loading T5");
    m->cfg = *c;
    m->wtype = wtype;
    m->d_q = cfg->qformer.hidden_size;
    const int64_t D = c->d_model, V = c->vocab_size, NB = c->relative_attention_num_buckets, H = c->num_heads;
    qf_status s;
    m->enc = qf_calloc((size_t)c->num_layers, sizeof *m->enc);
    m->dec = qf_calloc((size_t)c->num_decoder_layers, sizeof *m->dec);
    if (!m->enc || !m->dec) { s = qf_errorf(QF_ERR_NOMEM, "out of memory loading T5"); goto fail; }
    /* save_pretrained drops encoder/decoder.embed_tokens (tied aliases of
     * shared); older files may hold only those */
    const char *emb = qf_st_find(st, "language_model.shared.weight") || !qf_st_find(st,
                      "language_model.encoder.embed_tokens.weight") ? "language_model.shared.weight"
                                                                   : "language_model.encoder.embed_tokens.weight";
    if ((s = get_f32(st, "language_projection.weight", D, m->d_q, &m->proj_w)) ||
        (s = get_vec(st, "language_projection.bias", D, &m->proj_b)) ||
        (s = get_f32(st, emb, V, D, &m->shared)) ||
        (s = get_f32(st, "language_model.encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                     NB, H, &m->enc_rel)) ||
        (s = get_f32(st, "language_model.decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                     NB, H, &m->dec_rel)) ||
        (s = get_vec(st, "language_model.encoder.final_layer_norm.weight", D, &m->enc_fln)) ||
        (s = get_vec(st, "language_model.decoder.final_layer_norm.weight", D, &m->dec_fln)))
        goto fail;
    const char *head = qf_st_find(st, "language_model.lm_head.weight") || !c->tie_word_embeddings
                       ? "language_model.lm_head.weight" : emb;
    if ((s = qf_wmat_get(&m->store, st, wtype, head, V, D, &m->lm_head))) goto fail;

    const int g = c->is_gated_act;
    const spec enc_specs[] = {
        { BL(sa_ln), "layer.0.layer_norm.weight", S_D, 0 },
        { BL(sa_q), "layer.0.SelfAttention.q.weight", S_I, S_D },
        { BL(sa_k), "layer.0.SelfAttention.k.weight", S_I, S_D },
        { BL(sa_v), "layer.0.SelfAttention.v.weight", S_I, S_D },
        { BL(sa_o), "layer.0.SelfAttention.o.weight", S_D, S_I },
        { BL(ff_ln), "layer.1.layer_norm.weight", S_D, 0 },
        { BL(wi0), g ? "layer.1.DenseReluDense.wi_0.weight" : "layer.1.DenseReluDense.wi.weight", S_F, S_D },
        { BL(wo), "layer.1.DenseReluDense.wo.weight", S_D, S_F },
        { BL(wi1), "layer.1.DenseReluDense.wi_1.weight", S_F, S_D },   /* last: gated only */
    };
    const spec dec_specs[] = {
        { BL(sa_ln), "layer.0.layer_norm.weight", S_D, 0 },
        { BL(sa_q), "layer.0.SelfAttention.q.weight", S_I, S_D },
        { BL(sa_k), "layer.0.SelfAttention.k.weight", S_I, S_D },
        { BL(sa_v), "layer.0.SelfAttention.v.weight", S_I, S_D },
        { BL(sa_o), "layer.0.SelfAttention.o.weight", S_D, S_I },
        { BL(ca_ln), "layer.1.layer_norm.weight", S_D, 0 },
        { BL(ca_q), "layer.1.EncDecAttention.q.weight", S_I, S_D },
        { BL(ca_k), "layer.1.EncDecAttention.k.weight", S_I, S_D },
        { BL(ca_v), "layer.1.EncDecAttention.v.weight", S_I, S_D },
        { BL(ca_o), "layer.1.EncDecAttention.o.weight", S_D, S_I },
        { BL(ff_ln), "layer.2.layer_norm.weight", S_D, 0 },
        { BL(wi0), g ? "layer.2.DenseReluDense.wi_0.weight" : "layer.2.DenseReluDense.wi.weight", S_F, S_D },
        { BL(wo), "layer.2.DenseReluDense.wo.weight", S_D, S_F },
        { BL(wi1), "layer.2.DenseReluDense.wi_1.weight", S_F, S_D },
    };
    size_t ne = sizeof enc_specs / sizeof enc_specs[0], nd = sizeof dec_specs / sizeof dec_specs[0];
    if ((s = load_stack(m, st, "encoder", m->enc, c->num_layers, enc_specs, g ? ne : ne - 1)) ||
        (s = load_stack(m, st, "decoder", m->dec, c->num_decoder_layers, dec_specs, g ? nd : nd - 1)))
        goto fail;
    *out = m;
    return QF_OK;
fail:
    qf_t5_free(m);
    return s;
}

void qf_t5_free(qf_t5 *m) {
    if (!m) return;
    qf_wmat_store_free(&m->store);
    qf_free(m->enc);
    qf_free(m->dec);
    qf_free(m);
}

qf_opt_weights      qf_t5_weight_type(const qf_t5 *m) { return m->wtype; }
const qf_t5_config *qf_t5_get_config(const qf_t5 *m) { return &m->cfg; }
int                 qf_t5_dim(const qf_t5 *m) { return m->cfg.d_model; }
int                 qf_t5_vocab(const qf_t5 *m) { return m->cfg.vocab_size; }

int qf_t5_bucket(int rel, int bidirectional, int num_buckets, int max_distance) {
    int ret = 0, n = num_buckets;
    if (bidirectional) {
        n /= 2;
        if (rel > 0) ret += n;
        rel = rel < 0 ? -rel : rel;
    } else {
        rel = rel < 0 ? -rel : 0;        /* -min(rel, 0) */
    }
    int max_exact = n / 2;
    if (rel < max_exact) return ret + rel;
    /* float32 as HF: log(rel / max_exact) / log(max_distance / max_exact) * (n - max_exact) */
    float v = logf((float)rel / (float)max_exact) / (float)log((double)max_distance / max_exact) *
              (float)(n - max_exact);
    int large = max_exact + (int)v;
    return ret + (large < n - 1 ? large : n - 1);
}

void qf_t5_project(const qf_t5 *m, const float *q_out, int n, float *out) {
    qf_linear(out, q_out, n, m->d_q, m->proj_w, m->proj_b, m->cfg.d_model);
}

qf_status qf_t5_embed(const qf_t5 *m, const int32_t *ids, int n, float *out) {
    const int D = m->cfg.d_model;
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= m->cfg.vocab_size)
            return qf_errorf(QF_ERR_ARG, "token id %d is outside the T5 vocabulary (%d)", ids[i], m->cfg.vocab_size);
        memcpy(out + (size_t)i * D, m->shared + (size_t)ids[i] * D, (size_t)D * sizeof *out);
    }
    return QF_OK;
}

/* ---- cache --------------------------------------------------------------- */

qf_status qf_t5_cache_init(const qf_t5 *m, int n_seq, int max_enc, int max_dec, qf_t5_cache **out) {
    *out = NULL;
    if (n_seq < 1 || max_enc < 1 || max_dec < 1 || max_enc > (1 << 20) || max_dec > (1 << 20))
        return qf_errorf(QF_ERR_ARG, "T5 cache of %d sequences x %d tokens, %d encoder rows: out of range",
                         n_seq, max_dec, max_enc);
    qf_t5_cache *c = qf_calloc(1, sizeof *c);
    if (!c) return qf_errorf(QF_ERR_NOMEM, "out of memory for the KV cache");
    const qf_t5_config *cf = &m->cfg;
    c->n_seq = n_seq; c->max_enc = max_enc; c->max_dec = max_dec;
    c->n_dec = cf->num_decoder_layers; c->I = cf->num_heads * cf->d_kv;
    size_t n = (size_t)c->n_dec * n_seq * max_dec * c->I, ne = (size_t)c->n_dec * max_enc * c->I;
    c->len = qf_calloc((size_t)n_seq, sizeof *c->len);
    c->k = qf_malloc(n * sizeof(float));
    c->v = qf_malloc(n * sizeof(float));
    c->tmp_k = n_seq > 1 ? qf_malloc(n * sizeof(float)) : NULL;
    c->tmp_v = n_seq > 1 ? qf_malloc(n * sizeof(float)) : NULL;
    c->ck = qf_malloc(ne * sizeof(float));
    c->cv = qf_malloc(ne * sizeof(float));
    qf_status s = QF_OK;
    if (!c->len || !c->k || !c->v || (n_seq > 1 && (!c->tmp_k || !c->tmp_v)) || !c->ck || !c->cv)
        s = qf_errorf(QF_ERR_NOMEM, "out of memory for a KV cache of %zu MB", (4 * n + 2 * ne) * sizeof(float) >> 20);
    int kmax = cf->d_ff > cf->d_model ? cf->d_ff : cf->d_model;
    kmax = kmax > c->I ? kmax : c->I;
    if (!s) s = qf_wmat_scratch_init(&c->ws, m->wtype, kmax);
    /* activations of the largest pass: rows x (2D + 4I + 2F) + per-row
     * scores / buckets / bookkeeping, plus alignment slack */
    size_t rows = (size_t)max_enc;
    if ((size_t)max_dec > rows) rows = (size_t)max_dec;
    if ((size_t)n_seq > rows) rows = (size_t)n_seq;
    size_t L = (size_t)(max_enc > max_dec ? max_enc : max_dec);
    size_t floats = rows * (2 * (size_t)cf->d_model + 4 * (size_t)c->I + 2 * (size_t)cf->d_ff + 3) + 2 * L + 64 * 32;
    if (!s) s = qf_arena_init(&c->arena, floats * sizeof(float));
    if (s) { qf_t5_cache_free(c); return s; }
    *out = c;
    return QF_OK;
}

void qf_t5_cache_free(qf_t5_cache *c) {
    if (!c) return;
    qf_free(c->len); qf_free(c->k); qf_free(c->v); qf_free(c->tmp_k); qf_free(c->tmp_v);
    qf_free(c->ck); qf_free(c->cv);
    qf_wmat_scratch_free(&c->ws);
    qf_arena_free(&c->arena);
    qf_free(c);
}

int  qf_t5_cache_len(const qf_t5_cache *c, int seq) { return c->len[seq]; }
void qf_t5_cache_clear(qf_t5_cache *c) { memset(c->len, 0, (size_t)c->n_seq * sizeof *c->len); }

static float *kv_at(const qf_t5_cache *c, float *base, int l, int s, int pos) {
    return base + (((size_t)l * c->n_seq + s) * c->max_dec + pos) * c->I;
}

qf_status qf_t5_cache_reorder(qf_t5_cache *c, const int *src, int n) {
    if (n > c->n_seq) return qf_errorf(QF_ERR_ARG, "cache reorder of %d sequences, cache has %d", n, c->n_seq);
    if (c->n_seq == 1) return QF_OK;
    int old_len[c->n_seq];
    memcpy(old_len, c->len, sizeof old_len);
    for (int l = 0; l < c->n_dec; l++)
        for (int i = 0; i < n; i++) {
            size_t bytes = (size_t)old_len[src[i]] * c->I * sizeof(float);
            memcpy(kv_at(c, c->tmp_k, l, i, 0), kv_at(c, c->k, l, src[i], 0), bytes);
            memcpy(kv_at(c, c->tmp_v, l, i, 0), kv_at(c, c->v, l, src[i], 0), bytes);
        }
    float *t = c->k; c->k = c->tmp_k; c->tmp_k = t;
    t = c->v; c->v = c->tmp_v; c->tmp_v = t;
    for (int i = 0; i < n; i++) c->len[i] = old_len[src[i]];
    return QF_OK;
}

/* ---- kernels ------------------------------------------------------------- */

/* T5LayerNorm: y = w * x * rsqrt(mean(x^2) + eps); no mean, no bias. */
static void rms_norm(float *y, const float *x, int rows, int dim, const float *w, float eps) {
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * dim;
        float *yr = y + (size_t)r * dim;
        double ss = 0;
        for (int i = 0; i < dim; i++) ss += (double)xr[i] * xr[i];
        float rs = 1.0f / sqrtf((float)(ss / dim) + eps);
        for (int i = 0; i < dim; i++) yr[i] = w[i] * (xr[i] * rs);
    }
}

static void activation(qf_t5_act act, float *x, size_t n) {
    if (act == QF_T5_ACT_GELU) { qf_gelu(x, n); return; }
    if (act == QF_T5_ACT_RELU) { qf_relu(x, n); return; }
    /* NewGELUActivation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
    const float k = 0.7978845608028654f;
    for (size_t i = 0; i < n; i++) x[i] = 0.5f * x[i] * (1.0f + tanhf(k * (x[i] + 0.044715f * x[i] * x[i] * x[i])));
}

/* One query row against Lk keys, every head: out[I] = softmax(q k^T +
 * rel[bucket[j], h]) V, no score scaling. K, V rows are [I] apart; rel
 * NULL: no position bias (cross-attention). sc: Lk floats. */
static void attend(float *out, const float *q, const float *K, const float *V, int I, int Lk, int H, int dk,
                   const float *rel, const int *bucket, float *sc) {
    for (int h = 0; h < H; h++) {
        const float *qh = q + (size_t)h * dk;
        float mx = -INFINITY;
        for (int j = 0; j < Lk; j++) {
            const float *kj = K + (size_t)j * I + (size_t)h * dk;
            float s = 0;
            for (int d = 0; d < dk; d++) s += qh[d] * kj[d];
            if (rel) s += rel[(size_t)bucket[j] * H + h];
            sc[j] = s;
            mx = s > mx ? s : mx;
        }
        float sum = 0;
        for (int j = 0; j < Lk; j++) { sc[j] = expf(sc[j] - mx); sum += sc[j]; }
        float *oh = out + (size_t)h * dk;
        memset(oh, 0, (size_t)dk * sizeof *oh);
        for (int j = 0; j < Lk; j++) {
            float p = sc[j] / sum;
            const float *vj = V + (size_t)j * I + (size_t)h * dk;
            for (int d = 0; d < dk; d++) oh[d] += p * vj[d];
        }
    }
}

/* x += wo(act(wi_0 h) * wi_1 h) with h = ff_ln(x); t [R, D], f0/f1 [R, F] scratch. */
static void ffn(const qf_t5 *m, qf_t5_cache *c, const t5_block *B, float *x, float *t, float *f0, float *f1, int R) {
    const int D = m->cfg.d_model, F = m->cfg.d_ff;
    rms_norm(t, x, R, D, B->ff_ln, m->cfg.layer_norm_epsilon);
    qf_wmat_linear(&c->ws, f0, t, R, D, &B->wi0, NULL, F);
    activation(m->cfg.act, f0, (size_t)R * F);
    if (m->cfg.is_gated_act) {
        qf_wmat_linear(&c->ws, f1, t, R, D, &B->wi1, NULL, F);
        for (size_t i = 0; i < (size_t)R * F; i++) f0[i] *= f1[i];
    }
    qf_wmat_linear(&c->ws, t, f0, R, F, &B->wo, NULL, D);
    qf_add(x, t, (size_t)R * D);
}

typedef struct { float *t, *q, *k, *v, *ctx, *f0, *f1, *sc; int *bucket; } bufs;

static qf_status bufs_alloc(qf_t5_cache *c, const qf_t5_config *cf, int R, int with_kv, bufs *b) {
    _Static_assert(sizeof(int) == sizeof(float), "int rows share the float arena");
    const size_t D = (size_t)cf->d_model, I = (size_t)c->I, F = (size_t)cf->d_ff;
    const size_t L = (size_t)(c->max_enc > c->max_dec ? c->max_enc : c->max_dec);
    memset(b, 0, sizeof *b);
    qf_status s;
    if ((s = qf_arena_floats(&c->arena, R * D, &b->t)) || (s = qf_arena_floats(&c->arena, R * I, &b->q)) ||
        (s = qf_arena_floats(&c->arena, R * I, &b->ctx)) || (s = qf_arena_floats(&c->arena, R * F, &b->f0)) ||
        (s = qf_arena_floats(&c->arena, R * F, &b->f1)) || (s = qf_arena_floats(&c->arena, L, &b->sc)) ||
        (s = qf_arena_floats(&c->arena, L, (float **)&b->bucket)))
        return s;
    if (with_kv && ((s = qf_arena_floats(&c->arena, R * I, &b->k)) || (s = qf_arena_floats(&c->arena, R * I, &b->v))))
        return s;
    return QF_OK;
}

/* ---- encoder ------------------------------------------------------------- */

qf_status qf_t5_encode(const qf_t5 *m, qf_t5_cache *c, const float *embeds, int S, float *out) {
    const qf_t5_config *cf = &m->cfg;
    if (S < 1 || S > c->max_enc)
        return qf_errorf(QF_ERR_LIMIT, "encoder input of %d rows: the cache holds %d", S, c->max_enc);
    const int D = cf->d_model, I = c->I, H = cf->num_heads, dk = cf->d_kv;
    const float eps = cf->layer_norm_epsilon;
    qf_arena_reset(&c->arena);
    float *x;
    bufs b;
    qf_status s;
    if ((s = qf_arena_floats(&c->arena, (size_t)S * D, &x)) || (s = bufs_alloc(c, cf, S, 1, &b))) return s;
    memcpy(x, embeds, (size_t)S * D * sizeof *x);
    for (int l = 0; l < cf->num_layers; l++) {
        const t5_block *B = &m->enc[l];
        /* x = x + o(attn(q(ln(x)), k(ln(x)), v(ln(x)), bias = rel[bucket(j - i)])) */
        rms_norm(b.t, x, S, D, B->sa_ln, eps);
        qf_wmat_linear(&c->ws, b.q, b.t, S, D, &B->sa_q, NULL, I);
        qf_wmat_linear(&c->ws, b.k, b.t, S, D, &B->sa_k, NULL, I);
        qf_wmat_linear(&c->ws, b.v, b.t, S, D, &B->sa_v, NULL, I);
        for (int i = 0; i < S; i++) {
            for (int j = 0; j < S; j++)
                b.bucket[j] = qf_t5_bucket(j - i, 1, cf->relative_attention_num_buckets,
                                           cf->relative_attention_max_distance);
            attend(b.ctx + (size_t)i * I, b.q + (size_t)i * I, b.k, b.v, I, S, H, dk, m->enc_rel, b.bucket, b.sc);
        }
        qf_wmat_linear(&c->ws, b.t, b.ctx, S, I, &B->sa_o, NULL, D);
        qf_add(x, b.t, (size_t)S * D);
        ffn(m, c, B, x, b.t, b.f0, b.f1, S);
    }
    rms_norm(x, x, S, D, m->enc_fln, eps);
    if (out) memcpy(out, x, (size_t)S * D * sizeof *out);
    /* cross-attention keys/values of every decoder layer, once */
    for (int l = 0; l < cf->num_decoder_layers; l++) {
        qf_wmat_linear(&c->ws, c->ck + (size_t)l * c->max_enc * I, x, S, D, &m->dec[l].ca_k, NULL, I);
        qf_wmat_linear(&c->ws, c->cv + (size_t)l * c->max_enc * I, x, S, D, &m->dec[l].ca_v, NULL, I);
    }
    c->enc_len = S;
    qf_t5_cache_clear(c);
    return QF_OK;
}

/* ---- decoder ------------------------------------------------------------- */

/* R rows; row r belongs to sequence seq_of[r] at position pos_of[r]; rows of
 * one sequence are consecutive with increasing positions. x [R, D] holds the
 * token embeddings and is overwritten with final_layer_norm's output. */
static qf_status decoder_rows(const qf_t5 *m, qf_t5_cache *c, float *x, int R, const int *seq_of, const int *pos_of) {
    const qf_t5_config *cf = &m->cfg;
    const int D = cf->d_model, I = c->I, H = cf->num_heads, dk = cf->d_kv;
    const float eps = cf->layer_norm_epsilon;
    bufs b;
    qf_status s = bufs_alloc(c, cf, R, 0, &b);
    if (s) return s;
    for (int l = 0; l < cf->num_decoder_layers; l++) {
        const t5_block *B = &m->dec[l];
        /* x = x + o(attn(q, k, v over positions <= own, bias = rel[causal bucket(j - p)])) */
        rms_norm(b.t, x, R, D, B->sa_ln, eps);
        qf_wmat_linear(&c->ws, b.q, b.t, R, D, &B->sa_q, NULL, I);
        for (int r0 = 0; r0 < R;) {
            int r1 = r0;
            while (r1 < R && seq_of[r1] == seq_of[r0]) r1++;
            int sq = seq_of[r0];
            qf_wmat_linear(&c->ws, kv_at(c, c->k, l, sq, pos_of[r0]), b.t + (size_t)r0 * D, r1 - r0, D, &B->sa_k, NULL, I);
            qf_wmat_linear(&c->ws, kv_at(c, c->v, l, sq, pos_of[r0]), b.t + (size_t)r0 * D, r1 - r0, D, &B->sa_v, NULL, I);
            for (int r = r0; r < r1; r++) {
                int p = pos_of[r];
                for (int j = 0; j <= p; j++)
                    b.bucket[j] = qf_t5_bucket(j - p, 0, cf->relative_attention_num_buckets,
                                               cf->relative_attention_max_distance);
                attend(b.ctx + (size_t)r * I, b.q + (size_t)r * I, kv_at(c, c->k, l, sq, 0), kv_at(c, c->v, l, sq, 0),
                       I, p + 1, H, dk, m->dec_rel, b.bucket, b.sc);
            }
            r0 = r1;
        }
        qf_wmat_linear(&c->ws, b.t, b.ctx, R, I, &B->sa_o, NULL, D);
        qf_add(x, b.t, (size_t)R * D);
        /* x = x + o(attn(q(ln(x)), encoder keys/values)), no position bias */
        rms_norm(b.t, x, R, D, B->ca_ln, eps);
        qf_wmat_linear(&c->ws, b.q, b.t, R, D, &B->ca_q, NULL, I);
        const float *ck = c->ck + (size_t)l * c->max_enc * I, *cv = c->cv + (size_t)l * c->max_enc * I;
        for (int r = 0; r < R; r++)
            attend(b.ctx + (size_t)r * I, b.q + (size_t)r * I, ck, cv, I, c->enc_len, H, dk, NULL, NULL, b.sc);
        qf_wmat_linear(&c->ws, b.t, b.ctx, R, I, &B->ca_o, NULL, D);
        qf_add(x, b.t, (size_t)R * D);
        ffn(m, c, B, x, b.t, b.f0, b.f1, R);
    }
    rms_norm(x, x, R, D, m->dec_fln, eps);
    /* tied head: sequence_output * d_model^-0.5 (Flan-T5 is untied: no scaling;
     * transformers 5.x configs say so with scale_decoder_outputs) */
    if (cf->scale_decoder_outputs) {
        float sc = 1.0f / sqrtf((float)D);
        for (size_t i = 0; i < (size_t)R * D; i++) x[i] *= sc;
    }
    return QF_OK;
}

/* Resets the arena and takes a pass's row buffers: x [R, D] and, per row,
 * its sequence and position. */
static qf_status rows_alloc(qf_t5_cache *c, int R, int D, float **x, int **seq_of, int **pos_of) {
    qf_arena_reset(&c->arena);
    qf_status st;
    if ((st = qf_arena_floats(&c->arena, (size_t)R * D, x)) ||
        (st = qf_arena_floats(&c->arena, (size_t)R, (float **)seq_of)) ||
        (st = qf_arena_floats(&c->arena, (size_t)R, (float **)pos_of)))
        return st;
    return QF_OK;
}

static void lm_head(const qf_t5 *m, qf_t5_cache *c, const float *h, int n, float *logits) {
    /* logits[n, V] = h[n, D] @ lm_head[V, D]^T */
    qf_wmat_linear(&c->ws, logits, h, n, m->cfg.d_model, &m->lm_head, NULL, m->cfg.vocab_size);
}

qf_status qf_t5_forward(const qf_t5 *m, qf_t5_cache *c, int seq, const int32_t *ids, int T,
                        float *logits, float *all_logits) {
    if (seq < 0 || seq >= c->n_seq) return qf_errorf(QF_ERR_ARG, "sequence %d outside the cache", seq);
    if (!c->enc_len) return qf_errorf(QF_ERR_ARG, "T5 decoder run before the encoder");
    if (T < 1 || c->len[seq] + T > c->max_dec)
        return qf_errorf(QF_ERR_LIMIT, "decoder sequence of %d tokens exceeds the cache's %d", c->len[seq] + T, c->max_dec);
    const int D = m->cfg.d_model;
    float *x;
    int *seq_of, *pos_of;
    qf_status st = rows_alloc(c, T, D, &x, &seq_of, &pos_of);
    if (st || (st = qf_t5_embed(m, ids, T, x))) return st;
    for (int i = 0; i < T; i++) { seq_of[i] = seq; pos_of[i] = c->len[seq] + i; }
    if ((st = decoder_rows(m, c, x, T, seq_of, pos_of))) return st;
    c->len[seq] += T;
    if (all_logits) lm_head(m, c, x, T, all_logits);
    if (logits) lm_head(m, c, x + (size_t)(T - 1) * D, 1, logits);
    return QF_OK;
}

qf_status qf_t5_decode(const qf_t5 *m, qf_t5_cache *c, const int32_t *ids, int n, float *logits) {
    if (n < 1 || n > c->n_seq) return qf_errorf(QF_ERR_ARG, "%d sequences, the cache has %d", n, c->n_seq);
    if (!c->enc_len) return qf_errorf(QF_ERR_ARG, "T5 decoder run before the encoder");
    for (int i = 0; i < n; i++)
        if (c->len[i] + 1 > c->max_dec)
            return qf_errorf(QF_ERR_LIMIT, "sequence %d is full (%d tokens)", i, c->max_dec);
    const int D = m->cfg.d_model;
    float *x;
    int *seq_of, *pos_of;
    qf_status st = rows_alloc(c, n, D, &x, &seq_of, &pos_of);
    if (st || (st = qf_t5_embed(m, ids, n, x))) return st;
    for (int i = 0; i < n; i++) { seq_of[i] = i; pos_of[i] = c->len[i]; }
    if ((st = decoder_rows(m, c, x, n, seq_of, pos_of))) return st;
    for (int i = 0; i < n; i++) c->len[i]++;
    lm_head(m, c, x, n, logits);
    return QF_OK;
}
