/* fullsize.h - short names for the full-size model's shapes, shared by
 * `qformer bench` (bin/cmd_bench.c) and bench/gen_checkpoint.c: every one
 * reads qf_blip2_fullsize (embed/config.h), the one description. */
#ifndef QF_BENCH_FULLSIZE_H
#define QF_BENCH_FULLSIZE_H

#include "embed/config.h"

#define FS     qf_blip2_fullsize
#define DV     FS.vision.hidden_size
#define IV     FS.vision.intermediate_size
#define LV     FS.vision.num_hidden_layers
#define HV     FS.vision.num_attention_heads
#define IMG    FS.vision.image_size
#define PATCH  FS.vision.patch_size
#define NV     (1 + (IMG / PATCH) * (IMG / PATCH))
#define DQ     FS.qformer.hidden_size
#define IQ     FS.qformer.intermediate_size
#define LQ     FS.qformer.num_hidden_layers
#define HQ     FS.qformer.num_attention_heads
#define VQ     FS.qformer.vocab_size
#define PMAX   FS.qformer.max_position_embeddings
#define XFREQ  FS.qformer.cross_attention_frequency
#define DENC   FS.qformer.encoder_hidden_size
#define NQUERY FS.num_query_tokens
#define EMB    FS.image_text_hidden_size
#define DO     FS.text.hidden_size
#define FO     FS.text.ffn_dim
#define LO     FS.text.num_hidden_layers
#define HO     FS.text.num_attention_heads
#define VO     FS.text.vocab_size
#define PO     FS.text.max_position_embeddings

#endif
