/* cmd_index.c - `qformer index` (not yet implemented). */
#include "cli.h"

#include <stdio.h>

int qf_cmd_index(int argc, char **argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "qformer index: not implemented yet\n");
    return 1;
}
