/* cmd_caption.c - `qformer caption`: captions (or answers a prompt about)
 * each image with a BLIP-2 OPT or Flan-T5 checkpoint. */
#include "cli.h"

#include "embed/hub.h"
#include "index/export.h"
#include "embed/caption.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "usage: qformer caption --model DIR [--prompt STR] [--max-new-tokens N] [--min-new-tokens N]\n"
    "                       [--num-beams K] [--length-penalty F] [--repetition-penalty F]\n"
    "                       [--dtype f32|bf16|int8] [--format text|json] IMAGE...\n"
    "\n"
    "Captions each IMAGE with a BLIP-2 captioning checkpoint (Salesforce/blip2-opt-* or\n"
    "blip2-flan-t5-* layout; config.json's text_config.model_type tells them apart).\n"
    "Defaults follow the checkpoint's generation_config.json (else those of HF generate):\n"
    "greedy unless --num-beams > 1.\n"
    "A prompt such as \"Question: what is in the picture? Answer:\" turns it into visual QA\n"
    "(the Flan-T5 checkpoints follow such instructions best).\n"
    "\n"
    "  --model DIR               captioning checkpoint (folder or cached ORG/NAME)\n"
    "  --prompt STR              text the caption continues (default: none)\n"
    "  --max-new-tokens N        stop after N new tokens\n"
    "  --min-new-tokens N        no EOS before N new tokens\n"
    "  --num-beams K             beam search with K beams (1: greedy)\n"
    "  --length-penalty F        beam score = log-prob / length^F\n"
    "  --repetition-penalty F    > 1 discourages repeating tokens\n"
    "  --dtype T                 language-model weights: f32 (default; exact to HF), bf16\n"
    "                            (half the memory) or int8 (W8A8, a quarter; ~3x faster\n"
    "                            decoding, captions may differ from f32)\n"
    "  --format F                text (default): PATH, a tab, the caption; json: below\n"
    "\n"
    "--format json prints one object per image per line:\n"
    "  {\"image\": PATH, \"ids\": [new token ids, EOS included], \"text\": \"decoded caption\"}\n"
    "(Flan-T5: the decoder start token is not among the ids)\n"
    "\n"
    "examples:\n"
    "  qformer caption --model blip2-opt-2.7b photo.jpg\n"
    "  qformer caption --model blip2-opt-2.7b --num-beams 3 --prompt 'Question: what color is the car? Answer:' car.jpg\n"
    "  qformer caption --model blip2-flan-t5-xl --prompt 'Question: how many dogs are there? Answer:' dogs.jpg\n";

int qf_cmd_caption(int argc, char **argv) {
    static const struct option opts[] = {
        { "model", required_argument, 0, 'm' }, { "prompt", required_argument, 0, 'p' },
        { "max-new-tokens", required_argument, 0, 'n' }, { "min-new-tokens", required_argument, 0, 'N' },
        { "num-beams", required_argument, 0, 'b' }, { "length-penalty", required_argument, 0, 'l' },
        { "repetition-penalty", required_argument, 0, 'r' }, { "format", required_argument, 0, 'f' },
        { "dtype", required_argument, 0, 'd' },
        { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 },
    };
    const char *model_dir = NULL, *prompt = NULL, *format = "text";
    int max_new = -1, min_new = -1, beams = -1, c;
    qf_opt_weights wt = QF_OPT_F32;
    float lp = 0, rp = 0;
    int have_lp = 0, have_rp = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_dir = optarg; break;
        case 'p': prompt = optarg; break;
        case 'n': if (!qf_cli_int(optarg, 1, 4096, &max_new)) return qf_cli_usage("caption", "--max-new-tokens: '%s' is not an integer in 1..4096", optarg); break;
        case 'N': if (!qf_cli_int(optarg, 0, 4096, &min_new)) return qf_cli_usage("caption", "--min-new-tokens: '%s' is not an integer in 0..4096", optarg); break;
        case 'b': if (!qf_cli_int(optarg, 1, 64, &beams)) return qf_cli_usage("caption", "--num-beams: '%s' is not an integer in 1..64", optarg); break;
        case 'l': if (!qf_cli_float(optarg, &lp)) return qf_cli_usage("caption", "--length-penalty: '%s' is not a number", optarg); have_lp = 1; break;
        case 'r': if (!qf_cli_float(optarg, &rp) || rp <= 0) return qf_cli_usage("caption", "--repetition-penalty: '%s' is not a positive number", optarg); have_rp = 1; break;
        case 'f': format = optarg; break;
        case 'd': if (qf_opt_weights_parse(optarg, &wt)) return qf_cli_usage("caption", "--dtype must be f32, bf16 or int8, not '%s'", optarg); break;
        case 'h': fputs(usage_text, stdout); return 0;
        default: return 2;
        }
    }
    if (!model_dir) return qf_cli_usage("caption", "--model is required");
    if (strcmp(format, "text") && strcmp(format, "json"))
        return qf_cli_usage("caption", "--format must be text or json, not '%s'", format);
    if (optind >= argc) return qf_cli_usage("caption", "no IMAGE given");
    char model_buf[QF_HUB_PATH_MAX];   /* --model: a folder or a cached ORG/NAME */
    qf_status hs = qf_hub_resolve_model(model_dir, model_buf, sizeof model_buf);
    if (hs) return qf_cli_fail("caption", hs);
    model_dir = model_buf;

    qf_captioner *cap = NULL;
    qf_status s = qf_captioner_load(model_dir, wt, &cap);
    if (s) return qf_cli_fail("caption", s);
    qf_gen_params p = *qf_captioner_defaults(cap);
    if (max_new > 0) p.max_new_tokens = max_new;
    if (min_new >= 0) p.min_new_tokens = min_new;
    if (beams > 0) p.num_beams = beams;
    if (have_lp) p.length_penalty = lp;
    if (have_rp) p.repetition_penalty = rp;

    int failures = 0;
    for (int i = optind; i < argc; i++) {
        qf_caption out;
        s = qf_captioner_run_file(cap, argv[i], prompt, &p, &out);
        if (s) {
            qf_cli_fail("caption", s);
            failures++;
            continue;
        }
        if (!strcmp(format, "json")) {
            json_t *ids = json_array();
            for (int k = 0; k < out.n_ids; k++) json_array_append_new(ids, json_integer(out.ids[k]));
            /* "image" is written apart: jansson refuses a file name that is
             * not UTF-8 (b"caf\xe9.jpg"), which failed the image; such bytes
             * are written as "\udcXX" (qf_export_json_string) */
            json_t *o = json_pack("{s:o, s:s}", "ids", ids, "text", out.text);
            json_t *img = json_string(argv[i]);
            char *line = o ? json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
            char *img_js = img ? json_dumps(img, JSON_ENCODE_ANY | JSON_ENSURE_ASCII) : NULL;
            json_decref(img);
            if (line) {
                fputs("{\"image\":", stdout);
                if (img_js) fputs(img_js, stdout);
                else qf_export_json_string(stdout, argv[i]);
                printf(",%s\n", line + 1);
            } else { fprintf(stderr, "qformer caption: %s: cannot encode the result as JSON\n", argv[i]); failures++; }
            free(line);
            free(img_js);
            json_decref(o);
        } else {
            /* one line per image: PATH<TAB>caption without the trailing newline */
            size_t n = strlen(out.text);
            while (n && (out.text[n - 1] == '\n' || out.text[n - 1] == ' ')) n--;
            const char *t = out.text;
            while (*t == ' ' && n) { t++; n--; }
            printf("%s\t%.*s\n", argv[i], (int)n, t);
        }
        qf_caption_free(&out);
    }
    qf_captioner_free(cap);
    fflush(stdout);
    return failures ? 1 : 0;
}
