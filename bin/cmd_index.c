/* cmd_index.c - `qformer index`: embed a corpus into a FAISS + SQLite index,
 * alone or as every rank of `mpirun -np N qformer index ...`. */
#include "cli.h"

#include "index/ann.h"
#include "mpi/driver.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char usage_text[] =
    "usage: qformer index --model DIR --db FILE.db [--factory STR] [--max-index-memory SIZE]\n"
    "                     [--batch N] [--threads N]\n"
    "                     [--pooled] [--keep-vision] [--checkpoint N] [--retry-failed]\n"
    "                     [--dtype f32|bf16] [--store-dtype f32|f16] [--quiet] PATH...\n"
    "\n"
    "Embeds every image under PATH (an image file, a folder walked recursively, or @FILE\n"
    "with one path per line) with a BLIP-2 retrieval checkpoint and stores the ITC features\n"
    "in a FAISS index (FILE.db.faiss) with SQLite metadata (FILE.db). Re-running is\n"
    "incremental: unchanged files are skipped, changed ones re-embedded, vanished ones\n"
    "removed. An interrupted run (even kill -9) resumes where it stopped.\n"
    "\n"
    "  --factory STR    FAISS index type, inner product: auto (default for a new\n"
    "                   database: exact Flat while the corpus is small, an IVF index\n"
    "                   beyond, chosen for its size and --max-index-memory; the choice\n"
    "                   and why are printed and kept), Flat, or e.g. IVF4096,PQ32\n"
    "                   (trained on the corpus at the end). Approximate indexes get\n"
    "                   their search settings tuned for recall@10 >= 0.98 on the corpus.\n"
    "  --max-index-memory SIZE\n"
    "                   RAM budget of the vector index for --factory auto (default 2G)\n"
    "  --dtype T        ViT arithmetic: f32 (default, exact to HF) or bf16 (BF16 weights\n"
    "                   and GEMM inputs, ~2x faster on CPUs with AVX512_BF16; features\n"
    "                   within ~2e-3). Recorded: a database never mixes the two\n"
    "  --store-dtype T  features kept in the database for exact rescoring and rebuilds:\n"
    "                   f32 (default: 32 KiB per image, scores exact) or f16 (16 KiB,\n"
    "                   scores within ~1e-3); chosen when the database is new\n"
    "  --pooled         one mean vector per image (32x smaller, approximate ranking)\n"
    "  --keep-vision    cache the vision features (F16) so search --rerank is fast\n"
    "  --batch N        images per work unit handed to a rank (default 8)\n"
    "  --threads N      BLAS threads per rank (default: cores / ranks on the node)\n"
    "  --checkpoint N   commit to the database every N images (default 64)\n"
    "  --retry-failed   try again the files recorded as bad input\n"
    "\n"
    "Bad files (truncated, not an image, decompression bombs) are recorded with their\n"
    "error and skipped; the run exits 0 and says how many. See `qformer info --db`.\n"
    "\n"
    "examples:\n"
    "  qformer index --model blip2-itm-vit-g --db photos.db ~/Pictures\n"
    "  mpirun -np 8 qformer index --model blip2-itm-vit-g --db big.db --factory IVF4096,PQ32 @list.txt\n";

typedef struct { int tty; double last; } progress_state;

static void on_progress(const qf_index_progress *p, void *user) {
    progress_state *ps = user;
    double t = qf_now();
    int last = p->done == p->total;
    if (!last && t - ps->last < (ps->tty ? 0.25 : 10.0)) return;
    ps->last = t;
    double eta = p->rate > 0 ? (p->total - p->done) / p->rate : 0;
    if (ps->tty) {
        int width = 30, fill = p->total ? (int)(width * p->done / p->total) : width;
        fprintf(stderr, "\r[%.*s%*s] %ld/%ld  %.2f img/s  ETA %02d:%02d  failed %ld ",
                fill, "##############################", width - fill, "", p->done, p->total,
                p->rate, (int)(eta / 60), (int)eta % 60, p->failed);
        if (last) fputc('\n', stderr);
    } else {
        fprintf(stderr, "qformer index: %ld/%ld images, %.2f img/s, ETA %.0f s, %ld failed",
                p->done, p->total, p->rate, eta, p->failed);
        if (p->ranks > 1) {
            fprintf(stderr, " | per rank:");
            for (int r = 1; r < p->ranks; r++)
                fprintf(stderr, " %d:%.2f", r, p->elapsed > 0 ? p->per_rank[r] / p->elapsed : 0.0);
        }
        fputc('\n', stderr);
    }
}

int qf_cmd_index(int argc, char **argv) {
    static const struct option opts[] = {
        { "model", required_argument, 0, 'm' }, { "db", required_argument, 0, 'd' },
        { "factory", required_argument, 0, 'f' }, { "batch", required_argument, 0, 'b' },
        { "threads", required_argument, 0, 't' }, { "pooled", no_argument, 0, 'P' },
        { "keep-vision", no_argument, 0, 'K' }, { "checkpoint", required_argument, 0, 'c' },
        { "retry-failed", no_argument, 0, 'R' }, { "quiet", no_argument, 0, 'q' },
        { "max-index-memory", required_argument, 0, 'M' }, { "dtype", required_argument, 0, 'D' },
        { "store-dtype", required_argument, 0, 'S' },
        { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 },
    };
    qf_index_opts o = { .batch = 8, .pooled = -1, .checkpoint = 64 };
    int quiet = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "hq", opts, NULL)) != -1) {
        switch (c) {
        case 'm': o.model_dir = optarg; break;
        case 'd': o.db_path = optarg; break;
        case 'f': o.factory = optarg; break;
        case 'b': if (!qf_cli_int(optarg, 1, 1 << 20, &o.batch)) return qf_cli_usage("index", "--batch: '%s' is not a positive integer", optarg); break;
        case 't': if (!qf_cli_int(optarg, 1, 1 << 20, &o.threads)) return qf_cli_usage("index", "--threads: '%s' is not a positive integer", optarg); break;
        case 'P': o.pooled = 1; break;
        case 'K': o.keep_vision = 1; break;
        case 'c': if (!qf_cli_int(optarg, 1, 1 << 20, &o.checkpoint)) return qf_cli_usage("index", "--checkpoint: '%s' is not a positive integer", optarg); break;
        case 'R': o.retry_failed = 1; break;
        case 'q': quiet = 1; break;
        case 'S':
            if (strcmp(optarg, "f32") && strcmp(optarg, "f16")) return qf_cli_usage("index", "--store-dtype must be f32 or f16, not '%s'", optarg);
            o.store_dtype = optarg;
            break;
        case 'D':
            if (strcmp(optarg, "f32") && strcmp(optarg, "bf16")) return qf_cli_usage("index", "--dtype must be f32 or bf16, not '%s'", optarg);
            o.vit_bf16 = !strcmp(optarg, "bf16");
            break;
        case 'M':
            if (qf_ann_parse_bytes(optarg, &o.max_index_memory)) return qf_cli_usage("index", "--max-index-memory: %s", qf_last_error());
            break;
        case 'h': fputs(usage_text, stdout); return 0;
        default: return 2;
        }
    }
    if (!o.model_dir || !o.db_path) return qf_cli_usage("index", "--model and --db are required");
    if (optind >= argc) return qf_cli_usage("index", "no PATH to index");
    o.roots = (const char *const *)argv + optind;
    o.n_roots = argc - optind;

    qf_status s = qf_mpi_init(&argc, &argv);
    if (s) return qf_cli_fail("index", s);
    int rank = qf_mpi_rank();
    progress_state ps = { .tty = isatty(2), .last = 0 };
    if (rank == 0 && !quiet) { o.on_progress = on_progress; o.progress_user = &ps; }

    qf_index_report r;
    s = qf_mpi_index_run(&o, &r);
    if (s) {
        if (qf_mpi_size() > 1) fprintf(stderr, "qformer index: rank %d: %s\n", rank, qf_last_error());
        else qf_cli_fail("index", s);
        qf_mpi_abort(1);
        qf_mpi_finalize();
        return 1;
    }
    if (rank == 0) {
        printf("indexed %ld image%s (%ld embedded, %ld failed and skipped), %ld unchanged, %ld removed; "
               "the index holds %ld images", r.queued, r.queued == 1 ? "" : "s", r.embedded, r.failed,
               r.unchanged, r.removed, r.total_ok);
        if (r.seconds > 0 && r.queued)
            printf("; %.2f images/s on %d rank%s", r.queued / r.seconds, r.ranks, r.ranks == 1 ? "" : "s");
        printf("\n");
        if (r.factory[0] && r.total_ok) {
            printf("vector index: %s%s%s%s\n", r.factory, r.factory_reason[0] ? " (auto: " : "", r.factory_reason,
                   r.factory_reason[0] ? ")" : "");
            if (r.candidates > 0)
                printf("search settings%s: nprobe %d, %d candidates rescored exactly; recall@10 %.3f on probe "
                       "queries%s\n", r.tuned ? " (tuned)" : "", r.nprobe, r.candidates, r.recall,
                       r.recall_reached ? "" : " (below the 0.98 target: consider a finer --factory)");
        }
        if (r.scan_errors) printf("%ld path%s could not be scanned (see above)\n", r.scan_errors, r.scan_errors == 1 ? "" : "s");
        if (r.failed) printf("bad files are listed by `qformer info --db %s --failures`\n", o.db_path);
    }
    qf_mpi_finalize();
    return 0;
}
