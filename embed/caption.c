/* caption.c - see caption.h. OPT: the prompt is tokenized with OPT's BPE
 * (`</s>` first, as the checkpoints' tokenizer_config adds it); without a
 * prompt the input is [</s>] alone, as Blip2ForConditionalGeneration.generate
 * uses. Flan-T5: the prompt is tokenized with SentencePiece (`</s>` last);
 * without one the encoder input is [bos_token_id] = [1]; the soft prompt and
 * those ids go through the encoder, decoding starts at decoder_start. */
#include "embed/caption.h"

#include "embed/bpe.h"
#include "embed/opt.h"
#include "embed/spm.h"
#include "embed/t5.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct qf_captioner {
    qf_blip2       *model;
    qf_blip2_state *state;
    qf_opt         *opt;          /* OPT checkpoints            */
    qf_bpe         *bpe;
    qf_t5          *t5;           /* Flan-T5 checkpoints        */
    qf_spm         *spm;
    qf_img_preproc  pp;
    qf_gen_params   gen;
    float          *vis, *q_out;
};

qf_status qf_captioner_load(const char *model_dir, qf_opt_weights wtype, qf_captioner **out) {
    *out = NULL;
    qf_captioner *c = qf_calloc(1, sizeof *c);
    if (!c) return qf_errorf(QF_ERR_NOMEM, "out of memory loading %s", model_dir);
    qf_status s;
    if ((s = qf_blip2_load(model_dir, QF_BLIP2_VISION | QF_BLIP2_QFORMER, &c->model))) goto fail;
    const qf_blip2_config *cfg = qf_blip2_get_config(c->model);
    if (cfg->t5.present) {
        if ((s = qf_t5_load(qf_blip2_weights(c->model), cfg, wtype, &c->t5)) ||
            (s = qf_spm_load(model_dir, &c->spm)))
            goto fail;
    } else if (cfg->text.present) {
        if ((s = qf_opt_load(qf_blip2_weights(c->model), cfg, wtype, &c->opt)) ||
            (s = qf_bpe_load(model_dir, &c->bpe)))
            goto fail;
    } else {
        s = cfg->text_model_type[0] && strcmp(cfg->text_model_type, "opt")
            ? qf_errorf(QF_ERR_UNSUPPORTED, "config.json: text_config.model_type '%s' is not supported "
                        "(captioning takes OPT or T5 language models)", cfg->text_model_type)
            : qf_errorf(QF_ERR_ARG, "not a captioning checkpoint (config.json has no text_config); "
                        "use e.g. Salesforce/blip2-opt-2.7b or Salesforce/blip2-flan-t5-xl");
        goto fail;
    }
    if ((s = qf_img_preproc_load(model_dir, &c->pp)) ||
        (s = qf_gen_params_load(model_dir, cfg, &c->gen)) ||
        (s = qf_blip2_state_init(c->model, &c->state)))
        goto fail;
    c->vis = qf_malloc((size_t)qf_blip2_n_vis(c->model) * qf_blip2_vis_dim(c->model) * sizeof(float));
    c->q_out = qf_malloc((size_t)qf_blip2_n_query(c->model) * qf_blip2_q_dim(c->model) * sizeof(float));
    if (!c->vis || !c->q_out) { s = qf_errorf(QF_ERR_NOMEM, "out of memory"); goto fail; }
    *out = c;
    return QF_OK;
fail:
    qf_error_prefix(s, "%s", model_dir);
    qf_captioner_free(c);
    return s;
}

void qf_captioner_free(qf_captioner *c) {
    if (!c) return;
    qf_free(c->vis);
    qf_free(c->q_out);
    qf_blip2_state_free(c->state);
    qf_bpe_free(c->bpe);
    qf_opt_free(c->opt);
    qf_spm_free(c->spm);
    qf_t5_free(c->t5);
    qf_blip2_free(c->model);
    qf_free(c);
}

const qf_gen_params  *qf_captioner_defaults(const qf_captioner *c) { return &c->gen; }
const qf_img_preproc *qf_captioner_preproc(const qf_captioner *c) { return &c->pp; }
const qf_blip2       *qf_captioner_model(const qf_captioner *c) { return c->model; }

void qf_caption_free(qf_caption *cap) {
    if (!cap) return;
    qf_free(cap->ids);
    qf_free(cap->text);
    memset(cap, 0, sizeof *cap);
}

const char *qf_captioner_lm(const qf_captioner *c) { return c->t5 ? "t5" : "opt"; }

/* Flan-T5: encoder input = [language_projection(qformer(vis)); shared(ids)],
 * ids = SentencePiece(prompt) + [</s>], or [bos_token_id] without a prompt. */
static qf_status run_t5(qf_captioner *c, const float *vis, const char *prompt, const qf_gen_params *p,
                        qf_caption *out) {
    const int Q = qf_blip2_n_query(c->model), D = qf_t5_dim(c->t5);
    int32_t *ids = NULL;
    int n_ids = 0;
    float *x = NULL;
    qf_t5_cache *cache = NULL;
    qf_status s;
    if (prompt && *prompt) {
        if ((s = qf_spm_encode(c->spm, prompt, 1, &ids, &n_ids))) return qf_error_prefix(s, "prompt");
    } else {
        if (!(ids = qf_malloc(sizeof *ids))) return qf_errorf(QF_ERR_NOMEM, "out of memory");
        ids[0] = qf_t5_get_config(c->t5)->bos_token_id;
        n_ids = 1;
    }
    const int S = Q + n_ids;
    if ((s = qf_blip2_qformer_image(c->model, c->state, vis, c->q_out))) goto done;
    x = qf_malloc((size_t)S * D * sizeof *x);
    out->ids = qf_malloc((size_t)p->max_new_tokens * sizeof *out->ids);
    if (!x || !out->ids) { s = qf_errorf(QF_ERR_NOMEM, "out of memory"); goto done; }
    qf_t5_project(c->t5, c->q_out, Q, x);
    if ((s = qf_t5_embed(c->t5, ids, n_ids, x + (size_t)Q * D))) goto done;
    if ((s = qf_t5_cache_init(c->t5, p->num_beams, S, p->max_new_tokens + 1, &cache))) goto done;
    if ((s = qf_generate_t5(c->t5, cache, x, S, p, out->ids, &out->n_ids, NULL))) goto done;
    s = qf_spm_decode(c->spm, out->ids, out->n_ids, &out->text);
done:
    qf_t5_cache_free(cache);
    qf_free(x);
    qf_free(ids);
    if (s) qf_caption_free(out);
    return s;
}

qf_status qf_captioner_run_vis(qf_captioner *c, const float *vis, const char *prompt,
                               const qf_gen_params *p, qf_caption *out) {
    memset(out, 0, sizeof *out);
    if (!p) p = &c->gen;
    if (p->max_new_tokens < 1) return qf_errorf(QF_ERR_ARG, "max_new_tokens must be at least 1");
    if (c->t5) return run_t5(c, vis, prompt, p, out);
    const int Q = qf_blip2_n_query(c->model), D = qf_opt_dim(c->opt);
    int32_t *ids = NULL, bos = qf_bpe_bos_id(c->bpe);
    int n_ids = 0;
    float *prefix = NULL;
    qf_opt_cache *cache = NULL;
    qf_status s;
    if (prompt && *prompt) {
        if ((s = qf_bpe_encode(c->bpe, prompt, 1, &ids, &n_ids))) return qf_error_prefix(s, "prompt");
    } else {
        ids = qf_malloc(sizeof *ids);
        if (!ids) return qf_errorf(QF_ERR_NOMEM, "out of memory");
        ids[0] = bos;
        n_ids = 1;
    }
    int n_prefix = Q + n_ids, max_len = n_prefix + p->max_new_tokens;
    if (max_len > qf_opt_max_positions(c->opt)) {
        s = qf_errorf(QF_ERR_LIMIT, "prompt of %d tokens + %d queries + %d new tokens exceeds OPT's %d positions",
                      n_ids, Q, p->max_new_tokens, qf_opt_max_positions(c->opt));
        goto done;
    }
    /* inputs_embeds = cat(language_projection(qformer(vis)), embed_tokens(ids)) */
    if ((s = qf_blip2_qformer_image(c->model, c->state, vis, c->q_out))) goto done;
    prefix = qf_malloc((size_t)n_prefix * D * sizeof *prefix);
    out->ids = qf_malloc((size_t)p->max_new_tokens * sizeof *out->ids);
    if (!prefix || !out->ids) { s = qf_errorf(QF_ERR_NOMEM, "out of memory"); goto done; }
    qf_opt_project(c->opt, c->q_out, Q, prefix);
    if ((s = qf_opt_embed(c->opt, ids, n_ids, prefix + (size_t)Q * D))) goto done;
    if ((s = qf_opt_cache_init(c->opt, p->num_beams, max_len, &cache))) goto done;
    if ((s = qf_generate(c->opt, cache, prefix, n_prefix, ids, n_ids, p, out->ids, &out->n_ids, NULL))) goto done;
    s = qf_bpe_decode(c->bpe, out->ids, out->n_ids, 1, qf_bpe_clean_spaces(c->bpe), &out->text);
done:
    qf_opt_cache_free(cache);
    qf_free(prefix);
    qf_free(ids);
    if (s) qf_caption_free(out);
    return s;
}

qf_status qf_captioner_run_pixels(qf_captioner *c, const float *pixels, const char *prompt,
                                  const qf_gen_params *p, qf_caption *out) {
    memset(out, 0, sizeof *out);
    qf_status s = qf_blip2_vision(c->model, c->state, pixels, c->vis);
    if (s) return s;
    return qf_captioner_run_vis(c, c->vis, prompt, p, out);
}

qf_status qf_captioner_run_file(qf_captioner *c, const char *path, const char *prompt,
                                const qf_gen_params *p, qf_caption *out) {
    memset(out, 0, sizeof *out);
    const int S = c->pp.height;
    qf_status s = qf_img_preproc_check(&c->pp, qf_blip2_image_size(c->model), NULL);
    if (s) return s;
    float *pixels = qf_malloc((size_t)3 * S * S * sizeof *pixels);
    if (!pixels) return qf_errorf(QF_ERR_NOMEM, "out of memory");
    s = qf_img_load_pixels(path, &c->pp, NULL, pixels, NULL, NULL, NULL);
    if (!s) s = qf_captioner_run_pixels(c, pixels, prompt, p, out);
    qf_free(pixels);
    return s;
}

void qf_caption_settings(const qf_gen_params *gp, qf_opt_weights wtype, char *buf, size_t n) {
    snprintf(buf, n, "beams=%d,max_new=%d,min_new=%d,lp=%g,rp=%g,eos=%d%s%s", gp->num_beams,
             gp->max_new_tokens, gp->min_new_tokens, gp->length_penalty, gp->repetition_penalty, gp->eos_id,
             wtype == QF_OPT_F32 ? "" : ",w=", wtype == QF_OPT_F32 ? "" : qf_opt_weights_name(wtype));
}

char *qf_caption_ids_json(const qf_caption *cap) {
    json_t *a = json_array();
    for (int t = 0; a && t < cap->n_ids; t++)
        if (json_array_append_new(a, json_integer(cap->ids[t]))) { json_decref(a); a = NULL; }
    char *js = a ? json_dumps(a, JSON_COMPACT) : NULL;   /* malloc'd by jansson */
    json_decref(a);
    char *out = js ? qf_strdup(js) : NULL;
    free(js);
    return out;
}
