/* caption.h - BLIP-2 captioning end to end: a captioning checkpoint folder
 * (Salesforce/blip2-opt-* or blip2-flan-t5-* layout, told apart by
 * config.json's text_config.model_type) loaded once -> image or vision
 * features -> Q-Former -> language_projection -> OPT or Flan-T5 generate ->
 * ids and text.
 *
 * A qf_captioner owns its model, tokenizer, a model state and its vision /
 * query buffers; each run makes its own OPT cache. Calls on one captioner
 * share those: use one captioner per thread. */
#ifndef QF_CAPTION_H
#define QF_CAPTION_H

#include "embed/blip2.h"
#include "embed/image.h"
#include "embed/generate.h"
#include "embed/opt.h"

#include <stdint.h>

typedef struct qf_captioner qf_captioner;

/* Loads the checkpoint folder with the language model's matrices held as
 * wtype (opt.h): QF_OPT_F32 is exact to HF, BF16 / INT8 trade agreement for
 * speed and memory. */
qf_status qf_captioner_load(const char *model_dir, qf_opt_weights wtype, qf_captioner **out);
void      qf_captioner_free(qf_captioner *c);   /* NULL ok */

/* Settings from generation_config.json (borrowed; copy to change them). */
const qf_gen_params   *qf_captioner_defaults(const qf_captioner *c);
const qf_img_preproc  *qf_captioner_preproc(const qf_captioner *c);
const qf_blip2        *qf_captioner_model(const qf_captioner *c);
/* The language model family: "opt" or "t5". */
const char            *qf_captioner_lm(const qf_captioner *c);

typedef struct {
    int32_t *ids;       /* new tokens, EOS included when produced (qf_malloc) */
    int      n_ids;
    char    *text;      /* decoded (skip special tokens, HF clean-up)  (qf_malloc) */
} qf_caption;

void qf_caption_free(qf_caption *cap);   /* frees the fields; NULL ok */

/* The settings part of a caption-cache key (qf_store_caption_get/put): every
 * generation setting that changes the caption, and the weight type unless it
 * is F32 (F32 keys are those of earlier versions: exact captions). Written
 * into buf[n] (truncated to fit, NUL-terminated). */
void  qf_caption_settings(const qf_gen_params *p, qf_opt_weights wtype, char *buf, size_t n);
/* cap->ids as a compact JSON array ("[2,100,50118]"): a new string the
 * caller frees (qf_free), NULL when out of memory. */
char *qf_caption_ids_json(const qf_caption *cap);

/* Captions from vision features [n_vis, vis_dim] (e.g. cached, or computed by
 * a retrieval checkpoint sharing the same ViT). prompt: NULL or "" = none. */
qf_status qf_captioner_run_vis(qf_captioner *c, const float *vis, const char *prompt,
                               const qf_gen_params *p, qf_caption *out);
/* Same from preprocessed pixels [3, S, S]. */
qf_status qf_captioner_run_pixels(qf_captioner *c, const float *pixels, const char *prompt,
                                  const qf_gen_params *p, qf_caption *out);
/* Same from an image file. */
qf_status qf_captioner_run_file(qf_captioner *c, const char *path, const char *prompt,
                                const qf_gen_params *p, qf_caption *out);

#endif
