/* fuzz_config.c - libFuzzer harness: the input is a BLIP-2 config.json, read
 * by qf_config_load from a memfd path. A config that loads must satisfy what
 * the loader validates (positive sizes, hidden sizes divisible by the head
 * counts, image size a multiple of the patch size) and carry NUL-terminated
 * strings. A second pass injects an allocation failure. */
#include "embed/config.h"
#include "tests/fuzz/fuzz_util.h"

static fuzz_file file;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    fuzz_file_init(&file, "config.json");
    return 0;
}

static void run(int faulting) {
    qf_blip2_config c;
    memset(&c, 0xa5, sizeof c);
    qf_status s = qf_config_load(file.path, &c);
    if (s != QF_OK) {
        fuzz_check_error(s);
        FUZZ_CHECK(s != QF_ERR_NOMEM || faulting);
        return;
    }
    FUZZ_CHECK(memchr(c.model_type, 0, sizeof c.model_type) != NULL);
    FUZZ_CHECK(memchr(c.architecture, 0, sizeof c.architecture) != NULL);
    FUZZ_CHECK(c.num_query_tokens > 0 && c.image_text_hidden_size > 0);
    const qf_vision_config *v = &c.vision;
    FUZZ_CHECK(v->hidden_size > 0 && v->intermediate_size > 0 && v->num_hidden_layers > 0);
    FUZZ_CHECK(v->num_attention_heads > 0 && v->image_size > 0 && v->patch_size > 0);
    FUZZ_CHECK(v->hidden_size % v->num_attention_heads == 0);
    FUZZ_CHECK(v->image_size % v->patch_size == 0);
    const qf_qformer_config *q = &c.qformer;
    FUZZ_CHECK(q->vocab_size > 0 && q->hidden_size > 0 && q->num_hidden_layers > 0);
    FUZZ_CHECK(q->num_attention_heads > 0 && q->intermediate_size > 0);
    FUZZ_CHECK(q->max_position_embeddings > 0 && q->cross_attention_frequency > 0);
    FUZZ_CHECK(q->encoder_hidden_size > 0);
    FUZZ_CHECK(q->hidden_size % q->num_attention_heads == 0);
    if (c.text.present) {
        const qf_opt_config *t = &c.text;
        FUZZ_CHECK(t->vocab_size > 0 && t->hidden_size > 0 && t->num_hidden_layers > 0);
        FUZZ_CHECK(t->num_attention_heads > 0 && t->ffn_dim > 0 && t->max_position_embeddings > 0);
        FUZZ_CHECK(t->hidden_size % t->num_attention_heads == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_reset();
    fuzz_file_set(&file, data, size);
    run(0);
    qf_alloc_fail_after((long)(fuzz_hash(data, size) % 2));
    run(1);
    fuzz_reset();
    return 0;
}
