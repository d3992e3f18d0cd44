/* cmd_info.c - `qformer info` (not yet implemented). */
#include "cli.h"

#include <stdio.h>

int qf_cmd_info(int argc, char **argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "qformer info: not implemented yet\n");
    return 1;
}
