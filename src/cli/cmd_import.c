/* cmd_import.c — kiln import: an ONNX model into a kiln config, its weights and a servable
 * version (kiln/onnx.h does the work). Exit 2 for what the user can fix (options, a file that
 * is not a model kiln can express: a malformed protobuf, an unsupported op or attribute, a
 * missing or non-float initializer, a dynamic shape), 1 for failures on the way (unreadable
 * files, a full disk). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "kiln/kiln.h"
#include "kiln/onnx.h"

static const char *HELP =
    "usage: kiln import MODEL.onnx --to DIR [--flat]\n"
    "\n"
    "Converts an ONNX model (opsets 11 to 18; torch.onnx.export, tf2onnx) into kiln's terms:\n"
    "  DIR/model.yaml           the model config: model.input, model.layers named after the ONNX\n"
    "                           nodes (sub-graphs that repeat, such as residual blocks, as\n"
    "                           model.blocks), the loss, model.init_from: weights.safetensors,\n"
    "                           and a commented data: section to fill in before `kiln train`\n"
    "  DIR/weights.safetensors  the weights under kiln's parameter names (batch-norm statistics\n"
    "                           included)\n"
    "  DIR/servable/1/          a servable version: `kiln serve --model_base_path DIR/servable`,\n"
    "                           `kiln predict --model_dir DIR/servable/1`\n"
    "An op, attribute or value kiln cannot express is an error naming the node, the op and the\n"
    "attribute (docs/models.md, \"Importing ONNX\", lists what is supported). Prints DIR.\n"
    "\n"
    "options:\n"
    "  --to DIR   where the files go (created; DIR/servable/1 must not exist yet)\n"
    "  --flat     every layer written out, no model.blocks (the parameter names are the same)\n"
    "  --help     this text\n";

int kiln_cmd_import(int argc, char **argv) {
    static const struct option opts[] = {{"to", required_argument, 0, 't'},
                                         {"flat", no_argument, 0, 'f'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *to = NULL;
    int flat = 0;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 't':
            to = optarg;
            break;
        case 'f':
            flat = 1;
            break;
        case 'h':
            fputs(HELP, stdout);
            return KILN_EXIT_OK;
        default:
            return kiln_cli_usage_error("import", "unknown or incomplete option '%s'",
                                        argv[optind - 1]);
        }
    }
    if (optind >= argc) return kiln_cli_usage_error("import", "missing MODEL.onnx");
    const char *path = argv[optind++];
    if (optind < argc)
        return kiln_cli_usage_error("import", "unexpected argument '%s'", argv[optind]);
    if (!to || !to[0]) return kiln_cli_usage_error("import", "missing --to DIR");
    kiln_onnx_model *m = NULL;
    kiln_status st = kiln_onnx_load(path, &m);
    if (st != KILN_OK) {
        fprintf(stderr, "kiln import: %s\n", kiln_last_error());
        return st == KILN_ERR_IO || st == KILN_ERR_NOMEM ? KILN_EXIT_FAIL : KILN_EXIT_USAGE;
    }
    if (flat) st = kiln_onnx_set_flat(m, 1);
    if (st == KILN_OK) st = kiln_onnx_write(m, to);
    if (st != KILN_OK) {
        fprintf(stderr, "kiln import: %s\n", kiln_last_error());
        kiln_onnx_free(m);
        return st == KILN_ERR_INVALID || st == KILN_ERR_SHAPE || st == KILN_ERR_FORMAT
                   ? KILN_EXIT_USAGE
                   : KILN_EXIT_FAIL;
    }
    int nb = kiln_onnx_block_count(m);
    char blocks[64] = "";
    if (nb) snprintf(blocks, sizeof blocks, " (in %d block%s)", nb, nb == 1 ? "" : "s");
    fprintf(stderr, "kiln import: %d ONNX nodes -> %d layers%s, %s/model.yaml, "
                    "%s/weights.safetensors, %s/servable/1\n",
            kiln_onnx_node_count(m), kiln_onnx_layer_count(m), blocks, to, to, to);
    printf("%s\n", to);
    kiln_onnx_free(m);
    return KILN_EXIT_OK;
}
