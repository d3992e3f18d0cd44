/* blip2.h - the BLIP-2 retrieval model: EVA ViT image encoder, Q-Former,
 * ITC projections and ITM head, loaded from a Hugging Face folder
 * (config.json, *.safetensors, preprocessor_config.json, vocab.txt).
 *
 * The model is immutable after load and may be shared by threads; every
 * forward takes a qf_blip2_state (arena + scratch) owned by one thread. */
#ifndef QF_BLIP2_H
#define QF_BLIP2_H

#include "embed/common.h"
#include "embed/config.h"

#include <stdint.h>

typedef struct qf_blip2 qf_blip2;
typedef struct qf_blip2_state qf_blip2_state;
struct qf_st;                             /* embed/safetensors.h */

/* Which parts to load: the captioning checkpoints have no ITC/ITM heads and
 * no Q-Former text embeddings. */
enum {
    QF_BLIP2_VISION = 1,          /* vision_model.*                           */
    QF_BLIP2_QFORMER = 2,         /* query_tokens, qformer.*                  */
    QF_BLIP2_RETRIEVAL = 4,       /* embeddings.*, vision/text_projection, itm_head */
    QF_BLIP2_ALL = 7,
    /* Option: the ViT's four matrices per layer (qkv, projection, fc1, fc2:
     * 99% of an image's FLOPs) held as BF16 and multiplied with activations
     * rounded to BF16, accumulating in float32; layer norms, softmax, GELU,
     * the residual stream and the Q-Former stay float32. Features differ
     * from the F32 model's by ~1e-3 (tests/unit/test_blip2_bf16.c). The
     * products are computed by sgemm on BF16 values widened to float32 (exact),
     * so this path has the numerics of a native BF16 kernel but not its speed;
     * on CPUs with AVX512_BF16 / AMX the products go through oneDNN. */
    QF_BLIP2_VISION_BF16 = 8,
};

/* 0: F32 ViT; 1: BF16 on sgemm (widened, exact products); 2: BF16 through
 * oneDNN (CPUs with AVX512_BF16 / AMX, or QF_BF16_ENGINE=onednn; see
 * embed/gemm_dnnl.h). */
int qf_blip2_vision_is_bf16(const qf_blip2 *m);

/* Loads the parts in `parts` from `model_dir`; weights stay mmapped. */
qf_status qf_blip2_load(const char *model_dir, int parts, qf_blip2 **out);
/* Same from an already parsed config and an opened tensor set (e.g.
 * qf_st_from_memory for benchmarks): takes ownership of `st` (closed by
 * qf_blip2_free, or here on failure); `cfg` is copied. Every tensor goes
 * through the same presence/dtype/shape checks as qf_blip2_load. */
qf_status qf_blip2_init(const qf_blip2_config *cfg, struct qf_st *st, int parts, qf_blip2 **out);
void      qf_blip2_free(qf_blip2 *m);
/* Config and fingerprint of a checkpoint without loading its weights (no
 * F16/BF16 upcast): cheap, for a coordinator that only writes the store. */
qf_status qf_blip2_inspect(const char *model_dir, qf_blip2_config *cfg, char fingerprint[65]);

const qf_blip2_config *qf_blip2_get_config(const qf_blip2 *m);
int  qf_blip2_n_query(const qf_blip2 *m);     /* num_query_tokens (32)          */
int  qf_blip2_embed_dim(const qf_blip2 *m);   /* image_text_hidden_size (256)   */
int  qf_blip2_n_vis(const qf_blip2 *m);       /* 1 + (image/patch)^2 (257)      */
int  qf_blip2_vis_dim(const qf_blip2 *m);     /* vision hidden (1408)           */
int  qf_blip2_q_dim(const qf_blip2 *m);       /* Q-Former hidden (768)          */
int  qf_blip2_image_size(const qf_blip2 *m);  /* preprocessed square side (224) */
/* Fingerprint of the weights (hex, NUL-terminated, 65 bytes incl. NUL). */
const char *qf_blip2_fingerprint(const qf_blip2 *m);
/* Same over the vision_model.* tensors only: equal for checkpoints that share
 * the frozen ViT, so their vision features can be reused. */
const char *qf_blip2_vision_fingerprint(const qf_blip2 *m);
/* Opened weights, e.g. for further modules sharing the same files (borrowed). */
struct qf_st *qf_blip2_weights(const qf_blip2 *m);

qf_status qf_blip2_state_init(const qf_blip2 *m, qf_blip2_state **out);
void      qf_blip2_state_free(qf_blip2_state *s);

/* pixels [3,S,S] -> vision last hidden state (after post_layernorm) [n_vis, vis_dim]. */
qf_status qf_blip2_vision(const qf_blip2 *m, qf_blip2_state *s, const float *pixels, float *vis);
/* vision tokens -> Q-Former query outputs [n_query, q_dim]. */
qf_status qf_blip2_qformer_image(const qf_blip2 *m, qf_blip2_state *s, const float *vis, float *q_out);
/* Q-Former query outputs -> L2-normalised ITC image features [n_query, embed_dim]. */
qf_status qf_blip2_image_proj(const qf_blip2 *m, qf_blip2_state *s, const float *q_out, float *feats);
/* pixels -> ITC image features [n_query, embed_dim]; vis/q_out optional outputs (NULL ok). */
qf_status qf_blip2_image_feats(const qf_blip2 *m, qf_blip2_state *s, const float *pixels,
                               float *feats, float *vis, float *q_out);
/* text ids/mask [L] -> L2-normalised ITC text feature [embed_dim]; hidden [L, q_dim] optional. */
qf_status qf_blip2_text_feat(const qf_blip2 *m, qf_blip2_state *s, const int64_t *ids,
                             const int64_t *mask, int L, float *feat, float *hidden);
/* ITM: vision tokens + text -> logits[2] (mean over queries of itm_head). */
qf_status qf_blip2_itm(const qf_blip2 *m, qf_blip2_state *s, const float *vis,
                       const int64_t *ids, const int64_t *mask, int L, float logits[2]);

/* Max over queries of image_feats[q] . text_feat. */
float qf_blip2_itc_score(const float *image_feats, int n_query, const float *text_feat, int dim);

#endif
