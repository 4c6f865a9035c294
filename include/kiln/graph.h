/* kiln/graph.h — static graphs: build once, compile into plans, run steps.
 *
 * A kiln_graph holds nodes (inputs, parameters, ops) in creation order, which is a topological
 * order by construction: a node's inputs exist before it. Shapes are checked while building
 * (with batch 1), so a mismatch is reported at the line that made it, naming the op, its inputs
 * and their shapes. Every non-parameter tensor has a leading batch dimension.
 *
 * Parameters live in one flat, 64-byte aligned buffer (trainable ones first, then non-trainable
 * state such as batch-norm running statistics) and their gradients in another flat buffer with
 * the same offsets, so optimizers, clipping, EMA and checkpoints are single passes.
 *
 * A kiln_plan is the graph compiled for one batch size and mode: shape inference at that batch
 * size, execution order, gradient flags, a memory plan (every activation and gradient has a fixed
 * slice of one arena) and backend primitives created once. kiln_plan_forward/backward then walk
 * precomputed arrays: no allocation, no lookup by name, no primitive creation. Several plans may
 * share one graph's parameters (say batch 128 for training and a final partial batch).
 *
 * Builders return NULL on error (message in kiln_last_error()) and accept NULL inputs, returning
 * NULL again, so a model can be built in straight-line code and checked once at the end.
 */
#ifndef KILN_GRAPH_H
#define KILN_GRAPH_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/status.h"
#include "kiln/tensor.h"

typedef struct kiln_graph kiln_graph;
typedef struct kiln_node kiln_node;
typedef struct kiln_plan kiln_plan;

/* ---- initializers (all draw from the graph's seed, stream = parameter index) ---- */
typedef enum {
    KILN_INIT_DEFAULT = 0,    /* whatever the layer's default is (so {0} means default) */
    KILN_INIT_ZEROS,
    KILN_INIT_ONES,
    KILN_INIT_CONSTANT,
    KILN_INIT_GLOROT_UNIFORM, /* U(-a, a), a = sqrt(6 / (fan_in + fan_out)) */
    KILN_INIT_GLOROT_NORMAL,  /* N(0, 2 / (fan_in + fan_out)), truncated at 2 sd like Keras */
    KILN_INIT_HE_UNIFORM,     /* U(-a, a), a = sqrt(6 / fan_in) */
    KILN_INIT_HE_NORMAL,      /* N(0, 2 / fan_in), truncated at 2 sd */
    KILN_INIT_NORMAL,         /* N(0, value^2): embeddings */
    KILN_INIT_COUNT
} kiln_init_kind;

/* "glorot_uniform" -> KILN_INIT_GLOROT_UNIFORM; KILN_INIT_COUNT when unknown. */
kiln_init_kind kiln_init_from_name(const char *name);

typedef struct {
    kiln_init_kind kind;
    float value; /* KILN_INIT_CONSTANT: the constant; KILN_INIT_NORMAL: the standard deviation */
} kiln_init;

/* ---- graph ---- */
kiln_graph *kiln_graph_new(uint64_t seed);
void kiln_graph_free(kiln_graph *g);
uint64_t kiln_graph_seed(const kiln_graph *g);

/* A batch of inputs; dims exclude the batch dimension ([1, 28, 28] for an image). */
kiln_node *kiln_input(kiln_graph *g, const char *name, kiln_dtype dt, int ndim,
                      const int64_t *dims);
/* A parameter (no batch dimension). fan_in/fan_out feed glorot/he (0: derived from shape). */
kiln_node *kiln_param(kiln_graph *g, const char *name, int ndim, const int64_t *dims,
                      kiln_init init, int trainable, int64_t fan_in, int64_t fan_out);

const char *kiln_node_name(const kiln_node *n);
const char *kiln_node_op(const kiln_node *n);
/* Shape at build time (batch dimension 1). */
kiln_shape kiln_node_shape(const kiln_node *n);
kiln_dtype kiln_node_dtype(const kiln_node *n);
kiln_node *kiln_graph_find(kiln_graph *g, const char *name);
/* Renames a node and the parameters it owns ("dense_1.kernel" -> "<name>.kernel"). */
kiln_status kiln_graph_rename(kiln_graph *g, kiln_node *n, const char *name);
int kiln_graph_node_count(const kiln_graph *g);
kiln_node *kiln_graph_node(kiln_graph *g, int i);

/* ---- parameters ---- */
typedef struct {
    const char *name; /* "dense_1.kernel" */
    kiln_shape shape;
    size_t offset; /* in floats, into kiln_graph_params() (and grads if trainable) */
    size_t numel;
    int trainable;
    int frozen; /* trainable, frozen for now (kiln_graph_set_frozen): no gradient, no update */
} kiln_param_info;

/* Lays out the flat buffers and runs every initializer (idempotent; plans call it). After
 * this no parameter can be added. */
kiln_status kiln_graph_init_params(kiln_graph *g);
int kiln_graph_param_count(const kiln_graph *g);
const kiln_param_info *kiln_graph_param_info(const kiln_graph *g, int i);
/* Flat buffers: n_total floats of parameters, the first n_trainable have gradients. */
float *kiln_graph_params(kiln_graph *g);
float *kiln_graph_grads(kiln_graph *g);
size_t kiln_graph_params_size(const kiln_graph *g);
size_t kiln_graph_trainable_size(const kiln_graph *g);

/* ---- freezing (fine-tuning: docs/models.md "Freezing") ----
 * A frozen trainable parameter keeps its slice of the flat buffers (layouts, checkpoints and
 * optimizer slots do not move) but takes no gradient: plans compiled afterwards compute none for
 * it, nor for anything that only a frozen parameter feeds (a conv whose kernel is frozen skips
 * dW), and its gradient slice is zeroed so that norms and updates over the flat buffer see 0.
 * Frozen-ness may change between plans (stages): free the plans and compile new ones after a
 * change. Parameter i out of range, or not trainable while frozen is asked: KILN_ERR_INVALID. */
kiln_status kiln_graph_set_frozen(kiln_graph *g, int i, int frozen);
/* An op node that runs in inference mode inside training plans (batch norm: normalizes with its
 * moving statistics and leaves them alone); applies to plans compiled afterwards. */
void kiln_graph_set_inference(kiln_graph *g, kiln_node *n, int on);
int kiln_node_inference(const kiln_node *n);
/* The parameter index of a parameter node, -1 for any other node. */
int kiln_node_param_index(const kiln_node *n);
/* Inputs of an op node (parameters included), in order. */
int kiln_node_input_count(const kiln_node *n);
kiln_node *kiln_node_input(const kiln_node *n, int i);
/* [offset, length) ranges of the trainable buffer that are not frozen, merged where adjacent;
 * returns how many (at most cap are written to off/len). */
int kiln_graph_active_ranges(const kiln_graph *g, size_t *off, size_t *len, int cap);

/* ---- plans ---- */
typedef struct {
    kiln_node *const *outputs; /* values to compute (the loss may be among them) */
    int n_outputs;
    kiln_node *loss; /* gradient root, or NULL for an inference plan (see kiln_plan_backward) */
    int batch;       /* batch size this plan runs at */
    int training;    /* 1: dropout active, batch norm uses batch statistics and updates running ones */
    int plain_layouts; /* 1: every value in plain row-major layout (slower; for debugging) */
    /* 1: results do not depend on the number of OpenMP threads: every reduction over the batch
     * (convolution and dense weight gradients, batch-norm statistics) and every matmul runs in
     * fixed chunks of rows summed in a fixed order, at most 16 chunks at once (docs/engine.md) */
    int deterministic;
    /* 1: gradients flow from the graph's F32 inputs instead of the parameters (attributions,
     * src/explain/): backward computes d(loss)/d(input) and the gradients of the values between
     * them, no parameter gradient (the flat gradient buffer is not touched). The gradients of the
     * inputs and of the requested outputs stay readable after backward. */
    int input_grads;
} kiln_plan_opts;

kiln_plan *kiln_plan_new(kiln_graph *g, const kiln_plan_opts *o);
void kiln_plan_free(kiln_plan *p);
/* The buffer holding node n's value in this plan (inputs: fill it before forward). NULL if n is
 * not part of the plan. Inputs, parameters and the plan's outputs are plain row-major; other
 * values may be kept in a backend layout (oneDNN's blocked nChw8c between convolutions): make a
 * node an output to read it. */
void *kiln_plan_data(kiln_plan *p, const kiln_node *n);
/* dL/dn in this plan, or NULL when no gradient flows to n. */
float *kiln_plan_grad(kiln_plan *p, const kiln_node *n);
kiln_shape kiln_plan_shape(const kiln_plan *p, const kiln_node *n);
/* The RNG counter base for dropout and other random ops: set it to the global step. */
void kiln_plan_set_step(kiln_plan *p, uint64_t step);
kiln_status kiln_plan_forward(kiln_plan *p);
/* Fills parameter gradients (overwriting them). A scalar loss is seeded with dL/dloss = 1; a
 * non-scalar root uses whatever the caller wrote into kiln_plan_grad(p, loss). */
kiln_status kiln_plan_backward(kiln_plan *p);
/* Tells fn during kiln_plan_backward which gradients are final: fn(ctx, from) means gradients
 * [from, kiln_graph_trainable_size) of the flat buffer will not change again in this backward
 * (from only decreases; the last call of a backward has from = 0). Data parallel training starts
 * reducing those while backward goes on. fn NULL: no calls. Cost: one comparison per op. */
void kiln_plan_on_grads(kiln_plan *p, void (*fn)(void *ctx, size_t from), void *ctx);
/* Synchronized batch norm: training-mode batch norm sums per-channel values across the processes
 * of a data-parallel job through fn (docs/distributed.md). fn(ctx, v, n, kind) replaces v[0, n)
 * in place and is called in the same order on every process (a collective):
 *  - KILN_REDUCE_SUM: the sum over the processes (forward: per-channel sums, the value count,
 *    sums of squared deviations from the global mean);
 *  - KILN_REDUCE_GRAD: backward's per-channel sums of dy and dy * xhat, where dy is the gradient
 *    of this process's loss (the mean over its rows). The global loss is the row-weighted mean
 *    of the processes' losses, sum_q w_q L_q, so fn returns (sum_q w_q v_q) / w_self: the sums
 *    for the global loss, scaled back to this process's loss like its other gradients.
 * A batch norm that uses fn takes its own loops (as in a deterministic plan), normalizes with the
 * global statistics, updates the moving statistics from them (unbiased with the global count)
 * and computes dx through them; dgamma and dbeta stay this process's own sums (the gradient
 * averaging then adds them once). Inference-mode batch norm (frozen, evaluation) never calls fn.
 * A failing fn fails forward; in backward the caller keeps its error (fn's owner reports it).
 * fn NULL: none (the default; every process normalizes with its own batch). */
typedef enum { KILN_REDUCE_SUM, KILN_REDUCE_GRAD } kiln_reduce_kind;
typedef kiln_status (*kiln_reduce_fn)(void *ctx, double *v, int n, kiln_reduce_kind kind);
void kiln_plan_on_reduce(kiln_plan *p, kiln_reduce_fn fn, void *ctx);
/* Per-op timing. With a buffer set, forward and backward record one event per op (start and
 * duration in microseconds on a monotonic clock) until cap events are there; the buffer is the
 * caller's, so a profiled step still allocates nothing. kiln_plan_profile(p, NULL, 0, NULL) stops. */
typedef struct {
    const char *name;  /* node name ("conv2d_1") */
    const char *op;    /* op name ("conv2d"), or what the caller recorded ("adam") */
    const char *phase; /* "forward", "backward" (or the caller's, e.g. "update") */
    double start_us, dur_us;
} kiln_op_event;
void kiln_plan_profile(kiln_plan *p, kiln_op_event *events, int cap, int *count);
/* Microseconds on the clock the events use. */
double kiln_time_us(void);

/* 1 when n's value is held in a backend layout rather than plain row-major. */
int kiln_plan_value_is_blocked(const kiln_plan *p, const kiln_node *n);
/* Bytes of activations and gradients the memory plan reserved. */
size_t kiln_plan_arena_bytes(const kiln_plan *p);

#endif
