/* report.c — the deployment table of kiln optimize --report (docs/optimize.md): for each
 * variant (a servable version folder) its size on disk, parameters (all, and non-zero: pruned
 * versions store zeros), accuracy on the test split, batch-1 latency p50/p99 and batch-64
 * throughput.
 *
 * Every number is measured on the version as kiln serve would run it: the folder is loaded with
 * kiln_servable_load (int8 / bf16 layers included), evaluated over the test split of the data
 * config (the one given, else the config.yaml of the run model.json names as its source) with
 * ordinary inference plans as kiln eval does, and timed with kiln_bench_run in process (batch 1
 * at concurrency 1 for latency; batch 64 at concurrency 1 with every thread for throughput).
 * Variants are measured one after another, never side by side, so they do not compete for the
 * cores. The variant's name is the caller's, or read from model.json: "fp32", or what its
 * "optimizations" record ("folded", "int8", "folded + int8", and, for the transformations
 * other branches add, their record's key with its "sparsity" or "temperature" when present).
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kiln/bench.h"
#include "kiln/export.h"
#include "kiln/fileio.h"
#include "kiln/inputs.h"
#include "kiln/mem.h"
#include "kiln/metrics.h"
#include "kiln/optimize.h"
#include "train/evaluate.h"

static int64_t folder_bytes(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int64_t total = 0;
    struct dirent *e;
    char p[4600];
    struct stat sb;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.' && snprintf(p, sizeof p, "%s/%s", dir, e->d_name) < (int)sizeof p &&
            stat(p, &sb) == 0 && S_ISREG(sb.st_mode))
            total += (int64_t)sb.st_size;
    closedir(d);
    return total;
}

/* The variant's name from model.json's "optimizations" ("fp32" when there are none). */
static void name_from_json(const char *dir, char *out, size_t n) {
    char path[4400];
    snprintf(path, sizeof path, "%.4300s/model.json", dir);
    char *text = NULL;
    size_t len = 0;
    snprintf(out, n, "fp32");
    if (kiln_file_read_all(path, (void **)&text, &len, (size_t)64 << 20)) return;
    cJSON *j = cJSON_ParseWithLength(text, len);
    const cJSON *list = j ? cJSON_GetObjectItemCaseSensitive(j, "optimizations") : NULL;
    size_t used = 0;
    const cJSON *step;
    cJSON_ArrayForEach(step, list) {
        const cJSON *kv = step->child;
        if (!kv || !kv->string) continue;
        char one[128];
        if (!strcmp(kv->string, "fold")) {
            snprintf(one, sizeof one, "folded");
        } else if (!strcmp(kv->string, "quantize")) {
            const cJSON *dt = cJSON_GetObjectItemCaseSensitive(kv, "dtype");
            snprintf(one, sizeof one, "%s", cJSON_IsString(dt) ? dt->valuestring : "quantized");
        } else {
            const cJSON *sp = cJSON_GetObjectItemCaseSensitive(kv, "sparsity");
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(kv, "temperature");
            if (cJSON_IsNumber(sp))
                snprintf(one, sizeof one, "%.40s %g%%", kv->string, sp->valuedouble * 100);
            else if (cJSON_IsNumber(t))
                snprintf(one, sizeof one, "%.40s T=%g", kv->string, t->valuedouble);
            else
                snprintf(one, sizeof one, "%.60s", kv->string);
        }
        used +=
            (size_t)snprintf(out + used, used < n ? n - used : 0, "%s%s", used ? " + " : "", one);
        if (used >= n) break;
    }
    cJSON_Delete(j);
    kiln_free(text);
}

/* Accuracy (or, for a regression, the loss) of the loaded version over the test split. */
static kiln_status evaluate(kiln_servable *s, const char *dir, const char *data,
                            kiln_optimize_variant *v) {
    kiln_servable_info info = kiln_servable_get_info(s);
    char path[4400];
    if (data)
        snprintf(path, sizeof path, "%.4300s", data);
    else if (info.source_run)
        snprintf(path, sizeof path, "%.4300s/config.yaml", info.source_run);
    else
        return kiln_error(KILN_ERR_INVALID,
                          "report: %s: model.json names no source run to take test data from: "
                          "pass --data CONFIG",
                          dir);
    kiln_cfg *cfg = NULL;
    kiln_inputs in = {0};
    kiln_metrics *mt = NULL;
    kiln_evaluator ev = {.fast = 1};
    kiln_model *m = kiln_servable_model(s);
    kiln_status st = kiln_config_load(path, &cfg);
    if (!st) st = kiln_inputs_resolve_paths(cfg, NULL);
    if (!st) st = kiln_config_resolve(cfg);
    if (!st) st = kiln_inputs_load(cfg, m, &in);
    if (!st && !in.test) st = kiln_error(KILN_ERR_INVALID, "report: %s has no test split", path);
    int cls = m->task == KILN_TASK_CLASSIFICATION;
    if (!st) {
        const char *names[1] = {"accuracy"};
        int classes = cls ? (m->n_outputs == 1 ? 2 : (int)m->n_outputs) : 0;
        if (!(mt = kiln_metrics_new(classes, m->n_outputs, names, cls, 5))) st = KILN_ERR_INVALID;
    }
    ev.m = m;
    if (!st) st = kiln_evaluate(&ev, in.test, &in.loader, mt);
    if (!st) {
        v->test_rows = kiln_metrics_rows(mt);
        v->loss = kiln_metrics_value(mt, 0);
        v->accuracy = cls ? kiln_metrics_value(mt, 1) : NAN;
    }
    kiln_evaluator_free(&ev);
    kiln_metrics_free(mt);
    kiln_inputs_free(&in);
    kiln_cfg_free(cfg);
    return st;
}

kiln_status kiln_optimize_measure(const char *dir, const char *name,
                                  const kiln_optimize_measure_opts *o, kiln_optimize_variant *v) {
    memset(v, 0, sizeof *v);
    snprintf(v->dir, sizeof v->dir, "%s", dir);
    if (name)
        snprintf(v->name, sizeof v->name, "%s", name);
    else
        name_from_json(dir, v->name, sizeof v->name);
    kiln_servable *s = NULL;
    kiln_status st = kiln_servable_load(dir, &s);
    if (st) return st;
    v->file_bytes = folder_bytes(dir);
    snprintf(v->precision, sizeof v->precision, "%s", kiln_servable_get_info(s).precision);
    kiln_graph *g = kiln_servable_model(s)->graph;
    const float *w = kiln_graph_params(g);
    v->params = (int64_t)kiln_graph_params_size(g);
    for (int64_t i = 0; i < v->params; i++) v->nonzero += w[i] != 0.0f;
    st = evaluate(s, dir, o->data, v);
    kiln_servable_free(s);
    if (st) return st;
    static kiln_bench_result br; /* large; kiln optimize runs one report at a time */
    double dur = o->bench_seconds > 0 ? o->bench_seconds : 2,
           warm = o->warmup_seconds > 0 ? o->warmup_seconds : 0.5;
    kiln_bench_opts bo = {.model_dir = dir,
                          .batches = {1},
                          .n_batches = 1,
                          .concurrency = {1},
                          .n_concurrency = 1,
                          .duration_s = dur,
                          .warmup_s = warm,
                          .threads = o->threads};
    if ((st = kiln_bench_run(&bo, &br))) return st;
    v->p50_ms = br.points[0].p50_ms, v->p99_ms = br.points[0].p99_ms;
    bo.batches[0] = 64;
    if ((st = kiln_bench_run(&bo, &br))) return st;
    v->rows_per_s_64 = br.points[0].rows_per_s;
    return KILN_OK;
}
