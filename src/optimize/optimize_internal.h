/* optimize_internal.h — what the files of src/optimize/ share (library-private). */
#ifndef KILN_OPTIMIZE_INTERNAL_H
#define KILN_OPTIMIZE_INTERNAL_H

#include <cjson/cJSON.h>

#include "kiln/config.h"
#include "kiln/data.h"
#include "kiln/model.h"
#include "kiln/optimize.h"

/* ---- fold.c ---- */
typedef struct {
    char *producer, *bn; /* node names: the conv/dense and the batch norm folded into it */
    float epsilon;
} kiln_fold_pair;

typedef struct {
    cJSON *layers;  /* the new flat model.layers: every layer named and with an explicit from: */
    cJSON *record;  /* {"batchnorm_folded": [...], "dropout_removed": [...], "activations_fused": [...]} */
    kiln_fold_pair *pairs;
    int n_pairs, dropout_removed, act_fused;
} kiln_fold_result;

/* Plans the fold on the resolved config cfg and its model m (built from it). */
kiln_status kiln_fold_plan(const kiln_cfg *cfg, const kiln_model *m, kiln_fold_result *out);
/* The new graph's parameters from the old one: by name, with the folded pairs' kernels and
 * biases computed (W' = W * a, b' = (b - mean) * a + beta, a = gamma / sqrt(var + eps), per
 * output channel). Both graphs' parameters must be initialized. */
kiln_status kiln_fold_weights(const kiln_fold_result *f, kiln_graph *src, kiln_graph *dst);
void kiln_fold_free(kiln_fold_result *f);

/* ---- calibrate.c ---- */
typedef struct {
    kiln_node *node; /* a dense or conv node of the model */
    float in_scale;
    int in_signed;
    float lo, hi, clip; /* the input's observed range and the chosen clipping bound */
} kiln_calib_layer;

/* Runs up to `batches` batches of ds through m (fp32) and chooses each quantizable node's
 * input scale: min-max (the largest |x|) or percentile (that percentile of |x|). *layers is a
 * new array (free()). *rows: rows seen. */
kiln_status kiln_calibrate(kiln_model *m, const kiln_dataset *ds, const kiln_loader_config *lc, int batches,
                           int percentile, double pct, kiln_calib_layer **layers, int *n, int64_t *rows);

#endif
