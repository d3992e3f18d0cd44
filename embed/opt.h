/* opt.h - the BLIP-2 language model: `language_projection` (Q-Former query
 * outputs -> OPT embedding space) and the OPT decoder (learned positions with
 * offset 2, pre-LN blocks, ReLU FFN, final layer norm, lm_head tied to
 * embed_tokens when the checkpoint omits it) with a KV cache.
 *
 * The model is immutable after load; a qf_opt_cache holds the keys/values of
 * n_seq sequences (the beams) plus scratch, and belongs to one thread. */
#ifndef QF_OPT_H
#define QF_OPT_H

#include "embed/common.h"
#include "embed/config.h"
#include "embed/safetensors.h"

#include <stdint.h>

typedef struct qf_opt qf_opt;
typedef struct qf_opt_cache qf_opt_cache;

/* How the decoder's matrices (q/k/v/out projections, fc1, fc2 and
 * lm_head) are held; everything else (embeddings, biases, layer norms,
 * activations, softmax, the KV cache) is float32 in every mode.
 *   F32   in place in the mapped file (converted once if it stores F16/BF16):
 *         the exact model.
 *   BF16  in place when the file stores BF16, else rounded once from float32.
 *         Decoding streams half the bytes; prefills convert weight rows back
 *         to float32 for the GEMMs. Logits differ by the weights' rounding.
 *   INT8  quantized once at load per output row (symmetric, max|w| / 127);
 *         every product quantizes its activation rows the same way and sums
 *         exactly in int32 (VNNI where present): W8A8, a quarter of the bytes.
 *         Captions agree with F32 on most but not all inputs (README). */
typedef enum { QF_OPT_F32, QF_OPT_BF16, QF_OPT_INT8 } qf_opt_weights;

/* "f32", "bf16", "int8" */
const char *qf_opt_weights_name(qf_opt_weights w);
qf_status   qf_opt_weights_parse(const char *s, qf_opt_weights *out);

/* Loads language_projection.* and language_model.* from the opened weights
 * `st` (borrowed: must outlive the qf_opt), matrices held as `wtype`
 * (QF_OPT_F32: the exact model). */
qf_status qf_opt_load(qf_st *st, const qf_blip2_config *cfg, qf_opt_weights wtype, qf_opt **out);
void      qf_opt_free(qf_opt *m);

qf_opt_weights qf_opt_weight_type(const qf_opt *m);
int qf_opt_dim(const qf_opt *m);          /* hidden size (2560)       */
int qf_opt_vocab(const qf_opt *m);        /* vocab_size (50272)       */
int qf_opt_max_positions(const qf_opt *m);/* max_position_embeddings  */

/* out[n, D] = language_projection(q_out[n, Dq]) */
void qf_opt_project(const qf_opt *m, const float *q_out, int n, float *out);
/* out[n, D] = embed_tokens[ids]; QF_ERR_ARG for an id outside the vocabulary. */
qf_status qf_opt_embed(const qf_opt *m, const int32_t *ids, int n, float *out);

/* A cache for n_seq sequences of at most max_len positions each. */
qf_status qf_opt_cache_init(const qf_opt *m, int n_seq, int max_len, qf_opt_cache **out);
void      qf_opt_cache_free(qf_opt_cache *c);
int       qf_opt_cache_len(const qf_opt_cache *c, int seq);
/* Empties every sequence. */
void      qf_opt_cache_clear(qf_opt_cache *c);
/* Sequence i takes the keys/values of old sequence src[i], for i < n. */
qf_status qf_opt_cache_reorder(qf_opt_cache *c, const int *src, int n);

/* Runs T input embedding rows [T, D] through the decoder for sequence `seq`,
 * appending them to its cache (positions continue from its length).
 * logits: NULL, or [V] for the last row; all_logits: NULL or [T, V]. */
qf_status qf_opt_forward(const qf_opt *m, qf_opt_cache *c, int seq, const float *embeds, int T,
                         float *logits, float *all_logits);

/* One new token for each of sequences 0..n-1 (batched through the GEMMs):
 * logits [n, V]. */
qf_status qf_opt_decode(const qf_opt *m, qf_opt_cache *c, const int32_t *ids, int n, float *logits);

#endif
