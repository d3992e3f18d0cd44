/* cmd_search.c - `qformer search` (not yet implemented). */
#include "cli.h"

#include <stdio.h>

int qf_cmd_search(int argc, char **argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "qformer search: not implemented yet\n");
    return 1;
}
