/* cli.h - the qformer subcommands (one file each in bin/) and the small
 * helpers they share: option parsing, error reporting. The CLI is thin: it
 * parses arguments, calls the library, prints. */
#ifndef QF_CLI_H
#define QF_CLI_H

#include "embed/common.h"

/* The version `qformer --version` prints; the man page takes it from there. */
#define QF_VERSION "0.1.0"

int qf_cmd_embed(int argc, char **argv);
int qf_cmd_tokenize(int argc, char **argv);
int qf_cmd_info(int argc, char **argv);
int qf_cmd_caption(int argc, char **argv);
int qf_cmd_index(int argc, char **argv);
int qf_cmd_search(int argc, char **argv);
int qf_cmd_export(int argc, char **argv);
int qf_cmd_pull(int argc, char **argv);
int qf_cmd_bench(int argc, char **argv);
int qf_cmd_serve(int argc, char **argv);

/* Prints "qformer CMD: <qf_last_error()>" to stderr and returns exit code 1. */
int qf_cli_fail(const char *cmd, qf_status s);
/* After getopt_long returned '?' (with opterr = 0): one usage line naming
 * the problem: an unknown option with the nearest known one ("unknown option
 * '--modle'; did you mean '--model'?"), a missing value, an ambiguous
 * prefix, or a TEXT that starts with '-' (the hint to put it after --).
 * Returns exit code 2. */
struct option;
int qf_cli_bad_option(const char *cmd, int argc, char **argv, const char *shortopts,
                      const struct option *opts);
/* Prints "qformer CMD: message" (usage error) and returns exit code 2. */
int qf_cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Option values: 1 when all of `s` is a decimal integer in [lo, hi] (a
 * float for qf_cli_float) and *out is set, 0 otherwise (*out untouched). */
int qf_cli_int(const char *s, int lo, int hi, int *out);
int qf_cli_float(const char *s, float *out);

/* Global --quiet / --verbose, parsed by main before the command runs:
 * QUIET: no progress or info lines on stderr (warnings and errors still print);
 * VERBOSE: the library's QF_LOG_INFO and QF_LOG_DEBUG lines too. */
enum { QF_CLI_QUIET = -1, QF_CLI_NORMAL = 0, QF_CLI_VERBOSE = 1 };
int qf_cli_verbosity(void);
/* 1 when stderr may carry ANSI colour: a terminal, TERM not "dumb", and
 * NO_COLOR unset or empty (https://no-color.org). */
int qf_cli_color(void);

#endif
