/* cmd_runs.c — kiln runs: list (filter, sort, columns, JSON), rm, and the dispatch to show and
 * compare (cmd_runs_show.c). Every subcommand first brings the registry up to date with the run
 * folders (kiln_registry_sync), so runs made before the registry existed, or while it could not
 * be written, are listed too.
 *
 * Exit codes: 2 for what the user can fix by asking differently (options, a filter that does
 * not parse, an unknown or ambiguous run, a runs folder that does not exist), 1 for failures on
 * the way (a damaged registry, a run that cannot be removed).
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/registry_cli.h"
#include "cli/table.h"
#include "kiln/kiln.h"

#define MAX_COLUMNS 24

static const char *HELP =
    "usage: kiln runs [list|show|compare|rm] ...\n"
    "\n"
    "The runs of a runs folder, from its registry (runs/kiln.db), which is brought up to date\n"
    "with the run folders first.\n"
    "\n"
    "  kiln runs list [--experiment E] [--filter EXPR] [--sort KEY] [--metrics A,B] [--json]\n"
    "      one line per run, newest first (the default subcommand)\n"
    "  kiln runs show RUN [--json]          attributes, params, metrics and models of a run\n"
    "  kiln runs compare RUN RUN... [--all] [--json]\n"
    "                                       params that differ, final and best metrics\n"
    "  kiln runs rm RUN... [--yes]          remove run folders and their registry rows\n"
    "  kiln runs sync                       bring the registry up to date with the folders\n"
    "  kiln runs sync --to mlflow+http://HOST:PORT [RUN...]\n"
    "                                       mirror runs to an MLflow tracking server\n"
    "\n"
    "RUN is a run folder, a run id (experiment/run-folder), a run folder's or run's name, or a\n"
    "prefix of one of them that only one run has.\n"
    "\n"
    "options (all subcommands):\n"
    "  --runs-dir D      the runs folder (default: runs, or the one RUN lies in)\n"
    "  --registry URI    sqlite: (default: runs/kiln.db), sqlite:PATH, postgresql://... (or set\n"
    "                    KILN_REGISTRY, or registry: in ~/.config/kiln/config.yaml)\n"
    "  --help            this text\n"
    "list options:\n"
    "  --experiment E    only runs of experiment E\n"
    "  --filter EXPR     e.g. 'metrics.val_accuracy > 0.9 and params.optimizer.adam.learning_rate\n"
    "                    < 0.01': metrics.NAME (latest value), params.KEY (config key path),\n"
    "                    attributes (id, name, experiment, status, start_time, end_time, host,\n"
    "                    steps, epochs_completed, duration, ...); = != < <= > >=, and/or/not,\n"
    "                    parentheses, numbers, 'strings'\n"
    "  --sort KEY        a metric (best first), params.KEY, or an attribute; add ' asc' or ' "
    "desc'\n"
    "  --metrics A,B     metric columns (default: val_accuracy, val_loss, loss where present,\n"
    "                    and the metrics of --sort and --filter)\n"
    "  --limit N         at most N runs\n"
    "  --json            a JSON array (with every latest metric) instead of a table\n"
    "rm options:\n"
    "  --yes             do not ask (required when stdin is not a terminal)\n";

/* ---- list ---- */

typedef struct {
    const char *metrics[MAX_COLUMNS];
    int n_metrics;
    int droppable[MAX_COLUMNS]; /* a default column: left out when no run has a value */
    int seen[MAX_COLUMNS];      /* some run has a value */
    const char *params[MAX_COLUMNS];
    int n_params;
    kiln_table table;
    kiln_registry *reg;
    int json;
    int rows;
    kiln_status s;
} lister;

/* A metric or param column (once; a column asked for is no longer droppable). */
static void add_column(lister *l, const char *name, int is_param, int droppable) {
    const char **list = is_param ? l->params : l->metrics;
    int *n = is_param ? &l->n_params : &l->n_metrics;
    for (int i = 0; i < *n; i++)
        if (!strcmp(list[i], name)) {
            if (!is_param && !droppable) l->droppable[i] = 0;
            return;
        }
    if (*n == MAX_COLUMNS) return;
    if (!is_param) l->droppable[*n] = droppable;
    list[(*n)++] = name;
}

static const char *folder_of(const char *id) {
    const char *slash = strchr(id, '/');
    return slash ? slash + 1 : id;
}

/* One run as a JSON object on one line (the list streams, so 10,000 runs need no tree). */
static void run_json(FILE *f, const kiln_registry_run *r, const lister *l) {
    const char *strs[KILN_CLI_RUN_STRINGS][2];
    int n_strs = kiln_cli_run_strings(r, strs);
    fputs("{\"id\": ", f);
    kiln_cli_json_string(f, r->id);
    for (int i = 0; i < n_strs; i++) {
        fprintf(f, ", \"%s\": ", strs[i][0]);
        kiln_cli_json_string(f, strs[i][1]);
    }
    fputs(", \"duration\": ", f);
    kiln_cli_json_number(f, r->duration);
    fprintf(f, ", \"pid\": %ld, \"epochs_completed\": %lld, \"steps\": %lld, \"metrics\": {",
            r->pid, (long long)r->epochs_completed, (long long)r->steps);
    for (int i = 0; i < r->n_latest; i++) {
        if (i) fputs(", ", f);
        kiln_cli_json_string(f, r->latest_names[i]);
        fputs(": ", f);
        kiln_cli_json_number(f, r->latest_values[i]);
    }
    fputs("}, \"params\": {", f);
    for (int i = 0, n = 0; i < l->n_params; i++) {
        if (!r->params[i]) continue;
        if (n++) fputs(", ", f);
        kiln_cli_json_string(f, l->params[i]);
        fputs(": ", f);
        kiln_cli_json_string(f, r->params[i]);
    }
    fputs("}}", f);
}

static int list_row(const kiln_registry_run *r, void *ctx) {
    lister *l = ctx;
    l->rows++;
    if (l->json) {
        fputs(l->rows == 1 ? "[\n  " : ",\n  ", stdout);
        run_json(stdout, r, l);
        return 0;
    }
    char started[32], took[32], values[MAX_COLUMNS][32];
    const char *cells[5 + 2 * MAX_COLUMNS];
    kiln_cli_time(r->start_time, 0, started, sizeof started);
    kiln_cli_duration(r->duration, took, sizeof took);
    int c = 0;
    cells[c++] = folder_of(r->id), cells[c++] = r->experiment, cells[c++] = r->status;
    cells[c++] = started, cells[c++] = took;
    for (int i = 0; i < l->n_metrics; i++) {
        kiln_cli_value(r->values[i], values[i], sizeof values[i]);
        l->seen[i] |= !isnan(r->values[i]);
        cells[c++] = values[i];
    }
    for (int i = 0; i < l->n_params; i++) cells[c++] = r->params[i] ? r->params[i] : "-";
    kiln_table_add(&l->table, cells);
    return 0;
}

/* Prints the table without the default metric columns no listed run has. */
static void print_list(lister *l) {
    for (int m = 0; m < l->n_metrics; m++) l->table.hidden[5 + m] = l->droppable[m] && !l->seen[m];
    if (kiln_table_print(&l->table, stdout, 0))
        fprintf(stderr, "kiln runs list: out of memory: some runs are not shown\n");
}

static int cmd_list(int argc, char **argv) {
    static const struct option opts[] = {{"runs-dir", required_argument, 0, 'd'},
                                         {"experiment", required_argument, 0, 'e'},
                                         {"sort", required_argument, 0, 's'},
                                         {"filter", required_argument, 0, 'f'},
                                         {"metrics", required_argument, 0, 'm'},
                                         {"limit", required_argument, 0, 'n'},
                                         {"json", no_argument, 0, 'j'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *runs_dir = "runs", *filter_text = NULL, *metrics = NULL;
    kiln_registry_query q = {0};
    int json = 0, c;
    optind = 1, opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'd':
            runs_dir = optarg;
            break;
        case 'e':
            q.experiment = optarg;
            break;
        case 's':
            q.sort = optarg;
            break;
        case 'f':
            filter_text = optarg;
            break;
        case 'm':
            metrics = optarg;
            break;
        case 'n':
            q.limit = strtoll(optarg, &end, 10);
            if (*end || q.limit <= 0)
                return kiln_cli_usage_error("runs list", "--limit %s: expected a positive integer",
                                            optarg);
            break;
        case 'j':
            json = 1;
            break;
        case 'h':
            fputs(HELP, stdout);
            return KILN_EXIT_OK;
        default:
            return kiln_cli_usage_error("runs list", "unknown or incomplete option '%s'",
                                        argv[optind - 1]);
        }
    }
    if (optind < argc)
        return kiln_cli_usage_error("runs list", "unexpected argument '%s'", argv[optind]);

    kiln_registry_filter *filter = NULL;
    if (filter_text) {
        int col = 0;
        if (kiln_registry_filter_parse(filter_text, &filter, &col)) {
            fprintf(stderr, "kiln runs list: --filter: %s\n  %s\n  %*s^\n", kiln_last_error(),
                    filter_text, col > 0 ? col - 1 : 0, "");
            return KILN_EXIT_USAGE;
        }
    }
    lister l;
    memset(&l, 0, sizeof l);
    int kind = 0, code = KILN_EXIT_OK;
    char sort_name[256] = "", *metric_list = metrics ? strdup(metrics) : NULL;
    if (metrics && !metric_list) {
        code = KILN_EXIT_FAIL;
        goto out;
    }
    if (q.sort && kiln_registry_sort_key(q.sort, &kind, sort_name, sizeof sort_name)) {
        code = kiln_cli_usage_error("runs list", "--sort: %s", kiln_last_error());
        goto out;
    }
    /* columns: the defaults (dropped when empty), then what --sort and --filter name */
    if (metrics) {
        for (char *save = NULL, *m = strtok_r(metric_list, ",", &save); m;
             m = strtok_r(NULL, ",", &save))
            add_column(&l, m, 0, 0);
    } else {
        static const char *const DEFAULTS[] = {"val_accuracy", "val_loss", "loss"};
        for (int i = 0; i < 3; i++) add_column(&l, DEFAULTS[i], 0, 1);
    }
    if (kind) add_column(&l, sort_name, kind == 2, 0);
    int is_param;
    for (int i = 0; filter; i++) {
        const char *name = kiln_registry_filter_name(filter, i, &is_param);
        if (!name) break;
        add_column(&l, name, is_param, 0);
    }
    if ((code = kiln_cli_open_registry("runs list", runs_dir, &l.reg))) goto out;
    q.filter = filter;
    q.metrics = l.metrics, q.n_metrics = l.n_metrics;
    q.params = l.params, q.n_params = l.n_params;
    l.json = json;
    q.all_metrics = json;
    if (!json) {
        kiln_table_init(&l.table, 5 + l.n_metrics + l.n_params);
        for (int i = 0; i < l.n_metrics; i++) l.table.right[5 + i] = 1;
        const char *head[5 + 2 * MAX_COLUMNS] = {"RUN", "EXPERIMENT", "STATUS", "STARTED",
                                                 "DURATION"};
        for (int i = 0; i < l.n_metrics; i++) head[5 + i] = l.metrics[i];
        for (int i = 0; i < l.n_params; i++) head[5 + l.n_metrics + i] = l.params[i];
        kiln_table_add(&l.table, head);
    }
    kiln_status s = kiln_registry_list_runs(l.reg, &q, list_row, &l);
    if (!s) s = l.s;
    if (s) {
        code = kiln_cli_fail("runs list", s);
    } else if (json) {
        fputs(l.rows ? "\n]\n" : "[]\n", stdout);
    } else if (l.rows == 0) {
        fprintf(stderr, "kiln runs list: no %sruns in %s\n",
                filter || q.experiment ? "matching " : "", runs_dir);
    } else {
        print_list(&l);
    }
out:
    kiln_table_free(&l.table);
    kiln_registry_close(l.reg);
    kiln_registry_filter_free(filter);
    free(metric_list);
    return code;
}

/* ---- rm ---- */

static int cmd_rm(int argc, char **argv) {
    static const struct option opts[] = {{"runs-dir", required_argument, 0, 'd'},
                                         {"yes", no_argument, 0, 'y'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *given = NULL;
    int yes = 0, c;
    optind = 1, opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            given = optarg;
            break;
        case 'y':
            yes = 1;
            break;
        case 'h':
            fputs(HELP, stdout);
            return KILN_EXIT_OK;
        default:
            return kiln_cli_usage_error("runs rm", "unknown or incomplete option '%s'",
                                        argv[optind - 1]);
        }
    }
    if (optind >= argc)
        return kiln_cli_usage_error("runs rm", "missing RUN (which runs to remove)");
    int n = argc - optind;
    char buf[4200];
    const char *runs_dir = kiln_cli_runs_dir(given, argv[optind], buf, sizeof buf);
    kiln_registry *reg = NULL;
    int code = kiln_cli_open_registry("runs rm", runs_dir, &reg);
    if (code) return code;
    char(*ids)[1024] = calloc((size_t)n, sizeof *ids);
    if (!ids) {
        kiln_registry_close(reg);
        return KILN_EXIT_FAIL;
    }
    for (int i = 0; i < n && !code; i++) {
        kiln_status s = kiln_registry_find_run(reg, argv[optind + i], ids[i], sizeof ids[i]);
        if (s) code = kiln_cli_fail("runs rm", s);
    }
    if (!code && !yes) {
        if (!isatty(0)) {
            code = kiln_cli_usage_error("runs rm", "removing runs needs --yes when stdin is not "
                                                   "a terminal");
        } else {
            printf("remove %d run%s (folder and registry rows)?\n", n, n == 1 ? "" : "s");
            for (int i = 0; i < n; i++) printf("  %s/%s\n", runs_dir, ids[i]);
            printf("[y/N] ");
            fflush(stdout);
            char answer[16] = "";
            if (!fgets(answer, sizeof answer, stdin) || (answer[0] != 'y' && answer[0] != 'Y')) {
                printf("nothing removed\n");
                n = 0;
            }
        }
    }
    for (int i = 0; i < n && !code; i++) {
        int dup = 0;
        for (int k = 0; k < i; k++) dup |= !strcmp(ids[k], ids[i]);
        if (dup) continue;
        kiln_status s = kiln_registry_remove_run(reg, ids[i]);
        if (s) {
            fprintf(stderr, "kiln runs rm: %s\n", kiln_last_error());
            code = KILN_EXIT_FAIL;
            continue;
        }
        printf("removed %s/%s\n", runs_dir, ids[i]);
    }
    free(ids);
    kiln_registry_close(reg);
    return code;
}

/* ---- dispatch ---- */

int kiln_cmd_runs(int argc, char **argv) {
    const char *sub = argc > 1 ? argv[1] : "list";
    if (!strcmp(sub, "--help") || !strcmp(sub, "-h") || !strcmp(sub, "help")) {
        fputs(HELP, stdout);
        return KILN_EXIT_OK;
    }
    if (sub[0] == '-') return cmd_list(argc, argv); /* options of the default, list */
    if (!strcmp(sub, "list") || !strcmp(sub, "ls")) return cmd_list(argc - 1, argv + 1);
    if (!strcmp(sub, "show")) return kiln_cmd_runs_show(argc - 1, argv + 1);
    if (!strcmp(sub, "compare")) return kiln_cmd_runs_compare(argc - 1, argv + 1);
    if (!strcmp(sub, "rm") || !strcmp(sub, "remove")) return cmd_rm(argc - 1, argv + 1);
    if (!strcmp(sub, "sync")) return kiln_cmd_runs_sync(argc - 1, argv + 1);
    return kiln_cli_usage_error("runs", "unknown subcommand '%s' (list, show, compare, rm or sync)",
                                sub);
}
