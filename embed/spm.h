/* spm.h - the T5 tokenizer (HF's slow T5Tokenizer, legacy=True) over
 * Debian's libsentencepiece: `spiece.model` does the unigram segmentation
 * and nmt_nfkc normalisation (with the model's precompiled charsmap, dummy
 * prefix, whitespace collapsing); this module adds what T5Tokenizer adds on
 * top: `<pad>`, `</s>`, `<unk>` and `<extra_id_N>` written in the text are
 * cut out first and each remaining chunk is encoded on its own, `</s>` is
 * appended (not twice), and decode skips the special ids.
 *
 * The implementation (spm.cc) is C++ behind this C header; no exception
 * leaves it. A loaded tokenizer is immutable: encode and decode may run on
 * many threads at once. */
#ifndef QF_SPM_H
#define QF_SPM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {   /* common.h is a C header without guards of its own */
#endif

#include "embed/common.h"

typedef struct qf_spm qf_spm;

/* Loads `<model_dir>/spiece.model` and the optional tokenizer_config.json
 * (`extra_ids`, default 100: `<extra_id_N>` has id sp_size + extra_ids - 1 - N).
 * *out is owned by the caller, freed with qf_spm_free. */
qf_status qf_spm_load(const char *model_dir, qf_spm **out);
void      qf_spm_free(qf_spm *t);   /* NULL ok */

/* HF `tokenizer(text).input_ids`: SentencePiece ids + `</s>` when add_eos
 * (and the text does not already end in `</s>`). *ids is from qf_malloc,
 * owned by the caller; *n its length. Invalid UTF-8 is QF_ERR_FORMAT naming
 * the byte offset (a Python str cannot hold it). */
qf_status qf_spm_encode(const qf_spm *t, const char *text, int add_eos, int32_t **ids, int *n);

/* HF `tokenizer.decode(ids, skip_special_tokens=True)`: special ids (pad,
 * eos, unk, extra ids) and ids no token has (the padding of the embedding
 * matrix, e.g. 32100..32127 without extra ids) are dropped, the rest
 * SentencePiece-decoded and stripped of surrounding whitespace. *out is
 * NUL-terminated, from qf_malloc, owned by the caller. */
qf_status qf_spm_decode(const qf_spm *t, const int32_t *ids, int n, char **out);

int qf_spm_piece_size(const qf_spm *t);   /* SentencePiece pieces (32000 for T5)      */
int qf_spm_vocab_size(const qf_spm *t);   /* pieces + extra ids (HF len(tokenizer))   */
int qf_spm_eos_id(const qf_spm *t);       /* `</s>`: 1                                */
int qf_spm_pad_id(const qf_spm *t);       /* `<pad>`: 0                               */

#ifdef __cplusplus
}
#endif

#endif
