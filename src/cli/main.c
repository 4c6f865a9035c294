/* main.c — kiln: dispatch to a subcommand. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "kiln/kiln.h"

static const char *HELP =
    "kiln " KILN_VERSION " — a deep-learning toolkit in one binary\n"
    "\n"
    "usage: kiln <command> [options]\n"
    "\n"
    "commands:\n"
    "  train CONFIG [--set k=v]... [--name N] [--runs-dir D] [--resume RUN|latest] [--threads N]\n"
    "                      train the model a YAML config describes; writes a run folder\n"
    "  eval RUN [--split test|validation|train] [--checkpoint step-N|best]\n"
    "                      evaluate a run's weights; prints metrics and a confusion matrix\n"
    "  export RUN [--to DIR] [--checkpoint step-N|best] [--version N]\n"
    "                      write a servable version of a run (model.json + weights.safetensors)\n"
    "  runs [list|show|compare|rm] ...\n"
    "                      the run registry: list, filter, sort, inspect, compare, remove runs\n"
    "  models [register|list|alias|resolve] ...\n"
    "                      the model registry: named, versioned, aliased servable models\n"
    "  help [COMMAND]      this text, or a command's\n"
    "  version             the version\n"
    "\n"
    "Every command takes --help. Exit codes: 0 ok, 1 runtime failure, 2 usage or config error.\n";

static int cmd_argc;
static const char *const *cmd_argv;

void kiln_cli_set_command_line(int argc, char **argv) { cmd_argc = argc, cmd_argv = (const char *const *)argv; }
int kiln_cli_argc(void) { return cmd_argc; }
const char *const *kiln_cli_argv(void) { return cmd_argv; }

int kiln_cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "kiln %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(see: kiln %s --help)\n", cmd);
    va_end(ap);
    return KILN_EXIT_USAGE;
}

int main(int argc, char **argv) {
    kiln_cli_set_command_line(argc, argv);
    if (argc < 2) {
        fputs(HELP, stderr);
        return KILN_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        if (argc > 2 && strcmp(argv[2], "help")) {
            char *sub[] = {argv[2], "--help", NULL};
            return strcmp(argv[2], "train") == 0 ? kiln_cmd_train(2, sub)
                   : strcmp(argv[2], "eval") == 0 ? kiln_cmd_eval(2, sub)
                   : strcmp(argv[2], "export") == 0 ? kiln_cmd_export(2, sub)
                   : strcmp(argv[2], "runs") == 0   ? kiln_cmd_runs(2, sub)
                   : strcmp(argv[2], "models") == 0 ? kiln_cmd_models(2, sub)
                                                  : (fprintf(stderr, "kiln: no command '%s'\n", argv[2]), KILN_EXIT_USAGE);
        }
        fputs(HELP, stdout);
        return KILN_EXIT_OK;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("kiln %s\n", KILN_VERSION);
        return KILN_EXIT_OK;
    }
    if (!strcmp(cmd, "train")) return kiln_cmd_train(argc - 1, argv + 1);
    if (!strcmp(cmd, "eval")) return kiln_cmd_eval(argc - 1, argv + 1);
    if (!strcmp(cmd, "export")) return kiln_cmd_export(argc - 1, argv + 1);
    if (!strcmp(cmd, "runs")) return kiln_cmd_runs(argc - 1, argv + 1);
    if (!strcmp(cmd, "models")) return kiln_cmd_models(argc - 1, argv + 1);
    fprintf(stderr, "kiln: unknown command '%s'\n\n%s", cmd, HELP);
    return KILN_EXIT_USAGE;
}
