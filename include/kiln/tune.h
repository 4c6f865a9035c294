/* kiln/tune.h — hyperparameter search (src/tune/; docs/tune.md): the search space of a config's
 * tune: section, the samplers (random, TPE), the pruners (ASHA, median) and the study runner
 * behind `kiln tune`.
 *
 * A space is a list of parameters, each a config key path with a distribution: uniform,
 * loguniform, int (optionally log), or choice (scalars or whole sub-maps). A parameter found
 * inside a choice option ("optimizer: {choice: [{adam: {learning_rate: {loguniform: ...}}}]}")
 * is conditional: it exists only in trials whose parent took that option. Parameters are listed
 * parents first, so sampling in order always knows whether a parameter is active.
 *
 * Values. A trial's point is one double per parameter: the value itself for uniform,
 * loguniform and int, the option's index for choice, and NaN for an inactive parameter.
 *
 * Samplers are pure functions of (space, observations, trial number): the same history and the
 * same seed give the same point, whatever ran before in the process.
 */
#ifndef KILN_TUNE_H
#define KILN_TUNE_H

#include <stdint.h>

#include "kiln/config.h"
#include "kiln/status.h"

typedef enum { KILN_TUNE_UNIFORM = 0, KILN_TUNE_LOGUNIFORM, KILN_TUNE_INT, KILN_TUNE_CHOICE } kiln_tune_kind;
typedef enum { KILN_TUNE_TPE = 0, KILN_TUNE_RANDOM } kiln_tune_sampler;
typedef enum { KILN_TUNE_NOPRUNE = 0, KILN_TUNE_ASHA, KILN_TUNE_MEDIAN } kiln_tune_pruner;

typedef struct {
    char *key; /* config key path ("optimizer.adam.learning_rate") */
    kiln_tune_kind kind;
    double low, high; /* bounds (inclusive) of uniform, loguniform, int */
    int log;          /* loguniform, or int with log: true */
    double step;      /* int: the grid step (1 unless step: says) */
    int n_choices;
    kiln_cfg **choices; /* choice: each option's value (sub-maps without their nested params) */
    int parent;         /* -1, or the index of the choice parameter this one lives under */
    int parent_option;  /* ... and the option it needs */
} kiln_tune_param;

typedef struct {
    kiln_tune_param *params;
    int n_params;
    char *metric; /* objective: "val_accuracy" */
    int maximize;
    int trials;        /* budget (default 20) */
    double time_limit; /* seconds after which no trial starts (0: none) */
    int parallel;      /* trials at once (default 1) */
    /* sampler */
    kiln_tune_sampler sampler;
    uint64_t seed;
    int n_startup; /* random trials before TPE (10) */
    int n_ei;      /* candidates per parameter (24) */
    double gamma;  /* good fraction: n_good = min(ceil(gamma * n), 25) (0.1) */
    double prior_weight; /* 1.0 */
    int optuna31;        /* density: optuna31: kernels without their 1/sigma, as Optuna 3.1-3.4 */
    int multivariate;    /* 1 (default): the parameters active in every trial sampled jointly */
    int ei_weights;      /* 1 (default): the good kernels weighted by their improvement (weights:
                            ei); 0: Optuna's (1 each, the oldest ramped down after 25) */
    double clip_exponent; /* alpha of the bandwidths' floor range * max(0.01, (n + 2)^-alpha),
                             n the estimator's observations: 2 (default); 1 is Optuna's */
    /* pruner */
    kiln_tune_pruner pruner;
    int by_step;         /* resource: 0 epochs, 1 steps */
    double min_resource; /* ASHA: first rung (1) */
    double reduction;    /* ASHA: eta (3) */
    int median_startup;  /* median: finished trials before it prunes (5) */
    double median_warmup; /* median: no pruning before this resource (0) */
    double max_resource;  /* the resource a full trial ends at (train.epochs, or train.max_steps
                             for resource: step; 0: unknown): neither pruner prunes there, as a
                             trial that got there has spent its budget and is complete */
} kiln_tune_space;

/* Reads tune (the tune: map of root, or a --space file's root) into out, checking every key with
 * file:line:column errors (KILN_ERR_INVALID), that every parameter names a config key (each bound
 * and option is applied to a copy of root and resolved), and that the objective metric is given
 * or root has train.early_stopping.monitor. root is the config as loaded (not resolved); NULL
 * (synthetic spaces: tests, benchmarks) checks no key against a config. */
kiln_status kiln_tune_space_parse(const kiln_cfg *tune, const kiln_cfg *root, kiln_tune_space *out);
void kiln_tune_space_free(kiln_tune_space *s);
/* Whether parameter i is active given the earlier values of x. */
int kiln_tune_active(const kiln_tune_space *s, const double *x, int i);
/* Parameter i's value of x as a --set assignment "key=value" into buf (0 ok, -1 too long). */
int kiln_tune_assignment(const kiln_tune_space *s, const double *x, int i, char *buf, size_t cap);
/* Its value as shown to people (a number, a scalar option's text, a map option's one key or
 * its flow YAML) into buf. */
void kiln_tune_display(const kiln_tune_space *s, const double *x, int i, char *buf, size_t cap);

/* ---- samplers ---- */

typedef enum { KILN_TRIAL_COMPLETE = 0, KILN_TRIAL_PRUNED } kiln_tune_obs_state;
typedef struct {
    const double *x;  /* the point ([n_params]) */
    double value;     /* complete: the objective; pruned: its last intermediate value */
    double resource;  /* pruned: the resource (epoch or step) of that value */
    kiln_tune_obs_state state;
} kiln_tune_obs;

/* The point of trial `number` into x ([n_params]) from the finished (complete or pruned)
 * trials obs, in trial order: random while fewer than n_startup are given (or for the random
 * sampler), else TPE (docs/tune.md): multivariate over the parameters active in every trial (as
 * Optuna's TPESampler(multivariate=True)) and univariate for the conditional ones, the good
 * kernels weighted by expected improvement; or, with multivariate 0 and ei_weights 0, as
 * Optuna's default TPESampler. */
kiln_status kiln_tune_suggest(const kiln_tune_space *s, const kiln_tune_obs *obs, int n_obs,
                              uint64_t number, double *x);

/* The log density (ints and choices: log mass) at x[0..n_x) of the Parzen estimator TPE builds
 * for parameter `param` from the observations obs[0..n_obs) (values as in a point): what TPE
 * compares, exposed for tests against Optuna's estimator. */
kiln_status kiln_tune_parzen_logpdf(const kiln_tune_space *s, int param, const double *obs,
                                    int n_obs, const double *x, int n_x, double *out);

/* ---- pruners ----
 * A trial's curve: its intermediate values of the objective, in the order it reported them. */
typedef struct {
    const double *resource, *value;
    int n;
} kiln_tune_curve;

/* ASHA (successive halving without waiting, as Optuna's SuccessiveHalvingPruner with
 * min_early_stopping_rate 0): rung k sits at resource min_resource * eta^k. When trial self's
 * latest report has reached rung *rung, its value there (its first report at or past the rung)
 * joins the rung's values of every trial (curves), and the trial is promoted (*rung + 1, then
 * the next rung is checked) when it is among the best floor(n / eta) of them (the best one
 * while n < eta); otherwise it is pruned (1). A NaN value is pruned. No rung sits at or past
 * s->max_resource (when known). 0: go on. */
int kiln_tune_asha_prune(const kiln_tune_space *s, const kiln_tune_curve *curves, int n, int self,
                         int *rung);
/* Median pruning (Optuna's MedianPruner): once median_startup trials are complete and the latest
 * resource r of self is at least median_warmup, prune when self's best value so far is worse
 * than the median of the complete trials' values at r (each one's latest value at or before r).
 * complete[i]: trial i has finished. */
int kiln_tune_median_prune(const kiln_tune_space *s, const kiln_tune_curve *curves,
                           const int *complete, int n, int self);

/* What the study records for a trial whose process ended, from its run's status (run.json:
 * "finished", "pruned", ...) and whether the tuner had sent it the prune signal (pruning: the
 * points it had then, 0: none). The pruner's decision decides, so that what a study does is a
 * function of the points and not of timing: a trial being pruned is PRUNED even when its run
 * finished before the signal reached it (the tuner then marks the run pruned too:
 * kiln_tune_mark_pruned). Otherwise the run says: FINISHED, PRUNED, or OTHER (failed, or
 * interrupted: resumed). */
typedef enum {
    KILN_TUNE_OUTCOME_OTHER = 0,
    KILN_TUNE_OUTCOME_FINISHED,
    KILN_TUNE_OUTCOME_PRUNED
} kiln_tune_outcome_kind;
kiln_tune_outcome_kind kiln_tune_outcome(const char *run_status, int pruning);
/* Makes a run folder whose process has ended (run_dir, status finished) agree with a study that
 * pruned it: run.json (and the registry, through the run's follower) say pruned, with a message
 * that it had trained to the end before the signal reached it and where the pruner stopped it
 * (resource, by_step: a step, else an epoch); log.txt says so too. The run's lock is taken like
 * kiln train --resume takes it (KILN_ERR_INVALID when a process still holds it). */
kiln_status kiln_tune_mark_pruned(const char *run_dir, double resource, int by_step);

/* ---- importances ----
 * A simple fANOVA-like measure over the complete trials: for each parameter, the share of the
 * objective's variance between groups (choice: by option; numbers: by quartile of rank) of the
 * trials where it is active (eta squared), normalized to sum to 1 over the parameters. out:
 * [n_params]. */
void kiln_tune_importance(const kiln_tune_space *s, const double *const *x, const double *value,
                          int n, double *out);

/* ---- studies (`kiln tune`) ---- */

typedef struct {
    const char *kiln;   /* the kiln binary the trials run */
    const char *config; /* the config file (NULL on resume) */
    const char *space;  /* --space FILE: the tune: map from there instead */
    const char *const *sets;
    int n_sets;
    const char *runs_dir; /* default "runs" */
    const char *study;    /* name (default <experiment>-<time>); on resume the study */
    int resume;
    int trials, parallel; /* 0: the space's */
    int threads;          /* cores for all trials together (0: all online cores) */
    int slurm;            /* trials as srun steps */
    int quiet;
} kiln_tune_opts;

/* Runs (or resumes) a study to its budget: trials as child processes running `kiln train`
 * (docs/tune.md). *interrupted is set when SIGINT/SIGTERM stopped it (resume later). */
kiln_status kiln_tune_run(const kiln_tune_opts *o, int *interrupted);
/* `kiln tune show`: the study's best trial, trials and importances to stdout (study NULL: the
 * list of studies). */
kiln_status kiln_tune_show(const char *runs_dir, const char *study);

#endif
