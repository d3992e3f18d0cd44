/* main.c - `qformer` entry point: dispatches to the subcommand. */
#include "cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>


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
    { "export",   qf_cmd_export,   "write an index's features as .npy + .jsonl" },
    { "pull",     qf_cmd_pull,     "download a checkpoint from the Hugging Face hub into the cache" },
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

int qf_cli_fail(const char *cmd, qf_status s) {
    const char *msg = qf_last_error();
    fprintf(stderr, "qformer %s: %s\n", cmd, msg[0] ? msg : qf_status_str(s));
    return 1;
}

int qf_cli_usage(const char *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "qformer %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see qformer %s --help)\n", cmd);
    return 2;
}

static void usage(FILE *f) {
    fprintf(f, "usage: qformer COMMAND [OPTIONS]\n\ncommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n`qformer COMMAND --help` describes each command.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) { usage(stderr); return 2; }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "qformer: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
