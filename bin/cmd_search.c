/* cmd_search.c - `qformer search`: text or image query against an index. */
#include "cli.h"

#include "query/search.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "usage: qformer search --db FILE.db [-k N] [--rerank N] [--caption N] [--caption-model DIR]\n"
    "                      [--caption-dtype f32|bf16|int8]\n"
    "                      [--prompt STR] [--model DIR] [--nprobe N] [--candidates N]\n"
    "                      [--format table|json|html] [--out FILE] (TEXT | --image PATH)\n"
    "\n"
    "Finds the images of an index that best match TEXT (or the image PATH) by the exact\n"
    "BLIP-2 ITC score (max over the query vectors of an image).\n"
    "  -k N              results (default 10)\n"
    "  --rerank N        rescore the top N with the ITM head: itm = match logit (mean over\n"
    "                    queries), score = itm + itc; reranked results come first\n"
    "  --caption N       caption the first N results with --caption-model (a BLIP-2 OPT\n"
    "                    checkpoint); captions are cached in the index database\n"
    "  --prompt STR      caption prompt (e.g. 'a photo of')\n"
    "  --caption-dtype T language-model weights for --caption: f32 (default; exact),\n"
    "                    bf16 or int8 (faster; cached apart from f32 captions)\n"
    "  --image PATH      search by this image instead of a TEXT\n"
    "  --format F        table (default), json, or html (a self-contained gallery)\n"
    "  --out FILE        write there instead of standard output\n"
    "  --model DIR       retrieval checkpoint (default: the one the index was built with)\n"
    "  --nprobe N        IVF cells to visit (IVF factories; default: the value tuned at\n"
    "                    index time, see `qformer info --db`)\n"
    "  --candidates N    images the approximate index proposes for exact rescoring\n"
    "                    (default: tuned at index time; more = higher recall, slower)\n"
    "\n"
    "JSON: {\"query\": TEXT, \"results\": [{\"rank\", \"id\", \"path\", \"itc\", \"itm\", \"score\", \"caption\"}]}\n"
    "\n"
    "examples:\n"
    "  qformer search --db photos.db \"a cat on a sofa\"\n"
    "  qformer search --db photos.db --rerank 20 --caption 5 --caption-model blip2-opt-2.7b \\\n"
    "                 --format html --out cats.html \"a cat on a sofa\"\n"
    "  qformer search --db photos.db --image query.jpg -k 5 --format json\n"
    "  qformer search --db photos.db -- \"-20 degrees outside\"   # a TEXT starting with '-'\n";

int qf_cmd_search(int argc, char **argv) {
    static const struct option opts[] = {
        { "db", required_argument, 0, 'd' }, { "rerank", required_argument, 0, 'r' },
        { "caption", required_argument, 0, 'c' }, { "caption-model", required_argument, 0, 'C' },
        { "prompt", required_argument, 0, 'p' }, { "model", required_argument, 0, 'm' },
        { "nprobe", required_argument, 0, 'n' }, { "format", required_argument, 0, 'f' },
        { "out", required_argument, 0, 'o' }, { "image", required_argument, 0, 'i' },
        { "caption-dtype", required_argument, 0, 'D' }, { "candidates", required_argument, 0, 'N' },
        { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 },
    };
    qf_search_opts o = { .k = 10 };
    const char *format = "table", *out_path = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "hk:", opts, NULL)) != -1) {
        switch (c) {
        case 'd': o.db_path = optarg; break;
        case 'k': if (!qf_cli_int(optarg, 0, 1 << 20, &o.k) || o.k == 0) return qf_cli_usage("search", "-k: '%s' is not a positive integer", optarg); break;
        case 'r': if (!qf_cli_int(optarg, 0, 1 << 20, &o.rerank)) return qf_cli_usage("search", "--rerank: '%s' is not an integer", optarg); break;
        case 'c': if (!qf_cli_int(optarg, 0, 1 << 20, &o.caption)) return qf_cli_usage("search", "--caption: '%s' is not an integer", optarg); break;
        case 'C': o.caption_model = optarg; break;
        case 'D': if (qf_opt_weights_parse(optarg, &o.caption_dtype)) return qf_cli_usage("search", "--caption-dtype must be f32, bf16 or int8, not '%s'", optarg); break;
        case 'p': o.prompt = optarg; break;
        case 'm': o.model_dir = optarg; break;
        case 'n': if (!qf_cli_int(optarg, 0, 1 << 20, &o.nprobe)) return qf_cli_usage("search", "--nprobe: '%s' is not an integer", optarg); break;
        case 'N': if (!qf_cli_int(optarg, 1, 1 << 20, &o.candidates)) return qf_cli_usage("search", "--candidates: '%s' is not a positive integer", optarg); break;
        case 'f': format = optarg; break;
        case 'o': out_path = optarg; break;
        case 'i': o.image_path = optarg; break;
        case 'h': fputs(usage_text, stdout); return 0;
        default: return 2;
        }
    }
    if (!o.db_path) return qf_cli_usage("search", "--db is required");
    if (strcmp(format, "table") && strcmp(format, "json") && strcmp(format, "html"))
        return qf_cli_usage("search", "--format must be table, json or html, not '%s'", format);
    if (!o.image_path) {
        if (optind != argc - 1) return qf_cli_usage("search", "give exactly one TEXT (quote it) or --image PATH");
        o.text = argv[optind];
    } else if (optind < argc) {
        return qf_cli_usage("search", "TEXT and --image are exclusive");
    }

    qf_search_result r;
    qf_status s = qf_search_run(&o, &r);
    if (s) return qf_cli_fail("search", s);
    FILE *f = stdout;
    if (out_path && !(f = fopen(out_path, "w"))) {
        qf_search_result_free(&r);
        s = qf_errorf(QF_ERR_IO, "%s: cannot write", out_path);
        return qf_cli_fail("search", s);
    }
    char qbuf[4200];
    if (o.image_path) snprintf(qbuf, sizeof qbuf, "image:%s", o.image_path);
    qf_report_info info = { .query = o.text ? o.text : qbuf, .mode = r.mode,
                            .rerank_src = r.rerank_src[0] ? r.rerank_src : NULL, .thumb_px = 320 };
    if (!strcmp(format, "json")) s = qf_report_json(f, &info, r.hits, r.n);
    else if (!strcmp(format, "html")) s = qf_report_html(f, &info, r.hits, r.n);
    else s = qf_report_table(f, &info, r.hits, r.n);
    if (f != stdout && fclose(f) != 0 && !s) s = qf_errorf(QF_ERR_IO, "%s: write failed", out_path);
    qf_search_result_free(&r);
    if (s) return qf_cli_fail("search", s);
    if (out_path && qf_cli_verbosity() >= 0) fprintf(stderr, "qformer search: wrote %s\n", out_path);
    return 0;
}
