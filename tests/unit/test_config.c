/* test_config.c - config.json reading: the fixtures, HF defaults, and bad files. */
#include "embed/config.h"
#include "tests/testutil.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *write_tmp(const char *name, const char *text) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", qf_test_tmpdir(), name);
    FILE *f = fopen(path, "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_fixtures(void) {
    qf_blip2_config c;
    CU_ASSERT_FATAL(qf_config_load(qf_fixture("tiny-blip2-itm"), &c) == QF_OK);
    CU_ASSERT_EQUAL(c.num_query_tokens, 8);
    CU_ASSERT_EQUAL(c.image_text_hidden_size, 16);
    CU_ASSERT_EQUAL(c.vision.hidden_size, 32);
    CU_ASSERT_EQUAL(c.vision.image_size, 56);
    CU_ASSERT(fabsf(c.vision.layer_norm_eps - 1e-6f) < 1e-12f);
    CU_ASSERT_EQUAL(c.qformer.cross_attention_frequency, 2);
    CU_ASSERT_EQUAL(c.qformer.vocab_size, 30523);
    CU_ASSERT_EQUAL(c.qformer.use_qformer_text_input, 1);
    CU_ASSERT_EQUAL(c.text.present, 0);
    CU_ASSERT_STRING_EQUAL(c.architecture, "Blip2ForImageTextRetrieval");

    CU_ASSERT_FATAL(qf_config_load(qf_fixture("tiny-blip2-opt/config.json"), &c) == QF_OK);
    CU_ASSERT_EQUAL(c.text.present, 1);
    CU_ASSERT_EQUAL(c.text.vocab_size, 50272);
    CU_ASSERT_EQUAL(c.text.eos_token_id, 50118);
    CU_ASSERT_EQUAL(c.text.relu, 1);
    CU_ASSERT_EQUAL(c.qformer.use_qformer_text_input, 0);
}

static void test_defaults(void) {
    qf_blip2_config c;
    const char *p = write_tmp("defaults.json", "{\"vision_config\": {}, \"qformer_config\": {}}");
    CU_ASSERT_FATAL(qf_config_load(p, &c) == QF_OK);
    /* transformers' defaults = the ViT-g / BERT-base shapes of the real checkpoints */
    CU_ASSERT_EQUAL(c.vision.num_hidden_layers, 39);
    CU_ASSERT_EQUAL(c.vision.hidden_size, 1408);
    CU_ASSERT_EQUAL(c.vision.intermediate_size, 6144);
    CU_ASSERT_EQUAL(c.vision.image_size, 224);
    CU_ASSERT_EQUAL(c.qformer.hidden_size, 768);
    CU_ASSERT_EQUAL(c.qformer.num_hidden_layers, 12);
    CU_ASSERT_EQUAL(c.num_query_tokens, 32);
    CU_ASSERT_EQUAL(c.image_text_hidden_size, 256);
    CU_ASSERT_EQUAL(c.image_token_index, -1);
}

static void test_bad(void) {
    qf_blip2_config c;
    const char *p = write_tmp("novision.json", "{\"qformer_config\": {}}");
    CU_ASSERT_EQUAL(qf_config_load(p, &c), QF_ERR_MISSING);
    CU_ASSERT(strstr(qf_last_error(), "vision_config") && strstr(qf_last_error(), "novision.json"));
    p = write_tmp("broken.json", "{\"vision_config\": {");
    CU_ASSERT_EQUAL(qf_config_load(p, &c), QF_ERR_FORMAT);
    CU_ASSERT(strstr(qf_last_error(), "broken.json") != NULL);
    p = write_tmp("neg.json", "{\"vision_config\": {\"num_attention_heads\": 0}, \"qformer_config\": {}}");
    CU_ASSERT_EQUAL(qf_config_load(p, &c), QF_ERR_FORMAT);
    CU_ASSERT(strstr(qf_last_error(), "vision_config.num_attention_heads") != NULL);
    p = write_tmp("heads.json", "{\"vision_config\": {\"hidden_size\": 30, \"num_attention_heads\": 4}, \"qformer_config\": {}}");
    CU_ASSERT_EQUAL(qf_config_load(p, &c), QF_ERR_FORMAT);
    p = write_tmp("array.json", "[1,2]");
    CU_ASSERT_EQUAL(qf_config_load(p, &c), QF_ERR_FORMAT);
    CU_ASSERT_EQUAL(qf_config_load("/nonexistent-dir", &c), QF_ERR_IO);
}

static CU_TestInfo tests[] = {
    { "fixtures", test_fixtures },
    { "hf_defaults", test_defaults },
    { "bad_files", test_bad },
    CU_TEST_INFO_NULL,
};

int main(void) { return qf_test_main("config", tests); }
