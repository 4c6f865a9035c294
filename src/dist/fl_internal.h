/* fl_internal.h — what the federated server, client and simulation share inside src/dist/:
 * local training with the ordinary trainer (fl_local.c) and the global model's run folder
 * (fl_run.c). */
#ifndef KILN_FL_INTERNAL_H
#define KILN_FL_INTERNAL_H

#include "kiln/fl.h"
#include "kiln/inputs.h"
#include "kiln/metrics.h"
#include "kiln/model.h"
#include "kiln/run.h"
#include "kiln/tboard.h"
#include "train/evaluate.h"

/* ---- local training (fl_local.c) ---- */

typedef struct {
    const char *config_path;
    const char *const *sets;
    int n_sets;
    const char *init_path; /* the global weights: a .safetensors file */
    int epochs;
    double mu;            /* FedProx: > 0 adds mu (w - w_global) to every gradient */
    uint64_t seed_offset; /* added to the training loader's shuffle seed */
    const int64_t *rows;  /* training rows to use (NULL: all) */
    int64_t n_rows;
    int64_t limit;     /* first N training rows (0: all) */
    int shard, shards; /* part shard of shards (shards <= 1: all) */
    int drop_eval;     /* no validation or test split (simulation) */
    int no_early_stop; /* the config has train.early_stopping: turn it off (it needs
                          the validation split drop_eval removes) */
    const char *runs_dir;
    int threads;
    char *metrics; /* out (may be NULL): the local run's final validation metrics,
                      "val_accuracy=0.81;val_loss=0.52" */
    size_t metrics_cap;
} fl_local_opts;

/* Trains once with kiln_train from init_path; the final parameters go into g's flat buffer
 * `out` (g built from the same config), *samples the training rows used. The local run folder
 * is removed afterwards unless keep. */
kiln_status kiln_fl_local_train(const fl_local_opts *o, kiln_graph *g, float *out, int64_t *samples,
                                int *usage, int keep);

/* Sets the flat parameter buffer's alignment gaps to 0 (fl_run.c): bodies carry 0 there. */
void kiln_fl_zero_gaps(kiln_graph *g);
/* The same, returning the mask of parameter positions ([params size], malloc'd; NULL: no memory).
 */
unsigned char *kiln_fl_used_mask(kiln_graph *g);

/* rm -r path (a folder of our own making). */
void kiln_fl_remove_tree(const char *path);

/* ---- the global model and its run folder (fl_run.c) ---- */

typedef struct {
    kiln_cfg *cfg;
    kiln_model m;
    int has_model;
    kiln_inputs in;
    int has_inputs;
    kiln_evaluator ev;
    kiln_metrics *mt;
    kiln_dataset *eval_ds; /* test split (else validation), first eval_limit rows */
    const char *eval_split;
    kiln_rundir *run;
    kiln_tb_writer *tb;
    float *global; /* the graph's parameters: [n] */
    size_t n, n_trainable;
    kiln_fl_strategy strat;
    kiln_fl_accum acc;
    int round;   /* rounds completed */
    int stopped; /* stopped by a signal: the run is "stopped", not "failed" */
    int export_every, rounds;
    double last_acc;
    double dp_q;         /* DP: the chance a client is sampled in a round */
    unsigned char *used; /* [n]: the layout's parameter positions */
    char dir[4096];
} fl_global;

/* Loads the config (with sets), builds the model and its initial weights (the config's seed,
 * as kiln train would), loads the data, and creates the run folder (or reopens o->resume's,
 * restoring the global weights, the strategy's state and the round from its newest
 * checkpoint). what: "server" or "simulate". */
kiln_status kiln_fl_global_open(fl_global *G, const kiln_fl_server_opts *o, const char *what,
                                int *usage);
/* The end of round `round`: evaluate, log (metrics.jsonl, TensorBoard, log.txt, stdout with
 * the extra "name=value" text), checkpoint (weights + strategy state), export every N. */
kiln_status kiln_fl_global_round(fl_global *G, int round, int clients, double samples, int rejected,
                                 const char *extra);
/* Writes the weights of the global model as a .safetensors file (for local training). */
kiln_status kiln_fl_global_write(fl_global *G, const char *path, int round);
/* Final status and export; frees everything. */
kiln_status kiln_fl_global_close(fl_global *G, kiln_status st);

/* Logs a line to stdout and log.txt. */
void kiln_fl_log(fl_global *G, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
