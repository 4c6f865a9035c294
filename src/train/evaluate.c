/* evaluate.c — see evaluate.h. */
#include "train/evaluate.h"

#include <stdio.h>
#include <string.h>

kiln_plan *kiln_evaluator_plan(kiln_evaluator *e, int batch) {
    int free_slot = -1;
    for (int i = 0; i < KILN_EVAL_PLANS; i++) {
        if (e->plan[i] && e->batch[i] == batch) return e->plan[i];
        if (!e->plan[i] && free_slot < 0) free_slot = i;
    }
    if (free_slot < 0) { /* the full batch plus each split's remainder: 4 is plenty */
        kiln_error(KILN_ERR_INVALID, "evaluate: more than %d batch sizes", KILN_EVAL_PLANS);
        return NULL;
    }
    kiln_node *outs[2] = {e->m->output, e->m->loss};
    e->plan[free_slot] = kiln_plan_new(e->m->graph, &(kiln_plan_opts){.outputs = outs, .n_outputs = 2, .batch = batch,
                                                                       .deterministic = !e->fast});
    e->batch[free_slot] = batch;
    return e->plan[free_slot];
}

kiln_status kiln_evaluate(kiln_evaluator *e, const kiln_dataset *ds, const kiln_loader_config *lc, kiln_metrics *mt) {
    kiln_loader_config c = *lc;
    c.shuffle = 0, c.drop_last = 0, c.prefetch = 1;
    kiln_loader *l;
    kiln_status st = kiln_loader_new(ds, &c, &l);
    if (st) return st;
    kiln_metrics_reset(mt);
    int B = (int)c.batch_size, rows;
    kiln_plan *full = kiln_evaluator_plan(e, B);
    if (!full) {
        kiln_loader_free(l);
        return KILN_ERR_NOMEM;
    }
    float *x = kiln_plan_data(full, e->m->input);
    void *y = kiln_plan_data(full, e->m->target);
    kiln_shape xs = kiln_plan_shape(full, e->m->input), ys = kiln_plan_shape(full, e->m->target);
    size_t xrow = (size_t)(kiln_shape_numel(&xs) / B) * sizeof(float);
    size_t yrow = (size_t)(kiln_shape_numel(&ys) / B) * kiln_dtype_size(kiln_node_dtype(e->m->target));
    int r;
    while (st == KILN_OK && (r = kiln_loader_next(l, x, y, &rows)) == 1) {
        kiln_plan *p = full;
        if (rows < B) { /* the final partial batch: its own plan */
            if (!(p = kiln_evaluator_plan(e, rows))) {
                st = KILN_ERR_NOMEM;
                break;
            }
            memcpy(kiln_plan_data(p, e->m->input), x, (size_t)rows * xrow);
            memcpy(kiln_plan_data(p, e->m->target), y, (size_t)rows * yrow);
        }
        if ((st = kiln_plan_forward(p))) break;
        st = kiln_metrics_add(mt, kiln_plan_data(p, e->m->output), kiln_plan_data(p, e->m->target), rows,
                              *(const float *)kiln_plan_data(p, e->m->loss));
    }
    if (st == KILN_OK && r < 0) st = KILN_ERR_INVALID;
    kiln_loader_free(l);
    return st;
}

void kiln_evaluator_free(kiln_evaluator *e) {
    for (int i = 0; i < KILN_EVAL_PLANS; i++) kiln_plan_free(e->plan[i]);
    memset(e->plan, 0, sizeof e->plan);
}

kiln_metrics *kiln_eval_metrics_new(const kiln_cfg *cfg, const kiln_model *m) {
    const kiln_cfg *ms = kiln_cfg_at(cfg, "metrics");
    const char *names[32];
    int n = 0, k = 5;
    for (int i = 0; ms && i < ms->n_items && n < 32; i++) {
        names[n++] = ms->items[i]->items[0]->key;
        if (!strcmp(names[n - 1], "top_k_accuracy"))
            k = (int)kiln_cfg_int(ms->items[i]->items[0], "k", 5);
    }
    int classes = m->task == KILN_TASK_CLASSIFICATION ? (int)m->n_outputs : 0;
    return kiln_metrics_new(classes, m->n_outputs, names, n, k);
}

void kiln_eval_print_metrics(const kiln_metrics *mt) {
    for (int i = 0; i < kiln_metrics_count(mt); i++)
        printf("  %-16s %.6f\n", kiln_metrics_name(mt, i), kiln_metrics_value(mt, i));
}
