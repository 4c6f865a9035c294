/* prune.h — train.prune: gradual magnitude pruning inside the training loop (trainer-private;
 * docs/optimize.md "Pruning"). */
#ifndef KILN_TRAIN_PRUNE_H
#define KILN_TRAIN_PRUNE_H

#include "kiln/config.h"
#include "kiln/graph.h"
#include "kiln/optim.h"

typedef struct kiln_pruner kiln_pruner;

/* The pruner of cfg (a stage's effective config): *out NULL when it has no train.prune.
 * batches: steps per epoch; total_epochs: the run's (over all stages). old (may be NULL): the
 * previous stage's pruner, whose masks carry over. Config errors (end_epoch before start_epoch
 * or after the run's last epoch, a glob matching no kernel) are KILN_ERR_INVALID with file:line. */
kiln_status kiln_pruner_new(const kiln_cfg *cfg, kiln_graph *g, int64_t batches,
                            int64_t total_epochs, const kiln_pruner *old, kiln_pruner **out);
void kiln_pruner_free(kiln_pruner *p);
/* Zeroes the gradients of pruned values (before the optimizer step). p may be NULL. */
void kiln_pruner_mask_grads(const kiln_pruner *p, float *grads);
/* After `step` completed updates: recomputes the masks when step is an update point of the
 * schedule, then holds every pruned value at zero in params, the optimizer's slots and the EMA
 * weights (opt, ema may be NULL). *updated (may be NULL) is 1 when the masks were recomputed.
 * p may be NULL. */
kiln_status kiln_pruner_step(kiln_pruner *p, kiln_graph *g, kiln_optim *opt, float *ema,
                             int64_t step, int *updated);
/* The target sparsity of the schedule at step (what the masks were last made for). */
double kiln_pruner_target(const kiln_pruner *p, int64_t step);
/* The masks as U8 tensors named after their parameters, in a safetensors file at path. */
kiln_status kiln_pruner_save(const kiln_pruner *p, const kiln_graph *g, const char *path);
/* Reads masks saved by kiln_pruner_save; a missing file leaves the masks as they are (a
 * checkpoint from before pruning was on). */
kiln_status kiln_pruner_load(kiln_pruner *p, const kiln_graph *g, const char *path);

#endif
