/* kiln/trainer.h — kiln train and kiln eval as library calls (the CLI is a thin shell).
 *
 * kiln_train: config (+ --set overrides) -> run folder (DESIGN.md §3) -> a trained model with
 * checkpoints, metrics and logs; or --resume: continue the newest complete checkpoint of a run so
 * that the final weights equal an uninterrupted run's. SIGINT/SIGTERM checkpoint and stop
 * cleanly (status "stopped"); a NaN/Inf loss stops the run (status "failed") and leaves the last
 * good checkpoint as it was.
 */
#ifndef KILN_TRAINER_H
#define KILN_TRAINER_H

#include <stddef.h>

#include <signal.h>

#include "kiln/config.h"
#include "kiln/graph.h"
#include "kiln/inputs.h"
#include "kiln/metrics.h"
#include "kiln/optim.h"
#include "kiln/run.h"
#include "kiln/status.h"

/* What a layer above the trainer adds to training (src/dist/ for data parallel): callbacks the
 * trainer calls at fixed points. The trainer knows nothing of ranks or MPI; every process of a
 * job calls the same hooks in the same order, so the ones that communicate (all but writer,
 * step_begin, grads_ready and log) are collectives. A failure a hook reports ends training on
 * every process. */
typedef struct {
    kiln_graph *graph;
    kiln_optim *opt;
    kiln_ema *ema;                   /* NULL: none */
    void *state;                     /* where training stands (step, epoch, ...): plain bytes */
    size_t state_size;
    float *best;                     /* restore_best's saved weights (params size) or NULL */
    kiln_rundir *run;                /* the writer's run folder (NULL elsewhere) */
    volatile sig_atomic_t *signal;   /* SIGINT / SIGTERM received (0: none) */
} kiln_train_sync;

typedef struct {
    void *ctx;
    int writer; /* 1: this process owns the run folder (a single process is always the writer) */
    /* Once, after the config, model and data were loaded or failed to (st, *usage: a config
     * error). Returns KILN_OK only when every process succeeded and they agree; may shard in's
     * loaders and evaluation splits. config_hash is "" when the config did not load. */
    kiln_status (*setup)(void *ctx, kiln_status st, int *usage, const char *config_hash,
                         const kiln_cfg *cfg, kiln_inputs *in);
    /* The run folder: the writer's outcome and path (dir) in; every process's dir out. */
    kiln_status (*run_folder)(void *ctx, kiln_status st, char *dir, size_t cap);
    /* Before the first step (after the writer restored a checkpoint): every process's
     * parameters, optimizer and state made the writer's, and checked. */
    kiln_status (*begin)(void *ctx, kiln_status st, const kiln_train_sync *s);
    /* Batch `batch` of the epoch (global numbering) runs `rows` rows here; its gradients go to
     * grads (the flat buffer of kiln_graph_grads; a stage switch rebuilds the model, so it can
     * move between steps). */
    void (*step_begin)(void *ctx, int64_t batch, int rows, float *grads);
    /* During backward: gradients [from, trainable size) are final (kiln_plan_on_grads). */
    void (*grads_ready)(void *ctx, size_t from);
    /* After backward, before the update: the gradients become the global batch's; *loss and
     * *rows (this process's in) the global batch's out; *stop (this process's signal in) the
     * signal every process stops on after this step (0: none). */
    kiln_status (*step_end)(void *ctx, float *grads, float *loss, int *rows, int *stop);
    /* A split's metrics: this process's part in, the whole split's out. */
    kiln_status (*reduce_metrics)(void *ctx, kiln_metrics *mt);
    /* Non-trainable state (batch-norm running statistics) made equal: n floats at p. */
    kiln_status (*sync_buffers)(void *ctx, float *p, size_t n);
    /* Where a process that is not the writer logs what it prints (log.rank-K.txt). */
    void (*log)(void *ctx, const char *line);
    /* Synchronized batch norm: set (by setup at the latest) to have the training plans' batch
     * norms reduce their statistics through it (kiln_plan_on_reduce; a collective). NULL: local
     * batch statistics. A failure in backward must also fail the next step_end. */
    kiln_reduce_fn batch_reduce;
} kiln_train_hooks;

typedef struct {
    const char *config_path;  /* NULL when resuming */
    const char *const *sets;  /* "key.path=value" overrides */
    int n_sets;
    const char *name;         /* run name (default: the experiment) */
    const char *runs_dir;     /* default "runs" */
    const char *resume;       /* NULL, "latest", or a run folder */
    int threads;              /* 0: train.threads, else all cores */
    int quiet;                /* no progress on the terminal */
    int profile_steps;        /* > 0: time every op for this many steps (after 5 warm-up steps):
                                 RUN/trace.json (Chrome trace) and a per-op table (RUN/profile.txt) */
    int dry_run;              /* build the model (each stage's) without reading any data,
                                 print its summary on stdout, and return: no run folder */
    int argc;                 /* the command line, recorded in run.json (argc 0: none) */
    const char *const *argv;
    const kiln_train_hooks *hooks; /* NULL: none (kiln/dist.h makes them for data parallel) */
} kiln_train_opts;

typedef struct {
    char run_dir[4096];       /* the run folder */
    int usage_error;          /* the failure was the config's or the command line's (exit 2) */
    const char *status;       /* "finished", "stopped", "failed" */
} kiln_train_result;

kiln_status kiln_train(const kiln_train_opts *o, kiln_train_result *r);

typedef struct {
    const char *run;          /* a run folder */
    const char *split;        /* "test" (default), "validation", "train" */
    const char *checkpoint;   /* NULL: the newest; or "step-N" / "best" */
    int quiet;
    /* run may also be an export version folder (holding model.json; int8 and bf16 versions of
     * kiln optimize included): its data comes from data (an experiment config), else from the
     * config.yaml of the run model.json names as its source; nothing is written */
    const char *data;
} kiln_eval_opts;

/* Prints the metrics (and a confusion matrix for classifiers) and writes eval-<split>.json into
 * the run folder; where that cannot be written (a read-only run folder), a warning on stderr
 * instead: the evaluation itself succeeded. */
kiln_status kiln_eval(const kiln_eval_opts *o, int *usage_error);

#endif
