/* bpe.h - OPT's GPT-2 byte-level BPE, id for id with Hugging Face's slow
 * GPT2Tokenizer: added/special tokens carved out first, GPT-2's
 * pre-tokenization regex, merges lowest rank first, `</s>` prepended when
 * the checkpoint sets add_bos_token; decode = byte-level inverse + UTF-8 with
 * errors="replace" (Python's U+FFFD rule). A loaded tokenizer is immutable:
 * encode and decode may run on many threads at once. */
#ifndef QF_BPE_H
#define QF_BPE_H

#include "embed/common.h"

#include <stddef.h>
#include <stdint.h>

typedef struct qf_bpe qf_bpe;

/* Pass as add_bos to follow the checkpoint's `add_bos_token`. */
#define QF_BPE_BOS_DEFAULT (-1)

/* Loads `<model_dir>/vocab.json` ({token: id}), `merges.txt` (the first line
 * is dropped as HF does: it is the "#version" comment), and, all optional,
 * `tokenizer_config.json` (bos/eos/unk/pad/sep/cls/mask token names, strings
 * or {"content": ...} objects; additional_special_tokens; added_tokens_decoder;
 * add_bos_token default false; add_prefix_space default false;
 * clean_up_tokenization_spaces default false), `special_tokens_map.json`
 * (overrides the names, as from_pretrained does) and `added_tokens.json`.
 * Without any name, bos/eos/unk default to GPT-2's "<|endoftext|>".
 * Special tokens are exactly the named ones: for OPT `</s>` (bos, eos, unk)
 * and `<pad>`; `<s>` and `<unk>` are ordinary vocabulary entries, as in HF.
 * *out is owned by the caller, freed with qf_bpe_free. */
qf_status qf_bpe_load(const char *model_dir, qf_bpe **out);
void      qf_bpe_free(qf_bpe *t);   /* NULL ok */

/* Ids of `text` (UTF-8, NUL-terminated) as HF `tokenizer(text).input_ids`:
 * add_bos 1 prepends the bos id, 0 does not, QF_BPE_BOS_DEFAULT follows the
 * checkpoint. The empty string gives just [bos]. *ids is allocated with
 * qf_malloc and owned by the caller (qf_free); *n receives its length.
 * Invalid UTF-8 (bad sequence, overlong form, surrogate, > U+10FFFF) is
 * QF_ERR_FORMAT naming the byte offset: Python strings cannot hold it, so
 * there is no HF answer to reproduce and nothing is guessed. */
qf_status qf_bpe_encode(const qf_bpe *t, const char *text, int add_bos, int32_t **ids, int *n);
/* Same for `len` bytes of `text`, which may contain NUL characters. */
qf_status qf_bpe_encode_n(const qf_bpe *t, const char *text, size_t len, int add_bos,
                          int32_t **ids, int *n);

/* Text of `n` ids as HF `tokenizer.decode(ids, skip_special_tokens=...,
 * clean_up_tokenization_spaces=...)`: skip_special drops the special ids
 * (`</s>`, `<pad>` for OPT); clean_spaces applies HF's clean_up_tokenization
 * (" ." -> ".", " ?", " !", " ,", " ' " -> "'", " n't", " 'm", " 's", " 've",
 * " 're", in that order). Added tokens that are not special are kept apart and
 * joined with single spaces (spaces_between_special_tokens=True). An id with
 * no token is QF_ERR_ARG (HF raises there too). *out is NUL-terminated, from
 * qf_malloc, owned by the caller. */
qf_status qf_bpe_decode(const qf_bpe *t, const int32_t *ids, int n, int skip_special,
                        int clean_spaces, char **out);
/* Same, also giving the byte length (the text may contain NUL: byte 0 is a
 * token). out_len may be NULL. */
qf_status qf_bpe_decode_n(const qf_bpe *t, const int32_t *ids, int n, int skip_special,
                          int clean_spaces, char **out, size_t *out_len);

/* Pre-tokenization: end (exclusive byte offset) of the GPT-2 pre-token that
 * starts at byte `pos` of `text` (len bytes, pos < len), i.e. the next match
 * of `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
 * with the Python `regex` module's classes (\s = Unicode White_Space; L and N
 * general categories from utf8proc). Bytes that are not valid UTF-8 count as
 * one-byte "other" characters, so any input is safe. Returns len when
 * pos >= len. */
size_t qf_bpe_pretoken_end(const char *text, size_t len, size_t pos);

/* Entries of vocab.json (HF `vocab_size`): 50265 for OPT. */
int         qf_bpe_vocab_size(const qf_bpe *t);
/* 1 + the largest id of vocab.json and the added tokens. */
int         qf_bpe_n_ids(const qf_bpe *t);
/* Token text of `id` in the byte-level alphabet ("Ġphoto", "</s>"), borrowed,
 * valid until qf_bpe_free; NULL when no token has that id. */
const char *qf_bpe_token(const qf_bpe *t, int id);
/* Id of the exact token text (added tokens first, then vocab.json), -1 if
 * absent. */
int         qf_bpe_id(const qf_bpe *t, const char *token);
/* 1 when `id` is one of the special tokens decode skips, else 0. */
int         qf_bpe_is_special(const qf_bpe *t, int id);

/* Special ids, -1 when the checkpoint has none: OPT bos = eos = unk = 2
 * (`</s>`), pad = 1. (Generation stops on generation_config's eos, 50118
 * for BLIP-2 OPT, which is not this tokenizer's business.) */
int qf_bpe_bos_id(const qf_bpe *t);
int qf_bpe_eos_id(const qf_bpe *t);
int qf_bpe_pad_id(const qf_bpe *t);
int qf_bpe_unk_id(const qf_bpe *t);
/* The checkpoint's add_bos_token and clean_up_tokenization_spaces (0/1). */
int qf_bpe_add_bos(const qf_bpe *t);
int qf_bpe_clean_spaces(const qf_bpe *t);

#endif
