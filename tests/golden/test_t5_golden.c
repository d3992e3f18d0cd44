/* test_t5_golden.c - the Flan-T5 language model against
 * tests/fixtures/tiny-blip2-flan-t5 (F16, sharded, no embed_tokens copies):
 * language_projection, the relative-position bucket tables, the encoder's
 * last hidden state with and without the prompt, first-step and every
 * greedy step's logits, and greedy / beam-3 ids for all six images in both
 * modes. Inputs are the golden Q-Former outputs and prompt ids, so the
 * language model and the search are tested on their own (the image path is
 * in test_blip2_golden, the tokenizer in test_spm_golden). */
#include "embed/config.h"
#include "embed/safetensors.h"
#include "embed/t5.h"
#include "embed/generate.h"
#include "tests/testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FX "tiny-blip2-flan-t5"

static qf_st *w, *ex;
static qf_t5 *m;
static qf_blip2_config cfg;

static int setup(void) {
    if (qf_config_load(qf_fixture(FX), &cfg) || qf_st_open(qf_fixture(FX), &w) ||
        qf_st_open(qf_fixture(FX "/expected.safetensors"), &ex) || qf_t5_load(w, &cfg, QF_OPT_F32, &m)) {
        fprintf(stderr, "setup: %s\n", qf_last_error());
        return 1;
    }
    return 0;
}

static const float *gf(const char *name) {
    const qf_st_tensor *t = qf_st_find(ex, name);
    if (!t) fprintf(stderr, "missing %s\n", name);
    CU_ASSERT_FATAL(t != NULL && t->dtype == QF_DT_F32);
    return t->data;
}

static const int64_t *gi(const char *name, int *n) {
    const qf_st_tensor *t = qf_st_find(ex, name);
    if (!t) fprintf(stderr, "missing %s\n", name);
    CU_ASSERT_FATAL(t != NULL && t->dtype == QF_DT_I64);
    *n = (int)t->n_elem;
    const void *p = NULL;
    CU_ASSERT_FATAL(qf_st_get_raw(ex, name, QF_DT_I64, t->n_dim, t->shape, &p) == QF_OK);
    return p;
}

static void test_config(void) {
    const qf_t5_config *c = &cfg.t5;
    CU_ASSERT_FATAL(c->present);
    CU_ASSERT_FALSE(cfg.text.present);
    CU_ASSERT_STRING_EQUAL(cfg.text_model_type, "t5");
    CU_ASSERT_EQUAL(c->d_model, 32);
    CU_ASSERT_EQUAL(c->d_kv * c->num_heads, 48);   /* inner width != d_model */
    CU_ASSERT_EQUAL(c->act, QF_T5_ACT_GELU);       /* dense_act_fn "gelu" beats gated-gelu's gelu_new */
    CU_ASSERT(c->is_gated_act);
    CU_ASSERT_FALSE(c->tie_word_embeddings);
    CU_ASSERT_EQUAL(c->decoder_start_token_id, 0);
    CU_ASSERT_EQUAL(c->eos_token_id, 1);
    CU_ASSERT_EQUAL(c->bos_token_id, 1);
}

static void test_buckets(void) {
    int n;
    const int64_t *enc = gi("encoder_relative_position_bucket", &n);
    CU_ASSERT_EQUAL_FATAL(n, 23 * 23);
    int bad = 0;
    for (int i = 0; i < 23; i++)
        for (int j = 0; j < 23; j++)
            bad += qf_t5_bucket(j - i, 1, 32, 128) != enc[i * 23 + j];
    const int64_t *dec = gi("decoder_relative_position_bucket", &n);
    CU_ASSERT_EQUAL_FATAL(n, 16 * 16);
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 16; j++)
            bad += qf_t5_bucket(j - i, 0, 32, 128) != dec[i * 16 + j];
    CU_ASSERT_EQUAL(bad, 0);
}

static void test_projection(void) {
    const int Q = cfg.num_query_tokens, D = qf_t5_dim(m), Dq = cfg.qformer.hidden_size;
    float out[Q * D];
    for (int i = 0; i < 6; i++) {
        qf_t5_project(m, gf("qformer_last_hidden_state") + (size_t)i * Q * Dq, Q, out);
        QF_ASSERT_CLOSE(out, gf("language_model_inputs") + (size_t)i * Q * D, (size_t)Q * D, 1e-4, 1e-4,
                        "language_model_inputs");
    }
}

static void get_prompt(int with_prompt, int32_t *ids, int *n) {
    if (!with_prompt) { ids[0] = 1; *n = 1; return; }   /* [bos_token_id] */
    const int64_t *p = gi("prompt_input_ids", n);
    for (int k = 0; k < *n; k++) ids[k] = (int32_t)p[k];
}

/* encoder input = [language_projection(qformer_out[i]); shared(ids)] */
static float *build_input(int i, const int32_t *ids, int n_ids, int *S) {
    const int Q = cfg.num_query_tokens, D = qf_t5_dim(m), Dq = cfg.qformer.hidden_size;
    float *x = malloc((size_t)(Q + n_ids) * D * sizeof *x);
    qf_t5_project(m, gf("qformer_last_hidden_state") + (size_t)i * Q * Dq, Q, x);
    CU_ASSERT_FATAL(qf_t5_embed(m, ids, n_ids, x + (size_t)Q * D) == QF_OK);
    *S = Q + n_ids;
    return x;
}

static void check_encoder(int with_prompt) {
    const int D = qf_t5_dim(m), V = qf_t5_vocab(m);
    int32_t ids[64];
    int n_ids;
    get_prompt(with_prompt, ids, &n_ids);
    const float *gold = gf(with_prompt ? "encoder_last_hidden_state.prompt" : "encoder_last_hidden_state.noprompt");
    const float *first = gf(with_prompt ? "first_step_logits.prompt" : "first_step_logits.noprompt");
    for (int i = 0; i < 6; i++) {
        int S;
        float *x = build_input(i, ids, n_ids, &S);
        CU_ASSERT_EQUAL(S, with_prompt ? 23 : 9);
        qf_t5_cache *c = NULL;
        CU_ASSERT_FATAL(qf_t5_cache_init(m, 1, S, 4, &c) == QF_OK);
        float out[S * D], logits[V];
        CU_ASSERT_FATAL(qf_t5_encode(m, c, x, S, out) == QF_OK);
        QF_ASSERT_CLOSE(out, gold + (size_t)i * S * D, (size_t)S * D, 1e-4, 1e-4, "encoder_last_hidden_state");
        int32_t start = 0;
        CU_ASSERT_FATAL(qf_t5_forward(m, c, 0, &start, 1, logits, NULL) == QF_OK);
        QF_ASSERT_CLOSE(logits, first + (size_t)i * V, (size_t)V, 2e-3, 0, "first_step_logits");
        qf_t5_cache_free(c);
        free(x);
    }
}

static void test_encoder_noprompt(void) { check_encoder(0); }
static void test_encoder_prompt(void) { check_encoder(1); }

static void run_generation(int with_prompt, int beams) {
    const int V = qf_t5_vocab(m);
    qf_gen_params p;
    CU_ASSERT_FATAL(qf_gen_params_load(qf_fixture(FX), &cfg, &p) == QF_OK);
    CU_ASSERT_EQUAL(p.eos_id, 1);
    p.max_new_tokens = 16;
    p.num_beams = beams;
    int32_t ids[64];
    int n_ids;
    get_prompt(with_prompt, ids, &n_ids);
    float *steps = malloc((size_t)16 * V * sizeof *steps);
    for (int i = 0; i < 6; i++) {
        int S;
        float *x = build_input(i, ids, n_ids, &S);
        qf_t5_cache *c = NULL;
        CU_ASSERT_FATAL(qf_t5_cache_init(m, beams, S, 17, &c) == QF_OK);
        int32_t out[16];
        int n_out = 0;
        qf_status s = qf_generate_t5(m, c, x, S, &p, out, &n_out, beams == 1 ? steps : NULL);
        if (s) fprintf(stderr, "%s\n", qf_last_error());
        CU_ASSERT_FATAL(s == QF_OK);
        char name[64];
        snprintf(name, sizeof name, "%s.%s.%d", beams == 1 ? "greedy" : "beam3", with_prompt ? "prompt" : "noprompt", i);
        int n_gold;
        const int64_t *gold = gi(name, &n_gold);
        int same = n_out == n_gold;
        for (int k = 0; same && k < n_out; k++) same = out[k] == gold[k];
        if (!same) {
            fprintf(stderr, "\n%s: got", name);
            for (int k = 0; k < n_out; k++) fprintf(stderr, " %d", out[k]);
            fprintf(stderr, "\n%s: expected", name);
            for (int k = 0; k < n_gold; k++) fprintf(stderr, " %lld", (long long)gold[k]);
            fprintf(stderr, "\n");
        }
        CU_ASSERT(same);
        if (beams == 1 && i == 0) {
            char sl[96];
            snprintf(sl, sizeof sl, "%s.step_logits", name);
            QF_ASSERT_CLOSE(steps, gf(sl), (size_t)n_gold * V, 2e-3, 0, sl);
        }
        qf_t5_cache_free(c);
        free(x);
    }
    free(steps);
}

static void test_greedy_noprompt(void) { run_generation(0, 1); }
static void test_greedy_prompt(void) { run_generation(1, 1); }
static void test_beam_noprompt(void) { run_generation(0, 3); }
static void test_beam_prompt(void) { run_generation(1, 3); }

static CU_TestInfo tests[] = {
    { "config", test_config },
    { "relative_position_buckets", test_buckets },
    { "language_projection", test_projection },
    { "encoder_and_first_step_noprompt", test_encoder_noprompt },
    { "encoder_and_first_step_prompt", test_encoder_prompt },
    { "greedy_noprompt", test_greedy_noprompt },
    { "greedy_prompt", test_greedy_prompt },
    { "beam3_noprompt", test_beam_noprompt },
    { "beam3_prompt", test_beam_prompt },
    CU_TEST_INFO_NULL,
};

int main(void) {
    if (setup()) return 1;
    int rc = qf_test_main("t5_golden", tests);
    qf_t5_free(m);
    qf_st_close(w);
    qf_st_close(ex);
    return rc;
}
