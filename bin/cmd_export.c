/* cmd_export.c - `qformer export`: an index's features as .npy + .jsonl. */
#include "cli.h"

#include "index/export.h"

#include <getopt.h>
#include <stdio.h>

static const char usage_text[] =
    "usage: qformer export --db FILE.db --out DIR\n"
    "\n"
    "Writes DIR/image_feats.npy (float32 [n, num_query, dim], rows in image-id order),\n"
    "DIR/image_ids.npy (int64 [n]) for the indexed images, and DIR/images.jsonl (one\n"
    "object per image: id, path, width, height, status, error, row).\n"
    "\n"
    "examples:\n"
    "  qformer export --db photos.db --out feats\n"
    "  qformer export --db photos.db --out feats && python3 -c \\\n"
    "    \"import numpy as np; print(np.load('feats/image_feats.npy').shape)\"\n";

int qf_cmd_export(int argc, char **argv) {
    static const struct option opts[] = {
        { "db", required_argument, 0, 'd' }, { "out", required_argument, 0, 'o' },
        { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 },
    };
    const char *db = NULL, *out = NULL;
    int c;
    optind = 1;
    opterr = 0;       /* qf_cli_bad_option says what is wrong */
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'd': db = optarg; break;
        case 'o': out = optarg; break;
        case 'h': fputs(usage_text, stdout); return 0;
        default: return qf_cli_bad_option("export", argc, argv, "h", opts);
        }
    }
    if (!db || !out) return qf_cli_usage("export", "%s required", !db && !out ? "--db and --out are" : !db ? "--db is" : "--out is");
    if (optind < argc) return qf_cli_usage("export", "unexpected argument '%s'", argv[optind]);
    qf_export_report r;
    qf_status s = qf_export_run(db, out, &r);
    if (s) return qf_cli_fail("export", s);
    printf("exported %lld image features (%lld images listed) to %s\n", (long long)r.n_ok, (long long)r.n_images, out);
    return 0;
}
