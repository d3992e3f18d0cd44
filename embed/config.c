/* config.c - reads HF config.json for BLIP-2 (see config.h). Defaults are
 * those of transformers' Blip2VisionConfig / Blip2QFormerConfig / OPTConfig
 * so a config that omits a field behaves as it does in Python. */
#include "embed/config.h"

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define CONFIG_MAX_BYTES (4u << 20)

/* Numbers outside int saturate to INT_MIN / INT_MAX (and then fail the
 * range checks below where those matter): converting an out-of-range double
 * to int is undefined behaviour, and truncating a 64-bit integer would turn
 * 4294967328 into 32 (fuzz: tests/fuzz/regress/config/real_out_of_range). */
static int get_int(const json_t *o, const char *key, int def) {
    json_t *v = o ? json_object_get(o, key) : NULL;
    if (json_is_integer(v)) {
        json_int_t x = json_integer_value(v);
        return x > INT_MAX ? INT_MAX : x < INT_MIN ? INT_MIN : (int)x;
    }
    if (json_is_real(v)) {
        double x = json_real_value(v);
        if (x != x) return def;
        return x >= (double)INT_MAX ? INT_MAX : x <= (double)INT_MIN ? INT_MIN : (int)x;
    }
    if (json_is_boolean(v)) return json_is_true(v);
    return def;
}

static float get_float(const json_t *o, const char *key, float def) {
    json_t *v = o ? json_object_get(o, key) : NULL;
    if (json_is_number(v)) return (float)json_number_value(v);
    return def;
}

static void get_str(const json_t *o, const char *key, char *dst, size_t n, const char *def) {
    json_t *v = o ? json_object_get(o, key) : NULL;
    snprintf(dst, n, "%s", json_is_string(v) ? json_string_value(v) : def);
}

typedef struct { const char *name; int value; } field_check;

static qf_status check_positive(const char *path, const char *section, const field_check *f, int n) {
    for (int i = 0; i < n; i++)
        if (f[i].value <= 0)
            return qf_errorf(QF_ERR_FORMAT, "%s: %s.%s must be a positive integer (found %d)",
                             path, section, f[i].name, f[i].value);
    return QF_OK;
}

qf_status qf_config_load(const char *path, qf_blip2_config *c) {
    char file[4096];
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        snprintf(file, sizeof file, "%s/config.json", path);
    else
        snprintf(file, sizeof file, "%s", path);

    char *text = NULL;
    size_t len = 0;
    qf_status s = qf_read_file(file, CONFIG_MAX_BYTES, &text, &len);
    if (s) return s;
    json_error_t jerr;
    json_t *root = json_loadb(text, len, 0, &jerr);
    qf_free(text);
    if (!root) return qf_errorf(QF_ERR_FORMAT, "%s: line %d: %s", file, jerr.line, jerr.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return qf_errorf(QF_ERR_FORMAT, "%s: not a JSON object", file);
    }

    memset(c, 0, sizeof *c);
    get_str(root, "model_type", c->model_type, sizeof c->model_type, "");
    json_t *arch = json_object_get(root, "architectures");
    get_str(NULL, "", c->architecture, sizeof c->architecture, "");
    if (json_is_array(arch) && json_array_size(arch) > 0 && json_is_string(json_array_get(arch, 0)))
        snprintf(c->architecture, sizeof c->architecture, "%s", json_string_value(json_array_get(arch, 0)));
    c->num_query_tokens       = get_int(root, "num_query_tokens", 32);
    c->image_text_hidden_size = get_int(root, "image_text_hidden_size", 256);
    c->image_token_index      = get_int(root, "image_token_index", -1);

    json_t *vc = json_object_get(root, "vision_config");
    json_t *qc = json_object_get(root, "qformer_config");
    json_t *tc = json_object_get(root, "text_config");
    if (!json_is_object(vc) || !json_is_object(qc)) {
        /* vc belongs to root: look at it before root is released (fuzz:
         * tests/fuzz/regress/config/missing_qformer_config, use after free). */
        const char *which = json_is_object(vc) ? "qformer_config" : "vision_config";
        json_decref(root);
        return qf_errorf(QF_ERR_MISSING, "%s: missing required object '%s' (not a BLIP-2 config?)",
                         file, which);
    }

    qf_vision_config *v = &c->vision;
    v->hidden_size         = get_int(vc, "hidden_size", 1408);
    v->intermediate_size   = get_int(vc, "intermediate_size", 6144);
    v->num_hidden_layers   = get_int(vc, "num_hidden_layers", 39);
    v->num_attention_heads = get_int(vc, "num_attention_heads", 16);
    v->image_size          = get_int(vc, "image_size", 224);
    v->patch_size          = get_int(vc, "patch_size", 14);
    v->layer_norm_eps      = get_float(vc, "layer_norm_eps", 1e-6f);
    v->qkv_bias            = get_int(vc, "qkv_bias", 1);

    qf_qformer_config *q = &c->qformer;
    q->vocab_size                = get_int(qc, "vocab_size", 30522);
    q->hidden_size               = get_int(qc, "hidden_size", 768);
    q->num_hidden_layers         = get_int(qc, "num_hidden_layers", 12);
    q->num_attention_heads       = get_int(qc, "num_attention_heads", 12);
    q->intermediate_size         = get_int(qc, "intermediate_size", 3072);
    q->max_position_embeddings   = get_int(qc, "max_position_embeddings", 512);
    q->layer_norm_eps            = get_float(qc, "layer_norm_eps", 1e-12f);
    q->cross_attention_frequency = get_int(qc, "cross_attention_frequency", 2);
    q->encoder_hidden_size       = get_int(qc, "encoder_hidden_size", 1408);
    q->use_qformer_text_input    = get_int(qc, "use_qformer_text_input",
                                           strstr(c->architecture, "Retrieval") != NULL);

    qf_opt_config *t = &c->text;
    char ttype[64];
    get_str(tc, "model_type", ttype, sizeof ttype, "opt");
    t->present                 = json_is_object(tc) && !strcmp(ttype, "opt") &&
                                 json_object_get(tc, "hidden_size") != NULL;
    t->vocab_size              = get_int(tc, "vocab_size", 50272);
    t->hidden_size             = get_int(tc, "hidden_size", 768);
    t->num_hidden_layers       = get_int(tc, "num_hidden_layers", 12);
    t->num_attention_heads     = get_int(tc, "num_attention_heads", 12);
    t->ffn_dim                 = get_int(tc, "ffn_dim", 3072);
    t->max_position_embeddings = get_int(tc, "max_position_embeddings", 2048);
    t->word_embed_proj_dim     = get_int(tc, "word_embed_proj_dim", t->hidden_size);
    t->do_layer_norm_before    = get_int(tc, "do_layer_norm_before", 1);
    t->remove_final_layer_norm = get_int(tc, "_remove_final_layer_norm", 0);
    t->enable_bias             = get_int(tc, "enable_bias", 1);
    char act[32];
    get_str(tc, "activation_function", act, sizeof act, "relu");
    t->relu                    = !strcmp(act, "relu");
    t->bos_token_id            = get_int(tc, "bos_token_id", 2);
    t->eos_token_id            = get_int(tc, "eos_token_id", 2);
    t->pad_token_id            = get_int(tc, "pad_token_id", 1);
    t->tie_word_embeddings     = get_int(tc, "tie_word_embeddings", get_int(root, "tie_word_embeddings", 1));
    get_str(tc, "model_type", c->text_model_type, sizeof c->text_model_type, "");

    /* T5Config: feed_forward_proj "gated-gelu" implies gelu_new (tanh) and a
     * gated FFN, but a dense_act_fn key in config.json overrides the derived
     * activation (PretrainedConfig sets leftover kwargs afterwards): the
     * Salesforce BLIP-2 Flan-T5 configs say "gelu", the exact erf GELU. */
    qf_t5_config *t5 = &c->t5;
    t5->present                 = json_is_object(tc) && !strcmp(c->text_model_type, "t5");
    t5->vocab_size              = get_int(tc, "vocab_size", 32128);
    t5->d_model                 = get_int(tc, "d_model", 512);
    t5->d_kv                    = get_int(tc, "d_kv", 64);
    t5->d_ff                    = get_int(tc, "d_ff", 2048);
    t5->num_layers              = get_int(tc, "num_layers", 6);
    t5->num_decoder_layers      = get_int(tc, "num_decoder_layers", t5->num_layers);
    t5->num_heads               = get_int(tc, "num_heads", 8);
    t5->relative_attention_num_buckets  = get_int(tc, "relative_attention_num_buckets", 32);
    t5->relative_attention_max_distance = get_int(tc, "relative_attention_max_distance", 128);
    t5->layer_norm_epsilon      = get_float(tc, "layer_norm_epsilon", 1e-6f);
    char ffp[32], dact[32];
    get_str(tc, "feed_forward_proj", ffp, sizeof ffp, "relu");
    const char *base = !strncmp(ffp, "gated-", 6) ? ffp + 6 : ffp;
    t5->is_gated_act            = get_int(tc, "is_gated_act", !strncmp(ffp, "gated-", 6));
    get_str(tc, "dense_act_fn", dact, sizeof dact, !strcmp(base, "gelu") ? "gelu_new" : base);
    int act_ok = 1;
    if (!strcmp(dact, "gelu")) t5->act = QF_T5_ACT_GELU;
    else if (!strcmp(dact, "gelu_new") || !strcmp(dact, "gelu_pytorch_tanh")) t5->act = QF_T5_ACT_GELU_TANH;
    else if (!strcmp(dact, "relu")) t5->act = QF_T5_ACT_RELU;
    else act_ok = 0;
    t5->tie_word_embeddings     = get_int(tc, "tie_word_embeddings", 1);
    t5->scale_decoder_outputs   = get_int(tc, "scale_decoder_outputs", t5->tie_word_embeddings);
    t5->bos_token_id            = get_int(tc, "bos_token_id", 1);
    t5->eos_token_id            = get_int(tc, "eos_token_id", 1);
    t5->pad_token_id            = get_int(tc, "pad_token_id", 0);
    t5->decoder_start_token_id  = get_int(tc, "decoder_start_token_id", t5->pad_token_id);
    json_decref(root);

    const field_check vf[] = {
        { "hidden_size", v->hidden_size }, { "intermediate_size", v->intermediate_size },
        { "num_hidden_layers", v->num_hidden_layers }, { "num_attention_heads", v->num_attention_heads },
        { "image_size", v->image_size }, { "patch_size", v->patch_size },
    };
    const field_check qf[] = {
        { "vocab_size", q->vocab_size }, { "hidden_size", q->hidden_size },
        { "num_hidden_layers", q->num_hidden_layers }, { "num_attention_heads", q->num_attention_heads },
        { "intermediate_size", q->intermediate_size },
        { "max_position_embeddings", q->max_position_embeddings },
        { "cross_attention_frequency", q->cross_attention_frequency },
        { "encoder_hidden_size", q->encoder_hidden_size },
    };
    const field_check rf[] = {
        { "num_query_tokens", c->num_query_tokens },
        { "image_text_hidden_size", c->image_text_hidden_size },
    };
    if ((s = check_positive(file, "vision_config", vf, 6)) ||
        (s = check_positive(file, "qformer_config", qf, 8)) ||
        (s = check_positive(file, "config", rf, 2)))
        return s;
    if (v->hidden_size % v->num_attention_heads)
        return qf_errorf(QF_ERR_FORMAT, "%s: vision_config.hidden_size %d is not divisible by num_attention_heads %d",
                         file, v->hidden_size, v->num_attention_heads);
    if (q->hidden_size % q->num_attention_heads)
        return qf_errorf(QF_ERR_FORMAT, "%s: qformer_config.hidden_size %d is not divisible by num_attention_heads %d",
                         file, q->hidden_size, q->num_attention_heads);
    if (v->image_size % v->patch_size)
        return qf_errorf(QF_ERR_FORMAT, "%s: vision_config.image_size %d is not a multiple of patch_size %d",
                         file, v->image_size, v->patch_size);
    if (t->present) {
        const field_check tf[] = {
            { "vocab_size", t->vocab_size }, { "hidden_size", t->hidden_size },
            { "num_hidden_layers", t->num_hidden_layers }, { "num_attention_heads", t->num_attention_heads },
            { "ffn_dim", t->ffn_dim }, { "max_position_embeddings", t->max_position_embeddings },
        };
        if ((s = check_positive(file, "text_config", tf, 6))) return s;
        if (t->hidden_size % t->num_attention_heads)
            return qf_errorf(QF_ERR_FORMAT, "%s: text_config.hidden_size %d is not divisible by num_attention_heads %d",
                             file, t->hidden_size, t->num_attention_heads);
    }
    if (t5->present) {
        const field_check tf[] = {
            { "vocab_size", t5->vocab_size }, { "d_model", t5->d_model }, { "d_kv", t5->d_kv },
            { "d_ff", t5->d_ff }, { "num_layers", t5->num_layers },
            { "num_decoder_layers", t5->num_decoder_layers }, { "num_heads", t5->num_heads },
            { "relative_attention_num_buckets", t5->relative_attention_num_buckets },
            { "relative_attention_max_distance", t5->relative_attention_max_distance },
        };
        if ((s = check_positive(file, "text_config", tf, 9))) return s;
        if (!act_ok)
            return qf_errorf(QF_ERR_UNSUPPORTED, "%s: text_config.dense_act_fn '%s' is not supported "
                             "(gelu, gelu_new, gelu_pytorch_tanh or relu)", file, dact);
        if (t5->relative_attention_num_buckets < 4 ||
            t5->relative_attention_max_distance <= t5->relative_attention_num_buckets / 2)
            return qf_errorf(QF_ERR_FORMAT, "%s: text_config.relative_attention_num_buckets %d / max_distance %d "
                             "give an empty logarithmic range", file, t5->relative_attention_num_buckets,
                             t5->relative_attention_max_distance);
    }
    return QF_OK;
}

const qf_blip2_config qf_blip2_fullsize = {
    .model_type = "blip-2", .architecture = "bench", .text_model_type = "opt",
    .num_query_tokens = 32, .image_text_hidden_size = 256, .image_token_index = -1,
    .vision = { .hidden_size = 1408, .intermediate_size = 6144, .num_hidden_layers = 39,
                .num_attention_heads = 16, .image_size = 224, .patch_size = 14,
                .layer_norm_eps = 1e-6f, .qkv_bias = 1 },
    .qformer = { .vocab_size = 30523, .hidden_size = 768, .num_hidden_layers = 12,
                 .num_attention_heads = 12, .intermediate_size = 3072,
                 .max_position_embeddings = 512, .layer_norm_eps = 1e-12f,
                 .cross_attention_frequency = 2, .encoder_hidden_size = 1408,
                 .use_qformer_text_input = 1 },
    .text = { .present = 1, .vocab_size = 50272, .hidden_size = 2560, .num_hidden_layers = 32,
              .num_attention_heads = 32, .ffn_dim = 10240, .max_position_embeddings = 2048,
              .word_embed_proj_dim = 2560, .do_layer_norm_before = 1,
              .remove_final_layer_norm = 0, .enable_bias = 1, .relu = 1,
              .bos_token_id = 2, .eos_token_id = 50118, .pad_token_id = 1,
              .tie_word_embeddings = 1 },
};
