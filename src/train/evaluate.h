/* evaluate.h — running a model over a dataset in inference mode and accumulating metrics. Plans
 * are compiled once per batch size and cached (the full batch and each split's final partial
 * batch), sharing the graph's parameters. */
#ifndef KILN_EVALUATE_H
#define KILN_EVALUATE_H

#include "kiln/data.h"
#include "kiln/metrics.h"
#include "kiln/model.h"

#define KILN_EVAL_PLANS 4

typedef struct {
    kiln_model *m;
    int fast; /* 1: ordinary plans; 0 (the default, and kiln eval's): deterministic plans */
    int batch[KILN_EVAL_PLANS];
    kiln_plan *plan[KILN_EVAL_PLANS];
} kiln_evaluator;

/* The cached plan for a batch size (training = 0; outputs: model output and loss). */
kiln_plan *kiln_evaluator_plan(kiln_evaluator *e, int batch);
/* Resets mt and adds every row of ds (in file order, normalized as lc says). */
kiln_status kiln_evaluate(kiln_evaluator *e, const kiln_dataset *ds, const kiln_loader_config *lc, kiln_metrics *mt);
void kiln_evaluator_free(kiln_evaluator *e);
/* The metrics the config's metrics: list names (top_k_accuracy's k too) for model m's outputs;
 * NULL when kiln_metrics_new refuses them. */
kiln_metrics *kiln_eval_metrics_new(const kiln_cfg *cfg, const kiln_model *m);
/* "  name   value" per metric, to stdout. */
void kiln_eval_print_metrics(const kiln_metrics *mt);

/* kiln eval of an export version (eval_export.c): 1 when dir holds model.json. */
#include "kiln/trainer.h"
int kiln_eval_is_export(const char *dir);
kiln_status kiln_eval_export(const kiln_eval_opts *o, const char *split, int *usage_error);
#endif
