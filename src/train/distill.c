/* distill.c — train.distill (see train/distill.h, docs/optimize.md "Distillation").
 *
 * The teacher is a graph of its own, built from its own config (a run's config.yaml, or an
 * export's model.json), with its weights loaded once. Each training step copies the student's
 * batch (already normalized by the student's loader: so the teacher must have been trained with
 * the same normalization, which is checked) into the teacher's inference plan, runs forward and
 * writes the logits into the student's plan, where the loss op kiln_softmax_distillation
 * combines them with the student's logits and the labels. The teacher's parameters are never
 * touched and get no gradient. Its plan is compiled for the student's batch size and reused
 * (the final partial batch uses its first rows: inference rows are independent).
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config/cfg_json.h"
#include "kiln/checkpoint.h"
#include "kiln/export.h"
#include "kiln/run.h"
#include "train/distill.h"

struct kiln_distill {
    kiln_servable *servable; /* an export teacher, or NULL */
    kiln_cfg *cfg;           /* a run teacher's config, or NULL */
    kiln_model own;          /* a run teacher's model */
    kiln_model *teacher;     /* &own or the servable's */
    kiln_plan *plan;
    int cap;                 /* the plan's batch */
    int64_t K;
    kiln_node *input, *loss; /* in the student's graph */
};

void kiln_distill_free(kiln_distill *d) {
    if (!d) return;
    kiln_plan_free(d->plan);
    kiln_servable_free(d->servable);
    kiln_model_free(&d->own);
    kiln_cfg_free(d->cfg);
    free(d);
}

kiln_node *kiln_distill_loss(const kiln_distill *d) { return d->loss; }

static int is_file(const char *dir, const char *name) {
    char p[4200];
    struct stat sb;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

static int same_norm(const kiln_normalize *a, const kiln_normalize *b) {
    float sa = a->scale ? a->scale : 1, sb = b->scale ? b->scale : 1;
    if (sa != sb || a->channels != b->channels) return 0;
    for (int c = 0; c < a->channels; c++)
        if (a->mean[c] != b->mean[c] || a->std[c] != b->std[c]) return 0;
    return 1;
}

/* A run folder's model with its newest checkpoint's weights (EMA when kept, as kiln eval). */
static kiln_status load_run(kiln_distill *d, const char *dir, const kiln_cfg *student,
                            char *why, size_t cap) {
    kiln_rundir *run = NULL;
    char path[4400], ckpt[256];
    kiln_status st = kiln_run_open(dir, KILN_RUN_READ, &run);
    if (!st) {
        snprintf(path, sizeof path, "%s/config.yaml", kiln_run_get_info(run).path);
        if (!(st = kiln_config_load(path, &d->cfg))) st = kiln_config_resolve(d->cfg);
    }
    if (!st && !(st = kiln_model_build(d->cfg, &d->own))) st = kiln_graph_init_params(d->own.graph);
    if (!st) st = kiln_run_checkpoint_latest(run, ckpt, sizeof ckpt, NULL, 0);
    if (!st && !(st = kiln_run_checkpoint_path(run, ckpt, path, sizeof path - 32))) {
        strcat(path, "/weights.safetensors");
        st = kiln_checkpoint_load_weights(path, d->own.graph, 1);
    }
    kiln_run_close(run);
    if (st) return st;
    d->teacher = &d->own;
    const kiln_cfg *na = kiln_cfg_at(d->cfg, "data.normalize");
    const kiln_cfg *nb = kiln_cfg_at(student, "data.normalize");
    cJSON *a = na ? kiln_cfg_to_json(na) : NULL, *b = nb ? kiln_cfg_to_json(nb) : NULL;
    if ((a || b) && !cJSON_Compare(a, b, 1))
        snprintf(why, cap, "its data.normalize differs from the student's");
    cJSON_Delete(a), cJSON_Delete(b);
    return KILN_OK;
}

kiln_status kiln_distill_new(const kiln_cfg *cfg, kiln_model *m, const kiln_normalize *norm,
                             kiln_distill **out) {
    *out = NULL;
    const kiln_cfg *dc = kiln_cfg_at(cfg, "train.distill");
    if (!dc) return KILN_OK;
    const kiln_cfg *tk = kiln_cfg_child(dc, "teacher");
    const char *path = kiln_cfg_str(dc, "teacher", "");
    char where[300], why[300] = "", msg[600];
    kiln_cfg_where(tk ? tk : dc, where, sizeof where);
    kiln_distill *d = calloc(1, sizeof *d);
    if (!d) return kiln_error(KILN_ERR_NOMEM, "train.distill: out of memory");
    kiln_status st = KILN_OK;
    if (is_file(path, "model.json")) {
        if (!(st = kiln_servable_load(path, &d->servable))) {
            d->teacher = kiln_servable_model(d->servable);
            if (!same_norm(kiln_servable_preprocessing(d->servable), norm))
                snprintf(why, sizeof why, "its preprocessing differs from the student's "
                         "data.normalize");
        }
    } else if (is_file(path, "config.yaml")) {
        st = load_run(d, path, cfg, why, sizeof why);
    } else {
        snprintf(why, sizeof why, "is neither a run folder (config.yaml) nor an export version "
                 "(model.json)");
    }
    if (st) { /* the teacher's own error, with where it was named */
        snprintf(msg, sizeof msg, "%s", kiln_last_error());
        kiln_distill_free(d);
        return kiln_error(KILN_ERR_INVALID, "%s: train.distill.teacher: %s", where, msg);
    }
    const kiln_model *t = d->teacher;
    char a[96], b[96];
    if (!why[0]) {
        kiln_shape ti = kiln_node_shape(t->input), si = kiln_node_shape(m->input);
        if (!kiln_shape_equal(&ti, &si))
            snprintf(why, sizeof why, "it takes inputs %s, the student %s",
                     kiln_shape_str(&ti, a, sizeof a), kiln_shape_str(&si, b, sizeof b));
        else if (t->task != KILN_TASK_CLASSIFICATION || m->task != KILN_TASK_CLASSIFICATION)
            snprintf(why, sizeof why, "distillation needs two classifiers");
        else if (t->n_outputs != m->n_outputs || kiln_node_shape(t->output).ndim != 2)
            snprintf(why, sizeof why, "it has %lld classes, the student %lld",
                     (long long)t->n_outputs, (long long)m->n_outputs);
    }
    if (why[0]) {
        kiln_distill_free(d);
        return kiln_error(KILN_ERR_INVALID, "%s: train.distill.teacher: %s: %s", where, path, why);
    }
    if (!m->distill_loss) {
        kiln_distill_free(d);
        return kiln_error(KILN_ERR_INVALID, "%s: train.distill: the student needs an output "
                          "[batch, classes] and softmax_cross_entropy", where);
    }
    d->K = m->n_outputs;
    d->input = m->teacher_logits, d->loss = m->distill_loss;
    *out = d;
    return KILN_OK;
}

kiln_status kiln_distill_feed(kiln_distill *d, kiln_plan *p, const float *x, int rows) {
    kiln_model *t = d->teacher;
    if (!d->plan || rows > d->cap) {
        kiln_plan_free(d->plan);
        kiln_shape ps = kiln_plan_shape(p, d->input);
        d->cap = (int)ps.dims[0] > rows ? (int)ps.dims[0] : rows;
        kiln_node *outs[1] = {t->output};
        kiln_plan_opts po = {.outputs = outs, .n_outputs = 1, .batch = d->cap, .deterministic = 1};
        if (!(d->plan = kiln_plan_new(t->graph, &po))) {
            kiln_error_prefix("train.distill: the teacher's plan");
            return KILN_ERR_INVALID;
        }
    }
    kiln_shape is = kiln_node_shape(t->input);
    size_t row = (size_t)kiln_shape_numel(&is);
    memcpy(kiln_plan_data(d->plan, t->input), x, (size_t)rows * row * sizeof(float));
    kiln_status st = kiln_plan_forward(d->plan);
    if (st) return st;
    memcpy(kiln_plan_data(p, d->input), kiln_plan_data(d->plan, t->output),
           (size_t)rows * (size_t)d->K * sizeof(float));
    return KILN_OK;
}
