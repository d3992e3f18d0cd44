/* search.h - `qformer search`: a text (or image) query against an index:
 * Q-Former text feature -> FAISS candidates -> exact BLIP-2 ITC scores from
 * the stored features -> optional ITM rerank of the top N -> optional
 * captions of the first M (cached in the store).
 *
 * Scores (as README.md's `qformer search` states them): itc = max over the image's query vectors (and the
 * query image's, for image queries) of the dot product; with rerank, itm =
 * mean over queries of the ITM match logit, score = itm + itc. The top
 * max(k, N) are taken by itc, the first N reranked and ordered by score
 * ahead of the rest (by itc), and the first k printed: N > k gives the best
 * k of the N (LAVIS: ITC top-k_test, then ITM). */
#ifndef QF_SEARCH_H
#define QF_SEARCH_H

#include "embed/bert.h"
#include "embed/blip2.h"
#include "embed/caption.h"
#include "embed/common.h"
#include "embed/generate.h"
#include "embed/image.h"
#include "index/store.h"
#include "index/vindex.h"
#include "query/report.h"

#include <stddef.h>

typedef struct {
    const char *db_path;
    const char *model_dir;       /* NULL: the model the index was built with     */
    const char *text;            /* the query, or NULL with image_path            */
    const char *image_path;      /* image-to-image query                          */
    const void *image_data;      /* or the encoded image itself (borrowed); then  */
    size_t      image_len;       /* image_path only names it in messages          */
    int         k;               /* results (default 10)                          */
    int         rerank;          /* ITM on the top N (0: off)                     */
    int         caption;         /* caption the first M results (0: off)          */
    const char *caption_model;   /* captioning checkpoint (needed with caption)   */
    const char *prompt;          /* caption prompt, NULL = none                   */
    const qf_gen_params *gen;    /* NULL: the captioning checkpoint's defaults    */
    qf_opt_weights caption_dtype;/* OPT weights for captions (default F32: exact) */
    int         nprobe;          /* IVF probes (0: the tuned value, else FAISS's) */
    int         candidates;      /* images rescored exactly (0: the tuned value)  */
} qf_search_opts;

typedef struct {
    qf_hit *hits;                /* n results, strings owned by the result  */
    int     n;
    char    mode[128];           /* "exact, Flat" / "pooled (approximate), ..." */
    char    rerank_src[128];     /* "" or where ITM vision features came from  */
    long    captions_cached;     /* captions served from the store             */
} qf_search_result;

/* Loads the store, the model the index was built with (or o->model_dir),
 * its tokenizer and the FAISS file, runs one search, frees them. */
qf_status qf_search_run(const qf_search_opts *o, qf_search_result *out);

/* What a search needs loaded, for a caller that runs many (qformer serve):
 * all borrowed. m, tok, pp and vi are only read, so threads may share them;
 * st, bs and cap are used by one thread at a time. The caller checked that
 * m is the model the index was built with. vi NULL: no FAISS file yet (no
 * results). o->db_path, o->model_dir and o->nprobe are not used; the
 * captioner comes from cap, else is loaded from o->caption_model. */
typedef struct {
    qf_store             *st;
    const qf_blip2       *m;
    qf_blip2_state       *bs;
    const qf_bert        *tok;        /* needed for text queries          */
    const qf_img_preproc *pp;
    const qf_vindex      *vi;
    const char           *factory;    /* the index's meta "factory"       */
    int                   pooled;     /* the index's meta "pooled"        */
    qf_captioner         *cap;        /* NULL: o->caption_model           */
} qf_search_env;

/* The search itself (stages 2-6 of qf_search_run): the same results. */
qf_status qf_search_env_run(const qf_search_env *env, const qf_search_opts *o, qf_search_result *out);

/* Captions of the indexed images ids[n] as `search --caption` makes them
 * (o->prompt, o->gen, o->caption_dtype; cached in the store per image,
 * model, prompt and settings). out->hits[i] is image ids[i] with its
 * caption (NULL when its file became unreadable) and zero scores.
 * QF_ERR_MISSING: an id that is not an indexed image. */
qf_status qf_search_caption_ids(const qf_search_env *env, const qf_search_opts *o, const int64_t *ids, int n,
                                qf_search_result *out);
void      qf_search_result_free(qf_search_result *r);   /* NULL ok */

#endif
