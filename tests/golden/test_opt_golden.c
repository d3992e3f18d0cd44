/* test_opt_golden.c - language_projection, OPT logits and greedy / beam-3
 * captions against tests/fixtures/tiny-blip2-opt (F16, sharded), starting
 * from the golden Q-Former outputs and prompt ids so that the decoder and
 * the search are tested on their own. */
#include "embed/config.h"
#include "embed/safetensors.h"
#include "embed/generate.h"
#include "embed/opt.h"
#include "tests/testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static qf_st *w, *ex;
static qf_opt *m;
static qf_blip2_config cfg;

static int setup(void) {
    if (qf_config_load(qf_fixture("tiny-blip2-opt"), &cfg) ||
        qf_st_open(qf_fixture("tiny-blip2-opt"), &w) ||
        qf_st_open(qf_fixture("tiny-blip2-opt/expected.safetensors"), &ex) ||
        qf_opt_load(w, &cfg, QF_OPT_F32, &m)) {
        fprintf(stderr, "setup: %s\n", qf_last_error());
        return 1;
    }
    return 0;
}

static const float *gf(const char *name) {
    const qf_st_tensor *t = qf_st_find(ex, name);
    CU_ASSERT_FATAL(t != NULL && t->dtype == QF_DT_F32);
    return t->data;
}

static const int64_t *gi(const char *name, int *n) {
    const qf_st_tensor *t = qf_st_find(ex, name);
    if (!t) fprintf(stderr, "missing %s\n", name);
    CU_ASSERT_FATAL(t != NULL && t->dtype == QF_DT_I64);
    *n = (int)t->n_elem;
    const void *p = NULL;   /* aligned view: the file's I64 spans need not be 8-byte aligned */
    CU_ASSERT_FATAL(qf_st_get_raw(ex, name, QF_DT_I64, t->n_dim, t->shape, &p) == QF_OK);
    return p;
}

/* prefix = [language_projection(qformer_out[i]); embed(ids)] */
static float *build_prefix(int i, const int32_t *ids, int n_ids, int *n_prefix) {
    const int Q = cfg.num_query_tokens, D = qf_opt_dim(m), Dq = cfg.qformer.hidden_size;
    float *prefix = malloc((size_t)(Q + n_ids) * D * sizeof *prefix);
    qf_opt_project(m, gf("qformer_last_hidden_state") + (size_t)i * Q * Dq, Q, prefix);
    CU_ASSERT_FATAL(qf_opt_embed(m, ids, n_ids, prefix + (size_t)Q * D) == QF_OK);
    *n_prefix = Q + n_ids;
    return prefix;
}

static void test_projection(void) {
    const int Q = cfg.num_query_tokens, D = qf_opt_dim(m), Dq = cfg.qformer.hidden_size;
    const int n_img = (int)qf_st_find(ex, "language_model_inputs")->shape[0];
    float out[Q * D];
    for (int i = 0; i < n_img; i++) {
        qf_opt_project(m, gf("qformer_last_hidden_state") + (size_t)i * Q * Dq, Q, out);
        QF_ASSERT_CLOSE(out, gf("language_model_inputs") + (size_t)i * Q * D, (size_t)Q * D, 1e-4, 1e-4,
                        "language_model_inputs");
    }
}

static void get_prompt(int with_prompt, int32_t *ids, int *n) {
    if (!with_prompt) { ids[0] = 2; *n = 1; return; }
    const int64_t *p = gi("prompt_input_ids", n);
    for (int k = 0; k < *n; k++) ids[k] = (int32_t)p[k];
}

static void run_generation(int with_prompt, int beams) {
    const int V = qf_opt_vocab(m), n_img = (int)qf_st_find(ex, "language_model_inputs")->shape[0];
    qf_gen_params p;
    CU_ASSERT_FATAL(qf_gen_params_load(qf_fixture("tiny-blip2-opt"), &cfg, &p) == QF_OK);
    CU_ASSERT_EQUAL(p.eos_id, 50118);
    p.max_new_tokens = 16;
    p.num_beams = beams;
    int32_t ids[64];
    int n_ids;
    get_prompt(with_prompt, ids, &n_ids);
    float *steps = malloc((size_t)16 * V * sizeof *steps);
    for (int i = 0; i < n_img; i++) {
        int n_prefix;
        float *prefix = build_prefix(i, ids, n_ids, &n_prefix);
        qf_opt_cache *c = NULL;
        CU_ASSERT_FATAL(qf_opt_cache_init(m, beams, n_prefix + 16, &c) == QF_OK);
        int32_t out[16];
        int n_out = 0;
        qf_status s = qf_generate(m, c, prefix, n_prefix, ids, n_ids, &p, out, &n_out, beams == 1 ? steps : NULL);
        if (s) fprintf(stderr, "%s\n", qf_last_error());
        CU_ASSERT_FATAL(s == QF_OK);
        char name[64];
        snprintf(name, sizeof name, "%s.%s.%d", beams == 1 ? "greedy" : "beam3",
                 with_prompt ? "prompt" : "noprompt", i);
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
        if (beams == 1) {
            const float *first = gf(with_prompt ? "first_step_logits.prompt" : "first_step_logits.noprompt");
            QF_ASSERT_CLOSE(steps, first + (size_t)i * V, (size_t)V, 2e-3, 0, "first_step_logits");
            if (i == 0 && !with_prompt)
                QF_ASSERT_CLOSE(steps, gf("greedy.noprompt.0.step_logits"), (size_t)n_gold * V, 2e-3, 0,
                                "greedy.noprompt.0.step_logits");
        }
        qf_opt_cache_free(c);
        free(prefix);
    }
    free(steps);
}

static void test_greedy_noprompt(void) { run_generation(0, 1); }
static void test_greedy_prompt(void) { run_generation(1, 1); }
static void test_beam_noprompt(void) { run_generation(0, 3); }
static void test_beam_prompt(void) { run_generation(1, 3); }

static CU_TestInfo tests[] = {
    { "language_projection", test_projection },
    { "greedy_noprompt", test_greedy_noprompt },
    { "greedy_prompt", test_greedy_prompt },
    { "beam3_noprompt", test_beam_noprompt },
    { "beam3_prompt", test_beam_prompt },
    CU_TEST_INFO_NULL,
};

int main(void) {
    if (setup()) return 1;
    int rc = qf_test_main("opt_golden", tests);
    qf_opt_free(m);
    qf_st_close(w);
    qf_st_close(ex);
    return rc;
}
