/* cli.h - the qformer subcommands (one file each in bin/) and the small
 * helpers they share: option parsing, error reporting. The CLI is thin: it
 * parses arguments, calls the library, prints. */
#ifndef QF_CLI_H
#define QF_CLI_H

#include "embed/common.h"

int qf_cmd_embed(int argc, char **argv);
int qf_cmd_tokenize(int argc, char **argv);
int qf_cmd_info(int argc, char **argv);
int qf_cmd_caption(int argc, char **argv);
int qf_cmd_index(int argc, char **argv);
int qf_cmd_search(int argc, char **argv);
int qf_cmd_export(int argc, char **argv);
int qf_cmd_pull(int argc, char **argv);

/* Prints "qformer CMD: <qf_last_error()>" to stderr and returns exit code 1. */
int qf_cli_fail(const char *cmd, qf_status s);
/* Prints "qformer CMD: message" (usage error) and returns exit code 2. */
int qf_cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
