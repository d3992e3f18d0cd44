/* generate.h - caption generation with the OPT decoder as transformers'
 * `generate` does it for BLIP-2: greedy search and (>= 4.50, vectorised)
 * beam search, with max/min new tokens, length penalty, repetition penalty
 * and the EOS id of generation_config.json ("\n" = 50118 for OPT).
 *
 * The input is the soft prompt (language_projection of the Q-Former query
 * outputs) followed by the embeddings of the prompt ids; HF's newer layout
 * (image tokens in the prompt replaced by the soft prompt) builds exactly
 * the same sequence, so both layouts give the same captions. */
#ifndef QF_GENERATE_H
#define QF_GENERATE_H

#include "embed/t5.h"
#include "embed/opt.h"

typedef struct {
    int   max_new_tokens;         /* default 20 (HF max_length 20 in practice); fixtures use 16 */
    int   min_new_tokens;         /* EOS suppressed before this many new tokens             */
    int   num_beams;              /* 1 = greedy                                              */
    float length_penalty;         /* beam score = sum logprob / n_new ^ length_penalty       */
    float repetition_penalty;     /* 1 = off                                                 */
    int   early_stopping;         /* 0 = HF False heuristic, 1 = True                       */
    int   eos_id;                 /* 50118 for BLIP-2 OPT                                    */
} qf_gen_params;

/* HF defaults as BLIP-2 ships them (greedy, max 20 new tokens...); eos from
 * the config (pass the generation_config's value). */
void qf_gen_params_default(qf_gen_params *p, int eos_id);
/* Reads <model_dir>/generation_config.json (optional) over the defaults
 * taken from cfg (eos/bos). */
qf_status qf_gen_params_load(const char *model_dir, const qf_blip2_config *cfg, qf_gen_params *p);

/* Generates new tokens after prefix [n_prefix, D] embeddings (soft prompt +
 * prompt embeddings) whose token ids (for the repetition penalty; may be NULL
 * with n_prompt_ids 0) are prompt_ids. out_ids: room for max_new_tokens;
 * *n_out receives the count (EOS included when produced). step_logits: NULL
 * or [max_new_tokens, V] raw logits of each greedy step (greedy only).
 * The cache must hold num_beams sequences of n_prefix + max_new_tokens. */
qf_status qf_generate(const qf_opt *m, qf_opt_cache *c, const float *prefix, int n_prefix,
                      const int32_t *prompt_ids, int n_prompt_ids, const qf_gen_params *p,
                      int32_t *out_ids, int *n_out, float *step_logits);

/* The same for a Flan-T5 captioning model: runs the encoder over
 * enc_embeds [n_enc, D] (soft prompt + prompt embeddings, `</s>` last), then
 * decodes from decoder_start_token_id. out_ids: the new tokens (decoder start
 * excluded, EOS included when produced). The cache must hold num_beams
 * sequences of max_new_tokens + 1 tokens and n_enc encoder rows. */
qf_status qf_generate_t5(const qf_t5 *m, qf_t5_cache *c, const float *enc_embeds, int n_enc,
                         const qf_gen_params *p, int32_t *out_ids, int *n_out, float *step_logits);

/* The search over any decoder: decode(ctx, ids, n, logits[n, V]) feeds one
 * token to each of sequences 0..n-1 and returns their next logits;
 * reorder(ctx, src, n) makes sequence i a copy of old sequence src[i]. */
typedef struct {
    void     *ctx;
    int       vocab;
    qf_status (*decode)(void *ctx, const int32_t *ids, int n, float *logits);
    qf_status (*reorder)(void *ctx, const int *src, int n);
} qf_gen_model;

/* Greedy or beam search from the first step's logits [V] (sequence 0 of the
 * decoder holds the prefix; overwritten as scratch). prompt_ids: the ids the
 * repetition penalty sees before the new tokens (OPT: the prompt; T5: the
 * decoder start). Other arguments as qf_generate. */
qf_status qf_gen_search(const qf_gen_model *m, float *logits, const int32_t *prompt_ids, int n_prompt_ids,
                        const qf_gen_params *p, int32_t *out_ids, int *n_out, float *step_logits);

#endif
