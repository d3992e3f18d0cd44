/* bert.h - the Q-Former's BERT uncased WordPiece tokenizer, reproducing
 * Hugging Face's slow `BertTokenizer` (as BLIP-2 uses it) id for id:
 * added/special tokens carved out of the text first, per-character lower
 * casing, text cleaning, CJK split, accent strip (NFD minus Mn), punctuation
 * split, greedy longest-match-first WordPiece with `##` continuations.
 * A loaded tokenizer is immutable: encode may run on many threads at once. */
#ifndef QF_BERT_H
#define QF_BERT_H

#include "embed/common.h"

#include <stdint.h>

/* BLIP-2 was trained with texts of at most 32 tokens (LAVIS max_txt_len). */
#define QF_BERT_MAX_TXT_LEN 32
/* HF WordpieceTokenizer.max_input_chars_per_word: longer words -> [UNK]. */
#define QF_BERT_MAX_WORD_CHARS 100

typedef struct qf_bert qf_bert;

/* Loads `<model_dir>/vocab.txt` (one token per line, id = line number),
 * `added_tokens.json` ({"[DEC]": 30522}, optional), `tokenizer_config.json`
 * (optional: do_lower_case default true, tokenize_chinese_chars default
 * true, strip_accents null|bool, special token names, added_tokens_decoder)
 * and `special_tokens_map.json` (optional, overrides the names). [CLS],
 * [SEP], [PAD] and [UNK] must resolve to ids. *out is owned by the caller,
 * freed with qf_bert_free. */
qf_status qf_bert_load(const char *model_dir, qf_bert **out);
void      qf_bert_free(qf_bert *t);   /* NULL ok */

/* Word pieces of `text` (UTF-8, NUL-terminated) without [CLS]/[SEP]: the ids
 * HF's `tokenizer.tokenize` + `convert_tokens_to_ids` give. Writes at most
 * `cap` ids into `ids` (may be NULL when cap is 0); *n_total receives the
 * full count, which may exceed cap (the rest is truncated away).
 * Invalid UTF-8 (bad sequence, overlong form, surrogate) is QF_ERR_FORMAT
 * naming the byte offset: Python strings cannot hold it, so there is no HF
 * answer to reproduce and nothing is guessed. */
qf_status qf_bert_tokenize(const qf_bert *t, const char *text, int32_t *ids, int cap,
                           int *n_total);

/* Model input for one text: `[CLS] pieces [SEP]`, the pieces truncated so
 * that the whole fits in max_len (>= 2) with [SEP] kept last. ids (and mask,
 * which may be NULL) need room for max_len entries; the first *n_tokens are
 * written with mask 1. With pad != 0 the rest up to max_len is filled with
 * [PAD] and mask 0 (HF padding="max_length", padding_side right). */
qf_status qf_bert_encode(const qf_bert *t, const char *text, int max_len, int pad,
                         int64_t *ids, int64_t *mask, int *n_tokens);

/* 1 + the largest id (vocab.txt lines + added tokens): 30523 for BLIP-2. */
int         qf_bert_vocab_size(const qf_bert *t);
/* Token text of `id`, borrowed, valid until qf_bert_free; NULL when no
 * token has that id. */
const char *qf_bert_token(const qf_bert *t, int id);
/* Id of the exact token text (added tokens included), -1 if absent. */
int         qf_bert_id(const qf_bert *t, const char *token);

/* Special ids; dec is the BLIP-2 bos token [DEC] (-1 when the checkpoint
 * has none), mask -1 when absent. */
int qf_bert_cls_id(const qf_bert *t);
int qf_bert_sep_id(const qf_bert *t);
int qf_bert_pad_id(const qf_bert *t);
int qf_bert_unk_id(const qf_bert *t);
int qf_bert_mask_id(const qf_bert *t);
int qf_bert_dec_id(const qf_bert *t);

#endif
