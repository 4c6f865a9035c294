/* eval_export.c — kiln eval of a servable version (an export, or what kiln optimize wrote): the
 * model is the one kiln serve would run (kiln_servable_load: int8 and bf16 layers included),
 * the data an experiment config's (--data, else the config.yaml of the run that model.json
 * names as its source), evaluated as kiln eval evaluates a run (ordinary inference plans).
 * Prints the metrics; writes nothing (a version folder is never modified). */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kiln/export.h"
#include "kiln/inputs.h"
#include "train/evaluate.h"

int kiln_eval_is_export(const char *dir) {
    char p[4300];
    struct stat st;
    snprintf(p, sizeof p, "%s/model.json", dir ? dir : "");
    return dir && stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

kiln_status kiln_eval_export(const kiln_eval_opts *o, const char *split, int *usage_error) {
    kiln_servable *s = NULL;
    kiln_cfg *cfg = NULL;
    kiln_inputs in = {0};
    kiln_metrics *mt = NULL;
    kiln_evaluator ev = {.fast = 1};
    char path[4300];
    if (o->checkpoint) return kiln_error(KILN_ERR_INVALID, "--checkpoint: %s is an export version, not a run", o->run);
    kiln_status st = kiln_servable_load(o->run, &s);
    if (!st) {
        kiln_servable_info info = kiln_servable_get_info(s);
        if (o->data) snprintf(path, sizeof path, "%s", o->data);
        else if (info.source_run) snprintf(path, sizeof path, "%s/config.yaml", info.source_run);
        else
            st = kiln_error(KILN_ERR_INVALID, "%s: model.json names no source run to take data from: pass --data CONFIG",
                            o->run);
    }
    if (!st) st = kiln_config_load(path, &cfg);
    if (!st) st = kiln_inputs_resolve_paths(cfg, NULL);
    if (!st) st = kiln_config_resolve(cfg);
    kiln_model *m = s ? kiln_servable_model(s) : NULL;
    if (!st && (st = kiln_inputs_load(cfg, m, &in)) && in.data_error) *usage_error = 0;
    const kiln_dataset *ds = NULL;
    if (!st) {
        ds = !strcmp(split, "test") ? in.test : !strcmp(split, "validation") ? in.validation : in.train;
        if (!ds) st = kiln_error(KILN_ERR_INVALID, "%s: the config has no %s data", path, split);
    }
    if (!st) {
        *usage_error = 0;
        int classes = m->task == KILN_TASK_CLASSIFICATION ? (int)m->n_outputs : 0;
        if (!(mt = kiln_eval_metrics_new(cfg, m))) st = KILN_ERR_INVALID;
        ev.m = m;
        if (!st) st = kiln_evaluate(&ev, ds, &in.loader, mt);
        if (!st) {
            printf("%s (%lld rows, %s, %s):\n", split, (long long)kiln_metrics_rows(mt), o->run,
                   kiln_servable_get_info(s).precision);
            kiln_eval_print_metrics(mt);
            if (classes > 0 && !o->quiet) kiln_metrics_print_confusion(mt, NULL, stdout);
        }
    }
    kiln_evaluator_free(&ev);
    kiln_metrics_free(mt);
    kiln_inputs_free(&in);
    kiln_cfg_free(cfg);
    kiln_servable_free(s);
    return st;
}
