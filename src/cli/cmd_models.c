/* cmd_models.c — kiln models: register a run's checkpoint as a numbered version of a named model
 * (exported to <runs_dir>/models/NAME/VERSION/, a servable base folder), list the versions, set
 * aliases, and resolve models:/ URIs. Exit codes as for kiln runs (2: fix the request, 1:
 * failed on the way).
 */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/registry_cli.h"
#include "cli/table.h"
#include "kiln/export.h"
#include "kiln/kiln.h"

static const char *HELP =
    "usage: kiln models [register|list|alias|resolve] ...\n"
    "\n"
    "The model registry of a runs folder. Version V of model NAME is the servable package\n"
    "<runs_dir>/models/NAME/V/, so <runs_dir>/models/NAME is a base folder that\n"
    "kiln serve --model_base_path serves as is.\n"
    "\n"
    "  kiln models register RUN [--name N] [--version V] [--checkpoint step-N|best]\n"
    "                      [--format kiln|onnx]\n"
    "      export the run's best checkpoint (its newest when it kept no best) as the next\n"
    "      version of model N (default: the run's experiment) and record it; --format onnx\n"
    "      also writes model.onnx (ONNX opset 17) in the version\n"
    "  kiln models list [NAME] [--json]      every version, with its source run and aliases\n"
    "  kiln models alias NAME VERSION ALIAS  point ALIAS (e.g. production) at a version\n"
    "  kiln models alias --delete NAME ALIAS remove an alias\n"
    "  kiln models resolve URI               print the folder a models:/ URI names:\n"
    "      models:/NAME/VERSION, models:/NAME@ALIAS, models:/NAME/latest (the version folder)\n"
    "      or models:/NAME (the base folder)\n"
    "\n"
    "options:\n"
    "  --runs-dir D      the runs folder (default: runs, or the one RUN lies in)\n"
    "  --help            this text\n";

typedef struct {
    const char *runs_dir, *name, *checkpoint;
    int64_t version;
    int json, del;
    int onnx; /* --format onnx */
    int first;
} models_opts;

static int parse(const char *cmd, int argc, char **argv, models_opts *o) {
    static const struct option opts[] = {
        {"runs-dir", required_argument, 0, 'd'}, {"name", required_argument, 0, 'n'},
        {"version", required_argument, 0, 'v'},  {"checkpoint", required_argument, 0, 'c'},
        {"json", no_argument, 0, 'j'},           {"delete", no_argument, 0, 'x'},
        {"help", no_argument, 0, 'h'},           {"format", required_argument, 0, 'f'},
        {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    int c;
    optind = 1, opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            o->runs_dir = optarg;
            break;
        case 'n':
            o->name = optarg;
            break;
        case 'c':
            o->checkpoint = optarg;
            break;
        case 'v':
            if (!kiln_export_parse_version(optarg, &o->version))
                return kiln_cli_usage_error(
                    cmd, "--version %s: expected a positive integer without leading zeros", optarg);
            break;
        case 'f': /* only register exports; elsewhere it would be silently ignored */
            if (strcmp(cmd, "models register"))
                return kiln_cli_usage_error(cmd, "--format applies to 'kiln models register' "
                                                 "only (it chooses what the export writes)");
            if (kiln_cli_export_format(optarg, &o->onnx))
                return kiln_cli_usage_error(cmd, "--format %s: expected kiln or onnx", optarg);
            break;
        case 'j':
            o->json = 1;
            break;
        case 'x':
            o->del = 1;
            break;
        case 'h':
            fputs(HELP, stdout);
            return -1;
        default:
            return kiln_cli_usage_error(cmd, "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    o->first = optind;
    return 0;
}

/* ---- register ---- */

static int cmd_register(int argc, char **argv) {
    models_opts o;
    int code = parse("models register", argc, argv, &o);
    if (code) return code < 0 ? KILN_EXIT_OK : code;
    if (o.first >= argc) return kiln_cli_usage_error("models register", "missing RUN");
    if (o.first + 1 < argc)
        return kiln_cli_usage_error("models register", "unexpected argument '%s'",
                                    argv[o.first + 1]);
    if (o.name && !kiln_registry_valid_name(o.name))
        return kiln_cli_usage_error("models register",
                                    "--name %s: use letters, digits, '-', '_' and '.', not "
                                    "starting with '.' or '-' (at most %d)",
                                    o.name, KILN_REGISTRY_NAME_MAX);
    char buf[4200], id[1024], model[KILN_REGISTRY_NAME_MAX + 1];
    const char *runs_dir = kiln_cli_runs_dir(o.runs_dir, argv[o.first], buf, sizeof buf);
    kiln_registry *reg = NULL;
    if ((code = kiln_cli_open_registry("models register", runs_dir, &reg))) return code;
    int64_t version = 0;
    kiln_status s = kiln_registry_find_run(reg, argv[o.first], id, sizeof id);
    if (!s)
        s = kiln_registry_register_model_ex(reg, id, o.name, o.checkpoint, o.version,
                                            &(kiln_export_run_opts){o.onnx}, &version, model,
                                            sizeof model);
    if (s) {
        code = kiln_cli_fail("models register", s);
    } else {
        printf("registered %s version %lld from run %s: %s/models/%s/%lld\n", model,
               (long long)version, id, runs_dir, model, (long long)version);
    }
    kiln_registry_close(reg);
    return code;
}

/* ---- list ---- */

typedef struct {
    kiln_table table;
    cJSON *json;
} model_lister;

static int list_version(const kiln_registry_model_version *v, void *ctx) {
    model_lister *l = ctx;
    char version[32], created[32];
    snprintf(version, sizeof version, "%lld", (long long)v->version);
    if (l->json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", v->model);
        cJSON_AddNumberToObject(o, "version", (double)v->version);
        cJSON *aliases = cJSON_AddArrayToObject(o, "aliases");
        char copy[1024];
        snprintf(copy, sizeof copy, "%s", v->aliases);
        for (char *save = NULL, *a = strtok_r(copy, ", ", &save); a;
             a = strtok_r(NULL, ", ", &save))
            cJSON_AddItemToArray(aliases, cJSON_CreateString(a));
        if (v->run)
            cJSON_AddStringToObject(o, "run", v->run);
        else
            cJSON_AddNullToObject(o, "run");
        if (v->checkpoint)
            cJSON_AddStringToObject(o, "checkpoint", v->checkpoint);
        else
            cJSON_AddNullToObject(o, "checkpoint");
        cJSON_AddStringToObject(o, "path", v->path);
        cJSON_AddBoolToObject(o, "path_exists", v->path_exists);
        cJSON_AddStringToObject(o, "created", v->created ? v->created : "");
        cJSON_AddItemToArray(l->json, o);
        return 0;
    }
    kiln_cli_time(v->created, 0, created, sizeof created);
    char run[1100], folder[600];
    snprintf(run, sizeof run, "%s%s", v->run ? v->run : "-",
             v->run && !v->run_exists ? " (removed)" : "");
    snprintf(folder, sizeof folder, "%s%s", v->path, v->path_exists ? "" : " (missing)");
    kiln_table_row(&l->table, v->model, version, v->aliases[0] ? v->aliases : "-", run,
                   v->checkpoint ? v->checkpoint : "-", created, folder);
    return 0;
}

static int cmd_list(int argc, char **argv) {
    models_opts o;
    int code = parse("models list", argc, argv, &o);
    if (code) return code < 0 ? KILN_EXIT_OK : code;
    if (o.first + 1 < argc)
        return kiln_cli_usage_error("models list", "unexpected argument '%s'", argv[o.first + 1]);
    const char *name = o.first < argc ? argv[o.first] : NULL;
    kiln_registry *reg = NULL;
    const char *runs_dir = o.runs_dir ? o.runs_dir : "runs";
    if ((code = kiln_cli_open_registry("models list", runs_dir, &reg))) return code;
    model_lister l = {.json = o.json ? cJSON_CreateArray() : NULL};
    kiln_table_init(&l.table, 7);
    l.table.right[1] = 1;
    kiln_table_row(&l.table, "MODEL", "VERSION", "ALIASES", "RUN", "CHECKPOINT", "CREATED",
                   "FOLDER");
    kiln_status s = kiln_registry_list_models(reg, name, list_version, &l);
    if (s) {
        code = kiln_cli_fail("models list", s);
    } else if (l.json) {
        char *text = cJSON_Print(l.json);
        if (text) puts(text);
        cJSON_free(text);
    } else if (l.table.rows == 1) {
        fprintf(stderr, "kiln models list: no models in %s (kiln models register RUN adds one)\n",
                runs_dir);
    } else {
        kiln_table_print(&l.table, stdout, 0);
    }
    cJSON_Delete(l.json);
    kiln_table_free(&l.table);
    kiln_registry_close(reg);
    return code;
}

/* ---- alias ---- */

static int cmd_alias(int argc, char **argv) {
    models_opts o;
    int code = parse("models alias", argc, argv, &o);
    if (code) return code < 0 ? KILN_EXIT_OK : code;
    int n = argc - o.first;
    if (o.del ? n != 2 : n != 3)
        return kiln_cli_usage_error("models alias", o.del ? "usage: --delete NAME ALIAS"
                                                          : "usage: NAME VERSION ALIAS");
    const char *name = argv[o.first], *alias = argv[o.first + (o.del ? 1 : 2)];
    int64_t version = 0;
    if (!o.del && !kiln_export_parse_version(argv[o.first + 1], &version))
        return kiln_cli_usage_error("models alias", "version '%s': expected a positive integer",
                                    argv[o.first + 1]);
    kiln_registry *reg = NULL;
    const char *runs_dir = o.runs_dir ? o.runs_dir : "runs";
    if ((code = kiln_cli_open_registry("models alias", runs_dir, &reg))) return code;
    kiln_status s = o.del ? kiln_registry_delete_alias(reg, name, alias)
                          : kiln_registry_set_alias(reg, name, version, alias);
    if (s)
        code = kiln_cli_fail("models alias", s);
    else if (o.del)
        printf("removed alias %s@%s\n", name, alias);
    else
        printf("%s@%s -> version %lld\n", name, alias, (long long)version);
    kiln_registry_close(reg);
    return code;
}

/* ---- resolve ---- */

static int cmd_resolve(int argc, char **argv) {
    models_opts o;
    int code = parse("models resolve", argc, argv, &o);
    if (code) return code < 0 ? KILN_EXIT_OK : code;
    if (argc - o.first != 1)
        return kiln_cli_usage_error("models resolve", "usage: URI (models:/NAME@ALIAS, ...)");
    char base[4200];
    int64_t version = 0;
    kiln_status s = kiln_registry_resolve_model_uri(o.runs_dir ? o.runs_dir : "runs", argv[o.first],
                                                    base, sizeof base, &version);
    if (s) return kiln_cli_fail("models resolve", s);
    if (version)
        printf("%s/%lld\n", base, (long long)version);
    else
        printf("%s\n", base);
    return KILN_EXIT_OK;
}

int kiln_cmd_models(int argc, char **argv) {
    const char *sub = argc > 1 ? argv[1] : "list";
    if (!strcmp(sub, "--help") || !strcmp(sub, "-h") || !strcmp(sub, "help")) {
        fputs(HELP, stdout);
        return KILN_EXIT_OK;
    }
    if (sub[0] == '-') return cmd_list(argc, argv);
    if (!strcmp(sub, "register")) return cmd_register(argc - 1, argv + 1);
    if (!strcmp(sub, "list") || !strcmp(sub, "ls")) return cmd_list(argc - 1, argv + 1);
    if (!strcmp(sub, "alias")) return cmd_alias(argc - 1, argv + 1);
    if (!strcmp(sub, "resolve")) return cmd_resolve(argc - 1, argv + 1);
    return kiln_cli_usage_error("models",
                                "unknown subcommand '%s' (register, list, alias or "
                                "resolve)",
                                sub);
}
