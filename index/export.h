/* export.h - an index's features for Python tools: DIR/image_feats.npy
 * (float32 [n_ok, n_query, dim], rows in image-id order), DIR/image_ids.npy
 * (int64 [n_ok]) and DIR/images.jsonl (one object per image, all statuses,
 * id order: id, path, width, height, status, error, row = index into the
 * .npy files or null). Files are written to temporary names and renamed.
 * File names are bytes: a path (or error text) that is not valid UTF-8 is
 * written with each undecodable byte as "\udcXX", Python's surrogateescape
 * convention, so os.fsencode(json.loads(line)["path"]) is the exact name
 * and open() takes it as is. */
#ifndef QF_EXPORT_H
#define QF_EXPORT_H

#include "embed/common.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct {
    int64_t n_images;     /* rows of images.jsonl */
    int64_t n_ok;         /* rows of the .npy files */
} qf_export_report;

qf_status qf_export_run(const char *db_path, const char *out_dir, qf_export_report *r);

/* Writes the NUL-terminated bytes `s` (borrowed) to f as a JSON string
 * literal, quotes included: valid UTF-8 as is ('"', '\\' and control
 * characters escaped, as jansson does), every byte that is not part of a
 * valid UTF-8 sequence as "\udcXX" (XX its hex value: Python's
 * surrogateescape, as json.dumps(os.fsdecode(name)) escapes it). Returns 1,
 * or 0 on a write error. Shared with the search report (query/report.c). */
int qf_export_json_string(FILE *f, const char *s);

#endif
