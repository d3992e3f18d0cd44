/* test_t5.c - T5 invariants on the tiny Flan-T5 fixture: relative position
 * buckets (values of HF's formula, ranges, symmetry), incremental decoding
 * with the KV cache equals a full recomputation, batched decode and cache
 * reorder, both tensor layouts (shared vs encoder/decoder.embed_tokens), the
 * tied head's d_model^-0.5 scale, config activation rules, BF16 / int8
 * matrices within tolerance of F32, allocation failures walked. */
#include "embed/config.h"
#include "embed/safetensors.h"
#include "embed/t5.h"
#include "embed/generate.h"
#include "tests/testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FX "tiny-blip2-flan-t5"

static qf_st *w, *ex;
static qf_t5 *m;
static qf_blip2_config cfg;
static int V, D, Q;

static int setup(void) {
    if (qf_config_load(qf_fixture(FX), &cfg) || qf_st_open(qf_fixture(FX), &w) ||
        qf_st_open(qf_fixture(FX "/expected.safetensors"), &ex) || qf_t5_load(w, &cfg, QF_OPT_F32, &m)) {
        fprintf(stderr, "setup: %s\n", qf_last_error());
        return 1;
    }
    V = qf_t5_vocab(m);
    D = qf_t5_dim(m);
    Q = cfg.num_query_tokens;
    return 0;
}

/* encoder input of image i without prompt: [projection(qformer_out); shared([1])] */
static float *enc_input(const qf_t5 *mm, int i) {
    const int Dq = cfg.qformer.hidden_size;
    const float *qo = (const float *)qf_st_find(ex, "qformer_last_hidden_state")->data;
    float *x = malloc((size_t)(Q + 1) * D * sizeof *x);
    qf_t5_project(mm, qo + (size_t)i * Q * Dq, Q, x);
    int32_t bos = 1;
    CU_ASSERT_FATAL(qf_t5_embed(mm, &bos, 1, x + (size_t)Q * D) == QF_OK);
    return x;
}

static void test_buckets(void) {
    /* HF _relative_position_bucket(key - query, 32 buckets, max_distance 128) */
    static const int rel_bi[] = { -1, 1, -7, 8, -8, -20, 20, -127, -128, -1000, 1000 };
    static const int want_bi[] = { 1, 17, 7, 24, 8, 10, 26, 15, 15, 15, 31 };
    static const int rel_uni[] = { 1, 0, -1, -15, -16, -17, -40, -100, -127, -128, -1000 };
    static const int want_uni[] = { 0, 0, 1, 15, 16, 16, 23, 30, 31, 31, 31 };
    for (int k = 0; k < 11; k++) {
        CU_ASSERT_EQUAL(qf_t5_bucket(rel_bi[k], 1, 32, 128), want_bi[k]);
        CU_ASSERT_EQUAL(qf_t5_bucket(rel_uni[k], 0, 32, 128), want_uni[k]);
    }
    /* ranges and shape: monotone in distance, future keys in the upper half */
    int prev_b = 0, prev_u = 0;
    for (int r = 0; r < 5000; r++) {
        int bn = qf_t5_bucket(-r, 1, 32, 128), bp = qf_t5_bucket(r, 1, 32, 128), u = qf_t5_bucket(-r, 0, 32, 128);
        CU_ASSERT(bn >= 0 && bn < 16 && u >= 0 && u < 32);
        CU_ASSERT(r == 0 ? bp == 0 : bp == bn + 16);
        CU_ASSERT(bn >= prev_b && u >= prev_u);
        CU_ASSERT_EQUAL(qf_t5_bucket(r, 0, 32, 128), 0);   /* decoder: future keys are masked anyway */
        prev_b = bn; prev_u = u;
    }
}

static void test_incremental_equals_full(void) {
    const int32_t toks[] = { 0, 42, 254, 7, 99, 1 };
    const int n = 6;
    float *x = enc_input(m, 2), *full = malloc((size_t)n * V * sizeof *full), *inc = malloc((size_t)V * sizeof *inc);
    qf_t5_cache *c;
    CU_ASSERT_FATAL(qf_t5_cache_init(m, 1, Q + 1, n, &c) == QF_OK);
    CU_ASSERT_FATAL(qf_t5_encode(m, c, x, Q + 1, NULL) == QF_OK);
    CU_ASSERT_FATAL(qf_t5_forward(m, c, 0, toks, n, NULL, full) == QF_OK);
    CU_ASSERT_EQUAL(qf_t5_cache_len(c, 0), n);
    qf_t5_cache_clear(c);
    CU_ASSERT_FATAL(qf_t5_forward(m, c, 0, toks, 1, inc, NULL) == QF_OK);
    QF_ASSERT_CLOSE(inc, full, (size_t)V, 1e-4, 1e-4, "first token");
    for (int k = 1; k < n; k++) {
        CU_ASSERT_FATAL(qf_t5_decode(m, c, &toks[k], 1, inc) == QF_OK);
        QF_ASSERT_CLOSE(inc, full + (size_t)k * V, (size_t)V, 1e-4, 1e-4, "incremental step");
    }
    /* a prefill of 3 then steps: same again */
    qf_t5_cache_clear(c);
    CU_ASSERT_FATAL(qf_t5_forward(m, c, 0, toks, 3, inc, NULL) == QF_OK);
    QF_ASSERT_CLOSE(inc, full + (size_t)2 * V, (size_t)V, 1e-4, 1e-4, "prefill of 3");
    CU_ASSERT_FATAL(qf_t5_decode(m, c, &toks[3], 1, inc) == QF_OK);
    QF_ASSERT_CLOSE(inc, full + (size_t)3 * V, (size_t)V, 1e-4, 1e-4, "step after prefill");
    /* full cache: a clear error, not an overflow */
    CU_ASSERT_FATAL(qf_t5_decode(m, c, &toks[4], 1, inc) == QF_OK);
    CU_ASSERT_FATAL(qf_t5_decode(m, c, &toks[5], 1, inc) == QF_OK);
    CU_ASSERT_EQUAL(qf_t5_decode(m, c, toks, 1, inc), QF_ERR_LIMIT);
    /* an encoder input longer than the cache: refused */
    CU_ASSERT_EQUAL(qf_t5_encode(m, c, x, Q + 2, NULL), QF_ERR_LIMIT);
    qf_t5_cache_free(c);
    free(x); free(full); free(inc);
}

static void test_batched_decode_and_reorder(void) {
    float *x = enc_input(m, 4), *lb = malloc((size_t)3 * V * sizeof *lb), *ls = malloc((size_t)V * sizeof *ls);
    qf_t5_cache *c, *one;
    CU_ASSERT_FATAL(qf_t5_cache_init(m, 3, Q + 1, 4, &c) == QF_OK);
    CU_ASSERT_FATAL(qf_t5_cache_init(m, 1, Q + 1, 4, &one) == QF_OK);
    CU_ASSERT_FATAL(qf_t5_encode(m, c, x, Q + 1, NULL) == QF_OK);
    CU_ASSERT_FATAL(qf_t5_encode(m, one, x, Q + 1, NULL) == QF_OK);
    int32_t start = 0;
    CU_ASSERT_FATAL(qf_t5_forward(m, c, 0, &start, 1, NULL, NULL) == QF_OK);
    int zeros[3] = { 0, 0, 0 };
    CU_ASSERT_FATAL(qf_t5_cache_reorder(c, zeros, 3) == QF_OK);
    CU_ASSERT_EQUAL(qf_t5_cache_len(c, 2), 1);
    const int32_t toks[3] = { 10, 400, 1 };
    CU_ASSERT_FATAL(qf_t5_decode(m, c, toks, 3, lb) == QF_OK);
    for (int b = 0; b < 3; b++) {
        qf_t5_cache_clear(one);
        CU_ASSERT_FATAL(qf_t5_forward(m, one, 0, &start, 1, NULL, NULL) == QF_OK);
        CU_ASSERT_FATAL(qf_t5_decode(m, one, &toks[b], 1, ls) == QF_OK);
        QF_ASSERT_CLOSE(lb + (size_t)b * V, ls, (size_t)V, 1e-4, 1e-4, "batched decode row");
    }
    int src[3] = { 2, 1, 0 };
    CU_ASSERT_FATAL(qf_t5_cache_reorder(c, src, 3) == QF_OK);
    const int32_t nxt[3] = { 9, 9, 9 };
    CU_ASSERT_FATAL(qf_t5_decode(m, c, nxt, 3, lb) == QF_OK);
    qf_t5_cache_clear(one);
    CU_ASSERT_FATAL(qf_t5_forward(m, one, 0, &start, 1, NULL, NULL) == QF_OK);
    CU_ASSERT_FATAL(qf_t5_decode(m, one, &toks[2], 1, ls) == QF_OK);
    CU_ASSERT_FATAL(qf_t5_decode(m, one, &nxt[0], 1, ls) == QF_OK);
    QF_ASSERT_CLOSE(lb, ls, (size_t)V, 1e-4, 1e-4, "reordered sequence");
    qf_t5_cache_free(c); qf_t5_cache_free(one);
    free(x); free(lb); free(ls);
}

/* First-step logits of image i from a model, decoder input [0]. */
static void first_logits(const qf_t5 *mm, int i, float *logits) {
    float *x = enc_input(mm, i);
    qf_t5_cache *c;
    CU_ASSERT_FATAL(qf_t5_cache_init(mm, 1, Q + 1, 1, &c) == QF_OK);
    CU_ASSERT_FATAL(qf_t5_encode(mm, c, x, Q + 1, NULL) == QF_OK);
    int32_t start = 0;
    CU_ASSERT_FATAL(qf_t5_forward(mm, c, 0, &start, 1, logits, NULL) == QF_OK);
    qf_t5_cache_free(c);
    free(x);
}

/* The fixture's tensors as in-memory items, with `shared` renamed/copied
 * (layout 1: encoder/decoder.embed_tokens only) or lm_head dropped. */
static qf_st *variant(int embed_tokens_layout, int drop_lm_head) {
    size_t n = qf_st_count(w), k = 0;
    qf_st_item *items = calloc(n + 2, sizeof *items);
    const qf_st_tensor *sh = qf_st_find(w, "language_model.shared.weight");
    CU_ASSERT_FATAL(sh != NULL);
    for (size_t i = 0; i < n; i++) {
        const qf_st_tensor *t = qf_st_at(w, i);
        if (drop_lm_head && !strcmp(t->name, "language_model.lm_head.weight")) continue;
        if (embed_tokens_layout && t == sh) continue;
        items[k++] = (qf_st_item){ t->name, t->dtype, t->n_dim, t->shape, t->data };
    }
    if (embed_tokens_layout) {
        items[k++] = (qf_st_item){ "language_model.encoder.embed_tokens.weight", sh->dtype, sh->n_dim, sh->shape, sh->data };
        items[k++] = (qf_st_item){ "language_model.decoder.embed_tokens.weight", sh->dtype, sh->n_dim, sh->shape, sh->data };
    }
    qf_st *st = NULL;
    qf_status s = qf_st_from_memory("variant", items, k, &st);
    if (s) fprintf(stderr, "%s\n", qf_last_error());
    CU_ASSERT_FATAL(s == QF_OK);
    free(items);
    return st;
}

static void test_layouts_and_tied_head(void) {
    const float *gold = (const float *)qf_st_find(ex, "first_step_logits.noprompt")->data;
    float *l = malloc((size_t)V * sizeof *l), *l_tied = malloc((size_t)V * sizeof *l_tied);
    /* layout with encoder/decoder.embed_tokens instead of shared */
    qf_st *st = variant(1, 0);
    qf_t5 *mm = NULL;
    CU_ASSERT_FATAL(qf_t5_load(st, &cfg, QF_OPT_F32, &mm) == QF_OK);
    first_logits(mm, 3, l);
    QF_ASSERT_CLOSE(l, gold + (size_t)3 * V, (size_t)V, 2e-3, 0, "embed_tokens layout");
    qf_t5_free(mm);
    qf_st_close(st);
    /* untied without lm_head: an error naming the tensor */
    st = variant(0, 1);
    CU_ASSERT_EQUAL(qf_t5_load(st, &cfg, QF_OPT_F32, &mm), QF_ERR_MISSING);
    CU_ASSERT_PTR_NOT_NULL(strstr(qf_last_error(), "lm_head.weight"));
    /* tied (T5Config's default): head = shared, output scaled by d_model^-0.5;
     * against the untied model whose head reads the same shared rows */
    qf_blip2_config tied = cfg;
    tied.t5.tie_word_embeddings = tied.t5.scale_decoder_outputs = 1;
    CU_ASSERT_FATAL(qf_t5_load(st, &tied, QF_OPT_F32, &mm) == QF_OK);
    first_logits(mm, 1, l_tied);
    qf_t5_free(mm);
    qf_st_close(st);
    /* untied with lm_head := shared */
    size_t n = qf_st_count(w), k = 0;
    qf_st_item *items = calloc(n, sizeof *items);
    const qf_st_tensor *sh = qf_st_find(w, "language_model.shared.weight");
    for (size_t i = 0; i < n; i++) {
        const qf_st_tensor *t = qf_st_at(w, i);
        items[k++] = (qf_st_item){ t->name, t->dtype, t->n_dim, t->shape,
                                   strcmp(t->name, "language_model.lm_head.weight") ? t->data : sh->data };
    }
    CU_ASSERT_FATAL(qf_st_from_memory("head=shared", items, k, &st) == QF_OK);
    CU_ASSERT_FATAL(qf_t5_load(st, &cfg, QF_OPT_F32, &mm) == QF_OK);
    first_logits(mm, 1, l);
    for (int v = 0; v < V; v++) l[v] /= sqrtf((float)D);
    QF_ASSERT_CLOSE(l_tied, l, (size_t)V, 1e-5, 1e-4, "tied head scale");
    qf_t5_free(mm);
    qf_st_close(st);
    free(items); free(l); free(l_tied);
}

/* config.json variants written to a temporary folder */
static qf_status load_text_config(const char *text_config, qf_blip2_config *out) {
    char path[1024];
    snprintf(path, sizeof path, "%s/config.json", qf_test_tmpdir());
    FILE *f = fopen(path, "w");
    CU_ASSERT_FATAL(f != NULL);
    fprintf(f, "{\"vision_config\": {}, \"qformer_config\": {}, \"text_config\": %s}", text_config);
    fclose(f);
    return qf_config_load(path, out);
}

static void test_config_activation(void) {
    qf_blip2_config c;
    /* no dense_act_fn: gated-gelu implies gelu_new (tanh) */
    CU_ASSERT_FATAL(load_text_config("{\"model_type\": \"t5\", \"feed_forward_proj\": \"gated-gelu\"}", &c) == QF_OK);
    CU_ASSERT(c.t5.present && !c.text.present);
    CU_ASSERT_EQUAL(c.t5.act, QF_T5_ACT_GELU_TANH);
    CU_ASSERT(c.t5.is_gated_act);
    CU_ASSERT(c.t5.tie_word_embeddings && c.t5.scale_decoder_outputs);
    CU_ASSERT_EQUAL(c.t5.num_decoder_layers, c.t5.num_layers);
    CU_ASSERT_FATAL(load_text_config("{\"model_type\": \"t5\", \"num_layers\": 3, \"num_decoder_layers\": 5}", &c) == QF_OK);
    CU_ASSERT_EQUAL(c.t5.act, QF_T5_ACT_RELU);     /* T5 v1.0: relu, not gated */
    CU_ASSERT_FALSE(c.t5.is_gated_act);
    CU_ASSERT_EQUAL(c.t5.num_decoder_layers, 5);
    /* transformers 5.x: scale_decoder_outputs decides the head scale */
    CU_ASSERT_FATAL(load_text_config("{\"model_type\": \"t5\", \"tie_word_embeddings\": true, "
                                     "\"scale_decoder_outputs\": false}", &c) == QF_OK);
    CU_ASSERT(c.t5.tie_word_embeddings && !c.t5.scale_decoder_outputs);
    CU_ASSERT_EQUAL(load_text_config("{\"model_type\": \"t5\", \"dense_act_fn\": \"silu\"}", &c), QF_ERR_UNSUPPORTED);
    CU_ASSERT_PTR_NOT_NULL(strstr(qf_last_error(), "silu"));
    CU_ASSERT_FATAL(load_text_config("{\"model_type\": \"llama\", \"hidden_size\": 8}", &c) == QF_OK);
    CU_ASSERT(!c.t5.present && !c.text.present);
    CU_ASSERT_STRING_EQUAL(c.text_model_type, "llama");
}

/* BF16 / int8 matrices against F32: first-step and greedy-step logits
 * within tol of their range; returns how many of the six images' greedy
 * captions equal the F32 goldens. */
static int check_weights(qf_opt_weights wt, double tol) {
    qf_t5 *mq = NULL;
    CU_ASSERT_FATAL(qf_t5_load(w, &cfg, wt, &mq) == QF_OK);
    CU_ASSERT_EQUAL(qf_t5_weight_type(mq), wt);
    float *a = malloc((size_t)V * sizeof *a), *b = malloc((size_t)V * sizeof *b);
    qf_gen_params p;
    CU_ASSERT_FATAL(qf_gen_params_load(qf_fixture(FX), &cfg, &p) == QF_OK);
    p.max_new_tokens = 16;
    int agree = 0;
    for (int i = 0; i < 6; i++) {
        first_logits(m, i, a);
        first_logits(mq, i, b);
        float lo = a[0], hi = a[0];
        for (int v = 0; v < V; v++) { lo = a[v] < lo ? a[v] : lo; hi = a[v] > hi ? a[v] : hi; }
        QF_ASSERT_CLOSE(b, a, (size_t)V, tol * (hi - lo), 0, qf_opt_weights_name(wt));
        float *x = enc_input(mq, i);
        qf_t5_cache *c;
        CU_ASSERT_FATAL(qf_t5_cache_init(mq, 1, Q + 1, 17, &c) == QF_OK);
        int32_t out[16];
        int n_out = 0;
        CU_ASSERT_FATAL(qf_generate_t5(mq, c, x, Q + 1, &p, out, &n_out, NULL) == QF_OK);
        char name[64];
        snprintf(name, sizeof name, "greedy.noprompt.%d", i);
        const qf_st_tensor *g = qf_st_find(ex, name);
        const int64_t *gold = g->data;
        int same = n_out == (int)g->n_elem;
        for (int k = 0; same && k < n_out; k++) same = out[k] == gold[k];
        agree += same;
        qf_t5_cache_free(c);
        free(x);
    }
    fprintf(stderr, "\nT5 %s greedy captions identical to the F32 goldens: %d of 6\n", qf_opt_weights_name(wt), agree);
    free(a); free(b);
    qf_t5_free(mq);
    return agree;
}

/* measured on this fixture (min greedy top1-top2 margin 0.019): bf16 5 of
 * 6, int8 3 of 6; the bounds leave one image of room for another CPU's
 * kernel path, the logit tolerances above are the hard check */
static void test_bf16(void) { CU_ASSERT(check_weights(QF_OPT_BF16, 0.02) >= 4); }
static void test_int8(void) { CU_ASSERT(check_weights(QF_OPT_INT8, 0.05) >= 2); }

/* Every allocation of load, cache and a whole greedy caption failing in
 * turn: a clean QF_ERR_NOMEM each time (ASan/LSan runs check for leaks). */
static void test_alloc_failures(void) {
    float *x = enc_input(m, 0);
    qf_gen_params p;
    qf_gen_params_default(&p, 1);
    p.max_new_tokens = 4;
    p.num_beams = 2;
    int ok = 0;
    for (long k = 0; k < 400 && !ok; k++) {
        qf_t5 *mm = NULL;
        qf_t5_cache *c = NULL;
        int32_t out[4];
        int n = 0;
        qf_alloc_fail_after(k);
        qf_status s = qf_t5_load(w, &cfg, QF_OPT_INT8, &mm);
        if (!s) s = qf_t5_cache_init(mm, 2, Q + 1, 5, &c);
        if (!s) s = qf_generate_t5(mm, c, x, Q + 1, &p, out, &n, NULL);
        qf_alloc_fail_after(-1);
        if (s) CU_ASSERT_EQUAL(s, QF_ERR_NOMEM);
        ok = s == QF_OK;
        qf_t5_cache_free(c);
        qf_t5_free(mm);
    }
    CU_ASSERT(ok);
    free(x);
}

static CU_TestInfo tests[] = {
    { "relative_position_buckets", test_buckets },
    { "kv_cache_equals_recompute", test_incremental_equals_full },
    { "batched_decode_and_reorder", test_batched_decode_and_reorder },
    { "layouts_and_tied_head", test_layouts_and_tied_head },
    { "config_activation", test_config_activation },
    { "bf16_weights", test_bf16 },
    { "int8_weights", test_int8 },
    { "allocation_failures", test_alloc_failures },
    CU_TEST_INFO_NULL,
};

int main(void) {
    if (setup()) return 1;
    int rc = qf_test_main("t5", tests);
    qf_t5_free(m);
    qf_st_close(w);
    qf_st_close(ex);
    return rc;
}
