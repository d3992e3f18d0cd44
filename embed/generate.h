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

#endif
