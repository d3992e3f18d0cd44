/* cmd_index.c - `qformer index`: embed a corpus into a FAISS + SQLite index,
 * alone or as every rank of `mpirun -np N qformer index ...`. */
#include "cli.h"

#include "embed/hub.h"
#include "index/ann.h"
#include "mpi/driver.h"

#include <getopt.h>
#include <sys/stat.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char usage_text[] =
    "usage: qformer index [--model DIR] --db FILE.db [--factory STR] [--max-index-memory SIZE]\n"
    "                     [--batch N] [--threads N]\n"
    "                     [--pooled | --no-pooled] [--keep-vision] [--checkpoint N] [--retry-failed]\n"
    "                     [--dtype f32|bf16] [--store-dtype f32|f16] [--quiet] PATH...\n"
    "\n"
    "Embeds every image under PATH (an image file, a folder walked recursively, or @FILE\n"
    "with one path per line) with a BLIP-2 retrieval checkpoint and stores the ITC features\n"
    "in a FAISS index (FILE.db.faiss) with SQLite metadata (FILE.db). Re-running is\n"
    "incremental: unchanged files are skipped, changed ones re-embedded, vanished ones\n"
    "removed. An interrupted run (even kill -9) resumes where it stopped.\n"
    "\n"
    "  --model DIR      retrieval checkpoint: a folder or a cached ORG/NAME (default: the\n"
    "                   model FILE.db records; a new database needs it)\n"
    "  --factory STR    FAISS index type, inner product: auto (default for a new\n"
    "                   database: exact Flat while the corpus is small, an IVF index\n"
    "                   beyond, chosen for its size and --max-index-memory; the choice\n"
    "                   and why are printed and kept), Flat, or e.g. IVF4096,PQ32\n"
    "                   (trained on the corpus at the end). Approximate indexes get\n"
    "                   their search settings tuned for recall@10 >= 0.97 on the corpus.\n"
    "  --max-index-memory SIZE\n"
    "                   RAM budget of the vector index for --factory auto (default 2G)\n"
    "  --dtype T        ViT arithmetic: f32 (default, exact to HF) or bf16 (BF16 weights\n"
    "                   and GEMM inputs, ~2x faster on CPUs with AVX512_BF16; features\n"
    "                   within ~2e-3). Recorded: a database never mixes the two\n"
    "  --store-dtype T  features kept in the database for exact rescoring and rebuilds:\n"
    "                   f32 (default: 32 KiB per image, scores exact) or f16 (16 KiB,\n"
    "                   scores within ~1e-3); chosen when the database is new\n"
    "  --pooled         one mean vector per image (32x smaller, approximate ranking)\n"
    "  --no-pooled      back to every query vector (exact); --pooled, --no-pooled and\n"
    "                   --factory stick to the database until changed again, and a change\n"
    "                   rebuilds FILE.db.faiss from the stored features (no re-embedding)\n"
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

/* ctrl-C / SIGTERM: the first asks the run to stop (the library polls the
 * flag, commits and exits 130); a second one exits at once, which is still
 * safe: the store is transactional and the next run resumes. */
static volatile sig_atomic_t stop_flag;
static int signal_says;      /* rank 0 prints; 2 on a terminal (ends the progress line) */

static void on_signal(int sig) {
    static const char first[] = "qformer index: stopping: finishing the images in progress and saving "
                                "(press ctrl-C again to quit at once)\n";
    static const char again[] = "qformer index: quitting now; committed work is kept, re-run the same "
                                "command to resume\n";
    if (stop_flag) {
        if (signal_says && write(2, again, sizeof again - 1) < 0) { /* nothing to do */ }
        _exit(130);
    }
    stop_flag = sig;
    if (signal_says == 2 && write(2, "\n", 1) < 0) { /* nothing to do */ }
    if (signal_says && write(2, first, sizeof first - 1) < 0) { /* nothing to do */ }
}

static void install_signals(int rank) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;      /* file reads and MPI go on undisturbed */
    sigemptyset(&sa.sa_mask);
    signal_says = rank == 0 ? (isatty(2) ? 2 : 1) : 0;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

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

/* 1 on the process that prints (rank 0, or no MPI), before MPI starts. */
static int getenv_rank0(void) {
    static const char *const vars[] = { "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK" };
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && v[0]) return atoi(v) == 0;
    }
    return 1;
}

int qf_cmd_index(int argc, char **argv) {
    static const struct option opts[] = {
        { "model", required_argument, 0, 'm' }, { "db", required_argument, 0, 'd' },
        { "factory", required_argument, 0, 'f' }, { "batch", required_argument, 0, 'b' },
        { "threads", required_argument, 0, 't' }, { "pooled", no_argument, 0, 'P' },
        { "no-pooled", no_argument, 0, 'N' }, { "keep-vision", no_argument, 0, 'K' }, { "checkpoint", required_argument, 0, 'c' },
        { "retry-failed", no_argument, 0, 'R' }, { "quiet", no_argument, 0, 'q' },
        { "max-index-memory", required_argument, 0, 'M' }, { "dtype", required_argument, 0, 'D' },
        { "store-dtype", required_argument, 0, 'S' },
        { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 },
    };
    qf_index_opts o = { .batch = 8, .pooled = -1, .checkpoint = 64 };
    int quiet = 0, c;
    optind = 1;
    opterr = 0;       /* qf_cli_bad_option says what is wrong */
    while ((c = getopt_long(argc, argv, "hq", opts, NULL)) != -1) {
        switch (c) {
        case 'm': o.model_dir = optarg; break;
        case 'd': o.db_path = optarg; break;
        case 'f': o.factory = optarg; break;
        case 'b': if (!qf_cli_int(optarg, 1, 1 << 20, &o.batch)) return qf_cli_usage("index", "--batch: '%s' is not a positive integer", optarg); break;
        case 't': if (!qf_cli_int(optarg, 1, 1 << 20, &o.threads)) return qf_cli_usage("index", "--threads: '%s' is not a positive integer", optarg); break;
        case 'P':
        case 'N':
            if (o.pooled >= 0 && o.pooled != (c == 'P')) return qf_cli_usage("index", "--pooled and --no-pooled are exclusive");
            o.pooled = c == 'P';
            break;
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
        default: return qf_cli_bad_option("index", argc, argv, "hq", opts);
        }
    }
    if (!o.db_path) return qf_cli_usage("index", "--db is required");
    if (optind >= argc) return qf_cli_usage("index", "no PATH to index");
    /* --model: a folder or a cached ORG/NAME; without it, the model the
     * database records (a new database needs it) */
    char model_buf[QF_HUB_PATH_MAX];
    char *recorded = NULL;
    qf_status s;
    if (!o.model_dir) {
        if ((s = qf_indexer_recorded_model(o.db_path, &recorded))) return qf_cli_fail("index", s);
        if (!recorded) return qf_cli_usage("index", "--model is required to create %s (a retrieval checkpoint "
                                           "folder or ORG/NAME)", o.db_path);
        struct stat sb;
        if (stat(recorded, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
            s = qf_errorf(QF_ERR_IO, "%s was built with the model %s, which is not there any more; pass "
                          "--model with its folder or ORG/NAME", o.db_path, recorded);
            qf_free(recorded);
            return qf_cli_fail("index", s);
        }
        snprintf(model_buf, sizeof model_buf, "%s", recorded);
        qf_free(recorded);
        if (!quiet && getenv_rank0())
            fprintf(stderr, "qformer index: using the model %s records: %s\n", o.db_path, model_buf);
    } else if ((s = qf_hub_resolve_model(o.model_dir, model_buf, sizeof model_buf))) {
        return qf_cli_fail("index", s);
    }
    o.model_dir = model_buf;
    o.roots = (const char *const *)argv + optind;
    o.n_roots = argc - optind;

    s = qf_mpi_init(&argc, &argv);
    if (s) return qf_cli_fail("index", s);
    int rank = qf_mpi_rank();
    progress_state ps = { .tty = isatty(2), .last = 0 };
    if (rank == 0 && !quiet) { o.on_progress = on_progress; o.progress_user = &ps; }

    install_signals(rank);
    o.stop = &stop_flag;
    qf_index_report r;
    s = qf_mpi_index_run(&o, &r);
    if (s) {
        if (qf_mpi_size() > 1) fprintf(stderr, "qformer index: rank %d: %s\n", rank, qf_last_error());
        else qf_cli_fail("index", s);
        qf_mpi_abort(1);
        qf_mpi_finalize();
        return 1;
    }
    if (rank == 0 && r.interrupted) {
        long saved = r.embedded + r.failed;
        fprintf(stderr, "qformer index: interrupted: %ld image%s saved%s; re-run the same command to resume\n",
                saved, saved == 1 ? "" : "s",
                r.faiss_behind ? " (the vector index is brought up to date by that run)" : "");
        qf_mpi_finalize();
        return 130;
    }
    if (rank == 0 && r.discarded) {
        fprintf(stderr, "qformer index: nothing to index: the given path%s could not be read (see above); "
                "%s was not created\n", r.named_errors == 1 ? "" : "s", o.db_path);
        qf_mpi_finalize();
        return 1;
    }
    if (rank == 0) {
        /* failures are not "indexed": they are counted apart */
        printf("embedded %ld image%s, %ld failed (bad input, skipped), %ld unchanged, %ld removed; "
               "the index holds %ld image%s", r.embedded, r.embedded == 1 ? "" : "s", r.failed,
               r.unchanged, r.removed, r.total_ok, r.total_ok == 1 ? "" : "s");
        if (r.seconds > 0 && r.queued)
            printf("; %.2f images/s on %d rank%s", r.queued / r.seconds, r.ranks, r.ranks == 1 ? "" : "s");
        printf("\n");
        if (r.factory[0] && r.total_ok) {
            printf("vector index: %s%s%s%s\n", r.factory, r.factory_reason[0] ? " (auto: " : "", r.factory_reason,
                   r.factory_reason[0] ? ")" : "");
            if (r.candidates > 0)
                printf("search settings%s: nprobe %d, %d candidates rescored exactly; recall@10 %.3f on probe "
                       "queries%s\n", r.tuned ? " (tuned)" : "", r.nprobe, r.candidates, r.recall,
                       r.recall_reached ? "" : " (below the target: consider a finer --factory)");
        }
        if (r.scan_errors) printf("%ld path%s could not be scanned (see above)\n", r.scan_errors, r.scan_errors == 1 ? "" : "s");
        if (r.failed) printf("bad files are listed by `qformer info --db %s --failures`\n", o.db_path);
        /* a PATH (or @LIST line) that is not there is a failed run, once the rest is indexed */
        if (r.named_errors)
            fprintf(stderr, "qformer index: %ld of the given paths could not be read (named above); the rest "
                    "is indexed\n", r.named_errors);
    }
    qf_mpi_finalize();
    return r.named_errors ? 1 : 0;
}
