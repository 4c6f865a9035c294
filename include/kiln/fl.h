/* kiln/fl.h — federated learning: `kiln fl server`, `kiln fl client`, `kiln fl simulate`
 * (src/dist/fl_*.c; docs/federated.md).
 *
 * Vocabulary as Flower's: a server holds the global model and runs rounds; each round it samples
 * clients (fraction_fit of those waiting, at least min_clients), sends them the global weights,
 * lets each train locally for E epochs with the ordinary kiln trainer, and aggregates what comes
 * back weighted by sample counts (FedAvg; FedProx adds mu/2 |w - w_global|^2 to the clients'
 * loss; FedAdam / FedYogi treat the averaged change as a pseudo-gradient for a server-side
 * optimizer, Reddi et al. 2021 "Adaptive Federated Optimization").
 *
 * Invariants. An update reaches the aggregate only after it parsed as safetensors, named every
 * parameter of the model with its shape, held only finite values and passed the norm rule; the
 * global model changes only at the end of a round that gathered at least min_clients updates (a
 * round with fewer is retried), so nothing a client sends can corrupt it. The aggregate is
 * summed in double and rounded once.
 */
#ifndef KILN_FL_H
#define KILN_FL_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/graph.h"
#include "kiln/status.h"

/* ---- strategies ---- */

typedef enum { KILN_FL_FEDAVG = 0, KILN_FL_FEDPROX, KILN_FL_FEDADAM, KILN_FL_FEDYOGI } kiln_fl_kind;

typedef struct {
    kiln_fl_kind kind;
    double mu;                /* FedProx's proximal weight (clients use it); default 0.01 */
    double server_lr;         /* FedAdam / FedYogi: eta (default 0.01) */
    double beta1, beta2, tau; /* defaults 0.9, 0.99, 1e-3 */
    double max_norm;          /* > 0: updates whose change |w_i - w_global|_2 exceeds it are ... */
    int clip;                 /* ... scaled down to max_norm (1) or rejected (0, the default) */
    /* Differential privacy (DP-FedAvg, McMahan et al. 2018): dp_noise > 0 clips every client's
     * change to dp_clip, weighs clients equally, and adds N(0, (dp_noise dp_clip / m)^2) to
     * each value of the mean of the m clipped changes; kiln_fl_dp_epsilon accounts for it. */
    double dp_noise; /* noise multiplier sigma (0: off) */
    double dp_clip;  /* S, the L2 bound of one client's change (default 1) */
    double dp_delta; /* the delta epsilon is reported for (default 1e-5) */
    uint64_t seed;   /* the noise's seed (the config's seed) */
} kiln_fl_opts;

/* "fedavg" ... "fedyogi"; -1 for an unknown name. */
int kiln_fl_kind_parse(const char *name);
const char *kiln_fl_kind_name(kiln_fl_kind k);
/* Flower's defaults for k. */
kiln_fl_opts kiln_fl_opts_default(kiln_fl_kind k);

/* The server's state across rounds: the adaptive optimizers' moments over the trainable part
 * (NULL for FedAvg / FedProx). */
typedef struct {
    kiln_fl_opts o;
    size_t n, n_trainable;
    float *m, *v;
    const unsigned char *used; /* [n]: 1 where the flat layout holds a parameter (NULL: all);
                                  DP noise goes only there */
    int64_t applied;           /* rounds aggregated so far (the noise's stream) */
} kiln_fl_strategy;

kiln_status kiln_fl_strategy_init(kiln_fl_strategy *s, const kiln_fl_opts *o, size_t n,
                                  size_t n_trainable);
void kiln_fl_strategy_free(kiln_fl_strategy *s);

/* One round's aggregate: sum of samples * update (in double) and the sample total. */
typedef struct {
    size_t n;
    double *sum;
    double weight;
    int count;
} kiln_fl_accum;

kiln_status kiln_fl_accum_init(kiln_fl_accum *a, size_t n);
void kiln_fl_accum_reset(kiln_fl_accum *a);
void kiln_fl_accum_free(kiln_fl_accum *a);

/* Checks update [n] against global [n] before it may be added: every value finite, and the
 * change's L2 norm within o->max_norm (clipped in place when o->clip). *norm gets the norm of
 * the change as it came. KILN_ERR_INVALID naming the problem when refused. */
kiln_status kiln_fl_check_update(const kiln_fl_opts *o, const float *global, float *update,
                                 size_t n, double *norm);
/* Adds a checked update trained on `samples` rows (> 0). */
void kiln_fl_accum_add(kiln_fl_accum *a, const float *update, double samples);
/* The weight an update gets: its samples, or 1 for every client under DP. */
double kiln_fl_weight(const kiln_fl_opts *o, double samples);
/* (epsilon, delta)-DP of `rounds` rounds of the Gaussian mechanism with noise multiplier sigma
 * on a client sample drawn with probability q per client: the Renyi-DP of the sampled Gaussian
 * mechanism at integer orders 2..256 (Mironov et al. 2019), composed over the rounds and
 * converted (eps = min over orders of rounds * rdp + log(1/delta) / (order - 1)). */
double kiln_fl_dp_epsilon(double q, double sigma, int64_t rounds, double delta);
/* The end of a round: global [n] becomes the sample-weighted mean of the updates (FedAvg,
 * FedProx), or global + the server optimizer's step on that mean's change (FedAdam, FedYogi,
 * over the trainable part; the rest, batch-norm statistics, is averaged). */
kiln_status kiln_fl_strategy_apply(kiln_fl_strategy *s, const kiln_fl_accum *a, float *global);

/* ---- secure aggregation (fl_secagg.c) ---- */

/* A cohort member's masked contribution: samples * w in fixed point (2^-16) plus the pairwise
 * masks with every other member of cohort (comma-separated ids, me among them), derived from
 * the clients' shared key and tag (round and attempt). out [n]. */
kiln_status kiln_fl_secagg_mask(const char *key, const char *cohort, const char *me,
                                const char *tag, const float *w, size_t n, double samples,
                                uint64_t *out);
/* sum += masked (modulo 2^64). */
void kiln_fl_secagg_add(uint64_t *sum, const uint64_t *masked, size_t n);
/* The sum of every member's contribution (masks cancelled): sum of samples * w. */
void kiln_fl_secagg_unmask(const uint64_t *sum, size_t n, double *out);

/* ---- partitions (simulation) ---- */

/* Splits rows 0..n-1 (labels [n]: class ids 0..classes-1) among clients: "iid" (a random
 * equal split), "dirichlet:ALPHA" (per class, shares drawn from Dirichlet(ALPHA)), "shards:K"
 * (rows sorted by label cut into clients*K shards, K random shards each: McMahan et al.).
 * rows_out[c] (malloc'd, ascending) and counts[c] for c < clients. KILN_ERR_INVALID for a bad
 * spec. */
kiln_status kiln_fl_partition(const char *spec, const int32_t *labels, int64_t n, int classes,
                              int clients, uint64_t seed, int64_t **rows_out, int64_t *counts);

/* ---- wire format ---- */

/* The model's parameters (flat [kiln_graph_params_size] values) as a safetensors file in
 * memory, with metadata pairs meta_kv[2i], [2i+1]. *out is malloc'd. */
kiln_status kiln_fl_encode(kiln_graph *g, const float *flat, const char *const *meta_kv, int n_meta,
                           char **out, size_t *len);
/* Parses a safetensors body into flat [params size] for g's layout: every parameter present,
 * F32 with g's shape, nothing else (flat is untouched unless all of it holds). label names the
 * source in messages. Metadata is read with kiln_fl_meta. */
kiln_status kiln_fl_decode(kiln_graph *g, const void *body, size_t len, const char *label,
                           float *flat);
/* The same for secure aggregation's masked vectors: I64 tensors of the parameters' shapes. */
kiln_status kiln_fl_encode_masked(kiln_graph *g, const uint64_t *flat, const char *const *meta_kv,
                                  int n_meta, char **out, size_t *len);
kiln_status kiln_fl_decode_masked(kiln_graph *g, const void *body, size_t len, const char *label,
                                  uint64_t *flat);
/* A metadata value of a safetensors body (copied into buf); KILN_ERR_NOTFOUND when absent. */
kiln_status kiln_fl_meta(const void *body, size_t len, const char *key, char *buf, size_t cap);

/* ---- commands ---- */

typedef struct {
    const char *config_path;
    const char *const *sets;
    int n_sets;
    const char *runs_dir; /* default "runs" */
    const char *name;     /* run name */
    const char *resume;   /* a run folder or "latest" */
    int rounds;
    int min_clients;     /* updates a round needs (default 2) */
    int min_available;   /* clients waiting before a round is sampled (0: min_clients) */
    double fraction_fit; /* default 1 */
    int local_epochs;    /* default 1 */
    kiln_fl_opts strategy;
    double round_timeout; /* seconds a round waits for updates (default 600) */
    double wait_timeout;  /* seconds the server waits for enough clients (0: for ever) */
    int export_every;     /* export the global model every N rounds (0: only at the end) */
    int max_retries;      /* a round retried at most this many times (default 5) */
    int secure_agg;       /* clients mask their updates pairwise; the server sees the sum only */
    /* transport */
    const char *host;                           /* default 127.0.0.1 */
    int port;                                   /* default 8080; 0: any (printed) */
    const char *token;                          /* shared bearer token (NULL: none) */
    const char *tls_cert, *tls_key, *client_ca; /* PEM files */
    const char *port_file;                      /* write the bound port here (tests) */
    int eval_limit;                             /* evaluate on the first N test rows (0: all) */
    int argc;
    const char *const *argv;
} kiln_fl_server_opts;

typedef struct {
    char run_dir[4096];
    int usage_error;
    double accuracy; /* the last evaluation's accuracy (NaN when none) */
} kiln_fl_result;

kiln_status kiln_fl_server(const kiln_fl_server_opts *o, kiln_fl_result *r);

typedef struct {
    const char *config_path;
    const char *const *sets; /* overrides of the config (--set, --data) */
    int n_sets;
    const char *server; /* "http://127.0.0.1:8080" */
    const char *id;     /* client id (default host-pid) */
    const char *token;
    const char *ca_file, *cert_file, *key_file;
    const char *work_dir; /* local runs (default: a temporary folder, removed) */
    int64_t limit;        /* use only the first N training rows (0: all) */
    int shard, shards;    /* use part shard (0-based) of shards of the training rows */
    int threads;
    double poll_seconds;    /* default 0.5 */
    double give_up_seconds; /* stop when the server cannot be reached this long (default 60) */
    const char *inject;     /* tests: garbage | shape | nan | scale:K | drop | sleep:S */
    const char *secagg_key; /* the secret the clients share for secure aggregation */
} kiln_fl_client_opts;

/* Runs until the server says the federation is over (KILN_OK) or refuses this client. */
kiln_status kiln_fl_client(const kiln_fl_client_opts *o, int *usage_error);

typedef struct {
    kiln_fl_server_opts s; /* runs_dir, rounds, strategy, local_epochs, fraction_fit, ... */
    int clients;
    const char *partition; /* "iid" (default), "dirichlet:0.3", "shards:2" */
    int64_t limit;         /* use only the first N training rows (0: all) */
} kiln_fl_sim_opts;

kiln_status kiln_fl_simulate(const kiln_fl_sim_opts *o, kiln_fl_result *r);

#endif
