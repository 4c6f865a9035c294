/* cmd_data.c — kiln data: tools for data sets, one subcommand each (cmd_data_*.c). */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static const char *HELP =
    "usage: kiln data <command> [options]\n"
    "\n"
    "commands:\n"
    "  preview CONFIG --out GRID.png [--n 16] [--epoch E] [--set k=v]...\n"
    "                      a grid of augmented training samples, as training sees them\n"
    "\n"
    "Every command takes --help. Exit codes: 0 ok, 1 runtime failure, 2 usage or config error.\n";

int kiln_cmd_data(int argc, char **argv) {
    if (argc < 2) {
        fputs(HELP, stderr);
        return KILN_EXIT_USAGE;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "--help") || !strcmp(sub, "-h") || !strcmp(sub, "help")) {
        fputs(HELP, stdout);
        return KILN_EXIT_OK;
    }
    if (!strcmp(sub, "preview")) return kiln_cmd_data_preview(argc - 1, argv + 1);
    return kiln_cli_usage_error("data", "unknown command '%s' (commands: preview)", sub);
}
