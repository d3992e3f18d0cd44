/* scan.h - finds the image files of a corpus: files, folders (walked
 * recursively, sorted by name so ids are assigned in the same order on every
 * run), and @LIST files holding one path per line.
 *
 * A file is a candidate when its first bytes are the signature of a format
 * qformer decodes (qf_img_sniff: PNG, JPEG, WebP, GIF, TIFF, BMP, HEIF,
 * AVIF) or its name has an image extension, in any case (.png .jpg .jpeg
 * .jpe .jfif .gif .bmp .dib .webp .tif .tiff .heic .heif .hif .avif): a
 * broken "photo.HEIC" is indexed as a failure with its reason, never
 * skipped silently. Symbolic links to files are followed;
 * symbolic links to folders are not (no loops). Problems (unreadable folder,
 * missing path) are collected as per-path errors; the scan goes on. */
#ifndef QF_SCAN_H
#define QF_SCAN_H

#include "embed/common.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char    *path;        /* as given / joined from the walk (qf_malloc)      */
    int64_t  size;        /* bytes                                            */
    int64_t  mtime_ns;    /* modification time, nanoseconds since the epoch   */
} qf_scan_file;

typedef struct {
    char *path;
    char *error;
    int   named;      /* a path the user named (a root or an @LIST line) that
                         does not exist or cannot be read at all */
} qf_scan_error;

typedef struct {
    qf_scan_file  *files;   /* sorted by path, unique                        */
    size_t         n_files, cap_files;
    qf_scan_error *errors;  /* paths that could not be scanned                */
    size_t         n_errors, cap_errors;
} qf_scan;

/* Scans every root (file, folder or "@LIST"). Fails only on allocation
 * failure or an unreadable @LIST file; other problems go to out->errors. */
qf_status qf_scan_run(const char *const *roots, int n_roots, qf_scan *out);
void      qf_scan_free(qf_scan *s);

/* 1 if name ends with an image extension (case-insensitive). */
int qf_scan_has_image_ext(const char *name);

#endif
