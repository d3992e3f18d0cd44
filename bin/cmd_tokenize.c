/* cmd_tokenize.c - `qformer tokenize` (not yet implemented). */
#include "cli.h"

#include <stdio.h>

int qf_cmd_tokenize(int argc, char **argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "qformer tokenize: not implemented yet\n");
    return 1;
}
