/* test_generate.c - KV cache and search invariants on the tiny OPT fixture:
 * incremental decoding equals a full recomputation, batched decode equals
 * single-sequence decode, cache reorder, and beam search edge cases (EOS at
 * the first step, max length reached, min_new_tokens, repetition penalty). */
#include "embed/config.h"
#include "embed/safetensors.h"
#include "embed/generate.h"
#include "embed/opt.h"
#include "tests/testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static qf_st *w;
static qf_opt *m;
static qf_blip2_config cfg;
static int V, D;

static int setup(void) {
    if (qf_config_load(qf_fixture("tiny-blip2-opt"), &cfg) || qf_st_open(qf_fixture("tiny-blip2-opt"), &w) ||
        qf_opt_load(w, &cfg, QF_OPT_F32, &m)) {
        fprintf(stderr, "setup: %s\n", qf_last_error());
        return 1;
    }
    V = qf_opt_vocab(m);
    D = qf_opt_dim(m);
    return 0;
}

/* a deterministic prefix: embeddings of a few token ids */
static const int32_t prefix_ids[] = { 2, 100, 2000, 31414, 6 };
#define NP 5

static void make_prefix(float *x) { CU_ASSERT_FATAL(qf_opt_embed(m, prefix_ids, NP, x) == QF_OK); }

static double seq_logprob(const int32_t *gen, int n) {
    /* teacher-forced sum of log-probabilities of gen after the prefix */
    float *x = malloc((size_t)(NP + n) * D * sizeof *x), *all = malloc((size_t)(NP + n) * V * sizeof *all);
    make_prefix(x);
    CU_ASSERT_FATAL(qf_opt_embed(m, gen, n, x + (size_t)NP * D) == QF_OK);
    qf_opt_cache *c;
    CU_ASSERT_FATAL(qf_opt_cache_init(m, 1, NP + n, &c) == QF_OK);
    CU_ASSERT_FATAL(qf_opt_forward(m, c, 0, x, NP + n, NULL, all) == QF_OK);
    double lp = 0;
    for (int k = 0; k < n; k++) {
        const float *row = all + (size_t)(NP - 1 + k) * V;
        double mx = -INFINITY, sum = 0;
        for (int v = 0; v < V; v++) mx = row[v] > mx ? row[v] : mx;
        for (int v = 0; v < V; v++) sum += exp(row[v] - mx);
        lp += row[gen[k]] - mx - log(sum);
    }
    qf_opt_cache_free(c);
    free(x); free(all);
    return lp;
}

static void test_incremental_equals_full(void) {
    const int32_t more[] = { 50118, 10, 4758, 9 };
    const int n = 4;
    float *x = malloc((size_t)(NP + n) * D * sizeof *x), *full = malloc((size_t)(NP + n) * V * sizeof *full);
    float *inc = malloc((size_t)V * sizeof *inc);
    make_prefix(x);
    CU_ASSERT_FATAL(qf_opt_embed(m, more, n, x + (size_t)NP * D) == QF_OK);
    qf_opt_cache *c;
    CU_ASSERT_FATAL(qf_opt_cache_init(m, 1, NP + n, &c) == QF_OK);
    CU_ASSERT_FATAL(qf_opt_forward(m, c, 0, x, NP + n, NULL, full) == QF_OK);
    CU_ASSERT_EQUAL(qf_opt_cache_len(c, 0), NP + n);
    qf_opt_cache_clear(c);
    CU_ASSERT_FATAL(qf_opt_forward(m, c, 0, x, NP, inc, NULL) == QF_OK);
    QF_ASSERT_CLOSE(inc, full + (size_t)(NP - 1) * V, (size_t)V, 1e-4, 1e-4, "prefill last row");
    for (int k = 0; k < n; k++) {
        CU_ASSERT_FATAL(qf_opt_decode(m, c, &more[k], 1, inc) == QF_OK);
        QF_ASSERT_CLOSE(inc, full + (size_t)(NP + k) * V, (size_t)V, 1e-4, 1e-4, "incremental step");
    }
    /* the cache is full now: one more position is a clear error, not an overflow */
    CU_ASSERT_EQUAL(qf_opt_decode(m, c, more, 1, inc), QF_ERR_LIMIT);
    qf_opt_cache_free(c);
    free(x); free(full); free(inc);
}

static void test_batched_decode_and_reorder(void) {
    float *x = malloc((size_t)NP * D * sizeof *x), *lb = malloc((size_t)3 * V * sizeof *lb);
    float *ls = malloc((size_t)V * sizeof *ls);
    make_prefix(x);
    qf_opt_cache *c, *one;
    CU_ASSERT_FATAL(qf_opt_cache_init(m, 3, NP + 2, &c) == QF_OK);
    CU_ASSERT_FATAL(qf_opt_cache_init(m, 1, NP + 2, &one) == QF_OK);
    CU_ASSERT_FATAL(qf_opt_forward(m, c, 0, x, NP, NULL, NULL) == QF_OK);
    int zeros[3] = { 0, 0, 0 };
    CU_ASSERT_FATAL(qf_opt_cache_reorder(c, zeros, 3) == QF_OK);
    CU_ASSERT_EQUAL(qf_opt_cache_len(c, 2), NP);
    const int32_t toks[3] = { 10, 4758, 50118 };
    CU_ASSERT_FATAL(qf_opt_decode(m, c, toks, 3, lb) == QF_OK);
    for (int b = 0; b < 3; b++) {
        qf_opt_cache_clear(one);
        CU_ASSERT_FATAL(qf_opt_forward(m, one, 0, x, NP, NULL, NULL) == QF_OK);
        CU_ASSERT_FATAL(qf_opt_decode(m, one, &toks[b], 1, ls) == QF_OK);
        QF_ASSERT_CLOSE(lb + (size_t)b * V, ls, (size_t)V, 1e-4, 1e-4, "batched decode row");
    }
    /* reorder: sequence 0 takes sequence 2's history; its next step must equal seq 2's */
    int src[3] = { 2, 1, 0 };
    CU_ASSERT_FATAL(qf_opt_cache_reorder(c, src, 3) == QF_OK);
    const int32_t nxt[3] = { 9, 9, 9 };
    CU_ASSERT_FATAL(qf_opt_decode(m, c, nxt, 3, lb) == QF_OK);
    qf_opt_cache_clear(one);
    CU_ASSERT_FATAL(qf_opt_forward(m, one, 0, x, NP, NULL, NULL) == QF_OK);
    CU_ASSERT_FATAL(qf_opt_decode(m, one, &toks[2], 1, ls) == QF_OK);
    CU_ASSERT_FATAL(qf_opt_decode(m, one, &nxt[0], 1, ls) == QF_OK);
    QF_ASSERT_CLOSE(lb, ls, (size_t)V, 1e-4, 1e-4, "reordered sequence");
    qf_opt_cache_free(c); qf_opt_cache_free(one);
    free(x); free(lb); free(ls);
}

static int run(const qf_gen_params *p, int32_t *out) {
    float x[NP * 64];
    CU_ASSERT_FATAL(D <= 64);
    make_prefix(x);
    qf_opt_cache *c;
    CU_ASSERT_FATAL(qf_opt_cache_init(m, p->num_beams, NP + p->max_new_tokens, &c) == QF_OK);
    int n = 0;
    qf_status s = qf_generate(m, c, x, NP, prefix_ids, NP, p, out, &n, NULL);
    if (s) fprintf(stderr, "%s\n", qf_last_error());
    CU_ASSERT_FATAL(s == QF_OK);
    qf_opt_cache_free(c);
    return n;
}

static int first_argmax(void) {
    float x[NP * 64], *lg = malloc((size_t)V * sizeof *lg);
    make_prefix(x);
    qf_opt_cache *c;
    CU_ASSERT_FATAL(qf_opt_cache_init(m, 1, NP, &c) == QF_OK);
    CU_ASSERT_FATAL(qf_opt_forward(m, c, 0, x, NP, lg, NULL) == QF_OK);
    int best = 0;
    for (int v = 1; v < V; v++) if (lg[v] > lg[best]) best = v;
    qf_opt_cache_free(c);
    free(lg);
    return best;
}

static void test_eos_at_first_step(void) {
    qf_gen_params p;
    qf_gen_params_default(&p, first_argmax());   /* the most likely first token is EOS */
    p.max_new_tokens = 8;
    int32_t out[8];
    CU_ASSERT_EQUAL(run(&p, out), 1);
    CU_ASSERT_EQUAL(out[0], p.eos_id);
    /* beam: [eos] is a finished hypothesis from step 1; the answer scores at least as well */
    p.num_beams = 3;
    int n = run(&p, out);
    CU_ASSERT(n >= 1 && n <= 8);
    int32_t eos = p.eos_id;
    CU_ASSERT(seq_logprob(out, n) / n >= seq_logprob(&eos, 1) - 1e-4);
    /* min_new_tokens suppresses it */
    p.num_beams = 1;
    p.min_new_tokens = 3;
    n = run(&p, out);
    CU_ASSERT(n >= 3);
    for (int k = 0; k < 3 && k < n; k++) CU_ASSERT(out[k] != p.eos_id);
}

static void test_max_length_brute_force(void) {
    /* no EOS possible: with 2 new tokens, beam-3 must return the best 2-token
     * continuation among the top-3 first tokens x all second tokens (what the
     * top-6 candidates at step 2 are drawn from). */
    qf_gen_params p;
    qf_gen_params_default(&p, -1);
    p.max_new_tokens = 2;
    p.num_beams = 3;
    int32_t out[2];
    CU_ASSERT_EQUAL(run(&p, out), 2);
    float x[NP * 64], *lg = malloc((size_t)V * sizeof *lg);
    make_prefix(x);
    qf_opt_cache *c;
    CU_ASSERT_FATAL(qf_opt_cache_init(m, 1, NP + 1, &c) == QF_OK);
    CU_ASSERT_FATAL(qf_opt_forward(m, c, 0, x, NP, lg, NULL) == QF_OK);
    int top[3] = { -1, -1, -1 };
    for (int k = 0; k < 3; k++)
        for (int v = 0; v < V; v++) {
            int used = 0;
            for (int j = 0; j < k; j++) used |= top[j] == v;
            if (!used && (top[k] < 0 || lg[v] > lg[top[k]])) top[k] = v;
        }
    double best = -INFINITY;
    int32_t bseq[2] = { 0, 0 };
    for (int k = 0; k < 3; k++) {
        qf_opt_cache_clear(c);
        CU_ASSERT_FATAL(qf_opt_forward(m, c, 0, x, NP, NULL, NULL) == QF_OK);
        CU_ASSERT_FATAL(qf_opt_decode(m, c, &top[k], 1, lg) == QF_OK);
        /* the best second token after top[k] is its argmax (log_softmax is monotonic) */
        int b2 = 0;
        for (int v = 1; v < V; v++) if (lg[v] > lg[b2]) b2 = v;
        int32_t seq[2] = { top[k], b2 };
        double lp = seq_logprob(seq, 2);
        if (lp > best) { best = lp; memcpy(bseq, seq, sizeof seq); }
    }
    CU_ASSERT_EQUAL(out[0], bseq[0]);
    CU_ASSERT_EQUAL(out[1], bseq[1]);
    /* one new token: beam = argmax */
    p.max_new_tokens = 1;
    CU_ASSERT_EQUAL(run(&p, out), 1);
    CU_ASSERT_EQUAL(out[0], first_argmax());
    qf_opt_cache_free(c);
    free(lg);
}

static void test_all_beams_finish(void) {
    /* EOS = the argmax token: every beam tends to finish early; the search must
     * stop before max length and return a finished hypothesis ending in EOS, or
     * run to max length; either way within bounds and reproducible. */
    qf_gen_params p;
    qf_gen_params_default(&p, first_argmax());
    p.max_new_tokens = 6;
    p.num_beams = 2;
    p.early_stopping = 1;
    int32_t a[6], b[6];
    int na = run(&p, a), nb = run(&p, b);
    CU_ASSERT(na == nb && memcmp(a, b, (size_t)na * sizeof *a) == 0);
    CU_ASSERT(na >= 1 && na <= 6);
    CU_ASSERT(a[na - 1] == p.eos_id || na == 6);
}

static void test_repetition_penalty(void) {
    qf_gen_params p;
    qf_gen_params_default(&p, -1);
    p.max_new_tokens = 12;
    int32_t plain[12], pen[12];
    int n1 = run(&p, plain);
    p.repetition_penalty = 1e6f;   /* no token of the prefix or output may repeat */
    int n2 = run(&p, pen);
    CU_ASSERT_EQUAL(n1, 12);
    CU_ASSERT_EQUAL(n2, 12);
    for (int i = 0; i < n2; i++) {
        for (int j = 0; j < i; j++) CU_ASSERT(pen[i] != pen[j]);
        for (int j = 0; j < NP; j++) CU_ASSERT(pen[i] != prefix_ids[j]);
    }
}

static void test_bad_params(void) {
    qf_gen_params p;
    qf_gen_params_default(&p, 2);
    p.max_new_tokens = 0;
    float x[NP * 64];
    make_prefix(x);
    qf_opt_cache *c;
    int32_t out[1];
    int n;
    CU_ASSERT_FATAL(qf_opt_cache_init(m, 1, NP + 1, &c) == QF_OK);
    CU_ASSERT_EQUAL(qf_generate(m, c, x, NP, NULL, 0, &p, out, &n, NULL), QF_ERR_ARG);
    qf_opt_cache_free(c);
    CU_ASSERT_EQUAL(qf_opt_cache_init(m, 1, 100000, &c), QF_ERR_ARG);
    int32_t bad = V + 5;
    CU_ASSERT_EQUAL(qf_opt_embed(m, &bad, 1, x), QF_ERR_ARG);
}

static CU_TestInfo tests[] = {
    { "incremental_equals_full", test_incremental_equals_full },
    { "batched_decode_and_reorder", test_batched_decode_and_reorder },
    { "eos_at_first_step", test_eos_at_first_step },
    { "max_length_brute_force", test_max_length_brute_force },
    { "all_beams_finish", test_all_beams_finish },
    { "repetition_penalty", test_repetition_penalty },
    { "bad_params", test_bad_params },
    CU_TEST_INFO_NULL,
};

int main(void) {
    if (setup()) return 1;
    int rc = qf_test_main("generate", tests);
    qf_opt_free(m);
    qf_st_close(w);
    return rc;
}
