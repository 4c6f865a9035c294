/* tb_hooks.h — what kiln train writes for TensorBoard (log.tensorboard), kept out of the
 * trainer's loop: the trainer calls these at its logging points and epoch ends, and they do
 * nothing when TensorBoard output is off (hooks NULL).
 *
 * Layout of a run folder (one TensorBoard run per folder, as Keras' TensorBoard callback does):
 *   <run>/events.out.tfevents.*             hparams session start/end, the config (Text tab)
 *   <run>/train/events.out.tfevents.*       scalars of the training split, histograms
 *   <run>/validation/events.out.tfevents.*  validation scalars, sample and confusion images
 *   <run>/test/events.out.tfevents.*        test scalars (the end of training)
 *   <run>/projector_config.pbtxt, <run>/projector/   the Embedding Projector's files
 * and <runs>/events.out.tfevents.*.experiment, the HParams experiment summary of every run in
 * the runs folder (so `tensorboard --logdir runs` compares them all).
 * Scalar tags: "batch_<name>" for the running values logged every log.every_steps (loss,
 * learning_rate, samples_per_second), "epoch_<name>" for values over a whole pass of a split
 * (the epoch's training metrics, each validation, the test); the x axis is the global step. So
 * TensorBoard draws train and validation epoch_loss on one chart, like Keras runs.
 *
 * TensorBoard output never stops training: the first failure (disk full, ...) prints one warning
 * and turns it off for the rest of the run.
 */
#ifndef KILN_TB_HOOKS_H
#define KILN_TB_HOOKS_H

#include <stdint.h>

#include "kiln/config.h"
#include "kiln/inputs.h"
#include "kiln/metrics.h"
#include "kiln/model.h"
#include "kiln/run.h"
#include "kiln/tboard.h"
#include "train/progress.h"

typedef struct kiln_tb_hooks kiln_tb_hooks;

/* Opens the run's event file and writes the config text, the hparams session start and the
 * experiment summary; *out is NULL when log.tensorboard is false. resumed: the run continues
 * from a checkpoint at step, so each event file starts with a SessionLog START at step + 1 (a
 * reader drops what an earlier attempt logged after the checkpoint). Failures are warnings. */
void kiln_tb_hooks_open(const kiln_cfg *cfg, kiln_model *m, const kiln_inputs *in, kiln_rundir *run,
                        kiln_progress *prog, int64_t step, int resumed, kiln_tb_hooks **out);

/* One metric point, as kiln_run_log_metric got it. per_batch: a running value of the step loop
 * (tag "batch_<name>"; metrics.jsonl's batch_loss is the tag batch_loss), else a value over a
 * whole pass of the split ("epoch_<name>"). */
void kiln_tb_hooks_scalar(kiln_tb_hooks *h, int64_t step, kiln_split split, const char *name,
                          double value, int per_batch);

typedef struct {
    int64_t step;
    int64_t epoch;             /* epochs completed (1-based) */
    const float *eval_weights; /* the weights validation used (EMA), or NULL: the graph's own */
    float *swap;               /* kiln_graph_params_size floats of scratch (for eval_weights) */
    const kiln_metrics *val;   /* this epoch's validation metrics, or NULL when none ran */
} kiln_tb_epoch;

/* At an epoch end, after validation: histograms of every parameter and gradient (every
 * log.histograms_every_epochs), the validation samples grid and confusion matrix (every
 * log.images_every_epochs), the projector's embeddings (every epoch with validation). */
void kiln_tb_hooks_epoch_end(kiln_tb_hooks *h, const kiln_tb_epoch *e);

/* The hparams session status a run's end gets: "finished" STATUS_SUCCESS, "pruned" (kiln tune
 * stopped it) STATUS_UNKNOWN (TensorBoard's Status has no pruned, and it is no failure),
 * anything else ("failed") STATUS_FAILURE. */
kiln_tb_status kiln_tb_hooks_end_status(const char *status);

/* Writes the hparams session end (kiln_tb_hooks_end_status; "stopped" writes none, as the run
 * may be resumed) and frees everything. NULL is a no-op. */
void kiln_tb_hooks_close(kiln_tb_hooks *h, const char *status);

/* The model's graph was replaced (a new stage): drops what was compiled on the old one. */
void kiln_tb_hooks_model_changed(kiln_tb_hooks *h);

#endif
