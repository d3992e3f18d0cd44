/* generate.c - greedy and beam search (see generate.h).
 *
 * Beam search follows transformers >= 4.50 (`_beam_search`): running scores
 * start at [0, -1e9, ...]; each step takes the top 2*num_beams of
 * (running score + log_softmax) over beams x vocab; candidates that end in
 * EOS (or reach max length) and rank within the first num_beams become
 * finished hypotheses scored sum_logprob / n_new^length_penalty; the best
 * num_beams non-finished candidates continue; the search stops when every
 * candidate hits a stop or no running beam can beat the worst finished one.
 *
 * The search sees the language model only through qf_gen_model (one decode
 * step for n sequences, a cache reorder): OPT and T5 share it. */
#include "embed/generate.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NEG_BIG (-1.0e9f)

void qf_gen_params_default(qf_gen_params *p, int eos_id) {
    p->max_new_tokens = 20;
    p->min_new_tokens = 0;
    p->num_beams = 1;
    p->length_penalty = 1.0f;
    p->repetition_penalty = 1.0f;
    p->early_stopping = 0;
    p->eos_id = eos_id;
}

qf_status qf_gen_params_load(const char *model_dir, const qf_blip2_config *cfg, qf_gen_params *p) {
    qf_gen_params_default(p, cfg->t5.present ? cfg->t5.eos_token_id : cfg->text.eos_token_id);
    char path[4096];
    snprintf(path, sizeof path, "%s/generation_config.json", model_dir);
    char *text = NULL;
    size_t len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return QF_OK;               /* optional file */
    fclose(f);
    qf_status s = qf_read_file(path, 1 << 20, &text, &len);
    if (s) return s;
    json_error_t err;
    json_t *root = json_loadb(text, len, 0, &err);
    qf_free(text);
    if (!json_is_object(root)) {
        json_decref(root);
        return qf_errorf(QF_ERR_FORMAT, "%s: line %d: %s", path, err.line, root ? "not an object" : err.text);
    }
    json_t *v;
    if ((v = json_object_get(root, "eos_token_id"))) {
        if (json_is_integer(v)) p->eos_id = (int)json_integer_value(v);
        else if (json_is_array(v) && json_array_size(v) > 0)   /* first of a list */
            p->eos_id = (int)json_integer_value(json_array_get(v, 0));
    }
    if (json_is_integer(v = json_object_get(root, "max_new_tokens"))) p->max_new_tokens = (int)json_integer_value(v);
    if (json_is_integer(v = json_object_get(root, "min_new_tokens"))) p->min_new_tokens = (int)json_integer_value(v);
    if (json_is_integer(v = json_object_get(root, "num_beams"))) p->num_beams = (int)json_integer_value(v);
    if (json_is_number(v = json_object_get(root, "length_penalty"))) p->length_penalty = (float)json_number_value(v);
    if (json_is_number(v = json_object_get(root, "repetition_penalty")))
        p->repetition_penalty = (float)json_number_value(v);
    if (json_is_boolean(v = json_object_get(root, "early_stopping"))) p->early_stopping = json_is_true(v);
    json_decref(root);
    return QF_OK;
}

/* RepetitionPenaltyLogitsProcessor over the ids seen so far. */
static void repetition_penalty(float *x, int V, float pen, const int32_t *a, int na, const int32_t *b, int nb) {
    if (pen == 1.0f) return;
    for (int k = 0; k < na + nb; k++) {
        int id = k < na ? a[k] : b[k - na];
        if (id < 0 || id >= V) continue;
        /* each id once, even when repeated */
        int seen = 0;
        for (int j = 0; j < k && !seen; j++) seen = (j < na ? a[j] : b[j - na]) == id;
        if (!seen) x[id] = x[id] < 0 ? x[id] * pen : x[id] / pen;
    }
}

static void log_softmax(float *x, int V) {
    float mx = -INFINITY;
    for (int i = 0; i < V; i++) mx = x[i] > mx ? x[i] : mx;
    float sum = 0;
    for (int i = 0; i < V; i++) sum += expf(x[i] - mx);
    float lse = logf(sum);
    for (int i = 0; i < V; i++) x[i] = x[i] - mx - lse;
}

static int argmax(const float *x, int V) {
    int best = 0;
    for (int i = 1; i < V; i++) if (x[i] > x[best]) best = i;
    return best;
}

/* logits: [V], holding the first step's logits on entry; scratch after. */
static qf_status greedy(const qf_gen_model *m, const int32_t *prompt_ids, int n_prompt,
                        const qf_gen_params *p, int32_t *out, int *n_out, float *step_logits, float *logits) {
    const int V = m->vocab;
    int n = 0;
    for (;;) {
        if (step_logits) memcpy(step_logits + (size_t)n * V, logits, (size_t)V * sizeof *logits);
        repetition_penalty(logits, V, p->repetition_penalty, prompt_ids, n_prompt, out, n);
        if (n < p->min_new_tokens && p->eos_id >= 0 && p->eos_id < V) logits[p->eos_id] = -INFINITY;
        int32_t next = argmax(logits, V);
        out[n++] = next;
        if (next == p->eos_id || n >= p->max_new_tokens) break;
        qf_status s = m->decode(m->ctx, &next, 1, logits);
        if (s) return s;
    }
    *n_out = n;
    return QF_OK;
}

typedef struct { float score; int idx; } cand;

static int cand_desc(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return x->idx - y->idx;      /* torch.topk keeps the lower index first on ties */
}

static qf_status beam(const qf_gen_model *m, const float *logits0, const int32_t *prompt_ids,
                      int n_prompt, const qf_gen_params *p, int32_t *out, int *n_out) {
    if (p->num_beams > 64) return qf_errorf(QF_ERR_LIMIT, "num_beams %d: at most 64 are supported", p->num_beams);
    const int V = m->vocab, B = p->num_beams, K = 2 * B, T = p->max_new_tokens;
    qf_status s = QF_OK;
    float run_score[B], fin_score[B], cand_score[K];
    int fin_len[B], fin_done[B], cand_beam[K], cand_tok[K], cand_hit[K], zeros[B];
    float *logp = qf_malloc((size_t)B * V * sizeof *logp);
    int32_t *run_seq = qf_calloc((size_t)B * T, sizeof *run_seq);   /* running beams' new tokens */
    int32_t *cand_seq = qf_calloc((size_t)K * T, sizeof *cand_seq);
    int32_t *fin_seq = qf_calloc((size_t)B * T, sizeof *fin_seq);   /* finished hypotheses       */
    int32_t *tmp_seq = qf_calloc((size_t)B * T, sizeof *tmp_seq);
    cand *top = qf_malloc((size_t)B * V * sizeof *top);
    if (!logp || !run_seq || !cand_seq || !fin_seq || !tmp_seq || !top) {
        s = qf_errorf(QF_ERR_NOMEM, "out of memory for beam search over %d beams", B);
        goto done;
    }
    for (int b = 0; b < B; b++) {
        run_score[b] = b == 0 ? 0.0f : NEG_BIG;
        fin_score[b] = NEG_BIG; fin_len[b] = 0; fin_done[b] = 0;
        memcpy(logp + (size_t)b * V, logits0, (size_t)V * sizeof *logp);
    }
    /* every beam starts from the same prefix: copy the prefilled cache */
    memset(zeros, 0, sizeof zeros);
    if ((s = m->reorder(m->ctx, zeros, B))) goto done;

    int heuristic_unsatisfied = 1;
    for (int n = 0; n < T; n++) {       /* n = tokens generated so far */
        /* scores = log_softmax(logits) (+ processors) + running score */
        for (int b = 0; b < B; b++) {
            float *lp = logp + (size_t)b * V;
            log_softmax(lp, V);
            repetition_penalty(lp, V, p->repetition_penalty, prompt_ids, n_prompt, run_seq + (size_t)b * T, n);
            if (n < p->min_new_tokens && p->eos_id >= 0 && p->eos_id < V) lp[p->eos_id] = -INFINITY;
            for (int v = 0; v < V; v++) {
                top[(size_t)b * V + v].score = lp[v] + run_score[b];
                top[(size_t)b * V + v].idx = b * V + v;
            }
        }
        /* top 2B over beams x vocab: partial selection then sort */
        cand best[K];
        int nb = 0;
        for (size_t i = 0; i < (size_t)B * V; i++) {
            cand x = top[i];
            if (nb < K) { best[nb++] = x; qsort(best, (size_t)nb, sizeof *best, cand_desc); continue; }
            if (cand_desc(&x, &best[K - 1]) >= 0) continue;
            int j = K - 1;
            while (j > 0 && cand_desc(&x, &best[j - 1]) < 0) { best[j] = best[j - 1]; j--; }
            best[j] = x;
        }
        for (int k = 0; k < K; k++) {
            cand_score[k] = best[k].score;
            cand_beam[k] = best[k].idx / V;
            cand_tok[k] = best[k].idx % V;
            memcpy(cand_seq + (size_t)k * T, run_seq + (size_t)cand_beam[k] * T, (size_t)n * sizeof *cand_seq);
            cand_seq[(size_t)k * T + n] = cand_tok[k];
            cand_hit[k] = cand_tok[k] == p->eos_id || n + 1 >= T;
        }
        /* finished: merge the top-B candidates that hit a stop into the B best hypotheses */
        {
            float ms[2 * B + K];
            int from[2 * B + K];
            int nm = 0;
            for (int b = 0; b < B; b++) { ms[nm] = fin_score[b]; from[nm++] = b; }
            float norm = powf((float)(n + 1), p->length_penalty);
            for (int k = 0; k < K; k++) {
                float sc = cand_score[k] / norm;
                if (!heuristic_unsatisfied) sc += NEG_BIG;
                if (!(cand_hit[k] && k < B)) sc += NEG_BIG;
                ms[nm] = sc; from[nm++] = B + k;
            }
            cand order[nm];
            for (int i = 0; i < nm; i++) { order[i].score = ms[i]; order[i].idx = i; }
            qsort(order, (size_t)nm, sizeof *order, cand_desc);
            float nfs[B]; int nfl[B], nfd[B];
            for (int b = 0; b < B; b++) {
                int src = from[order[b].idx];
                nfs[b] = order[b].score;
                if (src < B) {
                    memcpy(tmp_seq + (size_t)b * T, fin_seq + (size_t)src * T, (size_t)T * sizeof *tmp_seq);
                    nfl[b] = fin_len[src]; nfd[b] = fin_done[src];
                } else {
                    int k = src - B;
                    memcpy(tmp_seq + (size_t)b * T, cand_seq + (size_t)k * T, (size_t)T * sizeof *tmp_seq);
                    nfl[b] = n + 1; nfd[b] = cand_hit[k] && k < B;
                }
            }
            memcpy(fin_seq, tmp_seq, (size_t)B * T * sizeof *fin_seq);
            memcpy(fin_score, nfs, sizeof nfs); memcpy(fin_len, nfl, sizeof nfl); memcpy(fin_done, nfd, sizeof nfd);
        }
        /* running: best B candidates that did not hit a stop */
        int all_hit = 1;
        for (int k = 0; k < K; k++) all_hit &= cand_hit[k];
        {
            cand order[K];
            for (int k = 0; k < K; k++) { order[k].score = cand_score[k] + (cand_hit[k] ? NEG_BIG : 0.0f); order[k].idx = k; }
            qsort(order, (size_t)K, sizeof *order, cand_desc);
            int src[B];
            int32_t next_tok[B];
            for (int b = 0; b < B; b++) {
                int k = order[b].idx;
                run_score[b] = order[b].score;
                src[b] = cand_beam[k];
                next_tok[b] = cand_tok[k];
                memcpy(tmp_seq + (size_t)b * T, cand_seq + (size_t)k * T, (size_t)T * sizeof *tmp_seq);
            }
            memcpy(run_seq, tmp_seq, (size_t)B * T * sizeof *run_seq);
            /* early-stop heuristic (early_stopping False: best running score / n_new) */
            int all_done = 1;
            float worst = INFINITY;
            for (int b = 0; b < B; b++) { all_done &= fin_done[b]; worst = fin_score[b] < worst ? fin_score[b] : worst; }
            float best_possible = run_score[0] / powf((float)(n + 1), p->length_penalty);
            int improvable = 0;
            for (int b = 0; b < B; b++) improvable |= best_possible > (fin_done[b] ? worst : NEG_BIG);
            heuristic_unsatisfied = heuristic_unsatisfied && improvable;
            int open_beam = !(all_done && p->early_stopping);
            if (!(heuristic_unsatisfied && open_beam && !all_hit)) break;
            if ((s = m->reorder(m->ctx, src, B))) goto done;
            if ((s = m->decode(m->ctx, next_tok, B, logp))) goto done;
        }
    }
    /* best finished hypothesis (index 0 after the sorted merge) */
    *n_out = fin_len[0];
    memcpy(out, fin_seq, (size_t)fin_len[0] * sizeof *out);
done:
    qf_free(logp); qf_free(run_seq); qf_free(cand_seq); qf_free(fin_seq); qf_free(tmp_seq); qf_free(top);
    return s;
}

qf_status qf_gen_search(const qf_gen_model *m, float *logits, const int32_t *prompt_ids, int n_prompt_ids,
                        const qf_gen_params *p, int32_t *out_ids, int *n_out, float *step_logits) {
    *n_out = 0;
    if (p->max_new_tokens < 1) return qf_errorf(QF_ERR_ARG, "max_new_tokens must be at least 1");
    if (p->num_beams < 1) return qf_errorf(QF_ERR_ARG, "num_beams must be at least 1");
    if (p->num_beams == 1) return greedy(m, prompt_ids, n_prompt_ids, p, out_ids, n_out, step_logits, logits);
    return beam(m, logits, prompt_ids, n_prompt_ids, p, out_ids, n_out);
}

/* OPT: the step is a decode of the KV cache. */
typedef struct { const qf_opt *m; qf_opt_cache *c; } opt_step;

static qf_status opt_decode(void *ctx, const int32_t *ids, int n, float *logits) {
    opt_step *o = ctx;
    return qf_opt_decode(o->m, o->c, ids, n, logits);
}

static qf_status opt_reorder(void *ctx, const int *src, int n) {
    return qf_opt_cache_reorder(((opt_step *)ctx)->c, src, n);
}

qf_status qf_generate(const qf_opt *m, qf_opt_cache *c, const float *prefix, int n_prefix,
                      const int32_t *prompt_ids, int n_prompt_ids, const qf_gen_params *p,
                      int32_t *out_ids, int *n_out, float *step_logits) {
    *n_out = 0;
    if (p->max_new_tokens < 1) return qf_errorf(QF_ERR_ARG, "max_new_tokens must be at least 1");
    if (p->num_beams < 1) return qf_errorf(QF_ERR_ARG, "num_beams must be at least 1");
    const int V = qf_opt_vocab(m);
    float *logits = qf_malloc((size_t)V * sizeof *logits);
    if (!logits) return qf_errorf(QF_ERR_NOMEM, "out of memory for logits");
    qf_opt_cache_clear(c);
    qf_status s = qf_opt_forward(m, c, 0, prefix, n_prefix, logits, NULL);
    opt_step o = { m, c };
    qf_gen_model gm = { &o, V, opt_decode, opt_reorder };
    if (!s) s = qf_gen_search(&gm, logits, prompt_ids, n_prompt_ids, p, out_ids, n_out, step_logits);
    qf_free(logits);
    return s;
}

/* T5: the step is a decode of the decoder's KV cache over the encoded input. */
typedef struct { const qf_t5 *m; qf_t5_cache *c; } t5_step;

static qf_status t5_decode(void *ctx, const int32_t *ids, int n, float *logits) {
    t5_step *o = ctx;
    return qf_t5_decode(o->m, o->c, ids, n, logits);
}

static qf_status t5_reorder(void *ctx, const int *src, int n) {
    return qf_t5_cache_reorder(((t5_step *)ctx)->c, src, n);
}

qf_status qf_generate_t5(const qf_t5 *m, qf_t5_cache *c, const float *enc_embeds, int n_enc,
                         const qf_gen_params *p, int32_t *out_ids, int *n_out, float *step_logits) {
    *n_out = 0;
    if (p->max_new_tokens < 1) return qf_errorf(QF_ERR_ARG, "max_new_tokens must be at least 1");
    if (p->num_beams < 1) return qf_errorf(QF_ERR_ARG, "num_beams must be at least 1");
    const int V = qf_t5_vocab(m);
    int32_t start = qf_t5_get_config(m)->decoder_start_token_id;
    float *logits = qf_malloc((size_t)V * sizeof *logits);
    if (!logits) return qf_errorf(QF_ERR_NOMEM, "out of memory for logits");
    qf_status s = qf_t5_encode(m, c, enc_embeds, n_enc, NULL);
    if (!s) s = qf_t5_forward(m, c, 0, &start, 1, logits, NULL);
    t5_step o = { m, c };
    qf_gen_model gm = { &o, V, t5_decode, t5_reorder };
    /* the decoder's input ids start with decoder_start: the repetition
     * penalty sees it as HF's processors do */
    if (!s) s = qf_gen_search(&gm, logits, &start, 1, p, out_ids, n_out, step_logits);
    qf_free(logits);
    return s;
}
