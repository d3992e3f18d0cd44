/* cmd_caption.c - `qformer caption` (not yet implemented). */
#include "cli.h"

#include <stdio.h>

int qf_cmd_caption(int argc, char **argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "qformer caption: not implemented yet\n");
    return 1;
}
