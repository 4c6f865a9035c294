/* cmd_runs_show.c — kiln runs show RUN and kiln runs compare RUN RUN...: one run in full, or
 * several side by side (the params that differ, the final and best value of every metric).
 *
 * "Best" is the highest value of a metric where higher is better and the lowest where lower is
 * (kiln_metric_higher_is_better: accuracy, precision, recall, f1, r2 up; loss, mse, mae down);
 * metrics of neither kind (samples_per_second, learning_rate) show their final value only.
 */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/registry_cli.h"
#include "cli/table.h"
#include "kiln/kiln.h"

#define MAX_COMPARE 16

/* Options shared by show and compare. */
typedef struct {
    const char *runs_dir;
    int json, all;
    int first; /* index of the first RUN in argv */
} show_opts;

static int parse_opts(const char *cmd, int argc, char **argv, int with_all, show_opts *o,
                      const char *help) {
    static const struct option opts[] = {{"runs-dir", required_argument, 0, 'd'},
                                         {"json", no_argument, 0, 'j'},
                                         {"all", no_argument, 0, 'a'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    int c;
    optind = 1, opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            o->runs_dir = optarg;
            break;
        case 'j':
            o->json = 1;
            break;
        case 'a':
            if (!with_all) return kiln_cli_usage_error(cmd, "unknown option '--all'");
            o->all = 1;
            break;
        case 'h':
            fputs(help, stdout);
            return -1;
        default:
            return kiln_cli_usage_error(cmd, "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    o->first = optind;
    return 0;
}

static void json_value(cJSON *o, const char *key, double v) {
    if (isnan(v))
        cJSON_AddNullToObject(o, key);
    else
        cJSON_AddNumberToObject(o, key, v);
}

/* ---- show ---- */

static const char *SHOW_HELP =
    "usage: kiln runs show RUN [--runs-dir D] [--json]\n"
    "\n"
    "A run's attributes, its params (the config's keys), a summary of every metric (last value\n"
    "and step, min, max, points) and the model versions registered from it.\n";

typedef struct {
    kiln_registry *reg;
    int json;
    cJSON *out;
    kiln_table table;
    const char *id;
    kiln_status s;
} shower;

static int show_param(const kiln_registry_param *p, void *ctx) {
    shower *sh = ctx;
    if (sh->json) {
        if (p->is_number)
            cJSON_AddNumberToObject(sh->out, p->key, p->number);
        else
            cJSON_AddStringToObject(sh->out, p->key, p->value);
    } else {
        kiln_table_row(&sh->table, p->key, p->value);
    }
    return 0;
}

static int show_metric(const kiln_registry_metric *m, void *ctx) {
    shower *sh = ctx;
    if (sh->json) {
        cJSON *o = cJSON_AddObjectToObject(sh->out, m->name);
        json_value(o, "last", m->last);
        cJSON_AddNumberToObject(o, "step", (double)m->last_step);
        json_value(o, "min", m->min);
        json_value(o, "max", m->max);
        cJSON_AddNumberToObject(o, "points", (double)m->points);
        return 0;
    }
    char last[32], step[32], lo[32], hi[32], n[32];
    kiln_cli_value(m->last, last, sizeof last);
    snprintf(step, sizeof step, "%lld", (long long)m->last_step);
    kiln_cli_value(m->min, lo, sizeof lo);
    kiln_cli_value(m->max, hi, sizeof hi);
    snprintf(n, sizeof n, "%lld", (long long)m->points);
    kiln_table_row(&sh->table, m->name, last, step, lo, hi, n);
    return 0;
}

static int show_model(const kiln_registry_model_version *v, void *ctx) {
    shower *sh = ctx;
    if (!v->run || strcmp(v->run, sh->id)) return 0;
    char version[32];
    snprintf(version, sizeof version, "%lld", (long long)v->version);
    if (sh->json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", v->model);
        cJSON_AddNumberToObject(o, "version", (double)v->version);
        cJSON_AddStringToObject(o, "aliases", v->aliases);
        cJSON_AddStringToObject(o, "path", v->path);
        cJSON_AddItemToArray(sh->out, o);
    } else {
        kiln_table_row(&sh->table, v->model, version, v->aliases[0] ? v->aliases : "-",
                       v->checkpoint ? v->checkpoint : "-", v->path);
    }
    return 0;
}

static int show_run(const kiln_registry_run *r, void *ctx) {
    shower *sh = ctx;
    kiln_status s;
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", kiln_registry_runs_dir(sh->reg), r->id);
    if (sh->json) {
        cJSON *root = sh->out;
        cJSON_AddStringToObject(root, "id", r->id);
        cJSON_AddStringToObject(root, "path", path);
        const char *strs[KILN_CLI_RUN_STRINGS][2];
        int n_strs = kiln_cli_run_strings(r, strs);
        for (int i = 0; i < n_strs; i++) {
            if (strs[i][1])
                cJSON_AddStringToObject(root, strs[i][0], strs[i][1]);
            else
                cJSON_AddNullToObject(root, strs[i][0]);
        }
        cJSON_AddNumberToObject(root, "duration", r->duration);
        cJSON_AddNumberToObject(root, "pid", (double)r->pid);
        cJSON_AddNumberToObject(root, "epochs_completed", (double)r->epochs_completed);
        cJSON_AddNumberToObject(root, "steps", (double)r->steps);
        sh->out = cJSON_AddObjectToObject(root, "params");
        if ((s = kiln_registry_run_params(sh->reg, r->id, show_param, sh))) goto fail;
        sh->out = cJSON_AddObjectToObject(root, "metrics");
        if ((s = kiln_registry_run_metrics(sh->reg, r->id, show_metric, sh))) goto fail;
        sh->out = cJSON_AddArrayToObject(root, "models");
        if ((s = kiln_registry_list_models(sh->reg, NULL, show_model, sh))) goto fail;
        sh->out = root;
        return 0;
    }
    char start[32], end[32], took[32], progress[96], host[320];
    kiln_cli_time(r->start_time, 1, start, sizeof start);
    kiln_cli_time(r->end_time, 1, end, sizeof end);
    kiln_cli_duration(r->duration, took, sizeof took);
    snprintf(progress, sizeof progress, "%lld epoch%s, %lld steps", (long long)r->epochs_completed,
             r->epochs_completed == 1 ? "" : "s", (long long)r->steps);
    snprintf(host, sizeof host, "%s (pid %ld)", r->host ? r->host : "-", r->pid);
    kiln_table_init(&sh->table, 2);
    const char *rows[][2] = {{"run", r->id},
                             {"folder", path},
                             {"experiment", r->experiment},
                             {"name", r->name},
                             {"status", r->status},
                             {"message", r->message},
                             {"started", start},
                             {"ended", r->end_time ? end : "-"},
                             {"duration", took},
                             {"progress", progress},
                             {"checkpoint", r->checkpoint},
                             {"host", host},
                             {"kiln", r->kiln_version},
                             {"seed", r->seed},
                             {"config hash", r->config_hash},
                             {"command", r->command}};
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++)
        if (rows[i][1]) kiln_table_row(&sh->table, rows[i][0], rows[i][1]);
    kiln_table_print(&sh->table, stdout, 0);
    kiln_table_free(&sh->table);

    printf("\nparams\n");
    kiln_table_init(&sh->table, 2);
    if ((s = kiln_registry_run_params(sh->reg, r->id, show_param, sh))) goto fail;
    if (sh->table.rows)
        kiln_table_print(&sh->table, stdout, 2);
    else
        printf("  (none: the run has no readable config.yaml)\n");
    kiln_table_free(&sh->table);

    printf("\nmetrics\n");
    kiln_table_init(&sh->table, 6);
    for (int c = 1; c < 6; c++) sh->table.right[c] = 1;
    kiln_table_row(&sh->table, "NAME", "LAST", "STEP", "MIN", "MAX", "POINTS");
    if ((s = kiln_registry_run_metrics(sh->reg, r->id, show_metric, sh))) goto fail;
    if (sh->table.rows > 1)
        kiln_table_print(&sh->table, stdout, 2);
    else
        printf("  (none logged)\n");
    kiln_table_free(&sh->table);

    kiln_table_init(&sh->table, 5);
    kiln_table_row(&sh->table, "MODEL", "VERSION", "ALIASES", "CHECKPOINT", "FOLDER");
    if ((s = kiln_registry_list_models(sh->reg, NULL, show_model, sh))) goto fail;
    if (sh->table.rows > 1) {
        printf("\nmodels\n");
        kiln_table_print(&sh->table, stdout, 2);
    }
    kiln_table_free(&sh->table);
    return 0;
fail:
    kiln_table_free(&sh->table);
    sh->s = s;
    return 1;
}

int kiln_cmd_runs_show(int argc, char **argv) {
    show_opts o;
    int code = parse_opts("runs show", argc, argv, 0, &o, SHOW_HELP);
    if (code) return code < 0 ? KILN_EXIT_OK : code;
    if (o.first >= argc) return kiln_cli_usage_error("runs show", "missing RUN");
    if (o.first + 1 < argc)
        return kiln_cli_usage_error("runs show",
                                    "unexpected argument '%s' (one RUN; to see "
                                    "several, kiln runs compare)",
                                    argv[o.first + 1]);
    char buf[4200], id[1024];
    const char *runs_dir = kiln_cli_runs_dir(o.runs_dir, argv[o.first], buf, sizeof buf);
    kiln_registry *reg = NULL;
    if ((code = kiln_cli_open_registry("runs show", runs_dir, &reg))) return code;
    shower sh = {.reg = reg, .json = o.json, .id = id};
    kiln_status s = kiln_registry_find_run(reg, argv[o.first], id, sizeof id);
    if (!s) {
        cJSON *root = o.json ? cJSON_CreateObject() : NULL;
        sh.out = root;
        kiln_registry_query q = {.id = id};
        s = kiln_registry_list_runs(reg, &q, show_run, &sh);
        if (!s) s = sh.s;
        if (root) {
            char *text = s ? NULL : cJSON_Print(root);
            if (text) puts(text);
            cJSON_free(text);
            cJSON_Delete(root);
        }
    }
    code = s ? kiln_cli_fail("runs show", s) : KILN_EXIT_OK;
    kiln_registry_close(reg);
    return code;
}

/* ---- compare ---- */

static const char *COMPARE_HELP =
    "usage: kiln runs compare RUN RUN... [--runs-dir D] [--all] [--json]\n"
    "\n"
    "Runs side by side: status, duration and steps; the params whose values differ (all of\n"
    "them with --all); the final value of every metric, and its best value where better is\n"
    "known (the highest accuracy, the lowest loss).\n";

typedef struct {
    char *key, *value;
} kv;

typedef struct {
    char *name;
    double last, min, max;
} summary;

typedef struct {
    char id[1024];
    char *name;
    const char *label;
    char status[16], took[32], steps[32];
    kv *params;
    int n_params, cap_params;
    summary *metrics;
    int n_metrics, cap_metrics;
    int oom;
} crun;

static int grow(void **v, int *cap, int n, size_t size) {
    if (n < *cap) return 0;
    int c = *cap ? 2 * *cap : 32;
    void *p = realloc(*v, (size_t)c * size);
    if (!p) return -1;
    *v = p, *cap = c;
    return 0;
}

static int take_param(const kiln_registry_param *p, void *ctx) {
    crun *r = ctx;
    if (grow((void **)&r->params, &r->cap_params, r->n_params, sizeof *r->params))
        return r->oom = 1;
    kv *x = &r->params[r->n_params];
    x->key = strdup(p->key), x->value = strdup(p->value);
    if (!x->key || !x->value) return free(x->key), free(x->value), r->oom = 1;
    r->n_params++;
    return 0;
}

static int take_metric(const kiln_registry_metric *m, void *ctx) {
    crun *r = ctx;
    if (grow((void **)&r->metrics, &r->cap_metrics, r->n_metrics, sizeof *r->metrics))
        return r->oom = 1;
    summary *x = &r->metrics[r->n_metrics];
    *x = (summary){strdup(m->name), m->last, m->min, m->max};
    if (!x->name) return r->oom = 1;
    r->n_metrics++;
    return 0;
}

static int take_row(const kiln_registry_run *row, void *ctx) {
    crun *r = ctx;
    snprintf(r->status, sizeof r->status, "%s", row->status ? row->status : "-");
    free(r->name);
    if (!(r->name = strdup(row->name ? row->name : row->id))) r->oom = 1;
    kiln_cli_duration(row->duration, r->took, sizeof r->took);
    snprintf(r->steps, sizeof r->steps, "%lld", (long long)row->steps);
    return 0;
}

static const char *param_of(const crun *r, const char *key) {
    int lo = 0, hi = r->n_params; /* params come sorted by key */
    while (lo < hi) {
        int mid = (lo + hi) / 2, c = strcmp(r->params[mid].key, key);
        if (!c) return r->params[mid].value;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static const summary *metric_of(const crun *r, const char *name) {
    for (int i = 0; i < r->n_metrics; i++)
        if (!strcmp(r->metrics[i].name, name)) return &r->metrics[i];
    return NULL;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Every key (params) or name (metrics) of the runs, sorted, once each, into a new array. */
static const char **union_of(const crun *runs, int n, int metrics, int *count) {
    int total = 0;
    for (int i = 0; i < n; i++) total += metrics ? runs[i].n_metrics : runs[i].n_params;
    const char **all = malloc(((size_t)total + 1) * sizeof *all);
    if (!all) return NULL;
    int k = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < (metrics ? runs[i].n_metrics : runs[i].n_params); j++)
            all[k++] = metrics ? runs[i].metrics[j].name : runs[i].params[j].key;
    qsort(all, (size_t)k, sizeof *all, cmp_str);
    int u = 0;
    for (int i = 0; i < k; i++)
        if (!u || strcmp(all[u - 1], all[i])) all[u++] = all[i];
    *count = u;
    return all;
}

static void free_runs(crun *runs, int n) {
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < runs[i].n_params; j++)
            free(runs[i].params[j].key), free(runs[i].params[j].value);
        for (int j = 0; j < runs[i].n_metrics; j++) free(runs[i].metrics[j].name);
        free(runs[i].params), free(runs[i].metrics), free(runs[i].name);
    }
    free(runs);
}

/* Column labels: the run names when they tell the runs apart, else the run folders. */
static void label_runs(crun *runs, int n) {
    int unique = 1;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++) unique &= strcmp(runs[i].name, runs[j].name) != 0;
    for (int i = 0; i < n; i++) {
        const char *slash = strchr(runs[i].id, '/');
        runs[i].label = unique ? runs[i].name : slash ? slash + 1 : runs[i].id;
    }
}

static double best_of(const summary *m) {
    int up = kiln_metric_higher_is_better(m->name);
    return up < 0 ? NAN : up ? m->max : m->min;
}

static int print_compare(crun *runs, int n, int all, int json) {
    int np = 0, nm = 0;
    const char **keys = union_of(runs, n, 0, &np), **names = union_of(runs, n, 1, &nm);
    if (!keys || !names) {
        free(keys), free(names);
        fprintf(stderr, "kiln runs compare: out of memory\n");
        return KILN_EXIT_FAIL;
    }
    int differing = 0;
    char *differs = calloc((size_t)np + 1, 1);
    for (int k = 0; differs && k < np; k++) {
        const char *first = param_of(&runs[0], keys[k]);
        for (int i = 1; i < n && !differs[k]; i++) {
            const char *v = param_of(&runs[i], keys[k]);
            differs[k] = !first || !v || strcmp(first, v);
        }
        differing += differs[k];
    }
    if (!differs) {
        free(keys), free(names);
        return KILN_EXIT_FAIL;
    }
    if (json) {
        cJSON *root = cJSON_CreateObject(), *ids = cJSON_AddArrayToObject(root, "runs");
        for (int i = 0; i < n; i++) cJSON_AddItemToArray(ids, cJSON_CreateString(runs[i].id));
        cJSON *params = cJSON_AddObjectToObject(root, "params");
        for (int k = 0; k < np; k++) {
            if (!all && !differs[k]) continue;
            cJSON *vals = cJSON_AddArrayToObject(params, keys[k]);
            for (int i = 0; i < n; i++) {
                const char *v = param_of(&runs[i], keys[k]);
                cJSON_AddItemToArray(vals, v ? cJSON_CreateString(v) : cJSON_CreateNull());
            }
        }
        cJSON *metrics = cJSON_AddObjectToObject(root, "metrics");
        for (int k = 0; k < nm; k++) {
            cJSON *m = cJSON_AddObjectToObject(metrics, names[k]);
            cJSON *fin = cJSON_AddArrayToObject(m, "final"),
                  *best = cJSON_AddArrayToObject(m, "best");
            for (int i = 0; i < n; i++) {
                const summary *s = metric_of(&runs[i], names[k]);
                double f = s ? s->last : NAN, b = s ? best_of(s) : NAN;
                cJSON_AddItemToArray(fin, isnan(f) ? cJSON_CreateNull() : cJSON_CreateNumber(f));
                cJSON_AddItemToArray(best, isnan(b) ? cJSON_CreateNull() : cJSON_CreateNumber(b));
            }
        }
        char *text = cJSON_Print(root);
        if (text) puts(text);
        cJSON_free(text);
        cJSON_Delete(root);
    } else {
        kiln_table t;
        kiln_table_init(&t, n + 1);
        const char *cells[MAX_COMPARE + 1];
        char values[MAX_COMPARE + 1][80], title[128];
        cells[0] = "";
        for (int i = 0; i < n; i++) cells[i + 1] = runs[i].label;
        kiln_table_add(&t, cells);
        const char *attrs[] = {"status", "duration", "steps"};
        for (int a = 0; a < 3; a++) {
            cells[0] = attrs[a];
            for (int i = 0; i < n; i++)
                cells[i + 1] = a == 0 ? runs[i].status : a == 1 ? runs[i].took : runs[i].steps;
            kiln_table_add(&t, cells);
        }
        for (int i = 0; i <= n; i++) cells[i] = "";
        kiln_table_add(&t, cells);
        if (all)
            snprintf(title, sizeof title, "params (%d, %d differ)", np, differing);
        else
            snprintf(title, sizeof title, "params that differ (%d of %d)", differing, np);
        cells[0] = title;
        kiln_table_add(&t, cells);
        for (int k = 0; k < np; k++) {
            if (!all && !differs[k]) continue;
            char key[300];
            snprintf(key, sizeof key, "  %s", keys[k]);
            cells[0] = key;
            for (int i = 0; i < n; i++) {
                const char *v = param_of(&runs[i], keys[k]);
                cells[i + 1] = v ? v : "-";
            }
            kiln_table_add(&t, cells);
        }
        for (int i = 0; i <= n; i++) cells[i] = "";
        kiln_table_add(&t, cells);
        cells[0] = "metrics: final (best)";
        kiln_table_add(&t, cells);
        for (int k = 0; k < nm; k++) {
            char name[300];
            snprintf(name, sizeof name, "  %s", names[k]);
            cells[0] = name;
            for (int i = 0; i < n; i++) {
                const summary *s = metric_of(&runs[i], names[k]);
                char f[32], b[32];
                kiln_cli_value(s ? s->last : NAN, f, sizeof f);
                double best = s ? best_of(s) : NAN;
                kiln_cli_value(best, b, sizeof b);
                if (isnan(best))
                    snprintf(values[i], sizeof values[i], "%s", f);
                else
                    snprintf(values[i], sizeof values[i], "%s (%s)", f, b);
                cells[i + 1] = values[i];
            }
            kiln_table_add(&t, cells);
        }
        kiln_table_print(&t, stdout, 0);
        kiln_table_free(&t);
    }
    free(differs), free(keys), free(names);
    return KILN_EXIT_OK;
}

int kiln_cmd_runs_compare(int argc, char **argv) {
    show_opts o;
    int code = parse_opts("runs compare", argc, argv, 1, &o, COMPARE_HELP);
    if (code) return code < 0 ? KILN_EXIT_OK : code;
    int n = argc - o.first;
    if (n < 2) return kiln_cli_usage_error("runs compare", "needs at least two runs");
    if (n > MAX_COMPARE)
        return kiln_cli_usage_error("runs compare", "at most %d runs at once", MAX_COMPARE);
    char buf[4200];
    const char *runs_dir = kiln_cli_runs_dir(o.runs_dir, argv[o.first], buf, sizeof buf);
    kiln_registry *reg = NULL;
    if ((code = kiln_cli_open_registry("runs compare", runs_dir, &reg))) return code;
    crun *runs = calloc((size_t)n, sizeof *runs);
    kiln_status s = runs ? KILN_OK : kiln_error(KILN_ERR_NOMEM, "out of memory");
    for (int i = 0; !s && i < n; i++) {
        crun *r = &runs[i];
        kiln_registry_query q = {.id = r->id};
        if (!(s = kiln_registry_find_run(reg, argv[o.first + i], r->id, sizeof r->id)) &&
            !(s = kiln_registry_list_runs(reg, &q, take_row, r)) &&
            !(s = kiln_registry_run_params(reg, r->id, take_param, r)))
            s = kiln_registry_run_metrics(reg, r->id, take_metric, r);
        if (!s && r->oom) s = kiln_error(KILN_ERR_NOMEM, "out of memory");
    }
    if (s) {
        code = kiln_cli_fail("runs compare", s);
    } else {
        label_runs(runs, n);
        code = print_compare(runs, n, o.all, o.json);
    }
    if (runs) free_runs(runs, n);
    kiln_registry_close(reg);
    return code;
}
