/* cmd_eval.c — kiln eval. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "kiln/kiln.h"
#include "kiln/trainer.h"

static const char *HELP =
    "usage: kiln eval RUN|EXPORT_VERSION [options]\n"
    "\n"
    "Evaluates a run's weights (EMA weights when the run kept them) on a split of its data:\n"
    "prints the loss and the run's metrics, a confusion matrix for classifiers, and writes\n"
    "RUN/eval-<split>.json (a warning instead where the run folder is read-only).\n"
    "\n"
    "options:\n"
    "  --split test|validation|train   which data (default: test)\n"
    "  --checkpoint step-N|best        which checkpoint (default: the newest)\n"
    "  --quiet                         metrics only, no confusion matrix\n"
    "  --data CONFIG                   an export version: the experiment config whose data to\n"
    "                                  use (default: its source run's config.yaml)\n"
    "  --help                          this text\n";

int kiln_cmd_eval(int argc, char **argv) {
    static const struct option opts[] = {{"split", required_argument, 0, 's'}, {"checkpoint", required_argument, 0, 'c'},
                                         {"quiet", no_argument, 0, 'q'},       {"help", no_argument, 0, 'h'},
                                         {"data", required_argument, 0, 'd'},
                                         {0, 0, 0, 0}};
    kiln_eval_opts o = {0};
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 's': o.split = optarg; break;
        case 'c': o.checkpoint = optarg; break;
        case 'q': o.quiet = 1; break;
        case 'd': o.data = optarg; break;
        case 'h': fputs(HELP, stdout); return KILN_EXIT_OK;
        default: return kiln_cli_usage_error("eval", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc) return kiln_cli_usage_error("eval", "missing RUN (a run folder)");
    o.run = argv[optind++];
    if (optind < argc) return kiln_cli_usage_error("eval", "unexpected argument '%s'", argv[optind]);
    int usage = 0;
    kiln_status st = kiln_eval(&o, &usage);
    if (st != KILN_OK) {
        fprintf(stderr, "kiln eval: %s\n", kiln_last_error());
        return usage ? KILN_EXIT_USAGE : KILN_EXIT_FAIL;
    }
    return KILN_EXIT_OK;
}
