/* retrieval.h - the BLIP-2 retrieval model over a batch of image files and
 * texts, every output `qformer embed` writes: ITC features and scores, ITM
 * logits and match probabilities, and the intermediate tensors (inputs and
 * hidden states) the fixtures' expected.safetensors holds.
 *
 * Texts are BERT ids padded to QF_BERT_MAX_TXT_LEN (the text features see
 * the padding masked, as HF's padding="max_length"); ITM runs on the
 * unpadded tokens, whose result is the same (padding keys get exactly zero
 * attention weight). All arrays are owned by the result (qf_retrieval_free). */
#ifndef QF_RETRIEVAL_H
#define QF_RETRIEVAL_H

#include "embed/common.h"

#include <stdint.h>

typedef struct {
    int      n_img, n_txt;
    int      S, Nv, Dv, Q, Dq, E, L;    /* image_size, vision tokens and width, queries,
                                           Q-Former width, ITC dim, text length */
    char     fingerprint[65];          /* of the checkpoint (qf_blip2_fingerprint) */
    float   *pixel_values;             /* [n_img, 3, S, S]                          */
    uint8_t *resized_u8;               /* [n_img, S, S, 3]                          */
    float   *vision;                   /* [n_img, Nv, Dv] vision_last_hidden_state  */
    float   *qformer;                  /* [n_img, Q, Dq] qformer_last_hidden_state  */
    float   *image_feats;              /* [n_img, Q, E]                             */
    int64_t *input_ids, *attention_mask; /* [n_txt, L]                              */
    float   *text_feats;               /* [n_txt, E]                                */
    float   *text_hidden;              /* [n_txt, L, Dq]                            */
    float   *itc;                      /* [n_img, n_txt] max over queries           */
    float   *itm_logits;               /* [n_img, n_txt, 2] (with itm, else zeros)  */
    float   *itm_scores;               /* [n_img, n_txt] softmax(logits)[1]         */
} qf_retrieval;

enum { QF_RETRIEVAL_ITM = 1, QF_RETRIEVAL_VISION_BF16 = 2 };

/* Loads the retrieval checkpoint `model_dir` and runs it on images[n_img]
 * and texts[n_txt] (flags: QF_RETRIEVAL_*). An image or text that fails
 * fails the call, the message naming it. *out is filled (free it with
 * qf_retrieval_free, also after a failure). */
qf_status qf_retrieval_run(const char *model_dir, const char *const *images, int n_img,
                           const char *const *texts, int n_txt, int flags, qf_retrieval *out);
void      qf_retrieval_free(qf_retrieval *r);   /* frees the arrays; NULL ok */

#endif
