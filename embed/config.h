/* config.h - Hugging Face BLIP-2 `config.json` (vision_config, qformer_config,
 * text_config for OPT or T5, num_query_tokens, image_text_hidden_size) with HF's
 * defaults for absent fields. Read with jansson; fields that have no safe
 * default (none of HF's do, but sizes must be positive) are validated. */
#ifndef QF_CONFIG_H
#define QF_CONFIG_H

#include "embed/common.h"

typedef struct {
    int   hidden_size;            /* 1408  */
    int   intermediate_size;      /* 6144  */
    int   num_hidden_layers;      /* 39    */
    int   num_attention_heads;    /* 16    */
    int   image_size;             /* 224   */
    int   patch_size;             /* 14    */
    float layer_norm_eps;         /* 1e-6  */
    int   qkv_bias;               /* 1     */
} qf_vision_config;

typedef struct {
    int   vocab_size;             /* 30522 (30523 with [DEC]) */
    int   hidden_size;            /* 768   */
    int   num_hidden_layers;      /* 12    */
    int   num_attention_heads;    /* 12    */
    int   intermediate_size;      /* 3072  */
    int   max_position_embeddings;/* 512   */
    float layer_norm_eps;         /* 1e-12 */
    int   cross_attention_frequency; /* 2  */
    int   encoder_hidden_size;    /* 1408  */
    int   use_qformer_text_input; /* retrieval checkpoints: 1 */
} qf_qformer_config;

typedef struct {
    int   present;                /* text_config describes an OPT model   */
    int   vocab_size;             /* 50272 */
    int   hidden_size;            /* 2560  */
    int   num_hidden_layers;      /* 32    */
    int   num_attention_heads;    /* 32    */
    int   ffn_dim;                /* 10240 */
    int   max_position_embeddings;/* 2048  */
    int   word_embed_proj_dim;    /* = hidden_size */
    int   do_layer_norm_before;   /* 1     */
    int   remove_final_layer_norm;/* 0     */
    int   enable_bias;            /* 1     */
    int   relu;                   /* activation_function == "relu" */
    int   bos_token_id, eos_token_id, pad_token_id;
    int   tie_word_embeddings;
} qf_opt_config;

/* T5 v1.1 / Flan-T5 text_config (transformers T5Config). */
typedef enum { QF_T5_ACT_GELU, QF_T5_ACT_GELU_TANH, QF_T5_ACT_RELU } qf_t5_act;

typedef struct {
    int       present;                /* text_config.model_type == "t5"         */
    int       vocab_size;             /* 32128                                  */
    int       d_model;                /* 2048 (xl)                              */
    int       d_kv;                   /* 64: inner attention width = num_heads * d_kv */
    int       d_ff;                   /* 5120                                   */
    int       num_layers;             /* encoder blocks, 24                     */
    int       num_decoder_layers;     /* decoder blocks (default num_layers)    */
    int       num_heads;              /* 32                                     */
    int       relative_attention_num_buckets;   /* 32                           */
    int       relative_attention_max_distance;  /* 128                          */
    float     layer_norm_epsilon;     /* 1e-6                                   */
    qf_t5_act act;                    /* dense_act_fn, else from feed_forward_proj */
    int       is_gated_act;           /* "gated-*" feed_forward_proj            */
    int       tie_word_embeddings;    /* 1 in T5Config; Flan-T5 checkpoints: 0  */
    int       scale_decoder_outputs;  /* logits of d_model^-0.5 * hidden: the key of
                                         transformers 5.x configs, else tie_word_embeddings */
    int       bos_token_id, eos_token_id, pad_token_id, decoder_start_token_id;
} qf_t5_config;

typedef struct {
    char              model_type[64];     /* "blip-2"                         */
    char              architecture[96];   /* architectures[0], "" if absent   */
    int               num_query_tokens;   /* 32                               */
    int               image_text_hidden_size; /* 256                          */
    int               image_token_index;  /* -1 if absent (older layout)      */
    qf_vision_config  vision;
    qf_qformer_config qformer;
    char              text_model_type[32]; /* text_config.model_type, "" if absent */
    qf_opt_config     text;               /* present when it is "opt"         */
    qf_t5_config      t5;                 /* present when it is "t5"          */
} qf_blip2_config;

/* The full-size model's configuration (Salesforce/blip2-itm-vit-g's ViT-g
 * and Q-Former with blip2-opt-2.7b's OPT): the one description `qformer
 * bench` and bench/gen_checkpoint build their random checkpoints from. */
extern const qf_blip2_config qf_blip2_fullsize;

/* Reads `<model_dir>/config.json` (or a path to the json file itself). */
qf_status qf_config_load(const char *path, qf_blip2_config *out);

#endif
