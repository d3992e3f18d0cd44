/* hub.h - download checkpoints from the Hugging Face hub and find them again.
 *
 * qf_hub_pull lists a repo through the hub API, keeps the files qformer reads
 * (configs, tokenizer files, *.safetensors + index) and downloads each one
 * resumably ({file}.incomplete, Range requests, retries), verifies it (LFS
 * SHA-256, git blob SHA-1 or size) and renames it into place, so a file with
 * its final name is always complete. The cache has the hub's layout:
 * CACHE/models--ORG--NAME/{refs/REV, snapshots/COMMIT/FILE} (plain files). */
#ifndef QF_HUB_H
#define QF_HUB_H

#include "embed/common.h"

#include <stdint.h>

#define QF_HUB_PATH_MAX 4096

typedef enum {
    QF_HUB_EV_LISTED,    /* repo listed: count files, all_total bytes to fetch  */
    QF_HUB_EV_START,     /* a file's transfer begins (resumed_from > 0: resume) */
    QF_HUB_EV_PROGRESS,  /* bytes arrived (at most ~10 calls a second)          */
    QF_HUB_EV_DONE,      /* file verified and in place                          */
    QF_HUB_EV_SKIP,      /* file already present with the expected size         */
    QF_HUB_EV_RETRY,     /* transfer failed, retrying after `message`           */
} qf_hub_event;

typedef struct {
    qf_hub_event event;
    const char  *file;          /* repo file name; borrowed, valid during the call     */
    const char  *message;       /* RETRY: why (borrowed, valid during the call); else NULL */
    int          index;         /* 0-based file number, of `count`                    */
    int          count;
    int64_t      done;          /* bytes of this file on disk                         */
    int64_t      total;         /* expected size of this file, -1 if unknown          */
    int64_t      resumed_from;  /* bytes already on disk when this transfer began     */
    int64_t      all_done;      /* bytes of all selected files on disk                */
    int64_t      all_total;     /* bytes of all selected files                        */
    double       bytes_per_s;   /* this transfer's mean speed (0 until measurable)    */
    double       eta_s;         /* seconds left for this file, -1 if unknown          */
} qf_hub_progress;

typedef void (*qf_hub_progress_fn)(const qf_hub_progress *p, void *user);

typedef struct {
    const char        *endpoint;  /* NULL: $HF_ENDPOINT, else https://huggingface.co   */
    const char        *revision;  /* NULL: "main" (branch, tag or commit)              */
    const char        *dir;       /* NULL: the cache's snapshot folder; else this one  */
    const char        *token;     /* NULL: $HF_TOKEN, else the `huggingface-cli login`
                                     token file ($HF_TOKEN_PATH or $HF_HOME/token)     */
    int                retries;   /* extra attempts per file after a broken transfer   */
    qf_hub_progress_fn progress;  /* may be NULL                                       */
    void              *user;      /* passed to progress                                */
} qf_hub_options;

/* Defaults: everything NULL, retries 3. */
void qf_hub_options_init(qf_hub_options *opt);

/* Downloads the selected files of `repo_id` ("org/name") into opt->dir or
 * the cache and writes the folder they are in to out_dir (caller's buffer of
 * `n` bytes; may be NULL). Files already present with the right size are
 * kept. A failed file leaves its .incomplete part for the next run to resume,
 * except a verification failure, which deletes it. 404/401/403 and network
 * errors come back with a message saying what to do. Never prints. */
qf_status qf_hub_pull(const char *repo_id, const qf_hub_options *opt, char *out_dir, size_t n);

/* The cache root: $QF_CACHE, $HF_HUB_CACHE, $HF_HOME/hub,
 * $XDG_CACHE_HOME/huggingface/hub or ~/.cache/huggingface/hub. */
qf_status qf_hub_cache_dir(char *out, size_t n);

/* Resolves a --model argument: an existing folder is returned as is; a repo
 * id in the cache ("org/name") gives the snapshot folder of its "main" ref
 * (or its only snapshot). A repo id that is neither gives QF_ERR_MISSING with
 * a message naming the `qformer pull` to run. Anything else (a path that does
 * not exist) is returned unchanged for the loader to report. */
qf_status qf_hub_resolve_model(const char *arg, char *dir, size_t n);

/* 1 if `id` is a valid hub repo id ("name" or "org/name": letters, digits,
 * '-', '_', '.', no "--" or "..", at most 96 characters a part). */
int qf_hub_valid_repo_id(const char *id);

/* 1 if the repo file `name` is one qformer downloads: config.json,
 * generation_config.json, preprocessor_config.json, tokenizer files,
 * *.safetensors and model.safetensors.index.json, top level only. */
int qf_hub_wanted_file(const char *name);

#endif
