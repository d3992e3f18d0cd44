/* cmd_info.c - `qformer info`: what a model folder or an index database holds.
 *
 * `--model DIR` loads the checkpoint the way every other command does (so
 * every tensor's presence, dtype and shape is checked: `info` doubles as a
 * checkpoint check; the OPT or T5 language model too when config.json has one) and
 * prints the config summary, parameter counts per part, dtypes, weight files
 * and the model fingerprint, as text or as one JSON object. `--db FILE` is a
 * separate branch (info_db). */
#include "cli.h"

#include "embed/blip2.h"
#include "embed/config.h"
#include "embed/hub.h"
#include "embed/safetensors.h"
#include "embed/t5.h"
#include "embed/opt.h"

#include "index/dbinfo.h"
#include "index/ann.h"
#include "index/export.h"
#include "query/recall.h"

#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char usage_text[] =
    "usage: qformer info --model DIR [--format text|json]\n"
    "       qformer info --db FILE.db [--format text|json] [--failures] [--check] [--repair]\n"
    "       qformer info --db FILE.db --recall [--queries FILE] [--format text|json]\n"
    "\n"
    "--model DIR: loads the checkpoint (every tensor's presence, dtype and shape\n"
    "is checked, so a broken checkpoint exits 1 naming the tensor) and prints the\n"
    "config (vision, Q-Former, ITC, OPT text model when present), the parameter\n"
    "count per part, the dtypes, the weight files with their sizes and the model\n"
    "fingerprint. --format json prints the same as one JSON object.\n"
    "--db FILE.db: summary of an index database: image counts, failures, model,\n"
    "index type, sizes on disk. --failures lists each bad file with its error;\n"
    "--check verifies the database and that the vector index holds exactly the\n"
    "indexed images (exit 1 on a problem); --repair re-queues what is missing so\n"
    "the next `qformer index` run completes it. --recall measures recall@10 of the\n"
    "index at its search settings against an exact scan of the stored features, and\n"
    "the search latency (p50/p95, text encoder excluded), on the texts of --queries\n"
    "FILE (one per line) or on 100 probe vectors drawn from the stored features.\n"
    "\n"
    "examples:\n"
    "  qformer info --model blip2-itm-vit-g\n"
    "  qformer info --model blip2-opt-2.7b --format json\n"
    "  qformer info --db photos.db --check\n"
    "  qformer info --db photos.db --recall --queries queries.txt\n";

/* ---- parameter accounting ------------------------------------------------ */

/* Parts a checkpoint's tensors are counted in, by name prefix. */
enum { PART_VISION, PART_QFORMER, PART_HEADS, PART_LANGUAGE, PART_OTHER, PART_COUNT };

static const char *const part_key[PART_COUNT] = {
    "vision_model", "qformer", "heads", "language_model", "other",
};
static const char *const part_label[PART_COUNT] = {
    "vision_model.*",
    "qformer.* + query_tokens",
    "embeddings + vision/text_projection + itm_head",
    "language_model.* + language_projection",
    "other",
};

static int starts(const char *s, const char *prefix) {
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static int part_of(const char *name) {
    if (starts(name, "vision_model.")) return PART_VISION;
    if (starts(name, "qformer.") || !strcmp(name, "query_tokens")) return PART_QFORMER;
    if (starts(name, "embeddings.") || starts(name, "vision_projection.") ||
        starts(name, "text_projection.") || starts(name, "itm_head."))
        return PART_HEADS;
    if (starts(name, "language_model.") || starts(name, "language_projection.")) return PART_LANGUAGE;
    return PART_OTHER;
}

#define MAX_FILES 256

typedef struct {
    int64_t     params[PART_COUNT];
    int64_t     total;
    size_t      n_tensors;
    size_t      dtype_tensors[QF_DT_COUNT];
    int64_t     dtype_params[QF_DT_COUNT];
    const char *file[MAX_FILES];        /* borrowed from the qf_st, first-seen order */
    int64_t     file_bytes[MAX_FILES];  /* size on disk, -1 if stat fails           */
    size_t      n_files;
    uint64_t    tensor_bytes;
} model_stats;

static void collect(const qf_st *st, model_stats *ms) {
    memset(ms, 0, sizeof *ms);
    ms->n_tensors = qf_st_count(st);
    ms->tensor_bytes = qf_st_total_bytes(st);
    for (size_t i = 0; i < ms->n_tensors; i++) {
        const qf_st_tensor *t = qf_st_at(st, i);
        ms->params[part_of(t->name)] += t->n_elem;
        ms->total += t->n_elem;
        ms->dtype_tensors[t->dtype]++;
        ms->dtype_params[t->dtype] += t->n_elem;
        size_t f = 0;
        while (f < ms->n_files && strcmp(ms->file[f], t->file)) f++;
        if (f == ms->n_files && f < MAX_FILES) {
            struct stat sb;
            ms->file[f] = t->file;
            ms->file_bytes[f] = stat(t->file, &sb) == 0 ? (int64_t)sb.st_size : -1;
            ms->n_files++;
        }
    }
}

/* ---- output -------------------------------------------------------------- */

/* "1.17 B", "107.1 M", "4.3 K": a human reading of a count. */
static const char *human(double v, char *buf, size_t cap) {
    if (v >= 1e9)      snprintf(buf, cap, "%.2f B", v / 1e9);
    else if (v >= 1e6) snprintf(buf, cap, "%.1f M", v / 1e6);
    else if (v >= 1e3) snprintf(buf, cap, "%.1f K", v / 1e3);
    else               snprintf(buf, cap, "%.0f", v);
    return buf;
}


static void print_text(const char *dir, const qf_blip2_config *c, int retrieval,
                       const model_stats *ms, const char *fp) {
    const qf_vision_config *v = &c->vision;
    const qf_qformer_config *q = &c->qformer;
    const qf_opt_config *t = &c->text;
    char h[32];
    int g = v->image_size / v->patch_size;
    printf("model         %s\n", dir);
    printf("architecture  %s (%s, model_type %s)\n", c->architecture[0] ? c->architecture : "(none)",
           retrieval ? "retrieval" : "captioning", c->model_type[0] ? c->model_type : "(none)");
    printf("vision        %d layers, hidden %d, %d heads, mlp %d, image %d, patch %d (%d tokens), eps %g\n",
           v->num_hidden_layers, v->hidden_size, v->num_attention_heads, v->intermediate_size,
           v->image_size, v->patch_size, 1 + g * g, (double)v->layer_norm_eps);
    printf("qformer       %d layers, hidden %d, %d heads, intermediate %d, %d queries, "
           "cross-attention every %d, vocab %d, max positions %d, text input %s\n",
           q->num_hidden_layers, q->hidden_size, q->num_attention_heads, q->intermediate_size,
           c->num_query_tokens, q->cross_attention_frequency, q->vocab_size,
           q->max_position_embeddings, q->use_qformer_text_input ? "yes" : "no");
    printf("itc dim       %d\n", c->image_text_hidden_size);
    const qf_t5_config *t5 = &c->t5;
    static const char *const act_name[] = { "gelu", "gelu_new", "relu" };
    if (t->present)
        printf("text (OPT)    %d layers, hidden %d, %d heads, ffn %d, vocab %d, max positions %d\n",
               t->num_hidden_layers, t->hidden_size, t->num_attention_heads, t->ffn_dim,
               t->vocab_size, t->max_position_embeddings);
    else if (t5->present)
        printf("text (T5)     %d + %d layers, d_model %d, %d heads x %d, d_ff %d %s%s, vocab %d, "
               "%d position buckets (max distance %d), head %s\n",
               t5->num_layers, t5->num_decoder_layers, t5->d_model, t5->num_heads, t5->d_kv, t5->d_ff,
               t5->is_gated_act ? "gated " : "", act_name[t5->act], t5->vocab_size,
               t5->relative_attention_num_buckets, t5->relative_attention_max_distance,
               t5->tie_word_embeddings ? "tied" : "separate");
    else
        printf("text (OPT)    none\n");
    printf("parameters    %" PRId64 " (%s) in %zu tensors\n", ms->total,
           human((double)ms->total, h, sizeof h), ms->n_tensors);
    for (int p = 0; p < PART_COUNT; p++)
        if (ms->params[p] || p != PART_OTHER)
            printf("  %-46s %13" PRId64 "  %s\n", part_label[p], ms->params[p],
                   human((double)ms->params[p], h, sizeof h));
    printf("dtypes       ");
    for (int d = 0; d < QF_DT_COUNT; d++)
        if (ms->dtype_tensors[d])
            printf(" %s: %zu tensors (%s params)", qf_dtype_name((qf_dtype)d), ms->dtype_tensors[d],
                   human((double)ms->dtype_params[d], h, sizeof h));
    printf("\n");
    printf("files         %zu, %" PRIu64 " bytes of tensor data (%s)\n", ms->n_files,
           ms->tensor_bytes, qf_format_bytes((double)ms->tensor_bytes, h, sizeof h));
    for (size_t f = 0; f < ms->n_files; f++)
        printf("  %-60s %13" PRId64 "  %s\n", ms->file[f], ms->file_bytes[f],
               qf_format_bytes((double)ms->file_bytes[f], h, sizeof h));
    printf("fingerprint   %s\n", fp);
}

/* Builds the JSON object; NULL when jansson runs out of memory. */
static json_t *build_json(const char *dir, const qf_blip2_config *c, int retrieval,
                          const model_stats *ms, const char *fp) {
    const qf_vision_config *v = &c->vision;
    const qf_qformer_config *q = &c->qformer;
    const qf_opt_config *t = &c->text;
    int g = v->image_size / v->patch_size;
    json_t *params = json_object(), *dtypes = json_object(), *files = json_array();
    if (!params || !dtypes || !files) goto fail;
    json_object_set_new(params, "total", json_integer(ms->total));
    for (int p = 0; p < PART_COUNT; p++) json_object_set_new(params, part_key[p], json_integer(ms->params[p]));
    for (int d = 0; d < QF_DT_COUNT; d++)
        if (ms->dtype_tensors[d])
            json_object_set_new(dtypes, qf_dtype_name((qf_dtype)d),
                                json_pack("{s:I, s:I}", "tensors", (json_int_t)ms->dtype_tensors[d],
                                          "params", (json_int_t)ms->dtype_params[d]));
    for (size_t f = 0; f < ms->n_files; f++)
        json_array_append_new(files, json_pack("{s:s, s:I}", "path", ms->file[f], "bytes",
                                               (json_int_t)ms->file_bytes[f]));
    const qf_t5_config *t5 = &c->t5;
    static const char *const act_name[] = { "gelu", "gelu_new", "relu" };
    json_t *text = t->present
        ? json_pack("{s:s, s:i, s:i, s:i, s:i, s:i, s:i}", "model_type", "opt",
                    "num_hidden_layers", t->num_hidden_layers,
                    "hidden_size", t->hidden_size, "num_attention_heads", t->num_attention_heads,
                    "ffn_dim", t->ffn_dim, "vocab_size", t->vocab_size,
                    "max_position_embeddings", t->max_position_embeddings)
        : t5->present
        ? json_pack("{s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:s, s:b, s:b}", "model_type", "t5",
                    "num_layers", t5->num_layers, "num_decoder_layers", t5->num_decoder_layers,
                    "d_model", t5->d_model, "d_kv", t5->d_kv, "d_ff", t5->d_ff, "num_heads", t5->num_heads,
                    "vocab_size", t5->vocab_size,
                    "relative_attention_num_buckets", t5->relative_attention_num_buckets,
                    "relative_attention_max_distance", t5->relative_attention_max_distance,
                    "dense_act_fn", act_name[t5->act], "is_gated_act", t5->is_gated_act,
                    "tie_word_embeddings", t5->tie_word_embeddings)
        : json_null();
    json_t *root = json_pack(
        "{s:s, s:s, s:s, s:s,"
        " s:{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f},"
        " s:{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:b},"
        " s:i, s:o, s:o, s:I, s:o, s:I, s:o, s:s}",
        "model", dir,
        "architecture", c->architecture,
        "model_type", c->model_type,
        "kind", retrieval ? "retrieval" : "captioning",
        "vision",
            "num_hidden_layers", v->num_hidden_layers, "hidden_size", v->hidden_size,
            "num_attention_heads", v->num_attention_heads, "intermediate_size", v->intermediate_size,
            "image_size", v->image_size, "patch_size", v->patch_size, "num_tokens", 1 + g * g,
            "layer_norm_eps", (double)v->layer_norm_eps,
        "qformer",
            "num_hidden_layers", q->num_hidden_layers, "hidden_size", q->hidden_size,
            "num_attention_heads", q->num_attention_heads, "intermediate_size", q->intermediate_size,
            "num_query_tokens", c->num_query_tokens,
            "cross_attention_frequency", q->cross_attention_frequency,
            "vocab_size", q->vocab_size, "max_position_embeddings", q->max_position_embeddings,
            "use_qformer_text_input", q->use_qformer_text_input,
        "image_text_hidden_size", c->image_text_hidden_size,
        "text", text,
        "parameters", params,
        "n_tensors", (json_int_t)ms->n_tensors,
        "dtypes", dtypes,
        "tensor_bytes", (json_int_t)ms->tensor_bytes,
        "files", files,
        "fingerprint", fp);
    return root;        /* json_pack's "o" steals the references, even on failure */
fail:
    json_decref(params);
    json_decref(dtypes);
    json_decref(files);
    return NULL;
}

/* ---- the two branches ------------------------------------------------------ */

static int info_model(const char *dir, int json) {
    qf_blip2_config cfg;
    qf_blip2 *m = NULL;
    qf_opt *opt = NULL;
    qf_t5 *t5 = NULL;
    qf_status s;
    /* The config decides which parts must be there: retrieval checkpoints
     * carry the Q-Former text path and the ITC/ITM heads, captioning ones
     * the vision model, the Q-Former and OPT with its language_projection. */
    if ((s = qf_config_load(dir, &cfg))) return qf_cli_fail("info", s);
    int retrieval = cfg.qformer.use_qformer_text_input != 0;
    int parts = retrieval ? QF_BLIP2_ALL : QF_BLIP2_VISION | QF_BLIP2_QFORMER;
    if ((s = qf_blip2_load(dir, parts, &m))) return qf_cli_fail("info", s);
    if ((cfg.text.present && (s = qf_opt_load(qf_blip2_weights(m), qf_blip2_get_config(m), QF_OPT_F32, &opt))) ||
        (cfg.t5.present && (s = qf_t5_load(qf_blip2_weights(m), qf_blip2_get_config(m), QF_OPT_F32, &t5)))) {
        qf_error_prefix(s, "%s", dir);
        qf_blip2_free(m);
        return qf_cli_fail("info", s);
    }

    model_stats ms;
    collect(qf_blip2_weights(m), &ms);
    const qf_blip2_config *c = qf_blip2_get_config(m);
    int rc = 0;
    if (json) {
        json_t *root = build_json(dir, c, retrieval, &ms, qf_blip2_fingerprint(m));
        if (!root || json_dumpf(root, stdout, JSON_COMPACT | JSON_REAL_PRECISION(7)) != 0) {
            fprintf(stderr, "qformer info: cannot write the JSON summary\n");
            rc = 1;
        } else {
            putchar('\n');
        }
        json_decref(root);
    } else {
        print_text(dir, c, retrieval, &ms, qf_blip2_fingerprint(m));
    }
    if (fflush(stdout) != 0) {
        fprintf(stderr, "qformer info: cannot write to stdout\n");
        rc = 1;
    }
    qf_opt_free(opt);
    qf_t5_free(t5);
    qf_blip2_free(m);
    return rc;
}

/* ---- info --db ---------------------------------------------------------- */

/* One bad file: "PATH<TAB>error" (text) or {"path": P, "error": E} per line
 * (json). The stored error starts with the path; it is not repeated. */
static qf_status print_failure(const qf_store_image *img, void *user) {
    int json = *(const int *)user;
    const char *err = img->error ? img->error : "";
    size_t pl = strlen(img->path);
    if (!strncmp(err, img->path, pl) && !strncmp(err + pl, ": ", 2)) err += pl + 2;
    if (!json) {
        printf("%s\t%s\n", img->path, err);
        return QF_OK;
    }
    fputs("{\"path\": ", stdout);
    qf_export_json_string(stdout, img->path);      /* file names need not be UTF-8 */
    fputs(", \"error\": ", stdout);
    qf_export_json_string(stdout, err);
    fputs("}\n", stdout);
    return QF_OK;
}

static void print_line(const char *line, void *user) {
    (void)user;
    printf("%s\n", line);
}

static int info_recall(const char *db_path, const char *queries, int json) {
    qf_recall_opts o = { .db_path = db_path, .queries_file = queries, .k = 10 };
    qf_recall_result r;
    qf_status s = qf_recall_run(&o, &r);
    if (s) return qf_cli_fail("info", s);
    char how[96];
    if (r.exact) snprintf(how, sizeof how, "exact index");
    else snprintf(how, sizeof how, "nprobe %d, %d candidates rescored exactly", r.nprobe, r.candidates);
    if (json) {
        json_t *j = json_pack("{s:s, s:s, s:i, s:i, s:f, s:f, s:f, s:b, s:i, s:i}", "db", db_path,
                              "source", r.source, "queries", r.n_queries, "k", r.k, "recall", r.recall,
                              "search_ms_p50", r.p50_ms, "search_ms_p95", r.p95_ms, "exact", r.exact,
                              "nprobe", r.nprobe, "candidates", r.candidates);
        char *txt = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
        if (txt) puts(txt);
        free(txt);
        json_decref(j);
        return txt ? 0 : qf_cli_fail("info", qf_errorf(QF_ERR_FORMAT, "%s: cannot encode as JSON", db_path));
    }
    printf("recall@%d %.4f on %d %s (%s); search p50 %.2f ms, p95 %.2f ms (text encoder excluded)\n", r.k,
           r.recall, r.n_queries, r.source, how, r.p50_ms, r.p95_ms);
    return 0;
}

static int info_db(const char *db_path, int json, int failures, int check, int repair) {
    qf_status s;
    if (failures) {
        s = qf_dbinfo_failures(db_path, print_failure, &json);
        return s ? qf_cli_fail("info", s) : 0;
    }
    if (check || repair) {
        int64_t problems = 0;
        s = qf_dbinfo_check(db_path, repair, &problems, print_line, NULL);
        if (s) return qf_cli_fail("info", s);
        printf("%s: %lld problem%s%s\n", db_path, (long long)problems, problems == 1 ? "" : "s",
               problems && repair ? " (repairs queued)" : "");
        return problems && !repair ? 1 : 0;
    }
    qf_dbinfo d;
    if ((s = qf_dbinfo_get(db_path, &d))) return qf_cli_fail("info", s);
    int64_t total = d.counts[QF_IMAGE_OK] + d.counts[QF_IMAGE_ERROR] + d.counts[QF_IMAGE_PENDING];
    if (json) {
        json_t *o = qf_dbinfo_json(db_path, &d);
        char *txt = o ? json_dumps(o, JSON_INDENT(2)) : NULL;
        if (txt) puts(txt);
        free(txt);
        json_decref(o);
        return txt ? 0 : qf_cli_fail("info", qf_errorf(QF_ERR_FORMAT, "%s: cannot encode as JSON", db_path));
    }
    char b1[32], b2[32];
    printf("index %s\n", db_path);
    printf("  images       %lld: %lld indexed, %lld failed, %lld pending\n", (long long)total,
           (long long)d.counts[QF_IMAGE_OK], (long long)d.counts[QF_IMAGE_ERROR], (long long)d.counts[QF_IMAGE_PENDING]);
    printf("  model        %s\n  fingerprint  %s\n", d.model_path, d.fingerprint);
    printf("  features     %s in SQLite%s\n", d.store_dtype,
           strcmp(d.store_dtype, "f16") ? " (exact rescoring)" : " (rescoring within ~1e-3 of f32)");
    printf("  ViT dtype    %s%s\n", d.vision_dtype, strcmp(d.vision_dtype, "bf16") ? "" : " (index --dtype bf16; every run must say so)");
    printf("  index type   %s, %s, %d x %d-dim vectors per image\n", d.factory,
           d.pooled ? "pooled (approximate)" : "exact multi-vector", d.pooled ? 1 : d.n_query, d.dim);
    if (d.factory_request[0] && !strcmp(d.factory_request, "auto"))
        printf("  chosen by    --factory auto: %s\n", d.factory_reason[0] ? d.factory_reason : "(not yet: no images)");
    if (d.search_candidates > 0)
        printf("  search       nprobe %d, %d candidates rescored exactly: recall@%d %.3f on %d probe queries "
               "at %lld images (target %.2f)%s\n", d.search_nprobe, d.search_candidates, d.tune_k, d.tune_recall,
               d.tune_probes, (long long)d.tune_images, d.tune_target,
               d.tune_recall >= 0 && d.tune_recall < d.tune_target ? ": BELOW target, use a finer --factory" : "");
    else if (d.factory[0])
        printf("  search       %s\n", qf_ann_factory_is_exact(d.factory, d.pooled) ? "exact (Flat scans every vector)"
               : "untuned (run `qformer index` again to tune): FAISS defaults, 40 candidates");
    /* never "-1": a file not written yet or unreadable says so, and what fixes it */
    if (d.faiss_bytes < 0)
        printf("  vectors      none: %s is not written yet%s\n", d.index_file,
               d.counts[QF_IMAGE_OK] ? " (the next `qformer index` run writes it; search reads the stored "
                                       "features meanwhile)" : "");
    else if (d.faiss_ntotal < 0)
        printf("  vectors      %s is unreadable (the next `qformer index` run rebuilds it)\n", d.index_file);
    else
        printf("  vectors      %lld in %s%s\n", (long long)d.faiss_ntotal, d.index_file,
               d.faiss_generation == d.generation ? "" : " (out of step: the next index run rebuilds it)");
    printf("  on disk      database %s, vector index %s\n", qf_format_bytes((double)d.db_bytes, b1, sizeof b1),
           d.faiss_bytes >= 0 ? qf_format_bytes((double)d.faiss_bytes, b2, sizeof b2) : "none");
    printf("  schema       version %d\n", d.schema_version);
    if (d.counts[QF_IMAGE_ERROR])
        printf("  `qformer info --db %s --failures` lists the failed files\n", db_path);
    return 0;
}

int qf_cmd_info(int argc, char **argv) {
    static const struct option opts[] = {
        { "model", required_argument, 0, 'm' }, { "db", required_argument, 0, 'd' },
        { "format", required_argument, 0, 'f' }, { "help", no_argument, 0, 'h' },
        { "failures", no_argument, 0, 'F' }, { "check", no_argument, 0, 'c' },
        { "repair", no_argument, 0, 'r' }, { "recall", no_argument, 0, 'R' },
        { "queries", required_argument, 0, 'Q' }, { 0, 0, 0, 0 },
    };
    const char *model_dir = NULL, *db = NULL, *format = "text";
    const char *queries = NULL;
    int c, failures = 0, check = 0, repair = 0, recall = 0;
    optind = 1;
    opterr = 0;       /* qf_cli_bad_option says what is wrong */
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_dir = optarg; break;
        case 'd': db = optarg; break;
        case 'f': format = optarg; break;
        case 'F': failures = 1; break;
        case 'c': check = 1; break;
        case 'r': repair = 1; break;
        case 'R': recall = 1; break;
        case 'Q': queries = optarg; break;
        case 'h': fputs(usage_text, stdout); return 0;
        default: return qf_cli_bad_option("info", argc, argv, "h", opts);
        }
    }
    if (optind < argc) return qf_cli_usage("info", "unexpected argument '%s'", argv[optind]);
    if (strcmp(format, "text") && strcmp(format, "json"))
        return qf_cli_usage("info", "--format must be text or json, not '%s'", format);
    if (!model_dir == !db) return qf_cli_usage("info", "give exactly one of --model DIR and --db FILE.db");
    int json = !strcmp(format, "json");
    char model_buf[QF_HUB_PATH_MAX];   /* --model: a folder or a cached ORG/NAME */
    qf_status hs = model_dir ? qf_hub_resolve_model(model_dir, model_buf, sizeof model_buf) : QF_OK;
    if (hs) return qf_cli_fail("info", hs);
    if (model_dir) model_dir = model_buf;
    if ((recall || queries) && !db) return qf_cli_usage("info", "--recall needs --db FILE.db");
    if (queries && !recall) return qf_cli_usage("info", "--queries goes with --recall");
    if (recall) return info_recall(db, queries, json);
    return db ? info_db(db, json, failures, check, repair) : info_model(model_dir, json);
}
