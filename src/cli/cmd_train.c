/* cmd_train.c — kiln train (flags after DESIGN.md §5). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "kiln/kiln.h"
#include "kiln/dist.h"
#include "kiln/trainer.h"

static const char *HELP =
    "usage: kiln train CONFIG [options]\n"
    "       kiln train --resume RUN|latest [options]\n"
    "\n"
    "Trains the model CONFIG describes and writes a run folder: runs/<experiment>/<name>-<time>/\n"
    "with config.yaml (resolved), run.json, metrics.jsonl, log.txt and checkpoints/.\n"
    "\n"
    "options:\n"
    "  --set KEY=VALUE    override a config key (repeatable): --set train.epochs=3\n"
    "  --name NAME        run name (default: the experiment)\n"
    "  --runs-dir DIR     where runs go (default: runs)\n"
    "  --dry-run          build the model (each stage's) without reading any data, print its\n"
    "                     summary (layers, output shapes, parameters, trainable or frozen), exit\n"
    "  --resume RUN       continue RUN (a run folder, or 'latest') from its newest checkpoint\n"
    "  --threads N        compute threads (default: train.threads, else all cores)\n"
    "  --quiet            no progress output (log.txt still records it)\n"
    "  --profile[=N]      time every op for N steps (default 20, after 5 warm-up steps): writes\n"
    "                     RUN/trace.json (Chrome trace: Perfetto, chrome://tracing) and a per-op\n"
    "                     table (RUN/profile.txt, also printed at the end)\n"
    "  --help             this text\n"
    "\n"
    "Ctrl-C (SIGINT) or SIGTERM saves a checkpoint and stops (status \"stopped\", exit 1);\n"
    "resume with --resume. SIGUSR1 (kiln tune's pruner) stops the same way as \"pruned\".\n"
    "Exit codes: 0 finished, 1 failed, stopped or pruned, 2 usage/config error.\n"
    "\n"
    "Data parallel: `mpirun -np N kiln train CONFIG` or `srun --mpi=pmix -n N kiln train CONFIG`\n"
    "runs N ranks; data.batch_size is the global batch (docs/distributed.md).\n";

int kiln_cmd_train(int argc, char **argv) {
    static const struct option opts[] = {{"set", required_argument, 0, 's'},      {"name", required_argument, 0, 'n'},
                                         {"runs-dir", required_argument, 0, 'd'}, {"resume", required_argument, 0, 'r'},
                                         {"threads", required_argument, 0, 't'},  {"quiet", no_argument, 0, 'q'},
                                         {"profile", optional_argument, 0, 'p'},  {"help", no_argument, 0, 'h'},
                                         {"dry-run", no_argument, 0, 'D'}, {0, 0, 0, 0}};
    kiln_train_opts o = {.argc = kiln_cli_argc(), .argv = kiln_cli_argv()};
    const char **sets = calloc((size_t)argc + 1, sizeof *sets);
    if (!sets) return KILN_EXIT_FAIL;
    optind = 1;
    opterr = 0;
    int c, rc;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 's': sets[o.n_sets++] = optarg; break;
        case 'n': o.name = optarg; break;
        case 'd': o.runs_dir = optarg; break;
        case 'r': o.resume = optarg; break;
        case 'q': o.quiet = 1; break;
        case 'D': o.dry_run = 1; break;
        case 'p': {
            char *end;
            long v = optarg ? strtol(optarg, &end, 10) : 20;
            if ((optarg && *end) || v < 1 || v > 100000) {
                free(sets);
                return kiln_cli_usage_error("train", "--profile=%s: expected a number of steps (1 to 100000)", optarg);
            }
            o.profile_steps = (int)v;
            break;
        }
        case 't': {
            int bad = kiln_cli_threads("train", optarg, &o.threads);
            if (bad) {
                free(sets);
                return bad;
            }
            break;
        }
        case 'h': fputs(HELP, stdout); free(sets); return KILN_EXIT_OK;
        default:
            rc = kiln_cli_usage_error("train", "unknown or incomplete option '%s'", argv[optind - 1]);
            free(sets);
            return rc;
        }
    }
    o.sets = sets;
    if (optind < argc) o.config_path = argv[optind++];
    if (optind < argc) {
        free(sets);
        return kiln_cli_usage_error("train", "unexpected argument '%s'", argv[optind]);
    }
    if (!o.config_path == !o.resume) {
        free(sets);
        return kiln_cli_usage_error("train", o.resume ? "give either CONFIG or --resume, not both" : "missing CONFIG");
    }
    kiln_train_result r;
    kiln_dist_world w; /* launched by mpirun / srun: one rank of a data-parallel job */
    kiln_status st = kiln_dist_init(&w);
    if (st) {
        free(sets);
        fprintf(stderr, "kiln train: %s\n", kiln_last_error());
        return KILN_EXIT_USAGE;
    }
    kiln_train_hooks *hooks = NULL;
    if (w.size > 1) {
        if (!(hooks = kiln_dist_hooks(&w))) {
            free(sets);
            kiln_dist_finalize(&w, KILN_EXIT_FAIL);
            return KILN_EXIT_FAIL;
        }
        o.hooks = hooks;
        if (w.rank > 0) o.quiet = 1; /* rank K logs to RUN/log.rank-K.txt */
        if (!o.threads && !getenv("OMP_NUM_THREADS")) o.threads = w.threads;
        if (kiln_dist_describe(&w, o.quiet ? NULL : stdout)) /* a collective: every rank */
            fprintf(stderr, "kiln train: %s\n", kiln_last_error());
    }
    if (o.dry_run && w.rank > 0) { /* rank 0 prints the world (above) and the model */
        free(sets);
        kiln_dist_hooks_free(hooks);
        kiln_dist_finalize(&w, 0);
        return KILN_EXIT_OK;
    }
    st = kiln_train(&o, &r);
    free(sets);
    rc = st != KILN_OK ? (r.usage_error ? KILN_EXIT_USAGE : KILN_EXIT_FAIL)
                           : strcmp(r.status, "finished") == 0 ? KILN_EXIT_OK : KILN_EXIT_FAIL;
    if (st != KILN_OK && w.size > 1) fprintf(stderr, "kiln train: rank %d: %s\n", w.rank, kiln_last_error());
    else if (st != KILN_OK) fprintf(stderr, "kiln train: %s\n", kiln_last_error());
    if (hooks && w.rank == 0 && !o.quiet) {
        kiln_dist_stats ds = kiln_dist_get_stats(hooks);
        if (ds.steps > 0 && ds.step_s > 0)
            printf("dist: %lld steps on %d ranks, %.1f%% of the step time waiting for gradient reductions "
                   "(%lld buckets)\n", ds.steps, w.size, 100 * ds.wait_s / ds.step_s, ds.buckets);
    }
    int agreed = !hooks || st == KILN_OK || kiln_dist_failed_together(hooks);
    kiln_dist_hooks_free(hooks);
    kiln_dist_finalize(&w, agreed ? 0 : rc); /* a failure of this rank alone ends the job */
    return rc;
}
