/* report.h - search results as a table, JSON (the command-line contract in
 * README.md) or a self-contained HTML gallery (thumbnails embedded as JPEG
 * data URIs, scores, captions). Writes to a caller-provided stream. */
#ifndef QF_REPORT_H
#define QF_REPORT_H

#include "embed/common.h"

#include <stdint.h>
#include <stdio.h>

typedef struct {
    int64_t     id;          /* image id in the store                        */
    const char *path;        /* owned by the qf_search_result holding the hit */
    int         width, height;
    float       itc;         /* exact ITC score (max over query vectors)      */
    int         has_itm;
    float       itm;         /* ITM match logit (mean over queries)           */
    float       score;       /* itc, or itm + itc when reranked               */
    const char *caption;     /* NULL when not captioned                       */
} qf_hit;

typedef struct {
    const char *query;       /* the text, or "image:PATH"                     */
    const char *mode;        /* e.g. "exact" or "pooled (approximate)"        */
    const char *rerank_src;  /* NULL, or where ITM vision features came from  */
    int         thumb_px;    /* HTML thumbnail size (longest side)            */
} qf_report_info;

qf_status qf_report_json(FILE *f, const qf_report_info *info, const qf_hit *hits, int n);
qf_status qf_report_table(FILE *f, const qf_report_info *info, const qf_hit *hits, int n);
/* Thumbnails are decoded from the hits' paths; an unreadable image gets a
 * placeholder card with the error, never a failed page. */
qf_status qf_report_html(FILE *f, const qf_report_info *info, const qf_hit *hits, int n);

/* The image at path decoded, resized (PIL bicubic) to a longest side of px
 * unless smaller, and encoded as JPEG (quality 85): the gallery's
 * thumbnails. *jpeg: new buffer of *len bytes the caller frees (qf_free).
 * Errors as qf_img_load. */
qf_status qf_report_thumb_jpeg(const char *path, int px, unsigned char **jpeg, size_t *len);

#endif
