/* cmd_optimize.c — kiln optimize: deployment transformations of an export or a run, written as
 * a new servable version (kiln/optimize.h, docs/optimize.md). Exit 2 for what the user can fix
 * by asking differently (flags, a source that is not a model, no calibration data), 1 for
 * failures on the way (unreadable files, oneDNN). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "kiln/kiln.h"

static const char *HELP =
    "usage: kiln optimize EXPORT_VERSION|RUN [options] --to BASE\n"
    "\n"
    "Writes a new servable version under BASE (atomically, like kiln export) with the\n"
    "transformations asked for; model.json records each one and its parameters. kiln serve,\n"
    "predict and eval run the result. See docs/optimize.md.\n"
    "\n"
    "options:\n"
    "  --fold                          fold batch norms into the conv/dense before them, drop\n"
    "                                  dropouts, fuse activations into their producer\n"
    "  --prune S                       one-shot magnitude pruning: the smallest S (0..1) of every\n"
    "                                  conv/dense kernel set to zero, stored sparse\n"
    "  --quantize int8|bf16            int8: oneDNN int8 conv and dense (per-channel weights,\n"
    "                                  calibrated activations); bf16: where the CPU has\n"
    "                                  AVX512-BF16 or AMX (fp32 elsewhere)\n"
    "  --calibrate N                   int8: batches of calibration data (default 8)\n"
    "  --calibration minmax|percentile int8: how activation ranges are chosen (default minmax)\n"
    "  --percentile P                  with percentile: P of |x| (default 99.99)\n"
    "  --data CONFIG                   int8: an experiment config whose data: gives the\n"
    "                                  calibration data (default: the run's config.yaml;\n"
    "                                  its validation split, else its test split)\n"
    "  --checkpoint step-N|best        a run's checkpoint (default: the newest)\n"
    "  --to BASE                       where the new version goes (required)\n"
    "  --help                          this text\n";

int kiln_cmd_optimize(int argc, char **argv) {
    static const struct option opts[] = {{"fold", no_argument, 0, 'f'},
                                         {"quantize", required_argument, 0, 'q'},
                                         {"prune", required_argument, 0, 'P'},
                                         {"calibrate", required_argument, 0, 'n'},
                                         {"calibration", required_argument, 0, 'c'},
                                         {"percentile", required_argument, 0, 'p'},
                                         {"data", required_argument, 0, 'd'},
                                         {"checkpoint", required_argument, 0, 'k'},
                                         {"to", required_argument, 0, 't'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    kiln_optimize_opts o = {0};
    optind = 1;
    opterr = 0;
    int c;
    char *end;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'f': o.fold = 1; break;
        case 'P':
            o.prune = strtod(optarg, &end);
            if (*end || end == optarg || !(o.prune > 0 && o.prune < 1))
                return kiln_cli_usage_error("optimize", "--prune %s: expected a sparsity between 0 and 1", optarg);
            break;
        case 'q':
            if (strcmp(optarg, "int8") && strcmp(optarg, "bf16"))
                return kiln_cli_usage_error("optimize", "--quantize %s: expected int8 or bf16", optarg);
            o.quantize = optarg;
            break;
        case 'n': {
            long v = strtol(optarg, &end, 10);
            if (*end || end == optarg || v < 1 || v > 1000000)
                return kiln_cli_usage_error("optimize", "--calibrate %s: expected a number of batches, 1 or more",
                                            optarg);
            o.calibrate = (int)v;
            break;
        }
        case 'c':
            if (strcmp(optarg, "minmax") && strcmp(optarg, "percentile"))
                return kiln_cli_usage_error("optimize", "--calibration %s: expected minmax or percentile", optarg);
            o.calibration = optarg;
            break;
        case 'p':
            o.percentile = strtod(optarg, &end);
            if (*end || end == optarg || !(o.percentile > 50 && o.percentile <= 100))
                return kiln_cli_usage_error("optimize", "--percentile %s: expected a number in (50, 100]", optarg);
            break;
        case 'd': o.data = optarg; break;
        case 'k': o.checkpoint = optarg; break;
        case 't': o.to = optarg; break;
        case 'h': fputs(HELP, stdout); return KILN_EXIT_OK;
        default:
            return kiln_cli_usage_error("optimize", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc) return kiln_cli_usage_error("optimize", "missing EXPORT_VERSION or RUN");
    o.source = argv[optind++];
    if (optind < argc) return kiln_cli_usage_error("optimize", "unexpected argument '%s'", argv[optind]);
    if (!o.to || !o.to[0]) return kiln_cli_usage_error("optimize", "--to BASE is required");
    if (!o.fold && !o.quantize && !o.prune)
        return kiln_cli_usage_error("optimize", "nothing to do: give --fold, --prune and/or --quantize");
    if (o.quantize && !strcmp(o.quantize, "bf16") && !kiln_cpu_has_bf16())
        fprintf(stderr, "kiln optimize: warning: this CPU has neither AVX512-BF16 nor AMX-BF16; the bf16 version "
                        "runs in fp32 here and in bf16 where a CPU has them\n");
    kiln_optimize_report r;
    kiln_status st = kiln_optimize(&o, &r);
    if (st) {
        fprintf(stderr, "kiln optimize: %s\n", kiln_last_error());
        return st == KILN_ERR_INVALID || st == KILN_ERR_NOTFOUND || st == KILN_ERR_FORMAT ? KILN_EXIT_USAGE
                                                                                            : KILN_EXIT_FAIL;
    }
    if (o.fold)
        printf("fold: %d batch norm(s) folded, %d dropout(s) removed, %d activation(s) fused\n", r.bn_folded,
               r.dropout_removed, r.act_fused);
    if (o.prune)
        printf("prune: %zu of %zu kernel values set to zero (%.4f)\n", r.pruned, r.prunable,
               r.prunable ? (double)r.pruned / (double)r.prunable : 0.0);
    if (o.quantize && !strcmp(o.quantize, "int8")) {
        printf("int8: calibrated on %d rows of the %s split (%s)\n", r.calibration_rows, r.calibration_split,
               o.calibration ? o.calibration : "minmax");
        printf("int8: %d layer(s): %s\n", r.n_lowp, r.lowp_layers);
        printf("int8: weights %d-bit per output channel (%s)\n", r.weight_bits,
               r.weight_bits == 8 ? "VNNI/AMX int8 dot products"
                                  : "no VNNI: 7 bits keep oneDNN's 16-bit pair sums from saturating");
    } else if (o.quantize) {
        printf("bf16: %d layer(s): %s\n", r.n_lowp, r.lowp_layers);
    }
    if (o.quantize) printf("fp32 ops: %s\n", r.fp32_ops[0] ? r.fp32_ops : "none");
    printf("oneDNN ISA: %s; runs here as: %s\n", r.isa, r.precision);
    printf("%s\n", r.dir);
    return KILN_EXIT_OK;
}
