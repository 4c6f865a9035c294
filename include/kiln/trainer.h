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

#include "kiln/status.h"

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
