/* retrieval.c - see retrieval.h. */
#include "embed/retrieval.h"

#include "embed/bert.h"
#include "embed/blip2.h"
#include "embed/image.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void qf_retrieval_free(qf_retrieval *r) {
    if (!r) return;
    qf_free(r->pixel_values); qf_free(r->resized_u8); qf_free(r->vision); qf_free(r->qformer);
    qf_free(r->image_feats); qf_free(r->input_ids); qf_free(r->attention_mask); qf_free(r->text_feats);
    qf_free(r->text_hidden); qf_free(r->itc); qf_free(r->itm_logits); qf_free(r->itm_scores);
    memset(r, 0, sizeof *r);
}

/* Every array (one extra element: zero-sized batches still allocate). */
static qf_status alloc_all(qf_retrieval *r) {
    size_t ni = (size_t)r->n_img, nt = (size_t)r->n_txt, S = (size_t)r->S;
    r->pixel_values = qf_calloc(ni * 3 * S * S + 1, sizeof(float));
    r->resized_u8 = qf_calloc(ni * S * S * 3 + 1, 1);
    r->vision = qf_calloc(ni * r->Nv * r->Dv + 1, sizeof(float));
    r->qformer = qf_calloc(ni * r->Q * r->Dq + 1, sizeof(float));
    r->image_feats = qf_calloc(ni * r->Q * r->E + 1, sizeof(float));
    r->input_ids = qf_calloc(nt * r->L + 1, sizeof(int64_t));
    r->attention_mask = qf_calloc(nt * r->L + 1, sizeof(int64_t));
    r->text_feats = qf_calloc(nt * r->E + 1, sizeof(float));
    r->text_hidden = qf_calloc(nt * r->L * r->Dq + 1, sizeof(float));
    r->itc = qf_calloc(ni * nt + 1, sizeof(float));
    r->itm_logits = qf_calloc(ni * nt * 2 + 1, sizeof(float));
    r->itm_scores = qf_calloc(ni * nt + 1, sizeof(float));
    if (!r->pixel_values || !r->resized_u8 || !r->vision || !r->qformer || !r->image_feats || !r->input_ids ||
        !r->attention_mask || !r->text_feats || !r->text_hidden || !r->itc || !r->itm_logits || !r->itm_scores)
        return qf_errorf(QF_ERR_NOMEM, "out of memory for %d images and %d texts", r->n_img, r->n_txt);
    return QF_OK;
}

static qf_status run(qf_retrieval *r, qf_blip2 *m, qf_blip2_state *s, qf_bert *tok, const qf_img_preproc *pp,
                     const char *const *images, const char *const *texts, int flags) {
    const int S = r->S, Nv = r->Nv, Dv = r->Dv, Q = r->Q, Dq = r->Dq, E = r->E, L = r->L;
    int *n_tok = qf_calloc((size_t)r->n_txt + 1, sizeof *n_tok);
    if (!n_tok) return qf_errorf(QF_ERR_NOMEM, "out of memory");
    qf_status st = QF_OK;
    for (int i = 0; i < r->n_img && !st; i++) {
        float *pix = r->pixel_values + (size_t)i * 3 * S * S;
        if ((st = qf_img_load_pixels(images[i], pp, NULL, pix, r->resized_u8 + (size_t)i * S * S * 3, NULL, NULL)))
            break;
        if ((st = qf_blip2_image_feats(m, s, pix, r->image_feats + (size_t)i * Q * E, r->vision + (size_t)i * Nv * Dv,
                                       r->qformer + (size_t)i * Q * Dq)))
            qf_error_prefix(st, "%s", images[i]);
    }
    for (int t = 0; t < r->n_txt && !st; t++) {
        int64_t *ids = r->input_ids + (size_t)t * L, *mask = r->attention_mask + (size_t)t * L;
        if ((st = qf_bert_encode(tok, texts[t], L, 1, ids, mask, &n_tok[t])) ||
            (st = qf_blip2_text_feat(m, s, ids, mask, L, r->text_feats + (size_t)t * E,
                                     r->text_hidden + (size_t)t * L * Dq)))
            qf_error_prefix(st, "text %d", t + 1);
    }
    for (int i = 0; i < r->n_img && !st; i++)
        for (int t = 0; t < r->n_txt && !st; t++) {
            size_t it = (size_t)i * r->n_txt + t;
            r->itc[it] = qf_blip2_itc_score(r->image_feats + (size_t)i * Q * E, Q, r->text_feats + (size_t)t * E, E);
            if (!(flags & QF_RETRIEVAL_ITM)) continue;
            float *lg = r->itm_logits + it * 2;
            /* unpadded tokens: padding keys get exactly zero attention weight */
            if (!(st = qf_blip2_itm(m, s, r->vision + (size_t)i * Nv * Dv, r->input_ids + (size_t)t * L,
                                    r->attention_mask + (size_t)t * L, n_tok[t], lg)))
                r->itm_scores[it] = 1.0f / (1.0f + expf(lg[0] - lg[1]));   /* softmax(lg)[1] */
        }
    qf_free(n_tok);
    return st;
}

qf_status qf_retrieval_run(const char *model_dir, const char *const *images, int n_img,
                           const char *const *texts, int n_txt, int flags, qf_retrieval *out) {
    memset(out, 0, sizeof *out);
    qf_blip2 *m = NULL;
    qf_blip2_state *s = NULL;
    qf_bert *tok = NULL;
    qf_img_preproc pp;
    qf_status st;
    if ((st = qf_blip2_load(model_dir, QF_BLIP2_ALL | (flags & QF_RETRIEVAL_VISION_BF16 ? QF_BLIP2_VISION_BF16 : 0), &m)) ||
        (st = qf_img_preproc_load(model_dir, &pp)) || (st = qf_bert_load(model_dir, &tok)) ||
        (st = qf_blip2_state_init(m, &s)))
        goto done;
    out->n_img = n_img;
    out->n_txt = n_txt;
    out->S = qf_blip2_image_size(m);
    out->Nv = qf_blip2_n_vis(m);
    out->Dv = qf_blip2_vis_dim(m);
    out->Q = qf_blip2_n_query(m);
    out->Dq = qf_blip2_q_dim(m);
    out->E = qf_blip2_embed_dim(m);
    out->L = QF_BERT_MAX_TXT_LEN;
    snprintf(out->fingerprint, sizeof out->fingerprint, "%s", qf_blip2_fingerprint(m));
    if ((st = qf_img_preproc_check(&pp, out->S, model_dir)) || (st = alloc_all(out))) goto done;
    st = run(out, m, s, tok, &pp, images, texts, flags);
done:
    qf_blip2_state_free(s);
    qf_bert_free(tok);
    qf_blip2_free(m);
    return st;
}
