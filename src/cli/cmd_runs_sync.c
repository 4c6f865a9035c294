/* cmd_runs_sync.c — kiln runs sync --to mlflow+http://HOST:PORT [RUN...]: mirrors run folders to
 * an MLflow tracking server (kiln/mlflow.h), incrementally: a run already mirrored sends only
 * what it logged since, so the command can be repeated (after a server was down, or from cron).
 * No RUN: every run of the runs folder. Exit 1 when a run could not be sent (the others are
 * still tried), 2 for a bad option or an unknown run.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/registry_cli.h"
#include "kiln/kiln.h"
#include "kiln/mlflow.h"

static const char *HELP =
    "usage: kiln runs sync --to mlflow+http://HOST:PORT [RUN...] [--runs-dir D]\n"
    "\n"
    "Mirrors runs to an MLflow tracking server (MLflow's own, or kiln board's MLflow API): the\n"
    "experiment, the run, its config as params, every metric point (step and time), its status\n"
    "and end time, and the model versions registered from it, with the requests MLflow's own\n"
    "client sends. What was sent is recorded in each run folder (mlflow-sync.json), so running\n"
    "it again sends only what is new. No RUN: every run of the runs folder.\n"
    "\n"
    "options:\n"
    "  --to URI          mlflow+http://HOST:PORT or mlflow+https://HOST:PORT (also\n"
    "                    KILN_REGISTRY=mlflow+... for kiln train, which mirrors live)\n"
    "  --token T         bearer token (default: the environment's MLFLOW_TRACKING_TOKEN)\n"
    "  --runs-dir D      the runs folder (default: runs, or the one RUN lies in)\n"
    "  --help            this text\n";

typedef struct {
    char (*ids)[1024];
    int n, cap;
} id_list;

static int collect(const kiln_registry_run *r, void *ctx) {
    id_list *l = ctx;
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        char(*x)[1024] = realloc(l->ids, (size_t)l->cap * sizeof *x);
        if (!x) return 1;
        l->ids = x;
    }
    snprintf(l->ids[l->n++], 1024, "%s", r->id);
    return 0;
}

int kiln_cmd_runs_sync(int argc, char **argv) {
    int to_given = 0; /* without --to: the registry's own sync (registry_opt.c) */
    for (int i = 1; i < argc; i++)
        to_given |= !strcmp(argv[i], "--to") || !strncmp(argv[i], "--to=", 5);
    if (!to_given) return kiln_cmd_runs_sync_registry(argc, argv);
    static const struct option opts[] = {{"to", required_argument, 0, 't'},
                                         {"token", required_argument, 0, 'k'},
                                         {"runs-dir", required_argument, 0, 'd'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *to = NULL, *token = NULL, *given = NULL;
    int c;
    optind = 1, opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 't':
            to = optarg;
            break;
        case 'k':
            token = optarg;
            break;
        case 'd':
            given = optarg;
            break;
        case 'h':
            fputs(HELP, stdout);
            return KILN_EXIT_OK;
        default:
            return kiln_cli_usage_error("runs sync", "unknown or incomplete option '%s'",
                                        argv[optind - 1]);
        }
    }
    if (!to)
        return kiln_cli_usage_error(
            "runs sync", "missing --to mlflow+http://HOST:PORT (where to send the runs)");
    if (!kiln_mlflow_is_uri(to))
        return kiln_cli_usage_error("runs sync",
                                    "--to %s: expected mlflow+http://HOST:PORT or "
                                    "mlflow+https://HOST:PORT",
                                    to);
    char buf[4200];
    const char *runs_dir =
        kiln_cli_runs_dir(given, optind < argc ? argv[optind] : NULL, buf, sizeof buf);
    kiln_registry *reg = NULL;
    int code = kiln_cli_open_registry("runs sync", runs_dir, &reg);
    if (code) return code;
    id_list l = {0};
    if (optind < argc) {
        for (int i = optind; i < argc && !code; i++) {
            char id[1024];
            kiln_status s = kiln_registry_find_run(reg, argv[i], id, sizeof id);
            if (s) {
                code = kiln_cli_fail("runs sync", s);
                break;
            }
            kiln_registry_run r = {.id = id};
            collect(&r, &l);
        }
    } else {
        kiln_registry_query q = {0};
        kiln_status s = kiln_registry_list_runs(reg, &q, collect, &l);
        if (s) code = kiln_cli_fail("runs sync", s);
    }
    kiln_mlflow_target t = {.uri = to, .token = token};
    int failed = 0;
    for (int i = 0; i < l.n && !code; i++) {
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/%s", runs_dir, l.ids[i]);
        kiln_mlflow_sync_stats st;
        kiln_status s = kiln_mlflow_sync_run(&t, dir, reg, &st);
        if (s) {
            fprintf(stderr, "kiln runs sync: %s: %s\n", l.ids[i], kiln_last_error());
            failed++;
            continue;
        }
        printf("%s -> run %s (experiment %s): %s%lld params, %lld metric points, %lld model "
               "versions\n",
               l.ids[i], st.run_id, st.experiment_id, st.created ? "created, " : "",
               (long long)st.params, (long long)st.metrics, (long long)st.models);
    }
    free(l.ids);
    kiln_registry_close(reg);
    if (code) return code;
    return failed ? KILN_EXIT_FAIL : KILN_EXIT_OK;
}
