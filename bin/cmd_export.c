/* cmd_export.c - `qformer export` (not yet implemented). */
#include "cli.h"

#include <stdio.h>

int qf_cmd_export(int argc, char **argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "qformer export: not implemented yet\n");
    return 1;
}
