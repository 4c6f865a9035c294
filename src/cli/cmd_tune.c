/* cmd_tune.c — kiln tune: hyperparameter search over a config's tune: section (docs/tune.md). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "kiln/tune.h"

static const char *HELP =
    "usage: kiln tune CONFIG [options]\n"
    "       kiln tune --resume STUDY [--runs-dir D]\n"
    "       kiln tune show [STUDY] [--runs-dir D]\n"
    "\n"
    "Searches the hyperparameters that CONFIG's tune: section (or --space FILE) names: each trial\n"
    "is a `kiln train` run with the sampled values set (runs/<experiment>/<study>-tNNN-<time>/),\n"
    "recorded with the study in runs/kiln.db. TPE (or random) sampling, ASHA or median pruning.\n"
    "\n"
    "options:\n"
    "  --set KEY=VALUE    override a config key of every trial (repeatable)\n"
    "  --space FILE       the search space from FILE (its tune: map, or the file itself)\n"
    "  --trials N         how many trials (default: tune.trials, else 20)\n"
    "  --parallel P       trials at once (default: tune.parallel, else 1), each with cores/P threads\n"
    "  --threads N        cores for all trials together (default: all online cores)\n"
    "  --study NAME       the study's name (default: <experiment>-<time>)\n"
    "  --runs-dir DIR     where runs and kiln.db go (default: runs)\n"
    "  --resume STUDY     continue a study after a crash or Ctrl-C: finished trials are kept,\n"
    "                     interrupted ones resume from their checkpoints\n"
    "  --launcher L       local (default) or slurm: each trial as `srun -n1 -c THREADS ...`\n"
    "  --quiet            print nothing but errors\n"
    "  --help             this text\n"
    "\n"
    "Ctrl-C stops the running trials at a checkpoint; resume with --resume STUDY.\n"
    "Exit codes: 0 done, 1 runtime failure or interrupted, 2 usage/config error.\n";

static int show(int argc, char **argv) {
    static const struct option opts[] = {{"runs-dir", required_argument, 0, 'd'},
                                         {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *runs = "runs";
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'd') runs = optarg;
        else if (c == 'h') return fputs(HELP, stdout), KILN_EXIT_OK;
        else return kiln_cli_usage_error("tune show", "unknown or incomplete option '%s'", argv[optind - 1]);
    }
    const char *study = optind < argc ? argv[optind++] : NULL;
    if (optind < argc) return kiln_cli_usage_error("tune show", "unexpected argument '%s'", argv[optind]);
    kiln_status st = kiln_tune_show(runs, study);
    if (st) {
        fprintf(stderr, "kiln tune show: %s\n", kiln_last_error());
        return st == KILN_ERR_NOTFOUND || st == KILN_ERR_INVALID ? KILN_EXIT_USAGE : KILN_EXIT_FAIL;
    }
    return KILN_EXIT_OK;
}

static int count(const char *cmd, const char *flag, const char *v, int lo, int hi, int *out) {
    char *end;
    long n = strtol(v, &end, 10);
    if (*end || !*v || n < lo || n > hi)
        return kiln_cli_usage_error(cmd, "%s %s: expected a whole number from %d to %d", flag, v, lo, hi);
    *out = (int)n;
    return 0;
}

int kiln_cmd_tune(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "show")) return show(argc - 1, argv + 1);
    static const struct option opts[] = {
        {"set", required_argument, 0, 's'},      {"space", required_argument, 0, 'S'},
        {"trials", required_argument, 0, 'n'},   {"parallel", required_argument, 0, 'p'},
        {"threads", required_argument, 0, 't'},  {"study", required_argument, 0, 'N'},
        {"runs-dir", required_argument, 0, 'd'}, {"resume", required_argument, 0, 'r'},
        {"launcher", required_argument, 0, 'l'}, {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},           {0, 0, 0, 0}};
    kiln_tune_opts o = {0};
    const char **sets = calloc((size_t)argc + 1, sizeof *sets);
    if (!sets) return KILN_EXIT_FAIL;
    o.sets = sets;
    optind = 1;
    opterr = 0;
    int c, rc = 0;
    while (!rc && (c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 's': sets[o.n_sets++] = optarg; break;
        case 'S': o.space = optarg; break;
        case 'n': rc = count("tune", "--trials", optarg, 1, 100000, &o.trials); break;
        case 'p': rc = count("tune", "--parallel", optarg, 1, 1024, &o.parallel); break;
        case 't': rc = count("tune", "--threads", optarg, 1, 65536, &o.threads); break;
        case 'N': o.study = optarg; break;
        case 'd': o.runs_dir = optarg; break;
        case 'r': o.resume = 1, o.study = optarg; break;
        case 'q': o.quiet = 1; break;
        case 'l':
            if (!strcmp(optarg, "slurm")) o.slurm = 1;
            else if (strcmp(optarg, "local"))
                rc = kiln_cli_usage_error("tune", "--launcher %s: expected local or slurm", optarg);
            break;
        case 'h': fputs(HELP, stdout); free(sets); return KILN_EXIT_OK;
        default: rc = kiln_cli_usage_error("tune", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (!rc && optind < argc) o.config = argv[optind++];
    if (!rc && optind < argc) rc = kiln_cli_usage_error("tune", "unexpected argument '%s'", argv[optind]);
    if (!rc && !o.config == !o.resume)
        rc = kiln_cli_usage_error("tune", o.resume ? "give either CONFIG or --resume, not both" : "missing CONFIG");
    if (!rc && o.resume && (o.n_sets || o.space))
        rc = kiln_cli_usage_error("tune", "--resume takes the study's own config: no --set or --space");
    if (rc) {
        free(sets);
        return rc;
    }
    static char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) self[n] = 0;
    else snprintf(self, sizeof self, "%s", kiln_cli_argv()[0]);
    o.kiln = self;
    int interrupted = 0;
    kiln_status st = kiln_tune_run(&o, &interrupted);
    free(sets);
    if (st) {
        fprintf(stderr, "kiln tune: %s\n", kiln_last_error());
        return st == KILN_ERR_INVALID || st == KILN_ERR_NOTFOUND || st == KILN_ERR_FORMAT ? KILN_EXIT_USAGE
                                                                                         : KILN_EXIT_FAIL;
    }
    return interrupted ? KILN_EXIT_FAIL : KILN_EXIT_OK;
}
