/* export_run.c — kiln export RUN: a run folder's checkpoint as a servable version (see
 * kiln/export.h).
 *
 * The graph is rebuilt from the run's config.yaml exactly as kiln train and kiln eval build it,
 * and the checkpoint's weights (its EMA copy when there is one) are loaded into it; then
 * kiln_export_graph writes the package. What the loader applied to the data is recovered from
 * the config: scale, mean and std are in data.normalize; only `standardize: true` (statistics
 * measured on the training split) and CSV string labels or image class folders (the class names)
 * need the training data itself, which is then loaded through the same code as training
 * (kiln_inputs_load), so the numbers are the ones training used, bit for bit.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kiln/mem.h"
#include "kiln/checkpoint.h"
#include "kiln/export.h"
#include "kiln/inputs.h"
#include "kiln/run.h"
#include "run/train_state.h"

/* "step-N" with N a plain decimal (no sign, no leading zeros but "step-0"). */
static int is_step_name(const char *s) {
    if (strncmp(s, "step-", 5) || !s[5] || (s[5] == '0' && s[6])) return 0;
    for (const char *p = s + 5; *p; p++)
        if (*p < '0' || *p > '9' || p - s > 24) return 0;
    return 1;
}

/* The checkpoint's folder name: the newest, the best, or the one named (which must exist). */
static kiln_status pick_checkpoint(kiln_rundir *run, const char *which, char *name, size_t cap) {
    const char *id = kiln_run_get_info(run).path;
    if (!which) return kiln_run_checkpoint_latest(run, name, cap, NULL, 0);
    if (!strcmp(which, "best")) {
        char latest[256], path[4400];
        kiln_train_state s;
        kiln_status st = kiln_run_checkpoint_latest(run, latest, sizeof latest, NULL, 0);
        if (!st) st = kiln_run_checkpoint_path(run, latest, path, sizeof path - 16);
        if (st) return st;
        strcat(path, "/state.json");
        if ((st = kiln_train_state_read(path, &s))) return st;
        if (!s.best_checkpoint[0])
            return kiln_error(KILN_ERR_NOTFOUND,
                              "run %s kept no best checkpoint (it had no early stopping)", id);
        snprintf(name, cap, "%s", s.best_checkpoint);
        return KILN_OK;
    }
    if (!is_step_name(which))
        return kiln_error(KILN_ERR_INVALID, "checkpoint '%s': expected step-N or best", which);
    int64_t *steps = NULL, want = strtoll(which + 5, NULL, 10);
    int n = 0, found = 0;
    kiln_status st = kiln_run_checkpoint_list(run, &steps, &n);
    if (st) return st;
    char have[512] = "";
    for (int i = 0; i < n; i++) {
        found |= steps[i] == want;
        size_t used = strlen(have);
        if (used < sizeof have - 32)
            snprintf(have + used, sizeof have - used, "%sstep-%lld", i ? ", " : "",
                     (long long)steps[i]);
    }
    kiln_free(steps);
    if (!found)
        return kiln_error(KILN_ERR_NOTFOUND, "run %s has no complete checkpoint %s (it has: %s)",
                          id, which, n ? have : "none");
    snprintf(name, cap, "%s", which);
    return KILN_OK;
}

typedef struct {
    kiln_inputs in; /* loaded only when the data is needed */
    int have_inputs;
    float mean[256], std[256];
    const char **names; /* [n_names] class names from the data, or NULL */
    int n_names;
    char (*ids)[24]; /* names for classes the data did not name */
} data_facts;

/* preprocessing and class names of what the loader did during training. */
static kiln_status recover_data(const kiln_cfg *cfg, const kiln_model *m, data_facts *d,
                                kiln_export_source *src) {
    kiln_normalize *nm = &src->preprocessing;
    int standardize = kiln_cfg_bool(cfg, "data.normalize.standardize", 0);
    int names = m->task == KILN_TASK_CLASSIFICATION && !kiln_cfg_at(cfg, "model.class_names") &&
                (!strcmp(kiln_cfg_str(cfg, "data.source", "idx"), "csv") ||
                 !strcmp(kiln_cfg_str(cfg, "data.source", "idx"), "images"));
    if (standardize || names) {
        kiln_status st = kiln_inputs_load(cfg, m, &d->in);
        if (st) {
            kiln_error_prefix("export needs the training data to recover %s",
                              standardize ? "the mean and std of data.normalize.standardize"
                                          : "the class names of its labels");
            return st;
        }
        d->have_inputs = 1;
        *nm = d->in.loader.norm;
        int k = (int)m->n_outputs, named = 0;
        for (int c = 0; c < k; c++) named |= kiln_dataset_class_name(d->in.train, c) != NULL;
        if (!named || !names) return KILN_OK;
        d->names = calloc((size_t)k, sizeof *d->names);
        d->ids = calloc((size_t)k, sizeof *d->ids);
        if (!d->names || !d->ids) return kiln_error(KILN_ERR_NOMEM, "export: out of memory");
        for (int c = 0; c < k; c++) {
            d->names[c] = kiln_dataset_class_name(d->in.train, c);
            if (!d->names[c])
                snprintf(d->ids[c], sizeof d->ids[c], "%d", c), d->names[c] = d->ids[c];
        }
        src->class_names = d->names, src->n_class_names = d->n_names = k;
        return KILN_OK;
    }
    nm->scale = (float)kiln_cfg_num(cfg, "data.normalize.scale", 1.0);
    kiln_cfg *mean = kiln_cfg_at(cfg, "data.normalize.mean"),
             *sd = kiln_cfg_at(cfg, "data.normalize.std");
    if (!mean && !sd) return KILN_OK;
    int n = mean ? mean->n_items : 0;
    if (!mean || !sd || sd->n_items != n || n < 1 || n > 256)
        return kiln_error(
            KILN_ERR_INVALID,
            "data.normalize: mean and std need one value per channel (1 to 256; got %d and %d)", n,
            sd ? sd->n_items : 0);
    for (int c = 0; c < n; c++) {
        double v;
        kiln_cfg_parse_num(mean->items[c], &v), d->mean[c] = (float)v;
        kiln_cfg_parse_num(sd->items[c], &v), d->std[c] = (float)v;
    }
    nm->channels = n, nm->mean = d->mean, nm->std = d->std;
    return KILN_OK;
}

kiln_status kiln_export_run(const char *run_dir, const char *checkpoint, const char *base_dir,
                            int64_t version, int64_t *version_out) {
    return kiln_export_run_ex(run_dir, checkpoint, base_dir, version, NULL, version_out);
}

kiln_status kiln_export_run_ex(const char *run_dir, const char *checkpoint, const char *base_dir,
                               int64_t version, const kiln_export_run_opts *o,
                               int64_t *version_out) {
    if (!run_dir || !run_dir[0]) return kiln_error(KILN_ERR_INVALID, "export: no run folder");
    kiln_rundir *run = NULL;
    kiln_cfg *cfg = NULL;
    kiln_model m = {0};
    data_facts d;
    memset(&d, 0, sizeof d);
    char path[4400], ckpt[256], base[4200], real[PATH_MAX];
    kiln_export_source src = {0};
    kiln_status st = kiln_run_open(run_dir, KILN_RUN_READ, &run);
    if (!st) {
        snprintf(path, sizeof path, "%s/config.yaml", kiln_run_get_info(run).path);
        if (!(st = kiln_config_load(path, &cfg))) st = kiln_config_resolve(cfg);
    }
    if (!st && !(st = kiln_model_build(cfg, &m))) st = kiln_graph_init_params(m.graph);
    if (!st) st = pick_checkpoint(run, checkpoint, ckpt, sizeof ckpt);
    if (!st && !(st = kiln_run_checkpoint_path(run, ckpt, path, sizeof path - 32))) {
        size_t len = strlen(path);
        strcat(path, "/prune.safetensors"); /* train.prune was on: pruned kernels stored sparse */
        src.sparse = access(path, F_OK) == 0;
        strcpy(path + len, "/weights.safetensors");
        st = kiln_checkpoint_load_weights(path, m.graph, 1);
    }
    if (!st) st = recover_data(cfg, &m, &d, &src);
    if (!st) {
        const char *rp = realpath(kiln_run_get_info(run).path, real);
        src.model = &m, src.cfg = cfg;
        src.source_run = rp ? rp : kiln_run_get_info(run).path;
        src.source_checkpoint = ckpt;
        src.onnx = o && o->onnx;
        if (!base_dir && snprintf(base, sizeof base, "%s/export", kiln_run_get_info(run).path) >=
                             (int)sizeof base)
            st = kiln_error(KILN_ERR_INVALID, "export: run path %s is too long",
                            kiln_run_get_info(run).path);
        if (!st) st = kiln_export_graph(&src, base_dir ? base_dir : base, version, version_out);
    }
    free(d.names);
    free(d.ids);
    if (d.have_inputs) kiln_inputs_free(&d.in);
    kiln_model_free(&m);
    kiln_cfg_free(cfg);
    kiln_run_close(run);
    return st;
}
