/* export.h - an index's features for Python tools: DIR/image_feats.npy
 * (float32 [n_ok, n_query, dim], rows in image-id order), DIR/image_ids.npy
 * (int64 [n_ok]) and DIR/images.jsonl (one object per image, all statuses,
 * id order: id, path, width, height, status, error, row = index into the
 * .npy files or null). Files are written to temporary names and renamed. */
#ifndef QF_EXPORT_H
#define QF_EXPORT_H

#include "embed/common.h"

#include <stdint.h>

typedef struct {
    int64_t n_images;     /* rows of images.jsonl */
    int64_t n_ok;         /* rows of the .npy files */
} qf_export_report;

qf_status qf_export_run(const char *db_path, const char *out_dir, qf_export_report *r);

#endif
