/* test_safetensors_golden.c - the fixtures' checkpoints and golden files
 * through the safetensors reader: tiny-blip2-itm/model.safetensors (F32),
 * tiny-blip2-opt (two F16 shards + index), both expected.safetensors
 * (F32/I64/U8) against expected.json. Shapes are checked against the
 * fixtures' README facts; bytes against the file read with stdio; F16
 * upcasts against a plain reference conversion. */
#include "embed/safetensors.h"
#include "tests/testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers -------------------------------------------------------------------- */

static unsigned char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) { free(b); b = NULL; }
    fclose(f);
    if (b) b[n] = 0;
    *len = (size_t)n;
    return b;
}

static json_t *load_json(const char *path) {
    json_error_t err;
    json_t *j = json_load_file(path, 0, &err);
    if (!j) fprintf(stderr, "\n%s: %s\n", path, err.text);
    return j;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static double ref_half(uint16_t h) {
    int sgn = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v;
    if (e == 31) v = m ? NAN : INFINITY;
    else if (e == 0) v = ldexp(m, -24);
    else v = ldexp(1024 + m, e - 25);
    return sgn ? -v : v;
}

/* Reads `path` with stdio, walks its header independently, and checks
 * every tensor of it in `st`: dtype, shape, and the bytes at
 * 8 + header length + begin. Returns the number of tensors checked. */
static size_t check_against_file(const qf_st *st, const char *path) {
    size_t len = 0;
    unsigned char *buf = slurp(path, &len);
    CU_ASSERT_FATAL(buf != NULL && len >= 8);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | buf[i];
    CU_ASSERT_FATAL(8 + hl <= len);
    json_error_t err;
    json_t *h = json_loadb((const char *)buf + 8, (size_t)hl, 0, &err);
    CU_ASSERT_FATAL(h != NULL);
    size_t n = 0, bad = 0;
    const char *key;
    json_t *v;
    json_object_foreach(h, key, v) {
        if (strcmp(key, "__metadata__") == 0) continue;
        n++;
        const qf_st_tensor *t = qf_st_find(st, key);
        if (!t) { bad++; fprintf(stderr, "\n%s: '%s' not found\n", path, key); continue; }
        json_t *shape = json_object_get(v, "shape");
        int ok = strcmp(qf_dtype_name(t->dtype), json_string_value(json_object_get(v, "dtype"))) == 0 &&
                 (size_t)t->n_dim == json_array_size(shape) && ends_with(t->file, strrchr(path, '/'));
        for (int d = 0; ok && d < t->n_dim; d++)
            ok = t->shape[d] == json_integer_value(json_array_get(shape, (size_t)d));
        json_int_t b = json_integer_value(json_array_get(json_object_get(v, "data_offsets"), 0));
        ok = ok && 8 + hl + (uint64_t)b + t->n_bytes <= len &&
             memcmp(t->data, buf + 8 + hl + b, t->n_bytes) == 0;
        if (!ok) { bad++; fprintf(stderr, "\n%s: '%s' differs from the file\n", path, key); }
    }
    CU_ASSERT_EQUAL(bad, 0);
    json_decref(h);
    free(buf);
    return n;
}

static void assert_shape(const qf_st_tensor *t, int n_dim, const int64_t *shape, const char *name) {
    int ok = t && t->n_dim == n_dim;
    for (int d = 0; ok && d < n_dim; d++) ok = t->shape[d] == shape[d];
    if (!ok) fprintf(stderr, "\n%s: wrong shape or absent\n", name);
    CU_ASSERT(ok);
}

/* Shapes that follow from the fixtures' README model description. */
typedef struct { const char *name; int n_dim; int64_t shape[3]; } known_shape;

static void check_known(qf_st *st, const known_shape *k, size_t n) {
    for (size_t i = 0; i < n; i++) {
        assert_shape(qf_st_find(st, k[i].name), k[i].n_dim, k[i].shape, k[i].name);
        const float *f = NULL;
        CU_ASSERT_EQUAL(qf_st_get_f32(st, k[i].name, k[i].n_dim, k[i].shape, &f), QF_OK);
        CU_ASSERT_PTR_NOT_NULL(f);
    }
}

/* ---- tiny-blip2-itm/model.safetensors (F32) ------------------------------------------ */

static const known_shape itm_known[] = {
    { "vision_model.encoder.layers.0.self_attn.qkv.weight", 2, { 96, 32 } },     /* 3 * hidden 32 */
    { "vision_model.encoder.layers.1.self_attn.qkv.bias", 1, { 96 } },
    { "vision_model.encoder.layers.0.mlp.fc1.weight", 2, { 64, 32 } },           /* mlp 64 */
    { "query_tokens", 3, { 1, 8, 32 } },                                         /* 8 queries */
    { "embeddings.word_embeddings.weight", 2, { 30523, 32 } },                   /* vocab 30523 */
    { "embeddings.position_embeddings.weight", 2, { 64, 32 } },                  /* max positions 64 */
    { "vision_projection.weight", 2, { 16, 32 } },                               /* ITC dim 16 */
    { "text_projection.weight", 2, { 16, 32 } },
    { "itm_head.weight", 2, { 2, 32 } },
};

static void test_itm_model(void) {
    const char *path = qf_fixture("tiny-blip2-itm/model.safetensors");
    qf_st *st = NULL;
    CU_ASSERT_EQUAL_FATAL(qf_st_open(path, &st), QF_OK);
    size_t n = check_against_file(st, path);
    CU_ASSERT(n > 100);
    CU_ASSERT_EQUAL(qf_st_count(st), n);
    check_known(st, itm_known, sizeof itm_known / sizeof itm_known[0]);

    /* Every tensor is F32 and comes back in place, its bytes untouched. */
    uint64_t total = 0;
    size_t not_in_place = 0;
    for (size_t i = 0; i < qf_st_count(st); i++) {
        const qf_st_tensor *t = qf_st_at(st, i);
        CU_ASSERT_EQUAL(t->dtype, QF_DT_F32);
        const float *f = NULL;
        CU_ASSERT_EQUAL(qf_st_get_f32(st, t->name, t->n_dim, t->shape, &f), QF_OK);
        if (t->n_elem && f != t->data) not_in_place++;
        total += t->n_bytes;
    }
    CU_ASSERT_EQUAL(not_in_place, 0);
    CU_ASSERT_EQUAL(qf_st_total_bytes(st), total);
    qf_st_close(st);

    /* The directory resolves to model.safetensors, not expected.safetensors. */
    CU_ASSERT_EQUAL_FATAL(qf_st_open(qf_fixture("tiny-blip2-itm"), &st), QF_OK);
    CU_ASSERT_EQUAL(qf_st_count(st), n);
    CU_ASSERT(ends_with(qf_st_at(st, 0)->file, "/model.safetensors"));
    qf_st_close(st);
}

/* ---- tiny-blip2-opt: two F16 shards + index --------------------------------------------- */

static const known_shape opt_known[] = {
    { "vision_model.encoder.layers.0.self_attn.qkv.weight", 2, { 96, 32 } },
    { "query_tokens", 3, { 1, 8, 32 } },
    { "language_model.model.decoder.embed_tokens.weight", 2, { 50272, 32 } },    /* vocab 50272 */
    { "language_model.model.decoder.embed_positions.weight", 2, { 66, 32 } },    /* 64 + 2 offset */
    { "language_model.model.decoder.layers.1.fc1.weight", 2, { 64, 32 } },       /* ffn 64 */
    { "language_projection.weight", 2, { 32, 32 } },                             /* Dq 32 -> Dt 32 */
};

static void test_opt_model(void) {
    const char *dir = qf_fixture("tiny-blip2-opt");
    json_t *idx = load_json(qf_fixture("tiny-blip2-opt/model.safetensors.index.json"));
    CU_ASSERT_FATAL(idx != NULL);
    json_t *wm = json_object_get(idx, "weight_map");
    qf_st *st = NULL;
    CU_ASSERT_EQUAL_FATAL(qf_st_open(dir, &st), QF_OK);
    CU_ASSERT_EQUAL(qf_st_count(st), json_object_size(wm));
    CU_ASSERT_EQUAL(qf_st_total_bytes(st),
                    (uint64_t)json_integer_value(json_object_get(json_object_get(idx, "metadata"), "total_size")));
    const char *key;
    json_t *v;
    size_t wrong_file = 0;
    json_object_foreach(wm, key, v) {
        const qf_st_tensor *t = qf_st_find(st, key);
        char suffix[300];
        snprintf(suffix, sizeof suffix, "/%s", json_string_value(v));
        if (!t || !ends_with(t->file, suffix)) wrong_file++;
    }
    CU_ASSERT_EQUAL(wrong_file, 0);
    size_t n1 = check_against_file(st, qf_fixture("tiny-blip2-opt/model-00001-of-00002.safetensors"));
    size_t n2 = check_against_file(st, qf_fixture("tiny-blip2-opt/model-00002-of-00002.safetensors"));
    CU_ASSERT(n1 > 0 && n2 > 0);
    CU_ASSERT_EQUAL(n1 + n2, qf_st_count(st));
    check_known(st, opt_known, sizeof opt_known / sizeof opt_known[0]);
    CU_ASSERT_PTR_NULL(qf_st_find(st, "language_model.lm_head.weight"));   /* tied, dropped */

    /* Every tensor: F16, upcast equal to the reference conversion of its raw bits. */
    size_t mismatches = 0;
    for (size_t i = 0; i < qf_st_count(st); i++) {
        const qf_st_tensor *t = qf_st_at(st, i);
        CU_ASSERT_EQUAL(t->dtype, QF_DT_F16);
        const float *f = NULL;
        CU_ASSERT_EQUAL_FATAL(qf_st_get_f32(st, t->name, t->n_dim, t->shape, &f), QF_OK);
        const unsigned char *raw = t->data;
        for (int64_t e = 0; e < t->n_elem; e++) {
            double want = ref_half((uint16_t)(raw[2 * e] | raw[2 * e + 1] << 8));
            if (isnan(want) ? !isnan(f[e]) : (double)f[e] != want) mismatches++;
        }
    }
    CU_ASSERT_EQUAL(mismatches, 0);

    /* Spot check: sum of |w| of embed_tokens from the raw halves. */
    const char *name = "language_model.model.decoder.embed_tokens.weight";
    const int64_t sh[] = { 50272, 32 };
    const float *f = NULL;
    CU_ASSERT_EQUAL_FATAL(qf_st_get_f32(st, name, 2, sh, &f), QF_OK);
    const unsigned char *raw = qf_st_find(st, name)->data;
    double want = 0, got = 0;
    for (int64_t e = 0; e < 50272 * 32; e++) {
        want += fabs(ref_half((uint16_t)(raw[2 * e] | raw[2 * e + 1] << 8)));
        got += fabs((double)f[e]);
    }
    CU_ASSERT(want > 1.0);
    CU_ASSERT(fabs(got - want) <= 1e-9 * want);
    const float *again = NULL;
    CU_ASSERT_EQUAL(qf_st_get_f32(st, name, 2, sh, &again), QF_OK);
    CU_ASSERT_PTR_EQUAL(again, f);

    /* Wrong dtype / shape errors name file and tensor. */
    const void *r = NULL;
    CU_ASSERT_EQUAL(qf_st_get_raw(st, name, QF_DT_F32, 2, sh, &r), QF_ERR_SHAPE);
    CU_ASSERT(strstr(qf_last_error(), "F16") && strstr(qf_last_error(), "model-00001-of-00002.safetensors"));
    const int64_t bad[] = { 50265, 32 };
    CU_ASSERT_EQUAL(qf_st_get_f32(st, name, 2, bad, &f), QF_ERR_SHAPE);
    CU_ASSERT(strstr(qf_last_error(), "is [50272, 32], expected [50265, 32]") != NULL);
    qf_st_close(st);

    /* Opening the index file itself gives the same set. */
    CU_ASSERT_EQUAL_FATAL(qf_st_open(qf_fixture("tiny-blip2-opt/model.safetensors.index.json"), &st), QF_OK);
    CU_ASSERT_EQUAL(qf_st_count(st), json_object_size(wm));
    qf_st_close(st);
    json_decref(idx);
}

/* ---- expected.safetensors vs expected.json ------------------------------------------------ */

static void flatten(json_t *j, double *out, size_t cap, size_t *n) {
    if (json_is_array(j)) {
        for (size_t i = 0; i < json_array_size(j); i++) flatten(json_array_get(j, i), out, cap, n);
    } else {
        if (*n < cap) out[*n] = json_number_value(j);
        (*n)++;
    }
}

static double elem(const qf_st_tensor *t, const void *p, int64_t i) {
    switch (t->dtype) {
    case QF_DT_F32: return ((const float *)p)[i];
    case QF_DT_I64: return (double)((const int64_t *)p)[i];
    case QF_DT_U8:  return ((const uint8_t *)p)[i];
    default:        return NAN;
    }
}

/* Checks every tensor expected.json lists: dtype, shape, and values
 * (exactly) or their sum. Returns the number of tensors. */
static size_t check_expected(qf_st *st, json_t *tensors) {
    const char *key;
    json_t *v;
    json_object_foreach(tensors, key, v) {
        const qf_st_tensor *t = qf_st_find(st, key);
        CU_ASSERT_PTR_NOT_NULL(t);
        if (!t) { fprintf(stderr, "\nexpected '%s' absent\n", key); continue; }
        CU_ASSERT_STRING_EQUAL(qf_dtype_name(t->dtype), json_string_value(json_object_get(v, "dtype")));
        json_t *shape = json_object_get(v, "shape");
        int64_t sh[QF_ST_MAX_DIMS];
        int nd = (int)json_array_size(shape);
        for (int d = 0; d < nd && d < QF_ST_MAX_DIMS; d++) sh[d] = json_integer_value(json_array_get(shape, d));
        const void *p = NULL;
        CU_ASSERT_EQUAL_FATAL(qf_st_get_raw(st, key, t->dtype, nd, sh, &p), QF_OK);
        if (t->dtype == QF_DT_F32) {
            const float *f = NULL;
            CU_ASSERT_EQUAL(qf_st_get_f32(st, key, nd, sh, &f), QF_OK);
            CU_ASSERT_PTR_EQUAL(f, p);
        }
        json_t *data = json_object_get(v, "data");
        if (data) {
            double *want = malloc((size_t)t->n_elem * sizeof *want + 1);
            size_t n = 0, bad = 0;
            flatten(data, want, (size_t)t->n_elem, &n);
            CU_ASSERT_EQUAL(n, (size_t)t->n_elem);
            for (int64_t i = 0; i < t->n_elem && (size_t)i < n; i++)
                if (elem(t, p, i) != (t->dtype == QF_DT_F32 ? (double)(float)want[i] : want[i])) bad++;
            if (bad) fprintf(stderr, "\n%s: %zu values differ from expected.json\n", key, bad);
            CU_ASSERT_EQUAL(bad, 0);
            free(want);
        } else {
            double want = json_number_value(json_object_get(v, "sum")), got = 0;
            CU_ASSERT_PTR_NOT_NULL(json_object_get(v, "sum"));
            for (int64_t i = 0; i < t->n_elem; i++) got += elem(t, p, i);
            if (fabs(got - want) > 1e-6 + 1e-9 * fabs(want))
                fprintf(stderr, "\n%s: sum %.17g, expected.json says %.17g\n", key, got, want);
            CU_ASSERT(fabs(got - want) <= 1e-6 + 1e-9 * fabs(want));
        }
    }
    return json_object_size(tensors);
}

static void test_itm_expected(void) {
    const char *path = qf_fixture("tiny-blip2-itm/expected.safetensors");
    json_t *ej = load_json(qf_fixture("tiny-blip2-itm/expected.json"));
    CU_ASSERT_FATAL(ej != NULL);
    qf_st *st = NULL;
    CU_ASSERT_EQUAL_FATAL(qf_st_open(path, &st), QF_OK);
    size_t n_file = check_against_file(st, path);
    CU_ASSERT_EQUAL(qf_st_count(st), n_file);
    CU_ASSERT_EQUAL(check_expected(st, json_object_get(ej, "tensors")), n_file);

    /* README semantics: itc = max over queries of image_feats . text_feats;
     * itm_scores = softmax(itm_logits)[1]; ids = [CLS] ... [SEP] then [PAD]=0. */
    const int64_t sh_if[] = { 6, 8, 16 }, sh_tf[] = { 8, 16 }, sh_itc[] = { 6, 8 }, sh_il[] = { 6, 8, 2 },
                  sh_ids[] = { 8, 32 };
    const float *imf, *txf, *itc, *itl, *its;
    CU_ASSERT_EQUAL_FATAL(qf_st_get_f32(st, "image_feats", 3, sh_if, &imf), QF_OK);
    CU_ASSERT_EQUAL_FATAL(qf_st_get_f32(st, "text_feats", 2, sh_tf, &txf), QF_OK);
    CU_ASSERT_EQUAL_FATAL(qf_st_get_f32(st, "itc_scores", 2, sh_itc, &itc), QF_OK);
    CU_ASSERT_EQUAL_FATAL(qf_st_get_f32(st, "itm_logits", 3, sh_il, &itl), QF_OK);
    CU_ASSERT_EQUAL_FATAL(qf_st_get_f32(st, "itm_scores", 2, sh_itc, &its), QF_OK);
    float itc_ref[48], its_ref[48];
    for (int i = 0; i < 6; i++)
        for (int t = 0; t < 8; t++) {
            double best = -INFINITY;
            for (int q = 0; q < 8; q++) {
                double dot = 0;
                for (int e = 0; e < 16; e++) dot += (double)imf[(i * 8 + q) * 16 + e] * txf[t * 16 + e];
                if (dot > best) best = dot;
            }
            itc_ref[i * 8 + t] = (float)best;
            const float *l = &itl[(i * 8 + t) * 2];
            its_ref[i * 8 + t] = (float)(1.0 / (1.0 + exp((double)l[0] - l[1])));
        }
    QF_ASSERT_CLOSE(itc, itc_ref, 48, 1e-5, 1e-5, "itc_scores");
    QF_ASSERT_CLOSE(its, its_ref, 48, 1e-6, 1e-5, "itm_scores");

    const void *ids_p, *mask_p;
    CU_ASSERT_EQUAL_FATAL(qf_st_get_raw(st, "text_input_ids", QF_DT_I64, 2, sh_ids, &ids_p), QF_OK);
    CU_ASSERT_EQUAL_FATAL(qf_st_get_raw(st, "text_attention_mask", QF_DT_I64, 2, sh_ids, &mask_p), QF_OK);
    const int64_t *ids = ids_p, *mask = mask_p;
    for (int t = 0; t < 8; t++) {
        int len = 0;
        while (len < 32 && mask[t * 32 + len] == 1) len++;
        CU_ASSERT(len >= 2);
        CU_ASSERT_EQUAL(ids[t * 32], 101);                      /* [CLS] */
        CU_ASSERT_EQUAL(ids[t * 32 + len - 1], 102);            /* [SEP] */
        for (int k = len; k < 32; k++) CU_ASSERT(mask[t * 32 + k] == 0 && ids[t * 32 + k] == 0);
    }
    const void *u8;
    const int64_t sh_rs[] = { 6, 56, 56, 3 };
    CU_ASSERT_EQUAL(qf_st_get_raw(st, "resized_u8", QF_DT_U8, 4, sh_rs, &u8), QF_OK);
    CU_ASSERT_EQUAL(qf_st_get_raw(st, "resized_u8", QF_DT_I64, 4, sh_rs, &u8), QF_ERR_SHAPE);
    CU_ASSERT(strstr(qf_last_error(), "expected.safetensors: tensor 'resized_u8' is U8, expected I64") != NULL);
    qf_st_close(st);
    json_decref(ej);
}

static void test_opt_expected(void) {
    const char *path = qf_fixture("tiny-blip2-opt/expected.safetensors");
    json_t *ej = load_json(qf_fixture("tiny-blip2-opt/expected.json"));
    CU_ASSERT_FATAL(ej != NULL);
    qf_st *st = NULL;
    CU_ASSERT_EQUAL_FATAL(qf_st_open(path, &st), QF_OK);
    size_t n_file = check_against_file(st, path);
    CU_ASSERT_EQUAL(qf_st_count(st), n_file);
    CU_ASSERT_EQUAL(check_expected(st, json_object_get(ej, "tensors")), n_file);

    /* README semantics: OPT ids start with BOS 2; greedy/beam outputs shorter
     * than max_new_tokens (16) end with EOS 50118. */
    size_t checked = 0;
    for (size_t i = 0; i < qf_st_count(st); i++) {
        const qf_st_tensor *t = qf_st_at(st, i);
        if (t->dtype != QF_DT_I64) continue;
        const void *p;
        CU_ASSERT_EQUAL_FATAL(qf_st_get_raw(st, t->name, QF_DT_I64, 1, t->shape, &p), QF_OK);
        const int64_t *ids = p;
        if (strncmp(t->name, "bpe.", 4) == 0 || strcmp(t->name, "prompt_input_ids") == 0) {
            CU_ASSERT_EQUAL(ids[0], 2);
            checked++;
        } else if ((strncmp(t->name, "greedy.", 7) == 0 || strncmp(t->name, "beam3.", 6) == 0) &&
                   t->shape[0] < 16) {
            CU_ASSERT_EQUAL(ids[t->shape[0] - 1], 50118);
            checked++;
        }
    }
    CU_ASSERT(checked >= 15);
    qf_st_close(st);
    json_decref(ej);
}

static CU_TestInfo tests[] = {
    { "itm_model", test_itm_model },
    { "opt_model", test_opt_model },
    { "itm_expected", test_itm_expected },
    { "opt_expected", test_opt_expected },
    CU_TEST_INFO_NULL,
};

int main(void) { return qf_test_main("safetensors_golden", tests); }
