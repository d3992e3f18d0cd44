/* t5.h - the BLIP-2 Flan-T5 language model as transformers' modeling_t5.py
 * computes it: `language_projection` (Q-Former query outputs -> d_model),
 * the T5 v1.1 encoder (shared embedding, pre-norm blocks with RMS layer
 * norms, relative position bias held by block 0, bidirectional buckets,
 * no 1/sqrt(d_kv) score scaling, gated FFN wo(act(wi_0 h) * wi_1 h)) and
 * the decoder (causal self-attention with a KV cache, cross-attention to the
 * encoder output whose keys/values are computed once, final norm, lm_head;
 * the d_model^-0.5 scale only when the head is tied to `shared`, or when a
 * transformers 5.x config says scale_decoder_outputs).
 *
 * The model is immutable after load; a qf_t5_cache holds one encoder
 * output's cross-attention keys/values, the self-attention keys/values of
 * n_seq decoder sequences (the beams) and scratch, and belongs to one
 * thread. Matrices are held as F32, BF16 or INT8 as OPT's (opt.h). */
#ifndef QF_T5_H
#define QF_T5_H

#include "embed/common.h"
#include "embed/config.h"
#include "embed/safetensors.h"
#include "embed/opt.h"

#include <stdint.h>

typedef struct qf_t5 qf_t5;
typedef struct qf_t5_cache qf_t5_cache;

/* Loads language_projection.* and language_model.* (T5 names; `shared` or,
 * without it, `encoder.embed_tokens`; lm_head, or `shared` when tied) from
 * the opened weights `st` (borrowed: must outlive the qf_t5). cfg->t5 must
 * be present. Every tensor is checked for presence and shape first. */
qf_status qf_t5_load(qf_st *st, const qf_blip2_config *cfg, qf_opt_weights wtype, qf_t5 **out);
void      qf_t5_free(qf_t5 *m);   /* NULL ok */

qf_opt_weights      qf_t5_weight_type(const qf_t5 *m);
const qf_t5_config *qf_t5_get_config(const qf_t5 *m);
int                 qf_t5_dim(const qf_t5 *m);     /* d_model (2048 for -xl)   */
int                 qf_t5_vocab(const qf_t5 *m);   /* vocab_size (32128)       */

/* HF `_relative_position_bucket(key_pos - query_pos)`: bidirectional for the
 * encoder, causal (only rel <= 0 distinguished) for the decoder; the
 * logarithmic part in float32 as HF computes it. */
int qf_t5_bucket(int rel, int bidirectional, int num_buckets, int max_distance);

/* out[n, D] = language_projection(q_out[n, Dq]) */
void qf_t5_project(const qf_t5 *m, const float *q_out, int n, float *out);
/* out[n, D] = shared[ids]; QF_ERR_ARG for an id outside the vocabulary. */
qf_status qf_t5_embed(const qf_t5 *m, const int32_t *ids, int n, float *out);

/* A cache for encoder inputs of at most max_enc rows and n_seq decoder
 * sequences of at most max_dec tokens each. */
qf_status qf_t5_cache_init(const qf_t5 *m, int n_seq, int max_enc, int max_dec, qf_t5_cache **out);
void      qf_t5_cache_free(qf_t5_cache *c);   /* NULL ok */
int       qf_t5_cache_len(const qf_t5_cache *c, int seq);
/* Empties every decoder sequence (the encoder output stays). */
void      qf_t5_cache_clear(qf_t5_cache *c);
/* Decoder sequence i takes the keys/values of old sequence src[i], i < n. */
qf_status qf_t5_cache_reorder(qf_t5_cache *c, const int *src, int n);

/* Runs the encoder over S input embedding rows [S, D] (mask all ones),
 * keeps the decoder's cross-attention keys/values in c and empties the
 * decoder sequences. out: NULL or [S, D], the encoder's last hidden state
 * (after final_layer_norm). */
qf_status qf_t5_encode(const qf_t5 *m, qf_t5_cache *c, const float *embeds, int S, float *out);

/* Runs T decoder tokens of sequence `seq` at once (positions continue from
 * its length; causal inside the T). logits: NULL or [V] for the last token;
 * all_logits: NULL or [T, V]. */
qf_status qf_t5_forward(const qf_t5 *m, qf_t5_cache *c, int seq, const int32_t *ids, int T,
                        float *logits, float *all_logits);
/* One new token for each of sequences 0..n-1 (batched through the
 * products): logits [n, V]. */
qf_status qf_t5_decode(const qf_t5 *m, qf_t5_cache *c, const int32_t *ids, int n, float *logits);

#endif
