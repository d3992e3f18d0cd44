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

#include "embed/common.h"
#include "embed/generate.h"
#include "query/report.h"

typedef struct {
    const char *db_path;
    const char *model_dir;       /* NULL: the model the index was built with     */
    const char *text;            /* the query, or NULL with image_path            */
    const char *image_path;      /* image-to-image query                          */
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

qf_status qf_search_run(const qf_search_opts *o, qf_search_result *out);
void      qf_search_result_free(qf_search_result *r);   /* NULL ok */

#endif
