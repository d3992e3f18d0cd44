/* cmd_embed.c - `qformer embed` (not yet implemented). */
#include "cli.h"

#include <stdio.h>

int qf_cmd_embed(int argc, char **argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "qformer embed: not implemented yet\n");
    return 1;
}
