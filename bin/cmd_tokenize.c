/* cmd_tokenize.c - `qformer tokenize`: the token ids the model is fed for
 * each TEXT. The checkpoint's config.json picks the tokenizer: a retrieval
 * checkpoint (Q-Former text input) gets the Q-Former's BERT ids, `[CLS] ...
 * [SEP]` truncated to 32, no padding; an OPT captioning checkpoint gets
 * OPT's BPE ids (`</s>` first), a Flan-T5 one SentencePiece ids (`</s>`
 * last). Every branch prints through
 * print_ids so the output format is one thing. */
#include "cli.h"

#include "embed/bert.h"
#include "embed/config.h"
#include "embed/hub.h"
#include "embed/spm.h"
#include "embed/bpe.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

static const char usage_text[] =
    "usage: qformer tokenize --model DIR [--format text|json] [--] TEXT...\n"
    "\n"
    "Prints the token ids the model is fed for each TEXT, one line per TEXT:\n"
    "  retrieval checkpoint (Blip2ForImageTextRetrieval): the Q-Former's BERT\n"
    "    WordPiece ids, [CLS] ... [SEP], truncated to 32 tokens, no padding;\n"
    "  captioning checkpoint (Blip2ForConditionalGeneration): OPT's BPE ids\n"
    "    (</s> first), or for Flan-T5 the SentencePiece ids (</s> = 1 last).\n"
    "\n"
    "options:\n"
    "  --model DIR      checkpoint folder (config.json + tokenizer files)\n"
    "  --format FMT     text (default): the ids separated by spaces;\n"
    "                   json: {\"text\": TEXT, \"ids\": [...]} per line\n"
    "  --               ends the options (for a TEXT that starts with '-')\n"
    "  -h, --help       this help\n"
    "\n"
    "examples:\n"
    "  qformer tokenize --model blip2-itm-vit-g \"a dog on the beach\"\n"
    "  qformer tokenize --model blip2-itm-vit-g --format json -- \"-5 degrees\" \"Café\"\n"
    "  qformer tokenize --model blip2-flan-t5-xl --format json \"Question: what is shown? Answer:\"\n";

typedef enum { FMT_TEXT, FMT_JSON } out_format;

/* One output line for `text`. Returns 0, or -1 when stdout fails. */
static int print_ids(out_format fmt, const char *text, const int64_t *ids, int n) {
    if (fmt == FMT_TEXT) {
        for (int i = 0; i < n; i++) printf(i ? " %lld" : "%lld", (long long)ids[i]);
        putchar('\n');
        return ferror(stdout) ? -1 : 0;
    }
    json_t *arr = json_array();
    json_t *obj = json_object();
    int rc = -1;
    if (!arr || !obj) goto done;
    for (int i = 0; i < n; i++)
        if (json_array_append_new(arr, json_integer((json_int_t)ids[i]))) goto done;
    /* text was validated as UTF-8 by the tokenizer; non-ASCII is kept as is. */
    if (json_object_set_new(obj, "text", json_string(text)) ||
        json_object_set(obj, "ids", arr))
        goto done;
    if (json_dumpf(obj, stdout, 0) == 0 && putchar('\n') != EOF && !ferror(stdout)) rc = 0;
done:
    json_decref(arr);
    json_decref(obj);
    return rc;
}

/* Retrieval checkpoints: the Q-Former's BERT tokenizer. */
static int run_bert(const char *model, out_format fmt, char **texts, int n_texts) {
    qf_bert *tok = NULL;
    qf_status s = qf_bert_load(model, &tok);
    if (s) return qf_cli_fail("tokenize", s);
    int rc = 0;
    for (int i = 0; i < n_texts && rc == 0; i++) {
        int64_t ids[QF_BERT_MAX_TXT_LEN];
        int n = 0;
        s = qf_bert_encode(tok, texts[i], QF_BERT_MAX_TXT_LEN, 0, ids, NULL, &n);
        if (s) {
            qf_error_prefix(s, "TEXT %d", i + 1);
            rc = qf_cli_fail("tokenize", s);
        } else if (print_ids(fmt, texts[i], ids, n)) {
            rc = qf_cli_fail("tokenize", qf_errorf(QF_ERR_IO, "cannot write to stdout"));
        }
    }
    qf_bert_free(tok);
    return rc;
}

/* Captioning checkpoints: OPT's GPT-2 byte-level BPE (`</s>` first), or
 * Flan-T5's SentencePiece (`</s>` last). */
static int run_lm(const char *model, int t5, out_format fmt, char **texts, int n_texts) {
    qf_bpe *tok = NULL;
    qf_spm *spm = NULL;
    qf_status s = t5 ? qf_spm_load(model, &spm) : qf_bpe_load(model, &tok);
    if (s) return qf_cli_fail("tokenize", s);
    int rc = 0;
    for (int i = 0; i < n_texts && rc == 0; i++) {
        int32_t *ids = NULL;
        int64_t *wide = NULL;
        int n = 0;
        s = t5 ? qf_spm_encode(spm, texts[i], 1, &ids, &n) : qf_bpe_encode(tok, texts[i], 1, &ids, &n);
        if (!s && !(wide = qf_malloc(((size_t)n + 1) * sizeof *wide)))
            s = qf_errorf(QF_ERR_NOMEM, "out of memory for %d ids", n);
        if (s) {
            qf_error_prefix(s, "TEXT %d", i + 1);
            rc = qf_cli_fail("tokenize", s);
        } else {
            for (int k = 0; k < n; k++) wide[k] = ids[k];
            if (print_ids(fmt, texts[i], wide, n))
                rc = qf_cli_fail("tokenize", qf_errorf(QF_ERR_IO, "cannot write to stdout"));
        }
        qf_free(ids);
        qf_free(wide);
    }
    qf_bpe_free(tok);
    qf_spm_free(spm);
    return rc;
}

int qf_cmd_tokenize(int argc, char **argv) {
    static const struct option opts[] = {
        { "model",  required_argument, NULL, 'm' },
        { "format", required_argument, NULL, 'f' },
        { "help",   no_argument,       NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *model = NULL;
    out_format fmt = FMT_TEXT;
    int c;
    optind = 1;
    opterr = 0;
    /* '+': options end at the first TEXT, so later TEXTs may start with '-'. */
    while ((c = getopt_long(argc, argv, "+:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'f':
            if (!strcmp(optarg, "text")) fmt = FMT_TEXT;
            else if (!strcmp(optarg, "json")) fmt = FMT_JSON;
            else return qf_cli_usage("tokenize", "--format must be text or json, not '%s'", optarg);
            break;
        case 'h': fputs(usage_text, stdout); return 0;
        case ':': return qf_cli_usage("tokenize", "%s needs a value", argv[optind - 1]);
        default:  return qf_cli_usage("tokenize", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (!model) return qf_cli_usage("tokenize", "--model DIR is required");
    if (optind >= argc) return qf_cli_usage("tokenize", "no TEXT given");
    char model_buf[QF_HUB_PATH_MAX];   /* --model: a folder or a cached ORG/NAME */
    qf_status hs = qf_hub_resolve_model(model, model_buf, sizeof model_buf);
    if (hs) return qf_cli_fail("tokenize", hs);
    model = model_buf;

    qf_blip2_config cfg;
    qf_status s = qf_config_load(model, &cfg);
    if (s) return qf_cli_fail("tokenize", s);
    int retrieval = cfg.qformer.use_qformer_text_input ||
                    !strcmp(cfg.architecture, "Blip2ForImageTextRetrieval");
    if (retrieval) return run_bert(model, fmt, argv + optind, argc - optind);
    return run_lm(model, cfg.t5.present, fmt, argv + optind, argc - optind);
}
