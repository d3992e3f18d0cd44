/* main.c - `qformer` entry point: global options (--quiet, --verbose, --help,
 * --version), the log sink, then dispatch to the subcommand. `qformer --help`
 * and every `qformer CMD --help` are the single source of the man page and
 * the bash completion (scripts/gen-man.sh parses them), so their layout is a
 * contract: "section:" headings, two-space-indented "NAME  text" items. */
#include "cli.h"

#include "mpi/driver.h"

#include <ctype.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} commands[] = {
    { "embed",    qf_cmd_embed,    "image/text features, ITC scores, ITM logits to a safetensors file" },
    { "tokenize", qf_cmd_tokenize, "token ids the model is fed for each TEXT" },
    { "info",     qf_cmd_info,     "summary of a model folder or an index database" },
    { "caption",  qf_cmd_caption,  "caption images with a BLIP-2 OPT checkpoint" },
    { "index",    qf_cmd_index,    "embed a folder of images into a FAISS + SQLite index" },
    { "search",   qf_cmd_search,   "search an index by text or by image" },
    { "serve",    qf_cmd_serve,    "an index and its models kept loaded: JSON API and search page" },
    { "export",   qf_cmd_export,   "write an index's features as .npy + .jsonl" },
    { "pull",     qf_cmd_pull,     "download a checkpoint from the Hugging Face hub into the cache" },
    { "bench",    qf_cmd_bench,    "speed of the full-size models on random in-memory weights" },
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

/* Options of each command that take a value, so that a global option right
 * after one (`--prompt --quiet`) stays that option's value. A command not
 * listed here simply gets every --quiet / --verbose treated as global. */
static const struct { const char *cmd, *opts; } value_options[] = {
    { "embed",    " model image text out dtype " },
    { "tokenize", " model format " },
    { "info",     " model db format queries " },
    { "caption",  " model prompt max-new-tokens min-new-tokens num-beams length-penalty repetition-penalty format dtype " },
    { "index",    " model db factory max-index-memory dtype store-dtype batch threads checkpoint " },
    { "search",   " db k rerank caption caption-model caption-dtype prompt model nprobe candidates format out image " },
    { "serve",    " db caption-model caption-dtype model host port threads " },
    { "export",   " db out " },
    { "pull",     " revision dir endpoint retries " },
    { "bench",    " threads dtype only repeat decode-tokens format " },
};
/* Commands with their own --quiet (they silence their progress output). */
static const char own_quiet[] = " index pull ";

static const char help_head[] =
    "qformer - index image collections with BLIP-2 and search them by text\n"
    "\n"
    "usage: qformer [--quiet | --verbose] COMMAND [OPTIONS] [ARGS]\n"
    "       qformer help [COMMAND]\n"
    "       qformer --version\n"
    "\n"
    "qformer is Hugging Face BLIP-2 in C. It embeds images with the EVA ViT-g and\n"
    "the Q-Former of the official checkpoints, read from their own config.json and\n"
    "*.safetensors files; stores the ITC features in a FAISS index with SQLite\n"
    "metadata; and searches them by text or by image, with ITM reranking and OPT\n"
    "captions. `mpirun -np N qformer index ...` spreads indexing over N ranks.\n"
    "Every --model option takes a model folder or a hub repo id (ORG/NAME) that\n"
    "`qformer pull` has put in the cache. `qformer COMMAND --help` (or\n"
    "`qformer help COMMAND`) describes each command with examples.\n"
    "\n"
    "commands:\n";

static const char help_tail[] =
    "\n"
    "global options (before or after COMMAND):\n"
    "  -q, --quiet      no progress or info lines on stderr; warnings and errors\n"
    "                   still print\n"
    "  -v, --verbose    also the library's info and debug lines (index training,\n"
    "                   image decoder warnings, ...)\n"
    "  -h, --help       this help\n"
    "  -V, --version    print the version and exit\n"
    "\n"
    "exit status:\n"
    "  0    success, including an index run that skipped bad images (it says how\n"
    "       many; `qformer info --db FILE.db --failures` lists them)\n"
    "  1    failure: one line on stderr names the file and the problem\n"
    "  2    usage error: unknown command or option, missing or invalid argument\n"
    "  130  index interrupted (ctrl-C, SIGTERM): what was done is saved; re-run the\n"
    "       same command to resume\n"
    "\n"
    "environment:\n"
    "  HF_TOKEN              bearer token for gated or private hub repos (pull)\n"
    "  HF_ENDPOINT           hub server for pull (default https://huggingface.co)\n"
    "  QF_CACHE              model cache folder; default $HF_HUB_CACHE, else\n"
    "                        $HF_HOME/hub, else ~/.cache/huggingface/hub\n"
    "  HF_HOME               Hugging Face home: cache in $HF_HOME/hub, token in\n"
    "                        $HF_HOME/token\n"
    "  NO_COLOR              when set and not empty, no colour on stderr (colour is\n"
    "                        only used on a terminal anyway)\n"
    "  OPENBLAS_NUM_THREADS  BLAS threads of embed, caption, search and tokenize\n"
    "                        (default: all cores); index and bench take --threads\n"
    "\n"
    "examples:\n"
    "  qformer pull Salesforce/blip2-itm-vit-g\n"
    "  qformer index --model Salesforce/blip2-itm-vit-g --db photos.db ~/Pictures\n"
    "  qformer search --db photos.db --rerank 20 \"a cat on a sofa\"\n"
    "  qformer search --db photos.db --format html --out cats.html \"a cat\"\n"
    "  qformer serve --db photos.db --port 8080\n"
    "  mpirun -np 4 qformer --quiet index --model Salesforce/blip2-itm-vit-g \\\n"
    "      --db big.db /data/photos\n";

/* ---- verbosity, colour, log sink ---------------------------------------- */

static int verbosity = QF_CLI_NORMAL;
static int color = -1;          /* -1: not decided yet */
static char rank_tag[32];       /* " [rank N]" on MPI ranks other than 0 */

#define RED    "\033[1;31m"
#define YELLOW "\033[1;33m"
#define RESET  "\033[0m"

int qf_cli_verbosity(void) { return verbosity; }

int qf_cli_color(void) {
    if (color < 0) {
        const char *no = getenv("NO_COLOR"), *term = getenv("TERM");
        color = isatty(STDERR_FILENO) && !(no && no[0]) && !(term && !strcmp(term, "dumb"));
    }
    return color;
}

static void set_rank_tag(void) {
    int r = qf_mpi_env_rank();
    if (r > 0) snprintf(rank_tag, sizeof rank_tag, " [rank %d]", r);
}

/* "qformer: message", "qformer [rank 3]: message" on other ranks; INFO and
 * DEBUG only with --verbose. */
static void cli_log(qf_log_level level, const char *msg, void *user) {
    (void)user;
    if (level < QF_LOG_WARN && verbosity < QF_CLI_VERBOSE) return;
    const char *on = "", *off = "";
    if (level >= QF_LOG_WARN && qf_cli_color()) { on = level == QF_LOG_ERROR ? RED : YELLOW; off = RESET; }
    fprintf(stderr, "%sqformer%s:%s %s\n", on, rank_tag, off, msg);
}

/* "qformer CMD: " with the colour of an error on a terminal. */
static void error_prefix(const char *cmd) {
    int c = qf_cli_color();
    fprintf(stderr, "%sqformer%s%s%s:%s ", c ? RED : "", rank_tag, cmd ? " " : "", cmd ? cmd : "", c ? RESET : "");
}

int qf_cli_int(const char *s, int lo, int hi, int *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) return 0;
    *out = (int)v;
    return 1;
}

int qf_cli_float(const char *s, float *out) {
    char *end;
    float v = strtof(s, &end);
    if (!*s || *end) return 0;
    *out = v;
    return 1;
}

int qf_cli_fail(const char *cmd, qf_status s) {
    const char *msg = qf_last_error();
    error_prefix(cmd);
    fprintf(stderr, "%s\n", msg[0] ? msg : qf_status_str(s));
    return 1;
}

int qf_cli_usage(const char *cmd, const char *fmt, ...) {
    va_list ap;
    error_prefix(cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see qformer %s --help)\n", cmd);
    return 2;
}

/* ---- help --------------------------------------------------------------- */

static void help(FILE *f) {
    fputs(help_head, f);
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].summary);
    fputs(help_tail, f);
}

/* The short form for a usage error: synopsis and commands. */
static void short_usage(FILE *f) {
    fprintf(f, "usage: qformer [--quiet | --verbose] COMMAND [OPTIONS] [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n`qformer --help` for more, `qformer COMMAND --help` for a command.\n");
}

static int find_command(const char *name) {
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (!strcmp(name, commands[i].name)) return (int)i;
    return -1;
}

/* Edit distance of two short words (insert, delete, substitute). */
static int distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 31 || lb > 31) return 99;
    int row[32];
    for (size_t j = 0; j <= lb; j++) row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int up = row[j], best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            diag = up;
            row[j] = best;
        }
    }
    return row[lb];
}

static int unknown_command(const char *name) {
    const char *best = NULL;
    int best_d = 3;
    for (size_t i = 0; i < N_COMMANDS; i++) {
        int d = strncmp(name, commands[i].name, strlen(name)) ? distance(name, commands[i].name) : 0;
        if (name[0] && d < best_d) { best_d = d; best = commands[i].name; }
    }
    error_prefix(NULL);
    if (best) fprintf(stderr, "unknown command '%s'; did you mean '%s'? (`qformer --help` lists them)\n", name, best);
    else fprintf(stderr, "unknown command '%s' (`qformer --help` lists the commands)\n", name);
    return 2;
}

/* ---- option errors of the commands -------------------------------------- */

int qf_cli_bad_option(const char *cmd, int argc, char **argv, const char *shortopts,
                      const struct option *opts) {
    int i = optind > 0 && optind <= argc ? optind - 1 : 0;
    const char *tok = argv[i];
    if (optopt && optind < argc && argv[optind][0] == '-' && argv[optind][1] != '-' &&
        strchr(argv[optind] + 1, optopt))
        tok = argv[optind];                      /* a short option inside a cluster: "-20 degrees" */
    if (strncmp(tok, "--", 2) != 0) {
        int ch = optopt ? optopt : (tok[0] == '-' ? tok[1] : 0);
        if (isdigit((unsigned char)ch) || strchr(tok, ' '))
            return qf_cli_usage(cmd, "unknown option '-%c' in '%s'; a TEXT that starts with '-' goes after --: "
                                "qformer %s ... -- \"%s\"", ch, tok, cmd, tok);
        const char *sp = ch ? strchr(shortopts, ch) : NULL;
        if (sp && sp[1] == ':') return qf_cli_usage(cmd, "option '-%c' needs a value", ch);
        return qf_cli_usage(cmd, "unknown option '-%c'", ch);
    }
    const char *name = tok + 2, *eq = strchr(name, '=');
    size_t n = eq ? (size_t)(eq - name) : strlen(name);
    char word[64];
    snprintf(word, sizeof word, "%.*s", (int)(n < sizeof word ? n : sizeof word - 1), name);
    const struct option *best = NULL;
    int best_d = 3, n_prefix = 0;
    char prefixes[256] = "";
    for (const struct option *o = opts; o->name; o++) {
        if (!strcmp(o->name, word)) {
            if (o->has_arg == required_argument && !eq) return qf_cli_usage(cmd, "option '--%s' needs a value", word);
            if (o->has_arg == no_argument && eq) return qf_cli_usage(cmd, "option '--%s' takes no value", word);
            return qf_cli_usage(cmd, "invalid use of option '--%s'", word);
        }
        if (n && !strncmp(o->name, word, n)) {
            n_prefix++;
            size_t l = strlen(prefixes);
            snprintf(prefixes + l, sizeof prefixes - l, "%s--%s", l ? ", " : "", o->name);
        }
        int d = distance(word, o->name);
        if (d < best_d) { best_d = d; best = o; }
    }
    if (n_prefix > 1) return qf_cli_usage(cmd, "option '--%s' is ambiguous: %s", word, prefixes);
    if (best) return qf_cli_usage(cmd, "unknown option '--%s'; did you mean '--%s'?", word, best->name);
    return qf_cli_usage(cmd, "unknown option '--%s'", word);
}

/* ---- global options ------------------------------------------------------ */

static int global_option(const char *a, int long_only) {
    if (!strcmp(a, "--quiet") || (!long_only && !strcmp(a, "-q"))) { verbosity = QF_CLI_QUIET; return 1; }
    if (!strcmp(a, "--verbose") || (!long_only && !strcmp(a, "-v"))) { verbosity = QF_CLI_VERBOSE; return 1; }
    return 0;
}

static int in_list(const char *list, const char *word, size_t n) {
    for (const char *p = list; (p = strstr(p, word)) != NULL; p++)
        if (p[-1] == ' ' && p[n] == ' ' && !strncmp(p, word, n)) return 1;
    return 0;
}

/* 1 when `tok` is an option of `cmd` whose value is the next argument. */
static int takes_value(const char *cmd, const char *tok) {
    const char *name;
    if (tok[0] != '-' || !tok[1]) return 0;
    if (tok[1] == '-') {
        name = tok + 2;
        if (strchr(name, '=')) return 0;
    } else {
        if (tok[2]) return 0;             /* -kN or bundled flags */
        name = tok + 1;
    }
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof value_options / sizeof value_options[0]; i++)
        if (!strcmp(value_options[i].cmd, cmd)) return n && in_list(value_options[i].opts, name, n);
    return 0;
}

int main(int argc, char **argv) {
    qf_log_set(cli_log, NULL);
    set_rank_tag();
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        if (global_option(a, 0)) continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { help(stdout); return 0; }
        if (!strcmp(a, "--version") || !strcmp(a, "-V")) { printf("qformer %s\n", QF_VERSION); return 0; }
        error_prefix(NULL);
        fprintf(stderr, "unknown option '%s' (options of a command go after its name)\n", a);
        short_usage(stderr);
        return 2;
    }
    if (i >= argc) { short_usage(stderr); return 2; }
    const char *name = argv[i];
    if (!strcmp(name, "help")) {
        if (i + 1 >= argc) { help(stdout); return 0; }
        if (i + 2 < argc) {
            error_prefix(NULL);
            fprintf(stderr, "usage: qformer help [COMMAND]\n");
            return 2;
        }
        int k = find_command(argv[i + 1]);
        if (k < 0) return unknown_command(argv[i + 1]);
        char *sub[] = { argv[i + 1], "--help", NULL };
        return commands[k].fn(2, sub);
    }
    int k = find_command(name);
    if (k < 0) return unknown_command(name);

    /* The command's argv: global options dropped (up to "--"), and for a
     * command with its own --quiet, --quiet handed on to it. */
    char **sub = malloc(((size_t)argc + 2) * sizeof *sub);
    if (!sub) { error_prefix(name); fprintf(stderr, "out of memory\n"); return 1; }
    int n = 0, rest = 0;
    sub[n++] = argv[i];
    for (int j = i + 1; j < argc; j++) {
        const char *a = argv[j];
        if (!rest && !strcmp(a, "--")) rest = 1;
        if (!rest && global_option(a, 1)) continue;
        sub[n++] = argv[j];
        if (!rest && j + 1 < argc && takes_value(name, a)) sub[n++] = argv[++j];
    }
    if (verbosity == QF_CLI_QUIET && in_list(own_quiet, name, strlen(name))) {
        memmove(sub + 2, sub + 1, (size_t)(n - 1) * sizeof *sub);
        sub[1] = "--quiet";
        n++;
    }
    sub[n] = NULL;
    int rc = commands[k].fn(n, sub);
    free(sub);
    return rc;
}
