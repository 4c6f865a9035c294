/* eval_run.c — kiln eval: a run's weights on one split (see kiln/trainer.h).
 *
 * Uses the run's own config.yaml (absolute data paths), the newest checkpoint (or the named one,
 * or "best"), and its EMA weights when it has them (what training evaluated). Prints the metrics
 * and, for classifiers, the confusion matrix; writes eval-<split>.json into the run folder (a
 * warning on stderr, not a failure, when it cannot: a read-only run folder).
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/checkpoint.h"
#include "kiln/fileio.h"
#include "kiln/inputs.h"
#include "kiln/run.h"
#include "kiln/trainer.h"
#include "train/evaluate.h"
#include "run/train_state.h"

static kiln_status write_json(const char *dir, const char *split, const char *ckpt, const kiln_metrics *mt, int classes) {
    cJSON *o = cJSON_CreateObject(), *m = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "split", split);
    cJSON_AddStringToObject(o, "checkpoint", ckpt);
    cJSON_AddNumberToObject(o, "rows", (double)kiln_metrics_rows(mt));
    for (int i = 0; i < kiln_metrics_count(mt); i++) {
        double v = kiln_metrics_value(mt, i);
        if (v == v) cJSON_AddNumberToObject(m, kiln_metrics_name(mt, i), v);
        else cJSON_AddNullToObject(m, kiln_metrics_name(mt, i));
    }
    cJSON_AddItemToObject(o, "metrics", m);
    if (classes > 0) {
        const int64_t *cm = kiln_metrics_confusion(mt);
        cJSON *rows = cJSON_CreateArray();
        for (int i = 0; i < classes; i++) {
            cJSON *row = cJSON_CreateArray();
            for (int j = 0; j < classes; j++) cJSON_AddItemToArray(row, cJSON_CreateNumber((double)cm[i * classes + j]));
            cJSON_AddItemToArray(rows, row);
        }
        cJSON_AddItemToObject(o, "confusion_matrix", rows);
    }
    char *text = cJSON_Print(o), path[4200];
    cJSON_Delete(o);
    if (!text) return kiln_error(KILN_ERR_NOMEM, "eval: out of memory");
    snprintf(path, sizeof path, "%s/eval-%s.json", dir, split);
    kiln_status st = kiln_file_write_atomic(path, text, strlen(text));
    free(text);
    return st;
}

kiln_status kiln_eval(const kiln_eval_opts *o, int *usage_error) {
    const char *split = o->split ? o->split : "test";
    *usage_error = 1;
    if (strcmp(split, "test") && strcmp(split, "validation") && strcmp(split, "train"))
        return kiln_error(KILN_ERR_INVALID, "--split %s: expected test, validation or train", split);
    if (kiln_eval_is_export(o->run)) return kiln_eval_export(o, split, usage_error);
    kiln_rundir *run = NULL;
    kiln_cfg *cfg = NULL;
    kiln_model m = {0};
    kiln_inputs in = {0};
    kiln_metrics *mt = NULL;
    kiln_evaluator ev = {0};
    char path[4300], ckpt[256];
    kiln_status st = kiln_run_open(o->run, KILN_RUN_READ, &run);
    if (!st) {
        snprintf(path, sizeof path, "%s/config.yaml", kiln_run_get_info(run).path);
        st = kiln_config_load(path, &cfg);
    }
    if (!st) st = kiln_config_resolve(cfg);
    if (!st) st = kiln_model_build(cfg, &m);
    if (!st && (st = kiln_inputs_load(cfg, &m, &in)) && in.data_error) *usage_error = 0;
    const kiln_dataset *ds = NULL;
    if (!st) {
        ds = !strcmp(split, "test") ? in.test : !strcmp(split, "validation") ? in.validation : in.train;
        if (!ds) st = kiln_error(KILN_ERR_INVALID, "%s: the config has no %s data", path, split);
    }
    /* which checkpoint */
    if (!st) {
        if (!o->checkpoint) {
            st = kiln_run_checkpoint_latest(run, ckpt, sizeof ckpt, NULL, 0);
        } else if (!strcmp(o->checkpoint, "best")) {
            kiln_train_state s;
            char latest[256];
            if (!(st = kiln_run_checkpoint_latest(run, latest, sizeof latest, NULL, 0))) {
                snprintf(path, sizeof path, "%s/checkpoints/%s/state.json", kiln_run_get_info(run).path, latest);
                if (!(st = kiln_train_state_read(path, &s))) {
                    if (!s.best_checkpoint[0]) st = kiln_error(KILN_ERR_NOTFOUND, "%s: the run kept no best checkpoint (no early stopping)", o->run);
                    else snprintf(ckpt, sizeof ckpt, "%s", s.best_checkpoint);
                }
            }
        } else {
            snprintf(ckpt, sizeof ckpt, "%s", o->checkpoint);
        }
    }
    if (!st) {
        *usage_error = 0;
        snprintf(path, sizeof path, "%s/checkpoints/%s/weights.safetensors", kiln_run_get_info(run).path, ckpt);
        st = kiln_checkpoint_load_weights(path, m.graph, 1);
    }
    if (!st) {
        int classes = m.task == KILN_TASK_CLASSIFICATION ? (int)m.n_outputs : 0;
        if (!(mt = kiln_eval_metrics_new(cfg, &m))) st = KILN_ERR_INVALID;
        ev.m = &m;
        if (!st) st = kiln_evaluate(&ev, ds, &in.loader, mt);
        if (!st) {
            printf("%s (%lld rows, %s):\n", split, (long long)kiln_metrics_rows(mt), ckpt);
            kiln_eval_print_metrics(mt);
            if (classes > 0 && !o->quiet) {
                /* class names: the data's (CSV string labels), else model.class_names */
                const char *cn[1024];
                int named = 0;
                kiln_cfg *mc = kiln_cfg_at(cfg, "model.class_names");
                for (int c = 0; c < classes && c < 1024; c++) {
                    cn[c] = kiln_dataset_class_name(ds, c);
                    if (!cn[c] && mc && c < mc->n_items) cn[c] = mc->items[c]->text;
                    named |= cn[c] != NULL;
                }
                kiln_metrics_print_confusion(mt, named && classes <= 1024 ? cn : NULL, stdout);
            }
            /* The metrics are out: a run folder that cannot take the file (read-only, full)
             * gets a warning, not a failure. */
            if (write_json(kiln_run_get_info(run).path, split, ckpt, mt, classes)) {
                fflush(stdout);
                fprintf(stderr, "warning: eval-%s.json not written (%s): the metrics above are "
                                "not saved in the run folder\n", split, kiln_last_error());
                kiln_error_clear();
            }
        }
    }
    kiln_evaluator_free(&ev);
    kiln_metrics_free(mt);
    kiln_inputs_free(&in);
    kiln_model_free(&m);
    kiln_cfg_free(cfg);
    kiln_run_close(run);
    return st;
}
