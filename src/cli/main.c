/* main.c — kiln: dispatch to a subcommand. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "kiln/inputs.h"
#include "kiln/kiln.h"
#include "kiln/registry.h"

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
    "  optimize EXPORT|RUN [--fold] [--quantize int8|bf16] [--calibrate N] --to BASE\n"
    "                      a new servable version: batch norm folded, int8 or bf16 inference\n"
    "  bench VERSION_DIR | --server URL --model NAME [--batch 1,8,64] [--concurrency 1,4,16]\n"
    "                      latency percentiles and throughput, in process or over REST v1/v2\n"
    "  import MODEL.onnx --to DIR\n"
    "                      convert an ONNX model into a kiln config, weights and a servable\n"
    "  serve --model_base_path DIR [--model_name NAME] [--rest_api_port 8501] ...\n"
    "                      serve exported versions over TF Serving's REST API and KServe v2\n"
    "  predict (--server URL --model NAME | --model_dir DIR) [FILE...] [--stream] [--json]\n"
    "                      ask a served or exported model about JSON, CSV, NPY or image inputs\n"
    "  runs [list|show|compare|rm] ...\n"
    "                      the run registry: list, filter, sort, inspect, compare, remove runs\n"
    "  models [register|list|alias|resolve] ...\n"
    "                      the model registry: named, versioned, aliased servable models\n"
    "  board [--runs-dir D] [--port 6006] [--host ADDR]\n"
    "                      web dashboard: runs table, live metric curves, run comparison\n"
    "  data [convert|inspect|preview] ...\n"
    "                      data set tools: write TFRecord shards, inspect and check them,\n"
    "                      preview augmented training samples\n"
    "  tune CONFIG [--trials N] [--parallel P] | --resume STUDY | show [STUDY]\n"
    "                      hyperparameter search (TPE, ASHA) over the config's tune: section\n"
    "  fl server|client|simulate CONFIG ...\n"
    "                      federated learning: FedAvg, FedProx, FedAdam, FedYogi over HTTP(S)\n"
    "  help [COMMAND]      this text, or a command's\n"
    "  version             the version\n"
    "\n"
    "Every command takes --help, and --registry URI (sqlite:, postgresql://...: where the run\n"
    "registry lives; docs/tracking.md).\n"
    "Exit codes: 0 ok, 1 runtime failure, 2 usage or config error.\n";

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
} command;

static const command COMMANDS[] = {
    {"train", kiln_cmd_train},
    {"eval", kiln_cmd_eval},
    {"export", kiln_cmd_export},
    {"import", kiln_cmd_import},
    {"optimize", kiln_cmd_optimize},
    {"bench", kiln_cmd_bench},
    {"serve", kiln_cmd_serve},
    {"predict", kiln_cmd_predict},
    {"explain", kiln_cmd_explain},
    {"runs", kiln_cmd_runs},
    {"models", kiln_cmd_models},
    {"board", kiln_cmd_board},
    {"data", kiln_cmd_data},
    {"tune", kiln_cmd_tune},
    {"fl", kiln_cmd_fl},
};

static const command *find_command(const char *name) {
    for (size_t i = 0; i < sizeof COMMANDS / sizeof *COMMANDS; i++)
        if (!strcmp(COMMANDS[i].name, name)) return &COMMANDS[i];
    return NULL;
}

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

int kiln_cli_threads(const char *cmd, const char *value, int *out) {
    char *end;
    long v = strtol(value, &end, 10);
    if (*end || end == value || v < 1 || v > 4096)
        return kiln_cli_usage_error(cmd, "--threads %s: expected a count from 1 to 4096", value);
    *out = (int)v;
    return KILN_EXIT_OK;
}

int main(int argc, char **argv) {
    /* the optional backends kiln-serve leaves out (src/cli/serve_only/main.c) */
    kiln_inputs_use_kafka();
    kiln_registry_use_postgres();
    int bad_registry = kiln_cli_registry_option(&argc, argv);
    if (bad_registry) return bad_registry;
    kiln_cli_set_command_line(argc, argv);
    if (argc < 2) {
        fputs(HELP, stderr);
        return KILN_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        if (argc > 2 && strcmp(argv[2], "help")) {
            char *sub[] = {argv[2], "--help", NULL};
            const command *c = find_command(argv[2]);
            if (c) return c->run(2, sub);
            fprintf(stderr, "kiln: no command '%s'\n", argv[2]);
            return KILN_EXIT_USAGE;
        }
        fputs(HELP, stdout);
        return KILN_EXIT_OK;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("kiln %s\n", KILN_VERSION);
        return KILN_EXIT_OK;
    }
    const command *c = find_command(cmd);
    if (c) return c->run(argc - 1, argv + 1);
    fprintf(stderr, "kiln: unknown command '%s'\n\n%s", cmd, HELP);
    return KILN_EXIT_USAGE;
}
