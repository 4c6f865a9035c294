/* tb_explain.h — log.explain: attributions of the first validation samples as TensorBoard
 * images (tag "explain/<method>" in <run>/validation) and PNG files (<run>/explain/
 * epoch-<N>-<method>.png, for kiln board), every log.explain.every_epochs epochs,
 * written by tb_hooks.c at its epoch end (after validation). docs/explain.md, docs/config.md. */
#ifndef KILN_TB_EXPLAIN_H
#define KILN_TB_EXPLAIN_H

#include "kiln/config.h"
#include "kiln/inputs.h"
#include "kiln/model.h"
#include "kiln/tboard.h"
#include "train/progress.h"

typedef struct kiln_tb_explain kiln_tb_explain;

/* NULL when the config has no log.explain, there is no validation split, or the input is not an
 * image ([C, H, W] with C 1 or 3: a warning says so). Reads the samples once. */
kiln_tb_explain *kiln_tb_explain_new(const kiln_cfg *cfg, kiln_model *m, const kiln_inputs *in,
                                     kiln_progress *prog, const char *run_dir);
/* At an epoch end: when due, the attributions (with eval_weights swapped in through swap when
 * given, as validation used them) as one image grid. Returns non-zero on failure (message in
 * kiln_last_error). NULL x: nothing. */
int kiln_tb_explain_epoch(kiln_tb_explain *x, kiln_tb_writer *w, int64_t epoch, int64_t step,
                          const float *eval_weights, float *swap);
/* The model's graph was replaced (a new stage): the explainer is made again at the next use. */
void kiln_tb_explain_model_changed(kiln_tb_explain *x);
void kiln_tb_explain_free(kiln_tb_explain *x);

#endif
