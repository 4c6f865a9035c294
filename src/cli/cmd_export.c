/* cmd_export.c — kiln export. Exit 2 for what the user can fix by asking differently (options,
 * a run or checkpoint that does not exist, a bad config, a version that is taken), 1 for
 * failures on the way (unreadable or corrupt files, a full disk). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "kiln/export.h"
#include "kiln/kiln.h"

static const char *HELP =
    "usage: kiln export RUN [options]\n"
    "\n"
    "Writes a servable version of a run's weights (EMA weights when the run kept them):\n"
    "DIR/<version>/model.json and DIR/<version>/weights.safetensors, the folder kiln serve (and\n"
    "TF Serving-style tools) load; with --format onnx also DIR/<version>/model.onnx (ONNX opset\n"
    "17, for ONNX Runtime, TensorRT, OpenVINO; apply model.json's preprocessing to its input).\n"
    "The folder appears only when complete; an existing version is never replaced. Prints the\n"
    "folder written.\n"
    "\n"
    "options:\n"
    "  --to DIR                        where versions go (default: RUN/export)\n"
    "  --checkpoint step-N|best        which checkpoint (default: the newest)\n"
    "  --version N                     the version number (default: the next after the highest)\n"
    "  --format kiln|onnx              onnx: model.onnx too, beside the kiln files\n"
    "                                  (default: kiln)\n"
    "  --help                          this text\n";

int kiln_cli_export_format(const char *value, int *onnx) {
    if (strcmp(value, "kiln") && strcmp(value, "onnx")) return -1;
    *onnx = !strcmp(value, "onnx");
    return 0;
}

int kiln_cmd_export(int argc, char **argv) {
    static const struct option opts[] = {{"to", required_argument, 0, 't'},
                                         {"checkpoint", required_argument, 0, 'c'},
                                         {"version", required_argument, 0, 'v'},
                                         {"format", required_argument, 0, 'f'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *to = NULL, *ckpt = NULL;
    int64_t version = 0;
    kiln_export_run_opts eo = {0};
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 't':
            to = optarg;
            break;
        case 'c':
            ckpt = optarg;
            break;
        case 'v':
            if (!kiln_export_parse_version(optarg, &version))
                return kiln_cli_usage_error(
                    "export", "--version %s: expected a positive integer without leading zeros",
                    optarg);
            break;
        case 'f':
            if (kiln_cli_export_format(optarg, &eo.onnx))
                return kiln_cli_usage_error("export", "--format %s: expected kiln or onnx", optarg);
            break;
        case 'h':
            fputs(HELP, stdout);
            return KILN_EXIT_OK;
        default:
            return kiln_cli_usage_error("export", "unknown or incomplete option '%s'",
                                        argv[optind - 1]);
        }
    }
    if (optind >= argc) return kiln_cli_usage_error("export", "missing RUN (a run folder)");
    const char *run = argv[optind++];
    if (optind < argc)
        return kiln_cli_usage_error("export", "unexpected argument '%s'", argv[optind]);
    if (to && !to[0]) return kiln_cli_usage_error("export", "--to: empty folder name");
    int64_t written = 0;
    kiln_status st = kiln_export_run_ex(run, ckpt, to, version, &eo, &written);
    if (st != KILN_OK) {
        char probe[4200];
        int ro = !to && snprintf(probe, sizeof probe, "%s", run) < (int)sizeof probe &&
                 access(probe, W_OK) != 0 && (errno == EROFS || errno == EACCES);
        fprintf(stderr, "kiln export: %s%s\n", kiln_last_error(),
                ro ? " (the run folder is read-only: export elsewhere with --to DIR)" : "");
        return st == KILN_ERR_INVALID || st == KILN_ERR_NOTFOUND ? KILN_EXIT_USAGE : KILN_EXIT_FAIL;
    }
    const char *base = to ? to : run;
    int len = (int)strlen(base);
    while (len > 1 && base[len - 1] == '/') len--;
    printf("%.*s%s/%lld\n", len, base, to ? "" : "/export", (long long)written);
    return KILN_EXIT_OK;
}
